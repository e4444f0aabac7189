#!/usr/bin/env bash
# fleetbook over SSH next to the raw floor, in one quick pass: N loopback sshd hosts
# (default 20), 3 trivial steps per host. The full side-by-side benchmark is bench/run.sh.
#   fleetbook: `fleetbook run` of a 3-step runbook, no limits (all hosts in parallel).
#   floor:     per host in parallel, a ControlMaster connection and 3 `ssh` commands over it.
# Usage: bench/ssh.sh [HOSTS]     (needs openssh-server; run as root)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
N="${1:-20}"
cargo build --release --quiet --bin fleetbook
BIN="$PWD/target/release/fleetbook"
DIR="$(mktemp -d /tmp/fbbench.XXXX)"
cleanup() {
  bench_hosts_stop
  rm -rf "$DIR"
}
trap cleanup EXIT
bench_hosts_start "$N" "$DIR"
cat > "$DIR/rb.rhai" <<'RB'
let rb = runbook("bench");
rb.step("one", |h| h.run("true"));
rb.step("two", |h| h.run("true"));
rb.step("three", |h| h.run("true"));
rb
RB

now() { date +%s.%N; }
t0=$(now)
"$BIN" run "$DIR/rb.rhai" -i "$DIR/hosts" --yes --state "$DIR/state" --ssh-config "$DIR/ssh_config" >/dev/null 2>"$DIR/fleetbook.log" || { cat "$DIR/fleetbook.log"; exit 1; }
t1=$(now)
FLOOR=()
for i in $(seq 1 "$N"); do
  (
    addr="$(bench_addr "$i")"
    ssh -F "$DIR/ssh_config" -o ControlMaster=yes -o ControlPersist=30 -S "$DIR/cm-$i" -fN "$addr"
    for s in 1 2 3; do ssh -F "$DIR/ssh_config" -S "$DIR/cm-$i" "$addr" true; done
  ) &
  FLOOR+=($!)
done
wait "${FLOOR[@]}"
t2=$(now)
echo "hosts: $N, steps per host: 3, cores: $(nproc)"
awk -v a="$t0" -v b="$t1" 'BEGIN { printf "fleetbook run (plan + connect + 3 steps + recap): %.3f s\n", b - a }'
awk -v a="$t1" -v b="$t2" 'BEGIN { printf "raw floor (ssh ControlMaster per host + 3 commands, parallel): %.3f s\n", b - a }'
