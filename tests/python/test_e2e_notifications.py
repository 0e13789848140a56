"""Chaos Toolkit's own ``notifications`` http channel, for real: a ``chaos run`` WITHOUT the project's
control, its settings pointing the built-in channel at chaos-sink's ``/notifications``, against the real
chaos-sink binary, the real InfluxDB 1.x and Pushgateway, and the Grafana FAKE. The test reads every
backend back: the run's outcome in InfluxDB, its Pushgateway group back to in-progress 0, one Grafana
region opened and closed. And a real run's journal converted to CloudEvents by this test (another emitter:
the journal's shapes, traceback as a list of lines, no partitionkey) is accepted whole."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest

from chaos_e2e_kit import (
    e2e_backends,
    CHAOS,
    PYLIB,
    activity_runs,
    ChaosSinkProcess,
    http,
    influx_query,
    influx_string,
    poll,
)

EXPERIMENTS = Path(__file__).resolve().parent / "experiments"
TOKEN = "notifications-token"


def without_controls(name: str, title: str) -> Dict[str, Any]:
    """A test experiment with the project's control taken out: only Chaos Toolkit itself reports."""
    experiment = json.loads((EXPERIMENTS / f"{name}.json").read_text(encoding="utf-8"))
    experiment.pop("controls", None)
    experiment.get("configuration", {}).pop("chaos_sink_url", None)
    experiment["title"] = title
    return experiment


@pytest.fixture(scope="module")
def sink(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dict[str, Any]]:
    job = f"notif_{uuid.uuid4().hex[:8]}"
    with e2e_backends("chaos_notif", f"Bearer {TOKEN}") as b:
        workdir = tmp_path_factory.mktemp("chaos-sink-notifications")
        config = b.config(job, grafana=f"    api_token: {TOKEN}\n")
        process = ChaosSinkProcess(b.binary, workdir, config, {})
        with process:
            yield {"influx": b.influx, "db": b.db, "pushgateway": b.pushgateway, "job": job,
                   "grafana": b.grafana, "process": process, "workdir": workdir}
        assert process.exit_code == 0, f"chaos-sink did not exit cleanly:\n{process.log()[-3000:]}"


def run_with_notifications(sink: Dict[str, Any], name: str, title: str) -> subprocess.CompletedProcess:
    workdir: Path = sink["workdir"] / name
    workdir.mkdir(parents=True, exist_ok=True)
    experiment = workdir / "experiment.json"
    experiment.write_text(json.dumps(without_controls(name, title)), encoding="utf-8")
    settings = workdir / "settings.yaml"
    settings.write_text(
        "notifications:\n"
        "  - type: http\n"
        f"    url: {sink['process'].url}/notifications\n",
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("K_")}
    env["PYTHONPATH"] = str(PYLIB)
    return subprocess.run(
        [str(CHAOS), "--no-version-check", "--log-file", str(workdir / "chaostoolkit.log"),
         "--settings", str(settings), "run", "--journal-path", str(workdir / "journal.json"),
         str(experiment)],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=120,
    )


def pushgateway_groups(base: str, job: str) -> List[Dict[str, Any]]:
    status, body = http("GET", base + "/api/v1/metrics")
    assert status == 200
    return [g for g in json.loads(body)["data"] if g["labels"].get("job") == job]


@pytest.mark.parametrize("name,status,deviated", [("passing", "completed", False),
                                                  ("deviated", "completed", True)])
def test_the_builtin_http_channel_lands_in_every_backend(
        sink: Dict[str, Any], name: str, status: str, deviated: bool) -> None:
    title = f"Notifications only: {name} {uuid.uuid4().hex[:6]}"
    done = run_with_notifications(sink, name, title)
    assert done.returncode in (0, 1), done.stderr[-2000:]
    log = (sink["workdir"] / name / "chaostoolkit.log").read_text(encoding="utf-8", errors="replace")
    assert "cloudevents" not in log.lower(), "the project's control must not be involved"

    # InfluxDB: the run's outcome, from Chaos Toolkit's run-completed (and run-deviated) notification.
    rows = poll("the run's outcome in InfluxDB", lambda: influx_query(
        sink["influx"], sink["db"],
        'SELECT "status", "deviated" FROM "chaos_toolkit.experiments" '
        f"WHERE experiment = {influx_string(title)} AND \"status\" =~ /./") or None)
    assert len(rows) == 1, rows
    assert rows[0]["status"] == status
    assert rows[0]["deviated"] is deviated

    # Grafana (FAKE): one region for the run, opened at run-started and closed at the end.
    regions = [a for a in sink["grafana"].tagged("experiment") if title in a.body.get("text", "")]
    assert len(regions) == 1, [a.body for a in regions]
    assert regions[0].body["timeEnd"] > regions[0].body["time"], regions[0].body
    assert not sink["grafana"].violations, sink["grafana"].violations

    # Pushgateway: a group per run, none left in progress.
    groups = [g for g in pushgateway_groups(sink["pushgateway"], sink["job"])
              if g.get("chaostoolkit_inprogress_experiment")]
    assert groups, "a Pushgateway group for the notification runs"
    for g in groups:
        for s in g["chaostoolkit_inprogress_experiment"]["metrics"]:
            assert s["value"] == "0", f"in-progress back to 0: {g['labels']}"


def journal_to_events(journal: Dict[str, Any], run_id: str) -> List[Dict[str, Any]]:
    """CloudEvents made from a Chaos Toolkit journal by this test (not by the project's control), the way
    another emitter would write them: the journal's own shapes and times (``+00:00``), its traceback
    as a list of lines, no ``partitionkey``, no ``tolerance_met``, extra fields left in."""
    experiment = journal["experiment"]
    base = {"specversion": "1.0", "source": "urn:other-emitter:test",
            "subject": experiment["title"], "chaosrunid": run_id,
            "chaosexperiment": "other-emitter", "datacontenttype": "application/json"}
    events = [dict(base, id=f"{run_id}-start", type="org.chaostoolkit.experiment.started",
                   time=journal["start"],
                   data={"title": experiment["title"], "description": experiment.get("description"),
                         "tags": experiment.get("tags"), "start": journal["start"]})]
    for n, (phase, r) in enumerate(activity_runs(journal)):
        activity = r["activity"]
        events.append(dict(base, id=f"{run_id}-activity-{n}", type="org.chaostoolkit.activity.finished",
                           time=r["end"],
                           data={"name": activity["name"], "type": activity["type"],
                                 "provider": activity["provider"], "phase": phase,
                                 "start": r["start"], "end": r["end"], "status": r["status"],
                                 "duration": r["duration"], "output": r.get("output"),
                                 "exception": r.get("exception"), "journal_extra": True}))
    events.append(dict(base, id=f"{run_id}-end", type="org.chaostoolkit.experiment.finished",
                       time=journal["end"],
                       data={"title": experiment["title"], "status": journal["status"],
                             "deviated": journal["deviated"], "start": journal["start"],
                             "end": journal["end"]}))
    return events


def post_structured(url: str, event: Dict[str, Any]) -> Tuple[int, bytes]:
    req = urllib.request.Request(url, data=json.dumps(event).encode(), method="POST",
                                 headers={"content-type": "application/cloudevents+json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_events_converted_from_a_real_journal_are_all_accepted(sink: Dict[str, Any]) -> None:
    title = f"Journal converted by the test {uuid.uuid4().hex[:6]}"
    done = run_with_notifications(sink, "failing-action", title)
    journal_path = sink["workdir"] / "failing-action" / "journal.json"
    assert journal_path.exists(), done.stderr[-2000:]
    journal = json.loads(journal_path.read_text())
    failed = [r for _, r in activity_runs(journal) if r["status"] == "failed"]
    assert failed and isinstance(failed[0].get("exception"), list), "the journal's traceback is a list"
    run_id = str(uuid.uuid4())
    events = journal_to_events(journal, run_id)
    for e in events:
        status, body = post_structured(sink["process"].url + "/", e)
        assert status == 202, f"{e['type']} {e['id']}: {status} {body!r}"
    activities = len(events) - 2

    def all_points() -> Any:
        rows = influx_query(sink["influx"], sink["db"],
                            'SELECT count("status") FROM "chaos_toolkit.activities" '
                            f"WHERE run_id = {influx_string(run_id)}")
        return rows if rows and rows[0]["count"] == activities else None

    poll("every activity point in InfluxDB", all_points)
    outcome = influx_query(sink["influx"], sink["db"],
                           'SELECT "status" FROM "chaos_toolkit.experiments" '
                           f'WHERE run_id = {influx_string(run_id)} AND "status" =~ /./')
    assert [r["status"] for r in outcome] == [journal["status"]]
