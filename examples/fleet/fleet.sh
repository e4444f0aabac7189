#!/usr/bin/env bash
# A real fleet to run runbooks on: Debian bookworm hosts in Docker containers, with systemd,
# sshd (host keys generated per host and pinned), cron, puppet-agent, and demo packages from
# a local apt repository baked into the image.
#
#   fleet.sh image            build the host image (cached by a content key)
#   fleet.sh up [NAME]        start a fleet: 3 controllers, 6 computes, 3 storage hosts in 2
#                             replication groups; writes NAME/ssh_config, NAME/hosts.ini and
#                             an inventory per shipped runbook's groups (NAME/swh.ini,
#                             punch.ini, starlingx.ini, stratos.ini)
#   fleet.sh down [NAME]      remove its containers, network and volume
#   fleet.sh exec NAME HOST CMD...   run a command in a host (docker exec)
#   fleet.sh prune            remove fleets whose owner process is gone (test fleets left
#                             behind by a killed test run; fleets without an owner stay)
#
# NAME is a directory for the fleet's inventory, keys and ssh config (default: ./demo-fleet).
# FLEETBOOK_FLEET_OWNER=PID at `up` marks the fleet as owned by that process (for `prune`).
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

# Builds a StarlingX-style patch into OUT: a gzipped tar of its metadata (id, release,
# reboot-required, the host personalities it is for), the .deb files given, and for an
# in-service patch the restart script it runs after installing.
build_patch() { # ID RR(Y|N) PERSONALITIES OUT [DEB...]
  local id="$1" rr="$2" personalities="$3" out="$4" d
  shift 4
  d="$(mktemp -d)"
  printf 'id=%s\nrelease=19.09\nreboot_required=%s\npersonalities=%s\n' "$id" "$rr" "$personalities" > "$d/metadata"
  [ $# -eq 0 ] || cp "$@" "$d/"
  if [ "$rr" = N ]; then
    printf '#!/bin/sh\nsystemctl restart fleetbook-demo\n' > "$d/restart"
    chmod 755 "$d/restart"
  fi
  mkdir -p "$(dirname "$out")"
  tar -C "$d" -czf "$out" .
  rm -rf "$d"
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
  # The debootstrap tree is cached by what it includes.
  local base="$CACHE/base-bookworm-$(echo "$INCLUDE" | sha256sum | cut -c1-8)" root="$CACHE/root-$KEY"
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
  # StarlingX's platform CLIs (seed 002) over the shared /opt/platform volume, the patch agent
  # every host runs, an in-service patch that carries fleetbook-demo 2.0 and restarts the
  # service, and a reboot-required patch for storage and worker hosts.
  install -m 755 "$HERE/packages/starlingx/sw-patch" "$HERE/packages/starlingx/system" \
    "$HERE/packages/starlingx/fm" "$HERE/packages/starlingx/sw-patch-agent" "$root/usr/bin/"
  install -D -m 644 "$HERE/packages/starlingx/openrc" "$root/etc/platform/openrc"
  cp "$HERE/packages/starlingx/sw-patch-agent.service" "$root/etc/systemd/system/"
  ln -sf /etc/systemd/system/sw-patch-agent.service "$root/etc/systemd/system/multi-user.target.wants/sw-patch-agent.service"
  build_patch FB_PATCH_0001 N "" "$root/root/patches/FB_PATCH_0001.patch" "$root/srv/demo-repo/fleetbook-demo_2.0_all.deb"
  build_patch FB_PATCH_0002 Y "storage worker" "$root/root/patches/FB_PATCH_0002.patch"
  # Apache Stratos's REST API (seed 001): started on the manager host by `up`.
  install -m 755 "$HERE/packages/stratos/stratos-manager" "$root/usr/bin/"
  cp "$HERE/packages/stratos/stratos-manager.service" "$root/etc/systemd/system/"
  # jiocloud's key/value store (seed 004): `consul kv` over the shared /opt/platform volume.
  install -m 755 "$HERE/packages/jiocloud/consul" "$root/usr/bin/"
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

# The StarlingX host record of NAME in the shared /opt/platform (the first controller is the
# active one).
platform_host() {
  local c="$1" name="$2" group="$3" ip="$4" personality="$3"
  [ "$group" = compute ] && personality=worker
  docker exec "$c" sh -c "mkdir -p /opt/platform/hosts /opt/platform/alarms && printf 'personality=%s\nip=%s\nadministrative=unlocked\noperational=enabled\navailability=available\n' $personality $ip > /opt/platform/hosts/$name"
  [ "$group" != controller ] || docker exec "$c" sh -c "[ -e /opt/platform/active-controller ] || echo $name > /opt/platform/active-controller"
}

# `NAME ansible_host=ADDRESS [VAR=VALUE...]`: one inventory line (IP is cmd_up's map).
inv_host() {
  local name="$1"; shift
  echo "$name ansible_host=${IP[$name]}${*:+ $*}"
}

inv_group() { # GROUP HOST...
  local group="$1"; shift
  echo "[$group]"
  for h in "$@"; do inv_host "$h"; done
}

# One inventory per shape of runbook: the fleet's own groups, then the same hosts under the
# groups the shipped runbooks name.
write_inventories() {
  local dir="$1" all_vars=$'\n[all:vars]\nansible_user=root\npkg_manager=apt'
  {
    # examples/fleet/demo-upgrade.rhai, runbooks/jiocloud-rolling.rhai
    inv_group controller ctl1 ctl2 ctl3
    inv_group compute cmp1 cmp2 cmp3 cmp4 cmp5 cmp6
    echo "[storage]"
    inv_host st1 replication_group=rg1; inv_host st2 replication_group=rg1; inv_host st3 replication_group=rg2
    echo "$all_vars"
  } > "$dir/hosts.ini"
  {
    # runbooks/swh-debian-upgrade.rhai: the demo service is the service to restart.
    inv_group rpc ctl1 ctl2 ctl3
    inv_group workers cmp1 cmp2 cmp3 cmp4 cmp5 cmp6
    inv_group journal_clients st1 st2 st3
    echo "$all_vars"; echo "services=fleetbook-demo"
  } > "$dir/swh.ini"
  {
    # runbooks/punch-patch.rhai: the shiva cluster (its default group), and a group it leaves
    # alone.
    inv_group shiva_local cmp1 cmp2 cmp3
    inv_group kafka_servers st1
    echo "$all_vars"
  } > "$dir/punch.ini"
  {
    # runbooks/starlingx-patch.rhai: ctl1 is the active controller.
    inv_group controller ctl1 ctl2 ctl3
    echo "[storage]"
    inv_host st1 replication_group=rg1; inv_host st2 replication_group=rg1; inv_host st3 replication_group=rg2
    inv_group worker cmp1 cmp2 cmp3 cmp4 cmp5 cmp6
    echo "$all_vars"
  } > "$dir/starlingx.ini"
  {
    # runbooks/maintenance-mode.rhai: ctl1 is the Stratos manager (its REST API on port 9763)
    # of two clusters of computes, whose service is the demo service (health on port 8080).
    echo "[manager]"; inv_host ctl1
    echo "[manager:vars]"; echo "stratos_url=http://${IP[ctl1]}:9763"
    inv_group php_cluster cmp1 cmp2 cmp3
    echo $'[php_cluster:vars]\ncluster=php'
    inv_group tomcat_cluster cmp4 cmp5 cmp6
    echo $'[tomcat_cluster:vars]\ncluster=tomcat'
    echo $'[members:children]\nphp_cluster\ntomcat_cluster'
    echo $'[members:vars]\nservice=fleetbook-demo\nport=8080'
    echo "stratos_url=http://${IP[ctl1]}:9763"
    echo "$all_vars"
  } > "$dir/stratos.ini"
}

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
  local labels=(--label "fleetbook-fleet=$id")
  [ -z "${FLEETBOOK_FLEET_OWNER:-}" ] || labels+=(--label "fleetbook-fleet-owner=$FLEETBOOK_FLEET_OWNER")
  docker network create "${labels[@]}" "$net" >/dev/null
  # /opt/platform: what the hosts share (StarlingX's patching system and host records).
  docker volume create "${labels[@]}" "$id-platform" >/dev/null
  [ -e "$dir/client_key" ] || ssh-keygen -q -t ed25519 -N "" -f "$dir/client_key"
  while read -r name group rg; do
    docker run -d --name "$id-$name" --hostname "$name" --network "$net" \
      "${labels[@]}" --restart unless-stopped --stop-signal SIGRTMIN+3 -v "$id-platform:/opt/platform" \
      -v /sys/fs/cgroup:/sys/fs/cgroup:ro --tmpfs /run --tmpfs /run/lock "$IMAGE" >/dev/null
  done <<< "$LAYOUT"
  : > "$dir/known_hosts"
  declare -A IP
  while read -r name group rg; do
    local c="$id-$name" i
    for i in $(seq 1 300); do
      docker exec "$c" systemctl is-active --quiet ssh 2>/dev/null && break
      sleep 0.1
    done
    docker exec "$c" systemctl is-active --quiet ssh || { log "sshd did not start on $name"; exit 1; }
    docker exec -i "$c" sh -c 'cat > /root/.ssh/authorized_keys && chmod 600 /root/.ssh/authorized_keys' < "$dir/client_key.pub"
    IP[$name]="$(docker inspect -f "{{(index .NetworkSettings.Networks \"$net\").IPAddress}}" "$c")"
    echo "${IP[$name]} $(docker exec "$c" cat /etc/ssh/ssh_host_ed25519_key.pub | cut -d' ' -f1,2)" >> "$dir/known_hosts"
    platform_host "$c" "$name" "$group" "${IP[$name]}"
  done <<< "$LAYOUT"
  write_inventories "$dir"
  docker exec "$id-ctl1" systemctl start stratos-manager
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
  log "fleet $id is up: inventories $dir/{hosts,swh,punch,starlingx,stratos}.ini, ssh config $dir/ssh_config"
}

remove_fleet() {
  local id="$1" i net
  local ids
  ids="$(docker ps -aq --filter "label=fleetbook-fleet=$id")"
  # Kill, wait until they are down, then remove: force-removing running containers can leave
  # the engine counting endpoints on their network that no longer exist (moby/moby#42119),
  # and then the network cannot be removed until the engine restarts.
  if [ -n "$ids" ]; then
    docker kill $ids >/dev/null 2>&1 || true
    docker wait $ids >/dev/null 2>&1 || true
    docker rm -f $ids >/dev/null || true
  fi
  if [ -n "$(docker ps -aq --filter "label=fleetbook-fleet=$id")" ]; then
    log "could not remove the containers of fleet $id"
    return 1
  fi
  # An endpoint the engine still counts after its container is gone (moby/moby#42119) is
  # released by a forced disconnect of the container's name.
  for net in $(docker network ls -q --filter "label=fleetbook-fleet=$id"); do
    while read -r name _; do
      docker network disconnect -f "$net" "$id-$name" >/dev/null 2>&1 || true
    done <<< "$LAYOUT"
  done
  # The engine may still hold the network for a moment after its containers are gone.
  for i in $(seq 1 20); do
    docker network ls -q --filter "label=fleetbook-fleet=$id" | xargs -r docker network rm >/dev/null 2>&1 &&
      docker volume ls -q --filter "label=fleetbook-fleet=$id" | xargs -r docker volume rm >/dev/null 2>&1 &&
      return 0
    sleep 0.5
  done
  log "could not remove the network or volume of fleet $id (no container uses them; restarting the Docker engine frees them)"
  return 2
}

# Every fleet (containers, networks, volumes) that has an owner process, and that owner.
owned_fleets() {
  local fmt='{{.Label "fleetbook-fleet"}} {{.Label "fleetbook-fleet-owner"}}'
  {
    docker ps -a --filter label=fleetbook-fleet-owner --format "$fmt"
    docker network ls --filter label=fleetbook-fleet-owner --format "$fmt"
    docker volume ls --filter label=fleetbook-fleet-owner --format "$fmt"
  } | sort -u
}

cmd_prune() {
  local id owner
  owned_fleets | while read -r id owner; do
    kill -0 "$owner" 2>/dev/null && continue
    # A network or volume the engine will not let go of holds no host: warn, go on.
    local rc=0
    remove_fleet "$id" || rc=$?
    case $rc in
      0) log "removed fleet $id: its owner (process $owner) is gone" ;;
      2) log "removed the hosts of fleet $id: its owner (process $owner) is gone" ;;
      *) return 1 ;;
    esac
  done
}

cmd_down() {
  local dir="${1:-$PWD/demo-fleet}" id
  [ -e "$dir/fleet-id" ] || { log "no fleet in $dir"; return 0; }
  id="$(cat "$dir/fleet-id")"
  remove_fleet "$id"
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
  prune) cmd_prune ;;
  *) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
