"""Background delivery: a bounded queue drained by daemon threads, with retries and backoff.

The experiment only ever pays for :meth:`Sender.submit` (append to a deque under a lock) and,
once at the end of the run, for :meth:`Sender.close`, which waits at most ``flush_timeout``
seconds (and not at all for a sink that refuses connections: after one refused attempt at the
end, the rest of the queue is given up).

Up to ``concurrency`` events are in flight at once, each sender thread with its own connection
(threads are started only while the queue is longer than the idle threads). A sink that answers
an event once its backends have it (chaos-sink) takes the events of concurrent requests into one
backend write, so the queue left at the end of a run drains several times faster than one
request at a time. The run's ``experiment.started`` goes alone and first, its
``experiment.finished`` alone and last; the events between them reach the sink in about, not
exactly, the order Chaos Toolkit produced them, which the sink handles (a Knative Broker does not
keep the order either). ``concurrency=1`` delivers every event one at a time in submission order,
an event being retried holding back the next ones.

The sender thread shares the interpreter lock with the experiment, so what it does per event
is kept small (see ``transport.HttpTransport`` and ``bench/overhead.py``).

Failures are logged once per sender (the first failed attempt), plus one summary line at the
end when events were lost. Nothing here raises into the caller.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from typing import Callable, Deque, List, Optional, Protocol

from chaoscloudevents.transport import DELIVERED, REJECTED, HttpRequest, SendOutcome

__all__ = ["RetryPolicy", "Sender", "SenderStats", "Transport"]

logger = logging.getLogger("chaostoolkit.cloudevents")


#: Event types delivered alone: the run's start before any other event, its end after all of them.
_BARRIERS = ("org.chaostoolkit.experiment.started", "org.chaostoolkit.experiment.finished")


def _is_barrier(request: HttpRequest) -> bool:
    return request.event_type in _BARRIERS


class Transport(Protocol):
    """What the sender needs from a transport (see :class:`~chaoscloudevents.transport.HttpTransport`)."""

    def send(self, request: HttpRequest) -> SendOutcome:
        """Try to deliver once."""

    def close(self) -> None:
        """Release connections."""


class RetryPolicy:
    """Exponential backoff with full jitter, capped; ``Retry-After`` honoured up to a cap."""

    __slots__ = ("max_retries", "initial_backoff", "max_backoff", "max_retry_after")

    def __init__(
        self,
        max_retries: int = 4,
        initial_backoff: float = 0.2,
        max_backoff: float = 2.0,
        max_retry_after: float = 10.0,
    ) -> None:
        self.max_retries = max_retries
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.max_retry_after = max_retry_after

    def delay(self, attempt: int, retry_after: Optional[float] = None) -> float:
        """Seconds to wait before retry number ``attempt + 1`` (``attempt`` starts at 0)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        ceiling = min(self.max_backoff, self.initial_backoff * (2**attempt))
        return random.uniform(ceiling / 2, ceiling)


class SenderStats:
    """Counters of one sender (one run)."""

    __slots__ = ("submitted", "delivered", "retried", "failed", "dropped", "unconfirmed")

    def __init__(
        self,
        submitted: int = 0,
        delivered: int = 0,
        retried: int = 0,
        failed: int = 0,
        dropped: int = 0,
        unconfirmed: int = 0,  # still in flight when the flush timeout ran out
    ) -> None:
        self.submitted = submitted
        self.delivered = delivered
        self.retried = retried
        self.failed = failed
        self.dropped = dropped
        self.unconfirmed = unconfirmed

    @property
    def lost(self) -> int:
        """Events that did not (or not provably) reach the sink."""
        return self.failed + self.dropped + self.unconfirmed

    def copy(self, **changes: int) -> "SenderStats":
        """A snapshot, with some counters replaced."""
        values = {name: getattr(self, name) for name in self.__slots__}
        values.update(changes)
        return SenderStats(**values)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SenderStats):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in self.__slots__)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        counts = ", ".join(f"{n}={getattr(self, n)}" for n in self.__slots__)
        return f"SenderStats({counts})"


class Sender:
    """Delivers :class:`HttpRequest` objects through a transport in a background thread."""

    def __init__(
        self,
        transport: Transport,
        sink_label: str,
        queue_size: int = 1000,
        policy: RetryPolicy = RetryPolicy(),
        concurrency: int = 1,
        transport_factory: Optional[Callable[[], Transport]] = None,
    ) -> None:
        self._transport = transport
        self._transport_factory = transport_factory
        self._sink = sink_label
        self._max = max(int(queue_size), 1)
        self._policy = policy
        # more than one thread needs a connection each
        self._concurrency = max(int(concurrency), 1) if transport_factory else 1
        self._queue: Deque[HttpRequest] = deque()
        self._cond = threading.Condition()
        self._inflight = 0
        self._barrier_inflight = False  # the run's start or end is in flight: nothing else goes
        self._idle = 0  # sender threads waiting for an event
        self._closed = False
        self._closing = threading.Event()  # the run is over: flushing
        self._abandon = threading.Event()  # the flush window is over: give up
        self._threads: List[threading.Thread] = []
        self._warned = False
        self._drop_warned = False
        self._unreachable = False  # refused at the end of the run: give up on the queue
        self._final: Optional[SenderStats] = None
        self.stats = SenderStats()

    # ---- producer side (Chaos Toolkit's threads) ---------------------------------------------
    def submit(self, request: HttpRequest) -> bool:
        """Queue ``request`` without blocking. When the queue is full the *oldest* event is
        dropped, so the latest state of the run (its end) is what survives an outage."""
        with self._cond:
            if self._closed:
                self.stats.dropped += 1
                return False
            self.stats.submitted += 1
            if len(self._queue) >= self._max:
                self._queue.popleft()
                self.stats.dropped += 1
                if not self._drop_warned:
                    self._drop_warned = True
                    logger.warning(
                        "CloudEvents queue for %s is full (%d events): dropping the oldest events",
                        self._sink,
                        self._max,
                    )
            self._queue.append(request)
            self._ensure_thread()
            self._cond.notify_all()
        return True

    def _ensure_thread(self) -> None:
        """Starts a sender thread when the queue is longer than the idle ones can take (called
        with the lock held)."""
        if len(self._threads) >= self._concurrency or len(self._queue) <= self._idle:
            return
        transport = self._transport if not self._threads else self._transport_factory()  # type: ignore[misc]
        thread = threading.Thread(
            target=self._run,
            args=(transport,),
            name=f"chaostoolkit-cloudevents-sender-{len(self._threads)}",
            daemon=True,
        )
        self._threads.append(thread)
        thread.start()

    def pending(self) -> int:
        """Events queued or in flight."""
        with self._cond:
            return len(self._queue) + self._inflight

    def flush(self, timeout: float) -> bool:
        """Wait until every queued event was handled, at most ``timeout`` seconds."""
        deadline = time.monotonic() + max(timeout, 0.0)
        with self._cond:
            while self._queue or self._inflight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def close(self, timeout: float) -> SenderStats:
        """Stop accepting events, flush for at most ``timeout`` seconds, give up on the rest.

        Returns a snapshot of the counters at that moment (an attempt still in flight is counted
        as ``unconfirmed``). Calling it again returns the same snapshot.
        """
        with self._cond:
            if self._final is not None:
                return self._final
            self._closed = True
            self._cond.notify_all()
        self._closing.set()
        flushed = self.flush(timeout)
        self._abandon.set()
        with self._cond:
            if not flushed:
                self.stats.dropped += len(self._queue)
                self._queue.clear()
            final = self.stats.copy(unconfirmed=self._inflight)
            self._final = final
            self._cond.notify_all()
        if final.lost:
            logger.warning(
                "CloudEvents: %d of %d events could not be delivered to %s (flush timeout %.1f s)",
                final.lost,
                final.submitted,
                self._sink,
                timeout,
            )
        else:
            logger.debug(
                "CloudEvents: %d events delivered to %s (%d retries)",
                final.delivered,
                self._sink,
                final.retried,
            )
        return final

    # ---- consumer side (the sender thread) --------------------------------------------------
    def _can_take(self) -> bool:
        """The head of the queue may go now: nothing goes while the run's start or end is in
        flight, and those two go only when nothing else is."""
        if self._barrier_inflight:
            return False
        return not (_is_barrier(self._queue[0]) and self._inflight > 0)

    def _run(self, transport: Transport) -> None:
        while True:
            with self._cond:
                self._idle += 1
                while True:
                    if self._unreachable and self._queue:
                        # the run is over and nothing listens at the sink's address: the rest
                        # of the queue would be refused too, one connection attempt each
                        self.stats.failed += len(self._queue)
                        self._queue.clear()
                        self._cond.notify_all()
                    if self._queue and self._can_take():
                        break
                    if self._closed and not self._queue:
                        break
                    self._cond.wait()
                self._idle -= 1
                if not self._queue:
                    break
                request = self._queue.popleft()
                barrier = _is_barrier(request)
                self._inflight += 1
                self._barrier_inflight = barrier
            try:
                self._deliver(transport, request)
            except Exception:  # a bug here must not kill the thread silently or block flush
                with self._cond:
                    self.stats.failed += 1
                logger.debug(
                    "CloudEvents sender failed on event %s", request.event_id, exc_info=True
                )
            finally:
                with self._cond:
                    self._inflight -= 1
                    if barrier:
                        self._barrier_inflight = False
                    self._cond.notify_all()
        transport.close()

    def _deliver(self, transport: Transport, request: HttpRequest) -> None:
        attempt = 0
        while True:
            outcome = transport.send(request)
            if outcome.result == DELIVERED:
                self._count("delivered")
                return
            self._warn_once(request, outcome)
            if outcome.result == REJECTED:
                self._count("failed")
                return
            if (
                attempt >= self._policy.max_retries
                or self._abandon.is_set()
                # at the end of the run a sink that refuses connections will not take the rest
                # in time: do not spend the flush window on it (timeouts and 5xx are retried)
                or (outcome.unreachable and self._closing.is_set())
            ):
                self._count("failed")
                if outcome.unreachable and self._closing.is_set():
                    self._unreachable = True
                return
            attempt += 1
            self._count("retried")
            if self._pause(self._policy.delay(attempt - 1, outcome.retry_after)):
                self._count("failed")
                return

    def _count(self, counter: str) -> None:
        with self._cond:
            setattr(self.stats, counter, getattr(self.stats, counter) + 1)

    def _pause(self, delay: float) -> bool:
        """Wait before a retry; True when the flush window ran out meanwhile.

        While the run goes on, the end of the run cuts the wait short (the next attempt then
        tells at once whether the sink is reachable at all)."""
        if not self._closing.is_set():
            self._closing.wait(delay)
        else:
            self._abandon.wait(delay)
        return self._abandon.is_set()

    def _warn_once(self, request: HttpRequest, outcome: SendOutcome) -> None:
        with self._cond:
            first, self._warned = not self._warned, True
        if not first:
            logger.debug(
                "CloudEvents: %s %s to %s: %s",
                request.event_type,
                request.event_id,
                self._sink,
                outcome.detail,
            )
            return
        what = (
            "rejected"
            if outcome.result == REJECTED
            else "not delivered, retrying in the background"
        )
        logger.warning(
            "CloudEvents sink %s: %s (%s); the experiment carries on, "
            "further delivery errors of this run are logged at debug level",
            self._sink,
            what,
            outcome.detail,
        )
