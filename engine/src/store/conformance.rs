//! What every [`RunStore`] must do, written once and run against each implementation
//! (`fresh` makes an empty store; each check uses its own). A check panics with what
//! differed.

use super::{FleetLock, RunState, RunStore, TaskState};
use crate::clock::At;
use crate::compile::TaskKind;
use crate::error::Error;
use crate::exec::{Event, State};
use crate::journal::{Action, CommandRecord, RunRecord, TaskRow};
use std::sync::Arc;
use std::time::Duration;

/// Every check, in turn.
pub fn check_all(fresh: &dyn Fn() -> Arc<dyn RunStore>) {
    runs_are_listed_newest_first_and_found_by_id(&*fresh());
    transitions_facts_and_states_are_kept(&*fresh());
    approvals_and_abort_requests_reach_the_run(&*fresh());
    the_fleet_lock_admits_one_run_and_reports_its_loss(fresh());
    a_replan_keeps_the_new_inputs(&*fresh());
    plans_commands_and_actions_are_kept_for_reports(&*fresh());
    queued_writes_are_kept_in_order_at_flush(&*fresh());
}

/// A store that cannot be used (a read-only or garbled journal file, a document fleetbook
/// did not write) refuses at once with a fatal error saying `says`: opening it, or the
/// first look at its runs. Retrying would not mend it.
pub fn check_unusable(opened: crate::Result<Arc<dyn RunStore>>, says: &str) {
    let err = match opened {
        Ok(store) => store.runs().expect_err("an unusable store lists no runs"),
        Err(e) => super::StoreError::from(e),
    };
    assert!(err.is_fatal(), "{err}");
    assert!(err.to_string().contains(says), "{err}");
}

/// A moment `secs` Unix seconds name.
fn at(secs: u64) -> At {
    At::EPOCH.after(Duration::from_secs(secs))
}

fn record(id: &str, started_at: At) -> RunRecord {
    RunRecord {
        id: id.into(),
        runbook: "rb".into(),
        runbook_path: "/rb.rhai".into(),
        runbook_digest: "sha256:1".into(),
        inventory_path: "/hosts".into(),
        inventory_digest: "sha256:2".into(),
        params: [("version".to_string(), "2.0".to_string())].into(),
        limit_pattern: None,
        user: "ops".into(),
        controller: crate::journal::controller(),
        pid: std::process::id() as i64,
        started_at,
        ended_at: None,
        state: RunState::Running,
        reason: None,
        lib_digest: Some("sha256:3".into()),
        secret_digests: Default::default(),
        pre_approved: vec!["go".into()],
    }
}

fn task(id: &str, host: Option<&str>) -> TaskRow {
    TaskRow {
        task_id: id.into(),
        kind: if host.is_some() { "host" } else { "once" }.into(),
        host: host.map(str::to_string),
        step: Some("s".into()),
        role: Some("web".into()),
        state: TaskState::Pending,
        attempt: 0,
        started_at: None,
        ended_at: None,
        message: None,
    }
}

fn create(store: &dyn RunStore, id: &str, at: At) {
    store
        .create_run(
            &record(id, at),
            &[("w1".into(), vec!["web".into()])],
            &[task("host:w1:s", Some("w1")), task("once:s", None)],
        )
        .unwrap_or_else(|e| panic!("create_run {id}: {e}"));
}

fn cmd(n: i64) -> CommandRecord {
    CommandRecord {
        task_id: Some("host:w1:s".into()),
        host: "w1".into(),
        attempt: 1,
        command: format!("echo {n}"),
        exit_code: (n > 0).then_some(n),
        error: (n == 0).then(|| "timed out".to_string()),
        started_at: at(100 + n as u64),
        duration: Duration::from_millis(500),
        output_tail: format!("line {n}\n"),
        output_bytes: 7,
    }
}

fn event(task: &str, state: State, attempt: u32, secs: u64) -> Event {
    Event {
        at: Duration::from_secs(secs),
        task: task.into(),
        kind: TaskKind::Host,
        host: Some("w1".into()),
        step: Some("s".into()),
        role: Some("web".into()),
        state,
        attempt,
        message: (state == State::Failed).then(|| "boom".to_string()),
    }
}

pub fn runs_are_listed_newest_first_and_found_by_id(store: &dyn RunStore) {
    create(store, "r1", at(100));
    create(store, "r2", at(200));
    let ids: Vec<String> = store.runs().unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(ids, ["r2", "r1"], "runs() must list the newest first");
    assert_eq!(store.run(None).unwrap().id, "r2", "run(None) is the newest");
    let r1 = store.run(Some("r1")).unwrap();
    assert_eq!(r1.params["version"], "2.0");
    assert_eq!(r1.pre_approved, ["go"]);
    assert_eq!(r1.state, RunState::Running);
    assert!(
        store.run(Some("nope")).is_err(),
        "an unknown run is an error"
    );
    assert_eq!(
        store.hosts("r1").unwrap(),
        [("w1".to_string(), vec!["web".to_string()])]
    );
}

pub fn transitions_facts_and_states_are_kept(store: &dyn RunStore) {
    create(store, "r1", at(100));
    store
        .record("r1", &event("host:w1:s", State::Running, 1, 1), at(100))
        .unwrap();
    let t = |store: &dyn RunStore| {
        store
            .tasks("r1")
            .unwrap()
            .into_iter()
            .find(|t| t.task_id == "host:w1:s")
            .unwrap()
    };
    let running = t(store);
    assert_eq!((running.state, running.attempt), (TaskState::Running, 1));
    assert_eq!(running.started_at, Some(at(101)));
    store
        .record("r1", &event("host:w1:s", State::Failed, 2, 3), at(100))
        .unwrap();
    let failed = t(store);
    assert_eq!((failed.state, failed.attempt), (TaskState::Failed, 2));
    assert_eq!(failed.ended_at, Some(at(103)));
    assert_eq!(failed.message.as_deref(), Some("boom"));

    store
        .add_missing_tasks(
            "r1",
            &[task("host:w1:s", Some("w1")), task("host:w1:t", Some("w1"))],
        )
        .unwrap();
    let tasks = store.tasks("r1").unwrap();
    assert_eq!(
        tasks.len(),
        3,
        "add_missing_tasks adds only the missing one"
    );
    assert_eq!(
        t(store).state,
        TaskState::Failed,
        "and leaves the others as they are"
    );

    store
        .record_fact("r1", "w1", "previous_version", "1.0")
        .unwrap();
    store
        .record_fact("r1", "w1", "previous_version", "1.1")
        .unwrap();
    assert_eq!(
        store.facts("r1").unwrap(),
        [("w1".into(), "previous_version".into(), "1.1".into())]
    );

    for state in [RunState::Halted, RunState::RolledBack, RunState::Succeeded] {
        store.set_state("r1", state, Some("why"), true).unwrap();
        let r = store.run(Some("r1")).unwrap();
        assert_eq!(r.state, state);
        assert_eq!(r.reason.as_deref(), Some("why"));
        assert!(r.ended_at.is_some(), "an ended run has an end time");
    }
    store
        .set_state("r1", RunState::Running, None, false)
        .unwrap();
    assert_eq!(store.run(Some("r1")).unwrap().ended_at, None);
}

pub fn approvals_and_abort_requests_reach_the_run(store: &dyn RunStore) {
    create(store, "r1", at(100));
    assert!(!store.approved("r1", "go").unwrap());
    store.approve("r1", "go").unwrap();
    assert!(store.approved("r1", "go").unwrap());
    assert!(!store.approved("r1", "other").unwrap());
    assert_eq!(store.abort_requested("r1").unwrap(), (false, false));
    store.request_abort("r1", false).unwrap();
    assert_eq!(store.abort_requested("r1").unwrap(), (true, false));
    store.request_abort("r1", true).unwrap();
    assert_eq!(store.abort_requested("r1").unwrap(), (true, true));
    // A new attempt of the run starts with no request pending.
    store
        .set_state("r1", RunState::Running, None, false)
        .unwrap();
    assert_eq!(store.abort_requested("r1").unwrap(), (false, false));
}

pub fn the_fleet_lock_admits_one_run_and_reports_its_loss(store: Arc<dyn RunStore>) {
    create(&*store, "r1", at(100));
    create(&*store, "r2", at(200));
    let held = FleetLock::take(store.clone(), "fleet:a", "r1").unwrap();
    assert!(!held.lost());
    match FleetLock::take(store.clone(), "fleet:a", "r2") {
        Err(Error::Locked { message, .. }) => {
            assert!(
                message.contains("r1"),
                "the refusal names the holder: {message}"
            )
        }
        Err(e) => panic!("a second run got {e}, not Locked"),
        Ok(_) => panic!("a second run took a held fleet lock"),
    }
    let other = FleetLock::take(store.clone(), "fleet:b", "r2").unwrap();
    assert_eq!(store.locks().unwrap().len(), 2);
    store.break_lock("fleet:a").unwrap();
    assert!(held.lost(), "a broken lock is lost");
    assert!(!other.lost());
    drop(other);
    assert!(
        store.locks().unwrap().iter().all(|l| l.fleet != "fleet:b"),
        "a dropped lock is released"
    );
    drop(held);
    let again = FleetLock::take(store.clone(), "fleet:a", "r2").unwrap();
    assert!(!again.lost());
}

pub fn a_replan_keeps_the_new_inputs(store: &dyn RunStore) {
    create(store, "r1", at(100));
    let mut r = store.run(Some("r1")).unwrap();
    r.runbook_digest = "sha256:new".into();
    r.params.insert("version".into(), "3.0".into());
    r.pre_approved = vec!["go".into(), "more".into()];
    store.replan(&r).unwrap();
    let back = store.run(Some("r1")).unwrap();
    assert_eq!(back.runbook_digest, "sha256:new");
    assert_eq!(back.params["version"], "3.0");
    assert_eq!(back.pre_approved, ["go", "more"]);
}

pub fn plans_commands_and_actions_are_kept_for_reports(store: &dyn RunStore) {
    create(store, "r1", at(100));
    create(store, "r2", at(200));
    assert_eq!(store.plan("r1").unwrap(), None, "no plan saved yet");
    store.save_plan("r1", r#"{"a":1}"#).unwrap();
    store.save_plan("r1", r#"{"a":2}"#).unwrap();
    assert_eq!(
        store.plan("r1").unwrap().as_deref(),
        Some(r#"{"a":2}"#),
        "the newest plan saved is kept"
    );
    assert_eq!(store.plan("r2").unwrap(), None, "plans are per run");

    for n in [2, 0, 1] {
        store.record_command("r1", &cmd(n)).unwrap();
    }
    assert_eq!(
        store.commands("r1").unwrap(),
        [cmd(2), cmd(0), cmd(1)],
        "commands come back whole, in the order recorded"
    );
    assert!(store.commands("r2").unwrap().is_empty());

    store.approve("r1", "go").unwrap();
    store.request_abort("r1", true).unwrap();
    let actions = store.actions("r1").unwrap();
    let user = crate::journal::user();
    match actions.as_slice() {
        [Action::Approve { gate, by, .. }, Action::Abort { now, by: by2, .. }] => {
            assert_eq!((gate.as_str(), by, *now, by2), ("go", &user, true, &user));
        }
        other => panic!("approve then abort, with the user, expected: {other:?}"),
    }
    assert!(actions[0].at() <= actions[1].at(), "oldest first");
    assert!(store.actions("r2").unwrap().is_empty());
}

/// Transitions and command records queued in one tick are all kept, in order, once
/// `flush` returns (a store without a queue kept each at once).
pub fn queued_writes_are_kept_in_order_at_flush(store: &dyn RunStore) {
    create(store, "r1", at(100));
    store
        .record_queued("r1", &event("host:w1:s", State::Running, 1, 1), at(100))
        .unwrap();
    store.record_command_queued("r1", &cmd(0)).unwrap();
    store
        .record_queued("r1", &event("host:w1:s", State::Ok, 1, 2), at(100))
        .unwrap();
    store
        .record_queued("r1", &event("once:s", State::Running, 1, 2), at(100))
        .unwrap();
    store.flush().unwrap();
    let tasks = store.tasks("r1").unwrap();
    let state = |id: &str| {
        let t = tasks.iter().find(|t| t.task_id == id).unwrap();
        (t.state, t.started_at, t.ended_at)
    };
    assert_eq!(
        state("host:w1:s"),
        (TaskState::Ok, Some(at(101)), Some(at(102))),
        "the later transition of a task wins"
    );
    assert_eq!(state("once:s"), (TaskState::Running, Some(at(102)), None));
    assert_eq!(store.commands("r1").unwrap(), [cmd(0)]);
}
