# shellcheck shell=bash
# The local backend stack, shared by scripts/test and the demo: installs what is missing (Debian packages,
# a Python venv), starts real servers on 127.0.0.1 on free ports in a temp dir, and stops only what it started.
#
# Use: source this file, call stack_install, then stack_start_influxdb / stack_start_pushgateway /
# stack_start_arcadedb, and `trap stack_stop EXIT`. Each start function exports the address for the tests.

STACK_ROOT=${STACK_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
STACK_VENV=${STACK_VENV:-$STACK_ROOT/.venv}
STACK_PIDS=()
STACK_TMP=""

stack_log() { printf '[stack] %s\n' "$*" >&2; }

stack_as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    stack_log "need root for: $*"; return 1; fi
}

# Debian packages: InfluxDB 1.x and Prometheus Pushgateway (no recommends: they pull in hundreds of MB).
stack_install_debian() {
  local missing=()
  command -v influxd >/dev/null || missing+=(influxdb influxdb-client)
  command -v prometheus-pushgateway >/dev/null || missing+=(prometheus-pushgateway)
  command -v curl >/dev/null || missing+=(curl)
  # python3 -m venv needs ensurepip, which Debian ships in python3-venv.
  command -v python3 >/dev/null && python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3 python3-venv)
  if [ ${#missing[@]} -gt 0 ]; then
    stack_log "installing Debian packages: ${missing[*]}"
    stack_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    stack_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# Python venv with the Bolt server, CloudEvents SDK, Chaos Toolkit and pytest; reinstalled when requirements change.
stack_install_python() {
  local req="$STACK_ROOT/tests/requirements.txt" stamp="$STACK_VENV/.requirements.sha256" sum
  sum=$(cat "$req" "$STACK_ROOT"/chaos-sink/control/pyproject.toml 2>/dev/null | sha256sum | cut -d' ' -f1)
  if [ ! -x "$STACK_VENV/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$sum" ]; then
    stack_log "creating Python venv in $STACK_VENV"
    python3 -m venv "$STACK_VENV"
    "$STACK_VENV/bin/pip" install -q --disable-pip-version-check -r "$req"
    if [ -f "$STACK_ROOT/chaos-sink/control/pyproject.toml" ]; then
      "$STACK_VENV/bin/pip" install -q --disable-pip-version-check -e "$STACK_ROOT/chaos-sink/control"
    fi
    echo "$sum" >"$stamp"
  fi
  export TEST_PYTHON="$STACK_VENV/bin/python"
}

# Manifest validation tools (tests/manifests): docker-compose v1 from Debian to check deploy/compose.yaml offline
# (no recommends: they would pull in docker.io, containerd and runc), and the npm packages pinned by
# tests/manifests/package-lock.json (npm ci into tests/manifests/node_modules, reinstalled when the lock changes).
# kubectl (kubectl kustomize) comes with the machine image; kubernetes-validate with the venv.
stack_install_manifest_tools() {
  local dir="$STACK_ROOT/tests/manifests" stamp sum
  if ! command -v docker-compose >/dev/null; then
    stack_log "installing Debian package docker-compose (--no-install-recommends)"
    stack_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    stack_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose >/dev/null
  fi
  command -v kubectl >/dev/null || stack_log "kubectl is missing: the manifest tests need kubectl kustomize"
  if [ -f "$dir/package-lock.json" ]; then
    if ! command -v npm >/dev/null; then
      stack_log "npm is missing: the manifest tests need Node.js and npm"
    else
      stamp="$dir/node_modules/.package-lock.sha256"
      sum=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
      if [ "$(cat "$stamp" 2>/dev/null)" != "$sum" ]; then
        stack_log "installing tests/manifests node modules (npm ci)"
        (cd "$dir" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >/dev/null)
        echo "$sum" >"$stamp"
      fi
    fi
  fi
}

stack_install() {
  stack_install_debian
  stack_install_python
}

# stack_tmp_init: creates the one temp dir of this stack (STACK_TMP), removed by stack_stop. Call it in the
# current shell, not in $(...): a command substitution's assignment would be lost with its subshell.
stack_tmp_init() {
  if [ -z "$STACK_TMP" ]; then STACK_TMP=$(mktemp -d "${TMPDIR:-/tmp}/cts-stack.XXXXXX"); fi
}

# stack_tmp: prints the temp dir (after stack_tmp_init).
stack_tmp() {
  stack_tmp_init
  echo "$STACK_TMP"
}

stack_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# stack_wait NAME URL [SECONDS]: poll until URL answers 2xx.
stack_wait() {
  local name=$1 url=$2 limit=${3:-60} i=0
  until curl -sf -o /dev/null "$url"; do
    i=$((i + 1))
    if [ $i -gt $((limit * 5)) ]; then stack_log "$name did not become ready at $url"; return 1; fi
    sleep 0.2
  done
  stack_log "$name ready at $url"
}

stack_start_influxdb() {
  local t port rpc
  stack_tmp_init; t=$STACK_TMP; port=$(stack_free_port); rpc=$(stack_free_port)
  mkdir -p "$t/influxdb"
  cat >"$t/influxdb/influxdb.conf" <<CONF
reporting-enabled = false
bind-address = "127.0.0.1:$rpc"
[meta]
  dir = "$t/influxdb/meta"
[data]
  dir = "$t/influxdb/data"
  wal-dir = "$t/influxdb/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[http]
  bind-address = "127.0.0.1:$port"
  auth-enabled = false
  log-enabled = false
CONF
  influxd -config "$t/influxdb/influxdb.conf" >"$t/influxdb.log" 2>&1 &
  STACK_PIDS+=($!)
  stack_wait InfluxDB "http://127.0.0.1:$port/ping" 30
  export TEST_INFLUX_URL="http://127.0.0.1:$port"
}

stack_start_pushgateway() {
  local t port
  stack_tmp_init; t=$STACK_TMP; port=$(stack_free_port)
  prometheus-pushgateway --web.listen-address="127.0.0.1:$port" --web.enable-admin-api \
    --persistence.file="$t/pushgateway.store" >"$t/pushgateway.log" 2>&1 &
  STACK_PIDS+=($!)
  stack_wait Pushgateway "http://127.0.0.1:$port/-/ready" 30
  export TEST_PUSHGATEWAY_URL="http://127.0.0.1:$port"
}

# ArcadeDB with its Bolt plugin: the Bolt/Cypher server the Neo4j tests run against.
stack_start_arcadedb() {
  local t http bolt home
  stack_tmp_init; t=$STACK_TMP; http=$(stack_free_port); bolt=$(stack_free_port)
  home=$("$STACK_VENV/bin/python" -c 'import importlib.util as u,os;print(os.path.dirname(u.find_spec("arcadedb_embedded").origin))')
  # Started from its temp dir: ArcadeDB writes log/ into the working directory.
  (cd "$t" && exec "$home/jre/bin/java" -Xmx"${ARCADEDB_HEAP:-768m}" -cp "$home/jars/*" \
    -Darcadedb.server.rootPath="$t/arcadedb" -Darcadedb.server.rootPassword=playwithdata \
    -Darcadedb.server.httpIncomingHost=127.0.0.1 -Darcadedb.server.httpIncomingPort="$http" \
    -Darcadedb.server.plugins=Bolt:com.arcadedb.bolt.BoltProtocolPlugin \
    -Darcadedb.bolt.host=127.0.0.1 -Darcadedb.bolt.port="$bolt" \
    -Darcadedb.server.defaultDatabases='neo4j[root]' \
    com.arcadedb.server.ArcadeDBServer >"$t/arcadedb.log" 2>&1) &
  STACK_PIDS+=($!)
  stack_wait ArcadeDB "http://127.0.0.1:$http/api/v1/ready" 90
  export TEST_BOLT_URI="bolt://127.0.0.1:$bolt" TEST_BOLT_USER=root TEST_BOLT_PASSWORD=playwithdata
  export TEST_ARCADEDB_HTTP="http://127.0.0.1:$http"
}

stack_stop() {
  local pid
  for pid in "${STACK_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${STACK_PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  STACK_PIDS=()
  if [ -n "$STACK_TMP" ] && [ -z "${STACK_KEEP:-}" ]; then rm -rf "$STACK_TMP"; fi
}
