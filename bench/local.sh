#!/usr/bin/env bash
# Controller overhead without SSH: HOSTS hosts over the local transport
# (ansible_connection=local), 3 no-op steps each (`true`), a limit of LIMIT hosts at a time.
# Prints wall time and fleetbook's own CPU per task (its children, the `sh -c true`s, apart).
#   bench/local.sh [HOSTS] [LIMIT]       (default: 1000 50)
#   LOCAL_BIN=PATH                       a fleetbook binary to use instead of building one
#   LOCAL_PERF=FILE                      also record a CPU profile (perf record -g) into FILE
set -euo pipefail
cd "$(dirname "$0")/.."
HOSTS="${1:-1000}" LIMIT="${2:-50}"
if [ -n "${LOCAL_BIN:-}" ]; then
  BIN="$LOCAL_BIN"
else
  cargo build --release --quiet --bin fleetbook
  BIN="$PWD/target/release/fleetbook"
fi
DIR="$(mktemp -d /tmp/fbl.XXXX)"
trap 'rm -rf "$DIR"' EXIT
{
  echo "[web]"
  for i in $(seq 1 "$HOSTS"); do echo "h$i ansible_connection=local"; done
} >"$DIR/hosts"
cat >"$DIR/rb.rhai" <<RB
let rb = runbook("local");
rb.limit("*", $LIMIT);
rb.step("s1", |h| h.run("true"));
rb.step("s2", |h| h.run("true"));
rb.step("s3", |h| h.run("true"));
rb
RB
cmd=("$BIN" run "$DIR/rb.rhai" -i "$DIR/hosts" --yes --state "$DIR/state")
if [ -n "${LOCAL_PERF:-}" ]; then
  cmd=(perf record -e cpu-clock -F 2000 -g -o "$LOCAL_PERF" -- "${cmd[@]}")
fi
out="$(python3 bench/measure.py "$DIR/log" -- "${cmd[@]}")" || { cat "$DIR/log"; exit 1; }
python3 - "$out" "$HOSTS" <<'PY'
import json, sys
m, hosts = json.loads(sys.argv[1]), int(sys.argv[2])
if m["code"] != 0:
    sys.exit(f"fleetbook exited {m['code']}")
tasks = hosts * 3
print(f"{hosts} hosts × 3 steps over the local transport: {m['wall']:.2f} s, "
      f"own CPU {m['own'] * 1000 / tasks:.3f} ms per task, children {m['children'] * 1000 / tasks:.3f} ms per task")
PY
