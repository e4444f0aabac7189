//! Exit codes, decided here and nowhere else, and how errors are printed.

use fleetbook_engine::Error;
use miette::{GraphicalTheme, MietteHandlerOpts};
use std::io::{IsTerminal, Write};

/// The command did what was asked.
pub const OK: i32 = 0;
/// fleetbook itself failed (a bug or the environment), not the input.
pub const INTERNAL: i32 = 1;
/// Bad input: a runbook, inventory, parameter, pattern or argument the user must fix.
pub const BAD_INPUT: i32 = 2;
/// A run halted: failures past `max_failures`, a failed gate or pre-check.
pub const HALTED: i32 = 3;
/// A run was stopped by the operator (Ctrl-C).
pub const ABORTED: i32 = 4;
/// A run finished, but some hosts failed within the tolerance (or `exec` failed somewhere).
pub const FAILURES: i32 = 5;
/// The fleet is locked by another run (or a stale lock waits for `fleetbook unlock`).
pub const LOCKED: i32 = 6;
/// A run lost its fleet lock or could not write its journal: it stopped starting tasks.
pub const STORE: i32 = 7;

/// Every exit status and what it means: the help of every command, the man pages and the
/// table in docs/cli.md are made from this (a test checks the docs).
pub const STATUSES: &[(i32, &str)] = &[
    (OK, "success"),
    (
        INTERNAL,
        "fleetbook failed: a bug or the environment (standard output cannot be written, an \
         unusable or read-only journal, `--events` that cannot be written)",
    ),
    (
        BAD_INPUT,
        "bad input to fix: a runbook, inventory, parameter, pattern or argument; a refused \
         `resume` or `apply`; `--yes` missing off a terminal",
    ),
    (
        HALTED,
        "halted: failures past the failure budget, a failed pre-check, gate or approval, a \
         changed host key, a host leased by another run; `rollback`: an undo failed",
    ),
    (
        ABORTED,
        "aborted by the operator: Ctrl-C, `fleetbook abort`, or \"no\" at the confirmation",
    ),
    (
        FAILURES,
        "finished, but some hosts failed within the tolerance; `exec`: the command failed on \
         some host",
    ),
    (
        LOCKED,
        "the fleet is locked by another run (or a stale lock waits for `fleetbook unlock`)",
    ),
    (
        STORE,
        "the run lost its fleet lock or could not write its journal, and stopped starting \
         tasks (`resume` goes on)",
    ),
];

/// The statuses a subcommand can exit with.
pub fn statuses_of(command: &str) -> &'static [i32] {
    match command {
        "run" | "apply" | "resume" | "rollback" => &[
            OK, INTERNAL, BAD_INPUT, HALTED, ABORTED, FAILURES, LOCKED, STORE,
        ],
        "exec" => &[OK, INTERNAL, BAD_INPUT, FAILURES],
        "unlock" => &[OK, INTERNAL, BAD_INPUT, LOCKED],
        _ => &[OK, INTERNAL, BAD_INPUT],
    }
}

pub fn meaning(code: i32) -> &'static str {
    STATUSES
        .iter()
        .find(|(c, _)| *c == code)
        .map_or("", |(_, m)| m)
}

/// The "Exit status:" section of a subcommand's help (all statuses for `None`).
pub fn help_section(command: Option<&str>) -> String {
    let codes: Vec<i32> = match command {
        Some(c) => statuses_of(c).to_vec(),
        None => STATUSES.iter().map(|(c, _)| *c).collect(),
    };
    let mut out = String::from("Exit status:");
    for c in codes {
        out.push_str(&format!("\n  {c}  {}", meaning(c)));
    }
    out
}

/// `--color`: `Some(true)` always, `Some(false)` never, `None` auto. Set once, before the
/// arguments are parsed (clap's own help and errors are coloured by it too).
static COLOR: std::sync::OnceLock<Option<bool>> = std::sync::OnceLock::new();

/// Reads `--color WHEN` (or `--color=WHEN`) from the raw arguments; `NO_COLOR` (set and not
/// empty) means never unless `--color` says otherwise.
pub fn set_color(args: &[std::ffi::OsString]) {
    let mut choice = None;
    let mut it = args.iter().map(|a| a.to_string_lossy());
    while let Some(a) = it.next() {
        if a == "--" {
            break;
        }
        let value = match a.strip_prefix("--color") {
            Some("") => it.next().map(|v| v.into_owned()),
            Some(v) => v.strip_prefix('=').map(str::to_string),
            None => None,
        };
        match value.as_deref() {
            Some("always") => choice = Some(true),
            Some("never") => choice = Some(false),
            Some(_) => choice = None,
            None => {}
        }
    }
    let no_color = matches!(std::env::var_os("NO_COLOR"), Some(v) if !v.is_empty());
    let _ = COLOR.set(choice.or(no_color.then_some(false)));
}

/// Whether to colour output to a stream that is (or is not) a terminal.
pub fn color(is_terminal: bool) -> bool {
    COLOR.get().copied().flatten().unwrap_or(is_terminal)
}

pub fn clap_color() -> clap::ColorChoice {
    match COLOR.get().copied().flatten() {
        Some(true) => clap::ColorChoice::Always,
        Some(false) => clap::ColorChoice::Never,
        None => clap::ColorChoice::Auto,
    }
}

pub fn install_report_handler() {
    let _ = miette::set_hook(Box::new(|_| {
        let mut opts = MietteHandlerOpts::new().terminal_links(false).width(100);
        opts = if color(std::io::stderr().is_terminal()) {
            opts.color(true).graphical_theme(GraphicalTheme::unicode())
        } else {
            opts.color(false)
                .graphical_theme(GraphicalTheme::unicode_nocolor())
        };
        Box::new(opts.build())
    }));
}

/// Prints the error with its source snippet and returns the exit code it calls for.
pub fn report(err: Error) -> i32 {
    let code = code_of(&err);
    eprintln!("{:?}", miette::Report::new(err));
    code
}

/// The exit status an error calls for.
pub fn code_of(err: &Error) -> i32 {
    match err {
        fleetbook_engine::Error::Locked { .. } => LOCKED,
        e if e.is_input() => BAD_INPUT,
        _ => INTERNAL,
    }
}

/// Writes `text` to standard output. A closed pipe (`fleetbook runs | head -1`) ends the
/// command quietly, as Unix tools do; any other failure (`> /dev/full`) is an error.
pub fn print(text: &str) -> fleetbook_engine::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(OK),
        Err(e) => Err(stdout_error(&e)),
    }
}

pub fn stdout_error(e: &std::io::Error) -> Error {
    Error::Internal(format!("cannot write to standard output: {e}"))
}

/// Parses the command line. Help and version go through [`print`], so that `--help >
/// /dev/full` fails as any other output would.
pub fn parse_args<T: clap::FromArgMatches>(cmd: clap::Command) -> T {
    let parsed = cmd.try_get_matches().and_then(|m| T::from_arg_matches(&m));
    match parsed {
        Ok(args) => args,
        Err(e) if e.use_stderr() => e.exit(),
        Err(e) => {
            let text = if color(std::io::stdout().is_terminal()) {
                e.render().ansi().to_string()
            } else {
                e.render().to_string()
            };
            std::process::exit(match print(&text) {
                Ok(()) => OK,
                Err(err) => report(err),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> std::path::PathBuf {
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }

    /// The table in docs/cli.md: every status, what it means, and the commands that return it.
    pub fn markdown_table(commands: &[String]) -> String {
        let mut out = String::from("| status | meaning | returned by |\n| --- | --- | --- |\n");
        for (code, meaning) in STATUSES {
            let by: Vec<String> = commands
                .iter()
                .filter(|c| statuses_of(c).contains(code))
                .map(|c| format!("`{c}`"))
                .collect();
            let by = if by.len() == commands.len() {
                "every command".to_string()
            } else {
                by.join(", ")
            };
            out.push_str(&format!("| {code} | {meaning} | {by} |\n"));
        }
        out
    }

    fn subcommands() -> Vec<String> {
        crate::cli::command()
            .get_subcommands()
            .map(|s| s.get_name().to_string())
            .collect()
    }

    // journal.md listed 0-6, cli.md lacked 6, README and running.md lacked 1, `run --help`
    // lacked 1 and 6: one table now, from this file, and every other mention agrees with it.
    #[test]
    fn every_doc_listing_exit_statuses_agrees_with_the_code() {
        let cli = std::fs::read_to_string(root().join("docs/cli.md")).unwrap();
        let (start, end) = (
            "<!-- exit-status: generated from src/exit.rs -->\n",
            "<!-- end exit-status -->",
        );
        let at = cli.find(start).expect("docs/cli.md: exit-status marker") + start.len();
        let table = &cli[at..at + cli[at..].find(end).expect("docs/cli.md: end marker")];
        let want = markdown_table(&subcommands());
        if table != want && std::env::var_os("FLEETBOOK_BLESS").is_some() {
            let fixed = cli.replacen(table, &want, 1);
            std::fs::write(root().join("docs/cli.md"), fixed).unwrap();
            return;
        }
        assert_eq!(
            table, want,
            "docs/cli.md's exit-status table differs from src/exit.rs; \
             FLEETBOOK_BLESS=1 cargo test --bin fleetbook exit_statuses rewrites it"
        );
        let mut docs = vec![root().join("README.md")];
        for e in std::fs::read_dir(root().join("docs")).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "md") {
                docs.push(p);
            }
        }
        // The first word of each meaning names the status in prose: "3 halted", "5 finished".
        let word = |code: i32| {
            meaning(code)
                .split(|c: char| !c.is_alphabetic())
                .next()
                .unwrap()
                .to_string()
        };
        let mut mentions = 0;
        for path in docs {
            let text = std::fs::read_to_string(&path).unwrap();
            let text = text.replace(table, "");
            let mut in_exit_section = false;
            for (n, line) in text.lines().enumerate() {
                if line.starts_with('#') {
                    in_exit_section = line.to_lowercase().contains("exit");
                }
                assert!(
                    !(in_exit_section
                        && line.starts_with("| ")
                        && line[2..].starts_with(|c: char| c.is_ascii_digit())),
                    "{}:{}: a second exit-status table; link to docs/cli.md#exit-status instead",
                    path.display(),
                    n + 1
                );
                let words: Vec<&str> = line.split_whitespace().collect();
                for pair in words.windows(2) {
                    let Ok(code) = pair[0].trim_start_matches('(').parse::<i32>() else {
                        continue;
                    };
                    let w = pair[1].trim_end_matches([',', ';', ':', ')']);
                    if let Some((named, _)) =
                        STATUSES.iter().find(|(c, _)| word(*c) == w && *c != OK)
                    {
                        mentions += 1;
                        assert_eq!(
                            code,
                            *named,
                            "{}:{}: {code} {w}, but {w} is status {named}",
                            path.display(),
                            n + 1
                        );
                    }
                }
            }
        }
        assert!(mentions >= 3, "only {mentions} status mentions found");
    }

    // `run --help` listed 0, 2-5: not 1 nor 6; exec, apply, resume and rollback listed none.
    #[test]
    fn every_help_lists_the_statuses_its_command_returns() {
        let mut cmd = crate::cli::command();
        for name in subcommands() {
            let sub = cmd.find_subcommand_mut(&name).unwrap();
            let help = sub.render_long_help().to_string();
            let listed: Vec<i32> = help
                .split("Exit status:")
                .nth(1)
                .unwrap_or_else(|| panic!("`fleetbook {name} --help` has no exit status"))
                .lines()
                .filter_map(|l| l.strip_prefix("  ")?.split("  ").next()?.parse().ok())
                .collect();
            assert_eq!(
                listed,
                statuses_of(&name),
                "`fleetbook {name} --help`:\n{help}"
            );
            assert!(listed.starts_with(&[OK, INTERNAL, BAD_INPUT]), "{name}");
        }
        assert!(statuses_of("run").contains(&LOCKED) && statuses_of("exec").contains(&FAILURES));
    }

    #[test]
    fn color_choice() {
        let args = |a: &[&str]| -> Vec<std::ffi::OsString> { a.iter().map(|s| s.into()).collect() };
        set_color(&args(&["fleetbook", "plan", "--color=never", "x"]));
        assert!(!color(true));
        assert_eq!(clap_color(), clap::ColorChoice::Never);
    }
}
