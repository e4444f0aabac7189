#!/usr/bin/env bash
# The controller's own cost per task: 1,000 hosts over the local transport
# (`ansible_connection=local`), a few steps each, `rb.limit("*", 50)`, the SQLite journal.
#   bench/local.sh [HOSTS] [STEPS]      (default: 1000 hosts, 4 steps)
#   BENCH_REPS=5 bench/local.sh         more repetitions (default 3)
#   BENCH_BIN=PATH                      this fleetbook binary (no build)
#   BENCH_PERF=FILE                     also record a CPU profile of the last `true` run
#                                       (perf record -e cpu-clock -g) into FILE
# Two runbooks: `noop` steps run no command (`|h| ()`: all the time is fleetbook's), `true`
# steps run `true` through the local transport (`sh -c true` per task: the children's CPU is
# shown apart). Each run is measured by bench/measure.py: wall time, fleetbook's own CPU
# (all its threads) and its children's. Prints medians with min–max, per task.
set -euo pipefail
cd "$(dirname "$0")/.."
hosts="${1:-1000}"
steps="${2:-4}"
reps="${BENCH_REPS:-3}"
for n in "$hosts" "$steps" "$reps"; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "bench/local.sh: expected positive numbers, not '$n'" >&2; exit 2; }
done
if [ -z "${BENCH_BIN:-}" ]; then
  cargo build --release --quiet --bin fleetbook
fi
BIN="${BENCH_BIN:-$PWD/target/release/fleetbook}"
DIR="$(mktemp -d /tmp/fbl.XXXX)"
trap 'rm -rf "$DIR"' EXIT

{
  echo "[fleet]"
  for i in $(seq -w 1 "$hosts"); do echo "h$i ansible_connection=local"; done
} >"$DIR/hosts"
for kind in noop true; do
  {
    echo "let rb = runbook(\"local-$kind\");"
    echo 'rb.limit("*", 50);'
    for s in $(seq 1 "$steps"); do
      if [ "$kind" = noop ]; then
        echo "rb.step(\"s$s\", |h| ());"
      else
        echo "rb.step(\"s$s\", |h| h.run(\"true\"));"
      fi
    done
    echo "rb"
  } >"$DIR/rb_$kind.rhai"
done

# One measured run: prints "wall own children" in seconds; each run has a fresh journal.
one() {
  local kind="$1" rep="$2" state="$DIR/state-$1-$2"
  local cmd=("$BIN" run "$DIR/rb_$kind.rhai" -i "$DIR/hosts" --yes --state "$state")
  if [ -n "${BENCH_PERF:-}" ] && [ "$kind" = true ] && [ "$rep" = "$reps" ]; then
    cmd=(perf record -e cpu-clock -F 2000 -g -o "$BENCH_PERF" -- "${cmd[@]}")
  fi
  python3 bench/measure.py "$DIR/log" -- "${cmd[@]}" |
    python3 -c 'import json,sys; m=json.load(sys.stdin); assert m["code"]==0, m; print(m["wall"], m["own"], m["children"])'
}

tasks=$((hosts * steps))
echo "local transport: $hosts hosts x $steps steps = $tasks tasks, limit 50, SQLite journal, $reps repetitions"
echo "machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg) before"
for kind in noop true; do
  : >"$DIR/$kind.txt"
  for rep in $(seq 1 "$reps"); do one "$kind" "$rep" >>"$DIR/$kind.txt"; done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$DIR" "$tasks" <<'EOF'
import statistics, sys
d, tasks = sys.argv[1], int(sys.argv[2])
print(f"| steps | wall s | ms per task: wall | own CPU | children CPU |")
print(f"|---|---:|---:|---:|---:|")
for kind in ("noop", "true"):
    runs = [list(map(float, l.split())) for l in open(f"{d}/{kind}.txt")]
    def col(i):
        xs = [r[i] for r in runs]
        return statistics.median(xs), min(xs), max(xs)
    def per(i):
        m, lo, hi = col(i)
        return f"{1000*m/tasks:.3f} ({1000*lo/tasks:.3f}–{1000*hi/tasks:.3f})"
    w = col(0)
    print(f"| {kind} | {w[0]:.2f} ({w[1]:.2f}–{w[2]:.2f}) | {per(0)} | {per(1)} | {per(2)} |")
print("controller overhead per task: fleetbook's own CPU per task (target under 0.5 ms)")
EOF
