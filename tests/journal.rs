//! The run journal against real sshd hosts: crash and resume, halt and resume, abort and
//! approval from a second process, saved plans, the fleet lock, unusable journals.

use crate::sshd::Fleet;
use crate::support::{flat, fleetbook, Outcome};
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Setup {
    fleet: Fleet,
    inv: PathBuf,
    rb: PathBuf,
    state: PathBuf,
}

fn setup(names: &[&str], groups: &[(&str, &[&str])], runbook: &str) -> Setup {
    let fleet = Fleet::start(names);
    let inv = fleet.inventory(groups, "");
    let rb = fleet.file("rb.rhai", runbook);
    let state = fleet.dir.path().join("state");
    Setup {
        fleet,
        inv,
        rb,
        state,
    }
}

impl Setup {
    fn args(&self, cmd: &str) -> Vec<String> {
        let mut v = vec![cmd.to_string()];
        if cmd == "run" {
            v.extend([
                self.rb.display().to_string(),
                "-i".into(),
                self.inv.display().to_string(),
            ]);
        }
        v.extend(["--state".into(), self.state.display().to_string()]);
        if matches!(cmd, "run" | "resume" | "apply") {
            v.extend([
                "--ssh-config".into(),
                self.fleet.ssh_config.display().to_string(),
            ]);
        }
        v
    }

    pub(crate) fn cmd(&self, cmd: &str, extra: &[&str]) -> Outcome {
        let mut b = fleetbook(&[]);
        for a in self.args(cmd) {
            b = b.arg(a);
        }
        for a in extra {
            b = b.arg(*a);
        }
        b.run()
    }

    pub(crate) fn spawn(&self, cmd: &str, extra: &[&str]) -> Child {
        Command::new(env!("CARGO_BIN_EXE_fleetbook"))
            .args(self.args(cmd))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("fleetbook starts")
    }

    fn log(&self, host: &str) -> String {
        std::fs::read_to_string(self.fleet.host(host).dir.join("log")).unwrap_or_default()
    }

    fn runs(&self) -> Vec<Value> {
        let out = self.cmd("runs", &["--format", "json"]);
        if out.code != 0 {
            return Vec::new();
        }
        serde_json::from_str(&out.stdout).unwrap_or_default()
    }

    fn status(&self, id: &str) -> Value {
        let out = self.cmd("status", &[id, "--format", "json"]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        serde_json::from_str(&out.stdout).expect("status JSON")
    }

    pub(crate) fn run_id(&self) -> String {
        wait_for(|| !self.runs().is_empty(), "the run to be recorded");
        self.runs()[0]["id"].as_str().unwrap().to_string()
    }
}

pub(crate) fn wait_for(mut cond: impl FnMut() -> bool, what: &str) {
    // Generous: a loaded 2-core CI machine can take long to start a run.
    let deadline = Instant::now() + Duration::from_secs(120);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn finish(child: Child) -> (i32, String) {
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub(crate) fn kill9(child: &mut Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

fn logged(name: &str, secs: f64) -> String {
    format!(
        "h.run(`echo \"start {name}\" >> ${{h.var(\"dir\")}}/log; sleep {secs}; echo \"end {name}\" >> ${{h.var(\"dir\")}}/log`)"
    )
}

#[test]
fn kill_9_mid_run_then_resume_runs_nothing_twice() {
    let rb = format!(
        "let rb = runbook(\"t\");\nrb.limit(\"web\", 2);\nrb.step(\"stage\", |h| {}).idempotent(true);\nrb.step(\"upgrade\", |h| {});\nrb\n",
        logged("stage", 0.0),
        logged("upgrade", 2.0)
    );
    let s = setup(
        &["w1", "w2", "w3", "w4"],
        &[("web", &["w1", "w2", "w3", "w4"])],
        &rb,
    );
    let mut child = s.spawn("run", &["--yes"]);
    wait_for(
        || s.log("w1").contains("start upgrade") && s.log("w2").contains("start upgrade"),
        "two hosts in upgrade",
    );
    kill9(&mut child);
    let id = s.run_id();
    assert_eq!(s.runs()[0]["state"], "crashed");

    // The upgrades in flight are unknown, and the step is not idempotent: resume stops.
    let out = s.cmd("resume", &[&id, "--yes"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("host:w1:upgrade") && out.stderr.contains("host:w2:upgrade"),
        "{}",
        out.stderr
    );

    let out = s.cmd("resume", &[&id, "--yes", "--retry-unknown"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    std::thread::sleep(Duration::from_millis(2200)); // let the orphaned first attempts end
    for h in ["w1", "w2", "w3", "w4"] {
        let log = s.log(h);
        assert_eq!(
            log.matches("start stage").count(),
            1,
            "{h}: stage finished before the crash or after; never twice:\n{log}"
        );
        assert!(log.contains("end upgrade"), "{h} upgraded:\n{log}");
    }
    for h in ["w3", "w4"] {
        assert_eq!(
            s.log(h).matches("start upgrade").count(),
            1,
            "{h} was not touched before the crash"
        );
    }
    let st = s.status(&id);
    assert_eq!(st["overall"], "applied", "{st}");
    assert_eq!(st["run"]["state"], "succeeded");
}

#[test]
fn halt_fix_resume_completes_and_recaps_the_whole_run() {
    let rb = "let rb = runbook(\"t\");\nrb.limit(\"web\", 1);\n\
              rb.step(\"work\", |h| h.run(`d=${h.var(\"dir\")}; { [ ${h.name} != w2 ] || [ -e $d/fixed ]; } && echo done >> $d/log`));\nrb\n";
    let s = setup(&["w1", "w2", "w3"], &[("web", &["w1", "w2", "w3"])], rb);
    let out = s.cmd("run", &["--yes"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    let id = s.run_id();
    let st = s.status(&id);
    assert_eq!(st["overall"], "partial");
    let states: Vec<(&str, &str)> = st["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["host"].as_str().unwrap(), h["state"].as_str().unwrap()))
        .collect();
    assert_eq!(
        states,
        [("w1", "upgraded"), ("w2", "failed"), ("w3", "pending")]
    );

    std::fs::write(s.fleet.host("w2").dir.join("fixed"), "").unwrap();
    let out = s.cmd("resume", &[&id, "--yes"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for h in ["w1", "w2", "w3"] {
        assert!(
            out.stderr
                .lines()
                .any(|l| l.starts_with(h) && l.contains("ok=1")),
            "{h} in the recap:\n{}",
            out.stderr
        );
        assert_eq!(s.log(h).matches("done").count(), 1, "{h} ran once");
    }
    assert_eq!(s.status(&id)["overall"], "applied");
}

/// A fact learned before a halt is there after resume, although the step that learned it
/// does not run again: resume reads it from the journal.
#[test]
fn facts_learned_before_a_halt_survive_resume() {
    let rb = "let rb = runbook(\"t\");\n\
              rb.step(\"learn\", |h| { let v = h.run(`cat ${h.var(\"dir\")}/version`).stdout; v.trim(); h.set_fact(\"before\", v); h.run(`echo learned >> ${h.var(\"dir\")}/log`); });\n\
              rb.step(\"change\", |h| h.run(`d=${h.var(\"dir\")}; echo 2.0 > $d/version; [ -e $d/fixed ]`));\n\
              rb.step(\"report\", |h| h.run(`echo \"was ${h.fact(\"before\")}\" >> ${h.var(\"dir\")}/log`));\nrb\n";
    let s = setup(&["w1"], &[("web", &["w1"])], rb);
    let dir = s.fleet.host("w1").dir.clone();
    std::fs::write(dir.join("version"), "1.0\n").unwrap();
    let out = s.cmd("run", &["--yes"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    let id = s.run_id();
    std::fs::write(dir.join("fixed"), "").unwrap();
    let out = s.cmd("resume", &[&id, "--yes"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    // "learn" ran once, before the halt, and the version had changed since: the fact is the
    // one the journal kept.
    assert_eq!(s.log("w1"), "learned\nwas 1.0\n");
}

#[test]
fn abort_from_another_terminal() {
    let rb = format!(
        "let rb = runbook(\"t\");\nrb.limit(\"web\", 1);\nrb.step(\"work\", |h| {});\nrb\n",
        logged("work", 1.5)
    );
    let s = setup(&["w1", "w2", "w3"], &[("web", &["w1", "w2", "w3"])], &rb);
    let child = s.spawn("run", &["--yes"]);
    wait_for(|| s.log("w1").contains("start work"), "w1 to start");
    let id = s.run_id();
    let out = s.cmd("abort", &[&id]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let (code, stderr) = finish(child);
    assert_eq!(code, 4, "{stderr}");
    assert!(
        s.log("w1").contains("end work"),
        "the step in flight finished"
    );
    assert!(s.log("w3").is_empty(), "w3 never started");
    assert_eq!(s.runs()[0]["state"], "aborted");
}

#[test]
fn approval_released_from_another_terminal() {
    let rb = format!(
        "let rb = runbook(\"t\");\nrb.order([\"a\", \"b\"]);\nrb.step(\"work\", |h| {});\nrb.approval(\"go-on\", \"a\");\nrb\n",
        logged("work", 0.1)
    );
    let s = setup(&["a1", "b1"], &[("a", &["a1"]), ("b", &["b1"])], &rb);
    let child = s.spawn("run", &["--yes"]);
    let id = s.run_id();
    wait_for(
        || s.status(&id)["waiting_approval"] == "go-on",
        "the run to wait for approval",
    );
    assert!(s.log("a1").contains("end work"));
    assert!(s.log("b1").is_empty(), "b waits for the approval");
    let out = s.cmd("approve", &[&id]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let (code, stderr) = finish(child);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("waits for approval \"go-on\""), "{stderr}");
    assert!(s.log("b1").contains("end work"));
}

#[test]
fn saved_plans_apply_exactly_or_not_at_all() {
    let s = setup(
        &["w1"],
        &[("web", &["w1"])],
        &format!(
            "let rb = runbook(\"t\");\nrb.step(\"work\", |h| {});\nrb\n",
            logged("work", 0.0)
        ),
    );
    let plan = s.fleet.dir.path().join("plan.json");
    fleetbook(&["plan"])
        .arg(s.rb.display().to_string())
        .arg("-i")
        .arg(s.inv.display().to_string())
        .arg("--format")
        .arg("json")
        .arg("-o")
        .arg(plan.display().to_string())
        .code(0);
    let apply = |s: &Setup| {
        let mut b = fleetbook(&["apply"])
            .arg(plan.display().to_string())
            .arg("--yes");
        for a in s.args("apply").into_iter().skip(1) {
            b = b.arg(a);
        }
        b.run()
    };
    let out = apply(&s);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(s.log("w1").contains("end work"));

    let mut inv = std::fs::read_to_string(&s.inv).unwrap();
    inv.push_str("# edited after the plan\n");
    std::fs::write(&s.inv, inv).unwrap();
    let out = apply(&s);
    assert_eq!(out.code, 2, "{}", out.stderr);
    let err = flat(&out.stderr);
    assert!(
        err.contains("the inventory") && err.contains("changed since the plan was made"),
        "{err}"
    );
    assert_eq!(
        s.log("w1").matches("end work").count(),
        1,
        "the stale plan did not run"
    );
}

#[test]
fn one_operator_at_a_time_and_stale_locks_are_broken_explicitly() {
    let rb = format!(
        "let rb = runbook(\"t\");\nrb.step(\"work\", |h| {});\nrb\n",
        logged("work", 1.5)
    );
    let s = setup(&["w1"], &[("web", &["w1"])], &rb);
    let first = s.spawn("run", &["--yes"]);
    wait_for(|| s.log("w1").contains("start work"), "the first run");
    let out = s.cmd("run", &["--yes"]);
    assert_eq!(out.code, 6, "{}", out.stderr);
    assert!(
        out.stderr.contains("the fleet is locked by run"),
        "{}",
        out.stderr
    );
    let (code, _) = finish(first);
    assert_eq!(code, 0);

    // A crash leaves the lock behind: reported as stale, broken only on request.
    let mut crashed = s.spawn("run", &["--yes"]);
    wait_for(
        || s.log("w1").matches("start work").count() == 2,
        "the second run",
    );
    kill9(&mut crashed);
    let out = s.cmd("run", &["--yes"]);
    assert_eq!(out.code, 6, "{}", out.stderr);
    let err = flat(&out.stderr);
    assert!(
        err.contains("no longer running") && err.contains("fleetbook unlock"),
        "{err}"
    );
    let out = s.cmd("unlock", &["--yes"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("lock broken"), "{}", out.stderr);
    let out = s.cmd("run", &["--yes"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn an_unusable_journal_is_reported_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("journal.sqlite");
    std::fs::write(
        &file,
        b"garbage that is not a database, padded to look like a file",
    )
    .unwrap();
    let out = fleetbook(&["runs", "--state"])
        .arg(dir.path().display().to_string())
        .run();
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("is not a fleetbook journal or is corrupted"),
        "{}",
        out.stderr
    );
    assert_eq!(
        std::fs::read(&file).unwrap(),
        b"garbage that is not a database, padded to look like a file"
    );
}

/// A state directory, an inventory of hosts run on this machine (`ansible_connection=local`)
/// and a runbook, in a fresh temporary directory.
pub(crate) struct Local {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) inv: PathBuf,
    pub(crate) rb: PathBuf,
    pub(crate) state: PathBuf,
}

pub(crate) fn local(groups: &[(&str, &[&str])], runbook: &str) -> Local {
    let dir = tempfile::tempdir().unwrap();
    let mut inv = String::new();
    for (g, hosts) in groups {
        inv.push_str(&format!("[{g}]\n"));
        for h in *hosts {
            let hd = dir.path().join(h);
            std::fs::create_dir_all(&hd).unwrap();
            inv.push_str(&format!(
                "{h} ansible_connection=local dir={}\n",
                hd.display()
            ));
        }
    }
    let inv_path = dir.path().join("hosts");
    std::fs::write(&inv_path, inv).unwrap();
    let rb = dir.path().join("rb.rhai");
    std::fs::write(&rb, runbook).unwrap();
    let state = dir.path().join("state");
    Local {
        dir,
        inv: inv_path,
        rb,
        state,
    }
}

impl Local {
    pub(crate) fn command(&self, cmd: &str, extra: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_fleetbook"));
        c.arg(cmd);
        if cmd == "run" {
            c.arg(&self.rb).arg("-i").arg(&self.inv);
        }
        c.arg("--state").arg(&self.state).args(extra);
        c.env("NO_COLOR", "1").stdin(Stdio::null());
        c
    }

    pub(crate) fn cmd(&self, cmd: &str, extra: &[&str]) -> Outcome {
        let out = self.command(cmd, extra).output().unwrap();
        Outcome {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub(crate) fn spawn(&self, cmd: &str, extra: &[&str]) -> Child {
        self.command(cmd, extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    pub(crate) fn file(&self, host: &str, name: &str) -> PathBuf {
        self.dir.path().join(host).join(name)
    }

    pub(crate) fn run_id(&self) -> String {
        let out = self.cmd("runs", &["--format", "json"]);
        let runs: Vec<Value> = serde_json::from_str(&out.stdout).unwrap();
        runs[0]["id"].as_str().unwrap().to_string()
    }
}

/// Waits for `child` at most `secs`; kills it and fails if it takes longer.
pub(crate) fn finish_within(mut child: Child, secs: u64, what: &str) -> (i32, String) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            kill9(&mut child);
            let (_, stderr) = finish(child);
            panic!("{what} did not end within {secs}s:\n{stderr}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    finish(child)
}

/// `resume --param` changed a parameter in the middle of a run without a word: now it is
/// refused, naming the parameter and --replan; with --replan the difference is shown first.
#[test]
fn resume_with_a_changed_param_is_refused_without_replan() {
    let l = local(
        &[("web", &["l1"])],
        "let rb = runbook(\"t\");\nlet v = param(\"v\", \"1\");\nlet token = secret_param(\"token\", \"\");\n\
         rb.step(\"work\", |h| h.run(`d=${h.var(\"dir\")}; [ -e $d/fixed ] && echo ${v} >> $d/log`));\nrb\n",
    );
    let out = l.cmd("run", &["--yes", "--param", "token=s3cr3t-one"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    let id = l.run_id();
    std::fs::write(l.file("l1", "fixed"), "").unwrap();

    let out = l.cmd(
        "resume",
        &[
            &id,
            "--yes",
            "--param",
            "v=2",
            "--param",
            "token=s3cr3t-one",
        ],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    let err = flat(&out.stderr);
    assert!(
        err.contains("parameter v: 1 -> 2") && err.contains("--replan"),
        "{err}"
    );
    assert!(!l.file("l1", "log").exists(), "nothing ran");

    // Another secret value is refused too, and neither value is shown.
    let out = l.cmd("resume", &[&id, "--yes", "--param", "token=s3cr3t-two"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    let err = flat(&out.stderr);
    assert!(err.contains("secret parameter token: changed"), "{err}");
    assert!(!err.contains("s3cr3t"), "{err}");

    let out = l.cmd(
        "resume",
        &[
            &id,
            "--yes",
            "--replan",
            "--param",
            "v=2",
            "--param",
            "token=s3cr3t-one",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("replanning run") && out.stderr.contains("parameter v: 1 -> 2"),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read_to_string(l.file("l1", "log")).unwrap(), "2\n");
}

/// A gate approved with `run --approve` was forgotten by resume: the resumed run sat waiting
/// for it.
#[test]
fn resume_keeps_the_approvals_given_to_run() {
    let l = local(
        &[("a", &["a1"]), ("b", &["b1"])],
        "let rb = runbook(\"t\");\nrb.order([\"a\", \"b\"]);\n\
         rb.step(\"work\", |h| h.run(`d=${h.var(\"dir\")}; [ ${h.name} = b1 ] || [ -e $d/fixed ] && echo done >> $d/log`));\n\
         rb.approval(\"go-on\", \"a\");\nrb\n",
    );
    let out = l.cmd("run", &["--yes", "--approve", "go-on"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    let id = l.run_id();
    std::fs::write(l.file("a1", "fixed"), "").unwrap();
    let child = l.spawn("resume", &[&id, "--yes"]);
    let (code, stderr) = finish_within(child, 20, "the resumed run");
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("waits for approval"), "{stderr}");
    assert!(l.file("b1", "log").exists());
}

/// `approve --gate TYPO` said "approved" while the run still waited; `run --approve TYPO` was
/// accepted; a finished run could be approved. Each is an error naming the gates.
#[test]
fn approving_a_gate_that_does_not_exist_is_refused() {
    let l = local(
        &[("a", &["a1"]), ("b", &["b1"])],
        "let rb = runbook(\"t\");\nrb.order([\"a\", \"b\"]);\n\
         rb.step(\"work\", |h| h.run(`echo done >> ${h.var(\"dir\")}/log`));\n\
         rb.approval(\"go-on\", \"a\");\nrb\n",
    );
    let child = l.spawn("run", &["--yes", "--approve", "go-onn"]);
    let (code, stderr) = finish_within(child, 20, "run --approve go-onn");
    assert_eq!(code, 2, "{stderr}");
    let err = flat(&stderr);
    assert!(
        err.contains("--approve go-onn: the runbook has no such approval")
            && err.contains("its approvals are: go-on"),
        "{err}"
    );
    assert!(!l.file("a1", "log").exists(), "nothing ran");

    let child = l.spawn("run", &["--yes"]);
    wait_for(
        || {
            l.state.join("journal.sqlite").exists()
                && l.cmd("status", &[]).stdout.contains("waiting for approval")
        },
        "the run to wait",
    );
    let id = l.run_id();
    let out = l.cmd("approve", &[&id, "--gate", "go-onn"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    let err = flat(&out.stderr);
    assert!(
        err.contains("has no approval \"go-onn\"") && err.contains("approvals are: go-on"),
        "{err}"
    );
    assert!(!err.contains("approved"), "{err}");
    let out = l.cmd("approve", &[&id, "--gate", "go-on"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let (code, stderr) = finish_within(child, 20, "the approved run");
    assert_eq!(code, 0, "{stderr}");

    let out = l.cmd("approve", &[&id, "--gate", "go-on"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    let err = flat(&out.stderr);
    assert!(
        err.contains("has finished (succeeded)") && err.contains("approvals are: go-on"),
        "{err}"
    );
}

/// Runs started at once on a state directory that did not exist failed with "table runs
/// already exists" or "not a fleetbook journal" instead of meeting at the lock.
#[test]
fn runs_started_at_once_on_a_new_state_dir_meet_at_the_lock() {
    let l = local(
        &[("web", &["l1"])],
        "let rb = runbook(\"t\");\nrb.step(\"work\", |h| h.run(`echo x >> ${h.var(\"dir\")}/log; sleep 3`));\nrb\n",
    );
    let children: Vec<Child> = (0..4).map(|_| l.spawn("run", &["--yes"])).collect();
    let ends: Vec<(i32, String)> = children.into_iter().map(finish).collect();
    let ok = ends.iter().filter(|(c, _)| *c == 0).count();
    assert_eq!(ok, 1, "exactly one run: {ends:#?}");
    for (code, stderr) in ends.iter().filter(|(c, _)| *c != 0) {
        assert_eq!(*code, 6, "{stderr}");
        assert!(stderr.contains("the fleet is locked by run"), "{stderr}");
    }
    assert_eq!(std::fs::read_to_string(l.file("l1", "log")).unwrap(), "x\n");
}

/// A journal fleetbook may not write was reported as corrupted.
#[test]
fn a_read_only_journal_is_reported_as_read_only() {
    let l = local(
        &[("web", &["l1"])],
        "let rb = runbook(\"t\");\nrb.step(\"work\", |h| h.run(\"true\"));\nrb\n",
    );
    assert_eq!(l.cmd("run", &["--yes"]).code, 0);
    let file = l.state.join("journal.sqlite");
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .unwrap()
        .stdout
        == b"0\n";
    // root may write anything: run fleetbook as nobody, who owns the state directory.
    let as_user = |args: &[&str]| -> Outcome {
        let mut c = if root {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(env!("CARGO_BIN_EXE_fleetbook"));
            c
        } else {
            Command::new(env!("CARGO_BIN_EXE_fleetbook"))
        };
        let out = c.args(args).env("NO_COLOR", "1").output().unwrap();
        Outcome {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    };
    let chmod = |p: &std::path::Path, mode: u32| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    chmod(l.dir.path(), 0o755);
    if root {
        for p in [&l.state, &file] {
            assert!(Command::new("chown")
                .arg("65534:65534")
                .arg(p)
                .status()
                .unwrap()
                .success());
        }
    }
    let state = l.state.display().to_string();
    chmod(&file, 0o444);
    let out = as_user(&["runs", "--state", &state]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        flat(&out.stderr).contains(&format!(
            "journal {} is read-only (the file is not writable)",
            file.display()
        )),
        "{}",
        out.stderr
    );
    chmod(&file, 0o644);
    chmod(&l.state, 0o555);
    let out = as_user(&["runs", "--state", &state]);
    chmod(&l.state, 0o755);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        flat(&out.stderr).contains(&format!(
            "journal {} is read-only (its directory {state} is not writable)",
            file.display()
        )),
        "{}",
        out.stderr
    );
}

/// A corrupted journal was written to (its header switched to WAL) before it was reported.
#[test]
fn a_corrupt_journal_is_reported_before_it_is_written() {
    let l = local(
        &[("web", &["l1"])],
        "let rb = runbook(\"t\");\nrb.step(\"work\", |h| h.run(\"true\"));\nrb\n",
    );
    assert_eq!(l.cmd("run", &["--yes"]).code, 0);
    let file = l.state.join("journal.sqlite");
    // fleetbook leaves its write-ahead log beside the journal (no checkpoint on close); a
    // copy made by another tool is the whole database in one file: sqlite3 folds the log in
    // (a checkpoint) and removes it when it closes.
    let folded = Command::new("python3")
        .args(["-c", "import sqlite3,sys; c = sqlite3.connect(sys.argv[1]); c.execute('PRAGMA wal_checkpoint(TRUNCATE)'); c.close()"])
        .arg(&file)
        .status()
        .expect("python3 runs");
    assert!(folded.success());
    assert!(!l.state.join("journal.sqlite-wal").exists());
    let mut bytes = std::fs::read(&file).unwrap();
    assert!(bytes.len() > 3 * 4096, "a journal of several pages");
    // A rollback-journal header (as a copy made by another tool has) and a garbage page.
    bytes[18] = 1;
    bytes[19] = 1;
    for b in &mut bytes[4096..8192] {
        *b = 0xa5;
    }
    std::fs::write(&file, &bytes).unwrap();
    let out = l.cmd("runs", &[]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        flat(&out.stderr).contains(&format!("journal {} is corrupted", file.display())),
        "{}",
        out.stderr
    );
    assert!(
        std::fs::read(&file).unwrap() == bytes,
        "the journal was modified"
    );
}

/// A succeeded run showed its role barrier `done:web` as pending, and its user as `unknown`
/// when $USER was unset.
#[test]
fn a_succeeded_run_has_its_barriers_done_and_its_real_user() {
    let l = local(
        &[("web", &["l1", "l2"])],
        "let rb = runbook(\"t\");\nrb.step(\"work\", |h| h.run(\"true\"));\nrb\n",
    );
    let out = l
        .command("run", &["--yes"])
        .env_remove("USER")
        .env_remove("LOGNAME")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let id = l.run_id();
    let st: Value =
        serde_json::from_str(&l.cmd("status", &[&id, "--format", "json"]).stdout).unwrap();
    let me = Command::new("id").arg("-un").output().unwrap().stdout;
    assert_eq!(
        st["run"]["user"],
        String::from_utf8_lossy(&me).trim(),
        "{st}"
    );
    let tasks = st["tasks"].as_array().expect("the run's own tasks");
    assert!(
        tasks
            .iter()
            .any(|t| t["task"] == "done:web" && t["state"] == "ok"),
        "{st}"
    );
    assert!(tasks.iter().all(|t| t["state"] == "ok"), "{st}");
}

/// A fact set inside a step was recorded only when the step ended: a controller killed while
/// the step ran lost it, and the resumed run learned the changed value instead.
#[test]
fn a_fact_set_mid_step_survives_kill_9() {
    let rb = "let rb = runbook(\"t\");\n\
              rb.step(\"upgrade\", |h| { let d = h.var(\"dir\"); if !h.has_fact(\"before\") { let v = h.run(`cat ${d}/version`).stdout; v.trim(); h.set_fact(\"before\", v); } h.run(`echo 2.0 > ${d}/version; touch ${d}/marker; sleep 3`); });\n\
              rb.step(\"report\", |h| h.run(`echo \"was ${h.fact(\"before\")}\" >> ${h.var(\"dir\")}/log`));\nrb\n";
    let s = setup(&["w1"], &[("web", &["w1"])], rb);
    let dir = s.fleet.host("w1").dir.clone();
    std::fs::write(dir.join("version"), "1.0\n").unwrap();
    let mut child = s.spawn("run", &["--yes"]);
    wait_for(|| dir.join("marker").exists(), "the step to set its fact");
    kill9(&mut child);
    let id = s.run_id();
    let out = s.cmd("resume", &[&id, "--yes", "--retry-unknown"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(s.log("w1"), "was 1.0\n");
}

/// The resume hint lacked --state and --ssh-config, so pasted elsewhere it failed; after a
/// kill -9, a new run was only told to `unlock`.
#[test]
fn the_resume_hint_works_when_pasted() {
    let rb = "let rb = runbook(\"t\");\nrb.limit(\"web\", 1);\n\
              rb.step(\"work\", |h| h.run(`d=${h.var(\"dir\")}; { [ ${h.name} != w2 ] || [ -e $d/fixed ]; } && echo start >> $d/log && sleep 1 && echo done >> $d/log`)).idempotent(true);\nrb\n";
    let s = setup(&["w1", "w2"], &[("web", &["w1", "w2"])], rb);
    let out = s.cmd("run", &["--yes", "--connect-timeout", "7s"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    let hint = out
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("continue: "))
        .unwrap_or_else(|| panic!("no resume hint:\n{}", out.stderr))
        .to_string();
    assert!(
        hint.contains("--ssh-config") && hint.contains("--connect-timeout 7s"),
        "{hint}"
    );
    std::fs::write(s.fleet.host("w2").dir.join("fixed"), "").unwrap();
    let paste = |hint: &str| {
        let cmd = hint.replacen("fleetbook", env!("CARGO_BIN_EXE_fleetbook"), 1);
        Command::new("sh")
            .arg("-c")
            .arg(&cmd)
            .current_dir("/")
            .env_remove("FLEETBOOK_STATE")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = paste(&hint);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(s.log("w2").contains("done"));

    // A crashed run: the next run is told how to resume it.
    std::fs::remove_file(s.fleet.host("w1").dir.join("log")).unwrap();
    let mut child = s.spawn("run", &["--yes"]);
    wait_for(|| s.log("w1").contains("start"), "the second run");
    kill9(&mut child);
    let crashed = s.run_id();
    let out = s.cmd("run", &["--yes"]);
    assert_eq!(out.code, 6, "{}", out.stderr);
    let err = flat(&out.stderr);
    let hint = err
        .lines()
        .find_map(|l| l.strip_prefix("continue: "))
        .unwrap_or_else(|| panic!("no resume hint:\n{err}"))
        .to_string();
    assert!(
        hint.starts_with(&format!("fleetbook resume {crashed} ")),
        "{hint}"
    );
    assert!(hint.ends_with(" --yes"), "{hint}");
    assert!(err.contains("fleetbook unlock"), "{err}");
    let out = paste(&hint);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(s.log("w2").matches("done").count() >= 2, "{}", s.log("w2"));
}
