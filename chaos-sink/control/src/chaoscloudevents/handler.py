"""The run event handler: follows one Chaos Toolkit run and emits its CloudEvents.

Chaos Toolkit (chaostoolkit-lib 1.44+) notifies a registered ``RunEventHandler`` of every step of
a run: ``running`` (after the controls were configured; the journal has its ``start``), the
steady-state hypothesis before/after (and continuously during) the method, the method, the
rollbacks, each activity, an interruption, and ``finish`` with the final journal (after
``cleanup_control``). This class keeps the little state needed to pair starts with ends and to
tell which phase an activity belongs to, asks :class:`~chaoscloudevents.events.EventFactory` for
the events, and hands them to the background :class:`~chaoscloudevents.sender.Sender`.

Every public method is guarded: an error in this code is logged once and swallowed, so the
control can never break or stop an experiment.
"""

from __future__ import annotations

import functools
import logging
import threading
from datetime import datetime
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, TypeVar

from chaoslib.run import RunEventHandler

from chaoscloudevents.events import (
    ALL_EVENT_TYPES,
    METHOD_FINISHED,
    METHOD_STARTED,
    ROLLBACKS_FINISHED,
    ROLLBACKS_STARTED,
    CloudEvent,
    EventFactory,
    hypothesis_met,
    merge_met,
    utc_now,
)
from chaoscloudevents.sender import Sender, SenderStats
from chaoscloudevents.transport import BINARY, encode

__all__ = ["CloudEventsRunHandler"]

logger = logging.getLogger("chaostoolkit.cloudevents")

F = TypeVar("F", bound=Callable[..., Any])

HYPOTHESIS_PHASES = ("before", "during", "after")
#: the only types this control sends: those of the design (docs/chaos-events.md, the schema)
_EMITTED_TYPES = frozenset(ALL_EVENT_TYPES)


def _guarded(func: F) -> F:
    """Run a handler method under the handler's lock; never let an exception escape."""

    @functools.wraps(func)
    def wrapper(self: "CloudEventsRunHandler", *args: Any, **kwargs: Any) -> Any:
        try:
            with self._lock:
                return func(self, *args, **kwargs)
        except Exception:
            self._report_internal_error(func.__name__)
            return None

    return wrapper  # type: ignore[return-value]


class CloudEventsRunHandler(RunEventHandler):  # type: ignore[misc]  # chaoslib is untyped
    """Emits the CloudEvents of one run (see ``docs/chaos-events.md`` for the sequence)."""

    def __init__(
        self,
        factory: EventFactory,
        sender: Sender,
        sink_label: str,
        mode: str = BINARY,
        flush_timeout: float = 5.0,
        hypothesis_title: str = "",
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.factory = factory
        self.hypothesis_title = hypothesis_title
        self.sender = sender
        self.sink_label = sink_label
        self.mode = mode
        self.flush_timeout = flush_timeout
        self._clock = clock
        self._lock = threading.RLock()
        self._phase: Optional[str] = None
        self._during_thread: Optional[int] = None
        self._during_met: List[Optional[bool]] = []
        self._open: Dict[str, Tuple[datetime, str]] = {}  # scope -> (start, hypothesis title)
        self._activity_phase: Dict[Tuple[int, int], str] = {}
        self._pending_probes: Dict[str, List[Tuple[Mapping[str, Any], Mapping[str, Any]]]] = {
            phase: [] for phase in HYPOTHESIS_PHASES
        }
        self._started = False
        self._finished = False
        self._error_reported = False
        self.stats: Optional[SenderStats] = None

    # ---- plumbing ---------------------------------------------------------------------------
    def _emit(self, event: CloudEvent) -> None:
        if event.type not in _EMITTED_TYPES:
            # a receiver validating against the schema would refuse it (or store it untyped)
            logger.debug("CloudEvents control: not sending an event of type %r", event.type)
            return
        self.sender.submit(encode(event, self.mode))

    def _report_internal_error(self, where: str) -> None:
        if not self._error_reported:
            self._error_reported = True
            logger.warning(
                "CloudEvents control: internal error in %s, the experiment carries on "
                "(details at debug level)",
                where,
            )
        logger.debug("CloudEvents control error in %s", where, exc_info=True)

    def _current_phase(self) -> str:
        if self._during_thread is not None and threading.get_ident() == self._during_thread:
            return "during"
        return self._phase or "method"

    def _hypothesis_title(self, experiment: Optional[Mapping[str, Any]]) -> str:
        hypothesis = (experiment or {}).get("steady-state-hypothesis") or {}
        return str(hypothesis.get("title") or self.hypothesis_title)

    def _open_hypothesis(self, phase: str, experiment: Optional[Mapping[str, Any]]) -> None:
        title = self._hypothesis_title(experiment)
        start = self._clock()
        self._open[f"hypothesis:{phase}"] = (start, title)
        self._emit(self.factory.hypothesis_started(title, phase, start))

    def _close_hypothesis(self, phase: str, met: Optional[bool]) -> None:
        self._flush_probes(phase)
        opened = self._open.pop(f"hypothesis:{phase}", None)
        if opened is None:
            return
        start, title = opened
        self._emit(self.factory.hypothesis_finished(title, phase, start, self._clock(), met))

    def _flush_probes(self, phase: str) -> None:
        """Emit the ``activity.finished`` events held back until ``tolerance_met`` was known."""
        pending, self._pending_probes[phase] = self._pending_probes[phase], []
        for activity, run in pending:
            self._emit(self.factory.activity_finished(activity, run, phase, self._clock()))

    def _open_section(self, scope: str, event_type: str) -> None:
        start = self._clock()
        self._open[scope] = (start, "")
        self._emit(self.factory.section_started(event_type, start))

    def _close_section(self, scope: str, event_type: str) -> None:
        opened = self._open.pop(scope, None)
        if opened is not None:
            self._emit(self.factory.section_finished(event_type, opened[0], self._clock()))

    def _close_everything(self) -> None:
        """Close scopes Chaos Toolkit never closed (an interruption, a crash)."""
        for phase in HYPOTHESIS_PHASES:
            if f"hypothesis:{phase}" in self._open:
                self._close_hypothesis(
                    phase, merge_met(self._during_met) if phase == "during" else None
                )
            else:
                self._flush_probes(phase)
        self._close_section("method", METHOD_FINISHED)
        self._close_section("rollbacks", ROLLBACKS_FINISHED)

    # ---- experiment -------------------------------------------------------------------------
    @_guarded
    def running(
        self,
        experiment: Mapping[str, Any],
        journal: Mapping[str, Any],
        configuration: Any = None,
        secrets: Any = None,
        schedule: Any = None,
        settings: Any = None,
    ) -> None:
        """The run has started (controls are configured): emit ``experiment.started``."""
        if self._started:
            return
        self._started = True
        self._emit(self.factory.experiment_started(experiment, journal, self._clock()))

    @_guarded
    def interrupted(self, experiment: Mapping[str, Any], journal: Mapping[str, Any]) -> None:
        """``InterruptExecution`` was raised: a hypothesis in progress will never complete."""
        for phase in ("before", "after"):
            if f"hypothesis:{phase}" in self._open:
                self._close_hypothesis(phase, None)

    @_guarded
    def signal_exit(self) -> None:
        """Ctrl-C or an exit signal: same as :meth:`interrupted`."""
        for phase in ("before", "after"):
            if f"hypothesis:{phase}" in self._open:
                self._close_hypothesis(phase, None)

    def finish(self, journal: Mapping[str, Any]) -> None:
        """The run is over: emit ``experiment.finished`` and flush for at most ``flush_timeout``."""
        self._finish_events(journal)
        try:
            self.close()
        except Exception:
            self._report_internal_error("finish")

    @_guarded
    def _finish_events(self, journal: Mapping[str, Any]) -> None:
        if self._finished:
            return
        self._finished = True
        self._close_everything()
        self._emit(self.factory.experiment_finished(journal or {}, self._clock()))

    def close(self) -> Optional[SenderStats]:
        """Flush and stop the sender (idempotent; bounded by ``flush_timeout``)."""
        if self.stats is None:
            self.stats = self.sender.close(self.flush_timeout)
        return self.stats

    # ---- steady-state hypothesis ------------------------------------------------------------
    @_guarded
    def start_hypothesis_before(self, experiment: Mapping[str, Any]) -> None:
        """The hypothesis runs before the method."""
        self._phase = "before"
        self._open_hypothesis("before", experiment)

    @_guarded
    def hypothesis_before_completed(
        self, experiment: Mapping[str, Any], state: Any, journal: Mapping[str, Any]
    ) -> None:
        """The hypothesis before the method is done (``met`` may be false: the gate)."""
        self._close_hypothesis("before", hypothesis_met(state))

    @_guarded
    def start_hypothesis_after(self, experiment: Mapping[str, Any]) -> None:
        """The hypothesis runs after the method."""
        self._phase = "after"
        self._open_hypothesis("after", experiment)

    @_guarded
    def hypothesis_after_completed(
        self, experiment: Mapping[str, Any], state: Any, journal: Mapping[str, Any]
    ) -> None:
        """The hypothesis after the method is done (not met = the run deviated)."""
        self._close_hypothesis("after", hypothesis_met(state))

    @_guarded
    def start_continuous_hypothesis(self, frequency: Any) -> None:
        """Continuous mode: the hypothesis runs repeatedly in its own thread during the method."""
        self._during_thread = threading.get_ident()
        self._during_met = []
        self._open_hypothesis("during", None)

    @_guarded
    def continuous_hypothesis_iteration(self, iteration_index: int, state: Any) -> None:
        """One iteration of the continuous hypothesis finished."""
        self._during_met.append(hypothesis_met(state))
        self._flush_probes("during")

    @_guarded
    def continuous_hypothesis_completed(
        self, experiment: Mapping[str, Any], journal: Mapping[str, Any], exception: Any = None
    ) -> None:
        """The continuous hypothesis stopped; ``met`` is true only if every iteration was met."""
        self._close_hypothesis("during", merge_met(self._during_met))
        self._during_thread = None

    # ---- method and rollbacks ---------------------------------------------------------------
    @_guarded
    def start_method(self, experiment: Mapping[str, Any]) -> None:
        """The method starts."""
        self._phase = "method"
        self._open_section("method", METHOD_STARTED)

    @_guarded
    def method_completed(self, experiment: Mapping[str, Any], state: Any = None) -> None:
        """The method ended (``state`` is ``None`` when it was interrupted or aborted)."""
        self._close_section("method", METHOD_FINISHED)

    @_guarded
    def start_rollbacks(self, experiment: Mapping[str, Any]) -> None:
        """The rollbacks start (Chaos Toolkit notifies this only when it plays them)."""
        self._phase = "rollbacks"
        self._open_section("rollbacks", ROLLBACKS_STARTED)

    @_guarded
    def rollbacks_completed(
        self, experiment: Mapping[str, Any], journal: Mapping[str, Any]
    ) -> None:
        """The rollbacks ended."""
        self._close_section("rollbacks", ROLLBACKS_FINISHED)

    # ---- activities -------------------------------------------------------------------------
    @_guarded
    def start_activity(self, activity: Mapping[str, Any]) -> None:
        """A probe or action starts (Chaos Toolkit has just stamped the run's ``start``)."""
        phase = self._current_phase()
        self._activity_phase[(id(activity), threading.get_ident())] = phase
        self._emit(self.factory.activity_started(activity, phase, self._clock()))

    @_guarded
    def activity_completed(self, activity: Mapping[str, Any], run: Mapping[str, Any]) -> None:
        """A probe or action ended; ``run`` is its journal entry.

        Steady-state probes are held back until their hypothesis completes, because Chaos
        Toolkit decides ``tolerance_met`` only after the probe returned.
        """
        phase = (
            self._activity_phase.pop((id(activity), threading.get_ident()), None)
            or self._current_phase()
        )
        if phase in HYPOTHESIS_PHASES:
            self._pending_probes[phase].append((activity, run))
            return
        self._emit(self.factory.activity_finished(activity, run, phase, self._clock()))
