"""The images, built and run: every service's container from deploy/Dockerfile's runtime stage (built by
``scripts/images`` with podman, on a Debian 12 stand-in for distroless/cc: the public base images cannot be
pulled here), run as the Kubernetes manifests say (their env, uid 65532, read-only root filesystem, no
capabilities, no privilege escalation), against the real servers of ``scripts/test``:

- each image answers ``--help`` and its ``/healthz`` and ``/readyz``;
- the exporter container reads otc-sim's (a FAKE of OTC, in its own container) clouds.yaml from a volume and
  delivers every trace into the neo4j-sink container, which writes the real Bolt server (ArcadeDB); its state
  file lives on a volume and a new container resumes from it without a duplicate;
- a real ``chaos run`` with the project's control reaches the chaos-sink container (the manifest's
  config file, mounted read-only), which writes the real InfluxDB 1.x and Pushgateway.

Every container runs with ``--network=host`` (the servers listen on 127.0.0.1) and is removed at the end,
also on failure.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Dict, List, Optional

import pytest
import yaml

from manifest_helpers import REPO, free_port, need, pod_spec

sys.path.insert(0, str(REPO / "tests" / "python"))
from chaos_e2e_kit import CHAOS, chaos_run, influx_admin, influx_query, influx_string, poll  # noqa: E402

PREFIX = os.environ.get("IMAGES_PREFIX", "dev.local/cts-knative")
TAG = os.environ.get("IMAGES_TAG", "0.1.0")
SERVICES = ("cts-exporter", "neo4j-sink", "chaos-sink", "otc-sim")
CONTAINERS_CONF = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "cts-knative" / "containers.conf"
# What the test may set besides the manifest's env: addresses of the servers here, credentials (Secrets in the
# manifests), ports free on this host, and the exporter's window for a quick backfill.
ADDRESS_KEYS = {
    "neo4j-sink": {"NEO4J_URI", "NEO4J_USER", "NEO4J_PASSWORD", "NEO4J_DATABASE", "PORT", "HOST"},
    "chaos-sink": {"PORT", "HOST"},
    "cts-exporter": {"K_SINK", "OS_CLOUD", "METRICS_PORT", "CTS_FROM", "CTS_LAG_SECONDS"},
}


def image(service: str) -> str:
    return f"{PREFIX}/{service}:{TAG}"


def podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    p = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: exit {p.returncode}\n{p.stderr[-3000:]}")
    return p


def get(url: str, timeout: float = 3) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except (urllib.error.URLError, OSError):
        return 0


# ---- the manifests ----------------------------------------------------------------------------------------------
class Workload:
    """A container of a rendered manifest: its env (literals and ConfigMaps; Secrets are the test's) and what its
    securityContext asks of the runtime, as podman flags."""

    def __init__(self, docs: List[dict], kind: str, name: str) -> None:
        found = [d for d in docs if d.get("kind") == kind and d["metadata"]["name"] == name]
        assert len(found) == 1, f"one {kind} {name} in the rendered manifests"
        self.doc = found[0]
        self.pod = pod_spec(self.doc)
        self.container = next(c for c in self.pod["containers"] if c["name"] == name)
        configmaps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d.get("kind") == "ConfigMap"}
        self.configmaps = configmaps
        env: Dict[str, str] = {}
        for src in self.container.get("envFrom", []):
            if "configMapRef" in src:
                env.update(configmaps[src["configMapRef"]["name"]])
        for e in self.container.get("env", []):
            if "value" in e:
                env[e["name"]] = str(e["value"])
        self.env = env

    def security_flags(self) -> List[str]:
        sc = dict(self.pod.get("securityContext") or {})
        sc.update(self.container.get("securityContext") or {})
        assert sc.get("runAsNonRoot") is True and sc.get("readOnlyRootFilesystem") is True, sc
        assert sc.get("capabilities", {}).get("drop") == ["ALL"] and sc.get("allowPrivilegeEscalation") is False, sc
        return [
            f"--user={sc['runAsUser']}:{sc['runAsGroup']}",
            "--read-only",
            "--cap-drop=ALL",
            "--security-opt=no-new-privileges",
        ]

    def volume_mount(self, name: str) -> str:
        mounts = {m["name"]: m["mountPath"] for m in self.container.get("volumeMounts", [])}
        return mounts[name]


@pytest.fixture(scope="module")
def manifests(overlays) -> Dict[str, Workload]:
    """The three services as the overlays run them: the production exporter Deployment (sinkbinding) and
    the sinks' Knative Services (broker)."""
    return {
        "cts-exporter": Workload(overlays["overlays/sinkbinding"], "Deployment", "cts-exporter"),
        "neo4j-sink": Workload(overlays["overlays/broker"], "Service", "neo4j-sink"),
        "chaos-sink": Workload(overlays["overlays/chaos-sink"], "Service", "chaos-sink"),
    }


# ---- podman -----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def images() -> Dict[str, str]:
    need(shutil.which("podman"), "podman", "not installed: scripts/images installs it (scripts/test runs it)")
    if CONTAINERS_CONF.is_file():
        os.environ["CONTAINERS_CONF"] = str(CONTAINERS_CONF)
    missing = [s for s in SERVICES if podman("image", "exists", image(s), check=False).returncode != 0]
    need(not missing, f"the images {missing}", "not built: scripts/images builds them (scripts/test runs it)")
    return {s: image(s) for s in SERVICES}


class Pod:
    """The containers and volumes of one test, removed at the end (also on failure)."""

    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex[:8]
        self.containers: List[str] = []
        self.volumes: List[str] = []

    def volume(self, name: str) -> str:
        full = f"cts-test-{name}-{self.tag}"
        podman("volume", "create", full)
        self.volumes.append(full)
        return full

    def run(self, name: str, img: str, flags: List[str], env: Dict[str, str], args: List[str] = (),
            detach: bool = True) -> subprocess.CompletedProcess:
        full = f"cts-test-{name}-{self.tag}"
        cmd = ["run", "--name", full, "--network=host", *flags]
        for k, v in env.items():
            cmd += ["--env", f"{k}={v}"]
        if detach:
            self.containers.append(full)
            return podman(*cmd, "--detach", img, *args)
        self.containers.append(full)
        return podman(*cmd, img, *args, check=False, timeout=300)

    def name(self, name: str) -> str:
        return f"cts-test-{name}-{self.tag}"

    def logs(self, name: str) -> str:
        p = podman("logs", self.name(name), check=False)
        return p.stdout + p.stderr

    def alive(self, name: str) -> None:
        state = podman("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", self.name(name)).stdout.split()
        if state[0] != "running":
            pytest.fail(f"container {name} is {state}:\n{self.logs(name)[-3000:]}")

    def stop(self, name: str) -> int:
        podman("stop", "--time", "20", self.name(name), check=False)
        return int(podman("inspect", "--format", "{{.State.ExitCode}}", self.name(name)).stdout.strip())

    def mountpoint(self, volume: str) -> Path:
        return Path(podman("volume", "inspect", "--format", "{{.Mountpoint}}", volume).stdout.strip())

    def cleanup(self) -> None:
        for c in reversed(self.containers):
            podman("rm", "--force", "--time", "5", c, check=False)
        for v in self.volumes:
            podman("volume", "rm", "--force", v, check=False)


@pytest.fixture()
def pod(images):
    p = Pod()
    try:
        yield p
    finally:
        p.cleanup()


def wait_ready(pod: Pod, name: str, url: str, timeout: float = 60) -> None:
    def ready() -> bool:
        pod.alive(name)
        return get(url + "/readyz") == 200

    poll(f"{name} /readyz", ready, timeout=timeout)
    assert get(url + "/healthz") == 200


# ---- servers ----------------------------------------------------------------------------------------------------
def env_or_need(var: str, what: str) -> str:
    value = os.environ.get(var)
    need(value, what, f"{var} is not set (scripts/test starts it)")
    return value


def arcadedb_database() -> Dict[str, str]:
    """A fresh database on the real ArcadeDB (Bolt): its Bolt URI, credentials and HTTP API."""
    bolt = env_or_need("TEST_BOLT_URI", "ArcadeDB (Bolt)")
    http = env_or_need("TEST_ARCADEDB_HTTP", "ArcadeDB (HTTP API)")
    user, password = os.environ.get("TEST_BOLT_USER", "root"), os.environ.get("TEST_BOLT_PASSWORD", "")
    db = f"images_{uuid.uuid4().hex[:10]}"
    arcade(http, user, password, "/api/v1/server", {"command": f"create database {db}"})
    return {"bolt": bolt, "http": http, "user": user, "password": password, "db": db}


def arcade(http: str, user: str, password: str, path: str, body: dict) -> dict:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    req = urllib.request.Request(http + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Authorization": f"Basic {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def count(graph: Dict[str, str], query: str) -> int:
    answer = arcade(graph["http"], graph["user"], graph["password"], f"/api/v1/query/{graph['db']}",
                    {"language": "cypher", "command": query})
    return int(answer["result"][0]["n"])


def assert_only_addresses_overridden(service: str, env: Dict[str, str], manifest: Workload) -> None:
    changed = {k for k, v in env.items() if manifest.env.get(k) != v}
    assert changed <= ADDRESS_KEYS[service], f"{service}: more than addresses changed: {changed - ADDRESS_KEYS[service]}"


# ---- the tests --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("service", SERVICES)
def test_every_image_runs_its_binary_as_the_nonroot_user(images, service: str) -> None:
    img = images[service]
    inspect = json.loads(podman("image", "inspect", img).stdout)[0]
    config = inspect["Config"]
    assert config["User"] == "65532:65532" and config["Entrypoint"] == ["/app"], config
    size = inspect["Size"]
    print(f"\n{service}: image {size / 1e6:.1f} MB")
    # No shell in the runtime image (as distroless): only the entrypoint runs.
    p = podman("run", "--rm", "--read-only", "--cap-drop=ALL", "--entrypoint", "/bin/sh", img, "-c", "true",
               check=False)
    assert p.returncode != 0, "the runtime image has a shell"
    p = podman("run", "--rm", "--read-only", "--cap-drop=ALL", img, "--help", check=False)
    assert p.returncode == 0 and service in (p.stdout + p.stderr), p.stderr[-2000:]


def test_exporter_to_neo4j_sink_to_bolt_in_containers(images, manifests, pod, tmp_path: Path) -> None:
    graph = arcadedb_database()
    # otc-sim (FAKE OTC) writes its clouds.yaml to a volume the exporter mounts read-only, as the Secret would be.
    sim_port = free_port()
    clouds = pod.volume("clouds")
    pod.run("otc-sim", images["otc-sim"],
            ["--read-only", "--cap-drop=ALL", "--user=65532:65532", "--volume", f"{clouds}:/var/lib/otc-sim"],
            {"OTC_SIM_ADDR": f"127.0.0.1:{sim_port}", "OTC_SIM_WRITE_CLOUDS_YAML": "/var/lib/otc-sim/clouds.yaml",
             "OTC_SIM_BACKFILL": "60", "OTC_SIM_BACKFILL_MINUTES": "30", "OTC_SIM_TRACE_RATE": "0",
             "OTC_SIM_LATE_DELAY_SECS": "0", "OTC_SIM_SEED": str(sim_port)})
    poll("otc-sim ready", lambda: pod.alive("otc-sim") or "otc-sim ready" in pod.logs("otc-sim"))

    sink = manifests["neo4j-sink"]
    sink_port = free_port()
    sink_env = dict(sink.env, NEO4J_URI=graph["bolt"], NEO4J_USER=graph["user"], NEO4J_PASSWORD=graph["password"],
                    NEO4J_DATABASE=graph["db"], PORT=str(sink_port), HOST="127.0.0.1")
    assert_only_addresses_overridden("neo4j-sink", sink_env, sink)
    pod.run("neo4j-sink", images["neo4j-sink"], sink.security_flags(), sink_env)
    sink_url = f"http://127.0.0.1:{sink_port}"
    wait_ready(pod, "neo4j-sink", sink_url)

    exporter = manifests["cts-exporter"]
    state = pod.volume("state")
    flags = exporter.security_flags() + [
        "--volume", f"{clouds}:{exporter.volume_mount('clouds')}:ro",
        "--volume", f"{state}:{exporter.volume_mount('state')}",
    ]
    env = dict(exporter.env, K_SINK=sink_url, OS_CLOUD="otc-sim", METRICS_PORT=str(free_port()), CTS_FROM="60",
               CTS_LAG_SECONDS="0")
    assert_only_addresses_overridden("cts-exporter", env, exporter)
    assert env["OS_CLIENT_CONFIG_FILE"].startswith(exporter.volume_mount("clouds"))
    assert env["CTS_STATE_FILE"].startswith(exporter.volume_mount("state"))

    def once(name: str) -> int:
        p = pod.run(name, images["cts-exporter"], flags, env, ["--once"], detach=False)
        logs = p.stdout + p.stderr
        assert p.returncode == 0, f"cts-exporter --once exited {p.returncode}:\n{logs[-3000:]}"
        stopped = [json.loads(l) for l in logs.splitlines() if l.startswith("{") and "cts-exporter stopped" in l]
        assert stopped, logs[-3000:]
        return int(stopped[-1]["delivered"])

    delivered = once("exporter-1")
    assert delivered == 60, f"every backfilled trace delivered: {delivered}"
    assert count(graph, "MATCH (a:ACTION) RETURN count(a) AS n") == delivered
    cursor = pod.mountpoint(state) / Path(env["CTS_STATE_FILE"]).name
    assert cursor.is_file() and json.loads(cursor.read_text()), "the state file is on the volume"
    owner = cursor.stat().st_uid
    assert owner == 65532, f"written by the runtime user, not root: {owner}"

    # A new container (a restarted pod) with the same volume resumes from the cursor: nothing twice.
    assert once("exporter-2") == 0
    assert count(graph, "MATCH (a:ACTION) RETURN count(a) AS n") == delivered

    # As a long-running Deployment: health and readiness on the metrics port.
    metrics_port = free_port()
    pod.run("exporter-daemon", images["cts-exporter"], flags, dict(env, METRICS_PORT=str(metrics_port)))
    wait_ready(pod, "exporter-daemon", f"http://127.0.0.1:{metrics_port}")
    assert pod.stop("exporter-daemon") == 0, pod.logs("exporter-daemon")[-3000:]
    assert pod.stop("neo4j-sink") == 0, pod.logs("neo4j-sink")[-3000:]


def test_chaos_run_to_the_chaos_sink_container(images, manifests, pod, tmp_path: Path) -> None:
    influx = env_or_need("TEST_INFLUX_URL", "InfluxDB 1.x")
    pushgateway = env_or_need("TEST_PUSHGATEWAY_URL", "Pushgateway")
    need(CHAOS.exists(), "the chaos CLI", f"{CHAOS} is missing")
    sink = manifests["chaos-sink"]
    # The manifest's config file with this machine's addresses: InfluxDB and Pushgateway here, Grafana and
    # tracing left out (no server of them here).
    cfg = yaml.safe_load(sink.configmaps[next(v["configMap"]["name"] for v in sink.pod["volumes"]
                                              if v["name"] == "config")]["chaos-sink.yaml"])
    db = f"images_{uuid.uuid4().hex[:10]}"
    influx_admin(influx, f'CREATE DATABASE "{db}"')
    host, port = influx.removeprefix("http://").split(":")
    cfg["influxdb"].update({"host": host, "port": int(port), "database": db})
    job = f"images-{uuid.uuid4().hex[:8]}"
    cfg["pushgateway"].update({"pushgateway_url": pushgateway, "job": job})
    del cfg["grafana"], cfg["tracing"]
    conf_dir = tmp_path / "chaos-sink-config"
    conf_dir.mkdir()
    (conf_dir / "chaos-sink.yaml").write_text(yaml.safe_dump(cfg))
    conf_dir.chmod(0o755)
    (conf_dir / "chaos-sink.yaml").chmod(0o644)
    sink_port = free_port()
    env = dict(sink.env, PORT=str(sink_port), HOST="127.0.0.1")
    assert_only_addresses_overridden("chaos-sink", env, sink)
    flags = sink.security_flags() + ["--volume", f"{conf_dir}:{sink.volume_mount('config')}:ro"]
    pod.run("chaos-sink", images["chaos-sink"], flags, env)
    url = f"http://127.0.0.1:{sink_port}"
    try:
        wait_ready(pod, "chaos-sink", url)
        run = chaos_run("passing", tmp_path / "run", {"E2E_CHAOS_SINK_URL": url + "/"})
        assert run.returncode == 0, run.stderr[-2000:]
        rows = poll("the run's point in InfluxDB", lambda: [
            r for r in influx_query(influx, db, 'SELECT * FROM "chaos_toolkit.experiments" WHERE run_id = '
                                    f"{influx_string(run.run_id)} GROUP BY *") if r.get("status")])
        assert rows[0]["status"] == run.journal["status"] == "completed"

        def pushed() -> Optional[bool]:
            with urllib.request.urlopen(f"{pushgateway}/metrics", timeout=5) as r:
                text = r.read().decode()
            line = [l for l in text.splitlines() if l.startswith("chaostoolkit_inprogress_experiment{")
                    and f'chaostoolkit_run_trace_id="{run.run_id}"' in l and f'job="{job}"' in l]
            return line and line[0].endswith(" 0")

        poll("the run's end on the Pushgateway", pushed, timeout=30)
        assert pod.stop("chaos-sink") == 0, pod.logs("chaos-sink")[-3000:]
        logs = pod.logs("chaos-sink")
        assert all(json.loads(l) for l in logs.splitlines() if l.startswith("{")), "JSON logs (LOG_FORMAT=json)"
    finally:
        influx_admin(influx, f'DROP DATABASE "{db}"')
