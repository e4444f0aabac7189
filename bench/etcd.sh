#!/usr/bin/env bash
# Run throughput with the state in etcd next to the SQLite journal, in one run: N hosts
# over the local transport (default 1000), one no-op step each, limit 20.
#   sqlite: one controller, --state DIR (the SQLite journal).
#   etcd:   three controllers (`run` + two `run --join`) on a 3-member etcd cluster of
#           three processes on loopback.
# Prints tasks/s of each and the ratio etcd/sqlite.
# Usage: bench/etcd.sh [HOSTS]     (needs etcd: Debian etcd-server)
#        FLEETBOOK_BIN=target/debug/fleetbook bench/etcd.sh   (that binary, no release build)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-1000}"
if [ -n "${FLEETBOOK_BIN:-}" ]; then
  BIN="$(realpath "$FLEETBOOK_BIN")"
else
  cargo build --release --quiet
  BIN="$PWD/target/release/fleetbook"
fi
DIR="$(mktemp -d /tmp/fbetcd.XXXX)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
CLIENT=() PEER=() INITIAL=""
for i in 1 2 3; do
  CLIENT+=("$(free_port)"); PEER+=("$(free_port)")
  INITIAL="${INITIAL:+$INITIAL,}b$i=http://127.0.0.1:${PEER[$((i - 1))]}"
done
for i in 1 2 3; do
  c="${CLIENT[$((i - 1))]}" p="${PEER[$((i - 1))]}"
  etcd --name "b$i" --data-dir "$DIR/etcd$i" \
    --listen-client-urls "http://127.0.0.1:$c" --advertise-client-urls "http://127.0.0.1:$c" \
    --listen-peer-urls "http://127.0.0.1:$p" --initial-advertise-peer-urls "http://127.0.0.1:$p" \
    --initial-cluster "$INITIAL" --initial-cluster-token "fbbench$$" \
    --initial-cluster-state new >"$DIR/etcd$i.log" 2>&1 &
  PIDS+=($!)
done
STATE="etcd://127.0.0.1:${CLIENT[0]},127.0.0.1:${CLIENT[1]},127.0.0.1:${CLIENT[2]}/bench"
until "$BIN" runs --state "$STATE" >/dev/null 2>&1; do sleep 0.2; done

{
  echo "[web]"
  for i in $(seq 1 "$N"); do echo "h$i ansible_connection=local"; done
} > "$DIR/hosts"
cat > "$DIR/rb.rhai" <<'RB'
let rb = runbook("bench");
rb.limit("web", 20);
rb.step("noop", |h| h.run("true"));
rb
RB

seconds() { date +%s.%N; }

t0=$(seconds)
"$BIN" run "$DIR/rb.rhai" -i "$DIR/hosts" --yes --state "$DIR/sqlite" >/dev/null 2>&1
t1=$(seconds)
sqlite=$(echo "$N / ($t1 - $t0)" | bc -l)

t0=$(seconds)
"$BIN" run "$DIR/rb.rhai" -i "$DIR/hosts" --yes --state "$STATE" >/dev/null 2>"$DIR/a.err" &
A=$!
until id=$("$BIN" runs --format json --state "$STATE" | python3 -c 'import json,sys; r=json.load(sys.stdin); print(r[0]["id"] if r else "")') && [ -n "$id" ]; do sleep 0.1; done
"$BIN" run --join "$id" --yes --state "$STATE" >/dev/null 2>"$DIR/b.err" &
B=$!
"$BIN" run --join "$id" --yes --state "$STATE" >/dev/null 2>"$DIR/c.err" &
C=$!
wait "$A" "$B" "$C"
t1=$(seconds)
etcd=$(echo "$N / ($t1 - $t0)" | bc -l)

printf 'hosts %d, limit 20, one no-op step each\n' "$N"
printf 'sqlite, 1 controller:          %8.1f tasks/s\n' "$sqlite"
printf 'etcd 3 members, 3 controllers: %8.1f tasks/s\n' "$etcd"
printf 'ratio etcd/sqlite:             %8.2f\n' "$(echo "$etcd / $sqlite" | bc -l)"
