#!/usr/bin/env bash
# fleetbook over SSH next to the raw floor, in one run: N loopback sshd hosts (default 20),
# 3 trivial steps per host.
#   fleetbook: `fleetbook run` of a 3-step runbook, no limits (all hosts in parallel).
#   floor:     per host in parallel, a ControlMaster connection and 3 `ssh` commands over it.
# Usage: bench/ssh.sh [HOSTS]     (needs openssh-server; run as root)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-20}"
PORT=22122
cargo build --release --quiet
BIN="$PWD/target/release/fleetbook"
DIR="$(mktemp -d /tmp/fbbench.XXXX)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for i in $(seq 1 "$N"); do ssh -F "$DIR/ssh_config" -S "$DIR/cm-$i" -O exit "h$i" >/dev/null 2>&1 || true; done
  rm -rf "$DIR"
}
trap cleanup EXIT
mkdir -p /run/sshd
ssh-keygen -q -t ed25519 -N "" -f "$DIR/client_key"
cp "$DIR/client_key.pub" "$DIR/authorized_keys"
: > "$DIR/known_hosts"
{
  echo "[web]"
  for i in $(seq 1 "$N"); do echo "h$i ansible_host=127.0.9.$((10 + i)) ansible_port=$PORT"; done
} > "$DIR/hosts"
for i in $(seq 1 "$N"); do
  addr="127.0.9.$((10 + i))"
  ssh-keygen -q -t ed25519 -N "" -f "$DIR/hk$i"
  echo "[$addr]:$PORT $(cat "$DIR/hk$i.pub")" >> "$DIR/known_hosts"
  cat > "$DIR/sshd$i" <<CFG
Port $PORT
ListenAddress $addr
HostKey $DIR/hk$i
AuthorizedKeysFile $DIR/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitRootLogin yes
LogLevel ERROR
SetEnv SHLVL=1
CFG
  /usr/sbin/sshd -D -e -f "$DIR/sshd$i" 2>/dev/null &
  PIDS+=($!)
done
cat > "$DIR/ssh_config" <<CFG
Host *
  User root
  IdentityFile $DIR/client_key
  IdentitiesOnly yes
  UserKnownHostsFile $DIR/known_hosts
  GlobalKnownHostsFile /dev/null
  LogLevel ERROR
  BatchMode yes
CFG
for i in $(seq 1 "$N"); do
  until (exec 3<>"/dev/tcp/127.0.9.$((10 + i))/$PORT") 2>/dev/null; do sleep 0.05; done
done
cat > "$DIR/rb.rhai" <<'RB'
let rb = runbook("bench");
rb.step("one", |h| h.run("true"));
rb.step("two", |h| h.run("true"));
rb.step("three", |h| h.run("true"));
rb
RB

now() { date +%s.%N; }
t0=$(now)
"$BIN" run "$DIR/rb.rhai" -i "$DIR/hosts" --yes --ssh-config "$DIR/ssh_config" >/dev/null 2>"$DIR/fleetbook.log" || { cat "$DIR/fleetbook.log"; exit 1; }
t1=$(now)
FLOOR=()
for i in $(seq 1 "$N"); do
  (
    addr="127.0.9.$((10 + i))"
    ssh -F "$DIR/ssh_config" -p "$PORT" -o ControlMaster=yes -o ControlPersist=30 -S "$DIR/cm-$i" -fN "$addr"
    for s in 1 2 3; do ssh -F "$DIR/ssh_config" -p "$PORT" -S "$DIR/cm-$i" "$addr" true; done
  ) &
  FLOOR+=($!)
done
wait "${FLOOR[@]}"
t2=$(now)
echo "hosts: $N, steps per host: 3, cores: $(nproc)"
awk -v a="$t0" -v b="$t1" 'BEGIN { printf "fleetbook run (plan + connect + 3 steps + recap): %.3f s\n", b - a }'
awk -v a="$t1" -v b="$t2" 'BEGIN { printf "raw floor (ssh ControlMaster per host + 3 commands, parallel): %.3f s\n", b - a }'
