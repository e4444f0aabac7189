#!/usr/bin/env bash
# Plans a generated 8-step runbook at two fleet sizes and prints, per host, the CPU and the
# memory planning took, and how linear it is (the larger size's per-host cost over the
# smaller's: 1.00 is linear).
# Usage: bench/plan.sh [SMALL [LARGE]]     (default: 10000 100000)
#   BENCH_HTML=1   also render the HTML plan (its time shows; planning numbers are unchanged)
set -euo pipefail
cd "$(dirname "$0")/.."
small="${1:-10000}"
large="${2:-100000}"
for n in "$small" "$large"; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "bench/plan.sh: sizes must be positive numbers, not '$n'" >&2; exit 2; }
done
cargo build --release --quiet --features plan-bench --bin fleetbook-plan-bench
bench="$PWD/target/release/fleetbook-plan-bench"
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
echo "machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
for n in "$small" "$large"; do
  # The default bound on recorded commands (64 MiB) is for runbooks that loop without end;
  # 100,000 hosts of this runbook record more than that.
  FLEETBOOK_BENCH_HOSTS="$n" FLEETBOOK_BENCH_HTML="${BENCH_HTML:-0}" \
    FLEETBOOK_MAX_PLAN_BYTES=$((1 << 30)) "$bench" | tee -a "$out"
  echo
done
awk '/^result / { n[++i] = $2; cpu[i] = $3; kib[i] = $4 }
END {
  for (j = 1; j <= i; j++)
    printf "%d hosts x 8 steps: %.1f µs CPU and %.1f KiB per host\n", n[j], cpu[j] * 1e6 / n[j], kib[j] / n[j]
  if (i == 2)
    printf "linearity (per-host cost at %d over at %d): CPU %.2f, memory %.2f\n", n[2], n[1], (cpu[2] / n[2]) / (cpu[1] / n[1]), (kib[2] / n[2]) / (kib[1] / n[1])
}' "$out"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
