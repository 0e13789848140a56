"""Helpers of the end-to-end tests: the real chaos-sink binary, the real InfluxDB 1.x and
Pushgateway of ``scripts/test``, and real ``chaos run`` invocations.

Missing pieces (binary, ``TEST_INFLUX_URL``, ``TEST_PUSHGATEWAY_URL``, the ``chaos`` CLI) skip the
tests locally and fail them under ``CI=true`` or ``TEST_REQUIRE_SERVERS=1`` (the project's rule,
as ``shared::testkit::require_env``). Synchronisation is polling with a deadline, never a sleep.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, TypeVar

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
EXPERIMENTS = HERE / "experiments"
# Python providers shared with the control's own tests (count_calls, fail, pause, ...).
PYLIB = REPO / "chaos-sink" / "control" / "tests" / "fixtures" / "pylib"
CHAOS = Path(sys.executable).with_name("chaos")

T = TypeVar("T")


# ---- skip locally, fail under CI -----------------------------------------------------------
def servers_required() -> bool:
    """True when a missing server or tool is a failure (CI, or scripts/test)."""
    return os.environ.get("CI") in ("true", "1") or os.environ.get("TEST_REQUIRE_SERVERS") == "1"


def need(value: Optional[T], what: str, why: str) -> T:
    """``value`` if it is set; otherwise fail (CI / scripts/test) or skip the test."""
    if value:
        return value
    msg = f"{what} is required but not available: {why}"
    if servers_required():
        pytest.fail(msg + " (CI=true or TEST_REQUIRE_SERVERS=1); run scripts/test", pytrace=False)
    pytest.skip(f"SKIPPED: {msg} (scripts/test provides it)")
    raise AssertionError("unreachable")


def sink_binary() -> Optional[Path]:
    """``target/debug/chaos-sink`` (``$CARGO_TARGET_DIR`` respected), built by ``cargo test``."""
    target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
    if not target.is_absolute():
        target = REPO / target
    path = target / "debug" / "chaos-sink"
    return path if path.is_file() and os.access(path, os.X_OK) else None


# ---- polling ------------------------------------------------------------------------------
def poll(what: str, check: Callable[[], Optional[T]], timeout: float = 30.0) -> T:
    """Call ``check`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Optional[T] = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")
        time.sleep(0.05)


def http(
    method: str, url: str, body: Optional[bytes] = None, timeout: float = 10.0
) -> Tuple[int, bytes]:
    """One request; (status, body). Connection errors are status 0."""
    req = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- the real chaos-sink ------------------------------------------------------------------
class ChaosSinkProcess:
    """The chaos-sink binary on 127.0.0.1 and a free port, configured by a YAML file plus the
    environment (as in k8s: credentials from a Secret's variables). Context manager: waits for
    ``/readyz`` (ready to take events), stops with SIGTERM and checks the clean exit (0)."""

    def __init__(self, binary: Path, workdir: Path, config: str, env: Dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = workdir / "chaos-sink.yaml"
        self.config_path.write_text(config, encoding="utf-8")
        self.log_path = workdir / "chaos-sink.log"
        self._log = self.log_path.open("wb")
        self.exit_code: Optional[int] = None
        run_env = {"PATH": os.environ.get("PATH", ""), "RUST_LOG": "info", "LOG_FORMAT": "text"}
        run_env.update(env)
        run_env.update(
            {
                "CHAOS_SINK_CONFIG": str(self.config_path),
                "HOST": "127.0.0.1",
                "PORT": str(self.port),
            }
        )
        self.proc = subprocess.Popen(
            [str(binary)], env=run_env, stdout=self._log, stderr=subprocess.STDOUT, cwd=workdir
        )

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def __enter__(self) -> "ChaosSinkProcess":
        def ready() -> bool:
            if self.proc.poll() is not None:
                pytest.fail(
                    f"chaos-sink exited with {self.proc.returncode} at start:\n{self.log()[-3000:]}"
                )
            status, body = http("GET", self.url + "/readyz", timeout=2)
            return status == 200

        try:
            poll("chaos-sink /readyz", ready, timeout=60)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.exit_code = self.proc.returncode
        self._log.close()

    def metrics(self) -> List["Sample"]:
        status, body = http("GET", self.url + "/metrics")
        assert status == 200, status
        return parse_prometheus(body.decode())


# ---- InfluxDB 1.x HTTP API ------------------------------------------------------------------
def influx_query(base: str, db: str, q: str) -> List[Dict[str, Any]]:
    """Rows of an InfluxQL query (``/query``, times as epoch microseconds), each row a dict of
    the series' tags (``GROUP BY *``) and its columns, plus ``_measurement``."""
    params = urllib.parse.urlencode({"db": db, "q": q, "epoch": "u"})
    status, body = http("GET", f"{base}/query?{params}")
    assert status == 200, f"InfluxDB /query {q!r}: HTTP {status} {body[:500]!r}"
    result = json.loads(body)["results"][0]
    assert "error" not in result, f"InfluxDB /query {q!r}: {result['error']}"
    rows: List[Dict[str, Any]] = []
    for series in result.get("series", []):
        for values in series["values"]:
            row = dict(zip(series["columns"], values))
            row.update(series.get("tags") or {})
            row["_measurement"] = series["name"]
            rows.append(row)
    return rows


def influx_admin(base: str, q: str) -> None:
    """A statement that needs POST (``CREATE DATABASE``, ``DROP DATABASE``)."""
    body = urllib.parse.urlencode({"q": q}).encode()
    req = urllib.request.Request(
        f"{base}/query",
        data=body,
        method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200
        result = json.loads(resp.read())["results"][0]
        assert "error" not in result, (q, result)


def influx_string(value: str) -> str:
    """An InfluxQL string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


# ---- Prometheus text format (Pushgateway GET /metrics, the sink's /metrics) ----------------
@dataclass(frozen=True)
class Sample:
    """One sample of the Prometheus text exposition format."""

    name: str
    labels: Dict[str, str]
    value: float


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?')


def _unescape(value: str) -> str:
    out, i = [], 0
    while i < len(value):
        c = value[i]
        if c == "\\" and i + 1 < len(value):
            nxt = value[i + 1]
            out.append({"n": "\n", "\\": "\\", '"': '"'}.get(nxt, "\\" + nxt))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def parse_prometheus(text: str) -> List[Sample]:
    """Every sample of a Prometheus text-format page (comments skipped)."""
    samples: List[Sample] = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        assert m, f"not a Prometheus sample line: {line!r}"
        labels: Dict[str, str] = {}
        rest = m.group(2) or ""
        pos = 0
        while pos < len(rest):
            lm = _LABEL.match(rest, pos)
            assert lm, f"bad labels in {line!r}"
            labels[lm.group(1)] = _unescape(lm.group(2))
            pos = lm.end()
        samples.append(Sample(m.group(1), labels, float(m.group(3))))
    return samples


def pushgateway_run_samples(base: str, run_id: str) -> List[Sample]:
    """The Pushgateway's ``GET /metrics`` samples carrying ``chaostoolkit_run_trace_id=run_id``."""
    status, body = http("GET", f"{base}/metrics")
    assert status == 200, f"Pushgateway /metrics: HTTP {status}"
    return [
        s
        for s in parse_prometheus(body.decode())
        if s.labels.get("chaostoolkit_run_trace_id") == run_id
    ]


# ---- Chaos Toolkit --------------------------------------------------------------------------
@dataclass
class ChaosRun:
    """One real ``chaos run``."""

    name: str
    returncode: int
    stderr: str
    log: str
    journal: Dict[str, Any]
    run_id: str = ""
    details: Dict[str, Any] = field(default_factory=dict)


_RUN_LINE = re.compile(r"CloudEvents: run ([0-9a-f-]{36}) of experiment ([0-9a-f]+) is sent to")


def chaos_run(
    name: str,
    workdir: Path,
    env: Dict[str, str],
    interrupt_when: Optional[Callable[[int], bool]] = None,
    timeout: float = 90.0,
    interrupt_signal: int = signal.SIGINT,
) -> ChaosRun:
    """``chaos run experiments/<name>.json`` with the test venv's CLI, in its own process group.
    With ``interrupt_when``, SIGINT is sent to that group, as Ctrl-C in a terminal does (chaos and
    the activity's processes get it), once the check passes for chaos's pid (polled with a
    deadline); ``interrupt_signal=SIGKILL`` kills the run instead (an OOM kill, a node lost): no
    journal, no ``experiment.finished``."""
    workdir.mkdir(parents=True, exist_ok=True)
    settings = workdir / "settings.yaml"
    settings.write_text("{}\n", encoding="utf-8")
    journal_path = workdir / "journal.json"
    log_path = workdir / "chaostoolkit.log"
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("K_")}
    run_env["PYTHONPATH"] = str(PYLIB)
    run_env.update(env)
    cmd = [
        str(CHAOS),
        "--no-version-check",
        "--log-file",
        str(log_path),
        "--settings",
        str(settings),
        "run",
        "--journal-path",
        str(journal_path),
        str(EXPERIMENTS / f"{name}.json"),
    ]
    proc = subprocess.Popen(
        cmd,
        cwd=workdir,
        env=run_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        if interrupt_when is not None:
            deadline = time.monotonic() + timeout
            while not interrupt_when(proc.pid):
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"{name}: the moment to interrupt never came (chaos {proc.poll()})")
                time.sleep(0.05)
            os.killpg(proc.pid, interrupt_signal)
        _, stderr = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    log = log_path.read_text(encoding="utf-8", errors="replace") if log_path.exists() else ""
    journal = json.loads(journal_path.read_text()) if journal_path.exists() else {}
    run = ChaosRun(name, proc.returncode, stderr or "", log, journal)
    found = _RUN_LINE.findall(log)
    assert len(found) == 1, f"{name}: expected one 'CloudEvents: run' log line, got {found}:\n{log}"
    run.run_id = found[0][0]
    return run


def descendant_commands(pid: int) -> List[List[str]]:
    """Command lines of the live descendants of ``pid`` (Linux ``/proc``)."""
    children: Dict[int, List[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # "pid (comm) state ppid ...": comm may hold spaces, so split after its ")"
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # the process ended meanwhile
        children.setdefault(ppid, []).append(int(stat.parent.name))
    out: List[List[str]] = []
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        todo.extend(children.get(child, []))
        try:
            raw = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        out.append([a.decode(errors="replace") for a in raw.split(b"\0") if a])
    return out


# ---- the journal: what each backend must hold ---------------------------------------------
def parse_journal_time(value: str) -> datetime:
    """A journal timestamp (ISO 8601, UTC when naive) as an aware datetime."""
    dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def epoch_us(value: str) -> int:
    dt = parse_journal_time(value)
    return (
        int((dt - datetime(1970, 1, 1, tzinfo=timezone.utc)).total_seconds()) * 1_000_000
        + dt.microsecond
    )


def epoch_ms(value: str) -> int:
    return epoch_us(value) // 1000


def rfc3339_us(value: str) -> str:
    """The sink's RFC 3339 form: UTC, microseconds, ``Z``."""
    dt = parse_journal_time(value).astimezone(timezone.utc)
    return dt.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def activity_runs(journal: Dict[str, Any]) -> Iterator[Tuple[str, Dict[str, Any]]]:
    """(phase, run) of every activity run in the journal."""
    steady = journal.get("steady_states") or {}
    for phase in ("before", "after"):
        for r in (steady.get(phase) or {}).get("probes", []):
            yield phase, r
    for r in journal.get("run") or []:
        yield "method", r
    for r in journal.get("rollbacks") or []:
        yield "rollbacks", r


def run_outcome(journal: Dict[str, Any]) -> str:
    """The outcome as documented in docs/chaos-events.md section 4 and chaos-sink/README.md."""
    before = ((journal.get("steady_states") or {}).get("before") or {}).get("steady_state_met")
    if journal["status"] == "completed" and journal["deviated"]:
        return "deviated"
    if journal["status"] == "completed" and before is False:
        return "gate-failed"
    return journal["status"]


class Backends:
    """What a chaos-sink end-to-end test writes to: the REAL InfluxDB 1.x (a fresh database) and
    Pushgateway of ``scripts/test``, a FAKE Grafana (none is installable here), and the sink binary."""

    def __init__(self, influx: str, db: str, pushgateway: str, grafana: Any, binary: Path) -> None:
        self.influx = influx
        self.db = db
        self.pushgateway = pushgateway
        self.grafana = grafana
        self.binary = binary

    def q(self, query: str) -> List[Dict[str, Any]]:
        """An InfluxQL query on the test's database."""
        return influx_query(self.influx, self.db, query)

    def config(self, job: str, grafana: str = "", rest: str = "") -> str:
        """A chaos-sink YAML configuration for these backends: the Pushgateway ``job``, extra keys of the
        Grafana entry (indented lines) and further sections."""
        return (
            f"influxdb:\n  url: {self.influx}\n  database: {self.db}\n"
            f"pushgateway:\n  pushgateway_url: {self.pushgateway}\n  job: {job}\n"
            f"grafana:\n  - url: {self.grafana.url}\n{grafana}{rest}"
        )


@contextlib.contextmanager
def e2e_backends(prefix: str, grafana_authorization: str) -> Iterator[Backends]:
    """Checks the servers, the binary and the ``chaos`` CLI are there (missing: skip locally, fail in
    CI), creates the database ``<prefix>_<random>`` and starts the FAKE Grafana expecting
    ``grafana_authorization``; on leaving, the Grafana fake must have seen no violation and the database
    is dropped."""
    from fake_grafana import FakeGrafana

    influx = need(os.environ.get("TEST_INFLUX_URL"), "InfluxDB 1.x", "TEST_INFLUX_URL is not set")
    pushgateway = need(os.environ.get("TEST_PUSHGATEWAY_URL"), "Pushgateway",
                       "TEST_PUSHGATEWAY_URL is not set")
    binary = need(sink_binary(), "the chaos-sink binary",
                  "target/debug/chaos-sink is missing (built by `cargo test --workspace`)")
    need(CHAOS.exists(), "the chaos CLI", f"{CHAOS} is missing (tests/requirements.txt)")
    status, _ = http("GET", influx + "/ping")
    assert status == 204, f"InfluxDB at {influx} does not answer /ping ({status})"
    status, _ = http("GET", pushgateway + "/-/ready")
    assert status == 200, f"Pushgateway at {pushgateway} is not ready ({status})"
    db = f"{prefix}_{uuid.uuid4().hex[:12]}"
    influx_admin(influx, f'CREATE DATABASE "{db}"')
    try:
        with FakeGrafana(authorization=grafana_authorization) as grafana:
            yield Backends(influx, db, pushgateway, grafana, binary)
            assert not grafana.violations, grafana.violations
    finally:
        influx_admin(influx, f'DROP DATABASE "{db}"')
