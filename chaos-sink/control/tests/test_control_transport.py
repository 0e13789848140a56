"""Unit tests of the HTTP binding (transport.py), against the CloudEvents SDK and a FAKE sink."""

from __future__ import annotations

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
    assert req.headers == {"Content-Type": "application/cloudevents+json; charset=utf-8"}
    assert json.loads(req.body) == ev.to_structured()
    decoded = from_http(HTTPMessage(headers=dict(req.headers), body=req.body), JSONFormat())
    assert decoded.get_attributes()["subject"] == TITLE
    assert decoded.get_data() == ev.data


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
