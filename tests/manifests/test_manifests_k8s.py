"""k8s/: every kustomization renders; core kinds pass kubernetes-validate --strict, Knative kinds pass the
@kubernetes-models/knative schemas; and the rendered objects are wired and locked down as documented."""

import copy
import fnmatch
import json
import re
import subprocess

import pytest
import yaml

from manifest_helpers import (
    K8S_VERSION,
    REPO,
    SENTINEL,
    copy_k8s_with_dummy_secrets,
    env_of,
    find,
    group_of,
    is_knative,
    kustomization_dirs,
    one,
    pod_spec,
    workloads,
)

OVERLAYS = [".", "overlays/event-display", "overlays/direct", "overlays/broker", "overlays/broker-retry-after",
            "overlays/sinkbinding", "overlays/chaos-sink"]
SINKS = ("neo4j-sink", "chaos-sink")
# What each overlay installs of the sinks, and the only secret files it may need (paths under k8s/). The
# default looks at events with nothing but clouds.yaml; each sink comes with the overlay that uses it.
CLOUDS = "base/secrets/clouds.yaml"
NEO4J_ENV = "sinks/neo4j-sink/secrets/neo4j.env"
CHAOS_ENV = "sinks/chaos-sink/secrets/chaos-sink.env"
CONTENTS = {
    ".": ((), (CLOUDS,)),
    "overlays/event-display": ((), (CLOUDS,)),
    "overlays/sinkbinding": ((), (CLOUDS,)),
    "overlays/direct": (("neo4j-sink",), (CLOUDS, NEO4J_ENV)),
    "overlays/broker": (("neo4j-sink", "chaos-sink"), (CLOUDS, NEO4J_ENV, CHAOS_ENV)),
    "overlays/broker-retry-after": (("neo4j-sink", "chaos-sink"), (CLOUDS, NEO4J_ENV, CHAOS_ENV)),
    "overlays/chaos-sink": (("chaos-sink",), (CHAOS_ENV,)),
}
SECRET_OF_FILE = {CLOUDS: "cts-exporter-clouds", NEO4J_ENV: "neo4j-credentials", CHAOS_ENV: "chaos-sink-credentials"}
# Overlays with the exporter, and those that load events somewhere (production: persistent cursor).
EXPORTER_OVERLAYS = [o for o in OVERLAYS if o != "overlays/chaos-sink"]
PRODUCTION_OVERLAYS = ["overlays/direct", "overlays/broker", "overlays/broker-retry-after", "overlays/sinkbinding"]
BROKER_OVERLAYS = ["overlays/broker", "overlays/broker-retry-after"]


def sinks_in(overlay):
    return CONTENTS[overlay][0]


def test_the_overlays_exist():
    dirs = {d.relative_to(REPO / "k8s").as_posix() for d in kustomization_dirs(REPO / "k8s")}
    assert set(OVERLAYS) <= dirs, dirs
    assert {"base", "sinks/neo4j-sink", "sinks/chaos-sink"} <= dirs
    assert set(CONTENTS) == set(OVERLAYS)


def test_every_kustomization_renders(rendered):
    assert rendered, "no kustomization found under k8s/"
    for rel, (rc, text, err) in rendered.items():
        assert rc == 0, f"kubectl kustomize k8s/{rel}: {err}"
        assert yaml.safe_load_all(text), rel


def test_default_is_event_display(overlays):
    assert overlays["."] == overlays["overlays/event-display"]


# ---- schema validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_core_kinds_pass_kubernetes_validate_strict(overlay, overlays, overlay_files, kubernetes_validate):
    p = subprocess.run(
        [kubernetes_validate, "--strict", "-k", K8S_VERSION, str(overlay_files[overlay])],
        capture_output=True, text=True, timeout=120,
    )
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    core = [d for d in overlays[overlay] if not is_knative(d)]
    passed = [l for l in out.splitlines() if l.startswith("INFO") and " passed for resource " in l]
    assert len(passed) == len(core), f"{len(core)} core objects, {len(passed)} validated:\n{out}"
    for line in out.splitlines():
        if line.startswith("WARN"):
            # Only Knative kinds may lack a schema: a typo in a core apiVersion must not slip through.
            assert re.search(r"api version \S+\.knative\.dev/", line), line
        assert not line.startswith("ERROR"), line


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_knative_kinds_pass_their_schemas(overlay, overlays, overlay_files, node_validator):
    p = subprocess.run(node_validator + [str(overlay_files[overlay])], capture_output=True, text=True, timeout=120)
    results = [json.loads(l) for l in p.stdout.splitlines() if l.strip()]
    assert p.returncode == 0, p.stdout + p.stderr
    knative = [r for r in results if ".knative.dev/" in r["apiVersion"]]
    assert len(knative) == sum(1 for d in overlays[overlay] if is_knative(d))
    assert knative and all(r["status"] == "valid" for r in knative), knative


# Knative Serving's additions to the pod spec of a revision template.
REVISION_FIELDS = ("containerConcurrency", "timeoutSeconds", "responseStartTimeoutSeconds", "idleTimeoutSeconds")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pod_specs_inside_knative_kinds_pass_strict_validation(overlay, overlays, kubernetes_validate, tmp_path):
    """The @kubernetes-models schemas check types only; the pod specs inside ksvc and ContainerSource get the
    strict core check as PodTemplates (unknown fields such as a misspelt probe are errors)."""
    wrapped = []
    for d in overlays[overlay]:
        if not is_knative(d) or pod_spec(d) is None:
            continue
        template = copy.deepcopy(d["spec"]["template"])
        for f in REVISION_FIELDS:
            template.get("spec", {}).pop(f, None)
        if d["kind"] == "Service":
            # Knative's defaulting: a probe without a port targets the container's serving port.
            for c in template["spec"]["containers"]:
                for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                    get = c.get(probe, {}).get("httpGet")
                    if get is not None and "port" not in get:
                        get["port"] = c["ports"][0]["containerPort"]
        wrapped.append({"apiVersion": "v1", "kind": "PodTemplate",
                        "metadata": {"name": f"{d['kind'].lower()}-{d['metadata']['name']}"}, "template": template})
    assert wrapped
    f = tmp_path / "pods.yaml"
    f.write_text(yaml.safe_dump_all(wrapped))
    p = subprocess.run([kubernetes_validate, "--strict", "-k", K8S_VERSION, str(f)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.count(" passed for resource ") == len(wrapped), p.stdout + p.stderr


def test_the_validators_reject_broken_manifests(kubernetes_validate, node_validator, tmp_path):
    """Guards against a validator that passes everything (wrong flags, missing schemas)."""
    bad_core = tmp_path / "core.yaml"
    bad_core.write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replicas: 1\n"
        "  selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n"
        "    spec:\n      containers:\n        - name: x\n          image: x\n          readinesProbe: {}\n"
    )
    p = subprocess.run([kubernetes_validate, "--strict", "-k", K8S_VERSION, str(bad_core)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode != 0 and "readinesProbe" in p.stdout + p.stderr
    bad_kn = tmp_path / "kn.yaml"
    bad_kn.write_text(
        "apiVersion: sources.knative.dev/v1\nkind: SinkBinding\nmetadata: {name: x}\n"
        "spec: {subject: {apiVersion: apps/v1, kind: Deployment, name: x}, sink: {uri: 42}}\n"
    )
    p = subprocess.run(node_validator + [str(bad_kn)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 1 and "sink/uri" in p.stdout, p.stdout + p.stderr


# ---- wiring ---------------------------------------------------------------------------------------------


def resolve(docs, ref, namespace="cts-knative"):
    """The object a Knative ref points at, in the same render."""
    group = ref["apiVersion"].split("/")[0] if "/" in ref["apiVersion"] else ""
    found = [d for d in find(docs, ref["kind"], ref["name"]) if group_of(d) == group
             and d["metadata"].get("namespace", namespace) == ref.get("namespace", namespace)]
    assert len(found) == 1, f"{ref} does not resolve to one object of the render"
    return found[0]


EXPECTED_SINK = {
    ".": ("Service", "event-display"),
    "overlays/event-display": ("Service", "event-display"),
    "overlays/sinkbinding": ("Service", "event-display"),
    "overlays/direct": ("Service", "neo4j-sink"),
    "overlays/broker": ("Broker", "default"),
    "overlays/broker-retry-after": ("Broker", "default"),
}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_exporter_is_wired_to_a_sink(overlay, overlays):
    docs = overlays[overlay]
    sources = list(find(docs, "ContainerSource"))
    bindings = list(find(docs, "SinkBinding"))
    if overlay not in EXPORTER_OVERLAYS:
        assert not sources and not bindings and not list(find(docs, "Deployment")), "no exporter here"
        assert not list(find(docs, "Namespace")), "an add-on overlay must not own (and re-apply) the namespace"
        return
    if overlay in PRODUCTION_OVERLAYS:
        assert not sources, "the production overlays replace the ContainerSource"
        (b,) = bindings
        subject = b["spec"]["subject"]
        assert subject["kind"] == "Deployment" and subject["apiVersion"] == "apps/v1"
        dep = one(docs, "Deployment", subject["name"])
        assert dep["spec"]["template"]["spec"]["containers"][0]["image"].endswith("/cts-exporter:0.1.0")
        sink = b["spec"]["sink"]
    else:
        assert not bindings
        (s,) = sources
        assert s["metadata"]["name"] == "cts-exporter"
        assert s["spec"]["template"]["spec"]["containers"][0]["image"].endswith("/cts-exporter:0.1.0")
        sink = s["spec"]["sink"]
    target = resolve(docs, sink["ref"])
    assert (target["kind"], target["metadata"]["name"]) == EXPECTED_SINK[overlay]


@pytest.mark.parametrize("overlay", PRODUCTION_OVERLAYS)
def test_the_exporter_deployment_runs_the_containersource_pod(overlay, overlays):
    """components/persistent-exporter/deployment.yaml repeats the ContainerSource template: they must not drift.
    The one difference is the state volume: ephemeral in the ContainerSource, the PVC in the Deployment."""
    cs = one(overlays["overlays/event-display"], "ContainerSource", "cts-exporter")["spec"]["template"]
    dep = one(overlays[overlay], "Deployment", "cts-exporter")
    a, b = copy.deepcopy(cs["spec"]), copy.deepcopy(dep["spec"]["template"]["spec"])
    (sa,) = [v for v in a["volumes"] if v["name"] == "state"]
    (sb,) = [v for v in b["volumes"] if v["name"] == "state"]
    assert "emptyDir" in sa and "persistentVolumeClaim" in sb
    for spec in (a, b):
        spec["volumes"] = [v for v in spec["volumes"] if v["name"] != "state"]
    assert a == b
    assert dep["spec"]["selector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()


# ---- never two exporters on one cursor ------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_never_two_exporters_on_one_cursor(overlay, overlays):
    """Every workload that mounts a PVC (the exporter's cursor) is a Deployment that Kubernetes keeps at one pod
    through rollouts (replicas 1, strategy Recreate) and whose claim only one pod can use (ReadWriteOncePod:
    covers a deleted or evicted pod's replacement, which Recreate does not). A ContainerSource may not hold
    the cursor: the Deployment Knative makes for it rolls out with RollingUpdate, the new pod first."""
    docs = overlays[overlay]
    claimed = {}
    for w, spec in workloads(docs):
        for v in spec.get("volumes", []):
            if "persistentVolumeClaim" not in v:
                continue
            name = v["persistentVolumeClaim"]["claimName"]
            where = f"{w['kind']} {w['metadata']['name']}"
            assert name not in claimed, f"{where} and {claimed.get(name)} mount the same claim {name}"
            claimed[name] = where
            assert w["kind"] == "Deployment", f"{where} holds a cursor volume: only a Deployment can be Recreate"
            assert w["spec"]["replicas"] == 1, where
            assert w["spec"]["strategy"] == {"type": "Recreate"}, where
            pvc = one(docs, "PersistentVolumeClaim", name)
            assert pvc["spec"]["accessModes"] == ["ReadWriteOncePod"], pvc["spec"]["accessModes"]
    for cs in find(docs, "ContainerSource"):
        for v in cs["spec"]["template"]["spec"].get("volumes", []):
            assert "persistentVolumeClaim" not in v, "a ContainerSource's Deployment rolls out new-pod-first"
    if overlay in PRODUCTION_OVERLAYS:
        assert list(claimed.values()) == ["Deployment cts-exporter"], "production keeps its cursor across pods"
    elif overlay in EXPORTER_OVERLAYS:
        assert not claimed, "the default's cursor is ephemeral (documented in docs/deployment.md)"


# ---- secrets and configuration --------------------------------------------------------------------------

SECRET_ENV = re.compile(r"PASSWORD|TOKEN|SECRET|(^|_)SK$|(^|_)AK$|API_KEY|CREDENTIAL", re.I)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_references_resolve(overlay, overlays):
    """Every Secret/ConfigMap/PVC a pod refers to is in the render, with the key it needs (kustomize adds a
    hash suffix to generated names, and must have rewritten every reference to it)."""
    docs = overlays[overlay]
    by = {(d["kind"], d["metadata"]["name"]): d for d in docs}

    def data_keys(kind, name):
        obj = by.get((kind, name))
        assert obj is not None, f"{kind} {name} is referenced but not rendered"
        return set(obj.get("data", {})) | set(obj.get("stringData", {}))

    for w, spec in workloads(docs):
        for c in spec["containers"]:
            for e in c.get("env", []):
                for kind, ref in (("Secret", "secretKeyRef"), ("ConfigMap", "configMapKeyRef")):
                    r = e.get("valueFrom", {}).get(ref)
                    if r:
                        keys = data_keys(kind, r["name"])
                        assert r.get("optional") or r["key"] in keys, f"{w['metadata']['name']}: {e['name']}"
            for ef in c.get("envFrom", []):
                for kind, ref in (("Secret", "secretRef"), ("ConfigMap", "configMapRef")):
                    if ref in ef:
                        data_keys(kind, ef[ref]["name"])
        for v in spec.get("volumes", []):
            if "secret" in v:
                data_keys("Secret", v["secret"]["secretName"])
            if "configMap" in v:
                data_keys("ConfigMap", v["configMap"]["name"])
            if "persistentVolumeClaim" in v:
                assert ("PersistentVolumeClaim", v["persistentVolumeClaim"]["claimName"]) in by


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_sinks_take_their_secrets_by_secret_key_ref(overlay, overlays):
    docs = overlays[overlay]
    expected = {
        "neo4j-sink": {"NEO4J_PASSWORD": "neo4j-credentials", "NEO4J_USER": "neo4j-credentials"},
        "chaos-sink": {
            "CHAOS_SINK_INFLUXDB_PASSWORD": "chaos-sink-credentials",
            "CHAOS_SINK_INFLUXDB_USERNAME": "chaos-sink-credentials",
            "CHAOS_SINK_INFLUXDB_TOKEN": "chaos-sink-credentials",
            "CHAOS_SINK_GRAFANA_API_TOKEN": "chaos-sink-credentials",
        },
    }
    for name in SINKS:
        found = list(find(docs, "Service", name, "serving.knative.dev"))
        assert len(found) == (1 if name in sinks_in(overlay) else 0), f"{overlay}: {name}"
    for name, wanted in expected.items():
        if name not in sinks_in(overlay):
            continue
        (c,) = one(docs, "Service", name, "serving.knative.dev")["spec"]["template"]["spec"]["containers"]
        env = env_of(c)
        for var, secret in wanted.items():
            ref = env[var]["valueFrom"]["secretKeyRef"]
            assert ref["key"] == var and re.fullmatch(secret + r"-[a-z0-9]{10}", ref["name"]), (var, ref)
    # No credential anywhere as a literal env value.
    for w, spec in workloads(docs):
        for c in spec["containers"]:
            for e in c.get("env", []):
                if SECRET_ENV.search(e["name"]):
                    assert "value" not in e and "secretKeyRef" in e.get("valueFrom", {}), (w["metadata"]["name"], e)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_secret_outside_secrets(overlay, overlays):
    docs = overlays[overlay]
    secrets = [d for d in docs if d["kind"] == "Secret"]
    assert sorted(s["metadata"]["name"].rsplit("-", 1)[0] for s in secrets) == sorted(
        SECRET_OF_FILE[f] for f in CONTENTS[overlay][1])
    for d in docs:
        if d["kind"] == "Secret":
            continue
        text = yaml.safe_dump(d)
        assert SENTINEL not in text, f"a secret value leaked into {d['kind']} {d['metadata']['name']}"
        if d["kind"] == "ConfigMap":
            for key, value in d.get("data", {}).items():
                assert not SECRET_ENV.search(key), f"ConfigMap {d['metadata']['name']} has a credential key {key}"
                for line in value.splitlines():
                    m = re.match(r"\s*([\w.-]+)\s*:\s*(\S.*)?$", line)
                    if m and m.group(2) and (SECRET_ENV.search(m.group(1)) or m.group(1) in ("sk", "ak")):
                        pytest.fail(f"ConfigMap {d['metadata']['name']}/{key} sets {m.group(1)}")


def secret_generator_files(root):
    """{path under k8s/ of every file a secretGenerator reads: the kustomization dir it belongs to}."""
    out = {}
    for k in sorted((root).rglob("kustomization.yaml")):
        for gen in yaml.safe_load(k.read_text()).get("secretGenerator", []):
            for f in gen.get("files", []) + gen.get("envs", []):
                real = (k.parent / f.split("=", 1)[-1]).relative_to(root).as_posix()
                out[real] = k.parent.relative_to(root).as_posix()
    return out


def test_committed_manifests_hold_no_secret(repo):
    """Secrets come only from secretGenerator over gitignored files; the examples hold placeholders."""
    tracked = subprocess.run(["git", "ls-files", "k8s"], cwd=repo, capture_output=True, text=True,
                             check=True).stdout.split()
    for path in tracked:
        if path.endswith((".yaml", ".yml")) and not path.endswith(".example"):
            for doc in yaml.safe_load_all((repo / path).read_text()):
                assert not (doc and doc.get("kind") == "Secret"), f"{path} commits a Secret"
    examples = [p for p in tracked if p.endswith(".example")]
    assert {p.rsplit("/", 1)[1] for p in examples} >= {"clouds.yaml.example", "neo4j.env.example",
                                                      "chaos-sink.env.example"}
    for p in examples:
        for line in (repo / p).read_text().splitlines():
            m = re.match(r"\s*([A-Za-z_]+)\s*[:=]\s*'?([^'#]*)'?", line)
            if m and not line.lstrip().startswith("#") and SECRET_ENV.search(m.group(1)) and m.group(2).strip():
                assert m.group(2).strip().startswith("<"), f"{p}: {line}"
    files = secret_generator_files(repo / "k8s")
    assert set(files) == set(SECRET_OF_FILE), files
    for f in files:
        real = "k8s/" + f
        ignored = subprocess.run(["git", "check-ignore", "-q", real], cwd=repo).returncode == 0
        assert ignored, f"{real} is not gitignored"
        assert (repo / (real + ".example")).exists(), f"{real}.example is missing"
        assert (repo / real).parent.name == "secrets", f"{real}: secret files live in a secrets/ directory"


def dockerignore_excludes(rules, path):
    """Whether .dockerignore rules (Docker's syntax: last match wins, ! re-includes, ** any directories)
    keep path out of the build context."""
    excluded = False
    for rule in rules:
        negate = rule.startswith("!")
        pattern = rule[1:] if negate else rule
        regex = re.escape(pattern.strip("/")).replace(r"\*\*/", "(.*/)?").replace(r"\*", "[^/]*")
        regex = regex.replace(r"\?", "[^/]")
        if re.fullmatch(regex + "(/.*)?", path):
            excluded = not negate
    return excluded


def test_secret_files_stay_out_of_the_image_build_context(repo):
    """Every file a secretGenerator reads (wherever its kustomization is) is excluded by .dockerignore."""
    rules = [l.strip() for l in (repo / ".dockerignore").read_text().splitlines()
             if l.strip() and not l.startswith("#")]
    assert dockerignore_excludes(rules, "k8s/base/secrets/clouds.yaml")
    assert not dockerignore_excludes(rules, "k8s/base/secrets/clouds.yaml.example")
    assert not dockerignore_excludes(rules, "cts-exporter/src/main.rs")
    for f in secret_generator_files(repo / "k8s"):
        assert dockerignore_excludes(rules, "k8s/" + f), f"k8s/{f} would be sent to docker build"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_overlay_needs_only_its_own_secret_files(overlay, kubectl, tmp_path):
    """With only the secret files CONTENTS lists, the overlay renders (the default needs nothing but
    clouds.yaml); without any one of them it does not, so the list is exact."""
    needed = CONTENTS[overlay][1]

    def render(files, name):
        root = copy_k8s_with_dummy_secrets(tmp_path / name / "k8s", only=set(files))
        return subprocess.run([kubectl, "kustomize", str(root / overlay)], capture_output=True, text=True,
                              timeout=120)

    p = render(needed, "all")
    assert p.returncode == 0, p.stderr
    rendered_secrets = sorted(d["metadata"]["name"].rsplit("-", 1)[0] for d in yaml.safe_load_all(p.stdout)
                              if d and d["kind"] == "Secret")
    assert rendered_secrets == sorted(SECRET_OF_FILE[f] for f in needed)
    for i, missing in enumerate(needed):
        p = render([f for f in needed if f != missing], f"without-{i}")
        assert p.returncode != 0 and missing.rsplit("/", 1)[1] in p.stderr, (missing, p.stderr)


# ---- probes, security, Knative settings ----------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_sinks_probe_healthz_and_readyz(overlay, overlays):
    docs = overlays[overlay]
    for name in sinks_in(overlay):
        spec = one(docs, "Service", name, "serving.knative.dev")["spec"]["template"]["spec"]
        (c,) = spec["containers"]
        (port,) = c["ports"]
        assert port["containerPort"] == 8080 and port.get("name") in (None, "http1", "h2c")
        for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            get = c[probe]["httpGet"]
            assert get["path"] == path
            # Knative: probes target the serving port (left out, or the same).
            assert get.get("port") in (None, port["containerPort"], port.get("name"))
        assert c["readinessProbe"].get("timeoutSeconds", 1) >= 4, "chaos-sink checks its backends for up to 3 s"
    for w, spec in workloads(docs):
        if w["metadata"]["name"] == "cts-exporter":
            (c,) = spec["containers"]
            port = int(env_of(c)["METRICS_PORT"]["value"])
            named = {p["name"]: p["containerPort"] for p in c["ports"]}
            for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
                get = c[probe]["httpGet"]
                assert get["path"] == path and named.get(get["port"], get["port"]) == port


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_containers_are_locked_down(overlay, overlays):
    for w, spec in workloads(overlays[overlay]):
        pod_sc = spec.get("securityContext", {})
        if w["kind"] == "Service":
            # Knative restricts the pod-level securityContext (kubernetes.podspec-securitycontext): set per container.
            assert not pod_sc, f"ksvc {w['metadata']['name']} sets a pod securityContext"
        for c in spec["containers"]:
            where = f"{w['kind']} {w['metadata']['name']}/{c['name']}"
            sc = c.get("securityContext", {})
            assert sc.get("runAsNonRoot") is True, where
            assert sc.get("runAsUser", pod_sc.get("runAsUser", 1)) != 0, where
            assert sc.get("readOnlyRootFilesystem") is True, where
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert "ALL" in sc.get("capabilities", {}).get("drop", []), where
            assert not sc.get("capabilities", {}).get("add"), where
            assert not sc.get("privileged"), where
            seccomp = sc.get("seccompProfile") or pod_sc.get("seccompProfile")
            assert seccomp == {"type": "RuntimeDefault"}, where
            res = c.get("resources", {})
            assert res.get("requests", {}).get("memory") and res.get("limits", {}).get("memory"), where
            assert res.get("requests", {}).get("cpu"), where


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_knative_service_settings(overlay, overlays):
    docs = overlays[overlay]
    for name in sinks_in(overlay):
        ksvc = one(docs, "Service", name, "serving.knative.dev")
        assert ksvc["metadata"]["labels"].get("networking.knative.dev/visibility") == "cluster-local"
        tmpl = ksvc["spec"]["template"]
        spec = tmpl["spec"]
        assert isinstance(spec["containerConcurrency"], int) and spec["containerConcurrency"] > 0
        env = env_of(spec["containers"][0])
        delay = int(env["SHUTDOWN_DELAY_SECS"]["value"])
        drain = int(env["SHUTDOWN_TIMEOUT_SECS"]["value"])
        assert delay > 0
        # timeoutSeconds is also the pod's termination grace period: the shutdown must fit in it.
        assert delay + drain < spec["timeoutSeconds"] <= 600
        # Both keep one warm replica: the Bolt pool / the per-run state.
        assert tmpl["metadata"]["annotations"]["autoscaling.knative.dev/min-scale"] == "1", name


@pytest.mark.parametrize("overlay", EXPORTER_OVERLAYS)
def test_the_exporter_state_and_credentials_are_mounted(overlay, overlays):
    docs = overlays[overlay]
    (w, spec), = [(w, s) for w, s in workloads(docs) if w["metadata"]["name"] == "cts-exporter"]
    (c,) = spec["containers"]
    env = env_of(c)
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    state_dir = env["CTS_STATE_FILE"]["value"].rsplit("/", 1)[0]
    state = volumes[mounts[state_dir]]
    if overlay in PRODUCTION_OVERLAYS:
        pvc = one(docs, "PersistentVolumeClaim", state["persistentVolumeClaim"]["claimName"])
        assert pvc["spec"]["accessModes"] == ["ReadWriteOncePod"]
    else:
        assert w["kind"] == "ContainerSource" and "emptyDir" in state
    assert spec["securityContext"]["fsGroup"] == spec["securityContext"]["runAsUser"], "state dir writable"
    clouds_dir, clouds_file = env["OS_CLIENT_CONFIG_FILE"]["value"].rsplit("/", 1)
    secret_vol = volumes[mounts[clouds_dir]]
    assert [m for m in c["volumeMounts"] if m["mountPath"] == clouds_dir][0]["readOnly"] is True
    secret = one(docs, "Secret", secret_vol["secret"]["secretName"])
    assert clouds_file in secret["data"]
    assert spec["automountServiceAccountToken"] is False
    config = one(docs, "ConfigMap", c["envFrom"][0]["configMapRef"]["name"])
    assert config["data"]["OS_CLOUD"] and config["data"]["CTS_X_PNP"] == "true"
    # Knative injects these: setting them would fight the SinkBinding.
    assert not {"K_SINK", "K_CE_OVERRIDES", "K_CA_CERTS"} & (set(env) | set(config["data"]))


# ---- the broker overlay: triggers and delivery ------------------------------------------------------------

CHAOS_TYPES = [f"org.chaostoolkit.{what}.{phase}" for what in
               ("experiment", "hypothesis", "method", "rollbacks", "activity") for phase in ("started", "finished")]
CTS_TYPES = ["ecs.apicall.server.deleteserver", "evs.consoleaction.volume.createvolume",
             "iam.systemaction.user.login", "obs.obssdk.bucket.putobject", "obs.obsapi.bucket.createbucket",
             "rds.apicall.instance.restartinstance"]
OTHER_TYPES = ["dev.knative.eventing.samples.heartbeat", "org.chaostoolkitx.experiment.started",
               "com.example.apicallish"]


def cesql_matches(expr: str, event: dict) -> bool:
    """The CESQL subset the triggers use: ATTR LIKE 'pattern' / ATTR = 'value' joined by OR."""
    result = False
    for term in re.split(r"\s+OR\s+", expr.strip(), flags=re.I):
        m = re.fullmatch(r"\s*(\w+)\s+(LIKE|=)\s+'([^']*)'\s*", term, flags=re.I)
        assert m, f"the test's CESQL evaluator does not know {term!r}: extend it with the trigger"
        attr, op, pattern = m.groups()
        value = event.get(attr.lower(), "")
        if op.upper() == "=":
            result |= value == pattern
        else:
            regex = "".join(".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern)
            result |= re.fullmatch(regex, value, flags=re.S) is not None
    return result


def filter_matches(f: dict, event: dict) -> bool:
    """One entry of Trigger spec.filters (the CloudEvents Subscriptions API dialects)."""
    (dialect, arg), = f.items()
    if dialect == "exact":
        return all(event.get(k) == v for k, v in arg.items())
    if dialect == "prefix":
        return all(event.get(k, "").startswith(v) for k, v in arg.items())
    if dialect == "suffix":
        return all(event.get(k, "").endswith(v) for k, v in arg.items())
    if dialect == "all":
        return all(filter_matches(x, event) for x in arg)
    if dialect == "any":
        return any(filter_matches(x, event) for x in arg)
    if dialect == "not":
        return not filter_matches(arg, event)
    if dialect == "cesql":
        return cesql_matches(arg, event)
    raise AssertionError(f"unknown filter dialect {dialect}")


def trigger_matches(trigger: dict, event: dict) -> bool:
    spec = trigger["spec"]
    if spec.get("filters"):
        return all(filter_matches(f, event) for f in spec["filters"])
    return all(event.get(k) == v for k, v in spec.get("filter", {}).get("attributes", {}).items())


@pytest.mark.parametrize("overlay", BROKER_OVERLAYS)
def test_triggers_route_the_right_types(overlay, overlays):
    docs = overlays[overlay]
    triggers = {t["spec"]["subscriber"]["ref"]["name"]: t for t in find(docs, "Trigger")}
    assert set(triggers) == {"neo4j-sink", "chaos-sink"}
    for t in triggers.values():
        assert "filter" not in t["spec"], "filters and filter together: filter is ignored"
    for ty in CTS_TYPES:
        assert trigger_matches(triggers["neo4j-sink"], {"type": ty}), ty
        assert not trigger_matches(triggers["chaos-sink"], {"type": ty}), ty
    for ty in CHAOS_TYPES:
        assert trigger_matches(triggers["chaos-sink"], {"type": ty}), ty
        assert not trigger_matches(triggers["neo4j-sink"], {"type": ty}), ty
    for ty in OTHER_TYPES:
        assert not any(trigger_matches(t, {"type": ty}) for t in triggers.values()), ty


def test_the_chaos_types_are_the_schema_s(repo):
    """The trigger test's list of Chaos Toolkit types is the one the schema defines."""
    text = (repo / "chaos-sink/schema/chaostoolkit-events.schema.json").read_text()
    found = set(re.findall(r"org\.chaostoolkit\.[a-z]+\.(?:started|finished)", text))
    assert found == set(CHAOS_TYPES)


@pytest.mark.parametrize("overlay", BROKER_OVERLAYS)
def test_broker_delivery_retries_with_backoff_and_dead_letters(overlay, overlays):
    docs = overlays[overlay]
    broker = one(docs, "Broker", "default")
    for obj in [broker] + list(find(docs, "Trigger")):
        d = obj["spec"]["delivery"]
        assert d["retry"] >= 5 and d["backoffPolicy"] == "exponential"
        assert re.fullmatch(r"PT\d+(\.\d+)?S", d["backoffDelay"])
        dls = resolve(docs, d["deadLetterSink"]["ref"])
        assert dls["metadata"]["name"] == "dead-letter"
        assert dls["spec"]["template"]["spec"]["containers"][0]["image"].startswith(
            "gcr.io/knative-releases/knative.dev/eventing/cmd/event_display")
    for t in find(docs, "Trigger"):
        assert t["spec"]["broker"] == broker["metadata"]["name"]
        resolve(docs, t["spec"]["subscriber"]["ref"])
        assert re.fullmatch(r"PT\d+S", t["spec"]["delivery"]["timeout"])


ISO_DURATION = re.compile(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?")


def iso_seconds(value: str) -> float:
    """An ISO 8601 duration of days/hours/minutes/seconds (what Knative's delivery fields take) in seconds."""
    m = ISO_DURATION.fullmatch(value)
    assert m and value not in ("P", "PT") and not value.endswith("T"), f"not an ISO 8601 duration: {value}"
    d, h, mi, s = (float(x) if x else 0.0 for x in m.groups())
    return ((d * 24 + h) * 60 + mi) * 60 + s


def backoff_waits(delivery: dict) -> list:
    """The waits Knative's dispatcher makes between the attempts of one event, as knative/eventing computes them
    (pkg/kncloudevents/retries.go RetryConfigFromDeliverySpec, driven by go-retryablehttp, whose attempt number
    i counts from 0 for the first retry): exponential backoffDelay * 2^i, linear backoffDelay * i, for i < retry.
    Without backoffDelay or backoffPolicy the backoff is 0. A Retry-After (delivery-retryafter) can only make a
    wait longer: the dispatcher takes the larger of the two."""
    n = delivery.get("retry", 0)
    if "backoffDelay" not in delivery or "backoffPolicy" not in delivery:
        return [0.0] * n
    d = iso_seconds(delivery["backoffDelay"])
    policy = delivery["backoffPolicy"]
    assert policy in ("exponential", "linear"), policy
    return [d * 2 ** i if policy == "exponential" else d * i for i in range(n)]


def test_backoff_waits_follow_knative():
    assert backoff_waits({"retry": 3, "backoffPolicy": "exponential", "backoffDelay": "PT2S"}) == [2, 4, 8]
    assert backoff_waits({"retry": 3, "backoffPolicy": "linear", "backoffDelay": "PT2S"}) == [0, 2, 4]
    assert backoff_waits({"retry": 2}) == [0, 0]
    assert sum(backoff_waits({"retry": 10, "backoffPolicy": "exponential", "backoffDelay": "PT1S"})) == 1023
    assert iso_seconds("PT1M30S") == 90 and iso_seconds("PT0.5S") == 0.5 and iso_seconds("P1DT1H") == 90000
    with pytest.raises(AssertionError):
        iso_seconds("1s")


OUTAGE_SECONDS = 600  # the database outage every delivery must ride out (issue 14): 10 minutes
SERVING_MAX_TIMEOUT = 600  # Knative Serving's max-revision-timeout-seconds default: no request outlives it


def effective_deliveries(docs):
    """{object: delivery} for the Broker's own hop and every Trigger (a Trigger without delivery uses the
    Broker's)."""
    out = {}
    for b in find(docs, "Broker"):
        out[f"Broker {b['metadata']['name']}"] = b["spec"].get("delivery", {})
    for t in find(docs, "Trigger"):
        broker = one(docs, "Broker", t["spec"]["broker"])
        out[f"Trigger {t['metadata']['name']}"] = t["spec"].get("delivery") or broker["spec"].get("delivery", {})
    return out


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_delivery_rides_out_a_10_minute_outage(overlay, overlays, repo):
    """Backoff alone, without Retry-After (delivery-retryafter is alpha and off by default), spans at least
    10 minutes before an event is dead-lettered; every attempt is cut off by timeout, below the subscriber's
    own timeoutSeconds (a single request cannot wait out the outage: Serving caps it at 600 s). The figure the
    docs state is the one computed here."""
    docs = overlays[overlay]
    deliveries = effective_deliveries(docs)
    if overlay not in BROKER_OVERLAYS:
        assert not deliveries
        return
    totals = set()
    for where, d in deliveries.items():
        total = sum(backoff_waits(d))
        assert total >= OUTAGE_SECONDS, f"{where}: {total} s of backoff, less than {OUTAGE_SECONDS} s"
        totals.add(total)
    for t in find(docs, "Trigger"):
        timeout = iso_seconds(t["spec"]["delivery"]["timeout"])
        ksvc = resolve(docs, t["spec"]["subscriber"]["ref"])
        assert 0 < timeout < ksvc["spec"]["template"]["spec"]["timeoutSeconds"] <= SERVING_MAX_TIMEOUT, t
    (total,) = totals  # one schedule everywhere, so the docs can state one figure
    figure = f"{total:.0f} s"
    for doc in ("docs/deployment.md", "k8s/README.md", "k8s/overlays/broker/triggers.yaml"):
        assert figure in (repo / doc).read_text(), f"{doc} does not state the computed backoff {figure}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_retry_after_max_only_where_the_feature_is_assumed(overlay, overlays):
    """retryAfterMax is rejected by Knative's webhook unless delivery-retryafter is enabled, and without it
    Retry-After is ignored even when the feature is on: so it is set on every delivery of the overlay made for
    that feature, and nowhere else."""
    deliveries = effective_deliveries(overlays[overlay])
    if overlay == "overlays/broker-retry-after":
        assert deliveries
        for where, d in deliveries.items():
            cap = iso_seconds(d["retryAfterMax"])
            # Above what the sinks ask for (neo4j-sink NEO4J_RETRY_AFTER_SECS 2, chaos-sink retry_after 5), so
            # their Retry-After is honoured as sent; bounded, so a relayed one cannot park an event for long.
            assert 5 <= cap <= 300, (where, cap)
        base = effective_deliveries(overlays["overlays/broker"])
        assert {k: {f: v for f, v in d.items() if f != "retryAfterMax"} for k, d in deliveries.items()} == base
    else:
        for where, d in deliveries.items():
            assert "retryAfterMax" not in d, f"{overlay} {where}: needs delivery-retryafter, which is alpha"


def test_event_display_is_knative_s(overlays):
    ksvc = one(overlays["."], "Service", "event-display", "serving.knative.dev")
    image = ksvc["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "gcr.io/knative-releases/knative.dev/eventing/cmd/event_display"


# ---- configuration names agree with the services ----------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_configured_variables_exist_in_the_services(overlay, repo, overlays):
    """Every variable the manifests set is one the service reads (a typo would be silently ignored)."""
    shared = (repo / "README.md").read_text()

    def sources(crate):
        # Upper-cased too: envy maps a variable to a lower-case struct field of the same name.
        text = "".join(p.read_text() for p in sorted((repo / crate / "src").rglob("*.rs")))
        return text + text.upper()

    known = {name: sources(name) + shared for name in ("cts-exporter", "neo4j-sink", "chaos-sink")}
    docs = overlays[overlay]
    for w, spec in workloads(docs):
        name = w["metadata"]["name"]
        if name not in known:
            continue
        (c,) = spec["containers"]
        names = set(env_of(c))
        for ef in c.get("envFrom", []):
            cm = one(docs, "ConfigMap", ef["configMapRef"]["name"])
            names |= set(cm["data"])
        for var in names:
            assert var in known[name], f"{name}: {var} is not a variable the service reads"


# ---- the docs name what exists ----------------------------------------------------------------------------

K8S_PATH = re.compile(r"(?<![\w/.-])((?:k8s/)?(?:base|sinks|overlays|components)/[\w./-]*[\w-])")


def documented_k8s_paths(repo):
    """(doc, path) for every k8s/ path named in the deployment docs: docs/deployment.md, k8s/README.md and the
    README's "Deploying on Knative" section (paths in k8s/README.md and the docs' tables are relative to k8s/)."""
    readme = (repo / "README.md").read_text()
    start = readme.index("## Deploying on Knative")
    texts = {
        "docs/deployment.md": (repo / "docs/deployment.md").read_text(),
        "k8s/README.md": (repo / "k8s/README.md").read_text(),
        "README.md#deploying-on-knative": readme[start:readme.index("\n## ", start + 1)],
    }
    for doc, text in texts.items():
        for m in K8S_PATH.finditer(text):
            yield doc, m.group(1)


def test_the_docs_name_only_paths_that_exist(repo):
    """A moved or renamed manifest, secret or setting file must not leave the deployment docs behind. A secret
    file itself is gitignored: its .example must exist."""
    seen = 0
    for doc, path in documented_k8s_paths(repo):
        rel = path if path.startswith("k8s/") else "k8s/" + path
        target = repo / rel
        ok = target.exists() or (target.parent.name == "secrets" and (repo / (rel + ".example")).exists())
        assert ok, f"{doc} names {path}, which does not exist"
        seen += 1
    assert seen > 30, "the path pattern no longer finds the docs' paths"


def test_the_docs_state_the_versions_and_the_feature_flags_used(repo, overlays):
    """docs/deployment.md's table of assumptions names every Knative feature flag a rendered overlay relies on,
    with the overlays that need an alpha one, and the minimum versions."""
    docs = (repo / "docs/deployment.md").read_text()
    table = docs[docs.index("### Versions and feature flags assumed"):docs.index("### Install")]
    assert "| Knative Serving and Eventing | 1.15 or later |" in table
    assert "| Kubernetes | 1.29 or later |" in table  # ReadWriteOncePod is GA from 1.29
    for overlay, objs in overlays.items():
        for where, d in effective_deliveries(objs).items():
            if "timeout" in d:
                assert "| Eventing `delivery-timeout` | beta, **enabled by default**" in table, (overlay, where)
            if "retryAfterMax" in d:
                row = [l for l in table.splitlines() if l.startswith("| Eventing `delivery-retryafter` |")]
                assert row and "alpha" in row[0] and overlay in row[0], (overlay, where)


def proven_replicas():
    """The replica count the reliability suite runs each sink with (tests/reliability/tests/replicas.rs)."""
    text = (REPO / "tests/reliability/tests/replicas.rs").read_text()
    m = re.search(r"const REPLICAS: usize = (\d+);", text)
    assert m, "replicas.rs declares REPLICAS"
    return int(m.group(1))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_sinks_scale_out_no_further_than_the_tests_prove(overlay, overlays):
    replicas = proven_replicas()
    assert replicas >= 3, "the replicas scenario runs several replicas"
    for name in sinks_in(overlay):
        meta = one(overlays[overlay], "Service", name, "serving.knative.dev")["spec"]["template"]["metadata"]
        max_scale = meta.get("annotations", {}).get("autoscaling.knative.dev/max-scale")
        assert max_scale is not None, f"{name}: an unbounded max-scale was never tested"
        assert 1 <= int(max_scale) <= replicas, (
            f"{name}: max-scale {max_scale} but tests/reliability/tests/replicas.rs proves {replicas} replicas"
        )
