#!/usr/bin/env bash
# A real fleet to run runbooks on: Debian bookworm hosts in Docker containers, with systemd,
# sshd (host keys generated per host and pinned), cron, puppet-agent, and demo packages from
# a local apt repository baked into the image.
#
#   fleet.sh image            build the host image (cached by a content key)
#   fleet.sh up [NAME]        start a fleet: 3 controllers, 6 computes, 3 storage hosts in 2
#                             replication groups; writes NAME/hosts.ini and NAME/ssh_config
#   fleet.sh down [NAME]      remove its containers and network
#   fleet.sh exec NAME HOST CMD...   run a command in a host (docker exec)
#
# NAME is a directory for the fleet's inventory, keys and ssh config (default: ./demo-fleet).
# The image needs debootstrap and dpkg-dev (apt-get install debootstrap dpkg-dev).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
CACHE="${FLEETBOOK_FLEET_CACHE:-/var/tmp/fleetbook-fleet}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
INCLUDE="openssh-server,sudo,procps,cron,systemd,systemd-sysv,puppet-agent,curl,iproute2"
# The image changes when this script or the demo packages change.
KEY="$( { cat "$0"; find "$HERE/packages" -type f | LC_ALL=C sort | xargs cat; } | sha256sum | cut -c1-12)"
IMAGE="fleetbook-fleet:$KEY"

log() { echo "fleet: $*" >&2; }

# Builds fleetbook-demo VERSION into OUT (a .deb): a service whose running version can be
# asked (/run/fleetbook-demo/running holds "VERSION PID"; `fleetbook-demo --version` tells the
# installed one). Its postinst fails on purpose where /etc/fleetbook-demo/fail-postinst exists.
build_demo() {
  local version="$1" out="$2" d
  d="$(mktemp -d)"
  mkdir -p "$d/DEBIAN" "$d/usr/bin" "$d/lib/systemd/system"
  sed "s/@VERSION@/$version/" "$HERE/packages/fleetbook-demo/fleetbook-demo" > "$d/usr/bin/fleetbook-demo"
  chmod 755 "$d/usr/bin/fleetbook-demo"
  cp "$HERE/packages/fleetbook-demo/fleetbook-demo.service" "$d/lib/systemd/system/"
  sed "s/@VERSION@/$version/g" "$HERE/packages/fleetbook-demo/postinst" > "$d/DEBIAN/postinst"
  chmod 755 "$d/DEBIAN/postinst"
  cat > "$d/DEBIAN/control" <<CTL
Package: fleetbook-demo
Version: $version
Architecture: all
Maintainer: fleetbook <dev@fleetbook.invalid>
Description: fleetbook demo service
 A long-running service that reports the version it runs.
CTL
  dpkg-deb --root-owner-group --build "$d" "$out" >/dev/null
  rm -rf "$d"
}

build_repo() {
  local repo="$1"
  rm -rf "$repo" && mkdir -p "$repo"
  for v in 1.0 2.0; do build_demo "$v" "$repo/fleetbook-demo_${v}_all.deb"; done
  (cd "$repo" && dpkg-scanpackages --multiversion . /dev/null > Packages 2>/dev/null)
}

cmd_image() {
  if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    log "image $IMAGE is cached"
    echo "$IMAGE"
    return
  fi
  command -v debootstrap >/dev/null && command -v dpkg-scanpackages >/dev/null || {
    log "needs debootstrap and dpkg-dev: apt-get install debootstrap dpkg-dev"; exit 1; }
  mkdir -p "$CACHE"
  local base="$CACHE/base-bookworm" root="$CACHE/root-$KEY"
  if [ ! -e "$base/.done" ]; then
    log "debootstrap bookworm (about a minute)"
    rm -rf "$base"
    debootstrap --variant=minbase --include="$INCLUDE" bookworm "$base" "$MIRROR" > "$CACHE/debootstrap.log" 2>&1 \
      || { tail -20 "$CACHE/debootstrap.log" >&2; exit 1; }
    touch "$base/.done"
  fi
  rm -rf "$root"
  cp -a "$base" "$root"
  build_repo "$root/srv/demo-repo"
  echo "deb [trusted=yes] file:/srv/demo-repo ./" > "$root/etc/apt/sources.list.d/demo.list"
  chroot "$root" sh -c 'apt-get -qq update -o Dir::Etc::sourcelist=sources.list.d/demo.list -o Dir::Etc::sourceparts=- && DEBIAN_FRONTEND=noninteractive apt-get -qq install -y fleetbook-demo=1.0' >/dev/null
  # The main Debian sources are not reachable from the fleet: only the demo repository.
  rm -f "$root/etc/apt/sources.list" "$root/etc/apt/sources.list.d/debian.sources"
  # Each host makes its own host keys at first boot.
  rm -f "$root"/etc/ssh/ssh_host_*
  cat > "$root/etc/systemd/system/fleet-hostkeys.service" <<UNIT
[Unit]
Description=Generate this host's SSH host keys
Before=ssh.service
[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A
[Install]
WantedBy=multi-user.target
UNIT
  ln -sf /etc/systemd/system/fleet-hostkeys.service "$root/etc/systemd/system/multi-user.target.wants/fleet-hostkeys.service"
  mkdir -p "$root/root/.ssh" && chmod 700 "$root/root/.ssh"
  # A Punch-style deployed tree (seed 000): versioned binaries and the unit that runs them.
  for v in 6.4.4 6.4.5; do
    install -D -m 755 "$HERE/packages/punch/shiva-runner" "$root/data/opt/punch-binaries-$v/bin/shiva-runner"
  done
  cp "$HERE/packages/punch/shiva-runner.service" "$root/etc/systemd/system/"
  ln -sf /etc/systemd/system/shiva-runner.service "$root/etc/systemd/system/multi-user.target.wants/shiva-runner.service"
  # Masterless puppet: the manifest that converges a host to the demo service's 2.0.
  mkdir -p "$root/etc/puppet/code"
  cp "$HERE/packages/fleet.pp" "$root/etc/puppet/code/fleet.pp"
  rm -rf "$root/.done"
  log "importing $IMAGE"
  tar -C "$root" -c . | docker import --change 'CMD ["/sbin/init"]' - "$IMAGE" >/dev/null
  rm -rf "$root"
  echo "$IMAGE"
}

# The layout: name, group, replication group.
LAYOUT="ctl1 controller -
ctl2 controller -
ctl3 controller -
cmp1 compute -
cmp2 compute -
cmp3 compute -
cmp4 compute -
cmp5 compute -
cmp6 compute -
st1 storage rg1
st2 storage rg1
st3 storage rg2"

fleet_id() { basename "$(cd "$1" && pwd)" | tr -c 'a-zA-Z0-9\n' '-' ; }

cmd_up() {
  local dir="${1:-$PWD/demo-fleet}"
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  cmd_image >/dev/null
  local id net
  id="fbf-$(echo "$dir" | sha256sum | cut -c1-8)"
  net="$id-net"
  echo "$id" > "$dir/fleet-id"
  docker network create --label "fleetbook-fleet=$id" "$net" >/dev/null
  [ -e "$dir/client_key" ] || ssh-keygen -q -t ed25519 -N "" -f "$dir/client_key"
  while read -r name group rg; do
    docker run -d --name "$id-$name" --hostname "$name" --network "$net" \
      --label "fleetbook-fleet=$id" --stop-signal SIGRTMIN+3 \
      -v /sys/fs/cgroup:/sys/fs/cgroup:ro --tmpfs /run --tmpfs /run/lock "$IMAGE" >/dev/null
  done <<< "$LAYOUT"
  : > "$dir/known_hosts"
  {
    local current=""
    while read -r name group rg; do
      local c="$id-$name" ip i
      for i in $(seq 1 300); do
        docker exec "$c" systemctl is-active --quiet ssh 2>/dev/null && break
        sleep 0.1
      done
      docker exec "$c" systemctl is-active --quiet ssh || { log "sshd did not start on $name"; exit 1; }
      docker exec -i "$c" sh -c 'cat > /root/.ssh/authorized_keys && chmod 600 /root/.ssh/authorized_keys' < "$dir/client_key.pub"
      ip="$(docker inspect -f "{{(index .NetworkSettings.Networks \"$net\").IPAddress}}" "$c")"
      echo "$ip $(docker exec "$c" cat /etc/ssh/ssh_host_ed25519_key.pub | cut -d' ' -f1,2)" >> "$dir/known_hosts"
      if [ "$group" != "$current" ]; then echo "[$group]"; current="$group"; fi
      if [ "$rg" = "-" ]; then echo "$name ansible_host=$ip"; else echo "$name ansible_host=$ip replication_group=$rg"; fi
    done <<< "$LAYOUT"
    printf '\n[all:vars]\nansible_user=root\npkg_manager=apt\n'
  } > "$dir/hosts.ini"
  cat > "$dir/ssh_config" <<CFG
Host *
  User root
  IdentityFile $dir/client_key
  IdentitiesOnly yes
  UserKnownHostsFile $dir/known_hosts
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  BatchMode yes
  LogLevel ERROR
CFG
  log "fleet $id is up: inventory $dir/hosts.ini, ssh config $dir/ssh_config"
}

cmd_down() {
  local dir="${1:-$PWD/demo-fleet}" id
  [ -e "$dir/fleet-id" ] || { log "no fleet in $dir"; return 0; }
  id="$(cat "$dir/fleet-id")"
  docker ps -aq --filter "label=fleetbook-fleet=$id" | xargs -r docker rm -f >/dev/null
  docker network ls -q --filter "label=fleetbook-fleet=$id" | xargs -r docker network rm >/dev/null
  rm -f "$dir/fleet-id"
  log "fleet $id is down"
}

cmd_exec() {
  local dir="$1" host="$2"; shift 2
  docker exec "$(cat "$dir/fleet-id")-$host" "$@"
}

case "${1:-}" in
  image) cmd_image ;;
  up) shift; cmd_up "$@" ;;
  down) shift; cmd_down "$@" ;;
  exec) shift; cmd_exec "$@" ;;
  *) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
