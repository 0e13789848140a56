# shellcheck shell=bash
# Container images with podman, on machines where the public base images cannot be pulled (CI): the four
# services' images from deploy/Dockerfile's real runtime stage, on a Debian 12 stand-in for
# gcr.io/distroless/cc-debian12 (the files of the same Debian packages, the same nonroot user 65532), with
# release binaries built here (BINARY_FROM=host).
#
# Use: source this file, then images_install, images_base, images_build. Sizes: images_sizes.

IMAGES_ROOT=${IMAGES_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
IMAGES_CACHE=${IMAGES_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cts-knative}
IMAGES_BASE=${IMAGES_BASE:-localhost/cts-knative/distroless-standin:bookworm}
IMAGES_PREFIX=${IMAGES_PREFIX:-dev.local/cts-knative}
IMAGES_TAG=${IMAGES_TAG:-0.1.0}
IMAGES_SERVICES=(cts-exporter neo4j-sink chaos-sink otc-sim)
# Debian packages whose files distroless/cc-debian12 ships (libc, libgcc, libstdc++, libgomp, CA bundle, tzdata,
# base-files, netbase).
IMAGES_BASE_PACKAGES=(libc6 libgcc-s1 libstdc++6 libgomp1 base-files netbase tzdata ca-certificates)

images_log() { printf '[images] %s\n' "$*" >&2; }

images_as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    images_log "need root for: $*"; return 1; fi
}

# podman with runc, cgroupfs and no default ulimits: this sandbox refuses to raise rlimits, and crun refuses
# its hybrid cgroup setup. The settings live in a file of ours (CONTAINERS_CONF), not in /etc.
images_install() {
  local missing=()
  command -v podman >/dev/null || missing+=(podman)
  command -v runc >/dev/null || missing+=(runc)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  command -v strip >/dev/null || missing+=(binutils)
  if [ ${#missing[@]} -gt 0 ]; then
    images_log "installing Debian packages: ${missing[*]}"
    images_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    images_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  mkdir -p "$IMAGES_CACHE"
  cat >"$IMAGES_CACHE/containers.conf" <<'CONF'
[containers]
default_ulimits = []
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
  export CONTAINERS_CONF="$IMAGES_CACHE/containers.conf"
}

# The stand-in base: debootstrap a Debian 12 minbase (cached as a tarball between runs), keep only the files of
# IMAGES_BASE_PACKAGES plus the CA bundle, passwd/group with root, nobody and nonroot (65532) as distroless has
# them, /tmp and /home/nonroot; import it as IMAGES_BASE. No shell, no package manager, as distroless.
images_base() {
  local tar="$IMAGES_CACHE/distroless-standin-bookworm.tar" tmp rootfs base list
  if podman image exists "$IMAGES_BASE"; then return 0; fi
  if [ ! -s "$tar" ]; then
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/images-base.XXXXXX")
    rootfs=$tmp/rootfs base=$tmp/base list=$tmp/files
    images_log "debootstrap Debian 12 minbase (cached in $tar afterwards)"
    images_as_root debootstrap --variant=minbase --include=ca-certificates,tzdata,netbase,libgomp1 \
      bookworm "$rootfs" http://deb.debian.org/debian >"$tmp/debootstrap.log" 2>&1 ||
      { tail -20 "$tmp/debootstrap.log" >&2; return 1; }
    : >"$list"
    for p in "${IMAGES_BASE_PACKAGES[@]}"; do
      # Merged /usr: the packages list /lib/..., which is /usr/lib/... on disk.
      dpkg --root="$rootfs" -L "$p" | sed -E 's#^/(lib|lib64|bin|sbin)/#/usr/\1/#' >>"$list"
    done
    mkdir -p "$base"
    (cd "$rootfs" && while read -r f; do
      if [ -f ".$f" ] || [ -L ".$f" ]; then printf '.%s\n' "$f"; fi
    done <"$list" | sort -u | tar -c --no-recursion -T - -f -) | tar -C "$base" -x --no-same-owner -f - 2>/dev/null ||
      true
    for l in lib lib64 bin sbin; do [ -L "$rootfs/$l" ] && cp -a "$rootfs/$l" "$base/$l"; done
    install -D -m 0644 "$rootfs/etc/ssl/certs/ca-certificates.crt" "$base/etc/ssl/certs/ca-certificates.crt"
    mkdir -p "$base/etc" "$base/tmp" "$base/home/nonroot" "$base/root"
    chmod 1777 "$base/tmp"
    printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$base/etc/passwd"
    printf 'root:x:0:\nnobody:x:65534:\ntty:x:5:\nstaff:x:50:\nnonroot:x:65532:\n' >"$base/etc/group"
    printf 'hosts: files dns\nnetworks: files\npasswd: files\ngroup: files\n' >"$base/etc/nsswitch.conf"
    images_as_root chown -R 65532:65532 "$base/home/nonroot"
    tar -C "$base" -c --numeric-owner -f "$tar.part" . && mv "$tar.part" "$tar"
    images_as_root rm -rf "$tmp"
  fi
  images_log "importing $IMAGES_BASE from $tar"
  podman import --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' "$tar" "$IMAGES_BASE" >/dev/null
}

# images_build [SERVICE...]: release binaries (cargo), stripped into a staged context, and one image each from
# deploy/Dockerfile with BINARY_FROM=host and RUNTIME_BASE=IMAGES_BASE, tagged IMAGES_PREFIX/SERVICE:IMAGES_TAG.
images_build() {
  local services=("$@") ctx s args=()
  [ ${#services[@]} -gt 0 ] || services=("${IMAGES_SERVICES[@]}")
  for s in "${services[@]}"; do args+=(-p "$s"); done
  images_log "cargo build --release ${args[*]}"
  (cd "$IMAGES_ROOT" && cargo build --release --locked "${args[@]}" --bins)
  ctx=$(mktemp -d "${TMPDIR:-/tmp}/images-ctx.XXXXXX")
  mkdir -p "$ctx/target/release" "$ctx/deploy/state"
  local target=${CARGO_TARGET_DIR:-$IMAGES_ROOT/target}
  for s in "${services[@]}"; do
    # As the Dockerfile's build stage does (CARGO_PROFILE_RELEASE_STRIP=symbols).
    strip --strip-all -o "$ctx/target/release/$s" "$target/release/$s"
    images_log "podman build $IMAGES_PREFIX/$s:$IMAGES_TAG"
    podman build -q -f "$IMAGES_ROOT/deploy/Dockerfile" --build-arg SERVICE="$s" --build-arg BINARY_FROM=host \
      --build-arg RUNTIME_BASE="$IMAGES_BASE" -t "$IMAGES_PREFIX/$s:$IMAGES_TAG" "$ctx" >/dev/null
  done
  rm -rf "$ctx"
}

# images_sizes: one line per image: name, size in bytes (uncompressed, base included), the base's size.
images_sizes() {
  local s base
  base=$(podman image inspect --format '{{.Size}}' "$IMAGES_BASE")
  for s in "${IMAGES_SERVICES[@]}"; do
    printf '%s %s %s\n' "$s" "$(podman image inspect --format '{{.Size}}' "$IMAGES_PREFIX/$s:$IMAGES_TAG")" "$base"
  done
}

# images_cleanup: removes the test containers and volumes left behind (cts-test-*), e.g. after a killed run.
images_cleanup() {
  command -v podman >/dev/null || return 0
  local c v
  c=$(podman ps --all --filter name=cts-test- --format '{{.Names}}' 2>/dev/null) || true
  [ -z "$c" ] || podman rm --force --time 5 $c >/dev/null 2>&1 || true
  v=$(podman volume ls --filter name=cts-test- --format '{{.Name}}' 2>/dev/null) || true
  [ -z "$v" ] || podman volume rm --force $v >/dev/null 2>&1 || true
}
