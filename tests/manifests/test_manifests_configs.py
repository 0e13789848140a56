"""The services accept the configuration the manifests give them: each binary is started with the environment
and files of its rendered Kubernetes object (deploy/compose.yaml's for chaos-sink too) and must come up
(/healthz 200) instead of exiting 2 on a bad variable or YAML key. Backend addresses are rewritten to closed
loopback ports, so nothing leaves the machine; the binaries are the debug builds cargo test leaves in target/."""

import base64
import os
import signal
import subprocess
import time
import urllib.request

import pytest
import yaml

from manifest_helpers import REPO, debug_binary, env_of, free_port, one

# The overlays that bring each service (the default has neither sink).
EXPORTER_OVERLAYS = ("overlays/event-display", "overlays/direct")
NEO4J_OVERLAY = "overlays/direct"
CHAOS_OVERLAY = "overlays/chaos-sink"


def closed_port():
    return free_port()  # bound and released: nothing listens there


def environment(docs, container):
    """The container's environment as Kubernetes would set it (ConfigMap envFrom, literal values, secretKeyRef
    from the rendered Secret; an optional key that is absent is not set)."""
    env = {}
    for ef in container.get("envFrom", []):
        env.update(one(docs, "ConfigMap", ef["configMapRef"]["name"])["data"])
    for name, e in env_of(container).items():
        if "value" in e:
            env[name] = e["value"]
        elif "secretKeyRef" in e.get("valueFrom", {}):
            ref = e["valueFrom"]["secretKeyRef"]
            data = one(docs, "Secret", ref["name"]).get("data", {})
            if ref["key"] in data:
                env[name] = base64.b64decode(data[ref["key"]]).decode()
            else:
                assert ref.get("optional"), f"{name}: key {ref['key']} missing"
    return env


def start_and_check(exe, env, health_url, tmp_path):
    log = tmp_path / "log.txt"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(exe)], env={"PATH": os.environ.get("PATH", ""), **env},
                                stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        deadline = time.time() + 20
        while time.time() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"{exe.name} exited with {proc.returncode}:\n{log.read_text()}")
            try:
                with urllib.request.urlopen(health_url, timeout=1) as r:
                    assert r.status == 200
                    return log.read_text()
            except OSError:
                time.sleep(0.1)
        pytest.fail(f"{exe.name} did not answer {health_url}:\n{log.read_text()}")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)


def test_neo4j_sink_accepts_its_manifest(overlays, tmp_path):
    exe = debug_binary("neo4j-sink")
    docs = overlays[NEO4J_OVERLAY]
    (c,) = one(docs, "Service", "neo4j-sink", "serving.knative.dev")["spec"]["template"]["spec"]["containers"]
    env = environment(docs, c)
    assert env["NEO4J_URI"].split("://")[0] in ("neo4j", "bolt", "neo4j+s", "bolt+s", "neo4j+ssc", "bolt+ssc")
    port = free_port()
    env.update(NEO4J_URI=f"bolt://127.0.0.1:{closed_port()}", PORT=str(port), HOST="127.0.0.1")
    start_and_check(exe, env, f"http://127.0.0.1:{port}/healthz", tmp_path)


def loopback_chaos_config(cfg):
    """The chaos-sink YAML with every backend address moved to a closed loopback port."""
    cfg = dict(cfg)
    if "influxdb" in cfg:
        cfg["influxdb"] = dict(cfg["influxdb"], host="127.0.0.1", port=closed_port())
    cfg["grafana"] = [dict(g, host="127.0.0.1", port=closed_port()) for g in cfg.get("grafana", [])]
    if "pushgateway" in cfg:
        cfg["pushgateway"] = dict(cfg["pushgateway"], pushgateway_url=f"http://127.0.0.1:{closed_port()}")
    if "tracing" in cfg:
        cfg["tracing"] = dict(cfg["tracing"], endpoint=f"http://127.0.0.1:{closed_port()}")
    return cfg


def test_chaos_sink_accepts_its_manifest(overlays, tmp_path):
    exe = debug_binary("chaos-sink")
    docs = overlays[CHAOS_OVERLAY]
    spec = one(docs, "Service", "chaos-sink", "serving.knative.dev")["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    env = environment(docs, c)
    (mount,) = [m for m in c["volumeMounts"] if env["CHAOS_SINK_CONFIG"].startswith(m["mountPath"] + "/")]
    (vol,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    data = one(docs, "ConfigMap", vol["configMap"]["name"])["data"]
    cfg = yaml.safe_load(data[env["CHAOS_SINK_CONFIG"].rsplit("/", 1)[1]])
    assert set(cfg) >= {"influxdb", "grafana", "pushgateway", "tracing"}
    path = tmp_path / "chaos-sink.yaml"
    path.write_text(yaml.safe_dump(loopback_chaos_config(cfg)))
    port = free_port()
    env.update(CHAOS_SINK_CONFIG=str(path), PORT=str(port), HOST="127.0.0.1")
    start_and_check(exe, env, f"http://127.0.0.1:{port}/healthz", tmp_path)


def test_chaos_sink_accepts_the_compose_config(tmp_path):
    exe = debug_binary("chaos-sink")
    compose = yaml.safe_load((REPO / "deploy/compose.yaml").read_text())
    env = {k: str(v) for k, v in compose["services"]["chaos-sink"]["environment"].items()
           if "${" not in str(v) and not k.startswith("OTEL_")}
    env["CHAOS_SINK_GRAFANA_PASSWORD"] = "dummy-password"
    cfg = yaml.safe_load((REPO / "deploy/compose/chaos-sink.yaml").read_text())
    path = tmp_path / "chaos-sink.yaml"
    path.write_text(yaml.safe_dump(loopback_chaos_config(cfg)))
    port = free_port()
    env.update(CHAOS_SINK_CONFIG=str(path), PORT=str(port), HOST="127.0.0.1")
    start_and_check(exe, env, f"http://127.0.0.1:{port}/healthz", tmp_path)


@pytest.mark.parametrize("overlay", EXPORTER_OVERLAYS)
def test_cts_exporter_accepts_its_manifest(overlay, overlays, tmp_path):
    """The default's ContainerSource and the production Deployment (components/persistent-exporter)."""
    exe = debug_binary("cts-exporter")
    docs = overlays[overlay]
    (w,) = [d for d in docs if d["kind"] in ("ContainerSource", "Deployment") and d["metadata"]["name"] == "cts-exporter"]
    pod = w["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    env = environment(docs, c)
    cloud = env["OS_CLOUD"]
    # The dummy clouds.yaml of the render names the cloud the ConfigMap selects; point it at a closed port.
    secret = one(docs, "Secret", [v for v in pod["volumes"] if "secret" in v][0]["secret"]["secretName"])
    clouds = yaml.safe_load(base64.b64decode(secret["data"]["clouds.yaml"]))
    assert cloud in clouds["clouds"]
    clouds["clouds"][cloud]["auth"]["auth_url"] = f"http://127.0.0.1:{closed_port()}/v3"
    (tmp_path / "clouds.yaml").write_text(yaml.safe_dump(clouds))
    (tmp_path / "state").mkdir()
    metrics = free_port()
    env.update(OS_CLIENT_CONFIG_FILE=str(tmp_path / "clouds.yaml"), CTS_STATE_FILE=str(tmp_path / "state/state.json"),
               METRICS_PORT=str(metrics), K_SINK=f"http://127.0.0.1:{closed_port()}", K_CE_OVERRIDES="")
    assert c["ports"][0]["containerPort"] == int(env_of(c)["METRICS_PORT"]["value"])
    start_and_check(exe, env, f"http://127.0.0.1:{metrics}/healthz", tmp_path)
