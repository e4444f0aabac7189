//! The run-flow features the seed procedures need (issue 19), run for real on hosts of this
//! machine (`ansible_connection=local`): `rb.finally`, `.always()`, rollback scopes and
//! `fleetbook rollback`, `.soak`, `rb.deadline`, `rb.before_each_host` and a held role
//! (limit 0). What the hosts did is read from what their commands wrote, with timestamps.

use crate::journal::{finish_within, kill9, local, wait_for, Local};

/// A step body that appends `WHAT HOST SECONDS` to the shared log, then runs `then`.
fn mark(what: &str, then: &str) -> String {
    format!(
        "h.run(`echo \"{what} ${{h.name}} $(date +%s.%N)\" >> ${{h.var(\"dir\")}}/../log; {then}`)"
    )
}

/// The shared log as (what, host, seconds) lines.
fn log(l: &Local) -> Vec<(String, String, f64)> {
    std::fs::read_to_string(l.dir.path().join("log"))
        .unwrap_or_default()
        .lines()
        .map(|line| {
            let w: Vec<&str> = line.split_whitespace().collect();
            (w[0].to_string(), w[1].to_string(), w[2].parse().unwrap())
        })
        .collect()
}

fn entries(l: &Local) -> Vec<String> {
    log(l)
        .into_iter()
        .map(|(w, h, _)| format!("{w} {h}"))
        .collect()
}

/// The JSON plan of `runbook` on `inventory` (both texts), with `extra` options.
fn plan_json(runbook: &str, inventory: &str, extra: &[&str]) -> crate::support::Outcome {
    let dir = tempfile::tempdir().unwrap();
    let (rb, inv) = (dir.path().join("rb.rhai"), dir.path().join("hosts"));
    std::fs::write(&rb, runbook).unwrap();
    std::fs::write(&inv, inventory).unwrap();
    let mut cmd = crate::support::fleetbook(&["plan", "--format", "json"]);
    for a in extra {
        cmd = cmd.arg(*a);
    }
    cmd.arg(rb.display().to_string())
        .arg("-i")
        .arg(inv.display().to_string())
        .run()
}

const FINALLY: &str =
    "rb.finally(\"restore\", || host(\"w1\").run(`echo \"finally all $(date +%s)\" >> ${host(\"w1\").var(\"dir\")}/../log`));\n";

/// A halted run, an aborted one and a succeeded one all run `finally`, once, last.
#[test]
fn finally_runs_once_at_the_end_whatever_the_outcome() {
    let rb = format!(
        "let rb = runbook(\"t\");\nrb.limit(\"web\", 1);\nrb.step(\"work\", |h| {});\n{FINALLY}rb.approval(\"go on\", \"web\");\nrb\n",
        mark("work", "[ ! -e ${h.var(\"dir\")}/broken ]")
    );
    let l = local(&[("web", &["w1", "w2"])], &rb);
    std::fs::write(l.file("w1", "broken"), "").unwrap();
    let out = l.cmd("run", &["--yes"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_eq!(entries(&l), ["work w1", "finally all"], "{}", out.stderr);

    // Aborted while it waits for an approval: `finally` still runs.
    std::fs::remove_file(l.file("w1", "broken")).unwrap();
    std::fs::remove_file(l.dir.path().join("log")).unwrap();
    let child = l.spawn("run", &["--yes"]);
    wait_for(
        || entries(&l).len() == 2,
        "both hosts worked and the run waits for its approval",
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    let id = l.run_id();
    assert_eq!(l.cmd("abort", &[&id]).code, 0);
    let (code, stderr) = finish_within(child, 30, "the aborted run");
    assert_eq!(code, 4, "{stderr}");
    assert_eq!(
        entries(&l),
        ["work w1", "work w2", "finally all"],
        "{stderr}"
    );
    assert!(stderr.contains("finally:restore"), "{stderr}");

    // Succeeded: once, after everything.
    std::fs::remove_file(l.dir.path().join("log")).unwrap();
    let out = l.cmd("run", &["--yes", "--approve", "go on"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(entries(&l), ["work w1", "work w2", "finally all"]);
}

/// A controller killed with -9 never got to `finally`; resume runs it.
#[test]
fn finally_runs_on_resume_after_kill_9() {
    let rb = format!(
        "let rb = runbook(\"t\");\nrb.step(\"work\", |h| {}).idempotent(true);\n{FINALLY}rb\n",
        mark("work", "sleep 30")
    );
    let l = local(&[("web", &["w1"])], &rb);
    let mut child = l.spawn("run", &["--yes"]);
    wait_for(|| entries(&l) == ["work w1"], "the step to start");
    kill9(&mut child);
    let id = l.run_id();
    // Let the orphaned step go, so that the resumed run's step is the one that counts.
    let _ = std::process::Command::new("pkill")
        .args(["-f", "sleep 30"])
        .status();
    let out = l.cmd("resume", &[&id, "--yes"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let e = entries(&l);
    assert_eq!(e.last().map(String::as_str), Some("finally all"), "{e:?}");
    assert_eq!(e.iter().filter(|x| *x == "finally all").count(), 1);
}

/// `.always()` releases a host whose step failed and a host in flight when the run halted;
/// a host that never started is not touched.
#[test]
fn always_steps_release_failed_and_in_flight_hosts_only() {
    let rb = format!(
        "let rb = runbook(\"t\");\nrb.limit(\"web\", 2);\n\
         rb.step(\"disable\", |h| {});\n\
         rb.step(\"upgrade\", |h| {});\n\
         rb.step(\"later\", |h| {});\n\
         rb.step(\"enable\", |h| {}).always();\nrb\n",
        mark("disable", ""),
        mark(
            "upgrade",
            // w1 fails only once w2 is in its upgrade: w2 is then in flight for sure.
            "d=${h.var(\"dir\")}; touch $d/upgrading; if [ -e $d/broken ]; then while [ ! -e $d/../w2/upgrading ]; do sleep 0.05; done; exit 1; fi; sleep 1"
        ),
        mark("later", ""),
        mark("enable", "")
    );
    let l = local(&[("web", &["w1", "w2", "w3"])], &rb);
    std::fs::write(l.file("w1", "broken"), "").unwrap();
    let out = l.cmd("run", &["--yes"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    let e = entries(&l);
    let of = |h: &str| -> Vec<String> {
        e.iter()
            .filter(|x| x.ends_with(&format!(" {h}")))
            .map(|x| x.split(' ').next().unwrap().to_string())
            .collect()
    };
    assert_eq!(of("w1"), ["disable", "upgrade", "enable"], "{e:?}");
    // w2 was in its upgrade when w1 failed: it finishes that step, then only releases.
    assert_eq!(of("w2"), ["disable", "upgrade", "enable"], "{e:?}");
    assert!(of("w3").is_empty(), "{e:?}");
    assert!(out.stderr.contains("w1 later not_run"), "{}", out.stderr);

    // Resumed, a released host does what is left, then releases again, last.
    std::fs::remove_file(l.file("w1", "broken")).unwrap();
    let id = l.run_id();
    let out = l.cmd("resume", &[&id, "--yes"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let e = entries(&l);
    let of = |h: &str| -> Vec<String> {
        e.iter()
            .filter(|x| x.ends_with(&format!(" {h}")))
            .map(|x| x.split(' ').next().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        of("w1"),
        ["disable", "upgrade", "enable", "upgrade", "later", "enable"]
    );
    assert_eq!(
        of("w2"),
        ["disable", "upgrade", "enable", "later", "enable"]
    );
    assert_eq!(of("w3"), ["disable", "upgrade", "later", "enable"]);
}

/// With `rb.rollback_scope("role")`, one host's failure undoes the completed steps of
/// every host of its role, newest first; the failed host rolls back its own first.
#[test]
fn a_role_wide_rollback_undoes_every_host_of_the_role_newest_first() {
    let step = |name: &str, fail: bool| {
        format!(
            "rb.step(\"{name}\", |h| {}).undo(|h| {});\n",
            mark(
                name,
                if fail {
                    "if [ -e ${h.var(\"dir\")}/broken ]; then exit 1; fi"
                } else {
                    ""
                }
            ),
            mark(&format!("undo-{name}"), "")
        )
    };
    let rb = format!(
        "let rb = runbook(\"t\");\nrb.order([\"web\", \"db\"]);\nrb.limit(\"web\", 1);\nrb.rollback_on_failure(true);\nrb.rollback_scope(\"role\");\n{}{}rb\n",
        step("one", false),
        step("two", true)
    );
    let l = local(&[("web", &["w1", "w2", "w3"]), ("db", &["d1"])], &rb);
    std::fs::write(l.file("w3", "broken"), "").unwrap();
    let out = l.cmd("run", &["--yes"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stderr.contains("rolling back the hosts of its roles"),
        "{}",
        out.stderr
    );
    assert_eq!(
        entries(&l),
        [
            "one w1",
            "two w1",
            "one w2",
            "two w2",
            "one w3",
            "two w3",
            // The failed host: its failed step's undo, then its earlier ones.
            "undo-two w3",
            "undo-one w3",
            // The rest of the role, newest first; the db role never started.
            "undo-two w2",
            "undo-one w2",
            "undo-two w1",
            "undo-one w1",
        ]
    );
}

/// `fleetbook rollback RUN --limit P` undoes the completed steps of a finished run on those
/// hosts, newest first; the rest later; nothing twice; a rolled-back run is not resumed.
#[test]
fn fleetbook_rollback_undoes_completed_steps_newest_first() {
    let rb = format!(
        "let rb = runbook(\"t\");\nrb.limit(\"web\", 1);\n\
         rb.step(\"one\", |h| {}).undo(|h| {});\n\
         rb.step(\"check\", |h| {});\n\
         rb.step(\"two\", |h| {}).undo(|h| {});\nrb\n",
        mark("one", ""),
        mark("undo-one", ""),
        mark("check", ""),
        mark("two", ""),
        mark("undo-two", "")
    );
    let l = local(&[("web", &["w1", "w2"])], &rb);
    assert_eq!(l.cmd("run", &["--yes"]).code, 0);
    let id = l.run_id();
    let before = entries(&l).len();

    let out = l.cmd("rollback", &[&id, "--limit", "w2", "--yes"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(entries(&l)[before..], ["undo-two w2", "undo-one w2"]);

    let out = l.cmd("rollback", &[&id, "--yes"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        entries(&l)[before..],
        ["undo-two w2", "undo-one w2", "undo-two w1", "undo-one w1"]
    );
    let out = l.cmd("rollback", &[&id, "--yes"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("nothing to roll back"),
        "{}",
        out.stderr
    );
    let out = l.cmd("resume", &[&id, "--yes"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("was rolled back"), "{}", out.stderr);
    let out = l.cmd("rollback", &[&id, "--limit", "nosuch*", "--yes"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
}

/// `.soak` keeps the host's slot after its step: with one host at a time, the next host
/// starts no sooner than the soak after the first ended.
#[test]
fn soak_keeps_the_slot_after_the_step() {
    let rb = format!(
        "let rb = runbook(\"t\");\nrb.limit(\"web\", 1);\nrb.step(\"work\", |h| {}).soak(\"2s\");\nrb\n",
        mark("work", "")
    );
    let l = local(&[("web", &["w1", "w2"])], &rb);
    let out = l.cmd("run", &["--yes"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let e = log(&l);
    assert_eq!(e.len(), 2);
    let gap = e[1].2 - e[0].2;
    assert!(
        gap >= 2.0,
        "w2 started {gap:.2}s after w1: the soak was not kept"
    );
    assert!(out.stderr.contains("soaking for 2s"), "{}", out.stderr);
}

/// After `rb.deadline`, no new host starts; hosts in flight finish; the run halts and says
/// why.
#[test]
fn no_host_starts_after_the_deadline() {
    let rb = format!(
        "let rb = runbook(\"t\");\nrb.limit(\"web\", 1);\nrb.deadline(\"6s\");\nrb.step(\"work\", |h| {});\nrb.step(\"after\", |h| {});\nrb\n",
        mark("work", "sleep 4"),
        mark("after", "")
    );
    let l = local(&[("web", &["w1", "w2", "w3", "w4"])], &rb);
    let out = l.cmd("run", &["--yes"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    // w1 ends at ~4 s, w2 starts then and ends past 6 s (2 s of margin for a loaded machine) (finishing both its steps).
    assert_eq!(
        entries(&l),
        ["work w1", "after w1", "work w2", "after w2"],
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("deadline (6s) passed: 2 host(s) did not start"),
        "{}",
        out.stderr
    );
}

/// A `before_each_host` check that fails halts the run before that host does anything,
/// whatever the failure budget; a check that returns no bool is an error at plan time.
#[test]
fn a_failing_before_each_host_check_halts_the_run() {
    let rb = format!(
        "let rb = runbook(\"t\");\nrb.limit(\"web\", 1);\nrb.max_failures(\"web\", 5);\n\
         rb.before_each_host(\"no alarm\", |h| h.run_ok(`test ! -e ${{h.var(\"dir\")}}/../alarm`));\n\
         rb.step(\"work\", |h| {});\nrb\n",
        mark("work", "touch ${h.var(\"dir\")}/../alarm")
    );
    let l = local(&[("web", &["w1", "w2", "w3"])], &rb);
    let out = l.cmd("run", &["--yes"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_eq!(entries(&l), ["work w1"]);
    assert!(
        out.stderr
            .contains("check \"no alarm\" does not hold on w2"),
        "{}",
        out.stderr
    );

    let bad = "let rb = runbook(\"t\");\nrb.before_each_host(\"x\", |h| \"yes\");\nrb.step(\"s\", |h| h.run(\"true\"));\nrb\n";
    let l = local(&[("web", &["w1"])], bad);
    let out = l.cmd("run", &["--yes"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("the check"), "{}", out.stderr);
}

/// A limit of 0 holds a role: the plan says so, and the run starts none of its hosts nor
/// the roles ordered after it, then halts naming the role.
#[test]
fn a_limit_of_zero_holds_the_role_and_what_follows() {
    let rb = format!(
        "let rb = runbook(\"t\");\nrb.order([\"web\", \"db\", \"cache\"]);\nrb.limit(\"db\", 0);\nrb.step(\"work\", |h| {});\nrb\n",
        mark("work", "")
    );
    let l = local(
        &[("web", &["w1"]), ("db", &["d1"]), ("cache", &["c1"])],
        &rb,
    );
    let plan = crate::support::fleetbook(&["plan"])
        .arg(l.rb.display().to_string())
        .arg("-i")
        .arg(l.inv.display().to_string())
        .code(0);
    assert!(plan.stdout.contains("held (limit 0)"), "{}", plan.stdout);
    assert!(
        plan.stdout.contains("waiting for one): d1 c1"),
        "{}",
        plan.stdout
    );
    let out = l.cmd("run", &["--yes"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_eq!(entries(&l), ["work w1"]);
    assert!(
        out.stderr
            .contains("role db is held (limit 0): 2 host(s) did not start"),
        "{}",
        out.stderr
    );
}

/// `rb.become(true)` wraps root operations in sudo on hosts whose inventory does not say
/// otherwise; without it the plan warns, once for all the hosts concerned.
#[test]
fn rb_become_wraps_root_operations_and_the_plan_warns_without_it() {
    let plan = |become_: &str| {
        let out = plan_json(
            &format!("let rb = runbook(\"t\");\n{become_}rb.step(\"restart\", |h| service::restart(h, \"nginx\"));\nrb\n"),
            "[web]\nw1\nw2\nw3 ansible_become=false\n",
            &[],
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
        out
    };
    let commands = |out: &crate::support::Outcome| -> Vec<(String, String)> {
        let p: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        p["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["kind"] == "host")
            .map(|t| {
                (
                    t["host"].as_str().unwrap().to_string(),
                    t["commands"][0].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let out = plan("");
    assert!(
        out.stderr.contains(
            "hosts w1, w2, w3: service::restart runs \"systemctl restart -- nginx\" without root"
        ),
        "{}",
        out.stderr
    );
    assert!(commands(&out).iter().all(|(_, c)| !c.contains("sudo")));
    let out = plan("rb.become(true);\n");
    let c = commands(&out);
    assert!(
        c[0].1.starts_with("sudo -n -- ") && c[1].1.starts_with("sudo -n -- "),
        "{c:?}"
    );
    // The inventory's word wins for its host, and that host is still warned about.
    assert!(!c[2].1.contains("sudo"), "{c:?}");
    assert!(
        out.stderr.contains("host w3: service::restart"),
        "{}",
        out.stderr
    );
}

/// `rb.max_failures_total` is one budget for the whole run, unreachable hosts counted,
/// whatever the roles: two failures in two roles go on, a third halts.
#[test]
fn max_failures_total_is_one_budget_for_the_run() {
    let rb = format!(
        "let rb = runbook(\"t\");\nrb.limit_total(1);\nrb.max_failures_total(2);\nrb.step(\"work\", |h| {});\nrb\n",
        mark("work", "[ ! -e ${h.var(\"dir\")}/broken ]")
    );
    let l = local(&[("web", &["w1", "w2", "w3"]), ("db", &["d1", "d2"])], &rb);
    for h in ["w1", "d1"] {
        std::fs::write(l.file(h, "broken"), "").unwrap();
    }
    let out = l.cmd("run", &["--yes"]);
    assert_eq!(out.code, 5, "{}", out.stderr);
    assert_eq!(entries(&l).len(), 5);
    std::fs::write(l.file("w2", "broken"), "").unwrap();
    std::fs::remove_file(l.dir.path().join("log")).unwrap();
    let out = l.cmd("run", &["--yes"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("3 hosts failed in all (max_failures_total 2)"),
        "{}",
        out.stderr
    );
    assert_eq!(entries(&l), ["work w1", "work w2", "work w3", "work d1"]);
}

/// The docs say a bare number is seconds: `.timeout(90)` works as `.timeout("90s")`.
#[test]
fn durations_take_a_bare_number_of_seconds() {
    let out = plan_json(
        "let rb = runbook(\"t\");\nrb.deadline(7200);\nrb.step(\"s\", |h| h.run(\"true\")).timeout(90).retry_delay(5).estimate(30).soak(60);\nrb\n",
        "[web]\nw1\n",
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let p: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let s = &p["runbook"]["steps"][0];
    assert_eq!(
        (&s["timeout"], &s["retry_delay"], &s["estimate"], &s["soak"]),
        (&90.into(), &5.into(), &30.into(), &60.into())
    );
    assert_eq!(p["runbook"]["deadline"], 7200);
    let out = plan_json(
        "let rb = runbook(\"t\");\nrb.step(\"s\", |h| h.run(\"true\")).timeout(-1);\nrb\n",
        "[web]\nw1\n",
        &[],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("must not be negative"),
        "{}",
        out.stderr
    );
}

/// `file::put` of a secret is shown without its digest: a short secret could be found
/// again from its SHA-256. Other files keep theirs.
#[test]
fn a_put_of_a_secret_shows_no_digest() {
    let out = plan_json(
        "let rb = runbook(\"t\");\nlet pw = secret_param(\"pw\", \"\");\n\
         rb.step(\"s\", |h| { file::put(h, \"/tmp/pw\", `password=${pw}`, \"0600\"); file::put(h, \"/tmp/motd\", \"hello\"); });\nrb\n",
        "[web]\nw1\n",
        &["-p", "pw=hunter2-long"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let p: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let task = p["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["kind"] == "host")
        .unwrap();
    let c: Vec<&str> = task["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(
        c[0].contains("holds a secret") && !c[0].contains("sha256"),
        "{c:?}"
    );
    assert!(c[1].contains("sha256:"), "{c:?}");
    assert!(!out.stdout.contains("hunter2"));
}

/// An undo that fails stops its host's rollback and the run can only be rolled back further,
/// not resumed; the next rollback tries the failed undo first, then the older steps.
#[test]
fn a_failed_undo_is_tried_again_first_and_the_run_is_not_resumed() {
    let rb = format!(
        "let rb = runbook(\"t\");\nrb.limit(\"web\", 1);\n\
         rb.step(\"a\", |h| {}).undo(|h| {});\n\
         rb.step(\"b\", |h| {}).undo(|h| {});\nrb\n",
        mark("a", ""),
        mark("undo-a", ""),
        mark("b", ""),
        mark("undo-b", "[ ! -e ${h.var(\"dir\")}/broken ]")
    );
    let l = local(&[("web", &["w1", "w2"])], &rb);
    assert_eq!(l.cmd("run", &["--yes"]).code, 0);
    let id = l.run_id();
    std::fs::write(l.file("w1", "broken"), "").unwrap();
    let out = l.cmd("rollback", &[&id, "--yes"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("continue the rollback: fleetbook rollback"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("fleetbook resume"), "{}", out.stderr);
    let out = l.cmd("resume", &[&id, "--yes"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    // w1's `b` is still applied: its `a` was not undone under it.
    let undone = |h: &str| -> Vec<String> {
        entries(&l)
            .into_iter()
            .filter(|e| e.starts_with("undo") && e.ends_with(h))
            .collect()
    };
    assert_eq!(
        undone("w1"),
        ["undo-b w1"],
        "the failed attempt wrote its mark"
    );
    std::fs::remove_file(l.file("w1", "broken")).unwrap();
    let out = l.cmd("rollback", &[&id, "--yes"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(undone("w1"), ["undo-b w1", "undo-b w1", "undo-a w1"]);
    assert_eq!(undone("w2"), ["undo-b w2", "undo-a w2"]);
}

/// A run killed with -9 mid-step: rollback names the step whose outcome is unknown and
/// stops; with --undo-unknown it undoes it too, then runs the `finally` the run never ran.
#[test]
fn a_rollback_after_a_crash_names_unknown_steps_and_runs_the_owed_finally() {
    let rb = format!(
        "let rb = runbook(\"t\");\nrb.limit(\"web\", 1);\n\
         rb.step(\"a\", |h| {}).undo(|h| {});\n{FINALLY}rb\n",
        mark(
            "a",
            "if [ $(hostname) != x ] && [ -e ${h.var(\"dir\")}/slow ]; then sleep 30; fi"
        ),
        mark("undo-a", "")
    );
    let l = local(&[("web", &["w1", "w2"])], &rb);
    std::fs::write(l.file("w2", "slow"), "").unwrap();
    let mut child = l.spawn("run", &["--yes"]);
    wait_for(|| entries(&l) == ["a w1", "a w2"], "w2 in its step");
    kill9(&mut child);
    let id = l.run_id();
    let out = l.cmd("rollback", &[&id, "--yes"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("host:w2:a"), "{}", out.stderr);
    let out = l.cmd("rollback", &[&id, "--yes", "--undo-unknown"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        entries(&l)[2..],
        ["undo-a w2", "undo-a w1", "finally all"],
        "{}",
        out.stderr
    );
}

/// A held role's own hooks are held too (a `before_role` that disables a scheduler must not
/// run for a role that does not start); after the deadline no hook runs and no approval
/// waits; a halt ends a soak at once.
#[test]
fn held_roles_keep_their_hooks_and_deadlines_and_halts_end_waits() {
    let hook = |what: &str| {
        format!("|| host(\"w1\").run(`echo \"{what} hook 0\" >> ${{host(\"w1\").var(\"dir\")}}/../log`)")
    };
    let rb = format!(
        "let rb = runbook(\"t\");\nrb.order([\"web\", \"db\"]);\nrb.limit(\"db\", 0);\n\
         rb.before_role(\"db\", \"off\", {});\nrb.after_role(\"db\", \"on\", {});\n\
         rb.step(\"work\", |h| {});\nrb\n",
        hook("before-db"),
        hook("after-db"),
        mark("work", "")
    );
    let l = local(&[("web", &["w1"]), ("db", &["d1"])], &rb);
    let out = l.cmd("run", &["--yes"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_eq!(entries(&l), ["work w1"], "{}", out.stderr);

    let rb = format!(
        "let rb = runbook(\"t\");\nrb.order([\"web\", \"db\"]);\nrb.deadline(\"1s\");\n\
         rb.approval(\"go\", \"web\");\nrb.before_role(\"db\", \"off\", {});\n\
         rb.step(\"work\", |h| {});\nrb\n",
        hook("before-db"),
        mark("work", "sleep 1.5")
    );
    let l = local(&[("web", &["w1"]), ("db", &["d1"])], &rb);
    let child = l.spawn("run", &["--yes"]);
    let (code, stderr) = finish_within(child, 20, "a run past its deadline at an approval");
    assert_eq!(code, 3, "{stderr}");
    assert_eq!(entries(&l), ["work w1"], "{stderr}");
    assert!(!stderr.contains("waits for approval"), "{stderr}");

    let rb = format!(
        "let rb = runbook(\"t\");\nrb.step(\"work\", |h| {}).soak(\"1h\");\nrb\n",
        mark(
            "work",
            "if [ -e ${h.var(\"dir\")}/broken ]; then sleep 1; exit 1; fi"
        )
    );
    let l = local(&[("web", &["w1", "w2"])], &rb);
    std::fs::write(l.file("w2", "broken"), "").unwrap();
    let child = l.spawn("run", &["--yes"]);
    let (code, stderr) = finish_within(child, 30, "a halted run with a soaking host");
    assert_eq!(code, 3, "{stderr}");
}

/// A run whose fleet lock is taken away (here: its row deleted behind its back) stops
/// starting tasks within a poll and ends with its own status (7), never "aborted"; resume
/// goes on.
#[test]
fn a_run_that_loses_its_fleet_lock_stops_with_its_own_status() {
    let rb = format!(
        "let rb = runbook(\"t\");\nrb.limit(\"web\", 1);\nrb.step(\"work\", |h| {}).idempotent(true);\nrb\n",
        mark("work", "sleep 5")
    );
    let l = local(&[("web", &["w1", "w2", "w3"])], &rb);
    let child = l.spawn("run", &["--yes"]);
    wait_for(|| entries(&l) == ["work w1"], "w1 at work");
    let db = l.state.join("journal.sqlite");
    let status = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('DELETE FROM locks'); c.commit()",
        ])
        .arg(&db)
        .status()
        .expect("python3 runs");
    assert!(status.success());
    let (code, stderr) = finish_within(child, 30, "the run that lost its lock");
    assert_eq!(code, 7, "{stderr}");
    assert!(stderr.contains("the fleet lock was taken away"), "{stderr}");
    assert!(!stderr.contains("aborted"), "{stderr}");
    assert_eq!(entries(&l), ["work w1"]);
    let id = l.run_id();
    let out = l.cmd("status", &[&id, "--format", "json"]);
    assert!(out.stdout.contains("store_failed"), "{}", out.stdout);
    let out = l.cmd("resume", &[&id, "--yes"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(entries(&l), ["work w1", "work w2", "work w3"]);
}

/// `ansible_become_user` is honoured: a root operation on a host that becomes `postgres` is
/// run as `postgres` (as Ansible does), never as root.
#[test]
fn become_user_is_the_user_become_switches_to() {
    let out = plan_json(
        "let rb = runbook(\"t\");\nrb.become(true);\nrb.step(\"restart\", |h| { service::restart(h, \"pg\"); file::put(h, \"/tmp/x\", \"hi\"); });\nrb\n",
        "[db]\nd1 ansible_become_user=postgres\nd2\n",
        &[],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let p: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let commands = |host: &str| -> Vec<String> {
        p["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["host"] == host)
            .unwrap()["commands"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect()
    };
    let d1 = commands("d1");
    assert!(d1[0].starts_with("sudo -n -u postgres -- sh -c "), "{d1:?}");
    let d2 = commands("d2");
    assert!(d2[0].starts_with("sudo -n -- sh -c "), "{d2:?}");
}

/// A small tmpfs the test mounts (root only), unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(at: &std::path::Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .expect("mount runs");
        assert!(
            status.success(),
            "mounting a tmpfs needs root: run the tests as root (./test.sh does)"
        );
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// The journal's disk fills in the middle of a run (the first host's step fills it): the
/// write that fails stops the run with its own status (7), never "aborted", naming the task
/// the journal lacks; what was recorded before is still there, and once there is room a
/// resume finishes the run.
#[test]
fn a_run_whose_journal_disk_fills_stops_with_its_own_status() {
    let rb = format!(
        "let rb = runbook(\"t\");\nrb.limit(\"web\", 1);\nrb.step(\"work\", |h| {}).idempotent(true);\nrb\n",
        mark(
            "work",
            "if [ ! -e ${h.var(\"dir\")}/../filled ]; then touch ${h.var(\"dir\")}/../filled; \
             dd if=/dev/zero of=${h.var(\"dir\")}/../state/filler bs=64k 2>/dev/null || true; fi"
        )
    );
    let l = local(&[("web", &["w1", "w2", "w3"])], &rb);
    let _disk = Tmpfs::mount(&l.state, "1m");
    let out = l.cmd("run", &["--yes"]);
    assert_eq!(out.code, 7, "{}", out.stderr);
    assert!(
        out.stderr.contains("the journal could not be written"),
        "{}",
        out.stderr
    );
    // Transitions are committed per tick, so the end of w1 and the start of w2 (never sent)
    // may be lost together: both are named, in any order.
    let lacks = out
        .stderr
        .split("journal lacks: ")
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .unwrap_or_else(|| panic!("{}", out.stderr));
    assert!(
        lacks.split(", ").any(|t| t == "host:w1:work"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("aborted"), "{}", out.stderr);
    assert_eq!(entries(&l), ["work w1"]);

    std::fs::remove_file(l.state.join("filler")).unwrap();
    let id = l.run_id();
    let out = l.cmd("status", &[&id, "--format", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let status: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    // Its start was recorded, its end was not: the journal says it is still at work.
    assert_eq!(status["hosts"][0]["state"], "upgrading", "{status}");
    let out = l.cmd("resume", &[&id, "--yes"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(entries(&l), ["work w1", "work w1", "work w2", "work w3"]);
}
