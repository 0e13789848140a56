"""Unit tests of the event mapping (events.py) and of the run handler (handler.py)."""

from __future__ import annotations

import json
import logging
import math
import threading
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, List, Optional

import pytest
from chaoslib import experiment_hash
from chaoslib.types import Dry
from jsonschema import Draft202012Validator

from chaoscloudevents.events import (
    ALL_EVENT_TYPES,
    METHOD_STARTED,
    EventFactory,
    experiment_reference,
    format_time,
    parse_time,
    provider_summary,
    shorten_exception,
    shorten_output,
)
from chaoscloudevents.handler import CloudEventsRunHandler
from chaoscloudevents.redact import Redactor
from chaoscloudevents.sender import SenderStats
from chaoscloudevents.transport import STRUCTURED, HttpRequest

RUN_ID = "0b7c2f7e-3d0a-4f43-9a57-6f7a0c1e2d3f"
T0 = datetime(2026, 11, 22, 20, 50, 12, 635557, tzinfo=timezone.utc)


def iso(dt: datetime) -> str:
    """Chaos Toolkit's own timestamp format."""
    return dt.isoformat()


def factory(**overrides: Any) -> EventFactory:
    args: Dict[str, Any] = dict(
        run_id=RUN_ID,
        experiment_ref="1c412acecabe4a229a1e7532",
        hostname="host-1",
        title="My experiment",
        extensions={"team": "chaos"},
    )
    args.update(overrides)
    return EventFactory(**args)


# ---- times and references -------------------------------------------------------------------
@pytest.mark.parametrize(
    "value",
    [
        "2026-11-22T20:50:12.635557+00:00",
        "2026-11-22T20:50:12.635557Z",
        "2026-11-22T20:50:12.635557",
    ],
)
def test_parse_and_format_chaostoolkit_timestamps(value: str) -> None:
    assert format_time(parse_time(value)) == "2026-11-22T20:50:12.635557Z"


def test_times_are_converted_to_utc() -> None:
    assert format_time(parse_time("2026-11-22T21:50:12+01:00")) == "2026-11-22T20:50:12.000000Z"


@pytest.mark.parametrize("value", [None, "", "yesterday", 12])
def test_unparsable_times_are_none(value: Any) -> None:
    assert parse_time(value) is None


def test_experiment_reference_is_chaoslib_experiment_hash() -> None:
    experiment = {"title": "t", "description": "d", "method": [], "dry": None}
    ref = experiment_reference(experiment)
    assert ref == experiment_hash(experiment)
    assert len(ref) == 24 and int(ref, 16) >= 0


def test_experiment_reference_survives_the_dry_enum() -> None:
    experiment = {"title": "t", "description": "d", "method": [], "dry": Dry.ACTIONS}
    ref = experiment_reference(experiment)
    assert ref == experiment_hash({**experiment, "dry": "actions"})


# ---- attributes -----------------------------------------------------------------------------
def test_every_event_carries_the_run_attributes() -> None:
    event = factory().section_started("org.chaostoolkit.method.started", T0)
    attrs = event.attributes()
    assert attrs == {
        "specversion": "1.0",
        "id": event.id,
        "source": "urn:chaostoolkit:host-1",
        "type": "org.chaostoolkit.method.started",
        "time": "2026-11-22T20:50:12.635557Z",
        "datacontenttype": "application/json",
        "subject": "My experiment",
        "team": "chaos",
        "chaosrunid": RUN_ID,
        "chaosexperiment": "1c412acecabe4a229a1e7532",
        "partitionkey": RUN_ID,
    }
    assert event.to_structured()["data"] == {"start": "2026-11-22T20:50:12.635557Z"}


def test_user_extensions_cannot_replace_control_attributes() -> None:
    event = factory(extensions={"chaosrunid": "x", "partitionkey": "y", "id": "z"}).section_started(
        "org.chaostoolkit.method.started", T0
    )
    assert event.extensions["chaosrunid"] == event.extensions["partitionkey"] == RUN_ID
    assert "id" not in event.extensions


def test_event_ids_are_unique_uuids() -> None:
    import uuid

    f = factory()
    ids = {f.section_started("org.chaostoolkit.method.started", T0).id for _ in range(100)}
    assert len(ids) == 100
    for value in ids:
        parsed = uuid.UUID(value)
        assert str(parsed) == value and parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


@pytest.mark.parametrize(
    "dt",
    [
        datetime(2026, 11, 22, 20, 50, 12, 635557, tzinfo=timezone.utc),
        datetime(2026, 11, 22, 20, 50, 12, 0, tzinfo=timezone.utc),
        datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=timezone(timedelta(hours=-7, minutes=-30))),
        datetime(2026, 12, 31, 23, 59, 59, 999999),  # naive: taken as local time, as before
    ],
)
def test_format_time_is_rfc3339_utc_with_microseconds(dt: datetime) -> None:
    assert format_time(dt) == dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_empty_hostname() -> None:
    assert factory(hostname="").source == "urn:chaostoolkit:unknown"


# ---- experiment events from journal shapes ------------------------------------------------------
def journal(**fields: Any) -> Dict[str, Any]:
    base: Dict[str, Any] = {
        "start": iso(T0),
        "end": iso(T0 + timedelta(seconds=3)),
        "duration": 3.0001,
        "status": "completed",
        "deviated": False,
        "steady_states": {
            "before": {"steady_state_met": True, "probes": []},
            "after": {"steady_state_met": True, "probes": []},
            "during": [],
        },
    }
    base.update(fields)
    return base


def test_experiment_started() -> None:
    experiment = {"title": "My experiment", "description": "desc", "tags": ["a", "b"]}
    event = factory().experiment_started(experiment, journal(), T0 + timedelta(seconds=1))
    assert event.type == "org.chaostoolkit.experiment.started"
    assert event.time == "2026-11-22T20:50:12.635557Z"
    assert event.data == {
        "title": "My experiment",
        "description": "desc",
        "tags": ["a", "b"],
        "start": event.time,
        "dry": None,
    }


def test_experiment_started_without_description_and_tags() -> None:
    event = factory().experiment_started({"title": "x"}, journal(), T0)
    assert event.data["description"] is None and event.data["tags"] == []


@pytest.mark.parametrize(
    "dry, expected", [(None, None), (Dry.ACTIONS, "actions"), ("probes", "probes")]
)
def test_experiment_started_says_whether_the_run_is_dry(dry: Any, expected: Optional[str]) -> None:
    event = factory().experiment_started({"title": "x", "dry": dry}, journal(), T0)
    assert event.data["dry"] == expected


@pytest.mark.parametrize(
    "fields, status, deviated, before, after",
    [
        ({}, "completed", False, True, True),
        # deviated: completed + deviated
        (
            {
                "deviated": True,
                "steady_states": {
                    "before": {"steady_state_met": True},
                    "after": {"steady_state_met": False},
                },
            },
            "completed",
            True,
            True,
            False,
        ),
        # the gate: before-hypothesis not met is completed, not deviated
        (
            {"steady_states": {"before": {"steady_state_met": False}, "after": None}},
            "completed",
            False,
            False,
            None,
        ),
        (
            {
                "status": "failed",
                "steady_states": {"before": {"steady_state_met": False}, "after": None},
            },
            "failed",
            False,
            False,
            None,
        ),
        (
            {
                "status": "interrupted",
                "steady_states": {"before": {"steady_state_met": True}, "after": None},
            },
            "interrupted",
            False,
            True,
            None,
        ),
        ({"status": "aborted"}, "aborted", False, True, True),
        # no status and no end: Chaos Toolkit did not get to the end of the run
        (
            {"status": None, "end": None, "duration": None, "steady_states": {}},
            "aborted",
            False,
            None,
            None,
        ),
    ],
)
def test_experiment_finished_statuses(
    fields: Dict[str, Any],
    status: str,
    deviated: bool,
    before: Optional[bool],
    after: Optional[bool],
) -> None:
    now = T0 + timedelta(seconds=5)
    event = factory().experiment_finished(journal(**fields), now)
    d = event.data
    assert (d["status"], d["deviated"], d["before_hypothesis_met"], d["after_hypothesis_met"]) == (
        status,
        deviated,
        before,
        after,
    )
    assert d["start"] == format_time(T0)
    if fields.get("end", "x") is None:
        assert d["end"] == event.time == format_time(now) and d["duration"] == 5.0
    else:
        assert d["end"] == event.time == format_time(T0 + timedelta(seconds=3))
        assert d["duration"] == 3.0001


# ---- activities ---------------------------------------------------------------------------
PROBE = {
    "type": "probe",
    "name": "check",
    "tolerance": 0,
    "provider": {
        "type": "http",
        "url": "https://user:pw@api.example.com:8443/health?token=abc#x",
        "headers": {"Authorization": "Bearer abc"},
        "arguments": {"a": 1},
    },
}


def test_provider_summary_keeps_no_arguments_headers_or_credentials() -> None:
    assert provider_summary(PROBE["provider"]) == {
        "type": "http",
        "url": "https://api.example.com:8443/health",
    }
    assert provider_summary(
        {"type": "python", "module": "m", "func": "f", "arguments": {"x": 1}}
    ) == {"type": "python", "module": "m", "func": "f"}
    assert provider_summary({"type": "process", "path": "kubectl", "arguments": "delete pod"}) == {
        "type": "process",
        "path": "kubectl",
    }
    assert provider_summary(None) == {"type": "unknown"}


def test_activity_finished_from_a_run() -> None:
    run = {
        "activity": PROBE,
        "output": {"status": 200},
        "start": iso(T0),
        "status": "succeeded",
        "end": iso(T0 + timedelta(seconds=0.5)),
        "duration": 0.5,
        "tolerance_met": True,
    }
    event = factory().activity_finished(PROBE, run, "before", T0)
    assert event.time == "2026-11-22T20:50:13.135557Z"
    assert event.data == {
        "name": "check",
        "type": "probe",
        "provider": {"type": "http", "url": "https://api.example.com:8443/health"},
        "phase": "before",
        "start": "2026-11-22T20:50:12.635557Z",
        "status": "succeeded",
        "end": "2026-11-22T20:50:13.135557Z",
        "duration": 0.5,
        "tolerance_met": True,
        "output": {"status": 200},
        "exception": None,
    }


def test_activity_interrupted_mid_run_has_no_journal_status_and_is_failed() -> None:
    run = {"activity": PROBE, "output": None, "start": iso(T0), "end": iso(T0), "duration": 0.0}
    d = factory().activity_finished(PROBE, run, "method", T0).data
    assert d["status"] == "failed" and d["tolerance_met"] is None and d["exception"] is None


def test_exception_lines_are_joined_and_keep_their_end() -> None:
    lines = (
        ["Traceback (most recent call last):\n"]
        + [f'  File "x.py", line {i}\n' for i in range(500)]
        + ["chaoslib.exceptions.ActivityFailed: RuntimeError: the real reason\n"]
    )
    text = shorten_exception(lines, 300)
    assert len(text) <= 300
    assert text.startswith("…[truncated]")
    assert text.endswith("ActivityFailed: RuntimeError: the real reason\n")
    assert shorten_exception(None, 300) is None


def test_long_process_output_keeps_its_shape() -> None:
    out = shorten_output({"status": 0, "stdout": "x" * 100_000, "stderr": ""}, 2048)
    assert out["status"] == 0 and out["stderr"] == ""
    assert out["stdout"].endswith("…[truncated]") and len(out["stdout"]) == 512
    assert len(json.dumps(out)) <= 2048


def test_output_too_big_for_its_shape_becomes_truncated_text() -> None:
    out = shorten_output([{"k": i, "v": "y" * 50} for i in range(1000)], 1000)
    assert isinstance(out, str) and len(out) == 1000 and out.endswith("…[truncated]")


def test_output_of_any_python_type_is_json_safe() -> None:
    class Thing:
        def __str__(self) -> str:
            return "a thing"

    out = shorten_output(
        {"nan": math.nan, "b": b"bytes", "t": Thing(), "s": {1, 2}, 3: Dry.PROBES}, 2048
    )
    json.dumps(out, allow_nan=False)
    assert out == {"nan": "nan", "b": "bytes", "t": "a thing", "s": [1, 2], "3": "probes"}


def test_deeply_nested_output_is_bounded() -> None:
    value: Any = "leaf"
    for _ in range(50):
        value = [value]
    json.dumps(shorten_output(value, 4096))


def test_redaction_happens_before_truncation() -> None:
    secret = "abcdefghijklmnopqrstuvwxyz0123456789"
    text = "z" * 40 + secret
    out = shorten_output(text, 64, Redactor([secret]))
    assert "abcdef" not in out


# ---- the handler ------------------------------------------------------------------------------
class RecordingSender:
    """Stands in for the background sender: keeps the encoded requests."""

    def __init__(self) -> None:
        self.requests: List[HttpRequest] = []
        self.closed_with: Optional[float] = None

    def submit(self, request: HttpRequest) -> bool:
        self.requests.append(request)
        return True

    def close(self, timeout: float) -> SenderStats:
        self.closed_with = timeout
        return SenderStats(submitted=len(self.requests), delivered=len(self.requests))

    def events(self) -> List[Dict[str, Any]]:
        return [json.loads(r.body) for r in self.requests]

    def short(self) -> List[str]:
        out = []
        for e in self.events():
            d = e["data"]
            out.append(
                " ".join(
                    str(x) for x in (e["type"][17:], d.get("phase", ""), d.get("name", "")) if x
                ).strip()
            )
        return out


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=10)
        return self.now


@pytest.fixture
def recorder() -> RecordingSender:
    return RecordingSender()


@pytest.fixture
def handler(recorder: RecordingSender) -> CloudEventsRunHandler:
    return CloudEventsRunHandler(
        factory(),
        recorder,
        sink_label="http://sink/",
        mode=STRUCTURED,
        flush_timeout=1.5,
        hypothesis_title="all good",
        clock=Clock(),
    )


EXPERIMENT = {
    "title": "My experiment",
    "description": "d",
    "steady-state-hypothesis": {"title": "all good", "probes": [PROBE]},
}
ACTION = {"type": "action", "name": "kill", "provider": {"type": "process", "path": "kill"}}


def run_of(activity: Dict[str, Any], status: str = "succeeded", **extra: Any) -> Dict[str, Any]:
    run = {
        "activity": dict(activity),
        "output": None,
        "start": iso(T0),
        "status": status,
        "end": iso(T0 + timedelta(seconds=1)),
        "duration": 1.0,
    }
    run.update(extra)
    return run


def test_handler_full_sequence(
    handler: CloudEventsRunHandler, recorder: RecordingSender, validator: Draft202012Validator
) -> None:
    j = journal()
    handler.running(EXPERIMENT, j, {}, {}, None, {})
    handler.start_hypothesis_before(EXPERIMENT)
    handler.start_activity(PROBE)
    probe_run = run_of(PROBE)
    handler.activity_completed(PROBE, probe_run)
    probe_run["tolerance_met"] = True  # chaoslib decides the tolerance after the probe returned
    handler.hypothesis_before_completed(
        EXPERIMENT, {"steady_state_met": True, "probes": [probe_run]}, j
    )
    handler.start_method(EXPERIMENT)
    handler.start_activity(ACTION)
    handler.activity_completed(
        ACTION, run_of(ACTION, "failed", exception=["Traceback\n", "Boom\n"])
    )
    handler.method_completed(EXPERIMENT, [])
    handler.start_hypothesis_after(EXPERIMENT)
    handler.start_activity(PROBE)
    after_run = run_of(PROBE)
    handler.activity_completed(PROBE, after_run)
    after_run["tolerance_met"] = False
    handler.hypothesis_after_completed(
        EXPERIMENT, {"steady_state_met": False, "probes": [after_run]}, j
    )
    handler.start_rollbacks(EXPERIMENT)
    handler.start_activity(ACTION)
    handler.activity_completed(ACTION, run_of(ACTION))
    handler.rollbacks_completed(EXPERIMENT, j)
    handler.finish(journal(deviated=True))

    assert recorder.short() == [
        "experiment.started",
        "hypothesis.started before",
        "activity.started before check",
        "activity.finished before check",
        "hypothesis.finished before",
        "method.started",
        "activity.started method kill",
        "activity.finished method kill",
        "method.finished",
        "hypothesis.started after",
        "activity.started after check",
        "activity.finished after check",
        "hypothesis.finished after",
        "rollbacks.started",
        "activity.started rollbacks kill",
        "activity.finished rollbacks kill",
        "rollbacks.finished",
        "experiment.finished",
    ]
    events = recorder.events()
    for e in events:
        validator.validate(e)
    finished_probes = [
        e["data"]["tolerance_met"] for e in events if e["type"].endswith("activity.finished")
    ]
    assert finished_probes == [True, None, False, None]
    assert [e["data"]["met"] for e in events if e["type"].endswith("hypothesis.finished")] == [
        True,
        False,
    ]
    assert events[7]["data"]["exception"] == "Traceback\nBoom\n"
    assert events[-1]["data"]["deviated"] is True
    assert recorder.closed_with == 1.5
    assert {r.event_type for r in recorder.requests} <= set(ALL_EVENT_TYPES)


def test_every_run_notification_sends_only_the_designs_types(
    handler: CloudEventsRunHandler, recorder: RecordingSender, event_schema: Dict[str, Any]
) -> None:
    """Chaos Toolkit notifies more than the design covers (cooldown, signal exit, continuous
    iterations, interruption): none of it may produce a type outside the schema's enum."""
    from chaoslib.run import RunEventHandler

    j = journal()
    calls = {
        "started": (EXPERIMENT, j),
        "running": (EXPERIMENT, j, {}, {}, None, {}),
        "start_hypothesis_before": (EXPERIMENT,),
        "start_activity": (PROBE,),
        "activity_completed": (PROBE, run_of(PROBE, tolerance_met=True)),
        "hypothesis_before_completed": (EXPERIMENT, {"steady_state_met": True}, j),
        "start_continuous_hypothesis": (1,),
        "continuous_hypothesis_iteration": (0, {"steady_state_met": True}),
        "continuous_hypothesis_completed": (EXPERIMENT, j, None),
        "start_method": (EXPERIMENT,),
        "method_completed": (EXPERIMENT, []),
        "start_cooldown": (3,),
        "cooldown_completed": (),
        "start_hypothesis_after": (EXPERIMENT,),
        "hypothesis_after_completed": (EXPERIMENT, {"steady_state_met": False}, j),
        "start_rollbacks": (EXPERIMENT,),
        "rollbacks_completed": (EXPERIMENT, j),
        "interrupted": (EXPERIMENT, j),
        "signal_exit": (),
        "finish": (j,),
    }
    notifications = {
        n for n in vars(RunEventHandler) if not n.startswith("_") and callable(getattr(handler, n))
    }
    assert notifications <= set(calls), notifications - set(calls)  # a new chaoslib notification
    for name, args in calls.items():
        if name in notifications:
            getattr(handler, name)(*args)
    types = {r.event_type for r in recorder.requests}
    assert types <= set(ALL_EVENT_TYPES) == set(event_schema["$defs"]["eventType"]["enum"])
    assert {e["type"] for e in recorder.events()} == types


def test_an_event_of_a_type_outside_the_design_is_not_sent(
    handler: CloudEventsRunHandler, recorder: RecordingSender
) -> None:
    handler._emit(  # noqa: SLF001
        handler.factory.event("org.chaostoolkit.cooldown.started", T0, {"duration": 3})
    )
    handler._emit(handler.factory.section_started(METHOD_STARTED, T0))  # noqa: SLF001
    assert [r.event_type for r in recorder.requests] == [METHOD_STARTED]


def test_interruption_inside_a_hypothesis_closes_it(
    handler: CloudEventsRunHandler, recorder: RecordingSender
) -> None:
    j = journal(status="interrupted")
    handler.running(EXPERIMENT, j)
    handler.start_hypothesis_before(EXPERIMENT)
    handler.start_activity(PROBE)
    handler.activity_completed(
        PROBE, {"activity": PROBE, "start": iso(T0), "end": iso(T0), "duration": 0.0}
    )
    handler.interrupted(EXPERIMENT, j)
    handler.finish(j)
    assert recorder.short() == [
        "experiment.started",
        "hypothesis.started before",
        "activity.started before check",
        "activity.finished before check",
        "hypothesis.finished before",
        "experiment.finished",
    ]
    events = recorder.events()
    assert events[3]["data"]["status"] == "failed" and events[3]["data"]["tolerance_met"] is None
    assert events[4]["data"]["met"] is None
    assert events[-1]["data"]["status"] == "interrupted"


def test_finish_closes_whatever_chaostoolkit_left_open(
    handler: CloudEventsRunHandler, recorder: RecordingSender
) -> None:
    handler.running(EXPERIMENT, journal())
    handler.start_method(EXPERIMENT)
    handler.finish(journal(status="aborted"))
    assert recorder.short() == [
        "experiment.started",
        "method.started",
        "method.finished",
        "experiment.finished",
    ]


def test_finish_is_idempotent(handler: CloudEventsRunHandler, recorder: RecordingSender) -> None:
    handler.running(EXPERIMENT, journal())
    handler.running(EXPERIMENT, journal())
    handler.finish(journal())
    handler.finish(journal())
    assert recorder.short() == ["experiment.started", "experiment.finished"]


def test_continuous_hypothesis_probes_are_phase_during(
    handler: CloudEventsRunHandler, recorder: RecordingSender
) -> None:
    handler.running(EXPERIMENT, journal())
    handler.start_method(EXPERIMENT)

    def continuous() -> None:
        handler.start_continuous_hypothesis(1)
        for i in (1, 2):
            handler.start_activity(PROBE)
            run = run_of(PROBE)
            handler.activity_completed(PROBE, run)
            run["tolerance_met"] = i == 1
            handler.continuous_hypothesis_iteration(
                i, {"steady_state_met": i == 1, "probes": [run]}
            )
        handler.continuous_hypothesis_completed(EXPERIMENT, {}, None)

    t = threading.Thread(target=continuous)
    t.start()
    t.join()
    handler.start_activity(ACTION)
    handler.activity_completed(ACTION, run_of(ACTION))
    handler.method_completed(EXPERIMENT, [])
    events = recorder.events()
    during = [e["data"] for e in events if e["data"].get("phase") == "during"]
    assert [d.get("name") for d in during] == [None, "check", "check", "check", "check", None]
    assert [d["tolerance_met"] for d in during if "tolerance_met" in d] == [True, False]
    assert during[-1]["met"] is False and during[-1]["title"] == "all good"
    assert [e["data"]["phase"] for e in events if e["data"].get("name") == "kill"] == [
        "method",
        "method",
    ]


def test_handler_never_raises_and_reports_once(
    handler: CloudEventsRunHandler, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="chaostoolkit.cloudevents")
    handler.running(None, None)  # type: ignore[arg-type]
    handler.start_activity(None)  # type: ignore[arg-type]
    handler.activity_completed(None, None)  # type: ignore[arg-type]
    handler.hypothesis_before_completed(None, object(), None)  # type: ignore[arg-type]
    handler.finish(None)  # type: ignore[arg-type]
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "internal error" in warnings[0].getMessage()


def test_handler_survives_a_broken_sender(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(RecordingSender):
        def submit(self, request: HttpRequest) -> bool:
            raise RuntimeError("boom")

        def close(self, timeout: float) -> SenderStats:
            raise RuntimeError("boom")

    h = CloudEventsRunHandler(factory(), Broken(), sink_label="x", clock=Clock())
    h.running(EXPERIMENT, journal())
    h.finish(journal())
    assert sum(r.levelno >= logging.WARNING for r in caplog.records) == 1
