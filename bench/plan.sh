#!/usr/bin/env bash
# Plans a generated 10,000-host, 8-step runbook; prints wall time and peak memory.
# Usage: bench/plan.sh [HOSTS]
set -euo pipefail
cd "$(dirname "$0")/.."
FLEETBOOK_BENCH_HOSTS="${1:-10000}" cargo bench --bench plan 2>/dev/null
