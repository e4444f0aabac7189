//! What a run watches while it executes: its store for abort requests and approvals, its
//! fleet lock and lease, and its own writes. Whatever it can no longer show stops new tasks
//! at once; the run then ends with the store's status, never "aborted".

use super::run::RunUi;
use crate::exec::{Control, Event, RunOutcome, RunStatus};
use crate::store::{FleetLock, RunStore, StoreError, StoreResult};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often the store is asked for abort requests and the lock.
const POLL: Duration = Duration::from_millis(250);
/// How often a lease is judged: locally, so often costs nothing.
const LEASE_POLL: Duration = Duration::from_millis(50);
/// How often an approval is looked for.
const APPROVAL_POLL: Duration = Duration::from_millis(300);

/// How many times a recoverable store error is tried again, and the first pause (doubled
/// each time: 0.1 + 0.2 + 0.4 s). Few and short, because the stores already wait before
/// they give up (SQLite's busy timeout, the etcd client's retries within its deadline): what
/// is left is a store that comes back within a moment (a writer that just let go, an etcd
/// leader just elected). Longer would keep a run's tasks waiting on a store that is gone,
/// and its lease expire meanwhile.
const STORE_RETRIES: u32 = 3;
const STORE_BACKOFF: Duration = Duration::from_millis(100);

/// `f` until it gives something other than a recoverable error, at most
/// [`STORE_RETRIES`] more times; a recoverable error that outlasts them is fatal.
pub(super) fn retried<T>(what: &str, mut f: impl FnMut() -> StoreResult<T>) -> StoreResult<T> {
    let mut pause = STORE_BACKOFF;
    for _ in 0..STORE_RETRIES {
        match f() {
            Err(e) if !e.is_fatal() => {
                tracing::warn!(error = %e, "store {what}: trying again in {pause:?}");
                std::thread::sleep(pause);
                pause *= 2;
            }
            r => return r,
        }
    }
    f().map_err(|e| StoreError::Fatal(e.into_error()))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|x| x.into_inner())
}

/// Records transitions and facts in the store; a write that fails stops new tasks, since
/// a run the store cannot follow cannot be resumed.
pub(super) struct Recorder {
    store: Arc<dyn RunStore>,
    run_id: String,
    started_at: crate::clock::At,
    control: Arc<Control>,
    /// The first write error.
    failed: Mutex<Option<String>>,
    /// Tasks whose transition the store could not keep: their outcome is unknown to a resume.
    unrecorded: Mutex<Vec<String>>,
}

impl Recorder {
    pub(super) fn new(
        store: Arc<dyn RunStore>,
        run_id: &str,
        started_at: crate::clock::At,
        control: Arc<Control>,
    ) -> Recorder {
        Recorder {
            store,
            run_id: run_id.to_string(),
            started_at,
            control,
            failed: Mutex::default(),
            unrecorded: Mutex::default(),
        }
    }

    fn stop(&self, err: String) {
        self.control.unrecorded.store(true, Ordering::SeqCst);
        self.control.stop.store(true, Ordering::SeqCst);
        tracing::error!(run = %self.run_id, error = %err, "the store refused a write: no new task starts");
        *lock(&self.failed) = Some(err);
    }

    /// Events come out of the engine redacted (engine::secrets).
    pub(super) fn event(&self, e: &Event) {
        // Queued: committed once per tick, and before the task's first command is sent.
        let write = || self.store.record_queued(&self.run_id, e, self.started_at);
        if let Err(err) = retried("write", write) {
            self.stop(err.to_string());
            let mut u = lock(&self.unrecorded);
            if !u.contains(&e.task) {
                u.push(e.task.clone());
            }
        }
    }

    /// Called from inside a step as `set_fact` runs: the fact is stored when it returns.
    pub(super) fn fact_sink(self: Arc<Self>) -> fleetbook_stdlib::host::FactSink {
        Arc::new(move |host: &str, name: &str, value: &str| {
            let write = || self.store.record_fact(&self.run_id, host, name, value);
            if let Err(err) = retried("write", write) {
                self.stop(err.to_string());
            }
        })
    }

    /// The run's status once its tasks are over: a lost lease, a failed write or a lost lock
    /// ends it [`RunStatus::StoreFailed`], with the tasks left unknown named.
    pub(super) fn verdict(&self, outcome: &mut RunOutcome, lock_lost: bool, ui: &dyn RunUi) {
        let mut unknown = lock(&self.unrecorded).clone();
        // Ends queued and then lost by a commit that failed.
        for t in self.store.unrecorded() {
            if !unknown.contains(&t) {
                unknown.push(t);
            }
        }
        let left = match unknown.is_empty() {
            true => String::new(),
            false => format!(
                "; tasks whose outcome the journal lacks: {}",
                unknown.join(", ")
            ),
        };
        let failed = lock(&self.failed).clone();
        let reason = if self.store.lease_lost() {
            // Said first: the journal errors that follow are its consequence.
            format!("the fleet lock was lost: this controller could not renew its etcd lease within its TTL (etcd unreachable, or this process paused); no task started after that{left}")
        } else if let Some(err) = failed {
            ui.say(&format!(
                "error: the journal could not be written, the run was stopped: {err}"
            ));
            format!("the journal could not be written ({err}): no task started after that{left}")
        } else if lock_lost {
            format!("the fleet lock was taken away (`fleetbook unlock`?): no task started after that, the tasks in flight finished{left}")
        } else {
            return;
        };
        outcome.status = RunStatus::StoreFailed;
        outcome.reason = Some(reason);
    }
}

/// What [`run_watched`] gives: the run's result, and whether the fleet lock was lost.
pub(super) struct Watched<T> {
    pub(super) outcome: T,
    pub(super) lock_lost: bool,
}

/// Runs `f` (the executor) while the store is watched: `fleetbook abort` from another
/// terminal stops or kills the run, and a lock broken meanwhile (`fleetbook unlock`) or a
/// lease past its TTL stops it within one poll.
pub(super) fn run_watched<T: Send>(
    store: &dyn RunStore,
    guard: &FleetLock,
    run_id: &str,
    (control, ui): (&Control, &dyn RunUi),
    f: impl FnOnce() -> T + Send,
) -> Watched<T> {
    let finished = AtomicBool::new(false);
    let lock_lost = AtomicBool::new(false);
    let outcome = std::thread::scope(|scope| {
        let lease_watch = scope.spawn(|| watch_lease(store, (&finished, &lock_lost), control, ui));
        let poller = scope.spawn(|| {
            while !finished.load(Ordering::SeqCst) {
                poll_once(store, guard, run_id, &lock_lost, (control, ui));
                // Woken at once when the run ends: the command exits without waiting a poll.
                std::thread::park_timeout(POLL);
            }
        });
        // Set even if the executor panics, so the poller ends and the panic is reported.
        struct Finished<'a>(&'a AtomicBool, [std::thread::Thread; 2]);
        impl Drop for Finished<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
                self.1.iter().for_each(std::thread::Thread::unpark);
            }
        }
        let _finished = Finished(
            &finished,
            [poller.thread().clone(), lease_watch.thread().clone()],
        );
        f()
    });
    Watched {
        outcome,
        lock_lost: lock_lost.load(Ordering::SeqCst),
    }
}

/// A lease is judged locally and at once, not behind a store request that may wait for an
/// unreachable cluster: past its TTL no new task starts.
fn watch_lease(
    store: &dyn RunStore,
    (finished, lock_lost): (&AtomicBool, &AtomicBool),
    control: &Control,
    ui: &dyn RunUi,
) {
    while !finished.load(Ordering::SeqCst) {
        if store.lease_lost() && !lock_lost.swap(true, Ordering::SeqCst) {
            control.unrecorded.store(true, Ordering::SeqCst);
            control.stop.store(true, Ordering::SeqCst);
            tracing::error!("the etcd lease was lost: no new task starts");
            ui.say("error: the fleet lock was lost: this controller could not renew its etcd lease within its TTL; no new task starts");
        }
        // Woken at once when the run ends, as the poller.
        std::thread::park_timeout(LEASE_POLL);
    }
}

/// One look at the lock and at abort requests.
fn poll_once(
    store: &dyn RunStore,
    guard: &FleetLock,
    run_id: &str,
    lock_lost: &AtomicBool,
    (control, ui): (&Control, &dyn RunUi),
) {
    let lost = !matches!(retried("read", || guard.held()), Ok(true));
    if lost && !lock_lost.swap(true, Ordering::SeqCst) {
        control.stop.store(true, Ordering::SeqCst);
        tracing::error!(run = %run_id, "the fleet lock was taken away: no new task starts");
        ui.say("error: the fleet lock was taken away from this run: no new task starts");
    }
    if let Ok((stop, now)) = store.abort_requested(run_id) {
        if stop && !control.stop.swap(true, Ordering::SeqCst) {
            tracing::info!(run = %run_id, kill = now, "abort requested");
            ui.say("abort requested: no new host starts");
        }
        if now {
            control.kill.store(true, Ordering::SeqCst);
        }
    }
}

/// Waits until `gate` is approved in the store (true), or the run stops or the store
/// cannot be read (false: the run halts).
pub(super) fn wait_for_approval(
    store: &dyn RunStore,
    run_id: &str,
    gate: &str,
    control: &Control,
) -> bool {
    loop {
        if control.stop.load(Ordering::SeqCst) {
            return false;
        }
        match retried("read", || store.approved(run_id, gate)) {
            Ok(true) => return true,
            Ok(false) => std::thread::sleep(APPROVAL_POLL),
            Err(_) => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::Journal;
    use rusqlite::Connection;

    /// A journal another connection holds busy: `retried` refused once, then let go.
    fn busy_journal() -> (tempfile::TempDir, Journal, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        j.set_busy_timeout(Duration::from_millis(10));
        let other = Connection::open(dir.path().join(crate::journal::FILE)).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        (dir, j, other)
    }

    /// The session rides over a busy journal that clears within the retry window: the
    /// write goes through, and nothing stops the run.
    #[test]
    fn a_recoverable_error_that_clears_is_ridden_over() {
        let (_dir, j, other) = busy_journal();
        let mut holder = Some(other);
        let mut refused = 0;
        let r = retried("write", || {
            let r = j.lock("fleet", "r1");
            if r.is_err() {
                refused += 1;
                // The other writer lets go between two tries.
                if let Some(o) = holder.take() {
                    o.execute_batch("COMMIT").unwrap();
                }
            }
            Ok(r?)
        });
        assert!(r.is_ok(), "{:?}", r.err());
        assert_eq!(refused, 1);
        assert_eq!(j.locks().unwrap().len(), 1);
    }

    /// A busy journal that outlasts the retries is fatal: the run stops.
    #[test]
    fn a_recoverable_error_that_stays_becomes_fatal() {
        let (_dir, j, _other) = busy_journal();
        let mut tries = 0;
        let err = retried("write", || {
            tries += 1;
            Ok(j.lock("fleet", "r1")?)
        })
        .unwrap_err();
        assert!(err.is_fatal(), "{err}");
        assert!(err.to_string().contains("database is locked"), "{err}");
        assert_eq!(tries, STORE_RETRIES + 1);
    }
}
