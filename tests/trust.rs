//! Regression tests for issue 10 ("never do more than the operator asked"), each named after
//! what broke, for the runbook compiler and the planner.

use crate::support::{flat, fleetbook, Outcome};
use std::path::{Path, PathBuf};

/// A runbook and an inventory written to a fresh directory.
struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new(runbook: &str, inventory: &str) -> Case {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("rb.rhai"), runbook).unwrap();
        std::fs::write(dir.path().join("hosts"), inventory).unwrap();
        Case { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn file(&self, name: &str, text: &str) -> &Case {
        std::fs::write(self.path(name), text).unwrap();
        self
    }

    fn cmd(&self, verb: &str, args: &[&str]) -> crate::support::Fleetbook {
        let mut c = fleetbook(&[verb])
            .arg(self.path("rb.rhai").display().to_string())
            .arg("-i")
            .arg(self.path("hosts").display().to_string());
        for a in args {
            c = c.arg(*a);
        }
        c
    }

    fn plan(&self, args: &[&str], code: i32) -> Outcome {
        self.cmd("plan", args).code(code)
    }
}

fn local_inventory(dir: &Path, hosts: &str) -> String {
    format!(
        "[web]\n{hosts} ansible_connection=local dir={}\n",
        dir.display()
    )
}

// A `.when` that returned the string "false" counted as true and ran the step.
#[test]
fn a_when_that_returns_a_string_is_refused_and_runs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("upgraded");
    let case = Case::new(
        &format!(
            "let rb = runbook(\"x\");\nrb.step(\"upgrade\", |h| h.run(\"touch {}\"))\n  .when(|h| h.var(\"do_upgrade\", \"false\"));\nrb\n",
            marker.display()
        ),
        &local_inventory(dir.path(), "l1"),
    );
    let out = case.plan(&[], 2);
    let err = flat(&out.stderr);
    assert!(
        err.contains("step \"upgrade\": .when(...) for host l1 must return true or false, but it returned string \"false\""),
        "{err}"
    );
    assert!(err.contains("rb.rhai:3:4"), "names the line: {err}");
    let out = case.cmd("run", &["--yes"]).code(2);
    assert!(
        out.stderr.contains("must return true or false"),
        "{}",
        out.stderr
    );
    assert!(!marker.exists(), "the step ran");
}

// A gate closure's non-bool value counted as "holds".
#[test]
fn a_gate_that_returns_a_number_is_refused() {
    let case = Case::new(
        "let rb = runbook(\"x\");\nrb.order([\"a\", \"b\"]);\nrb.step(\"s\", |h| h.run(\"true\"));\nrb.gate_after(\"a\", \"healthy\", || 1);\nrb\n",
        "[a]\na1\n[b]\nb1\n",
    );
    let err = flat(&case.plan(&[], 2).stderr);
    assert!(
        err.contains("step \"healthy\": the gate must return true or false, but it returned i64 1"),
        "{err}"
    );
}

// An import cycle overflowed the stack (exit 134).
#[test]
fn an_import_cycle_is_an_error_naming_each_import() {
    let case = Case::new(
        "import \"a\" as a;\nlet rb = runbook(\"x\");\nrb\n",
        "[web]\nw1\n",
    );
    case.file("a.rhai", "import \"b\" as b;\nfn x() { 1 }\n")
        .file("b.rhai", "// b\nimport \"a\" as a;\n");
    let out = fleetbook(&["check"])
        .arg(case.path("rb.rhai").display().to_string())
        .code(2);
    assert!(
        flat(&out.stderr).contains(
            "import cycle: a.rhai -> b.rhai -> a.rhai (a.rhai:1: import \"b\"; b.rhai:2: import \"a\")"
        ),
        "{}",
        out.stderr
    );
    let selfish = Case::new("import \"rb\" as me;\nlet rb = runbook(\"x\");\nrb\n", "");
    let out = fleetbook(&["check"])
        .arg(selfish.path("rb.rhai").display().to_string())
        .code(2);
    let err = flat(&out.stderr);
    assert!(err.contains("import cycle:"), "{err}");
    assert!(err.contains("rb.rhai:1: import \"rb\")"), "{err}");
}

// Under --limit, hosts("rpc") in a hook was empty and the README's example failed.
#[test]
fn hosts_of_a_role_see_the_whole_inventory_under_limit() {
    let case = Case::new(
        "let rb = runbook(\"x\");\nrb.once(\"first\", || hosts(\"db\")[0].run(\"stop-writes\"));\nrb.step(\"s\", |h| h.run(\"true\")).roles([\"web\"]);\nrb.order([\"db\", \"web\"]);\nrb\n",
        "[db]\ndb1\n[web]\nw1\nw2\n",
    );
    let out = case.plan(&["--limit", "w1", "--format", "json"], 0);
    let plan: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let hosts: Vec<&str> = plan["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert_eq!(hosts, ["w1"], "--limit still decides who is acted on");
    let once = &plan["tasks"][0];
    assert_eq!(once["commands"][0], "db1: stop-writes");
    // A group that does not exist is an error, not an empty list.
    let case = Case::new(
        "let rb = runbook(\"x\");\nrb.once(\"first\", || hosts(\"dbs\").len() > 0);\nrb.step(\"s\", |h| h.run(\"true\"));\nrb\n",
        "[db]\ndb1\n",
    );
    let err = flat(&case.plan(&[], 2).stderr);
    assert!(
        err.contains("hosts(\"dbs\"): the inventory has no such group (groups: ungrouped, db)")
            || err.contains("hosts(\"dbs\"): the inventory has no such group"),
        "{err}"
    );
}

// A runbook within every script limit recorded ~170 MB per host; memory ran out at 30 hosts.
#[test]
fn plan_size_is_bounded_per_host_and_in_total() {
    let per_host = Case::new(
        "let rb = runbook(\"x\");\nrb.step(\"s\", |h| {\n  let c = \"x\";\n  for i in 0..16 { c += c; }\n  for i in 0..1000 { try { h.run(c); } catch (e) { } }\n});\nrb\n",
        "[web]\nw1\n",
    );
    let err = flat(&per_host.plan(&[], 2).stderr);
    assert!(
        err.contains("the plan records more than 1048576 bytes of commands for host w1")
            && err.contains("FLEETBOOK_MAX_PLAN_BYTES_PER_HOST raises the limit"),
        "{err}"
    );
    let total = Case::new(
        "let rb = runbook(\"x\");\nrb.step(\"s\", |h| {\n  let c = \"x\";\n  for i in 0..16 { c += c; }\n  for i in 0..12 { h.run(c); }\n});\nrb\n",
        "[web]\nw[1:100]\n",
    );
    let (out, peak) = peak_memory(total.cmd("plan", &[]).argv());
    assert_eq!(out.status.code(), Some(2));
    let err = flat(&String::from_utf8_lossy(&out.stderr));
    assert!(
        err.contains("the plan records more than 67108864 bytes of commands in all (FLEETBOOK_MAX_PLAN_BYTES raises the limit"),
        "{err}"
    );
    assert!(peak < 256 << 20, "peak memory {peak} bytes");
    // The limit is an option: raised, the same plan passes.
    let saved = total.path("plan.json").display().to_string();
    total
        .cmd("plan", &["--format", "json", "-o", &saved])
        .env("FLEETBOOK_MAX_PLAN_BYTES", "100000000")
        .code(0);
}

/// Runs a command and returns its output and peak resident memory in bytes (from wait4).
// The child is reaped by wait4, which clippy does not see.
#[allow(clippy::zombie_processes)]
fn peak_memory(argv: Vec<String>) -> (std::process::Output, u64) {
    use std::io::Read;
    let mut child = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let mut err_pipe = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        err_pipe.read_to_end(&mut buf).unwrap();
        buf
    });
    child
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut stdout)
        .unwrap();
    stderr.extend(reader.join().unwrap());
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid);
    use std::os::unix::process::ExitStatusExt;
    let out = std::process::Output {
        status: std::process::ExitStatus::from_raw(status),
        stdout,
        stderr,
    };
    (out, usage.ru_maxrss as u64 * 1024)
}

// `.timeout("0s")` passed check and then failed every plan.
#[test]
fn a_zero_timeout_is_refused_by_check() {
    let case = Case::new(
        "let rb = runbook(\"x\");\nrb.step(\"s\", |h| h.run(\"x\")).timeout(\"0s\");\nrb\n",
        "",
    );
    let out = fleetbook(&["check"])
        .arg(case.path("rb.rhai").display().to_string())
        .code(2);
    assert!(
        flat(&out.stderr).contains(".timeout must be longer than 0s"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("rb.rhai:2:30"), "{}", out.stderr);
}

// "Data race detected on argument #2 of function 'step'" told the user nothing.
#[test]
fn a_closure_using_the_runbook_variable_is_told_what_to_write() {
    let case = Case::new(
        "let rb = runbook(\"x\");\nrb.step(\"s\", |h| { rb.limit(\"*\", 1); h.run(\"x\") });\nrb\n",
        "",
    );
    let out = fleetbook(&["check"])
        .arg(case.path("rb.rhai").display().to_string())
        .code(2);
    let err = flat(&out.stderr);
    assert!(
        err.contains("most often a step closure that uses the runbook variable (`rb`)")
            && err.contains("call rb.limit/rb.order/rb.step at the top level of the script"),
        "{err}"
    );
}

// An endless loop inside a step said neither where nor for which host.
#[test]
fn a_runaway_step_names_host_step_and_line() {
    let case = Case::new(
        "let rb = runbook(\"x\");\n\nrb.step(\"spin\", |h| { loop { } });\nrb\n",
        "[web]\nw1\n",
    );
    let err = flat(&case.plan(&[], 2).stderr);
    assert!(
        err.contains("host w1, step \"spin\" (dry-run): the script was stopped after 5000000 operations: an endless loop?"),
        "{err}"
    );
    assert!(err.contains("rb.rhai:3:4"), "{err}");
}

// A limit naming a role with no hosts did nothing, silently.
#[test]
fn a_limit_on_a_role_without_hosts_is_a_warning() {
    let case = Case::new(
        "let rb = runbook(\"x\");\nrb.limit(\"db\", 1);\nrb.step(\"s\", |h| h.run(\"x\"));\nrb\n",
        "[web]\nw1\n[db]\n",
    );
    let check = fleetbook(&["check"])
        .arg(case.path("rb.rhai").display().to_string())
        .arg("-i")
        .arg(case.path("hosts").display().to_string())
        .code(0);
    assert!(
        check.stderr.contains("warning: role \"db\" (named at "),
        "{}",
        check.stderr
    );
    let out = case.plan(&[], 0);
    assert!(
        out.stderr.contains("role \"db\" (named at ")
            && out.stderr.contains(
                "rb.rhai:2:4) has no hosts: what the runbook declares for it does nothing"
            ),
        "{}",
        out.stderr
    );
}

/// Every secret source of the secrets test, with the unique value planted in it.
const PLANTED: [&str; 5] = [
    "PLANTED-param-7f3a",
    "PLANTED-cred-91c2",
    "PLANTED-marked-5d0e",
    "PLANTED-invmark-c4b8",
    "PLANTED-mappart-2e6d",
];

fn assert_clean(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    for p in PLANTED {
        assert!(!text.contains(p), "{p} leaked into {what}:\n{text}");
    }
}

// Credential variables reached recorded commands in clear, and redaction in three places
// disagreed: one Secrets type redacts every output of plan, run, resume, status, exec,
// events and the journal file.
#[test]
fn no_secret_reaches_any_output_or_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    // A part of a secret map (issue 17: typed values) is as secret as the map.
    let all = "${t} ${h.var(\"db_password\")} ${h.var(\"marked\")} ${h.var(\"inv_marked\")} ${h.fact(\"pw\")} ${h.var(\"db_credentials\").password}";
    let case = Case::new(
        &format!(
            "let rb = runbook(\"s\").describe(\"leaks nothing\");\nlet t = secret_param(\"token\", \"\");\nrb.secret_vars([\"marked\"]);\nrb.step(\"a\", |h| {{ h.set_fact(\"pw\", h.var(\"db_password\")); h.run(`echo {all}`); }});\nrb.step(\"b\", |h| h.run(`echo {all}; echo {all} >&2; exit 1`));\nrb\n"
        ),
        &format!(
            "[all:vars]\nfleetbook_secret_vars=inv_marked\n[web]\nl1 ansible_connection=local db_password={} marked={} inv_marked={} db_credentials=\"{{'user': 'app', 'password': '{}'}}\"\n",
            PLANTED[1], PLANTED[2], PLANTED[3], PLANTED[4]
        ),
    );
    let param = format!("token={}", PLANTED[0]);
    let state_arg = state.display().to_string();
    let mut outputs: Vec<(String, Vec<u8>)> = Vec::new();
    let mut keep = |what: &str, out: Outcome| {
        outputs.push((format!("{what} stdout"), out.stdout.into_bytes()));
        outputs.push((format!("{what} stderr"), out.stderr.into_bytes()));
    };
    for format in ["text", "json", "dot", "mermaid", "html"] {
        keep(
            &format!("plan {format}"),
            case.plan(&["--param", &param, "--format", format], 0),
        );
    }
    let saved = case.path("plan.json").display().to_string();
    keep(
        "plan -o",
        case.plan(&["--param", &param, "--format", "json", "-o", &saved], 0),
    );
    let run = case
        .cmd(
            "run",
            &[
                "--param", &param, "--yes", "--state", &state_arg, "--events", "jsonl",
            ],
        )
        .code(3);
    let id = run
        .stderr
        .split_whitespace()
        .skip_while(|w| *w != "run")
        .nth(1)
        .unwrap()
        .to_string();
    keep("run", run);
    for (what, args) in [
        (
            "resume",
            vec![
                "resume", &id, "--yes", "--param", &param, "--events", "jsonl",
            ],
        ),
        ("status", vec!["status", &id]),
        ("status json", vec!["status", &id, "--format", "json"]),
        ("status html", vec!["status", &id, "--format", "html"]),
        ("runs", vec!["runs"]),
    ] {
        keep(what, fleetbook(&args).arg("--state").arg(&state_arg).run());
    }
    keep(
        "exec",
        fleetbook(&["exec", "-i"])
            .arg(case.path("hosts").display().to_string())
            .arg("web")
            .arg("--")
            .arg(format!("echo {} {}", PLANTED[1], PLANTED[3]))
            .run(),
    );
    for (what, bytes) in &outputs {
        assert_clean(what, bytes);
    }
    assert_clean("saved plan", &std::fs::read(&saved).unwrap());
    // The journal, and each host's whole output (output/RUN/HOST.log).
    let mut dirs = vec![state.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                assert_clean(&path.display().to_string(), &std::fs::read(&path).unwrap());
            } else if path.is_dir() {
                dirs.push(path);
            }
        }
    }
    // The redaction is visible, so the test cannot pass by printing nothing.
    let events = &outputs.iter().find(|(w, _)| w == "run stdout").unwrap().1;
    assert!(
        String::from_utf8_lossy(events).contains("<secret:"),
        "{}",
        String::from_utf8_lossy(events)
    );
}

// A wait_until condition that returned a string said only "Output type incorrect".
#[test]
fn a_wait_until_condition_that_returns_a_string_is_named() {
    let case = Case::new(
        "let rb = runbook(\"x\");\nrb.step(\"s\", |h| h.wait_until(|h| h.var(\"ready\", \"no\"), \"10s\"));\nrb\n",
        "[web]\nw1\n",
    );
    let err = flat(&case.plan(&[], 2).stderr);
    assert!(
        err.contains("host w1: the wait_until condition must return true or false, but it returned string \"no\""),
        "{err}"
    );
}

// A secret with a `'` reached outputs in its sh::quote'd form; print() and a step named
// after a secret showed it; a fact named like a credential was journaled in clear.
#[test]
fn quoted_printed_and_learned_secrets_are_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state").display().to_string();
    let case = Case::new(
        "let rb = runbook(\"q\");\nlet tok = secret_param(\"tok\", \"\");\nprint(tok);\nrb.step(\"st-\" + tok, |h| { h.set_fact(\"api_token\", h.run(\"printf LEARNED-%s 9f1e\").stdout); h.run(`echo ${sh::quote(tok)} $(printf LEARNED-%s 9f1e); exit 4`) });\nrb\n",
        &local_inventory(dir.path(), "l1"),
    );
    let secret = "tok=it's-Pa55w0rdZ";
    let plan = case.plan(&["--param", secret], 0);
    let run = case
        .cmd(
            "run",
            &[
                "--param", secret, "--yes", "--state", &state, "--events", "jsonl",
            ],
        )
        .code(3);
    let status = fleetbook(&["status", "--state", &state]).run();
    assert!(!plan.stdout.contains("Pa55w0rdZ") && !plan.stderr.contains("Pa55w0rdZ"));
    // The value is learned on the host: a secret from then on, also in the output of the
    // command that brought it (the plan, now also in the journal, shows the literal command
    // that produces it, which is no secret).
    let mut seen = String::new();
    for out in [&run, &status] {
        seen.push_str(&out.stdout);
        seen.push_str(&out.stderr);
    }
    // Every file the run left in its state directory: the journal, the output logs.
    let mut dirs = vec![dir.path().join("state")];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                seen.push_str(&String::from_utf8_lossy(&std::fs::read(path).unwrap()));
            }
        }
    }
    for leak in ["Pa55w0rdZ", "LEARNED-9f1e"] {
        assert!(!seen.contains(leak), "{leak} leaked:\n{seen}");
    }
    assert!(run.stdout.contains("<secret:api_token>"), "{}", run.stdout);
}

// `plan -o` destroyed an imported module or the journal it was pointed at.
#[test]
fn plan_output_over_a_module_or_a_journal_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state").display().to_string();
    let case = Case::new(
        "let rb = runbook(\"o\");\nrb.step(\"s\", |h| h.run(\"true\"));\nrb\n",
        &local_inventory(dir.path(), "l1"),
    );
    case.cmd("run", &["--yes", "--state", &state]).code(0);
    let journal = dir.path().join("state/journal.sqlite");
    let before = std::fs::read(&journal).unwrap();
    let out = case.plan(&["-o", &journal.display().to_string()], 2);
    assert!(
        out.stderr.contains("it is an SQLite database"),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read(&journal).unwrap(), before);
    case.file("lib.rhai", "fn x() { 1 }\n");
    let out = case.plan(&["-o", &case.path("lib.rhai").display().to_string()], 2);
    assert!(out.stderr.contains("it is a Rhai script"), "{}", out.stderr);
    assert_eq!(
        std::fs::read_to_string(case.path("lib.rhai")).unwrap(),
        "fn x() { 1 }\n"
    );
}

// A wait_until whose condition runs no command ignored Ctrl-C twice.
#[test]
fn ctrl_c_twice_ends_a_wait_that_runs_no_command() {
    let dir = tempfile::tempdir().unwrap();
    let case = Case::new(
        "let rb = runbook(\"w\");\nrb.step(\"s\", |h| h.wait_until(|h| false, \"5m\"));\nrb\n",
        &local_inventory(dir.path(), "l1"),
    );
    let state = dir.path().join("state").display().to_string();
    let argv = case.cmd("run", &["--yes", "--state", &state]).argv();
    let mut child = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    let started = std::time::Instant::now();
    for _ in 0..2 {
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > std::time::Duration::from_secs(30) {
            child.kill().unwrap();
            panic!("the run went on waiting after Ctrl-C twice");
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(4));
}

// With hosts under [all] only, rb.limit("*", 5) started all twelve at once and the plan's
// role table was empty.
#[test]
fn a_star_limit_covers_hosts_in_no_group() {
    let case = Case::new(
        "let rb = runbook(\"x\");\nrb.limit(\"*\", 5);\nrb.step(\"s\", |h| h.run(\"true\"));\nrb\n",
        "[all]\nh[01:12]\n",
    );
    let out = case.plan(&["--format", "json"], 0);
    let plan: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let roles = plan["roles"].as_array().unwrap();
    assert_eq!(roles.len(), 1, "{roles:?}");
    assert_eq!(roles[0]["name"], "ungrouped");
    assert_eq!(roles[0]["hosts"], 12);
    assert_eq!(roles[0]["limit"], 5);
    let starts: Vec<u64> = plan["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["start"].as_u64().unwrap())
        .collect();
    assert_eq!(starts.iter().filter(|s| **s == 0).count(), 5, "{starts:?}");
}
