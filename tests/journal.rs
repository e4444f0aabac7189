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

    fn cmd(&self, cmd: &str, extra: &[&str]) -> Outcome {
        let mut b = fleetbook(&[]);
        for a in self.args(cmd) {
            b = b.arg(a);
        }
        for a in extra {
            b = b.arg(*a);
        }
        b.run()
    }

    fn spawn(&self, cmd: &str, extra: &[&str]) -> Child {
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

    fn run_id(&self) -> String {
        wait_for(|| !self.runs().is_empty(), "the run to be recorded");
        self.runs()[0]["id"].as_str().unwrap().to_string()
    }
}

fn wait_for(mut cond: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
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

fn kill9(child: &mut Child) {
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
