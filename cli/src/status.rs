//! Exit statuses: each code, what it means, and which commands return it. The binary
//! decides which status an outcome gets (src/exit.rs); the help of every command, the man
//! pages and docs/cli.md's table are made from this table.

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
         some host; `test`: a test failed",
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
        "exec" | "test" => &[OK, INTERNAL, BAD_INPUT, FAILURES],
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The workspace, where README.md and docs/ are.
    fn root() -> std::path::PathBuf {
        let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        here.parent().unwrap_or(here).to_path_buf()
    }

    /// The table in docs/cli.md: every status, what it means, and the commands that return it.
    fn markdown_table(commands: &[String]) -> String {
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
        crate::command()
            .get_subcommands()
            .map(|s| s.get_name().to_string())
            .collect()
    }

    // journal.md listed 0-6, cli.md lacked 6, README and running.md lacked 1, `run --help`
    // lacked 1 and 6: one table now, from cli/src/status.rs, and every other mention agrees with it.
    #[test]
    fn every_doc_listing_exit_statuses_agrees_with_the_code() {
        let cli = std::fs::read_to_string(root().join("docs/cli.md")).unwrap();
        let (start, end) = (
            "<!-- exit-status: generated from cli/src/status.rs -->\n",
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
            "docs/cli.md's exit-status table differs from cli/src/status.rs; \
             FLEETBOOK_BLESS=1 cargo test -p fleetbook-cli exit_statuses rewrites it"
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
        let mut cmd = crate::command();
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
}
