//! The command tree (clap derive) and the typed settings its arguments give.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "fleetbook",
    version,
    about = "Run upgrade runbooks across fleets of servers",
    long_about = "fleetbook compiles a Rhai runbook against an inventory into a DAG of (host, step) \
tasks, shows it as a plan, and runs it over SSH under per-role limits.",
    after_help = "Examples:\n  fleetbook check runbooks/jiocloud-rolling.rhai\n  fleetbook plan runbooks/jiocloud-rolling.rhai -i examples/inventories/jiocloud.ini\n  fleetbook plan runbooks/starlingx-patch.rhai -i examples/inventories/starlingx.yml --format dot -o plan.dot"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Colour errors and help: auto (on a terminal, unless NO_COLOR is set), always, never.
    #[arg(long, global = true, value_enum, value_name = "WHEN", default_value_t = Color::Auto)]
    pub color: Color,
    /// More log on standard error: -v every task transition, -vv debug (limit waits,
    /// connections, commands), -vvv trace. $FLEETBOOK_LOG (a tracing filter such as
    /// `fleetbook_engine=debug`) overrides it.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Also append the log to this file as JSON Lines (run, host and task on every line).
    #[arg(long, value_name = "PATH", global = true)]
    pub log_file: Option<PathBuf>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Color {
    Auto,
    Always,
    Never,
}

/// The environment variables fleetbook reads, for the man pages.
pub const ENVIRONMENT: &[(&str, &str)] = &[
    (
        "FLEETBOOK_STATE",
        "the state directory (journal and locks), as --state",
    ),
    (
        "XDG_STATE_HOME",
        "the user's state directory is $XDG_STATE_HOME/fleetbook (default ~/.local/state/fleetbook)",
    ),
    (
        "FLEETBOOK_MAX_HOSTS",
        "how many hosts an inventory's ranges may produce (default 100000)",
    ),
    (
        "FLEETBOOK_MAX_PLAN_BYTES, FLEETBOOK_MAX_PLAN_BYTES_PER_HOST",
        "bounds on the commands a plan records (default 64 MiB, 1 MiB per host)",
    ),
    (
        "FLEETBOOK_LOG",
        "a tracing filter for the log on standard error (e.g. fleetbook_engine=debug); overrides -v",
    ),
    (
        "FLEETBOOK_PATH",
        "more library directories for import, searched after --lib (':'-separated)",
    ),
    (
        "FLEETBOOK_LIB_MIRROR",
        "a plain-directory mirror of the libraries (NAME/VERSION/), as `fleetbook lib vendor` writes it; used offline, checked against fleetbook.lock",
    ),
    (
        "XDG_CACHE_HOME",
        "git libraries are cached in $XDG_CACHE_HOME/fleetbook/git (default ~/.cache/fleetbook/git)",
    ),
    ("NO_COLOR", "when set and not empty, no colours unless --color says otherwise"),
    ("HOME", "where ~/.ssh/config and ~/.local/state are"),
];

/// The files fleetbook reads and writes, for the man pages.
pub const FILES: &[(&str, &str)] = &[
    (
        "fleetbook.toml",
        "the project file, in the current directory or the nearest one above: a project's defaults (fleetbook config shows them)",
    ),
    (
        "fleetbook.lock",
        "beside fleetbook.toml: the version, commit and sha256 of every file of every library the project uses (fleetbook lib fetch)",
    ),
    (
        "fleetbook-lib.toml",
        "a library's manifest: name, version, description, fleetbook version, uses, [dependencies]",
    ),
    (
        ".fleetbook/journal.sqlite",
        "a project's journal (SQLite) and locks, beside its fleetbook.toml",
    ),
    (
        "~/.local/state/fleetbook/journal.sqlite",
        "the user's journal outside any project",
    ),
    ("~/.ssh/config", "the ssh configuration, unless --ssh-config names another"),
];

/// The command tree: the derived one plus what derive cannot say, so that help, man pages
/// and completions agree: every subcommand's exit statuses, and the colour choice.
pub fn command() -> clap::Command {
    let mut cmd = <Cli as clap::CommandFactory>::command().color(crate::color::clap_color());
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    for name in names {
        cmd = cmd.mut_subcommand(&name, |s| {
            let before = s
                .get_after_help()
                .map(|h| format!("{h}\n\n"))
                .unwrap_or_default();
            s.after_help(format!(
                "{before}{}",
                crate::status::help_section(Some(&name))
            ))
        });
    }
    let before = cmd
        .get_after_help()
        .map(|h| format!("{h}\n\n"))
        .unwrap_or_default();
    let all = crate::status::help_section(None);
    crate::complete::attach(cmd.after_help(format!("{before}{all}")))
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Compile and validate a runbook (syntax, role order, parameters) without an inventory.
    #[command(
        after_help = "Examples:\n  fleetbook check runbooks/swh-debian-upgrade.rhai\n  fleetbook check upgrade.rhai --param version=2.0\n  fleetbook check runbooks/swh-debian-upgrade.rhai -i examples/inventories/swh.ini   # roles too\n  fleetbook check upgrade.rhai --format json   # diagnostics with file, range, severity, code"
    )]
    Check(CheckCmd),
    /// Show what a runbook would do on an inventory: roles, limits, schedule, commands.
    #[command(
        after_help = "Examples:\n  fleetbook plan runbooks/jiocloud-rolling.rhai -i examples/inventories/jiocloud.ini\n  fleetbook plan upgrade.rhai -i hosts --limit 'compute:!cmp03' --param version=2.0\n  fleetbook plan upgrade.rhai -i hosts.yml --format json -o plan.json\n  fleetbook plan upgrade.rhai -i hosts --format dot | dot -Tsvg > plan.svg\n  fleetbook plan upgrade.rhai -i hosts --format html -o plan.html"
    )]
    Plan(PlanCmd),
    /// Plan, confirm, and run a runbook over SSH with a live display and a recap.
    #[command(
        after_help = "Examples:\n  fleetbook run runbooks/jiocloud-rolling.rhai -i hosts\n  fleetbook run upgrade.rhai -i hosts --limit compute --param version=2.0 --yes\n  fleetbook run upgrade.rhai -i hosts --yes --events jsonl > events.jsonl\n  fleetbook run --join 20261121-230836-1a2b --state etcd://10.0.0.1:2379/fleetbook --yes\n\nCtrl-C once stops starting hosts and lets in-flight steps finish; twice kills them."
    )]
    Run(RunCmd),
    /// Run a plan saved with `fleetbook plan -o plan.json`, exactly; refused if anything changed.
    #[command(
        after_help = "Examples:\n  fleetbook plan upgrade.rhai -i hosts --format json -o plan.json\n  fleetbook apply plan.json --yes"
    )]
    Apply(ApplyCmd),
    /// Continue a halted, aborted or crashed run from where it stopped.
    #[command(
        after_help = "Examples:\n  fleetbook resume 01KB7Q2N4R8X6Y3Z5A9C0D1E2F --state .fleetbook\n  fleetbook resume RUN --retry-unknown   # re-run steps a crash left unknown\n  fleetbook resume RUN --replan          # the runbook or inventory changed: accept it"
    )]
    Resume(ResumeCmd),
    /// Undo the steps a run completed, newest first, on every host that ran them (finished
    /// hosts too): the `undo` closures of the runbook the run was made from.
    #[command(
        after_help = "Examples:\n  fleetbook rollback 01KB7Q2N4R8X6Y3Z5A9C0D1E2F --state .fleetbook\n  fleetbook rollback RUN --limit compute --yes   # only these hosts\n\nOrder: the completed steps that have an undo, newest first across hosts (by when each ended).\nAn undo that fails stops that host's rollback; the other hosts go on. A rolled-back run cannot be resumed."
    )]
    Rollback(RollbackCmd),
    /// Where a run stands: per role and per host, upgraded / upgrading / pending / failed.
    #[command(
        after_help = "Examples:\n  fleetbook status                      # the newest run\n  fleetbook status 01KB7Q2N4R8X6Y3Z5A9C0D1E2F --format json\n  fleetbook status 01KB7Q2N4R8X6Y3Z5A9C0D1E2F --watch   # follow it from another terminal\n  fleetbook status RUN --format html -o run.html   # a report to attach to the change ticket"
    )]
    Status(StatusCmd),
    /// Watch a run in the browser: a local web page that follows the run as it moves.
    #[command(
        after_help = "Examples:\n  fleetbook watch                       # the newest run\n  fleetbook watch 01KB7Q2N4R8X6Y3Z5A9C0D1E2F --control\n  fleetbook watch RUN --listen 0.0.0.0:8443 --token-file ~/.config/fleetbook/watch-token\n\nIt listens on 127.0.0.1 on a free port and prints the URL to open, with a one-time token in\nit; a request without the token is refused. Read-only unless --control: then the page can\napprove a waiting approval and abort the run, recorded with your user as `fleetbook approve`\nand `fleetbook abort` record them. Stop it with Ctrl-C."
    )]
    Watch(WatchCmd),
    /// Run history, newest first.
    #[command(
        after_help = "Examples:\n  fleetbook runs\n  fleetbook runs --state /srv/fleet/.fleetbook --format json\n  fleetbook runs --state etcd://10.0.0.1:2379,10.0.0.2:2379/fleetbook"
    )]
    Runs {
        #[command(flatten)]
        state: StateArgs,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = ReportFormat::Text)]
        format: ReportFormat,
    },
    /// Ask a running run (from any terminal) to stop starting hosts and exit as aborted.
    #[command(
        after_help = "Examples:\n  fleetbook abort 01KB7Q2N4R8X6Y3Z5A9C0D1E2F          # hosts in flight finish their step\n  fleetbook abort 01KB7Q2N4R8X6Y3Z5A9C0D1E2F --now    # kill the steps in flight too\n\nThe run ends as aborted; `fleetbook resume RUN` continues it later."
    )]
    Abort {
        /// The run id (`fleetbook runs` lists them).
        run_id: String,
        /// Also kill the steps in flight.
        #[arg(long)]
        now: bool,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Release an `.approval(...)` that a run is waiting for.
    #[command(
        after_help = "Examples:\n  fleetbook approve 01KB7Q2N4R8X6Y3Z5A9C0D1E2F                  # the approval it waits for\n  fleetbook approve 01KB7Q2N4R8X6Y3Z5A9C0D1E2F --gate go-live\n\nThe approval is recorded with your user and the time (`fleetbook status RUN`)."
    )]
    Approve {
        /// The run id (`fleetbook runs` lists them).
        run_id: String,
        /// The approval's name (default: the one the run waits for).
        #[arg(long, value_name = "NAME")]
        gate: Option<String>,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Break a fleet lock left by a run whose process is gone.
    #[command(
        after_help = "Examples:\n  fleetbook unlock                 # asks before breaking each lock\n  fleetbook unlock --state /srv/fleet/.fleetbook --yes\n\nA lock whose run is still alive is never broken; a run that lost its lock stops (exit 7)."
    )]
    Unlock {
        #[command(flatten)]
        state: StateArgs,
        /// Do not ask for confirmation.
        #[arg(short, long)]
        yes: bool,
    },
    /// Run an ad-hoc command on the hosts a pattern selects, in parallel.
    #[command(
        after_help = "Examples:\n  fleetbook exec -i examples/inventories/punch.ini kafka_servers -- df -h /data\n  fleetbook exec -i hosts 'web*:!web3' -b --forks 20 -- systemctl is-active nginx"
    )]
    Exec(ExecCmd),
    /// Show the settings in force here and where each comes from (command line,
    /// environment, fleetbook.toml, default).
    #[command(
        after_help = "Examples:\n  fleetbook config\n  fleetbook config --format json\n\nfleetbook.toml (found in the current directory or the nearest one above) sets a project's\ndefaults: inventory, state, ssh_config, forks, limit, connect_timeout, max_per_host, lib,\nand [params]. Options on the command line win over it."
    )]
    Config {
        #[command(flatten)]
        state: StateArgs,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = ReportFormat::Text)]
        format: ReportFormat,
    },
    /// Show what fleetbook reads from an inventory, in ansible-inventory's forms.
    #[command(
        group = clap::ArgGroup::new("what").required(true).multiple(false),
        after_help = "Examples:\n  fleetbook inventory -i examples/inventories/jiocloud.ini --graph\n  fleetbook inventory -i hosts.yml --list --limit compute\n  fleetbook inventory -i hosts --host web1 --vault-password-file ~/.vault_pass\n  ansible-inventory -i aws_ec2.yml --list | fleetbook inventory -i - --list\n\nThe output compares with `ansible-inventory --list`, `--graph` and `--host`."
    )]
    Inventory(InventoryCmd),
    /// Print the script that registers fleetbook's completions (run ids, approval names and
    /// host patterns too) with a shell; the same as `COMPLETE=SHELL fleetbook`.
    #[command(
        after_help = "Examples:\n  echo 'source <(fleetbook completions bash)' >> ~/.bashrc\n  echo 'source <(fleetbook completions zsh)' >> ~/.zshrc\n  fleetbook completions fish > ~/.config/fish/completions/fleetbook.fish\n\nThe script calls fleetbook to complete each word: after an upgrade, source it again."
    )]
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), or write one page per subcommand to a directory.
    #[command(
        after_help = "Examples:\n  fleetbook man -o ~/.local/share/man/man1   # fleetbook.1, fleetbook-run.1, ...\n  fleetbook man | man -l -"
    )]
    Man {
        /// Write fleetbook.1 and a fleetbook-COMMAND.1 per subcommand into this directory
        /// (created if missing) instead of printing fleetbook.1.
        #[arg(short, long, value_name = "DIR")]
        output: Option<PathBuf>,
    },
    /// Run runbook tests without a fleet: every `fn test_*()` of the `*_test.rhai` files
    /// (see docs/testing.md), which plan runbooks against inline inventories and assert on
    /// the dry-run plans.
    #[command(
        after_help = "Examples:\n  fleetbook test                      # every *_test.rhai below the current directory\n  fleetbook test runbooks/tests\n  fleetbook test runbooks/tests/punch-patch_test.rhai\n\nPaths in a test file are relative to it and must stay inside the current directory\n(or, for tests outside it, the directory given). Exits 5 when a test fails."
    )]
    Test {
        /// A `*_test.rhai` file, or a directory searched recursively (hidden directories and
        /// target/ skipped). Default: the current directory.
        path: Option<PathBuf>,
        /// Another directory that `import` may load modules from (repeatable).
        #[arg(long = "lib", value_name = "DIR")]
        lib_dirs: Vec<PathBuf>,
    },
    /// Show a library's exported functions with their `///` docs, parameters and examples.
    #[command(
        after_help = "Examples:\n  fleetbook doc                  # the built-in libraries\n  fleetbook doc rolling\n  fleetbook doc rolling --format md > rolling.md\n  fleetbook doc runbooks/lib/text.rhai\n  fleetbook doc runbooks/lib     # every .rhai of a library directory"
    )]
    Doc {
        /// A built-in library (`rolling`, `checks`, ...), a .rhai file or a library
        /// directory. Default: every built-in library.
        lib: Option<String>,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = DocFormat::Text)]
        format: DocFormat,
    },
    /// Fetch, lock, list and vendor the libraries a project's runbooks import
    /// (`[dependencies]` in fleetbook.toml; see docs/libraries.md).
    #[command(
        after_help = "Examples:\n  fleetbook lib fetch             # fetch git libraries, write fleetbook.lock\n  fleetbook lib fetch --update    # resolve again, ignoring the lock\n  fleetbook lib list              # the tree: versions, sources, what each may do\n  fleetbook lib vendor vendor     # copy every library for offline use\n  FLEETBOOK_LIB_MIRROR=vendor fleetbook plan upgrade.rhai -i hosts"
    )]
    Lib {
        #[command(subcommand)]
        command: LibCommand,
    },
    /// Serve the Language Server Protocol on stdin/stdout, for editors: diagnostics as you
    /// type, hover docs, completion and go-to-definition for runbooks (see docs/editor.md).
    #[command(
        after_help = "Examples:\n  fleetbook lsp   # started by the editor, which speaks JSON-RPC on its stdin and stdout"
    )]
    Lsp {
        /// Accepted and ignored: stdio is the only transport (editors' clients pass it).
        #[arg(long)]
        stdio: bool,
    },
    /// Write Rhai definition files (.d.rhai) for every function a runbook can call and every
    /// script library's exported functions, for Rhai-aware editors (see docs/editor.md).
    #[command(
        after_help = "Examples:\n  fleetbook definitions -o .rhai/definitions\n  fleetbook definitions -o defs --lib libs   # also the modules in libs/"
    )]
    Definitions {
        /// The directory to write into (created if missing; files of the same name are replaced).
        #[arg(short, long, value_name = "DIR")]
        output: PathBuf,
        /// Another directory of library modules to describe (repeatable); fleetbook.toml's
        /// `lib` directories are added.
        #[arg(long = "lib", value_name = "DIR")]
        lib_dirs: Vec<PathBuf>,
    },
}

// `fleetbook check`: the variant's doc comment is its help.
#[derive(Args, Debug)]
pub struct CheckCmd {
    /// The runbook script (.rhai).
    pub runbook: PathBuf,
    /// Also check the runbook against this inventory: every role it names exists, and
    /// warn about roles without hosts.
    #[arg(short, long)]
    pub inventory: Option<PathBuf>,
    #[command(flatten)]
    pub script: ScriptArgs,
    /// Output format: json prints {"diagnostics": [...]} on stdout (file, range, severity,
    /// code, message), errors and warnings alike; the exit status is the same as text's.
    #[arg(short, long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
}

// `fleetbook plan`: the variant's doc comment is its help.
#[derive(Args, Debug)]
pub struct PlanCmd {
    /// The runbook script (.rhai).
    pub runbook: PathBuf,
    /// Inventory: Ansible INI (any name), Ansible YAML (.yml/.yaml) or TOML (.toml).
    /// Default: `inventory` in fleetbook.toml.
    #[arg(short, long, value_name = "INVENTORY")]
    pub inventory: Option<PathBuf>,
    #[command(flatten)]
    pub script: ScriptArgs,
    /// Only these hosts, as an Ansible pattern: group, host, glob, a:b, a:&b, a:!b.
    #[arg(short, long, value_name = "PATTERN")]
    pub limit: Option<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Write the plan to this file instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

// `fleetbook run`: the variant's doc comment is its help.
#[derive(Args, Debug)]
pub struct RunCmd {
    /// The runbook script (.rhai).
    #[arg(required_unless_present = "join")]
    pub runbook: Option<PathBuf>,
    /// Join this run, which another controller drives, and take some of its hosts: the
    /// limits hold across both (an etcd --state only; docs/etcd.md).
    #[arg(long, value_name = "RUN", conflicts_with_all = ["runbook", "inventory", "limit"])]
    pub join: Option<String>,
    /// The inventory (Ansible INI or YAML, or TOML). Default: `inventory` in fleetbook.toml.
    #[arg(short, long, value_name = "INVENTORY")]
    pub inventory: Option<PathBuf>,
    #[command(flatten)]
    pub script: ScriptArgs,
    /// Only these hosts, as an Ansible pattern.
    #[arg(short, long, value_name = "PATTERN")]
    pub limit: Option<String>,
    #[command(flatten)]
    pub run: RunArgs,
}

// `fleetbook apply`: the variant's doc comment is its help.
#[derive(Args, Debug)]
pub struct ApplyCmd {
    /// The saved plan (JSON).
    pub plan: PathBuf,
    /// Values of secret parameters (they are not saved in plans).
    #[arg(short = 'p', long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    /// Another directory that `import` may load modules from (repeatable; the plan's own
    /// are used too).
    #[arg(long = "lib", value_name = "DIR")]
    pub lib_dirs: Vec<PathBuf>,
    #[command(flatten)]
    pub run: RunArgs,
}

// `fleetbook resume`: the variant's doc comment is its help.
#[derive(Args, Debug)]
pub struct ResumeCmd {
    /// The run id (`fleetbook runs` lists them).
    pub run_id: String,
    /// Re-run steps that a crash left in an unknown state.
    #[arg(long, conflicts_with = "skip_unknown")]
    pub retry_unknown: bool,
    /// Treat steps that a crash left in an unknown state as done.
    #[arg(long)]
    pub skip_unknown: bool,
    /// Go on even though the runbook or inventory changed since the run started.
    #[arg(long)]
    pub replan: bool,
    /// Parameter values (secret ones must be given again).
    #[arg(short = 'p', long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    /// Another directory that `import` may load modules from (repeatable).
    #[arg(long = "lib", value_name = "DIR")]
    pub lib_dirs: Vec<PathBuf>,
    #[command(flatten)]
    pub run: RunArgs,
}

// `fleetbook rollback`: the variant's doc comment is its help.
#[derive(Args, Debug)]
pub struct RollbackCmd {
    /// The run id (`fleetbook runs` lists them).
    pub run_id: String,
    /// Only these hosts of the run, as an Ansible pattern.
    #[arg(short, long, value_name = "PATTERN")]
    pub limit: Option<String>,
    /// Also undo steps a crash left running (their outcome is unknown).
    #[arg(long, conflicts_with = "skip_unknown")]
    pub undo_unknown: bool,
    /// Leave steps a crash left running as they are.
    #[arg(long)]
    pub skip_unknown: bool,
    /// Values of secret parameters (they are not saved in the journal).
    #[arg(short = 'p', long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    /// Another directory that `import` may load modules from (repeatable).
    #[arg(long = "lib", value_name = "DIR")]
    pub lib_dirs: Vec<PathBuf>,
    #[command(flatten)]
    pub run: RunArgs,
}

// `fleetbook status`: the variant's doc comment is its help.
#[derive(Args, Debug)]
pub struct StatusCmd {
    /// The run id (default: the newest run).
    pub run_id: Option<String>,
    #[command(flatten)]
    pub state: StateArgs,
    /// Output format: html is a self-contained report of the run (the plan with what
    /// happened laid over it, commands with their output tails, approvals, a recap).
    #[arg(short, long, value_enum, default_value_t = StatusFormat::Text)]
    pub format: StatusFormat,
    /// Write to this file instead of standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Follow the run as it goes (the live display, from the journal) until it ends, then
    /// print its status.
    #[arg(short, long, visible_alias = "live", conflicts_with = "format")]
    pub watch: bool,
}

// `fleetbook watch`: the variant's doc comment is its help.
#[derive(Args, Debug)]
pub struct WatchCmd {
    /// The run id (default: the newest run).
    pub run_id: Option<String>,
    #[command(flatten)]
    pub state: StateArgs,
    /// Let the page approve a waiting approval and abort the run.
    #[arg(long)]
    pub control: bool,
    /// Listen on this address (host:port) instead of 127.0.0.1 on a free port; needs
    /// --token-file.
    #[arg(long, value_name = "ADDR", requires = "token_file")]
    pub listen: Option<String>,
    /// Take the token from this file (its first line) instead of making a one-time one.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

// `fleetbook inventory`: the variant's doc comment is its help.
#[derive(Args, Debug)]
pub struct InventoryCmd {
    /// Inventory: Ansible INI or YAML (format by content), ansible-inventory JSON
    /// (`-` reads it from standard input), or TOML (.toml).
    #[arg(short, long, value_name = "INVENTORY")]
    pub inventory: PathBuf,
    /// Only these hosts, as an Ansible pattern.
    #[arg(short, long, value_name = "PATTERN")]
    pub limit: Option<String>,
    /// Every group and host with its merged, typed variables, as JSON.
    #[arg(long, group = "what")]
    pub list: bool,
    /// The group tree from GROUP (default all).
    #[arg(long, group = "what", value_name = "GROUP", num_args = 0..=1, default_missing_value = "all")]
    pub graph: Option<String>,
    /// One host's variables, as JSON.
    #[arg(long, group = "what", value_name = "HOST")]
    pub host: Option<String>,
    #[command(flatten)]
    pub vault: VaultArgs,
    /// Also read group_vars/ and host_vars/ of this directory (as Ansible reads the
    /// playbook's).
    #[arg(long, value_name = "DIR")]
    pub playbook_dir: Option<PathBuf>,
}

// `fleetbook exec`: the variant's doc comment is its help.
#[derive(Args, Debug)]
pub struct ExecCmd {
    /// The inventory (Ansible INI or YAML, or TOML). Default: `inventory` in fleetbook.toml.
    #[arg(short, long, value_name = "INVENTORY")]
    pub inventory: Option<PathBuf>,
    /// Hosts, as an Ansible pattern (group, host, glob, a:b, a:&b, a:!b).
    // The index is explicit: clap numbers a `last` positional first otherwise, and the
    // completion engine goes by the numbers.
    #[arg(index = 1)]
    pub pattern: String,
    /// Hosts at once [default: 10, or `forks` in fleetbook.toml].
    #[arg(short, long)]
    pub forks: Option<usize>,
    /// Group hosts whose output is identical (like clush -b).
    #[arg(short = 'b', long)]
    pub group_identical: bool,
    /// Kill the command on the host after this long (e.g. 30s, 5m).
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
    #[command(flatten)]
    pub ssh: SshArgs,
    /// The command (after --); its words are joined with spaces and run by sh on the host.
    #[arg(last = true, required = true, value_name = "CMD", index = 2)]
    pub command: Vec<String>,
}

/// How `fleetbook doc` prints.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DocFormat {
    /// For a terminal.
    Text,
    /// Markdown, for a README or a site.
    Md,
}

#[derive(Subcommand, Debug)]
pub enum LibCommand {
    /// Fetch every library of the dependency tree (git ones with the system git, into
    /// $XDG_CACHE_HOME/fleetbook/git) and write fleetbook.lock: versions, commits and the
    /// sha256 of every file.
    #[command(
        after_help = "Examples:\n  fleetbook lib fetch\n  fleetbook lib fetch --update   # a tag moved on purpose, or requirements changed"
    )]
    Fetch {
        /// Resolve every library again without the current lock (accepts a moved tag).
        #[arg(long)]
        update: bool,
    },
    /// Show the dependency tree: each library's version, source, requirers and `uses`.
    #[command(after_help = "Examples:\n  fleetbook lib list\n  fleetbook lib list --format json")]
    List {
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = ReportFormat::Text)]
        format: ReportFormat,
    },
    /// Copy every library, as locked, to DIR/NAME/VERSION/ for offline use: set
    /// FLEETBOOK_LIB_MIRROR=DIR (or `lib_mirror` in fleetbook.toml).
    #[command(
        after_help = "Examples:\n  fleetbook lib vendor vendor\n  FLEETBOOK_LIB_MIRROR=vendor fleetbook plan upgrade.rhai -i hosts"
    )]
    Vendor {
        /// The directory to copy the libraries into (created if missing).
        dir: PathBuf,
    },
}

/// Options of every command that runs a plan.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Do not ask for confirmation (required when standard input is not a terminal).
    #[arg(short, long)]
    pub yes: bool,
    /// Stream one JSON object per task transition on standard output.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub events: Option<EventsFormat>,
    /// Approve this `.approval(...)` in advance (repeatable).
    #[arg(long, value_name = "NAME")]
    pub approve: Vec<String>,
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub ssh: SshArgs,
}

/// Where the journal lives.
#[derive(clap::Args, Debug)]
pub struct StateArgs {
    /// State directory (journal and locks), the same rule for every command: this, or
    /// $FLEETBOOK_STATE; else the project's (`state` in the nearest fleetbook.toml above the
    /// current directory, default `.fleetbook` beside it); else $XDG_STATE_HOME/fleetbook
    /// (~/.local/state/fleetbook).
    /// An etcd cluster instead, shared by every controller and terminal:
    /// etcd://HOST:PORT[,HOST:PORT...]/PREFIX (docs/etcd.md).
    #[arg(long = "state", value_name = "DIR", env = "FLEETBOOK_STATE")]
    pub dir: Option<PathBuf>,
    #[command(flatten)]
    pub etcd: EtcdArgs,
}

/// How to reach an etcd store (`--state etcd://...`). The password is read from
/// $FLEETBOOK_ETCD_PASSWORD or a file, never from the command line, and never stored.
#[derive(clap::Args, Debug, Default)]
#[command(next_help_heading = "etcd store (--state etcd://...)")]
pub struct EtcdArgs {
    /// CA certificate (PEM) of the etcd servers: connect with TLS.
    #[arg(long, value_name = "FILE", env = "FLEETBOOK_ETCD_CA")]
    pub etcd_ca: Option<PathBuf>,
    /// Client certificate (PEM), for servers that check clients (with --etcd-key).
    #[arg(long, value_name = "FILE", env = "FLEETBOOK_ETCD_CERT")]
    pub etcd_cert: Option<PathBuf>,
    /// The client certificate's key (PEM).
    #[arg(long, value_name = "FILE", env = "FLEETBOOK_ETCD_KEY")]
    pub etcd_key: Option<PathBuf>,
    /// etcd user; the password comes from $FLEETBOOK_ETCD_PASSWORD or --etcd-password-file.
    #[arg(long, value_name = "USER", env = "FLEETBOOK_ETCD_USER")]
    pub etcd_user: Option<String>,
    /// File whose first line is the etcd user's password.
    #[arg(long, value_name = "FILE", env = "FLEETBOOK_ETCD_PASSWORD_FILE")]
    pub etcd_password_file: Option<PathBuf>,
    /// Lease TTL of this controller's lock and slots: how long a controller that died (or
    /// lost etcd) keeps them, and how soon one cut off from etcd stops starting tasks.
    #[arg(
        long,
        value_name = "DURATION",
        env = "FLEETBOOK_ETCD_TTL",
        default_value = "10s"
    )]
    pub etcd_ttl: String,
}

impl EtcdArgs {
    /// The access options, with the password read from where it may come from.
    pub fn access(&self) -> fleetbook_engine::Result<fleetbook_engine::store::EtcdAccess> {
        use fleetbook_engine::Error;
        let ttl = fleetbook_stdlib::duration::parse_duration(&self.etcd_ttl)
            .map_err(|e| Error::input(format!("--etcd-ttl: {e}")))?;
        let password = match (
            &self.etcd_password_file,
            std::env::var("FLEETBOOK_ETCD_PASSWORD"),
        ) {
            (Some(f), _) => {
                let text = std::fs::read_to_string(f).map_err(|e| {
                    Error::input(format!("--etcd-password-file {}: {e}", f.display()))
                })?;
                Some(text.lines().next().unwrap_or_default().to_string())
            }
            (None, Ok(p)) => Some(p),
            (None, Err(_)) => None,
        };
        Ok(fleetbook_engine::store::EtcdAccess {
            ca: self.etcd_ca.clone(),
            cert: self.etcd_cert.clone(),
            key: self.etcd_key.clone(),
            user: self.etcd_user.clone(),
            password,
            ttl: Some(ttl),
        })
    }
}

impl StateArgs {
    /// The state directory in force, once `fill` has applied the project file.
    pub fn resolve(&self) -> PathBuf {
        self.dir
            .clone()
            .unwrap_or_else(fleetbook_engine::project::user_state)
    }

    /// Where this machine keeps the whole output of each command: the state directory, or
    /// with an etcd store (a cluster, not a directory) the user's ($XDG_STATE_HOME/fleetbook).
    pub fn output_dir(&self) -> PathBuf {
        let dir = self.resolve();
        if fleetbook_engine::store::is_etcd(&dir) {
            fleetbook_engine::project::user_state().join("output")
        } else {
            dir.join("output")
        }
    }

    /// Opens the store in force: the journal in the state directory, or the etcd cluster.
    pub fn open(
        &self,
    ) -> fleetbook_engine::Result<std::sync::Arc<dyn fleetbook_engine::store::RunStore>> {
        fleetbook_engine::store::open_with(&self.resolve(), &self.etcd.access()?)
    }

    pub fn fill(&mut self, project: &fleetbook_engine::project::Project) {
        if self.dir.is_none() {
            self.dir = Some(project.state());
        }
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportFormat {
    /// For people.
    Text,
    /// For programs.
    Json,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusFormat {
    /// For people.
    Text,
    /// For programs.
    Json,
    /// A self-contained report page.
    Html,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventsFormat {
    Jsonl,
}

#[derive(clap::Args, Debug)]
pub struct SshArgs {
    /// Read this ssh config instead of ~/.ssh/config.
    #[arg(long, value_name = "FILE")]
    pub ssh_config: Option<PathBuf>,
    /// Accept and remember unknown host keys (host keys are checked strictly by default).
    #[arg(long)]
    pub accept_new_host_keys: bool,
    /// Give up connecting to a host after this long [default: 10s].
    #[arg(long, value_name = "DURATION")]
    pub connect_timeout: Option<String>,
    /// Commands in flight at once on one host (sshd allows 10 sessions by default)
    /// [default: 4].
    #[arg(long, value_name = "N")]
    pub max_per_host: Option<usize>,
    /// Key exchange for every host, as ssh's KexAlgorithms: curve25519-sha256 costs about
    /// 10 ms of CPU per connection, OpenSSH 9's default about 85 ms. Default: the host's
    /// `fleetbook_ssh_kex`, else what your ssh config chooses.
    #[arg(long, value_name = "ALGORITHMS")]
    pub ssh_kex: Option<String>,
    /// Keep each host's connection up this long idle after the command ends, for the next
    /// command to reuse (0: close at the end); sockets in a private directory (0700)
    /// [default: 60].
    #[arg(long, value_name = "SECONDS", env = "FLEETBOOK_PERSIST")]
    pub persist: Option<u64>,
}

impl SshArgs {
    pub fn connect_timeout(&self) -> &str {
        self.connect_timeout.as_deref().unwrap_or("10s")
    }

    pub fn max_per_host(&self) -> usize {
        self.max_per_host.unwrap_or(4)
    }

    pub fn persist(&self) -> u64 {
        self.persist.unwrap_or(60)
    }

    /// Fills what the command line left out from the project file.
    pub fn fill(&mut self, project: &fleetbook_engine::project::Project) {
        let s = &project.settings;
        if self.ssh_config.is_none() {
            self.ssh_config = s.ssh_config.as_deref().map(|p| project.path(p));
        }
        if self.connect_timeout.is_none() {
            self.connect_timeout = s.connect_timeout.clone();
        }
        if self.max_per_host.is_none() {
            self.max_per_host = s.max_per_host;
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct ScriptArgs {
    /// Set a runbook parameter (repeatable): --param version=2.0
    #[arg(short = 'p', long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    /// Another directory that `import` may load modules from (repeatable).
    #[arg(long = "lib", value_name = "DIR")]
    pub lib_dirs: Vec<PathBuf>,
    #[command(flatten)]
    pub vault: VaultArgs,
}

impl ScriptArgs {
    pub fn param_map(&self) -> Result<BTreeMap<String, String>, String> {
        let mut map = BTreeMap::new();
        for (k, v) in &self.params {
            if map.insert(k.clone(), v.clone()).is_some() {
                return Err(format!("--param {k} is given twice"));
            }
        }
        Ok(map)
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// For a terminal.
    Text,
    /// Every task and command (docs/plan-schema.md); what `apply` takes.
    Json,
    /// Graphviz: the role/step graph.
    Dot,
    /// Mermaid: the role/step graph.
    Mermaid,
    /// One self-contained page: hosts in flight per role against the limits, the schedule as
    /// a Gantt chart, the commands.
    Html,
}

fn parse_param(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, found {s:?}"))?;
    let k = k.trim();
    if k.is_empty()
        || !k
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
    {
        return Err(format!("invalid parameter name {k:?}"));
    }
    Ok((k.to_string(), v.to_string()))
}

/// Ansible Vault passwords (also read from ANSIBLE_VAULT_PASSWORD_FILE).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct VaultArgs {
    /// A file whose first line is the vault password.
    #[arg(long, value_name = "FILE")]
    pub vault_password_file: Vec<PathBuf>,
    /// A vault id and its password file, as ID@FILE (or FILE).
    #[arg(long, value_name = "ID@FILE")]
    pub vault_id: Vec<String>,
}

#[cfg(test)]
mod tests {
    /// The workspace, where docs/ is.
    fn root() -> std::path::PathBuf {
        let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        here.parent().unwrap_or(here).to_path_buf()
    }

    fn doc(name: &str) -> String {
        let path = root().join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// The section of docs/cli.md under `### \`fleetbook NAME\``, up to the next heading.
    fn section<'a>(text: &'a str, name: &str) -> Option<&'a str> {
        let head = format!("### `fleetbook {name}`\n");
        let start = text.find(&head)? + head.len();
        let end = text[start..].find("\n#").map_or(text.len(), |e| start + e);
        Some(&text[start..end])
    }

    /// Every command that runs something, by its name after `fleetbook`: the subcommands,
    /// and for a group such as `lib`, each of its own (`lib fetch`).
    fn commands(cmd: &clap::Command) -> Vec<(String, &clap::Command)> {
        let mut out = Vec::new();
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            let nested: Vec<&clap::Command> = sub
                .get_subcommands()
                .filter(|s| s.get_name() != "help")
                .collect();
            if nested.is_empty() {
                out.push((sub.get_name().to_string(), sub));
            }
            for n in nested {
                out.push((format!("{} {}", sub.get_name(), n.get_name()), n));
            }
        }
        out
    }

    /// docs/cli.md's "Commands and options" made from the command tree, for
    /// `FLEETBOOK_BLESS=1` to write when options were added.
    fn reference(cmd: &clap::Command) -> String {
        let mut out = String::new();
        for (name, sub) in commands(cmd) {
            let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
            out.push_str(&format!(
                "### `fleetbook {name}`\n\n{about}\n\n| option | meaning |\n| --- | --- |\n"
            ));
            for a in sub.get_arguments() {
                if a.is_global_set() || a.is_hide_set() || a.get_id() == "help" {
                    continue;
                }
                let value = a
                    .get_value_names()
                    .map(|v| {
                        v.iter()
                            .map(|x| x.to_string())
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .unwrap_or_default();
                let name = match (a.get_short(), a.get_long()) {
                    (Some(s), Some(l)) => format!("-{s}, --{l}"),
                    (None, Some(l)) => format!("--{l}"),
                    _ => String::new(),
                };
                let takes_value = a.get_num_args().is_some_and(|n| n.takes_values());
                let shown = match (name.is_empty(), takes_value && !value.is_empty()) {
                    (true, _) => value,
                    (false, true) => format!("{name} {value}"),
                    (false, false) => name,
                };
                let help = match a.get_long() {
                    Some("state") => "State directory (journal and locks); the rule for where it \
                                      is by default is in [journal.md](journal.md); or an etcd \
                                      cluster, etcd://HOST:PORT[,...]/PREFIX ([etcd.md](etcd.md))"
                        .to_string(),
                    _ => a
                        .get_help()
                        .map(|h| h.to_string().replace('\n', " ").replace('|', "\\|"))
                        .unwrap_or_default(),
                };
                out.push_str(&format!("| `{shown}` | {help} |\n"));
            }
            out.push('\n');
        }
        out
    }

    // 21 of 61 options were in no doc (8 of `apply`'s and `resume`'s among them).
    #[test]
    fn cli_md_documents_every_option_of_every_subcommand() {
        let mut text = doc("docs/cli.md");
        if std::env::var_os("FLEETBOOK_BLESS").is_some() {
            let mut cmd = super::command();
            cmd.build();
            let at = text
                .find("### `fleetbook ")
                .expect("docs/cli.md: Commands and options");
            text = format!("{}{}", &text[..at], reference(&cmd).trim_end());
            text.push('\n');
            let path = root().join("docs/cli.md");
            std::fs::write(path, &text).unwrap();
        }
        let mut cmd = super::command();
        cmd.build();
        let mut checked = 0;
        for (name, sub) in commands(&cmd) {
            let name = name.as_str();
            let sec = section(&text, name).unwrap_or_else(|| {
                panic!("docs/cli.md has no section \"### `fleetbook {name}`\" in \"Commands and options\"")
            });
            for arg in sub.get_arguments() {
                if arg.is_hide_set() || arg.get_id() == "help" || arg.get_id() == "version" {
                    continue;
                }
                let shown = match arg.get_long() {
                    Some(long) if arg.is_global_set() => {
                        // Global options are documented once, before the commands.
                        assert!(
                            text.contains(&format!("--{long}")),
                            "docs/cli.md lacks the global option --{long}"
                        );
                        continue;
                    }
                    Some(long) => format!("--{long}"),
                    None => arg
                        .get_value_names()
                        .and_then(|v| v.first())
                        .map(|v| v.to_string())
                        .unwrap_or_else(|| arg.get_id().to_string().to_uppercase()),
                };
                assert!(
                    sec.lines().any(|l| l.starts_with(&format!("| `{shown}"))
                        || l.starts_with(&format!(
                            "| `-{}, {shown}",
                            arg.get_short().unwrap_or(' ')
                        ))),
                    "docs/cli.md, `fleetbook {name}`: {shown} is not documented \
                     (FLEETBOOK_BLESS=1 cargo test -p fleetbook-cli cli_md rewrites the section):\n{sec}"
                );
                if let Some(short) = arg.get_short() {
                    assert!(
                        sec.contains(&format!("`-{short}, --")),
                        "`fleetbook {name}`: -{short}"
                    );
                }
                checked += 1;
            }
            // And nothing documented that the command does not take.
            for line in sec.lines().filter(|l| l.starts_with("| `-")) {
                let long = line
                    .split("--")
                    .nth(1)
                    .and_then(|l| l.split([' ', '`']).next())
                    .unwrap_or("");
                assert!(
                    sub.get_arguments().any(|a| a.get_long() == Some(long)),
                    "docs/cli.md documents --{long} for `fleetbook {name}`, which has no such option"
                );
            }
        }
        assert!(checked > 60, "only {checked} options checked");
    }

    // The help of each subcommand documents every option it takes (`--lib` had no text in
    // apply and resume).
    #[test]
    fn every_option_has_help_text() {
        let mut cmd = super::command();
        cmd.build();
        for sub in cmd.get_subcommands() {
            for arg in sub.get_arguments().filter(|a| !a.is_hide_set()) {
                assert!(
                    arg.get_help()
                        .is_some_and(|h| !h.to_string().trim().is_empty()),
                    "`fleetbook {} --help`: {} has no help text",
                    sub.get_name(),
                    arg.get_id()
                );
            }
        }
    }
}
