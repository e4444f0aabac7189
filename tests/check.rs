use crate::support::{fleetbook, root};

/// Every shipped runbook and example compiles: they cannot rot.
#[test]
fn every_shipped_runbook_checks() {
    let mut seen = 0;
    for dir in ["runbooks", "examples"] {
        for entry in walk(&root().join(dir)) {
            // Libraries (runbooks/lib/) are imported, and tests are run by `fleetbook test`
            // (tests/testing.rs), not checked as runbooks.
            let name = entry.file_name().unwrap().to_string_lossy().to_string();
            let library = entry.parent().is_some_and(|p| p.ends_with("lib"));
            if entry.extension().is_some_and(|e| e == "rhai")
                && !library
                && !name.ends_with("_test.rhai")
            {
                let out = fleetbook(&["check"])
                    .arg(entry.display().to_string())
                    .code(0);
                assert!(out.stdout.starts_with("ok: runbook"), "{}", out.stdout);
                seen += 1;
            }
        }
    }
    assert!(seen >= 5, "found only {seen} runbooks");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn check_reports_roles_steps_and_params() {
    let out = fleetbook(&["check", "runbooks/jiocloud-rolling.rhai"]).code(0);
    assert_eq!(
        out.stdout,
        "ok: runbook \"jiocloud-rolling\" (runbooks/jiocloud-rolling.rhai): 3 steps, 7 parameters, roles controller, compute\n"
    );
    assert_eq!(out.stderr, "");
}

#[test]
fn help_has_examples() {
    let out = fleetbook(&["plan", "--help"]).code(0);
    assert!(out.stdout.contains("Examples:"), "{}", out.stdout);
    assert!(out.stdout.contains("--limit"), "{}", out.stdout);
}

/// Shell completions and the manual page cover every subcommand; bash accepts the script.
#[test]
fn completions_and_man_page_cover_every_subcommand() {
    let subcommands = [
        "check", "plan", "run", "apply", "resume", "status", "runs", "abort", "approve", "unlock",
        "exec",
    ];
    // The scripts register the dynamic completer: fleetbook itself answers.
    let bash = fleetbook(&["completions", "bash"]).code(0).stdout;
    assert!(bash.contains("COMPLETE=\"bash\""), "{bash}");
    assert!(
        bash.contains("-F _clap_complete_fleetbook fleetbook"),
        "{bash}"
    );
    let zsh = fleetbook(&["completions", "zsh"]).code(0).stdout;
    assert!(zsh.contains("#compdef fleetbook"), "{zsh}");
    let offered = fleetbook(&["--", "fleetbook", ""])
        .env("COMPLETE", "bash")
        .env("_CLAP_COMPLETE_INDEX", "1")
        .env("_CLAP_IFS", "\n")
        .code(0)
        .stdout;
    let man = fleetbook(&["man"]).code(0).stdout;
    assert!(man.contains(".TH fleetbook 1"), "{man}");
    for s in subcommands {
        assert!(offered.lines().any(|l| l == s), "completion: {s}");
        assert!(man.contains(&format!("fleetbook\\-{s}")), "man: {s}");
    }
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("fleetbook.bash");
    std::fs::write(&script, &bash).unwrap();
    let syntax = std::process::Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        syntax.status.success(),
        "{}",
        String::from_utf8_lossy(&syntax.stderr)
    );
    let out = fleetbook(&["completions", "tcsh"]).code(2);
    assert!(
        out.stderr.contains("invalid value 'tcsh'"),
        "{}",
        out.stderr
    );
}
