"""deploy/Dockerfile and .dockerignore as text, and against the workspace it builds from (test_images_run.py
builds the images with podman and runs them)."""

import re
import subprocess
import tomllib

import yaml

from manifest_helpers import REPO

DOCKERFILE = REPO / "deploy/Dockerfile"


def stages():
    """[(FROM line, [instructions])] of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            out.append((line, []))
        elif out:
            out[-1][1].append(line)
    return out


def workspace_binaries():
    """{package name: manifest} of the workspace members that have a binary of the same name."""
    root = tomllib.loads((REPO / "Cargo.toml").read_text())
    found = {}
    for member in root["workspace"]["members"]:
        manifest = tomllib.loads((REPO / member / "Cargo.toml").read_text())
        name = manifest["package"]["name"]
        bins = [b["name"] for b in manifest.get("bin", [])]
        if name in bins or (REPO / member / "src/main.rs").exists():
            found[name] = member
    return found


def test_multi_stage_build_to_distroless_nonroot():
    (build_from, build), (host_from, host), (binary_from, _), (run_from, runtime) = stages()
    assert re.match(r"FROM docker\.io/library/rust:\$\{RUST_VERSION\}-bookworm AS build", build_from)
    text = DOCKERFILE.read_text()
    # The runtime base and the binary's origin are build arguments whose defaults are what users get.
    assert "ARG RUNTIME_BASE=gcr.io/distroless/cc-debian12:nonroot" in text
    assert "ARG BINARY_FROM=build" in text
    assert host_from == "FROM scratch AS host"
    assert "COPY target/release/${SERVICE} /out/app" in host
    assert binary_from == "FROM ${BINARY_FROM} AS binary"
    assert run_from == "FROM ${RUNTIME_BASE}"
    cargo = [i for i in build if "cargo build" in i]
    assert cargo and all(s in cargo[0] for s in ("--release", "--locked", '-p "$SERVICE"'))
    # The runtime stage has no shell: nothing may RUN there.
    assert not [i for i in runtime if i.upper().startswith("RUN ")]
    user = [i for i in runtime if i.upper().startswith("USER ")]
    assert user == ["USER 65532:65532"], "numeric, so Kubernetes can verify runAsNonRoot"
    entry = [i for i in runtime if i.upper().startswith("ENTRYPOINT ")]
    assert entry == ['ENTRYPOINT ["/app"]']
    # The state directory is owned by the runtime user (a fresh volume mounted there inherits it).
    assert any(i.startswith("COPY --from=binary --chown=65532:65532") for i in runtime)
    # Both origins provide the same tree: /out/app and /out/state.
    assert any("/out/app" in i for i in build) and any("/out/state" in i for i in build)
    assert any(i.endswith("/out/state/") for i in host)


def test_every_service_the_dockerfile_accepts_is_a_workspace_binary():
    text = DOCKERFILE.read_text()
    accepted = set(re.search(r'case "\$\{SERVICE:-\}" in ([\w|-]+)\)', text).group(1).split("|"))
    binaries = workspace_binaries()
    assert accepted == {"cts-exporter", "neo4j-sink", "chaos-sink", "otc-sim"}
    assert accepted <= set(binaries), binaries
    compose = yaml.safe_load((REPO / "deploy/compose.yaml").read_text())
    built = {s["build"]["args"]["SERVICE"] for s in compose["services"].values() if "build" in s}
    assert built == accepted


def test_the_rust_image_can_build_the_workspace():
    """The default RUST_VERSION is at least the workspace's rust-version."""
    default = re.search(r"ARG RUST_VERSION=(\d+)\.(\d+)", DOCKERFILE.read_text()).groups()
    needed = tomllib.loads((REPO / "Cargo.toml").read_text())["workspace"]["package"]["rust-version"].split(".")
    assert tuple(map(int, default)) >= tuple(map(int, needed[:2]))


def test_dockerignore_keeps_the_context_small_and_secret_free():
    rules = [l.strip() for l in (REPO / ".dockerignore").read_text().splitlines()
             if l.strip() and not l.startswith("#")]
    for must in ("**/target", ".git", ".venv", "**/node_modules", "k8s/**/secrets/*"):
        assert must in rules, must
    # The build needs the workspace manifests, the lock file and every member's sources.
    for needed in ("Cargo.toml", "Cargo.lock", "shared", "tests/otc-sim", "tests/fake-broker"):
        assert not any(r.rstrip("/") == needed for r in rules), needed


def test_lock_file_is_committed():
    tracked = subprocess.run(["git", "ls-files", "Cargo.lock"], cwd=REPO, capture_output=True, text=True).stdout
    assert tracked.strip() == "Cargo.lock", "cargo build --locked needs it"
