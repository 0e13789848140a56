"""A FAKE CloudEvents sink for tests: a small ``http.server`` on 127.0.0.1 that records requests.

It is not a real Knative sink. It answers 202 with an empty body by default and can be switched
to answer 503 (with ``Retry-After``), to answer slowly, or to be *down* (its port closed, so
connections are refused).
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List, Optional, Tuple

from cloudevents.core.bindings.http import HTTPMessage, from_http
from cloudevents.core.formats.json import JSONFormat


@dataclass
class RecordedRequest:
    """One request as the fake sink saw it (raw bytes kept for leak checks)."""

    method: str
    path: str
    headers: Dict[str, str]
    raw_headers: bytes
    body: bytes
    received_at: float
    status: int

    def event(self) -> dict:
        """Decode with the CloudEvents SDK (an independent peer) into a structured-form dict."""
        message = HTTPMessage(headers=dict(self.headers), body=self.body)
        ce = from_http(message, JSONFormat())
        attrs = dict(ce.get_attributes())
        time_value = attrs.get("time")
        if hasattr(time_value, "isoformat"):
            attrs["time"] = time_value.isoformat().replace("+00:00", "Z")
        attrs["data"] = ce.get_data()
        return attrs


class _QuietServer(ThreadingHTTPServer):
    """Clients that give up (timeouts in the tests) make the answer fail: that is expected."""

    def handle_error(self, request: object, client_address: object) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


@dataclass
class _Behaviour:
    status: int = 202
    delay: float = 0.0
    retry_after: Optional[str] = None
    fail_first: int = 0  # answer `status` to the first N requests, then 202
    drop_keepalive: bool = False  # close the connection after answering, without saying so
    body_size: int = 0  # bytes of (meaningless) response body


class FakeCloudEventsSink:
    """The fake sink. Use as a context manager; ``url`` is ``http://127.0.0.1:<port>/``."""

    def __init__(self) -> None:
        self.requests: List[RecordedRequest] = []
        self._lock = threading.Lock()
        self._behaviour = _Behaviour()
        self._seen = 0
        #: requests being answered right now, and the most at once (the sender's concurrency)
        self.in_flight = 0
        self.max_in_flight = 0
        self._server: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None
        self.port = 0

    # ---- lifecycle -----------------------------------------------------------------------
    def start(self) -> "FakeCloudEventsSink":
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with sink._lock:
                    sink.in_flight += 1
                    sink.max_in_flight = max(sink.max_in_flight, sink.in_flight)
                status, delay, retry_after, drop, body_size = sink._decide()
                if delay:
                    time.sleep(delay)
                raw = b"".join(f"{k}: {v}\r\n".encode("latin-1") for k, v in self.headers.items())
                with sink._lock:
                    sink.in_flight -= 1
                    sink.requests.append(
                        RecordedRequest(
                            method="POST",
                            path=self.path,
                            headers={k.lower(): v for k, v in self.headers.items()},
                            raw_headers=raw,
                            body=body,
                            received_at=time.monotonic(),
                            status=status,
                        )
                    )
                self.send_response(status)
                if retry_after is not None and status != 202:
                    self.send_header("Retry-After", retry_after)
                self.send_header("Content-Length", str(body_size))
                self.end_headers()
                self.wfile.write(b"x" * body_size)
                if drop:  # like a server whose idle timeout closed a kept-alive connection
                    self.close_connection = True

        self._server = _QuietServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FakeCloudEventsSink":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    # ---- behaviour -----------------------------------------------------------------------
    def answer(
        self,
        status: int = 202,
        delay: float = 0.0,
        retry_after: Optional[str] = None,
        fail_first: int = 0,
        drop_keepalive: bool = False,
        body_size: int = 0,
    ) -> None:
        with self._lock:
            self._behaviour = _Behaviour(
                status, delay, retry_after, fail_first, drop_keepalive, body_size
            )
            self._seen = 0

    def _decide(self) -> Tuple[int, float, Optional[str], bool, int]:
        with self._lock:
            b = self._behaviour
            self._seen += 1
            if b.fail_first and self._seen > b.fail_first:
                return 202, 0.0, None, b.drop_keepalive, b.body_size
            return b.status, b.delay, b.retry_after, b.drop_keepalive, b.body_size

    # ---- inspection ----------------------------------------------------------------------
    def accepted(self) -> List[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if 200 <= r.status < 300]

    def events(self) -> List[dict]:
        """Decoded events of the accepted requests, in arrival order."""
        return [r.event() for r in self.accepted()]

    def wait_for(self, count: int, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.accepted()) >= count:
                return True
            time.sleep(0.01)
        return False


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (connections are refused): a sink that is down."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/"
