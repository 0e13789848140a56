"""Fixtures of the manifest tests: the repository, tool lookup with the project's skip/fail rule, and the
kustomizations rendered once per session from a temporary copy of k8s/ holding dummy secret files."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from manifest_helpers import REPO, copy_k8s_with_dummy_secrets, kustomization_dirs, need


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def kubectl() -> str:
    path = shutil.which("kubectl")
    need(path, "kubectl (kubectl kustomize)", "kubectl is not on PATH")
    return path


@pytest.fixture(scope="session")
def k8s_copy(tmp_path_factory) -> Path:
    """k8s/ copied to a temp dir, with every secret file (of base/ and of each sink) replaced by a dummy holding
    SENTINEL values (the real ones are gitignored and never read by the tests)."""
    root = tmp_path_factory.mktemp("k8s") / "k8s"
    copy_k8s_with_dummy_secrets(root)
    return root


@pytest.fixture(scope="session")
def rendered(kubectl, k8s_copy):
    """{kustomization dir relative to k8s/: (rendered YAML text, [documents])} for every kustomization."""
    out = {}
    for d in kustomization_dirs(k8s_copy):
        rel = d.relative_to(k8s_copy).as_posix()
        p = subprocess.run([kubectl, "kustomize", str(d)], capture_output=True, text=True, timeout=120)
        out[rel] = (p.returncode, p.stdout, p.stderr)
    return out


@pytest.fixture(scope="session")
def overlays(rendered):
    """Rendered overlays (and the top-level default) that must build: {name: [documents]}."""
    docs = {}
    for rel, (rc, text, err) in rendered.items():
        if rel == "." or rel.startswith("overlays/"):
            assert rc == 0, f"kubectl kustomize k8s/{rel} failed: {err}"
            docs[rel] = [d for d in yaml.safe_load_all(text) if d]
    return docs


@pytest.fixture(scope="session")
def overlay_files(overlays, tmp_path_factory):
    """Each rendered overlay written to a file: {name: path}."""
    d = tmp_path_factory.mktemp("rendered")
    files = {}
    for name, docs in overlays.items():
        p = d / (name.replace("/", "_").replace(".", "default") + ".yaml")
        p.write_text(yaml.safe_dump_all(docs, sort_keys=False))
        files[name] = p
    return files


@pytest.fixture(scope="session")
def node_validator(repo):
    node = shutil.which("node")
    need(node, "node (Knative validation)", "node is not on PATH")
    mods = repo / "tests" / "manifests" / "node_modules" / "@kubernetes-models" / "knative"
    need(mods.is_dir(), "@kubernetes-models/knative",
         "tests/manifests/node_modules is missing: run stack_install_manifest_tools (scripts/lib/stack.sh)")
    return [node, str(repo / "tests" / "manifests" / "validate-knative.js")]


@pytest.fixture(scope="session")
def kubernetes_validate():
    exe = Path(sys.executable).parent / "kubernetes-validate"
    found = str(exe) if exe.exists() else shutil.which("kubernetes-validate")
    need(found, "kubernetes-validate", "not installed: it is in tests/requirements.txt")
    return found
