"""Integration: the real ``chaos run`` CLI with the control pointed at a FAKE sink.

Every fixture experiment is run once (in parallel) and the received events are checked against
the journal Chaos Toolkit wrote: sequence, run id, experiment reference, statuses, times, schema.
"""

from __future__ import annotations

import json
import re
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, List, Tuple
from urllib.parse import quote

import pytest
from chaoslib import experiment_hash
from jsonschema import Draft202012Validator

from cloudevents_testkit import (
    _in_order,
    ENV_CONFIG_VALUE,
    ENV_SECRET_VALUE,
    EXPERIMENTS,
    ChaosRun,
    run_chaos,
)
from fake_cloudevents_sink import FakeCloudEventsSink, closed_port_url

EXPECTED_EXIT = {
    "passing.json": 0,
    "deviated.json": 1,
    "failing-action.json": 0,
    "gate-not-met.json": 0,
    "failed-probe.json": 1,
    "interrupted.json": 1,
    "secrets.json": 0,
    "continuous.json": 0,
}
EXTRA_ARGS = {
    "continuous.json": ["--hypothesis-strategy", "continuously", "--hypothesis-frequency", "0.1"]
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, chaos_cli: Path) -> Dict[str, ChaosRun]:
    """Each fixture experiment run once by the real CLI, each with its own fake sink."""
    base = tmp_path_factory.mktemp("chaos-runs")

    def one(name: str) -> ChaosRun:
        with FakeCloudEventsSink() as sink:
            return run_chaos(name, base, sink=sink, extra_args=EXTRA_ARGS.get(name))

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(one, EXPECTED_EXIT))
    return {r.experiment: r for r in results}


def _time(value: str) -> str:
    """A journal timestamp in the event format (UTC, Z, microseconds)."""
    from chaoscloudevents.events import format_time, parse_time

    parsed = parse_time(value)
    assert parsed is not None, value
    return format_time(parsed)


def _journal_runs(journal: Dict[str, Any]) -> List[Tuple[str, Dict[str, Any]]]:
    """(phase, run) for every activity run of the journal, in execution order."""
    steady = journal.get("steady_states") or {}
    out: List[Tuple[str, Dict[str, Any]]] = []
    out += [("before", r) for r in (steady.get("before") or {}).get("probes", [])]
    out += [("method", r) for r in journal.get("run", [])]
    for state in steady.get("during") or []:
        out += [("during", r) for r in (state or {}).get("probes", [])]
    out += [("after", r) for r in (steady.get("after") or {}).get("probes", [])]
    out += [("rollbacks", r) for r in journal.get("rollbacks", [])]
    return out


# ---- properties every run must have -------------------------------------------------------
@pytest.mark.parametrize("name", list(EXPECTED_EXIT))
def test_run_exit_code_and_events_bracketed(runs: Dict[str, ChaosRun], name: str) -> None:
    run = runs[name]
    assert run.returncode == EXPECTED_EXIT[name], run.stderr[-2000:]
    assert run.events, f"no event received for {name}:\n{run.stderr[-2000:]}"
    assert run.events[0]["type"] == "org.chaostoolkit.experiment.started"
    assert run.events[-1]["type"] == "org.chaostoolkit.experiment.finished"
    assert len(run.of("experiment.started")) == 1
    assert len(run.of("experiment.finished")) == 1


@pytest.mark.parametrize("name", list(EXPECTED_EXIT))
def test_every_event_is_valid_against_the_schema(
    runs: Dict[str, ChaosRun], name: str, validator: Draft202012Validator
) -> None:
    for event in runs[name].events:
        errors = sorted(validator.iter_errors(event), key=str)
        assert not errors, f"{event['type']}: {errors[0].message} in {json.dumps(event)[:800]}"


@pytest.mark.parametrize("name", list(EXPECTED_EXIT))
def test_run_identity_attributes(runs: Dict[str, ChaosRun], name: str) -> None:
    run = runs[name]
    run_ids = {e["chaosrunid"] for e in run.events}
    assert len(run_ids) == 1
    run_id = run_ids.pop()
    assert str(uuid.UUID(run_id)) == run_id
    assert all(e["partitionkey"] == run_id for e in run.events)
    # the experiment reference is chaoslib's experiment_hash of the experiment that ran
    assert {e["chaosexperiment"] for e in run.events} == {
        experiment_hash(run.journal["experiment"])
    }
    assert {e["source"] for e in run.events} == {f"urn:chaostoolkit:{run.journal['node']}"}
    ids = [e["id"] for e in run.events]
    assert len(ids) == len(set(ids))
    if name != "secrets.json":  # its title holds a configuration value (see the redaction test)
        assert {e["subject"] for e in run.events} == {run.journal["experiment"]["title"]}


@pytest.mark.parametrize("name", list(EXPECTED_EXIT))
def test_experiment_events_match_the_journal(runs: Dict[str, ChaosRun], name: str) -> None:
    run = runs[name]
    journal = run.journal
    started = run.of("experiment.started")[0]
    finished = run.of("experiment.finished")[0]
    assert started["time"] == started["data"]["start"] == _time(journal["start"])
    assert started["data"]["title"] == finished["data"]["title"] == started["subject"]
    data = finished["data"]
    assert finished["time"] == data["end"] == _time(journal["end"])
    assert data["start"] == _time(journal["start"])
    assert data["duration"] == pytest.approx(journal["duration"], abs=1e-6)
    assert data["status"] == journal["status"]
    assert data["deviated"] == journal["deviated"]
    steady = journal["steady_states"]
    assert data["before_hypothesis_met"] == (steady["before"] or {}).get("steady_state_met")
    assert data["after_hypothesis_met"] == (steady["after"] or {}).get("steady_state_met")


@pytest.mark.parametrize("name", list(EXPECTED_EXIT))
def test_activity_events_match_the_journal_runs(runs: Dict[str, ChaosRun], name: str) -> None:
    run = runs[name]
    finished = run.of("activity.finished")
    expected = _journal_runs(run.journal)
    key = lambda phase, r: (phase, r["activity"]["name"], _time(r["start"]))  # noqa: E731
    by_key = {key(p, r): r for p, r in expected}
    assert len(finished) == len(expected)
    for event in finished:
        d = event["data"]
        journal_run = by_key[(d["phase"], d["name"], d["start"])]
        assert d["end"] == event["time"] == _time(journal_run["end"])
        assert d["duration"] == pytest.approx(journal_run["duration"], abs=1e-6)
        assert d["status"] == journal_run.get("status", "failed")
        assert d["type"] == journal_run["activity"]["type"]
        assert d["provider"]["type"] == journal_run["activity"]["provider"]["type"]
        assert "arguments" not in d["provider"]
        assert d["tolerance_met"] == journal_run.get("tolerance_met")
        assert (d["exception"] is None) == ("exception" not in journal_run)


@pytest.mark.parametrize("name", list(EXPECTED_EXIT))
def test_starts_and_ends_pair_up_in_order(runs: Dict[str, ChaosRun], name: str) -> None:
    """Every *.started has exactly one later *.finished; times are ordered within each pair and
    every event lies inside the experiment's [start, end]."""
    run = runs[name]
    open_: Dict[Tuple[str, ...], List[Dict[str, Any]]] = {}
    for event in run.events:
        kind, _, edge = event["type"][len("org.chaostoolkit.") :].rpartition(".")
        d = event["data"]
        ident = (kind, d.get("phase", ""), d.get("name", ""))
        if edge == "started":
            open_.setdefault(ident, []).append(event)
        else:
            assert open_.get(ident), f"{event['type']} {ident} without a start"
            start_event = open_[ident].pop(0)
            assert start_event["time"] <= event["time"]
            assert d["start"] <= d["end"]
            assert d["duration"] >= 0
    assert not any(open_.values()), f"never finished: {open_}"
    first, last = run.events[0]["time"], run.events[-1]["time"]
    assert all(first <= e["time"] <= last for e in run.events)


# ---- the individual scenarios -------------------------------------------------------------
def test_passing_run_sequence(runs: Dict[str, ChaosRun]) -> None:
    run = runs["passing.json"]
    assert run.types() == [
        "experiment.started",
        "hypothesis.started",
        "activity.started",
        "activity.started",
        "activity.finished",
        "activity.finished",
        "hypothesis.finished",
        "method.started",
        "activity.started",
        "activity.finished",
        "activity.started",
        "activity.finished",
        "method.finished",
        "hypothesis.started",
        "activity.started",
        "activity.started",
        "activity.finished",
        "activity.finished",
        "hypothesis.finished",
        "rollbacks.started",
        "activity.started",
        "activity.finished",
        "rollbacks.finished",
        "experiment.finished",
    ]
    phases = [(e["data"]["phase"], e["data"]["name"]) for e in run.of("activity.finished")]
    assert phases == [
        ("before", "process-true"),
        ("before", "python-42"),
        ("method", "short-pause"),
        ("method", "method-probe"),
        ("after", "process-true"),
        ("after", "python-42"),
        ("rollbacks", "undo"),
    ]
    hyp = run.of("hypothesis.finished")
    assert [(h["data"]["phase"], h["data"]["met"]) for h in hyp] == [
        ("before", True),
        ("after", True),
    ]
    assert all(h["data"]["title"] == "the service answers" for h in hyp)
    python_probe = run.of("activity.finished")[1]["data"]
    assert python_probe["provider"] == {
        "type": "python",
        "module": "cefixture_activities",
        "func": "return_value",
    }
    assert python_probe["output"] == 42 and python_probe["tolerance_met"] is True
    assert run.of("activity.finished")[0]["data"]["provider"] == {"type": "process", "path": "true"}
    final = run.of("experiment.finished")[0]["data"]
    assert (final["status"], final["deviated"]) == ("completed", False)
    started = run.of("experiment.started")[0]["data"]
    assert started["tags"] == ["ce-test", "passing"]
    assert started["description"] == "A passing run: every probe and action succeeds."
    assert started["dry"] is None


def test_free_text_title_is_percent_encoded_in_binary_mode(runs: Dict[str, ChaosRun]) -> None:
    run = runs["passing.json"]
    title = 'Café « résilience » 100% "ok"'
    assert run.events[0]["subject"] == title  # decoded by the CloudEvents SDK
    encoded = "Caf%C3%A9%20%C2%AB%20r%C3%A9silience%20%C2%BB%20100%25%20%22ok%22"
    assert all(f"ce-subject: {encoded}\r\n".lower().encode() in raw.lower() for raw in run.raw)


def test_deviated_run_is_completed_and_deviated(runs: Dict[str, ChaosRun]) -> None:
    run = runs["deviated.json"]
    final = run.of("experiment.finished")[0]["data"]
    assert (final["status"], final["deviated"]) == ("completed", True)
    assert (final["before_hypothesis_met"], final["after_hypothesis_met"]) == (True, False)
    hyp = run.of("hypothesis.finished")
    assert [(h["data"]["phase"], h["data"]["met"]) for h in hyp] == [
        ("before", True),
        ("after", False),
    ]
    probe_after = [e["data"] for e in run.of("activity.finished") if e["data"]["phase"] == "after"]
    assert probe_after[0]["status"] == "succeeded" and probe_after[0]["tolerance_met"] is False
    assert probe_after[0]["output"] == 2
    assert run.of("rollbacks.started"), "rollbacks are played for a deviated run"


def test_failing_action_in_method(runs: Dict[str, ChaosRun]) -> None:
    run = runs["failing-action.json"]
    method = [e["data"] for e in run.of("activity.finished") if e["data"]["phase"] == "method"]
    assert [(d["name"], d["status"]) for d in method] == [
        ("explode", "failed"),
        ("after-explode", "succeeded"),
    ]
    assert method[0]["exception"].rstrip().endswith("kaboom-in-method")
    assert "Traceback" in method[0]["exception"]
    final = run.of("experiment.finished")[0]["data"]
    # a failing action in the method does not change the journal status
    assert (final["status"], final["deviated"]) == ("completed", False)
    # no rollbacks declared: Chaos Toolkit still announces (empty) rollbacks
    assert "rollbacks.started" in run.types()
    assert not [e for e in run.of("activity.started") if e["data"]["phase"] == "rollbacks"]


def test_before_hypothesis_not_met(runs: Dict[str, ChaosRun]) -> None:
    run = runs["gate-not-met.json"]
    assert run.types() == [
        "experiment.started",
        "hypothesis.started",
        "activity.started",
        "activity.finished",
        "hypothesis.finished",
        "rollbacks.started",
        "activity.started",
        "activity.finished",
        "rollbacks.finished",
        "experiment.finished",
    ]
    assert run.of("hypothesis.finished")[0]["data"]["met"] is False
    probe = run.of("activity.finished")[0]["data"]
    assert (probe["status"], probe["tolerance_met"]) == ("succeeded", False)
    assert probe["output"]["status"] == 1
    final = run.of("experiment.finished")[0]["data"]
    # the confusing case: completed, not deviated, the gate is the only sign
    assert (final["status"], final["deviated"], final["before_hypothesis_met"]) == (
        "completed",
        False,
        False,
    )
    assert final["after_hypothesis_met"] is None


def test_failed_steady_state_probe(runs: Dict[str, ChaosRun]) -> None:
    run = runs["failed-probe.json"]
    probe = run.of("activity.finished")[0]["data"]
    assert (probe["status"], probe["tolerance_met"]) == ("failed", False)
    assert "probe-broke" in probe["exception"]
    final = run.of("experiment.finished")[0]["data"]
    assert (final["status"], final["deviated"]) == ("failed", False)
    assert "method.started" not in run.types()
    assert "rollbacks.started" not in run.types()  # not played for a failed run


def test_interrupted_run(runs: Dict[str, ChaosRun]) -> None:
    run = runs["interrupted.json"]
    assert run.types() == [
        "experiment.started",
        "hypothesis.started",
        "activity.started",
        "activity.finished",
        "hypothesis.finished",
        "method.started",
        "activity.started",
        "activity.finished",
        "method.finished",
        "experiment.finished",
    ]
    final = run.of("experiment.finished")[0]["data"]
    assert (final["status"], final["deviated"]) == ("interrupted", False)
    names = [e["data"]["name"] for e in run.of("activity.started")]
    assert "never-runs" not in names


def test_continuous_hypothesis_phase_during(runs: Dict[str, ChaosRun]) -> None:
    run = runs["continuous.json"]
    hyp = [
        (e["type"].rsplit(".", 1)[1], e["data"]["phase"])
        for e in run.events
        if ".hypothesis." in e["type"]
    ]
    # the continuous hypothesis runs in its own thread: its end may come after the after-hypothesis
    # started (Chaos Toolkit does not wait for it), so only the order within each phase is fixed
    assert sorted(hyp) == sorted(
        [
            (edge, phase)
            for phase in ("before", "during", "after")
            for edge in ("started", "finished")
        ]
    )
    assert hyp[:3] == [("started", "before"), ("finished", "before"), ("started", "during")]
    during = [e["data"] for e in run.of("activity.finished") if e["data"]["phase"] == "during"]
    assert during and all(d["tolerance_met"] is True for d in during)
    assert len(during) == sum(len(s["probes"]) for s in run.journal["steady_states"]["during"])
    assert run.of("hypothesis.finished")[1]["data"]["met"] is True


def test_secrets_and_configuration_values_never_leave_the_machine(
    runs: Dict[str, ChaosRun],
) -> None:
    run = runs["secrets.json"]
    assert run.returncode == 0
    # the run really used the values (they are in Chaos Toolkit's own journal)...
    stdout = run.journal["steady_states"]["before"]["probes"][0]["output"]["stdout"]
    sensitive = [
        "cfg-value-7f3a9c.internal",
        "s3cr3t-XYZ-42-token",
        ENV_CONFIG_VALUE,
        ENV_SECRET_VALUE,
    ]
    for value in sensitive:
        assert value in stdout
    # ...but no emitted byte carries them, in any encoding
    assert len(run.raw) == len(run.events) > 0
    for raw in run.raw:
        for value in sensitive:
            for form in {value, quote(value, safe=""), json.dumps(value)[1:-1]}:
                assert form.encode() not in raw, f"{value!r} leaked"
    # and the places where they would have been are masked
    echo = run.of("activity.finished")[0]["data"]
    assert echo["output"]["stdout"] == "*** *** *** ***\n"
    returned = [
        e["data"] for e in run.of("activity.finished") if e["data"]["name"] == "return-secret"
    ][0]
    assert returned["output"] == {"token": "***", "host": "***", "nested": ["***"]}
    failed = [
        e["data"] for e in run.of("activity.finished") if e["data"]["name"] == "leak-in-exception"
    ][0]
    assert failed["exception"].rstrip().endswith("RuntimeError: login with *** on *** failed")
    assert run.events[0]["subject"] == "Redaction of ***"


# ---- other ways of enabling it, and a sink that misbehaves ----------------------------------
def _experiment_without_controls(
    tmp_path: Path, name: str = "passing.json", **arguments: Any
) -> Path:
    experiment = json.loads((EXPERIMENTS / name).read_text(encoding="utf-8"))
    experiment.pop("controls")
    if arguments:
        experiment["controls"] = [
            {
                "name": "cloudevents",
                "provider": {
                    "type": "python",
                    "module": "chaoscloudevents.control",
                    "arguments": arguments,
                },
            }
        ]
    path = tmp_path / f"custom-{name}"
    path.write_text(json.dumps(experiment, ensure_ascii=False), encoding="utf-8")
    return path


def _global_control(**arguments: Any) -> Dict[str, Any]:
    return {
        "controls": {
            "cloudevents": {
                "provider": {
                    "type": "python",
                    "module": "chaoscloudevents.control",
                    "arguments": arguments,
                }
            }
        }
    }


def test_global_control_from_settings_in_structured_mode(
    tmp_path: Path, fake_sink: FakeCloudEventsSink, chaos_run: Any, validator: Draft202012Validator
) -> None:
    path = _experiment_without_controls(tmp_path)
    settings = _global_control(
        sink_url=fake_sink.url, mode="structured", extensions={"team": "chaos", "tier": 1}
    )
    run = chaos_run(
        "passing.json",
        sink=fake_sink,
        settings=settings,
        experiment_path=path,
        env={"K_SINK": "http://127.0.0.1:9/not-used"},
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert len(run.events) == 24
    assert all(
        r.headers["content-type"] == "application/cloudevents+json; charset=utf-8"
        and not any(h.startswith("ce-") for h in r.headers)
        for r in fake_sink.requests
    )
    assert all(e["team"] == "chaos" and e["tier"] == "1" for e in run.events)
    for event in run.events:
        validator.validate(event)


def test_control_declared_twice_emits_once(
    tmp_path: Path, fake_sink: FakeCloudEventsSink, chaos_run: Any
) -> None:
    path = _experiment_without_controls(tmp_path, sink_url=fake_sink.url)
    run = chaos_run(
        "passing.json",
        sink=fake_sink,
        settings=_global_control(sink_url=fake_sink.url),
        experiment_path=path,
    )
    assert run.returncode == 0
    assert len(run.events) == 24
    assert len({e["chaosrunid"] for e in run.events}) == 1


def test_automatic_false_sends_the_same_events(
    tmp_path: Path, runs: Dict[str, ChaosRun], chaos_run: Any, validator: Draft202012Validator
) -> None:
    """``"automatic": false`` (recommended in the README: the control has no per-activity hooks,
    so Chaos Toolkit need not look them up around every activity) changes nothing it sends."""
    experiment = json.loads((EXPERIMENTS / "passing.json").read_text(encoding="utf-8"))
    experiment["controls"][0]["automatic"] = False
    path = tmp_path / "automatic-false.json"
    path.write_text(json.dumps(experiment, ensure_ascii=False), encoding="utf-8")
    with FakeCloudEventsSink() as sink:
        run = chaos_run("passing.json", sink=sink, experiment_path=path)
    assert run.returncode == 0
    assert run.types() == runs["passing.json"].types()
    for event in run.events:
        validator.validate(event)


def test_sink_answering_503_then_recovering_gets_every_event_once_in_order(
    fake_sink: FakeCloudEventsSink, chaos_run: Any
) -> None:
    fake_sink.answer(status=503, retry_after="0", fail_first=3)
    run = chaos_run("passing.json", sink=fake_sink)
    assert run.returncode == 0
    assert len(run.events) == 24
    assert run.events[0]["type"] == "org.chaostoolkit.experiment.started"
    # the first event was refused three times: each attempt carried the same id
    ids = [r.headers["ce-id"] for r in fake_sink.requests]
    assert ids[:4] == [ids[0]] * 4
    assert len(set(ids)) == 24
    assert [e["type"] for e in run.events][-1] == "org.chaostoolkit.experiment.finished"


def _warnings(run: ChaosRun) -> List[str]:
    return [line for line in run.stderr.splitlines() if "WARNING" in line and "CloudEvents" in line]


def test_sink_down_costs_almost_nothing(tmp_path: Path, chaos_run: Any) -> None:
    baseline = chaos_run("passing.json", experiment_path=_experiment_without_controls(tmp_path))
    down = chaos_run(
        "passing.json",
        experiment_path=_experiment_without_controls(tmp_path, "passing.json", mode="binary"),
        sink_url=closed_port_url(),
    )
    assert down.returncode == baseline.returncode == 0
    # connections are refused: the end-of-run flush gives up at once (default flush_timeout 5 s)
    assert down.wall_seconds < baseline.wall_seconds + 1.5
    # activities themselves are not slowed down
    for phase, journal_run in _journal_runs(down.journal):
        assert journal_run["duration"] < 0.5, (phase, journal_run["activity"]["name"])
    warnings = _warnings(down)
    assert 1 <= len(warnings) <= 2, warnings  # the first failure, and the end-of-run summary
    assert any("could not be delivered" in w for w in warnings)


def test_sink_answering_503_costs_at_most_the_flush_timeout(
    tmp_path: Path, fake_sink: FakeCloudEventsSink, chaos_run: Any
) -> None:
    fake_sink.answer(status=503, retry_after="1")
    baseline = chaos_run("passing.json", experiment_path=_experiment_without_controls(tmp_path))
    run = chaos_run(
        "passing.json",
        sink=fake_sink,
        experiment_path=_experiment_without_controls(tmp_path, "passing.json", flush_timeout=1.0),
    )
    assert run.returncode == 0 and run.events == []
    assert run.wall_seconds < baseline.wall_seconds + 1.0 + 1.5
    assert len(_warnings(run)) == 2


def test_slow_sink_does_not_slow_the_experiment(
    tmp_path: Path, fake_sink: FakeCloudEventsSink, chaos_run: Any
) -> None:
    fake_sink.answer(status=202, delay=0.3)
    run = chaos_run(
        "passing.json",
        sink=fake_sink,
        experiment_path=_experiment_without_controls(
            tmp_path, "passing.json", flush_timeout=1.0, timeout=5
        ),
    )
    assert run.returncode == 0
    for phase, journal_run in _journal_runs(run.journal):
        assert journal_run["duration"] < 0.5, (phase, journal_run["activity"]["name"])
    # the run itself took well under 24 x 0.3 s; what arrived, arrived in order
    assert run.journal["duration"] < 2.0
    received = [e["type"] for e in run.events]
    assert received and received[0] == "org.chaostoolkit.experiment.started"
    assert len(received) < 24


@pytest.mark.parametrize("delay", [0.5, 30.0], ids=["slow", "hanging"])
def test_slow_or_hanging_sink_adds_at_most_the_flush_timeout_at_the_end(
    tmp_path: Path, chaos_run: Any, delay: float
) -> None:
    """The end of the run waits ``flush_timeout`` at most, even with a request in flight whose
    own ``timeout`` is far longer (the sender thread is a daemon: it is not waited for)."""
    baseline = chaos_run("passing.json", experiment_path=_experiment_without_controls(tmp_path))
    with FakeCloudEventsSink() as sink:
        sink.answer(status=202, delay=delay)
        run = chaos_run(
            "passing.json",
            sink=sink,
            experiment_path=_experiment_without_controls(
                tmp_path, "passing.json", flush_timeout=1.0, timeout=60
            ),
        )
    assert run.returncode == 0
    assert run.journal["duration"] < 2.0
    # flush_timeout (1 s) plus a margin for a loaded machine, not 24 x delay nor the 60 s timeout
    assert run.wall_seconds < baseline.wall_seconds + 1.0 + 1.0, (run.wall_seconds, baseline)
    assert any("could not be delivered" in w for w in _warnings(run))


def test_no_sink_configured_leaves_the_run_alone(tmp_path: Path, chaos_run: Any) -> None:
    run = chaos_run("passing.json")  # no K_SINK, no sink_url
    assert run.returncode == 0
    assert run.journal["status"] == "completed"
    assert any("no sink URL" in line for line in _warnings(run))


def test_bad_arguments_disable_the_control_not_the_run(
    tmp_path: Path, fake_sink: FakeCloudEventsSink, chaos_run: Any
) -> None:
    path = _experiment_without_controls(
        tmp_path, "passing.json", sink_url=fake_sink.url, mode="carrier-pigeon"
    )
    run = chaos_run("passing.json", sink=fake_sink, experiment_path=path)
    assert run.returncode == 0
    assert run.events == []
    assert any(
        re.search(r"disabled for this run: mode must be one of", line) for line in _warnings(run)
    )


def test_sigterm_during_an_activity(
    tmp_path: Path, fake_sink: FakeCloudEventsSink, chaos_cli: Path
) -> None:
    """Chaos Toolkit turns SIGTERM into InterruptExecution in the middle of an activity: that run
    has no status in the journal, and the run ends `interrupted` with every event delivered."""
    import os
    import signal
    import subprocess
    import time

    from cloudevents_testkit import PYLIB

    env = {k: v for k, v in os.environ.items() if not k.startswith("K_")}
    env.update(K_SINK=fake_sink.url, PYTHONPATH=str(PYLIB))
    journal_path = tmp_path / "journal.json"
    settings = tmp_path / "settings.json"
    settings.write_text("{}")
    # events in emission order (concurrency 1): the test reads the tail of the sequence
    pinned = tmp_path / "sigterm-in-order.json"
    pinned.write_text(json.dumps(_in_order(json.loads((EXPERIMENTS / "sigterm.json").read_text()))))
    proc = subprocess.Popen(
        [
            str(chaos_cli),
            "--no-version-check",
            "--no-log-file",
            "--settings",
            str(settings),
            "run",
            "--journal-path",
            str(journal_path),
            str(pinned),
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if any(e["data"].get("name") == "long-sleep" for e in fake_sink.events()):
                break
            time.sleep(0.02)
        else:
            pytest.fail("the long-sleep action never started")
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, stderr[-2000:]
    journal = json.loads(journal_path.read_text())
    assert journal["status"] == "interrupted"
    assert "status" not in journal["run"][0]
    events = fake_sink.events()
    types = [e["type"][len("org.chaostoolkit.") :] for e in events]
    assert types[-4:] == [
        "activity.started",
        "activity.finished",
        "method.finished",
        "experiment.finished",
    ]
    sleeper = events[-3]["data"]
    assert (sleeper["name"], sleeper["status"]) == ("long-sleep", "failed")
    assert sleeper["duration"] < 10
    assert events[-1]["data"]["status"] == "interrupted"
    assert "rollbacks.started" not in types


def test_dry_run_is_flagged(fake_sink: FakeCloudEventsSink, chaos_run: Any) -> None:
    run = chaos_run("passing.json", sink=fake_sink, extra_args=["--dry", "actions"])
    assert run.returncode == 0
    assert run.events[0]["data"]["dry"] == "actions"
    assert len(run.events) == 24
    # chaos run --dry puts an enum into the experiment; the reference still is chaoslib's hash
    assert run.events[0]["chaosexperiment"] == experiment_hash(
        {**run.journal["experiment"], "dry": "actions"}
    )


def test_control_file_enables_it_for_a_run(
    tmp_path: Path, fake_sink: FakeCloudEventsSink, chaos_run: Any
) -> None:
    control_file = tmp_path / "cloudevents.json"
    control_file.write_text(json.dumps(_global_control(sink_url=fake_sink.url)["controls"]))
    run = chaos_run(
        "passing.json",
        sink=fake_sink,
        experiment_path=_experiment_without_controls(tmp_path),
        extra_args=["--control-file", str(control_file)],
    )
    assert run.returncode == 0
    assert len(run.events) == 24


def test_the_default_concurrency_sends_every_event_the_start_first_and_the_end_last(
    runs: Dict[str, ChaosRun], tmp_path: Path, chaos_cli: Path
) -> None:
    """As declared (no ``concurrency``: 4 at once), against a sink that takes 20 ms per event: the same
    events as in order, several in flight at once, but the run's start first and its end last."""
    with FakeCloudEventsSink() as sink:
        sink.answer(delay=0.02)
        run = run_chaos("passing.json", tmp_path, sink=sink, in_order=False)
    assert run.returncode == 0, run.stderr[-2000:]
    in_order = runs["passing.json"]
    assert sorted(run.types()) == sorted(in_order.types())
    assert run.types()[0] == "experiment.started" and run.types()[-1] == "experiment.finished"
    assert 2 <= sink.max_in_flight <= 4, sink.max_in_flight
    assert len({e["id"] for e in run.events}) == len(run.events), "each event once"
