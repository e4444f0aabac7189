#!/usr/bin/env bash
# fleetbook next to Ansible, pyinfra and the raw OpenSSH floor, one command:
#   bench/run.sh [N...]            (default: 10 50 100; run as root, needs openssh-server)
# Starts max(N) real sshd hosts on loopback, installs ansible-core and pyinfra from PyPI into
# bench/.venv (once), then for each N runs the same workload (3 steps per host) with every
# tool, both key exchanges, all hosts at once and rolling with a limit of 5, alternating
# tools run by run, and prints one table of medians (see bench/README.md).
#   BENCH_REPS=5 bench/run.sh 10   more repetitions (default 3)
#   BENCH_BUDGET=SECONDS           per N, no repetition after the first past this (default
#                                  120, so `bench/run.sh 10` takes under 3 minutes; 0: none)
#   BENCH_OUT=FILE                 also write the table to FILE
#   BENCH_ONLY=roll,curve25519,fleetbook,kept,warm   only these tools, modes, key exchanges
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
[ "$(id -u)" = 0 ] || { echo "bench/run.sh: run as root (sshd hosts on loopback, root login)" >&2; exit 2; }
[ $# -gt 0 ] || set -- 10 50 100
max=0
for n in "$@"; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "bench/run.sh: N must be a positive number, not '$n'" >&2; exit 2; }
  [ "$n" -gt "$max" ] && max="$n"
done

VENV="$PWD/bench/.venv"
if [ ! -x "$VENV/bin/ansible-playbook" ] || [ ! -x "$VENV/bin/pyinfra" ]; then
  echo "bench: installing ansible-core and pyinfra into $VENV" >&2
  python3 -m venv --clear "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check ansible-core pyinfra
fi
cargo build --release --quiet --bin fleetbook
BIN="$PWD/target/release/fleetbook"

# Every master, sshd and client of a large N at once: more descriptors than the default.
bench_limits
DIR="$(mktemp -d /tmp/fbb.XXXX)"
cleanup() {
  bench_hosts_stop
  rm -rf "$DIR"
}
trap cleanup EXIT
bench_hosts_start "$max" "$DIR"
python3 bench/drive.py --dir "$DIR" --bin "$BIN" --venv "$VENV" \
  --reps "${BENCH_REPS:-3}" --budget "${BENCH_BUDGET:-120}" ${BENCH_OUT:+--out "$BENCH_OUT"} \
  ${BENCH_ONLY:+--only "$BENCH_ONLY"} "$@"
