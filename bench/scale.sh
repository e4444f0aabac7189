#!/usr/bin/env bash
# Scale check: N loopback sshd hosts (one sshd each), one `fleetbook run` of 3 steps per host
# with every host at once; fails unless every host-step ran and no connection was refused.
#   bench/scale.sh [N...]          (default: 200 500; run as root, needs openssh-server)
#   SCALE_KEX=curve25519-sha256    --ssh-kex for fleetbook (default: the ssh config's)
#   SCALE_BIN=PATH                 a fleetbook binary to use instead of building one
# Prints wall time, CPU per host-step and the exit tail per N (see bench/README.md). Not a
# timed test: nothing checks a time.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
[ "$(id -u)" = 0 ] || { echo "bench/scale.sh: run as root (sshd hosts on loopback, root login)" >&2; exit 2; }
[ $# -gt 0 ] || set -- 200 500
max=0
for n in "$@"; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "bench/scale.sh: N must be a positive number, not '$n'" >&2; exit 2; }
  [ "$n" -gt "$max" ] && max="$n"
done
if [ -n "${SCALE_BIN:-}" ]; then
  BIN="$SCALE_BIN"
else
  cargo build --release --quiet --bin fleetbook
  BIN="$PWD/target/release/fleetbook"
fi
DIR="$(mktemp -d /tmp/fbs.XXXX)"
cleanup() {
  bench_hosts_stop
  rm -rf "$DIR"
}
trap cleanup EXIT
bench_hosts_start "$max" "$DIR"
python3 bench/scale.py --dir "$DIR" --bin "$BIN" --kex "${SCALE_KEX:-}" "$@"
