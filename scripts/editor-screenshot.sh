#!/bin/sh
# Regenerates docs/images/editor.png: Neovim talking to `fleetbook lsp`, with a diagnostic
# under an unknown role and the completion menu after `pkg::`.
#
#   scripts/editor-screenshot.sh [FLEETBOOK] [OUT.png]
#
# FLEETBOOK defaults to target/debug/fleetbook (built by `cargo build`), OUT to
# docs/images/editor.png. Needs Debian's neovim (0.7 or later), tmux, chromium and python3:
#   apt-get install neovim tmux chromium python3
# Neovim runs in a detached tmux pane of 136x22; the pane (with its colours) is captured,
# turned into an HTML page (scripts/ansi-html.py) and shot by headless Chromium.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
fleetbook=$(realpath "${1:-$here/target/debug/fleetbook}")
out=$(realpath -m "${2:-$here/docs/images/editor.png}")
for tool in nvim tmux chromium python3; do
    command -v "$tool" >/dev/null || { echo "editor-screenshot: $tool is not installed" >&2; exit 2; }
done
[ -x "$fleetbook" ] || { echo "editor-screenshot: no fleetbook at $fleetbook (cargo build)" >&2; exit 2; }

work=$(mktemp -d /tmp/fb.XXXXXX)
session="fleetbook-shot-$$"
cleanup() {
    tmux kill-session -t "$session" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# A small project: an inventory named by fleetbook.toml, and a runbook with a typo in a role.
mkdir -p "$work/p"
cd "$work/p"
printf 'inventory = "hosts.ini"\n' > fleetbook.toml
printf '[controller]\nctl1\nctl2\n[compute]\ncmp1\ncmp2\ncmp3\n' > hosts.ini
cat > upgrade.rhai <<'RHAI'
import "rolling" as rolling;

let rb = runbook("nova-upgrade");
let version = param("version", "2024.2");

rb.order(["controller", "comptue"]);
rb.limit("compute", "25%");

rb.step("upgrade", |h| rolling::upgrade_to(h, ["nova-common"], version));
rb.step("restart", |h| service::restart(h, "nova-compute"));
rb.step("verify", |h| pkg::version(h, "nova-common"));
rb
RHAI

cat > "$work/init.lua" <<LUA
vim.opt.termguicolors = true
vim.opt.background = "dark"
vim.opt.number = true
vim.opt.hlsearch = false
vim.opt.signcolumn = "yes"
vim.opt.completeopt = { "menuone", "noinsert" }
vim.opt.shortmess:append("c")
vim.opt.laststatus = 0
vim.cmd("syntax on")
vim.cmd("colorscheme default")
vim.cmd("highlight SignColumn guibg=NONE")
vim.cmd("highlight LineNr guifg=#6c7086")
vim.cmd("highlight Pmenu guibg=#313244 guifg=#cdd6f4")
vim.cmd("highlight PmenuSel guibg=#585b70 guifg=#ffffff gui=bold")
vim.cmd("highlight DiagnosticVirtualTextError guifg=#f38ba8 guibg=#3b2530")
vim.filetype = vim.filetype or {}
vim.cmd("autocmd BufRead,BufNewFile *.rhai setfiletype rhai")
vim.cmd("autocmd FileType rhai setlocal syntax=javascript")
vim.diagnostic.config({
  virtual_text = { spacing = 2, format = function(d) return d.message:match("^[^\\n]*") end },
  underline = true, signs = true,
})
vim.api.nvim_create_autocmd("FileType", {
  pattern = "rhai",
  callback = function(args)
    local id = vim.lsp.start_client({
      name = "fleetbook",
      cmd = { "$fleetbook", "lsp" },
      root_dir = "$work/p",
    })
    vim.lsp.buf_attach_client(args.buf, id)
    vim.bo[args.buf].omnifunc = "v:lua.vim.lsp.omnifunc"
  end,
})
LUA

tmux new-session -d -s "$session" -x 136 -y 22 \
    "env TERM=xterm-256color nvim -n -u $work/init.lua upgrade.rhai"

# Waits until the pane shows $1 (at most about 30 s).
wait_for() {
    i=0
    until tmux capture-pane -t "$session" -p | grep -qF -- "$1"; do
        i=$((i + 1))
        if [ "$i" -gt 300 ]; then
            echo "editor-screenshot: never saw \"$1\" in the editor:" >&2
            tmux capture-pane -t "$session" -p >&2
            exit 1
        fi
        sleep 0.1
    done
}

wait_for 'unknown role "comptue"'
# Insert mode right after `pkg::` in the last step, then omni-completion (the server's
# answer). Nothing is typed, so the text and its diagnostic stay.
tmux send-keys -t "$session" '/pkg::' Enter '4l' 'a'
tmux send-keys -t "$session" C-x C-o
wait_for 'dist_upgrade'
sleep 0.3
tmux capture-pane -t "$session" -e -p > "$work/pane.ansi"

python3 "$here/scripts/ansi-html.py" < "$work/pane.ansi" > "$work/pane.html"
mkdir -p "$(dirname "$out")"
chromium --headless --no-sandbox --disable-gpu --no-first-run --disable-background-networking \
    --disable-component-update --hide-scrollbars --user-data-dir="$work/chromium" \
    --window-size=1260,446 --screenshot="$out" "file://$work/pane.html" 2>/dev/null
echo "wrote $out"
