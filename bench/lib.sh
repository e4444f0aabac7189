# Shared by the SSH benchmarks (sourced, not run): N real sshd hosts on loopback, one sshd
# per host, all on one port, each on its own 127.x.y.z address, root login by key.
#
#   bench_hosts_start N DIR   starts them and writes into DIR:
#     hosts            an INI inventory, group [web], h1..hN with ansible_host/ansible_port
#                      and fleetbook_lease_dir (DIR/lease/hI: one lease file per host)
#     ssh_config       an ssh config with the default key exchange (OpenSSH's own choice)
#     ssh_config_curve the same with KexAlgorithms curve25519-sha256
#     client_key, known_hosts, addrs (one address a line)
#   bench_hosts_stop          kills the sshds it started (by PID) and ends masters left in DIR
#
# Needs openssh-server and root (sshd's privilege separation, root login).

BENCH_PORT="${BENCH_PORT:-22122}"
BENCH_SSHD_PIDS=()
BENCH_DIR=""

# The address of host i (from 1): 250 hosts per 127.10.y.0/24.
bench_addr() { echo "127.10.$(($1 / 250)).$(($1 % 250 + 1))"; }

bench_hosts_start() {
  local n="$1" dir="$2" i addr
  BENCH_DIR="$dir"
  bench_limits
  mkdir -p /run/sshd
  ssh-keygen -q -t ed25519 -N "" -f "$dir/client_key"
  cp "$dir/client_key.pub" "$dir/authorized_keys"
  # One host key for every host: generating hundreds adds nothing to what is measured.
  ssh-keygen -q -t ed25519 -N "" -f "$dir/host_key"
  : >"$dir/known_hosts"
  : >"$dir/addrs"
  # Each host its own lease directory, as real hosts each have their own /run/lock: on one
  # machine they would all share one lease file, and N takes queue on its flock.
  {
    echo "[web]"
    for i in $(seq 1 "$n"); do
      mkdir -p "$dir/lease/h$i"
      echo "h$i ansible_host=$(bench_addr "$i") ansible_port=$BENCH_PORT fleetbook_lease_dir=$dir/lease/h$i"
    done
  } >"$dir/hosts"
  for i in $(seq 1 "$n"); do
    addr="$(bench_addr "$i")"
    echo "$addr" >>"$dir/addrs"
    echo "[$addr]:$BENCH_PORT $(cat "$dir/host_key.pub")" >>"$dir/known_hosts"
  done
  for i in $(seq 1 "$n"); do
    addr="$(bench_addr "$i")"
    cat >"$dir/sshd$i" <<CFG
Port $BENCH_PORT
ListenAddress $addr
HostKey $dir/host_key
AuthorizedKeysFile $dir/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitRootLogin yes
PidFile none
LogLevel ERROR
SetEnv SHLVL=1
CFG
    /usr/sbin/sshd -D -e -f "$dir/sshd$i" 2>>"$dir/sshd.log" &
    BENCH_SSHD_PIDS+=($!)
  done
  bench_ssh_config "$dir" >"$dir/ssh_config"
  { bench_ssh_config "$dir"; echo "  KexAlgorithms curve25519-sha256"; } >"$dir/ssh_config_curve"
  for i in $(seq 1 "$n"); do
    until (exec 3<>"/dev/tcp/$(bench_addr "$i")/$BENCH_PORT") 2>/dev/null; do sleep 0.02; done
  done
}

# Hundreds of sshds, masters and clients at once: every descriptor and process the hard
# limits allow (a shell's soft limit is often 1,024 descriptors; N=500 needs more in the
# tools that hold a connection per host, and each sshd keeps a few).
bench_limits() {
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  ulimit -u "$(ulimit -Hu)" 2>/dev/null || true
}

bench_ssh_config() {
  cat <<CFG
Host *
  User root
  Port $BENCH_PORT
  IdentityFile $1/client_key
  IdentitiesOnly yes
  UserKnownHostsFile $1/known_hosts
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  LogLevel ERROR
  BatchMode yes
CFG
}

bench_hosts_stop() {
  local p s
  for p in "${BENCH_SSHD_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ -n "$BENCH_DIR" ]; then
    for s in "$BENCH_DIR"/cm-*; do
      [ -S "$s" ] && ssh -S "$s" -O exit x >/dev/null 2>&1 || true
    done
  fi
  for p in "${BENCH_SSHD_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
