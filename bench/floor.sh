#!/usr/bin/env bash
# The raw SSH floor: what plain OpenSSH needs for the benchmark's workload (3 commands per
# host), with P hosts at a time (P = N: all at once; P = 5: rolling).
#   floor.sh open  CONFIG DIR P ADDR...   open a ControlMaster per host (DIR/cm-ADDR)
#   floor.sh warm  CONFIG DIR P ADDR...   3 commands per host over the open masters
#   floor.sh cold  CONFIG DIR P ADDR...   per host: a new master, 3 commands, close it
#   floor.sh close CONFIG DIR P ADDR...   close the masters `open` made
set -uo pipefail
what="$1" cfg="$2" dir="$3" par="$4"
shift 4
one() {
  local addr="$1" sock="$dir/cm-$1"
  case "$what" in
    open) ssh -F "$cfg" -o ControlMaster=yes -o ControlPersist=300 -S "$sock" -fN "$addr" ;;
    warm) for _ in 1 2 3; do ssh -F "$cfg" -S "$sock" "$addr" true || return 1; done ;;
    cold)
      sock="$dir/cc-$addr"
      ssh -F "$cfg" -o ControlMaster=yes -o ControlPersist=60 -S "$sock" -fN "$addr" || return 1
      for _ in 1 2 3; do ssh -F "$cfg" -S "$sock" "$addr" true || return 1; done
      ssh -F "$cfg" -S "$sock" -O exit "$addr" 2>/dev/null
      ;;
    close) ssh -F "$cfg" -S "$sock" -O exit "$addr" 2>/dev/null ;;
  esac
}
export -f one
export what cfg dir
printf '%s\n' "$@" | xargs -P "$par" -I{} bash -c 'one "$1"' _ {}
