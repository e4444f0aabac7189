#!/bin/sh
# Regenerates the README's pictures: docs/images/plan.png (the plan of the shipped
# maintenance-mode runbook on the Stratos inventory) and docs/images/run.png (the report of a
# finished run of it). Needs Debian's `chromium`. Usage: scripts/screenshots.sh
#
# The run happens on this machine (ansible_connection=local) with stand-ins for the programs
# the runbook calls (sudo, apt-get, systemctl, curl for the Stratos manager): nothing on this
# machine is changed. One member's service restart fails, so the report shows a failure within
# the runbook's budget (max_failures 1 for members).
set -eu
cd "$(dirname "$0")/.."
cargo build -q --bin fleetbook
fb=$PWD/target/debug/fleetbook
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/bin"

stub() { printf '#!/bin/sh\n%s\n' "$2" > "$work/bin/$1"; chmod +x "$work/bin/$1"; }
# sudo -n -- sh -c '...': run it as it is (we are the user already).
stub sudo 'while [ "$1" = -n ] || [ "$1" = -- ]; do shift; done; exec "$@"'
stub apt-get 'echo "apt-get $*: 0 upgraded, 0 newly installed"'
stub systemctl "case \"\$*\" in *restart*tomcat9*)
  n=\$(cat '$work/restarts' 2>/dev/null || echo 0); n=\$((n + 1)); echo \$n > '$work/restarts'
  if [ \$n -eq 2 ]; then echo 'Job for tomcat9.service failed because the control process exited with error code.' >&2; exit 1; fi;;
esac; echo \"systemctl \$*\""
# The manager's REST API: every member's maintenance state reads off once it resumed.
stub curl 'case "$*" in *GET*operationalState*) echo "maintenance=off";; *) echo "{\"status\":\"ok\"}";; esac'

sed 's/^vars = { /vars = { ansible_connection = "local", /' examples/inventories/stratos.toml > "$work/stratos.toml"
"$fb" plan runbooks/maintenance-mode.rhai -i examples/inventories/stratos.toml --format html -o "$work/plan.html"
PATH="$work/bin:$PATH" "$fb" run runbooks/maintenance-mode.rhai -i "$work/stratos.toml" \
  --state "$work/state" --yes --param health_timeout=5s >/dev/null 2>&1 || true
"$fb" status --state "$work/state" --format html -o "$work/run.html"

shot() {
  chromium --headless --no-sandbox --disable-gpu --no-first-run --disable-background-networking \
    --disable-component-update --hide-scrollbars --user-data-dir="$work/profile" \
    --window-size="$3" --screenshot="$2" "file://$1" >/dev/null 2>&1
  echo "wrote $2"
}
shot "$work/plan.html" docs/images/plan.png 1200,1900
shot "$work/run.html" docs/images/run.png 1200,2000
