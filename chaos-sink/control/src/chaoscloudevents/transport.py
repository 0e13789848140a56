"""CloudEvents HTTP protocol binding (binary and structured mode) over the standard library.

* Binary mode: attributes in ``ce-<name>`` headers, ``Content-Type: application/json``, body =
  data. Header values are percent-encoded as the HTTP binding (section 3.1.3.2) requires:
  space, ``"``, ``%`` and every byte outside printable ASCII (after UTF-8 encoding) become
  ``%XX``. The experiment title travels in ``ce-subject``, so spaces and non-ASCII are common.
* Structured mode: ``Content-Type: application/cloudevents+json; charset=utf-8``, body = the
  whole event in the JSON event format.

:class:`HttpTransport` sends one encoded request and classifies the answer the way Knative
does: 2xx delivered; connection errors, timeouts, 404, 408, 409, 425, 429 and 5xx retryable
(with ``Retry-After`` when given); any other status rejected for good.
"""

from __future__ import annotations

import email.utils
import functools
import hashlib
import errno
import json
import os
import re
import socket
import ssl
import time
from typing import Dict, Mapping, Optional, Tuple
from urllib.parse import quote, urlsplit

from chaoscloudevents import __version__
from chaoscloudevents.events import CloudEvent

__all__ = [
    "BINARY",
    "STRUCTURED",
    "DELIVERED",
    "HttpRequest",
    "HttpTransport",
    "REJECTED",
    "RETRY",
    "SendOutcome",
    "encode",
    "percent_encode",
]

BINARY = "binary"
STRUCTURED = "structured"
MODES = (BINARY, STRUCTURED)

DELIVERED = "delivered"
RETRY = "retry"
REJECTED = "rejected"

STRUCTURED_CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
RETRYABLE_STATUSES = frozenset({404, 408, 409, 425, 429})
USER_AGENT = f"chaostoolkit-cloudevents/{__version__}"
_MAX_RESPONSE_BYTES = 64 * 1024


# Printable ASCII (0x21-0x7E) except '"' and '%': the bytes a header value may carry as they are.
_HEADER_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"%')
_ALL_SAFE = re.compile(r"[!#-$&-~]*")  # the same set, to skip the work for plain values
_ENCODED: Dict[str, str] = {}


def percent_encode(value: str) -> str:
    """Percent-encode a binary-mode header value (CloudEvents HTTP binding, 3.1.3.2).

    The value is UTF-8 encoded; every byte that is not printable ASCII (0x21-0x7E), and the
    space, ``"`` and ``%`` characters, are written as ``%XX`` (upper-case hex).
    """
    if _ALL_SAFE.fullmatch(value):
        return value
    # the same few values (the title, the source) come with every event of a run
    encoded = _ENCODED.get(value)
    if encoded is None:
        if len(_ENCODED) >= 256:
            _ENCODED.clear()
        encoded = _ENCODED[value] = quote(value, safe=_HEADER_SAFE)
    return encoded


class HttpRequest:
    """An encoded event, ready to be POSTed as many times as needed (same id every time)."""

    __slots__ = ("event_id", "event_type", "headers", "body")

    def __init__(
        self, event_id: str, event_type: str, headers: Mapping[str, str], body: bytes
    ) -> None:
        self.event_id = event_id
        self.event_type = event_type
        self.headers = headers
        self.body = body

    def __repr__(self) -> str:
        return f"HttpRequest({self.event_type!r}, {self.event_id!r}, {len(self.body)} bytes)"


_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _json_bytes(value: object) -> bytes:
    return _JSON.encode(value).encode("utf-8")


@functools.lru_cache(maxsize=64)
def run_traceparent(run_id: str) -> Optional[str]:
    """The W3C ``traceparent`` of a run's events: trace id = the run id (a UUID, as chaos-sink's OTLP
    backend makes the run's trace), parent = the run's root span (``experiment``), whose id chaos-sink
    derives as the first 8 bytes of SHA-256(run id, 0, "experiment"). The sink's spans of the run's
    requests so join the run's trace, under its root. ``None`` for a run id that is not a UUID."""
    trace = run_id.replace("-", "").lower()
    if len(trace) != 32 or not all(c in "0123456789abcdef" for c in trace) or set(trace) == {"0"}:
        return None
    span = hashlib.sha256(run_id.encode("utf-8") + b"\0" + b"experiment").digest()[:8].hex()
    if span == "0" * 16:
        return None
    return f"00-{trace}-{span}-01"


def encode(event: CloudEvent, mode: str = BINARY) -> HttpRequest:
    """Encode ``event`` for HTTP in ``binary`` or ``structured`` mode, with the ``traceparent`` of its
    run (:func:`run_traceparent`) when it has a ``chaosrunid``."""
    if mode == STRUCTURED:
        headers = {"Content-Type": STRUCTURED_CONTENT_TYPE}
        body = _json_bytes(event.to_structured())
    elif mode == BINARY:
        headers = {}
        for name, value in event.attributes().items():
            if name == "datacontenttype":
                headers["Content-Type"] = value
            else:
                headers[f"ce-{name}"] = percent_encode(value)
        body = _json_bytes(event.data)
    else:
        raise ValueError(f"unknown CloudEvents mode {mode!r} (expected 'binary' or 'structured')")
    run_id = event.attributes().get("chaosrunid")
    traceparent = run_traceparent(run_id) if isinstance(run_id, str) else None
    if traceparent:
        # The HTTP header, as Knative's tracing reads it (not the ce-traceparent extension).
        headers["traceparent"] = traceparent
    return HttpRequest(event_id=event.id, event_type=event.type, headers=headers, body=body)


class SendOutcome:
    """Result of one delivery attempt."""

    __slots__ = ("result", "detail", "retry_after", "unreachable")

    def __init__(
        self,
        result: str,  # DELIVERED, RETRY or REJECTED
        detail: str,
        retry_after: Optional[float] = None,
        unreachable: bool = False,  # nothing answers at the sink's address (refused, DNS, route)
    ) -> None:
        self.result = result
        self.detail = detail
        self.retry_after = retry_after
        self.unreachable = unreachable

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SendOutcome):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in self.__slots__)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"SendOutcome(result={self.result!r}, detail={self.detail!r}, "
            f"retry_after={self.retry_after!r}, unreachable={self.unreachable!r})"
        )


def parse_retry_after(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(when.timestamp() - (now if now is not None else time.time()), 0.0)


class BadResponse(Exception):
    """The sink's answer is not HTTP/1.x as we can read it."""


class _ClosedByPeer(Exception):
    """The connection ended before the first byte of an answer."""


_HEADER_END = b"\r\n\r\n"
_MAX_HEAD_BYTES = 64 * 1024


class HttpTransport:
    """POSTs encoded events to one sink URL over a kept-alive HTTP/1.1 connection.

    A small HTTP/1.1 client on a plain socket (TLS for https) instead of :mod:`http.client`:
    the request is written with one ``sendall`` and the answer's head is parsed by hand, which
    takes about a fifth of the CPU time per event. That matters because the sender thread
    shares the interpreter lock with the experiment (see ``bench/overhead.py``). Bodies are
    framed by ``Content-Length`` or chunked encoding; a body that is too big to drain, or
    delimited by the end of the connection, closes the connection.

    Not thread-safe: it is used by the single sender thread.
    """

    def __init__(
        self,
        url: str,
        timeout: float = 2.0,
        headers: Optional[Mapping[str, str]] = None,
        ca_certs_pem: Optional[str] = None,
        token_path: Optional[str] = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("sink URL must be an absolute http:// or https:// URL")
        self._scheme = parts.scheme
        self._host = parts.hostname
        default_port = 443 if self._scheme == "https" else 80
        self._port = parts.port or default_port
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host_header = f"[{self._host}]" if ":" in self._host else self._host
        if self._port != default_port:
            host_header = f"{host_header}:{self._port}"
        self._timeout = timeout
        extra = dict(headers or {})
        for name, value in extra.items():
            _check_header(name, value)
        self._headers = extra
        self._token_path = token_path
        self._has_authorization = any(k.lower() == "authorization" for k in extra)
        lines = [f"POST {quote(path, safe=_PATH_SAFE)} HTTP/1.1", f"Host: {host_header}"]
        if not any(k.lower() == "user-agent" for k in extra):
            lines.append(f"User-Agent: {USER_AGENT}")
        lines += [f"{k}: {v}" for k, v in extra.items()]
        self._head = "\r\n".join(lines) + "\r\n"
        self._ssl: Optional[ssl.SSLContext] = None
        if self._scheme == "https":
            self._ssl = ssl.create_default_context()
            if ca_certs_pem:
                self._ssl.load_verify_locations(cadata=ca_certs_pem)
        self._sock: Optional[socket.socket] = None

    def close(self) -> None:
        """Close the kept-alive connection, if any."""
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None

    def _connect(self) -> socket.socket:
        sock = socket.create_connection((self._host, self._port), timeout=self._timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._ssl is not None:
                sock = self._ssl.wrap_socket(sock, server_hostname=self._host)
        except BaseException:
            sock.close()
            raise
        return sock

    def _request_bytes(self, request: HttpRequest) -> bytes:
        parts = [self._head]
        if self._token_path and not self._has_authorization:
            token = _read_token(self._token_path)
            if token and _SAFE_TOKEN.fullmatch(token):
                parts.append(f"Authorization: Bearer {token}\r\n")
        for name, value in request.headers.items():
            parts.append(f"{name}: {value}\r\n")
        parts.append(f"Content-Length: {len(request.body)}\r\n\r\n")
        return "".join(parts).encode("latin-1") + request.body

    def send(self, request: HttpRequest) -> SendOutcome:
        """One delivery attempt. Never raises for network or HTTP errors."""
        data = self._request_bytes(request)
        for _ in range(2):
            reused = self._sock is not None
            try:
                if self._sock is None:
                    self._sock = self._connect()
                self._sock.sendall(data)
                status, retry_after, keep = self._read_response(self._sock)
                if not keep:
                    self.close()
            except (_ClosedByPeer, BrokenPipeError, ConnectionResetError) as exc:
                self.close()
                if reused:
                    continue  # the server closed an idle kept-alive connection: retry at once
                return SendOutcome(RETRY, _describe(exc))
            except (OSError, BadResponse) as exc:
                # connection refused, DNS, TLS, timeouts (socket.timeout is an OSError)
                self.close()
                return SendOutcome(RETRY, _describe(exc), unreachable=_unreachable(exc))
            if 200 <= status < 300:
                return SendOutcome(DELIVERED, f"HTTP {status}")
            if status in RETRYABLE_STATUSES or 500 <= status < 600:
                return SendOutcome(RETRY, f"HTTP {status}", retry_after)
            return SendOutcome(REJECTED, f"HTTP {status}")
        return SendOutcome(RETRY, "connection closed by the sink")

    def _read_response(self, sock: socket.socket) -> Tuple[int, Optional[float], bool]:
        """Read one answer: (status, Retry-After seconds, connection reusable)."""
        buf = b""
        while True:  # skip interim 1xx answers
            while True:
                end = buf.find(_HEADER_END)
                if end >= 0:
                    break
                if len(buf) > _MAX_HEAD_BYTES:
                    raise BadResponse("response head too large")
                chunk = sock.recv(65536)
                if not chunk:
                    if buf:
                        raise BadResponse("connection closed in the response head")
                    raise _ClosedByPeer("connection closed by the sink without an answer")
                buf += chunk
            head, buf = buf[:end], buf[end + 4 :]
            lines = head.decode("latin-1").split("\r\n")
            version, _, rest = lines[0].partition(" ")
            code = rest[:3]
            if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isdigit():
                raise BadResponse(f"not an HTTP/1.x status line: {lines[0][:40]!r}")
            status = int(code)
            fields: Dict[str, str] = {}
            for line in lines[1:]:
                name, sep, value = line.partition(":")
                if sep:
                    fields[name.strip().lower()] = value.strip()
            if 100 <= status < 200 and status != 101:
                continue
            break
        connection = fields.get("connection", "").lower()
        keep = "close" not in connection and (
            version != "HTTP/1.0" or "keep-alive" in connection
        )
        retry_after = parse_retry_after(fields.get("retry-after"))
        if status == 101:  # the connection now speaks another protocol
            return status, retry_after, False
        if status in (204, 304):
            return status, retry_after, keep and not buf
        if "chunked" in fields.get("transfer-encoding", "").lower():
            return status, retry_after, keep and _drain_chunked(sock, buf)
        length = fields.get("content-length")
        if length is None or not length.strip().isdigit():
            return status, retry_after, False  # the body ends with the connection
        remaining = int(length) - len(buf)
        if remaining < 0 or int(length) > _MAX_RESPONSE_BYTES:
            return status, retry_after, False
        while remaining > 0:
            chunk = sock.recv(min(remaining, 65536))
            if not chunk:
                return status, retry_after, False
            remaining -= len(chunk)
        return status, retry_after, keep


def _drain_chunked(sock: socket.socket, buf: bytes) -> bool:
    """Read a chunked body to its end; False when it is too big (the connection is dropped)."""
    total = 0
    while True:
        while b"\r\n" not in buf:
            if len(buf) > 1024:
                return False
            chunk = sock.recv(65536)
            if not chunk:
                return False
            buf += chunk
        line, buf = buf.split(b"\r\n", 1)
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            return False
        total += size
        if total > _MAX_RESPONSE_BYTES:
            return False
        if size == 0:  # trailers end with an empty line
            while True:
                while b"\r\n" not in buf:
                    chunk = sock.recv(65536)
                    if not chunk:
                        return False
                    buf += chunk
                line, buf = buf.split(b"\r\n", 1)
                if not line:
                    return not buf
        need = size + 2  # the data and its CRLF
        while len(buf) < need:
            chunk = sock.recv(65536)
            if not chunk:
                return False
            buf += chunk
        buf = buf[need:]


# RFC 9110 token characters (header names)
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_SAFE_TOKEN = re.compile(r"[\x21-\x7e]+")
_PATH_SAFE = "/?=&;:@!$'()*+,-._~%[]"


def _check_header(name: str, value: str) -> None:
    if not _TOKEN.fullmatch(name):
        raise ValueError(f"invalid HTTP header name {name!r}")
    if "\r" in value or "\n" in value:
        raise ValueError(f"the value of HTTP header {name!r} contains a line break")
    value.encode("latin-1")


def _unreachable(exc: BaseException) -> bool:
    if isinstance(exc, (ConnectionRefusedError, socket.gaierror)):
        return True
    return isinstance(exc, OSError) and exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, (_ClosedByPeer, BadResponse)):
        return str(exc)
    if isinstance(exc, socket.timeout):
        return "timed out"
    text = str(exc) or exc.__class__.__name__
    return f"{exc.__class__.__name__}: {text}" if text != exc.__class__.__name__ else text


def _read_token(path: str) -> Optional[str]:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip() or None
    except OSError:
        return None


def default_token_path() -> Optional[str]:
    """Knative's OIDC token file when it is mounted (``/oidc/token``), else ``None``."""
    path = "/oidc/token"
    return path if os.path.exists(path) else None
