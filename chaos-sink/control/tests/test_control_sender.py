"""The background queue: retries, backoff, bounded waiting, logging once (sender.py).

Uses the FAKE sink (down / slow / 503) and the real HTTP transport.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timezone
from typing import List

import pytest

from chaoscloudevents.events import EventFactory
from chaoscloudevents.handler import CloudEventsRunHandler
from chaoscloudevents.sender import RetryPolicy, Sender
from chaoscloudevents.transport import DELIVERED, HttpRequest, HttpTransport, SendOutcome, encode
from fake_cloudevents_sink import FakeCloudEventsSink, closed_port_url

T0 = datetime(2026, 11, 22, 20, 50, 12, tzinfo=timezone.utc)
FAST = RetryPolicy(max_retries=3, initial_backoff=0.01, max_backoff=0.05, max_retry_after=0.2)


def requests(n: int) -> List[HttpRequest]:
    f = EventFactory(
        run_id="0b7c2f7e-3d0a-4f43-9a57-6f7a0c1e2d3f",
        experiment_ref="1c412acecabe4a229a1e7532",
        hostname="h",
        title="t",
    )
    return [encode(f.section_started("org.chaostoolkit.method.started", T0)) for _ in range(n)]


def sender_for(
    url: str, policy: RetryPolicy = FAST, queue_size: int = 1000, timeout: float = 1.0
) -> Sender:
    return Sender(
        HttpTransport(url, timeout=timeout), sink_label=url, queue_size=queue_size, policy=policy
    )


def warnings(caplog: pytest.LogCaptureFixture) -> List[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "chaostoolkit.cloudevents" and r.levelno >= logging.WARNING
    ]


def test_delivers_everything_in_order(
    fake_sink: FakeCloudEventsSink, caplog: pytest.LogCaptureFixture
) -> None:
    sender = sender_for(fake_sink.url)
    reqs = requests(30)
    for r in reqs:
        assert sender.submit(r)
    assert sender.flush(5)
    stats = sender.close(1)
    assert [r.headers["ce-id"] for r in fake_sink.requests] == [r.event_id for r in reqs]
    assert (stats.submitted, stats.delivered, stats.lost, stats.retried) == (30, 30, 0, 0)
    assert warnings(caplog) == []


def test_retries_keep_the_event_id_and_order(fake_sink: FakeCloudEventsSink) -> None:
    fake_sink.answer(status=503, fail_first=2)
    sender = sender_for(fake_sink.url)
    reqs = requests(3)
    for r in reqs:
        sender.submit(r)
    stats = sender.close(5)
    ids = [r.headers["ce-id"] for r in fake_sink.requests]
    first = reqs[0].event_id
    assert ids == [first, first, first, reqs[1].event_id, reqs[2].event_id]
    assert (stats.delivered, stats.retried, stats.lost) == (3, 2, 0)


def test_retry_after_is_honoured_up_to_a_cap(fake_sink: FakeCloudEventsSink) -> None:
    fake_sink.answer(status=429, retry_after="30", fail_first=1)
    sender = sender_for(fake_sink.url)  # max_retry_after=0.2
    sender.submit(requests(1)[0])
    assert sender.flush(3)
    first, second = fake_sink.requests
    assert 0.15 <= second.received_at - first.received_at < 1.0


def test_rejected_events_are_not_retried(
    fake_sink: FakeCloudEventsSink, caplog: pytest.LogCaptureFixture
) -> None:
    fake_sink.answer(status=400)
    sender = sender_for(fake_sink.url)
    for r in requests(3):
        sender.submit(r)
    stats = sender.close(3)
    assert len(fake_sink.requests) == 3
    assert (stats.failed, stats.retried) == (3, 0)
    logged = warnings(caplog)
    assert len(logged) == 2 and "rejected (HTTP 400)" in logged[0] and "3 of 3" in logged[1]


def test_sink_down_costs_nothing_per_event_and_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sender = sender_for(closed_port_url(), policy=RetryPolicy(max_retries=4, initial_backoff=0.2))
    started = time.perf_counter()
    for r in requests(200):
        sender.submit(r)
    submit_seconds = time.perf_counter() - started
    assert submit_seconds < 0.2  # far below 1 ms per event: submit never waits for the network
    started = time.monotonic()
    stats = sender.close(5.0)
    # connections are refused: the flush gives up at once instead of using its 5 s
    assert time.monotonic() - started < 1.0
    assert stats.delivered == 0 and stats.lost == 200
    logged = warnings(caplog)
    assert len(logged) == 2, logged  # first failure + end-of-run summary, not one per event
    assert "not delivered" in logged[0] and "refused" in logged[0].lower()
    assert "200 of 200 events could not be delivered" in logged[1]


class CountingTransport:
    """The real transport, counting the attempts."""

    def __init__(self, url: str) -> None:
        self.inner = HttpTransport(url, timeout=1.0)
        self.attempts = 0

    def send(self, request: HttpRequest) -> SendOutcome:
        self.attempts += 1
        return self.inner.send(request)

    def close(self) -> None:
        self.inner.close()


def test_sink_down_at_the_end_of_the_run_is_not_tried_once_per_event() -> None:
    transport = CountingTransport(closed_port_url())
    sender = Sender(transport, sink_label="down", policy=RetryPolicy(max_retries=4))
    for r in requests(100):
        sender.submit(r)
    stats = sender.close(5.0)
    assert stats.failed == 100 and stats.lost == 100
    # the first event during the run (then its backoff is cut short by the end of the run), its
    # retry at the end: refused, so the 99 others are given up without a connection attempt each
    assert transport.attempts <= 2


def test_sink_that_comes_back_after_a_refusal_during_the_run_gets_the_events(
    fake_sink: FakeCloudEventsSink,
) -> None:
    """A refusal during the run is retried as usual; only a refusal at the end gives up."""
    port = fake_sink.port
    fake_sink.stop()
    transport = CountingTransport(f"http://127.0.0.1:{port}/")
    policy = RetryPolicy(max_retries=10, initial_backoff=0.05)
    sender = Sender(transport, sink_label="flaky", policy=policy)
    for r in requests(5):
        sender.submit(r)
    time.sleep(0.2)
    restarted = FakeCloudEventsSink()
    restarted.port = port  # the sink comes back on the same port
    restarted.start()
    try:
        stats = sender.close(5.0)
        assert stats.delivered == 5 and stats.lost == 0
        assert len(restarted.accepted()) == 5
    finally:
        restarted.stop()


def test_sink_answering_503_is_retried_until_the_flush_timeout(
    fake_sink: FakeCloudEventsSink,
) -> None:
    fake_sink.answer(status=503)
    sender = sender_for(fake_sink.url, policy=RetryPolicy(max_retries=50, initial_backoff=0.05))
    sender.submit(requests(1)[0])
    started = time.monotonic()
    stats = sender.close(0.6)
    assert 0.55 <= time.monotonic() - started < 0.9
    assert stats.lost == 1 and len(fake_sink.requests) >= 3


def test_slow_sink_close_waits_at_most_the_flush_timeout(fake_sink: FakeCloudEventsSink) -> None:
    fake_sink.answer(delay=0.4)
    sender = sender_for(fake_sink.url, timeout=5)
    for r in requests(10):
        sender.submit(r)
    started = time.monotonic()
    sender.close(0.3)
    assert time.monotonic() - started < 0.5


def test_timeouts_are_retried(fake_sink: FakeCloudEventsSink) -> None:
    fake_sink.answer(delay=0.3, fail_first=1)  # only the first answer is slow
    sender = sender_for(fake_sink.url, timeout=0.1)
    sender.submit(requests(1)[0])
    stats = sender.close(3)
    assert stats.delivered == 1 and stats.retried >= 1


class GatedTransport:
    """A transport that blocks until released, to fill the queue deterministically."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.sent: List[str] = []

    def send(self, request: HttpRequest) -> SendOutcome:
        self.gate.wait(5)
        self.sent.append(request.event_id)
        return SendOutcome(DELIVERED, "ok")

    def close(self) -> None:
        pass


def test_full_queue_drops_the_oldest_events(caplog: pytest.LogCaptureFixture) -> None:
    transport = GatedTransport()
    sender = Sender(transport, sink_label="gated", queue_size=3, policy=FAST)
    reqs = requests(10)
    sender.submit(reqs[0])
    deadline = time.monotonic() + 2
    while sender.pending() and not sender._inflight and time.monotonic() < deadline:  # noqa: SLF001
        time.sleep(0.005)
    for r in reqs[1:]:
        sender.submit(r)
    transport.gate.set()
    stats = sender.close(3)
    # the first was in flight; of the nine queued behind it only the newest three survive
    assert transport.sent == [reqs[0].event_id] + [r.event_id for r in reqs[-3:]]
    assert (stats.delivered, stats.dropped) == (4, 6)
    assert sum("queue" in m and "full" in m for m in warnings(caplog)) == 1


def test_submit_after_close_is_refused() -> None:
    sender = Sender(GatedTransport(), sink_label="x", policy=FAST)
    sender.close(0.1)
    assert sender.submit(requests(1)[0]) is False
    assert sender.stats.dropped == 1


def test_a_crashing_transport_does_not_kill_the_sender() -> None:
    class Crashing(GatedTransport):
        def send(self, request: HttpRequest) -> SendOutcome:
            if not self.sent:
                self.sent.append("crash")
                raise RuntimeError("bug")
            return super().send(request)

    transport = Crashing()
    transport.gate.set()
    sender = Sender(transport, sink_label="x", policy=FAST)
    for r in requests(2):
        sender.submit(r)
    stats = sender.close(2)
    assert (stats.failed, stats.delivered) == (1, 1)


def test_backoff_policy() -> None:
    policy = RetryPolicy(max_retries=5, initial_backoff=0.2, max_backoff=2.0, max_retry_after=10.0)
    for attempt, ceiling in [(0, 0.2), (1, 0.4), (2, 0.8), (3, 1.6), (4, 2.0), (9, 2.0)]:
        for _ in range(20):
            assert ceiling / 2 <= policy.delay(attempt) <= ceiling
    assert policy.delay(0, retry_after=3) == 3
    assert policy.delay(0, retry_after=60) == 10.0


def test_per_activity_overhead_with_the_sink_down() -> None:
    """What an activity pays for the control when the sink is down: two hook calls (started,
    finished), each building, redacting and encoding an event and queueing it."""
    url = closed_port_url()
    factory = EventFactory(
        run_id="0b7c2f7e-3d0a-4f43-9a57-6f7a0c1e2d3f",
        experiment_ref="1c412acecabe4a229a1e7532",
        hostname="h",
        title="t",
    )
    handler = CloudEventsRunHandler(factory, sender_for(url), sink_label=url, flush_timeout=0.2)
    activity = {"type": "action", "name": "a", "provider": {"type": "process", "path": "true"}}
    run = {
        "activity": activity,
        "output": {"status": 0, "stdout": "x" * 5000, "stderr": ""},
        "start": T0.isoformat(),
        "status": "succeeded",
        "end": T0.isoformat(),
        "duration": 0.0,
    }
    handler.start_method({})
    n = 300
    started = time.perf_counter()
    for _ in range(n):
        handler.start_activity(activity)
        handler.activity_completed(activity, run)
    per_activity = (time.perf_counter() - started) / n
    handler.finish({})
    print(f"\nper-activity overhead with the sink down: {per_activity * 1e6:.0f} µs")
    assert per_activity < 0.005


class OverlapTransport:
    """Records what it sends and how many sends overlap (across every transport of one counter)."""

    def __init__(self, counter: "Overlap") -> None:
        self.counter = counter

    def send(self, request: HttpRequest) -> SendOutcome:
        self.counter.enter(request)
        time.sleep(0.01)  # long enough for the other sender threads to take events meanwhile
        self.counter.leave(request)
        return SendOutcome(DELIVERED, "ok")

    def close(self) -> None:
        pass


class Overlap:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.most = 0
        self.started: List[str] = []
        self.overlapped_barrier = False

    def enter(self, request: HttpRequest) -> None:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
            self.started.append(request.event_type)
            if request.event_type.startswith("org.chaostoolkit.experiment.") and self.now > 1:
                self.overlapped_barrier = True

    def leave(self, request: HttpRequest) -> None:
        with self.lock:
            self.now -= 1
            if request.event_type.startswith("org.chaostoolkit.experiment.") and self.now > 0:
                self.overlapped_barrier = True


def test_concurrent_senders_keep_the_runs_start_first_and_end_last() -> None:
    middle = requests(20)
    start = HttpRequest("s", "org.chaostoolkit.experiment.started", {}, b"{}")
    end = HttpRequest("e", "org.chaostoolkit.experiment.finished", {}, b"{}")
    counter = Overlap()
    sender = Sender(OverlapTransport(counter), sink_label="x", policy=FAST, concurrency=4,
                    transport_factory=lambda: OverlapTransport(counter))
    for r in [start, *middle, end]:
        sender.submit(r)
    stats = sender.close(10)
    assert stats.delivered == 22 and stats.lost == 0
    assert counter.started[0] == "org.chaostoolkit.experiment.started"
    assert counter.started[-1] == "org.chaostoolkit.experiment.finished"
    assert not counter.overlapped_barrier, "the run's start and end go alone"
    assert counter.most == 4, "up to `concurrency` events in flight"


def test_concurrency_1_delivers_in_submission_order() -> None:
    counter = Overlap()
    reqs = requests(10)
    sender = Sender(OverlapTransport(counter), sink_label="x", policy=FAST, concurrency=1,
                    transport_factory=lambda: OverlapTransport(counter))
    for r in reqs:
        sender.submit(r)
    assert sender.close(10).delivered == 10
    assert counter.most == 1
