//! The session on its own, with real parts: an SQLite journal in a temporary directory and
//! hosts of this machine (`ansible_connection=local`); what the hosts did is read from the
//! log their commands write.

use super::*;
use crate::exec::{Control, Event, RunStatus, State};
use crate::inventory::Format;
use crate::store::{self, RunState, RunStore};
use crate::transport::{local::Local, ssh, Router};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the operator would have seen.
#[derive(Default)]
struct Seen {
    events: Mutex<Vec<(String, State)>>,
    lines: Mutex<Vec<String>>,
    ended: AtomicBool,
}

impl RunUi for Seen {
    fn event(&self, e: &Event) {
        self.events.lock().unwrap().push((e.task.clone(), e.state));
    }
    fn say(&self, line: &str) {
        self.lines.lock().unwrap().push(line.to_string());
    }
    fn approval(&self, _: &str, _: Option<&str>) {}
    fn broken(&self) -> Option<String> {
        None
    }
    fn ended(&self) {
        self.ended.store(true, Ordering::SeqCst);
    }
}

fn router() -> Arc<Router> {
    Arc::new(Router {
        local: Arc::new(Local::default()),
        ssh: Arc::new(ssh::Ssh::new(ssh::SshOptions::default()).unwrap()),
    })
}

/// A runbook of two steps on `hosts` local hosts, one at a time; each step appends
/// `STEP HOST` to `dir/log`, and step `b` fails while `dir/broken` exists.
fn planned(dir: &Path, hosts: usize, sleep: &str) -> plan::Planned {
    let d = dir.display();
    let rb = format!(
        "let rb = runbook(\"t\");\nrb.limit(\"web\", 1);\n\
         rb.step(\"a\", |h| h.run(`echo \"a ${{h.name}}\" >> {d}/log; sleep {sleep}`));\n\
         rb.step(\"b\", |h| h.run(`echo \"b ${{h.name}}\" >> {d}/log; [ ! -e {d}/broken ]`));\nrb\n"
    );
    let inv: String = std::iter::once("[web]\n".to_string())
        .chain((1..=hosts).map(|i| format!("w{i} ansible_connection=local\n")))
        .collect();
    plan::plan_text(&rb, &inv, Format::Ini, &BTreeMap::new(), None).unwrap()
}

fn log(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn attempt(
    planned: &plan::Planned,
    store: &Arc<dyn RunStore>,
    start: Start,
    state: &Path,
) -> (Finished, Seen) {
    let output = state.join("output");
    let cfg = RunConfig {
        approve: &[],
        output_dir: &output,
    };
    let session = Session::begin(planned, store.clone(), start, &cfg).unwrap();
    let seen = Seen::default();
    let control = Arc::new(Control::default());
    let finished = session.execute(planned, router(), control, &seen).unwrap();
    (finished, seen)
}

#[test]
fn a_resume_runs_exactly_what_the_first_attempt_left() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let store = store::open(&state).unwrap();
    let planned = planned(dir.path(), 2, "0");
    std::fs::write(dir.path().join("broken"), "").unwrap();

    let (first, seen) = attempt(&planned, &store, Start::New, &state);
    assert_eq!(first.outcome.status, RunStatus::Halted);
    assert!(seen.ended.load(Ordering::SeqCst));
    assert!(!seen.events.lock().unwrap().is_empty());
    assert_eq!(log(dir.path()), ["a w1", "b w1"]);
    let run = store.run(None).unwrap();
    assert_eq!(run.state, RunState::Halted);
    assert!(store.locks().unwrap().is_empty(), "the lock is given back");

    std::fs::remove_file(dir.path().join("broken")).unwrap();
    let done = done_tasks(&run, store.tasks(&run.id).unwrap(), &planned, false, false).unwrap();
    let start = Start::Resume {
        run: Box::new(run.clone()),
        done,
        unknown: (false, false),
    };
    let (second, _) = attempt(&planned, &store, start, &state);
    assert_eq!(second.outcome.status, RunStatus::Succeeded);
    assert_eq!(log(dir.path()), ["a w1", "b w1", "b w1", "a w2", "b w2"]);
    assert_eq!(store.run(Some(&run.id)).unwrap().state, RunState::Succeeded);
    assert!(store.locks().unwrap().is_empty());
}

#[test]
fn a_run_whose_lock_is_broken_starts_no_new_task() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let store = store::open(&state).unwrap();
    let planned = planned(dir.path(), 3, "1.5");
    let output = state.join("output");
    let cfg = RunConfig {
        approve: &[],
        output_dir: &output,
    };
    let session = Session::begin(&planned, store.clone(), Start::New, &cfg).unwrap();
    let seen = Seen::default();
    let finished = std::thread::scope(|scope| {
        let run = scope.spawn(|| {
            let control = Arc::new(Control::default());
            session.execute(&planned, router(), control, &seen)
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        while log(dir.path()).is_empty() {
            assert!(Instant::now() < deadline, "the first step never started");
            std::thread::sleep(Duration::from_millis(20));
        }
        // `fleetbook unlock` from another terminal, while the first host's step sleeps.
        let fleet = store.locks().unwrap()[0].fleet.clone();
        store.break_lock(&fleet).unwrap();
        run.join().unwrap().unwrap()
    });
    let o = &finished.outcome;
    assert_eq!(o.status, RunStatus::StoreFailed);
    assert!(
        o.reason.as_deref().unwrap_or("").contains("taken away"),
        "{:?}",
        o.reason
    );
    assert_eq!(
        log(dir.path()),
        ["a w1"],
        "no task started after the lock was lost"
    );
    let lines = seen.lines.lock().unwrap().join("\n");
    assert!(lines.contains("the fleet lock was taken away"), "{lines}");
    let run = store.run(None).unwrap();
    assert_eq!(run.state, RunState::StoreFailed);
}
