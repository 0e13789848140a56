"""Unit tests of the HTTP binding (transport.py), against the CloudEvents SDK and a FAKE sink."""

from __future__ import annotations

import hashlib
import json
import time
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

import pytest
from cloudevents.core.bindings.http import HTTPMessage, from_http
from cloudevents.core.formats.json import JSONFormat

from chaoscloudevents.events import EventFactory
from chaoscloudevents.transport import (
    BINARY,
    DELIVERED,
    REJECTED,
    RETRY,
    STRUCTURED,
    HttpTransport,
    encode,
    parse_retry_after,
    run_traceparent,
    percent_encode,
)
from fake_cloudevents_sink import FakeCloudEventsSink, closed_port_url

T0 = datetime(2026, 11, 22, 20, 50, 12, 635557, tzinfo=timezone.utc)
TITLE = 'Kill 50% of "pods" in Zürich – Euro € 😀'

# the HTTP binding's safe set: printable ASCII except space, '"' and '%'
CE_SAFE = "".join(c for c in map(chr, range(0x21, 0x7F)) if c not in ' "%')


def event():
    f = EventFactory(
        run_id="0b7c2f7e-3d0a-4f43-9a57-6f7a0c1e2d3f",
        experiment_ref="1c412acecabe4a229a1e7532",
        hostname="host-1",
        title=TITLE,
        extensions={"team": "chaos"},
    )
    return f.hypothesis_finished("h", "before", T0, T0, True)


# ---- percent-encoding ---------------------------------------------------------------------
def test_percent_encoding_example_from_the_http_binding_spec() -> None:
    assert percent_encode("Euro € 😀") == "Euro%20%E2%82%AC%20%F0%9F%98%80"


@pytest.mark.parametrize(
    "value, expected",
    [
        (
            "plain-ASCII_value.1~!#$&'()*+,/:;<=>?@[]^`{|}",
            "plain-ASCII_value.1~!#$&'()*+,/:;<=>?@[]^`{|}",
        ),
        ("a b", "a%20b"),
        ('say "hi"', "say%20%22hi%22"),
        ("100%", "100%25"),
        ("tab\there\nnl\x7f", "tab%09here%0Anl%7F"),
        ("", ""),
    ],
)
def test_percent_encoding_rules(value: str, expected: str) -> None:
    assert percent_encode(value) == expected
    assert percent_encode(value) == expected  # the second time from the cache


@pytest.mark.parametrize(
    "value", [TITLE, "日本語のタイトル", "ü" * 10, "%41", "\u00a0nbsp", "emoji 🐒🙈"]
)
def test_percent_encoding_agrees_with_urllib_and_round_trips(value: str) -> None:
    encoded = percent_encode(value)
    assert encoded == quote(value, safe=CE_SAFE)
    assert all(0x21 <= ord(c) <= 0x7E for c in encoded)
    from urllib.parse import unquote

    assert unquote(encoded) == value


# ---- encodings ------------------------------------------------------------------------------
def test_binary_mode_request() -> None:
    ev = event()
    req = encode(ev, BINARY)
    assert req.event_id == ev.id
    h = dict(req.headers)
    assert h.pop("Content-Type") == "application/json"
    assert "ce-datacontenttype" not in h
    assert h["ce-subject"] == percent_encode(TITLE)
    assert h["ce-specversion"] == "1.0" and h["ce-time"] == "2026-11-22T20:50:12.635557Z"
    assert h.pop("traceparent") == run_traceparent(ev.attributes()["chaosrunid"])
    assert set(h) == {f"ce-{k}" for k in ev.attributes() if k != "datacontenttype"}
    assert json.loads(req.body) == ev.data
    for value in req.headers.values():
        value.encode("ascii")  # headers are pure ASCII


def test_binary_mode_decodes_with_the_cloudevents_sdk() -> None:
    ev = event()
    req = encode(ev, BINARY)
    decoded = from_http(HTTPMessage(headers=dict(req.headers), body=req.body), JSONFormat())
    attrs = decoded.get_attributes()
    assert attrs["subject"] == TITLE
    assert attrs["chaosrunid"] == ev.extensions["chaosrunid"] and attrs["team"] == "chaos"
    assert attrs["time"] == T0
    assert decoded.get_data() == ev.data


def test_structured_mode_decodes_with_the_cloudevents_sdk() -> None:
    ev = event()
    req = encode(ev, STRUCTURED)
    assert req.headers == {"Content-Type": "application/cloudevents+json; charset=utf-8",
                           "traceparent": run_traceparent(ev.attributes()["chaosrunid"])}
    assert json.loads(req.body) == ev.to_structured()
    decoded = from_http(HTTPMessage(headers=dict(req.headers), body=req.body), JSONFormat())
    assert decoded.get_attributes()["subject"] == TITLE
    assert decoded.get_data() == ev.data


def test_every_event_of_a_run_carries_the_runs_traceparent() -> None:
    """W3C traceparent: trace id = the run id, parent = the run's root span as chaos-sink derives it
    (SHA-256 of run id, NUL, "experiment"; first 8 bytes), sampled; in both modes, as an HTTP header."""
    run_id = "0b7c2f7e-3d0a-4f43-9a57-6f7a0c1e2d3f"
    expected = "00-0b7c2f7e3d0a4f439a576f7a0c1e2d3f-" + hashlib.sha256(
        run_id.encode() + b"\0experiment").hexdigest()[:16] + "-01"
    assert run_traceparent(run_id) == expected
    for mode in (BINARY, STRUCTURED):
        assert encode(event(), mode).headers["traceparent"] == expected
    other = EventFactory(run_id="6a1d0c54-6c1e-4f8e-8d53-0d0f5c1d2e3f", experiment_ref="x", hostname="h",
                         title="t").hypothesis_finished("h", "before", T0, T0, True)
    assert encode(other, BINARY).headers["traceparent"].split("-")[1] == "6a1d0c546c1e4f8e8d530d0f5c1d2e3f"
    # Not a UUID (cannot be a trace id): no header rather than a made-up trace.
    assert run_traceparent("not-a-uuid") is None
    assert run_traceparent("00000000-0000-0000-0000-000000000000") is None


def test_unknown_mode() -> None:
    with pytest.raises(ValueError):
        encode(event(), "batch")


# ---- Retry-After -----------------------------------------------------------------------------
def test_parse_retry_after() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0


# ---- one attempt against the fake sink -------------------------------------------------------
@pytest.mark.parametrize(
    "status, result",
    [
        (202, DELIVERED),
        (200, DELIVERED),
        (204, DELIVERED),
        (503, RETRY),
        (500, RETRY),
        (429, RETRY),
        (404, RETRY),
        (408, RETRY),
        (409, RETRY),
        (425, RETRY),
        (400, REJECTED),
        (401, REJECTED),
        (413, REJECTED),
        (415, REJECTED),
    ],
)
def test_status_classes(fake_sink: FakeCloudEventsSink, status: int, result: str) -> None:
    fake_sink.answer(status=status, retry_after="3")
    outcome = HttpTransport(fake_sink.url, timeout=2).send(encode(event()))
    assert outcome.result == result and outcome.detail == f"HTTP {status}"
    if result == RETRY:
        assert outcome.retry_after == 3.0


def test_request_line_and_headers(fake_sink: FakeCloudEventsSink, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("oidc-token-1\n")
    url = fake_sink.url + "ns/default/broker?x=1"
    transport = HttpTransport(url, headers={"X-Team": "chaos"}, token_path=str(token))
    assert transport.send(encode(event())).result == DELIVERED
    token.write_text("oidc-token-2")  # Knative rotates it: it is re-read
    assert transport.send(encode(event())).result == DELIVERED
    first, second = fake_sink.requests
    assert first.path == "/ns/default/broker?x=1"
    assert first.headers["x-team"] == "chaos"
    assert first.headers["user-agent"].startswith("chaostoolkit-cloudevents/")
    assert (first.headers["authorization"], second.headers["authorization"]) == (
        "Bearer oidc-token-1",
        "Bearer oidc-token-2",
    )
    assert first.headers["content-length"] == str(len(first.body))


def test_explicit_authorization_header_wins_over_the_token_file(
    fake_sink: FakeCloudEventsSink, tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text("oidc")
    HttpTransport(
        fake_sink.url, headers={"Authorization": "Basic xyz"}, token_path=str(token)
    ).send(encode(event()))
    assert fake_sink.requests[0].headers["authorization"] == "Basic xyz"


def test_sink_down_is_retryable_and_fast() -> None:
    started = time.monotonic()
    outcome = HttpTransport(closed_port_url(), timeout=2).send(encode(event()))
    assert outcome.result == RETRY and "refused" in outcome.detail.lower()
    assert time.monotonic() - started < 0.5


def test_slow_sink_times_out(fake_sink: FakeCloudEventsSink) -> None:
    fake_sink.answer(delay=1.0)
    started = time.monotonic()
    outcome = HttpTransport(fake_sink.url, timeout=0.2).send(encode(event()))
    assert outcome.result == RETRY and outcome.detail == "timed out"
    assert time.monotonic() - started < 0.8


def test_kept_alive_connection_closed_by_the_sink_is_reopened_at_once(
    fake_sink: FakeCloudEventsSink,
) -> None:
    transport = HttpTransport(fake_sink.url)
    assert transport.send(encode(event())).result == DELIVERED
    assert transport.send(encode(event())).result == DELIVERED
    fake_sink.answer(drop_keepalive=True)
    for _ in range(3):  # each time the kept-alive connection is dead; no backoff, no failure
        assert transport.send(encode(event())).result == DELIVERED
    assert len(fake_sink.accepted()) == 5
    transport.close()


def test_a_big_response_body_does_not_break_the_next_request(
    fake_sink: FakeCloudEventsSink,
) -> None:
    fake_sink.answer(status=200, body_size=200_000)
    transport = HttpTransport(fake_sink.url)
    assert transport.send(encode(event())).result == DELIVERED
    assert transport.send(encode(event())).result == DELIVERED
    transport.close()


@pytest.mark.parametrize("url", ["ftp://x/", "localhost:8080", "http:///nohost", ""])
def test_invalid_sink_urls(url: str) -> None:
    with pytest.raises(ValueError):
        HttpTransport(url)


# ---- HTTP framing: a scripted server answering raw bytes ----------------------------------------
class ScriptedServer:
    """A FAKE HTTP server on 127.0.0.1 answering each request with the next scripted raw answer.

    Each answer is sent after the whole request (head + Content-Length body) was read;
    ``close_after`` closes the connection after that answer. Records connections and requests.
    """

    def __init__(self, answers: "list[tuple[bytes, bool]]") -> None:
        import socket
        import threading

        self.answers = list(answers)
        self.connections = 0
        self.requests: "list[bytes]" = []
        self._srv = socket.socket()
        self._srv.bind(("127.0.0.1", 0))
        self._srv.listen(8)
        self.url = f"http://127.0.0.1:{self._srv.getsockname()[1]}/"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._srv.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                buf = b""
                while self.answers:
                    while b"\r\n\r\n" not in buf:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        buf += chunk
                    if b"\r\n\r\n" not in buf:
                        break
                    head, buf = buf.split(b"\r\n\r\n", 1)
                    length = int(
                        next(
                            line.split(b":", 1)[1]
                            for line in head.split(b"\r\n")
                            if line.lower().startswith(b"content-length:")
                        )
                    )
                    while len(buf) < length:
                        buf += conn.recv(65536)
                    self.requests.append(head + b"\r\n\r\n" + buf[:length])
                    buf = buf[length:]
                    answer, close_after = self.answers.pop(0)
                    conn.sendall(answer)
                    if close_after:
                        break

    def close(self) -> None:
        self._srv.close()


OK_202 = b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"


@pytest.mark.parametrize(
    "answer, reused",
    [
        (OK_202, True),
        (b"HTTP/1.1 202 Accepted\r\nContent-Length: 5\r\n\r\nhello", True),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\n\r\n", True),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-T: 1\r\n\r\n",
            True,
        ),
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n", True),
        (b"HTTP/1.1 204 No Content\r\n\r\n", True),
        (b"HTTP/1.1 202 Accepted\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", False),
        (b"HTTP/1.0 202 Accepted\r\nContent-Length: 0\r\n\r\n", False),
        (b"HTTP/1.0 202 Accepted\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", True),
    ],
)
def test_response_framing_and_connection_reuse(answer: bytes, reused: bool) -> None:
    server = ScriptedServer([(answer, False), (OK_202, False)])
    transport = HttpTransport(server.url)
    try:
        assert transport.send(encode(event())).result == DELIVERED
        assert transport.send(encode(event())).result == DELIVERED
        assert server.connections == (1 if reused else 2)
    finally:
        transport.close()
        server.close()


def test_response_without_length_ends_with_the_connection() -> None:
    server = ScriptedServer([(b"HTTP/1.1 202 Accepted\r\n\r\nbody until close", True)])
    transport = HttpTransport(server.url)
    assert transport.send(encode(event())).result == DELIVERED
    server.close()


@pytest.mark.parametrize(
    "answer, detail",
    [
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "not an HTTP/1.x status line"),
        (b"HTTP/1.1 20", "connection closed in the response head"),
        (b"", "connection closed by the sink without an answer"),
    ],
)
def test_unreadable_answers_are_retryable(answer: bytes, detail: str) -> None:
    server = ScriptedServer([(answer, True)])
    outcome = HttpTransport(server.url).send(encode(event()))
    assert outcome.result == RETRY and detail in outcome.detail
    server.close()


def test_request_bytes_on_the_wire() -> None:
    server = ScriptedServer([(OK_202, False)])
    transport = HttpTransport(server.url + "a%20b/c d?x=1&y=ü", headers={"user-agent": "mine"})
    req = encode(event())
    assert transport.send(req).result == DELIVERED
    raw = server.requests[0]
    head, body = raw.split(b"\r\n\r\n", 1)
    lines = head.decode("ascii").split("\r\n")
    port = server.url.rsplit(":", 1)[1].rstrip("/")
    assert lines[0] == "POST /a%20b/c%20d?x=1&y=%C3%BC HTTP/1.1"
    assert lines[1] == f"Host: 127.0.0.1:{port}"
    assert [line for line in lines if line.lower().startswith("user-agent")] == ["user-agent: mine"]
    assert f"Content-Length: {len(req.body)}" in lines and body == req.body
    transport.close()
    server.close()


@pytest.mark.parametrize("name", ["X Team", "X-Team:", "", "Ünicode"])
def test_invalid_header_names_are_refused_up_front(name: str) -> None:
    with pytest.raises(ValueError):
        HttpTransport("http://127.0.0.1:1/", headers={name: "v"})


def _self_signed(tmp_path: Path) -> "tuple[Path, Path]":
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return key, cert


def test_https_sink_with_the_knative_ca(tmp_path: Path) -> None:
    import ssl
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    key, cert = _self_signed(tmp_path)
    seen = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802
            seen.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"https://127.0.0.1:{server.server_address[1]}/"
    try:
        # without the CA the certificate is not trusted: retryable, the detail says why
        untrusted = HttpTransport(url, timeout=2).send(encode(event()))
        assert untrusted.result == RETRY and "CERTIFICATE_VERIFY_FAILED" in untrusted.detail
        transport = HttpTransport(url, timeout=2, ca_certs_pem=cert.read_text())
        for _ in range(3):
            assert transport.send(encode(event())).result == DELIVERED
        transport.close()
        assert len(seen) == 3
    finally:
        server.shutdown()
        server.server_close()
