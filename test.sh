#!/usr/bin/env bash
# Runs every test: installs what the tests need when it can (as root, with apt), starts what
# they need (sshd's runtime directory, the Docker daemon), then `cargo test --workspace`.
# No test is skipped: one whose tools are missing fails and says what to install.
#
#   ./test.sh                  # everything
#   ./test.sh --setup          # only install and start what the tests need
#   ./test.sh -- --skip fleet  # arguments after -- go to cargo test
set -euo pipefail
cd "$(dirname "$0")"

setup_only=false
if [ "${1:-}" = --setup ]; then
  setup_only=true
  shift
fi
[ "${1:-}" = -- ] && shift

say() { echo "test.sh: $*" >&2; }
root=false
[ "$(id -u)" = 0 ] && root=true

# What the tests call, and the Debian package that has it.
need=()
want() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || need+=("$2"); }
want sshd openssh-server            # the SSH tests start real sshd processes on loopback
want ssh openssh-client
want ssh-keygen openssh-client
want debootstrap debootstrap        # the fleet tests build a Debian host image ...
want dpkg-scanpackages dpkg-dev     # ... and a demo apt repository
want docker docker.io               # ... and run it in containers
want dot graphviz                   # the docs pipe a plan to Graphviz
want chromium chromium              # the page tests open the HTML in a headless browser
want chromedriver chromium-driver   # through WebDriver
want pgrep procps                   # tests look for leftover processes,
want script bsdutils                # run a terminal
want setpriv util-linux             # and drop root
want git git                        # libraries are fetched from git repositories the tests make
want etcd etcd-server               # the shared-state tests start their own etcd members
want protoc protobuf-compiler       # etcd-client's build generates its gRPC code
want chromium chromium              # the web views are tested in headless Chromium,
want chromedriver chromium-driver   # driven over WebDriver
want tmux tmux                      # the terminal view is tested at fixed widths
want tcsh tcsh                      # commands reach sh unchanged through a csh login shell
want node nodejs                    # the VS Code extension is activated against stand-ins
want python3 python3                # the inventory conformance test makes a venv with
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)   # ansible-core
mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u | sed '/^$/d')

if [ ${#need[@]} -gt 0 ]; then
  if $root && command -v apt-get >/dev/null; then
    say "installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    say "missing ${need[*]}: the tests that need them will fail;" \
      "install them (as root: apt-get install ${need[*]}) or run ./test.sh as root"
  fi
fi

# sshd's privilege-separation directory (gone after a reboot: /run is a tmpfs).
if $root; then
  mkdir -p /run/sshd
elif [ ! -d /run/sshd ]; then
  say "/run/sshd is missing and only root can make it: the SSH tests will fail"
fi

# Docker: start the daemon if it is installed but not running.
if command -v docker >/dev/null && ! docker info >/dev/null 2>&1; then
  if $root && command -v dockerd >/dev/null; then
    say "starting dockerd (log: /tmp/fleetbook-dockerd.log)"
    nohup dockerd >/tmp/fleetbook-dockerd.log 2>&1 &
    for _ in $(seq 60); do
      docker info >/dev/null 2>&1 && break
      sleep 0.5
    done
  fi
  docker info >/dev/null 2>&1 || say "Docker is not usable: the fleet tests will fail (see docker info)"
fi

$setup_only && exit 0
command -v cargo >/dev/null || { say "cargo is required: https://rustup.rs"; exit 1; }
exec cargo test --workspace "$@"
