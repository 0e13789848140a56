#!/usr/bin/env python3
"""Wall-time overhead of the chaostoolkit-cloudevents control on a real ``chaos run``.

Not part of the test suite. Run it through ``run-overhead.sh`` (next to this file), which builds
a separate venv with the legacy controls and starts a real InfluxDB and Pushgateway::

    bash chaos-sink/control/bench/run-overhead.sh [--repeats 7] [--chaos-sink auto]

or directly, with a venv holding chaostoolkit, chaosdb, chaostoolkit-prometheus and this
control, and the two servers already up::

    python overhead.py --chaos PATH/bin/chaos --influx-url URL --pushgateway-url URL

The experiment: 50 actions in the method, each a Python provider calling ``os.path.exists("/")``.
Python providers and not ``process: true`` because (a) a fork+exec per activity costs ~2-5 ms,
which would dilute the controls' per-activity cost; a near-free activity is the worst case for a
control, and (b) chaosdb's influx control only writes a point for *python actions* (it skips
probes, and POSTs an empty body for process/http providers), so this is the experiment where the
legacy control does its full job.

Scenarios, run round-robin (each round runs every scenario once, in a rotated order, so machine
noise hits them all alike), after one discarded warm-up round:

``none``            no control at all (the baseline)
``empty``           a control that does nothing: what Chaos Toolkit itself spends on any control
``cloudevents``     this control, sending to a minimal accept-all HTTP receiver in this process
                    (``http.server``, HTTP/1.1 keep-alive, 202 with an empty body), declared as
                    the README recommends (``"automatic": false``)
``cloudevents-automatic`` the same declared without ``automatic`` (Chaos Toolkit's default: true)
``cloudevents-down`` this control with the sink down (a closed port on 127.0.0.1)
``chaos-sink``      this control sending to the REAL chaos-sink binary (``--chaos-sink``), which
                    forwards to the same InfluxDB and Pushgateway (optional)
``legacy``          chaosdb's influx control + chaostoolkit-prometheus's metrics control, pointed
                    at the real InfluxDB 1.x and Pushgateway

Every run is checked (exit code 0; events received; InfluxDB points written; Pushgateway group
present) so a control that silently disabled itself cannot pass for a fast one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
INFLUX_DB = "chaosbench"


# ----------------------------------------------------------------------------------------------
# The experiment
# ----------------------------------------------------------------------------------------------
def experiment(activities: int, controls: List[Dict[str, Any]]) -> Dict[str, Any]:
    """``activities`` cheap python actions in the method, with the given experiment controls."""
    exp: Dict[str, Any] = {
        "version": "1.0.0",
        "title": "Overhead benchmark",
        "description": f"{activities} trivial python actions",
        "tags": ["bench"],
        "method": [
            {
                "type": "action",
                "name": f"action-{i:03d}",
                "provider": {
                    "type": "python",
                    "module": "os.path",
                    "func": "exists",
                    "arguments": {"path": "/"},
                },
            }
            for i in range(activities)
        ],
    }
    if controls:
        exp["controls"] = controls
    return exp


def cloudevents_control(
    sink_url: str,
    module: str = "chaoscloudevents.control",
    automatic: bool = False,
    concurrency: Optional[int] = None,
) -> Dict[str, Any]:
    """The control's declaration as the README recommends it: ``automatic: false`` (it has no
    per-activity hooks, so Chaos Toolkit need not look them up around every activity)."""
    control: Dict[str, Any] = {
        "name": "cloudevents",
        "provider": {
            "type": "python",
            "module": module,
            "arguments": {"sink_url": sink_url},
        },
    }
    if concurrency is not None:
        control["provider"]["arguments"]["concurrency"] = concurrency
    if not automatic:
        control["automatic"] = False
    return control


def legacy_controls(pushgateway_url: str) -> List[Dict[str, Any]]:
    return [
        {"name": "influx", "provider": {"type": "python", "module": "chaosdb.influx"}},
        {
            "name": "prometheus",
            "provider": {
                "type": "python",
                "module": "chaosprometheus.metrics",
                "arguments": {"pushgateway_url": pushgateway_url},
            },
        },
    ]


def influx_configuration(influx_url: str) -> Dict[str, Any]:
    parts = urllib.parse.urlsplit(influx_url)
    return {
        "influxdb": {
            "host": parts.hostname,
            "port": parts.port or 8086,
            "http_endpoint": "/write",
            "database": INFLUX_DB,
        }
    }


# ----------------------------------------------------------------------------------------------
# Receivers and checks
# ----------------------------------------------------------------------------------------------
class AcceptAllReceiver:
    """A minimal CloudEvents receiver: 202 with an empty body for every POST, counts them."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()
                with receiver._lock:
                    receiver.count += 1

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class LeanAcceptAllReceiver:
    """The same answer (202, empty body) from an asyncio protocol that only frames requests by
    ``Content-Length``: a few microseconds of CPU per request instead of ``http.server``'s
    hundred or so. The receiver shares the machine's cores with ``chaos run``, so its own cost
    shows in the figures; in production the sink runs elsewhere."""

    ANSWER = b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"

    def __init__(self) -> None:
        import asyncio

        self.count = 0
        receiver = self
        ready = threading.Event()

        class Protocol(asyncio.Protocol):
            def connection_made(self, transport: Any) -> None:
                self.transport = transport
                self.buf = b""
                self.need = -1  # body bytes still expected, -1: reading a head

            def data_received(self, data: bytes) -> None:
                self.buf += data
                while True:
                    if self.need < 0:
                        end = self.buf.find(b"\r\n\r\n")
                        if end < 0:
                            return
                        head, self.buf = self.buf[:end].lower(), self.buf[end + 4 :]
                        i = head.find(b"content-length:")
                        self.need = 0
                        if i >= 0:
                            j = head.find(b"\r\n", i)
                            self.need = int(head[i + 15 : j if j >= 0 else len(head)])
                    if len(self.buf) < self.need:
                        return
                    self.buf, self.need = self.buf[self.need :], -1
                    receiver.count += 1
                    self.transport.write(LeanAcceptAllReceiver.ANSWER)

        def serve() -> None:
            loop = asyncio.new_event_loop()
            server = loop.run_until_complete(loop.create_server(Protocol, "127.0.0.1", 0))
            self.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
            self._loop = loop
            ready.set()
            loop.run_forever()

        threading.Thread(target=serve, daemon=True).start()
        ready.wait(10)

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)


def closed_port_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/"


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def http(url: str, data: Optional[bytes] = None, method: Optional[str] = None) -> bytes:
    req = urllib.request.Request(url, data=data, method=method)
    with urllib.request.urlopen(req, timeout=5) as resp:
        return resp.read()


def influx_points(influx_url: str) -> int:
    q = urllib.parse.urlencode({"db": INFLUX_DB, "q": 'SELECT count("func") FROM "chaos_toolkit.actions"'})
    body = json.loads(http(f"{influx_url}/query?{q}"))
    series = body["results"][0].get("series") or []
    return int(series[0]["values"][0][1]) if series else 0


def pushgateway_groups(pushgateway_url: str) -> int:
    body = json.loads(http(f"{pushgateway_url}/api/v1/metrics"))
    return sum(
        1 for g in body.get("data") or [] if g.get("labels", {}).get("job") == "chaostoolkit"
    )


def chaos_sink_received(base_url: str) -> int:
    text = http(f"{base_url}metrics").decode()
    return int(
        sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("chaos_sink_events_received_total")
        )
    )


class SitePackages:
    """Modules the benchmark puts into the chaos venv's site-packages, removed at the end."""

    def __init__(self, python: Path) -> None:
        self.dir = Path(subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True, capture_output=True, text=True,
        ).stdout.strip())
        self.paths: List[Path] = []

    def add_module(self, name: str, text: str) -> None:
        self._write(self.dir / f"{name}.py", text)

    def add_package(self, name: str, files: Dict[str, str]) -> None:
        root = self.dir / name
        root.mkdir()
        self.paths.append(root)
        for file, text in files.items():
            (root / file).write_text(text)
        import compileall

        compileall.compile_dir(str(root), quiet=1)  # as pip does for an installed package

    def _write(self, path: Path, text: str) -> None:
        import importlib.util
        import py_compile

        path.write_text(text)
        self.paths.append(path)
        py_compile.compile(str(path))
        self.paths.append(Path(importlib.util.cache_from_source(str(path))))

    def remove(self) -> None:
        for path in reversed(self.paths):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            elif path.exists():
                path.unlink()


class ChaosSinkProcess:
    """The real chaos-sink binary on 127.0.0.1, forwarding to the bench's InfluxDB/Pushgateway."""

    def __init__(self, binary: Path, workdir: Path, influx_url: str, pushgateway_url: str) -> None:
        port = free_port()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "RUST_LOG": "warn",
            "CHAOS_SINK_INFLUXDB_URL": influx_url,
            "CHAOS_SINK_INFLUXDB_DATABASE": INFLUX_DB,
            "CHAOS_SINK_PUSHGATEWAY_URL": pushgateway_url,
        }
        self.log_path = workdir / "chaos-sink.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([str(binary)], env=env, stdout=self._log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 20
        while True:
            try:
                http(f"{self.url}readyz")
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    raise SystemExit(
                        f"chaos-sink did not become ready; its log:\n{self.log_path.read_text()}"
                    )
                time.sleep(0.1)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


# ----------------------------------------------------------------------------------------------
# Running
# ----------------------------------------------------------------------------------------------
@dataclass
class Scenario:
    name: str
    label: str
    experiment_path: Path
    #: runs the experiment (the callable) between its own before/after reads; returns the sample
    check: Callable[[Callable[[], "Sample"]], "Sample"]
    samples: List["Sample"] = field(default_factory=list)


@dataclass
class Sample:
    wall: float
    duration: float  # the journal's duration (the run without interpreter start-up and exit)
    cpu: float  # user + system CPU seconds of the chaos process
    returncode: int
    stderr: str


def run_chaos(chaos: Path, experiment_path: Path, workdir: Path, env: Dict[str, str]) -> Sample:
    journal = workdir / "journal.json"
    if journal.exists():
        journal.unlink()
    cmd = [
        str(chaos),
        "--no-version-check",
        "--log-file",
        str(workdir / "chaostoolkit.log"),
        "--settings",
        str(workdir / "settings.yaml"),
        "run",
        "--journal-path",
        str(journal),
        str(experiment_path),
    ]
    with open(workdir / "stdout", "wb") as out, open(workdir / "stderr", "wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    duration = float("nan")
    if journal.exists():
        duration = float(json.loads(journal.read_text()).get("duration") or "nan")
    stderr = (workdir / "stderr").read_text(errors="replace")
    return Sample(wall, duration, usage.ru_utime + usage.ru_stime, proc.returncode, stderr)


def percentile(values: List[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chaos", type=Path, default=Path(sys.executable).with_name("chaos"),
                   help="the chaos CLI (default: next to this Python)")
    p.add_argument("--repeats", type=int, default=7, help="measured rounds (default 7)")
    p.add_argument("--warmup", type=int, default=1, help="discarded rounds first (default 1)")
    p.add_argument("--activities", type=int, default=50, help="actions in the method (default 50)")
    p.add_argument("--influx-url", default=os.environ.get("TEST_INFLUX_URL"),
                   help="InfluxDB 1.x base URL (default $TEST_INFLUX_URL)")
    p.add_argument("--pushgateway-url", default=os.environ.get("TEST_PUSHGATEWAY_URL"),
                   help="Pushgateway base URL (default $TEST_PUSHGATEWAY_URL)")
    p.add_argument("--chaos-sink", metavar="PATH|auto",
                   help="also measure the control against the real chaos-sink binary "
                        "(auto: target/release/chaos-sink, else target/debug/chaos-sink)")
    p.add_argument("--compare-rev", metavar="GIT_REV",
                   help="also measure the control as it was at this git revision (same receiver), "
                        "to compare versions in the same run")
    p.add_argument("--compare-src", metavar="DIR", type=Path,
                   help="also measure the chaoscloudevents package in DIR (e.g. a variant being tried)")
    p.add_argument("--only", help="comma-separated scenario names to run (default: all)")
    p.add_argument("--json", type=Path, help="write every sample to this file")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    args = p.parse_args(argv)

    if not args.chaos.exists():
        p.error(f"no chaos CLI at {args.chaos}")
    if not args.influx_url or not args.pushgateway_url:
        p.error("--influx-url and --pushgateway-url (or TEST_INFLUX_URL/TEST_PUSHGATEWAY_URL) are needed")
    influx_url = args.influx_url.rstrip("/")
    pushgateway_url = args.pushgateway_url.rstrip("/")
    sink_binary: Optional[Path] = None
    if args.chaos_sink:
        if args.chaos_sink == "auto":
            for candidate in (REPO / "target/release/chaos-sink", REPO / "target/debug/chaos-sink"):
                if candidate.exists():
                    sink_binary = candidate
                    break
            if sink_binary is None:
                print("no chaos-sink binary under target/: skipping that scenario", file=sys.stderr)
        else:
            sink_binary = Path(args.chaos_sink)
            if not sink_binary.exists():
                p.error(f"no chaos-sink binary at {sink_binary}")

    http(f"{influx_url}/query", data=urllib.parse.urlencode({"q": f"CREATE DATABASE {INFLUX_DB}"}).encode())

    work = Path(tempfile.mkdtemp(prefix="ce-overhead-"))
    (work / "settings.yaml").write_text("{}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("K_SINK", "K_CE_", "CHAOS_SINK_"))}
    env.pop("PYTHONPATH", None)
    receiver = AcceptAllReceiver()
    lean = LeanAcceptAllReceiver()
    installed = SitePackages(args.chaos.with_name("python"))
    try:
        sink_proc: Optional[ChaosSinkProcess] = None
        scenarios: List[Scenario] = []

        def write(name: str, controls: List[Dict[str, Any]], configuration: Optional[Dict[str, Any]] = None) -> Path:
            exp = experiment(args.activities, controls)
            if configuration:
                exp["configuration"] = configuration
            path = work / f"{name}.json"
            path.write_text(json.dumps(exp, indent=1))
            return path

        # experiment, method and rollbacks started/finished, and each activity started/finished
        expected_events = 2 * args.activities + 6

        def check_ok(run: Callable[[], Sample]) -> Sample:
            sample = run()
            if sample.returncode != 0:
                raise SystemExit(f"chaos run failed ({sample.returncode}):\n{sample.stderr[-3000:]}")
            return sample

        def check_receiver(run: Callable[[], Sample], which: Any = receiver) -> Sample:
            before = which.count
            sample = check_ok(run)
            got = which.count - before
            if got != expected_events:
                raise SystemExit(f"the receiver got {got} events, expected {expected_events}:\n{sample.stderr[-3000:]}")
            return sample

        def check_down(run: Callable[[], Sample]) -> Sample:
            sample = check_ok(run)
            if "could not be delivered" not in sample.stderr:
                raise SystemExit(f"no delivery warning with the sink down:\n{sample.stderr[-3000:]}")
            return sample

        def check_chaos_sink(run: Callable[[], Sample]) -> Sample:
            assert sink_proc is not None
            before = chaos_sink_received(sink_proc.url)
            sample = check_ok(run)
            deadline = time.monotonic() + 5
            while (got := chaos_sink_received(sink_proc.url) - before) < expected_events:
                if time.monotonic() > deadline:
                    raise SystemExit(f"chaos-sink received {got} events, expected {expected_events}")
                time.sleep(0.05)
            return sample

        def check_legacy(run: Callable[[], Sample]) -> Sample:
            before = influx_points(influx_url)
            sample = check_ok(run)
            got = influx_points(influx_url) - before
            if got != 2 * args.activities:
                raise SystemExit(f"InfluxDB got {got} points, expected {2 * args.activities}")
            if pushgateway_groups(pushgateway_url) < 1:
                raise SystemExit("no chaostoolkit group on the Pushgateway")
            return sample

        scenarios.append(Scenario("none", "no control", write("none", []), check_ok))
        # what Chaos Toolkit itself spends on any declared control (it looks the hooks up and
        # deep-copies the declaration before and after every activity), whatever the control does
        installed.add_module("bench_empty_control", "def configure_control(**kwargs):\n    pass\n")
        scenarios.append(Scenario(
            "empty", "an empty control (Chaos Toolkit's own cost)",
            write("empty", [{"name": "empty", "provider": {"type": "python", "module": "bench_empty_control"}}]),
            check_ok,
        ))
        scenarios.append(Scenario("cloudevents", "cloudevents -> accept-all receiver",
                                  write("cloudevents", [cloudevents_control(receiver.url)]), check_receiver))
        scenarios.append(Scenario(
            "cloudevents-automatic", "cloudevents (automatic: true) -> accept-all receiver",
            write("cloudevents-automatic", [cloudevents_control(receiver.url, automatic=True)]),
            check_receiver,
        ))
        if args.compare_src:
            files = {f.name: f.read_text() for f in sorted(args.compare_src.glob("*.py"))}
            if "control.py" not in files:
                p.error(f"{args.compare_src} is not a chaoscloudevents package directory")
            installed.add_package("chaoscloudevents_src", {
                name: re.sub(r"\bchaoscloudevents\b", "chaoscloudevents_src", text) for name, text in files.items()
            })
            scenarios.append(Scenario(
                "cloudevents-src", f"cloudevents from {args.compare_src.name} -> accept-all receiver",
                write("cloudevents-src", [cloudevents_control(receiver.url, "chaoscloudevents_src.control")]),
                check_receiver,
            ))
        if args.compare_rev:
            # the control as it was at that revision, renamed chaoscloudevents_rev so that both
            # versions are importable in the same venv (no PYTHONPATH: it would slow every import)
            import io
            import tarfile

            archive = subprocess.run(
                ["git", "-C", str(REPO), "archive", args.compare_rev, "chaos-sink/control/src/chaoscloudevents"],
                check=True, capture_output=True,
            ).stdout
            with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
                files = {
                    Path(m.name).name: tar.extractfile(m).read().decode()  # type: ignore[union-attr]
                    for m in tar.getmembers() if m.isfile() and m.name.endswith(".py")
                }
            installed.add_package("chaoscloudevents_rev", {
                name: re.sub(r"\bchaoscloudevents\b", "chaoscloudevents_rev", text) for name, text in files.items()
            })
            scenarios.append(Scenario(
                "cloudevents-rev", f"cloudevents @{args.compare_rev} -> accept-all receiver",
                write("cloudevents-rev", [cloudevents_control(receiver.url, "chaoscloudevents_rev.control")]),
                check_receiver,
            ))
        scenarios.append(Scenario("cloudevents-lean", "cloudevents -> lean asyncio receiver",
                                  write("cloudevents-lean", [cloudevents_control(lean.url)]),
                                  lambda run: check_receiver(run, lean)))
        scenarios.append(Scenario("cloudevents-down", "cloudevents, sink down",
                                  write("cloudevents-down", [cloudevents_control(closed_port_url())]), check_down))
        if sink_binary is not None:
            sink_proc = ChaosSinkProcess(sink_binary, work, influx_url, pushgateway_url)
            scenarios.append(Scenario("chaos-sink", f"cloudevents -> chaos-sink ({sink_binary.parent.name})",
                                      write("chaos-sink", [cloudevents_control(sink_proc.url)]), check_chaos_sink))
            # the same control sending one event at a time, and two: what the default concurrency buys
            for c in (1, 2):
                scenarios.append(Scenario(
                    f"chaos-sink-c{c}", f"cloudevents (concurrency {c}) -> chaos-sink",
                    write(f"chaos-sink-c{c}", [cloudevents_control(sink_proc.url, concurrency=c)]),
                    check_chaos_sink,
                ))
        scenarios.append(Scenario("legacy", "chaosdb influx + prometheus",
                                  write("legacy", legacy_controls(pushgateway_url), influx_configuration(influx_url)),
                                  check_legacy))
        if args.only:
            wanted = set(args.only.split(","))
            scenarios = [s for s in scenarios if s.name in wanted or s.name == "none"]

        rounds = args.warmup + args.repeats
        for r in range(rounds):
            shift = r % len(scenarios)
            order = scenarios[shift:] + scenarios[:shift]
            for s in order:
                sample = s.check(lambda s=s: run_chaos(args.chaos, s.experiment_path, work, env))
                if r >= args.warmup:
                    s.samples.append(sample)
            tag = "warm-up" if r < args.warmup else f"round {r - args.warmup + 1}/{args.repeats}"
            print(f"{tag}: " + "  ".join(f"{s.name}={s.samples[-1].wall:.3f}s" if r >= args.warmup else s.name
                                          for s in scenarios), file=sys.stderr, flush=True)
    finally:
        receiver.close()
        lean.close()
        installed.remove()
        if sink_proc is not None:
            sink_proc.close()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    report(scenarios, args)
    if args.json:
        args.json.write_text(json.dumps({
            s.name: {"label": s.label, "samples": [
                {"wall": x.wall, "cpu": x.cpu, "duration": x.duration} for x in s.samples
            ]}
            for s in scenarios
        }, indent=1))
    return 0


def report(scenarios: List[Scenario], args: argparse.Namespace) -> None:
    """The table: wall time (median, p90), the median of the per-round ratios to ``none`` (the
    runs of one round are a few seconds apart, so they share the machine's load: the steadiest
    estimate on a busy machine), CPU time of the chaos process (user + system), and the run's
    own duration from its journal (without interpreter start-up, imports and exit)."""
    base = scenarios[0]

    def stats(s: Scenario) -> Dict[str, float]:
        walls = [x.wall for x in s.samples]
        return {
            "med": statistics.median(walls),
            "p90": percentile(walls, 0.9),
            "cpu": statistics.median(x.cpu for x in s.samples),
            "dur": statistics.median(x.duration for x in s.samples),
            "paired": statistics.median(x.wall / y.wall for x, y in zip(s.samples, base.samples)),
        }

    b = stats(base)
    print()
    print(f"chaos run, {args.activities} python actions, {args.repeats} interleaved rounds "
          f"(+{args.warmup} warm-up), {os.cpu_count()} CPUs, Python {platform.python_version()}")
    width = max(len(s.label) for s in scenarios)
    columns = ["median wall (vs none)", "p90 wall (vs none)", "per-round ratio",
               "median CPU (vs none)", "run duration (vs none)"]
    print(f"| {'scenario':<{width}} | " + " | ".join(columns) + " |")
    print(f"|{'-' * (width + 2)}|" + "|".join("-" * (len(c) + 2) for c in columns) + "|")
    for s in scenarios:
        x = stats(s)
        cells = [
            f"{x[k]:.3f} s ({100 * (x[k] / b[k] - 1):+.1f}%)" for k in ("med", "p90")
        ] + [f"{100 * (x['paired'] - 1):+.1f}%", f"{x['cpu']:.3f} s ({100 * (x['cpu'] / b['cpu'] - 1):+.1f}%)",
             f"{x['dur']:.3f} s ({1000 * (x['dur'] - b['dur']):+.0f} ms)"]
        print(f"| {s.label:<{width}} | " + " | ".join(f"{c:>{len(h)}}" for c, h in zip(cells, columns)) + " |")


if __name__ == "__main__":
    sys.exit(main())
