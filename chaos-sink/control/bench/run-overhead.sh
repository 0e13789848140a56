#!/usr/bin/env bash
# Overhead benchmark of the chaostoolkit-cloudevents control (not part of the tests).
#
#   bash chaos-sink/control/bench/run-overhead.sh [overhead.py options, e.g. --repeats 7 --chaos-sink auto]
#
# Builds a separate venv in target/bench-venv (Chaos Toolkit, chaosdb, chaostoolkit-prometheus,
# this control, pyinstrument), so the test venv stays lean; starts a real InfluxDB 1.x and a
# Pushgateway on 127.0.0.1 with the project's stack functions; runs overhead.py; stops them.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
cd "$ROOT"
# shellcheck source=../../../scripts/lib/stack.sh
source scripts/lib/stack.sh
trap stack_stop EXIT

BENCH_VENV=${BENCH_VENV:-$ROOT/target/bench-venv}
REQS=("chaostoolkit>=1.19" "chaostoolkit-lib>=1.44" "chaosdb==0.2.12" "chaostoolkit-prometheus==0.6.0"
  "logzero" "pyinstrument")
# The control is installed as a user would (not editable), so pip byte-compiles it: with
# PYTHONDONTWRITEBYTECODE set (as on the build machines), an editable install would recompile its
# sources on every `chaos run` and the benchmark would measure the compiler, not the control.
stamp="$BENCH_VENV/.bench.sha256"
sum=$(printf '%s\n' "${REQS[@]}" | sha256sum | cut -d' ' -f1)
if [ ! -x "$BENCH_VENV/bin/chaos" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$sum" ]; then
  stack_log "creating the benchmark venv in $BENCH_VENV"
  python3 -m venv "$BENCH_VENV"
  "$BENCH_VENV/bin/pip" install -q --disable-pip-version-check "${REQS[@]}"
  echo "$sum" >"$stamp"
fi
src_sum=$(cd chaos-sink/control && find pyproject.toml src -type f -name '*.py' -o -name pyproject.toml | sort | xargs cat | sha256sum | cut -d' ' -f1)
# BENCH_KEEP_CONTROL=1 keeps whatever version is installed (to compare with an older one)
if [ -z "${BENCH_KEEP_CONTROL:-}" ] && [ "$(cat "$BENCH_VENV/.control.sha256" 2>/dev/null)" != "$src_sum" ]; then
  stack_log "installing chaos-sink/control into $BENCH_VENV"
  build=$(mktemp -d)
  cp -r chaos-sink/control/pyproject.toml chaos-sink/control/README.md chaos-sink/control/src "$build/"
  "$BENCH_VENV/bin/pip" install -q --disable-pip-version-check --no-deps --force-reinstall "$build"
  rm -rf "$build"
  echo "$src_sum" >"$BENCH_VENV/.control.sha256"
fi

stack_install_debian
stack_start_influxdb
stack_start_pushgateway

"$BENCH_VENV/bin/python" chaos-sink/control/bench/overhead.py \
  --chaos "$BENCH_VENV/bin/chaos" \
  --influx-url "$TEST_INFLUX_URL" --pushgateway-url "$TEST_PUSHGATEWAY_URL" "$@"
