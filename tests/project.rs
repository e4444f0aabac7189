//! The project file and one rule for the state directory (issue 18): `fleetbook.toml`
//! found by walking up, command-line options over it, `fleetbook config` saying where each
//! value comes from, and runs found from any directory.

use crate::support::fleetbook;
use std::path::Path;

/// A project: fleetbook.toml naming a local inventory of w1 and w2, a runbook that records
/// the version it runs with, and a subdirectory to ask from.
fn project(toml: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("inv")).unwrap();
    std::fs::create_dir_all(d.join("deep/er")).unwrap();
    std::fs::write(
        d.join("inv/hosts"),
        format!(
            "[web]\nw1 ansible_connection=local dir={0}\nw2 ansible_connection=local dir={0}\n",
            d.display()
        ),
    )
    .unwrap();
    std::fs::write(
        d.join("upgrade.rhai"),
        "let rb = runbook(\"up\");\nlet v = param(\"version\", \"1.0\");\n\
         rb.step(\"s\", |h| h.run(`echo ${h.name} ${v} >> ${h.var(\"dir\")}/log`));\nrb\n",
    )
    .unwrap();
    std::fs::write(d.join("fleetbook.toml"), toml).unwrap();
    dir
}

fn log(d: &Path) -> String {
    std::fs::read_to_string(d.join("log")).unwrap_or_default()
}

/// `fleetbook run upgrade.rhai` with nothing else: the inventory, limit and parameters come
/// from fleetbook.toml; options on the command line win; `status` and `runs` find the run
/// from a directory below, without flags.
#[test]
fn the_project_file_sets_defaults_and_the_command_line_wins() {
    let dir = project(
        "inventory = \"inv/hosts\"\nlimit = \"w1\"\n[params]\nversion = \"2.0\"\nunused = 1\n",
    );
    let d = dir.path();
    fleetbook(&["run", "upgrade.rhai", "--yes"])
        .in_dir(d)
        .code(0);
    assert_eq!(log(d), "w1 2.0\n");
    fleetbook(&[
        "run",
        "upgrade.rhai",
        "--yes",
        "--limit",
        "w2",
        "-p",
        "version=3.0",
    ])
    .in_dir(d)
    .code(0);
    assert_eq!(log(d), "w1 2.0\nw2 3.0\n");
    assert!(d.join(".fleetbook/journal.sqlite").exists());

    let runs = fleetbook(&["runs", "--format", "json"])
        .in_dir(&d.join("deep/er"))
        .code(0);
    let runs: serde_json::Value = serde_json::from_str(&runs.stdout).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 2);
    let status = fleetbook(&["status"]).in_dir(&d.join("deep/er")).code(0);
    assert!(status.stdout.contains("succeeded"), "{}", status.stdout);
}

/// `fleetbook config` names each value in force and where it came from.
#[test]
fn config_says_where_each_value_comes_from() {
    let dir = project("inventory = \"inv/hosts\"\nforks = 3\nstate = \"var/state\"\n[params]\nversion = \"2.0\"\n");
    let d = dir.path();
    let out = fleetbook(&["config", "--format", "json"])
        .in_dir(&d.join("deep"))
        .code(0);
    let c: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let setting = |name: &str| {
        c["settings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap()
            .clone()
    };
    let root = std::fs::canonicalize(d).unwrap();
    assert_eq!(setting("forks")["value"], "3");
    assert_eq!(setting("forks")["source"], "project_file");
    assert_eq!(setting("max_per_host")["source"], "default");
    assert_eq!(
        setting("state")["value"],
        root.join("var/state").display().to_string()
    );
    assert_eq!(
        setting("inventory")["value"],
        root.join("inv/hosts").display().to_string()
    );
    assert_eq!(c["params"]["version"], "2.0");
    let out = fleetbook(&["config", "--state", "/srv/x"])
        .in_dir(d)
        .code(0);
    assert!(
        out.stdout.contains("/srv/x") && out.stdout.contains("(command line)"),
        "{}",
        out.stdout
    );
}

/// Outside any project, runs go to the user's state directory ($XDG_STATE_HOME/fleetbook),
/// so a run started in one directory is found from another.
#[test]
fn without_a_project_runs_are_found_from_any_directory() {
    let dir = project("");
    let d = dir.path();
    std::fs::remove_file(d.join("fleetbook.toml")).unwrap();
    let xdg = tempfile::tempdir().unwrap();
    let xdg = xdg.path().display().to_string();
    let out = fleetbook(&["runs"])
        .in_dir(d)
        .env("XDG_STATE_HOME", &xdg)
        .code(0);
    assert!(out.stdout.starts_with("no runs recorded"), "{}", out.stdout);
    fleetbook(&["run", "upgrade.rhai", "-i", "inv/hosts", "--yes"])
        .in_dir(d)
        .env("XDG_STATE_HOME", &xdg)
        .code(0);
    let elsewhere = tempfile::tempdir().unwrap();
    let out = fleetbook(&["runs"])
        .in_dir(elsewhere.path())
        .env("XDG_STATE_HOME", &xdg)
        .code(0);
    assert!(out.stdout.contains("up "), "{}", out.stdout);
    assert!(Path::new(&xdg).join("fleetbook/journal.sqlite").exists());
    let out = fleetbook(&["run", "upgrade.rhai", "--yes"])
        .in_dir(d)
        .env("XDG_STATE_HOME", &xdg)
        .code(2);
    assert!(out.stderr.contains("no inventory given"), "{}", out.stderr);
}

/// A mistake in fleetbook.toml names the file, line and column, and nothing runs.
#[test]
fn a_bad_project_file_is_an_error_at_its_line() {
    let dir = project("inventory = \"inv/hosts\"\nforcks = 3\n");
    let out = fleetbook(&["plan", "upgrade.rhai"])
        .in_dir(dir.path())
        .code(2);
    assert!(out.stderr.contains("fleetbook.toml:2:1"), "{}", out.stderr);
    assert!(out.stderr.contains("forcks"), "{}", out.stderr);
}

/// A fleetbook.toml others may write to is ignored with a warning (it could point `lib` at
/// their modules); the file's `limit` is for its own inventory, not for `-i OTHER`.
#[test]
fn an_untrusted_project_file_is_ignored_and_its_limit_stays_with_its_inventory() {
    use std::os::unix::fs::PermissionsExt;
    let dir = project("inventory = \"inv/hosts\"\nlimit = \"w1\"\n");
    let d = dir.path();
    std::fs::write(d.join("other"), "[web]\nw2\n").unwrap();
    let out = fleetbook(&["plan", "upgrade.rhai"]).in_dir(d).code(0);
    assert!(out.stderr.contains("--limit w1 (from "), "{}", out.stderr);
    let out = fleetbook(&["plan", "upgrade.rhai", "-i", "other"])
        .in_dir(d)
        .code(0);
    assert!(out.stdout.contains("w2"), "{}", out.stdout);
    assert!(!out.stderr.contains("--limit"), "{}", out.stderr);

    std::fs::set_permissions(
        d.join("fleetbook.toml"),
        std::fs::Permissions::from_mode(0o666),
    )
    .unwrap();
    let out = fleetbook(&["plan", "upgrade.rhai"]).in_dir(d).code(2);
    assert!(out.stderr.contains("warning: ignoring"), "{}", out.stderr);
    assert!(out.stderr.contains("others may write"), "{}", out.stderr);
    assert!(out.stderr.contains("no inventory given"), "{}", out.stderr);
}
