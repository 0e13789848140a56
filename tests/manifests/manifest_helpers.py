"""Helpers shared by the tests of k8s/, deploy/compose.yaml, docker/ and deploy/grafana/ (a module of its own,
not conftest, so the other pytest directories' conftest modules cannot clash with it)."""

import os
import shutil
import socket
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
# Written into the dummy secret files: must end up in Secrets only.
SENTINEL = "DUMMY-SECRET-4f1c9e"
# The version of Kubernetes the core kinds are validated against (kubectl on the image is 1.32).
K8S_VERSION = "1.32.0"
KNATIVE_GROUPS = ("serving.knative.dev", "eventing.knative.dev", "sources.knative.dev", "messaging.knative.dev")


def servers_required() -> bool:
    """The rule of shared::testkit::require_env: missing tools fail under CI=true or TEST_REQUIRE_SERVERS=1."""
    return os.environ.get("CI") in ("true", "1") or os.environ.get("TEST_REQUIRE_SERVERS") == "1"


def need(ok, what: str, why: str):
    """Fails (CI=true / TEST_REQUIRE_SERVERS=1) or skips the test when a tool or server is missing."""
    if ok:
        return
    msg = f"{what} is required but not available: {why}"
    if servers_required():
        pytest.fail(msg + " (CI=true or TEST_REQUIRE_SERVERS=1); run scripts/test", pytrace=False)
    pytest.skip(f"SKIPPED: {msg} (scripts/test provides it)")


def kustomization_dirs(root: Path):
    """Every directory under root with a kustomization.yaml that is not a Component."""
    out = []
    for k in sorted(root.rglob("kustomization.yaml")):
        if yaml.safe_load(k.read_text()).get("kind") == "Component":
            continue
        out.append(k.parent)
    return out


def group_of(doc) -> str:
    api = doc.get("apiVersion", "")
    return api.split("/")[0] if "/" in api else ""


def is_knative(doc) -> bool:
    return group_of(doc).endswith(".knative.dev")


def find(docs, kind, name=None, group=None):
    for d in docs:
        if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name) and (
            group is None or group_of(d) == group
        ):
            yield d


def one(docs, kind, name, group=None):
    found = list(find(docs, kind, name, group))
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def pod_spec(doc):
    """The pod spec of a workload-like object (Knative Service, ContainerSource, Deployment), else None."""
    kind = doc.get("kind")
    if kind == "Service" and group_of(doc) == "serving.knative.dev":
        return doc["spec"]["template"]["spec"]
    if kind in ("ContainerSource", "Deployment", "StatefulSet", "DaemonSet", "Job"):
        return doc["spec"]["template"]["spec"]
    return None


def workloads(docs):
    for d in docs:
        spec = pod_spec(d)
        if spec is not None:
            yield d, spec


def env_of(container) -> dict:
    return {e["name"]: e for e in container.get("env", [])}


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def debug_binary(name):
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    exe = target / "debug" / name
    need(exe.is_file(), f"the {name} binary", f"{exe} is missing: cargo test --workspace builds it")
    return exe


def secret_dirs(root: Path):
    """Every secrets/ directory of the kustomizations under root (base/secrets, sinks/*/secrets)."""
    return sorted(p for p in root.rglob("secrets") if p.is_dir() and "node_modules" not in p.parts)


def copy_k8s_with_dummy_secrets(root: Path, only=None):
    """Copies k8s/ to root without the real secret files, and writes a dummy for every *.example (a dummy
    clouds.yaml; *.env files with every key of the example set to SENTINEL-<key>). With only (paths relative
    to k8s/, e.g. "base/secrets/clouds.yaml"), writes just those dummies."""
    shutil.copytree(REPO / "k8s", root, ignore=shutil.ignore_patterns(".git"))
    for secrets in secret_dirs(root):
        for f in list(secrets.iterdir()):
            if f.name != ".gitignore" and not f.name.endswith(".example"):
                f.unlink()
        for example in secrets.glob("*.example"):
            real = secrets / example.name[: -len(".example")]
            if only is not None and real.relative_to(root).as_posix() not in only:
                continue
            if real.name == "clouds.yaml":
                real.write_text(
                    "clouds:\n  otc:\n    auth:\n      username: dummy-user\n"
                    f"      password: '{SENTINEL}-clouds'\n      project_name: eu-de_dummy\n"
                    "      user_domain_name: OTC0000000000\n      auth_url: https://iam.eu-de.otc.t-systems.com/v3\n"
                )
                continue
            lines = []
            for line in example.read_text().splitlines():
                s = line.strip().lstrip("#").strip()
                if "=" in s and s.split("=", 1)[0].isupper() and " " not in s.split("=", 1)[0]:
                    key = s.split("=", 1)[0]
                    lines.append(f"{key}={SENTINEL}-{key.lower()}")
            real.write_text("\n".join(lines) + "\n")
    return root
