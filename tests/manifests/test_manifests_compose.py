"""deploy/compose.yaml: valid for docker-compose (config -q, offline, no engine needed), and wired as documented:
the three services built from deploy/Dockerfile, otc-sim feeding the exporter, the real upstream backends."""

import shutil
import subprocess

import pytest
import yaml

from manifest_helpers import pod_spec, REPO, need

OURS = ("otc-sim", "cts-exporter", "neo4j-sink", "chaos-sink")
UPSTREAM = {"neo4j": "neo4j:5", "influxdb": "influxdb:1.8", "grafana": "grafana/grafana",
            "pushgateway": "prom/pushgateway", "jaeger": "jaegertracing/all-in-one"}


@pytest.fixture(scope="module")
def compose_exe():
    exe = shutil.which("docker-compose")
    need(exe, "docker-compose", "install it with stack_install_manifest_tools (Debian docker-compose)")
    return exe


@pytest.fixture(scope="module")
def compose(compose_exe):
    """The resolved configuration (anchors merged, variables interpolated with their defaults)."""
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}
    p = subprocess.run([compose_exe, "-f", "deploy/compose.yaml", "--profile", "debug", "config"], cwd=REPO,
                       capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode == 0, p.stderr
    return yaml.safe_load(p.stdout)


def test_compose_file_is_valid(compose_exe):
    p = subprocess.run([compose_exe, "-f", "deploy/compose.yaml", "config", "-q"], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr


def test_the_validator_rejects_a_broken_file(compose_exe, tmp_path):
    text = (REPO / "deploy/compose.yaml").read_text().replace("    ports:\n", "    portz:\n", 1)
    (tmp_path / "compose.yaml").write_text(text)
    p = subprocess.run([compose_exe, "-f", str(tmp_path / "compose.yaml"), "config", "-q"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode != 0 and "portz" in p.stderr


def test_services(compose):
    services = compose["services"]
    assert set(OURS) | set(UPSTREAM) | {"event-display"} == set(services)
    for name, image in UPSTREAM.items():
        assert services[name]["image"].startswith(image), (name, services[name]["image"])
    assert services["event-display"]["profiles"] == ["debug"]
    assert services["jaeger"]["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"
    assert any(p.endswith(":4318/tcp") or ":4318" in str(p) for p in services["jaeger"]["ports"])


def test_our_services_are_built_and_hardened(compose):
    for name in OURS:
        s = compose["services"][name]
        assert s["build"]["dockerfile"] == "deploy/Dockerfile" and s["build"]["args"]["SERVICE"] == name
        assert s["image"] == f"dev.local/cts-knative/{name}:0.1.0"
        assert s["read_only"] is True and s["user"] == "65532:65532" and s["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in s["security_opt"]


def test_ports_are_bound_to_loopback(compose):
    for name, s in compose["services"].items():
        for p in s.get("ports", []):
            text = p if isinstance(p, str) else f"{p.get('host_ip', '')}:{p.get('published')}"
            assert text.startswith("127.0.0.1:"), (name, p)


def volume_dir(service, path):
    """The named volume mounted at the directory of path in service."""
    d = path.rsplit("/", 1)[0]
    for v in service["volumes"]:
        source, target = (v.split(":")[:2] if isinstance(v, str) else (v["source"], v["target"]))
        if target == d:
            return source
    raise AssertionError(f"no volume at {d}")


def test_the_exporter_reads_otc_sim_and_delivers_to_neo4j_sink(compose):
    services = compose["services"]
    sim, exporter = services["otc-sim"]["environment"], services["cts-exporter"]["environment"]
    assert sim["OTC_SIM_ADDR"] == "0.0.0.0:8900" and sim["OTC_SIM_PUBLIC_URL"] == "http://otc-sim:8900"
    # otc-sim writes clouds.yaml into a volume the exporter mounts read-only where OS_CLIENT_CONFIG_FILE points.
    assert sim["OTC_SIM_WRITE_CLOUDS_YAML"].rsplit("/", 1)[1] == exporter["OS_CLIENT_CONFIG_FILE"].rsplit("/", 1)[1]
    assert volume_dir(services["otc-sim"], sim["OTC_SIM_WRITE_CLOUDS_YAML"]) == \
        volume_dir(services["cts-exporter"], exporter["OS_CLIENT_CONFIG_FILE"])
    assert exporter["OS_CLOUD"] == "otc-sim"  # the password cloud of otc-sim's clouds.yaml
    assert exporter["K_SINK"] == "http://neo4j-sink:8080"
    assert exporter["K_CE_OVERRIDES"] == ""
    assert volume_dir(services["cts-exporter"], exporter["CTS_STATE_FILE"]) in compose["volumes"]
    # Late traces of the simulator stay within the exporter's lag allowance.
    late_max = int(sim["OTC_SIM_LATE_DELAY_SECS"].split("-")[-1])
    assert late_max < int(exporter["CTS_LAG_SECONDS"])


def test_the_sinks_reach_their_backends(compose):
    services = compose["services"]
    n = services["neo4j-sink"]["environment"]
    assert n["NEO4J_URI"] == "bolt://neo4j:7687"
    assert services["neo4j"]["environment"]["NEO4J_AUTH"] == f"neo4j/{n['NEO4J_PASSWORD']}"
    assert len(n["NEO4J_PASSWORD"]) >= 8, "Neo4j 5 refuses shorter passwords"
    assert services["neo4j-sink"]["depends_on"]["neo4j"]["condition"] == "service_healthy"
    c = services["chaos-sink"]
    mount = [v for v in c["volumes"] if (v["target"] if isinstance(v, dict) else v.split(":")[1])
             == c["environment"]["CHAOS_SINK_CONFIG"]]
    assert mount, "CHAOS_SINK_CONFIG is not mounted"
    source = mount[0]["source"] if isinstance(mount[0], dict) else mount[0].split(":")[0]
    cfg = yaml.safe_load(open(source))
    assert cfg["influxdb"]["host"] == "influxdb"
    assert cfg["influxdb"]["database"] == services["influxdb"]["environment"]["INFLUXDB_DB"]
    assert cfg["grafana"][0]["host"] == "grafana"
    assert c["environment"]["CHAOS_SINK_GRAFANA_PASSWORD"] == \
        services["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"]
    assert cfg["pushgateway"]["pushgateway_url"] == "http://pushgateway:9091"
    assert cfg["tracing"]["endpoint"] == "http://jaeger:4318"


def test_grafana_is_provisioned(compose):
    g = compose["services"]["grafana"]
    mounts = {}
    for v in g["volumes"]:
        source, target = (v["source"], v["target"]) if isinstance(v, dict) else v.split(":")[:2]
        mounts[target] = source
    assert mounts["/etc/grafana/provisioning"] == str(REPO / "deploy/grafana/provisioning")
    provider = yaml.safe_load((REPO / "deploy/grafana/provisioning/dashboards/cts-knative.yaml").read_text())
    path = provider["providers"][0]["options"]["path"]
    assert mounts[path] == str(REPO / "deploy/grafana/dashboards")
    home = g["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (REPO / "deploy/grafana/dashboards" / home.rsplit("/", 1)[1]).is_file()


# Where compose may differ from the Kubernetes manifests, and why. Everything else a manifest sets for one of
# our containers, compose sets to the same value.
COMPOSE_DIFFERS = {
    "K_SINK": "the address of the sink in compose's network (a SinkBinding injects it in Kubernetes)",
    "K_CE_OVERRIDES": "set by the SinkBinding in Kubernetes; none in compose",
    "NEO4J_URI": "the address of the Neo4j container",
    "OS_CLOUD": "the password cloud of otc-sim's clouds.yaml instead of the user's cloud",
    "OTEL_EXPORTER_OTLP_ENDPOINT": "compose wires its Jaeger; in Kubernetes the operator points it at a collector",
    "NEO4J_USER": "a Secret in Kubernetes", "NEO4J_PASSWORD": "a Secret in Kubernetes",
    "CHAOS_SINK_GRAFANA_API_TOKEN": "a Secret in Kubernetes (compose uses Grafana's admin login)",
    "CHAOS_SINK_GRAFANA_USERNAME": "compose's Grafana admin login", "CHAOS_SINK_GRAFANA_PASSWORD": "ditto",
    "CHAOS_SINK_INFLUXDB_USERNAME": "a Secret in Kubernetes (optional); compose's InfluxDB has no auth",
    "CHAOS_SINK_INFLUXDB_PASSWORD": "ditto", "CHAOS_SINK_INFLUXDB_TOKEN": "ditto",
    "LOG_FORMAT": "json for a cluster's log collector, text for a person reading `docker compose logs`",
    "CTS_FROM": "compose polls otc-sim every minute; the real CTS is polled every 5",
    "CTS_LAG_SECONDS": "otc-sim's late traces come within 20 s; the real CTS's within 5 min",
    "SHUTDOWN_DELAY_SECS": "Knative needs 5 s to take a stopping pod out of routing; compose has no router",
}


def test_our_services_match_the_kubernetes_manifests(compose, overlays):
    """Same user, read-only root, dropped capabilities, ports, mount paths and env as the manifests, except
    where COMPOSE_DIFFERS says why."""
    docs = overlays["overlays/broker"]
    configmaps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d.get("kind") == "ConfigMap"}
    for kind, name in (("Deployment", "cts-exporter"), ("Service", "neo4j-sink"), ("Service", "chaos-sink")):
        doc = next(d for d in docs if d.get("kind") == kind and d["metadata"]["name"] == name)
        spec = pod_spec(doc)
        container = next(c for c in spec["containers"] if c["name"] == name)
        sc = dict(spec.get("securityContext") or {})
        sc.update(container.get("securityContext") or {})
        s = compose["services"][name]
        assert s["user"] == f"{sc['runAsUser']}:{sc['runAsGroup']}", name
        assert s["read_only"] is sc["readOnlyRootFilesystem"] is True, name
        assert s["cap_drop"] == sc["capabilities"]["drop"], name
        assert ("no-new-privileges:true" in s["security_opt"]) == (sc["allowPrivilegeEscalation"] is False), name
        k8s_ports = {p["containerPort"] for p in container.get("ports", [])}
        compose_ports = {p["target"] if isinstance(p, dict) else int(str(p).rsplit(":", 1)[1].split("/")[0])
                         for p in s.get("ports", [])}
        assert compose_ports == k8s_ports, (name, compose_ports, k8s_ports)
        k8s_env = {}
        for src in container.get("envFrom", []):
            k8s_env.update(configmaps[src["configMapRef"]["name"]])
        for e in container.get("env", []):
            k8s_env[e["name"]] = str(e["value"]) if "value" in e else None
        ours = {k: str(v) for k, v in s["environment"].items()}
        differ = {k for k in set(k8s_env) | set(ours) if k8s_env.get(k) != ours.get(k)}
        unexplained = differ - set(COMPOSE_DIFFERS)
        assert not unexplained, {k: (k8s_env.get(k), ours.get(k)) for k in unexplained}
        # Files are where the manifests mount them.
        mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
        targets = {v["target"] if isinstance(v, dict) else str(v).split(":")[1] for v in s.get("volumes", [])}
        for path_var in ("OS_CLIENT_CONFIG_FILE", "CTS_STATE_FILE", "CHAOS_SINK_CONFIG"):
            if path_var in k8s_env:
                assert ours[path_var] == k8s_env[path_var], path_var
                assert any(ours[path_var].startswith(m) for m in mounts), path_var
                assert any(ours[path_var].startswith(t) for t in targets), (name, path_var, targets)
