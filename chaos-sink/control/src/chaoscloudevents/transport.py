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
import errno
import http.client
import json
import os
import re
import socket
import ssl
import time
from dataclasses import dataclass
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


def percent_encode(value: str) -> str:
    """Percent-encode a binary-mode header value (CloudEvents HTTP binding, 3.1.3.2).

    The value is UTF-8 encoded; every byte that is not printable ASCII (0x21-0x7E), and the
    space, ``"`` and ``%`` characters, are written as ``%XX`` (upper-case hex).
    """
    if _ALL_SAFE.fullmatch(value):
        return value
    return quote(value, safe=_HEADER_SAFE)


@dataclass(frozen=True)
class HttpRequest:
    """An encoded event, ready to be POSTed as many times as needed (same id every time)."""

    event_id: str
    event_type: str
    headers: Mapping[str, str]
    body: bytes


def _json_bytes(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode(
        "utf-8"
    )


def encode(event: CloudEvent, mode: str = BINARY) -> HttpRequest:
    """Encode ``event`` for HTTP in ``binary`` or ``structured`` mode."""
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
    return HttpRequest(event_id=event.id, event_type=event.type, headers=headers, body=body)


@dataclass(frozen=True)
class SendOutcome:
    """Result of one delivery attempt."""

    result: str  # DELIVERED, RETRY or REJECTED
    detail: str
    retry_after: Optional[float] = None
    #: nothing answers at the sink's address (connection refused, unknown host, no route)
    unreachable: bool = False


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


class HttpTransport:
    """POSTs encoded events to one sink URL, reusing a keep-alive connection.

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
        self._port = parts.port
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._timeout = timeout
        self._headers = dict(headers or {})
        self._token_path = token_path
        self._ssl: Optional[ssl.SSLContext] = None
        if self._scheme == "https":
            self._ssl = ssl.create_default_context()
            if ca_certs_pem:
                self._ssl.load_verify_locations(cadata=ca_certs_pem)
        self._conn: Optional[http.client.HTTPConnection] = None

    def _connection(self) -> Tuple[http.client.HTTPConnection, bool]:
        if self._conn is not None:
            return self._conn, True
        if self._scheme == "https":
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                self._host, self._port, timeout=self._timeout, context=self._ssl
            )
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
        self._conn = conn
        return conn, False

    def close(self) -> None:
        """Close the kept-alive connection, if any."""
        if self._conn is not None:
            try:
                self._conn.close()
            except OSError:
                pass
            self._conn = None

    def _request_headers(self, request: HttpRequest) -> Dict[str, str]:
        headers = {"User-Agent": USER_AGENT}
        headers.update(self._headers)
        if self._token_path and "authorization" not in {k.lower() for k in headers}:
            token = _read_token(self._token_path)
            if token:
                headers["Authorization"] = f"Bearer {token}"
        headers.update(request.headers)
        headers["Content-Length"] = str(len(request.body))
        return headers

    def send(self, request: HttpRequest) -> SendOutcome:
        """One delivery attempt. Never raises for network or HTTP errors."""
        headers = self._request_headers(request)
        for _ in range(2):
            conn, reused = self._connection()
            try:
                conn.request("POST", self._path, body=request.body, headers=headers)
                response = conn.getresponse()
                response.read(_MAX_RESPONSE_BYTES)
                status = response.status
                retry_after = parse_retry_after(response.getheader("Retry-After"))
                if response.will_close or not response.isclosed():
                    self.close()  # the sink closes it, or its body was too big to drain
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                self.close()
                if reused:
                    continue  # the server closed an idle kept-alive connection: retry at once
                return SendOutcome(RETRY, _describe(exc))
            except (OSError, http.client.HTTPException) as exc:
                # connection refused, DNS, TLS, timeouts (socket.timeout is an OSError)
                self.close()
                return SendOutcome(RETRY, _describe(exc), unreachable=_unreachable(exc))
            if 200 <= status < 300:
                return SendOutcome(DELIVERED, f"HTTP {status}")
            if status in RETRYABLE_STATUSES or 500 <= status < 600:
                return SendOutcome(RETRY, f"HTTP {status}", retry_after)
            return SendOutcome(REJECTED, f"HTTP {status}")
        return SendOutcome(RETRY, "connection closed by the sink")


def _unreachable(exc: BaseException) -> bool:
    if isinstance(exc, (ConnectionRefusedError, socket.gaierror)):
        return True
    return isinstance(exc, OSError) and exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH)


def _describe(exc: BaseException) -> str:
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
