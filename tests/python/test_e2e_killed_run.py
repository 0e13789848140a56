"""End to end: a real ``chaos run`` SIGKILLed in the middle of its method (an OOM kill, a lost
node): no ``experiment.finished`` ever leaves it. The REAL chaos-sink binary closes the run once
no event of it came for ``sink.run_timeout`` (``CHAOS_SINK_RUN_TIMEOUT``, 3 s here): in-progress
back to 0 with status ``interrupted`` on the REAL Pushgateway, the outcome on the run's point in
the REAL InfluxDB 1.x, the region closed and tagged ``timed-out`` in the FAKE Grafana (no Grafana
server is installable here). Also when the sink process that saw the run was SIGKILLed too: a new
process finds the open run in the backends.
"""

from __future__ import annotations

import signal
import uuid
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest

from chaos_e2e_kit import (
    Backends,
    e2e_backends,
    ChaosRun,
    ChaosSinkProcess,
    chaos_run,
    descendant_commands,
    influx_string,
    poll,
    pushgateway_run_samples,
)

GRAFANA_TOKEN = "glsa_killed-run-token"
RUN_TIMEOUT = "3"
TITLE = "E2E killed"


class Killed:
    """The backends and a Pushgateway job of this test's own."""

    def __init__(self, backends: Backends) -> None:
        self.backends = backends
        self.influx = backends.influx
        self.db = backends.db
        self.pushgateway = backends.pushgateway
        self.grafana = backends.grafana
        self.q = backends.q
        self.job = f"chaostoolkit-killed-{uuid.uuid4().hex[:8]}"

    def sink(self, workdir: Path, run_timeout: str) -> ChaosSinkProcess:
        workdir.mkdir(parents=True, exist_ok=True)
        config = self.backends.config(self.job).replace(
            f"  job: {self.job}\n", f"  job: {self.job}\n  flush_interval: 0.2\n")
        env = {
            "CHAOS_SINK_GRAFANA_API_TOKEN": GRAFANA_TOKEN,
            "CHAOS_SINK_RUN_TIMEOUT": run_timeout,
        }
        return ChaosSinkProcess(self.backends.binary, workdir, config, env)


@pytest.fixture()
def backends(tmp_path: Path) -> Iterator[Killed]:
    with e2e_backends("chaos_killed", f"Bearer {GRAFANA_TOKEN}") as b:
        yield Killed(b)


def run_killed_mid_method(b: Killed, sink: ChaosSinkProcess, workdir: Path) -> ChaosRun:
    """``chaos run experiments/killed.json`` SIGKILLed (with its process group) while its
    ``sleep 61`` action runs, once the action's ``activity.started`` reached the backends."""

    def sleeping(chaos_pid: int) -> bool:
        if not any(c and Path(c[0]).name == "sleep" and c[1:] == ["61"]
                   for c in descendant_commands(chaos_pid)):
            return False
        return bool(b.q(
            'SELECT count("path") FROM "chaos_toolkit.actions" WHERE '
            f"experiment = {influx_string(TITLE)} AND scope = 'before' AND \"path\" = 'sleep'"
        ))

    run = chaos_run("killed", workdir, {"K_SINK": sink.url}, interrupt_when=sleeping,
                    interrupt_signal=signal.SIGKILL)
    assert run.returncode == -signal.SIGKILL, run.returncode
    assert run.journal == {}, "a SIGKILLed chaos writes no journal"
    return run


def pg_value(b: Killed, run_id: str, name: str, **labels: str) -> Optional[float]:
    for s in pushgateway_run_samples(b.pushgateway, run_id):
        if s.name == name and s.labels.get("job") == b.job and all(
                s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    return None


def assert_closed_as_interrupted(b: Killed, run_id: str) -> None:
    # Pushgateway: in-progress back to 0, status interrupted (chaostoolkit-prometheus's states).
    poll("in-progress back to 0", lambda: pg_value(
        b, run_id, "chaostoolkit_inprogress_experiment") == 0.0, timeout=40)
    states = {s: pg_value(b, run_id, "chaostoolkit_experiment_status",
                          chaostoolkit_experiment_status=s)
              for s in ("completed", "failed", "aborted", "interrupted")}
    assert states == {"completed": 0.0, "failed": 0.0, "aborted": 0.0, "interrupted": 1.0}, states

    # InfluxDB: the run's one point has its start fields and the outcome the sink made.
    rows = poll("the InfluxDB run point's outcome", lambda: [
        r for r in b.q(f'SELECT * FROM "chaos_toolkit.experiments" WHERE run_id = '
                       f"{influx_string(run_id)} GROUP BY *")
        if r.get("status") == "interrupted"])
    assert len(b.q(f'SELECT * FROM "chaos_toolkit.experiments" WHERE run_id = '
                   f"{influx_string(run_id)} GROUP BY *")) == 1, "one point per run"
    row = rows[0]
    assert row["title"] == TITLE and row["timed_out"] is True and row["outcome"] == "interrupted"
    # The run ends at the last thing known of it, before the sink's timeout fired.
    assert row["duration"] >= 0

    # Grafana: the run's region closed and tagged so; nothing left running.
    def region() -> Optional[Any]:
        found = b.grafana.tagged(f"run:{run_id}", "experiment")
        return found if found and "status:interrupted" in found[0].tags else None

    found = poll("the Grafana region closed", region)
    assert len(found) == 1, [a.tags for a in found]
    tags = found[0].tags
    assert "timed-out" in tags and "running" not in tags, tags
    assert found[0].body["timeEnd"] >= found[0].body["time"]


def timed_out_total(sink: ChaosSinkProcess) -> float:
    """``chaos_sink_runs_timed_out_total`` once it moved (counted after every backend answered,
    a moment after the last one shows the run closed)."""
    return poll("chaos_sink_runs_timed_out_total", lambda: sum(
        s.value for s in sink.metrics() if s.name == "chaos_sink_runs_timed_out_total"), timeout=10)


def test_a_sigkilled_chaos_run_is_closed_after_the_run_timeout(backends: Killed,
                                                               tmp_path: Path) -> None:
    with backends.sink(tmp_path / "sink", RUN_TIMEOUT) as sink:
        run = run_killed_mid_method(backends, sink, tmp_path / "run")
        # Open in every backend before the timeout.
        assert backends.grafana.tagged(f"run:{run.run_id}", "running")
        assert_closed_as_interrupted(backends, run.run_id)
        assert timed_out_total(sink) == 1
        assert GRAFANA_TOKEN not in sink.log()
    assert sink.exit_code == 0, sink.log()[-3000:]


def test_a_sigkilled_run_whose_sink_was_sigkilled_too_is_closed_by_the_next_sink(
        backends: Killed, tmp_path: Path) -> None:
    first = backends.sink(tmp_path / "first", "3600")
    with first:
        run = run_killed_mid_method(backends, first, tmp_path / "run")
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(timeout=10)
    assert first.exit_code == -signal.SIGKILL
    assert pg_value(backends, run.run_id, "chaostoolkit_inprogress_experiment") in (1.0, None)

    # A new process (a restarted pod) never saw the run: it finds it in the backends.
    with backends.sink(tmp_path / "second", RUN_TIMEOUT) as second:
        assert_closed_as_interrupted(backends, run.run_id)
        assert timed_out_total(second) == 1
    assert second.exit_code == 0, second.log()[-3000:]
