//! The storage boundary: where runs, task transitions, facts, approvals, abort requests and
//! the fleet lock live. The session and the commands only see [`RunStore`]; the SQLite
//! journal ([`crate::journal::Journal`]) is today's implementation, and a shared backend
//! (etcd) is another. [`conformance`] is the behaviour every implementation must show,
//! written once.

pub mod conformance;
#[cfg(feature = "etcd")]
pub mod etcd;

use crate::error::{Error, Result};
use crate::exec::{Event, RunStatus, State};
/// The records a store keeps, and the clock it keeps times by (seconds since the epoch).
pub use crate::journal::{Action, CommandRecord, LockInfo, RunRecord, TaskRow};
use crate::slots::{LocalLedger, SlotLedger};
use std::sync::Arc;

/// Where a run stands, as stored. A `Running` run whose controller process is gone reads
/// `Crashed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Running,
    Succeeded,
    SucceededWithFailures,
    Halted,
    Aborted,
    Crashed,
    /// `fleetbook rollback` is undoing it (or died doing so).
    RollingBack,
    RolledBack,
    RollbackFailed,
    /// The run lost its fleet lock or its journal: it stopped; resume goes on.
    StoreFailed,
}

impl RunState {
    pub const ALL: [RunState; 10] = [
        RunState::Running,
        RunState::Succeeded,
        RunState::SucceededWithFailures,
        RunState::Halted,
        RunState::Aborted,
        RunState::Crashed,
        RunState::RollingBack,
        RunState::RolledBack,
        RunState::RollbackFailed,
        RunState::StoreFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Succeeded => "succeeded",
            RunState::SucceededWithFailures => "succeeded_with_failures",
            RunState::Halted => "halted",
            RunState::Aborted => "aborted",
            RunState::Crashed => "crashed",
            RunState::RollingBack => "rolling_back",
            RunState::RolledBack => "rolled_back",
            RunState::RollbackFailed => "rollback_failed",
            RunState::StoreFailed => "store_failed",
        }
    }

    /// The state a stored name stands for; an unknown name is a corrupt store.
    pub fn parse(name: &str) -> Option<RunState> {
        RunState::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// A run in one of these states was rolled back (or is being): it is never resumed.
    pub fn is_rolled_back(self) -> bool {
        matches!(
            self,
            RunState::RollingBack | RunState::RolledBack | RunState::RollbackFailed
        )
    }
}

/// Padded like a string (`{:24}`), so the columns of `fleetbook runs` line up.
impl std::fmt::Display for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl From<RunStatus> for RunState {
    fn from(s: RunStatus) -> RunState {
        match s {
            RunStatus::Succeeded => RunState::Succeeded,
            RunStatus::SucceededWithFailures => RunState::SucceededWithFailures,
            RunStatus::Halted => RunState::Halted,
            RunStatus::Aborted => RunState::Aborted,
            RunStatus::RolledBack => RunState::RolledBack,
            RunStatus::RollbackFailed => RunState::RollbackFailed,
            RunStatus::StoreFailed => RunState::StoreFailed,
        }
    }
}

/// Where a task stands, as stored: `Pending` until its first transition, then the state of
/// its latest event ([`State`]: the same names, so the journal and the events agree).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    Pending,
    Running,
    Ok,
    Failed,
    Unreachable,
    Skipped,
    Retrying,
    RolledBack,
    NotRun,
    WaitingApproval,
    RollingBack,
    UndoFailed,
}

impl TaskState {
    pub const ALL: [TaskState; 12] = [
        TaskState::Pending,
        TaskState::Running,
        TaskState::Ok,
        TaskState::Failed,
        TaskState::Unreachable,
        TaskState::Skipped,
        TaskState::Retrying,
        TaskState::RolledBack,
        TaskState::NotRun,
        TaskState::WaitingApproval,
        TaskState::RollingBack,
        TaskState::UndoFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Running => "running",
            TaskState::Ok => "ok",
            TaskState::Failed => "failed",
            TaskState::Unreachable => "unreachable",
            TaskState::Skipped => "skipped",
            TaskState::Retrying => "retrying",
            TaskState::RolledBack => "rolled_back",
            TaskState::NotRun => "not_run",
            TaskState::WaitingApproval => "waiting_approval",
            TaskState::RollingBack => "rolling_back",
            TaskState::UndoFailed => "undo_failed",
        }
    }

    /// The state a stored name stands for; an unknown name is a corrupt store.
    pub fn parse(name: &str) -> Option<TaskState> {
        TaskState::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Done for good: a resume does not run it again.
    pub fn is_done(self) -> bool {
        matches!(self, TaskState::Ok | TaskState::Skipped)
    }

    /// Its attempt is under way (or was, when its controller died).
    pub fn is_running(self) -> bool {
        matches!(self, TaskState::Running | TaskState::Retrying)
    }
}

impl From<State> for TaskState {
    fn from(s: State) -> TaskState {
        match s {
            State::Running => TaskState::Running,
            State::Ok => TaskState::Ok,
            State::Failed => TaskState::Failed,
            State::Unreachable => TaskState::Unreachable,
            State::Skipped => TaskState::Skipped,
            State::Retrying => TaskState::Retrying,
            State::RolledBack => TaskState::RolledBack,
            State::NotRun => TaskState::NotRun,
            State::WaitingApproval => TaskState::WaitingApproval,
            State::RollingBack => TaskState::RollingBack,
            State::UndoFailed => TaskState::UndoFailed,
        }
    }
}

/// Padded like a string, as [`RunState`].
impl std::fmt::Display for TaskState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// Why a store call failed, split by what the caller may do about it. A recoverable error
/// may clear by itself (a busy SQLite journal, an etcd cluster unreachable or timed out):
/// the session tries again a few times. A fatal one will not (the fleet lock lost, the
/// journal unwritable or its disk full, a corrupt store, a foreign or newer schema): the
/// run stops starting tasks and ends `store_failed`. An error no retry can mend (a run
/// that is not there) counts as fatal. Users see the message of the error inside, as
/// before the split.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Fatal(Error),
    #[error(transparent)]
    Recoverable(Error),
}

impl StoreError {
    pub fn is_fatal(&self) -> bool {
        matches!(self, StoreError::Fatal(_))
    }

    /// The user-facing error, with its message unchanged.
    pub fn into_error(self) -> Error {
        match self {
            StoreError::Fatal(e) | StoreError::Recoverable(e) => e,
        }
    }
}

/// Only an unavailable store is worth another try; anything else a store reports is fatal.
impl From<Error> for StoreError {
    fn from(e: Error) -> StoreError {
        match e {
            Error::Unavailable { .. } => StoreError::Recoverable(e),
            e => StoreError::Fatal(e),
        }
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Error {
        e.into_error()
    }
}

/// What a [`RunStore`] call gives.
pub type StoreResult<T> = std::result::Result<T, StoreError>;

/// What a run store keeps. Every write is durable before it returns, except queued ones,
/// which are durable at the next `flush`: a transition to running is stored before its
/// command is sent.
pub trait RunStore: Send + Sync {
    /// Where the store is, for messages (a file path, an etcd prefix).
    fn location(&self) -> String;

    fn create_run(
        &self,
        run: &RunRecord,
        hosts: &[(String, Vec<String>)],
        tasks: &[TaskRow],
    ) -> StoreResult<()>;
    /// One run (`None`: the newest).
    fn run(&self, id: Option<&str>) -> StoreResult<RunRecord>;
    /// Every run, newest first.
    fn runs(&self) -> StoreResult<Vec<RunRecord>>;
    fn tasks(&self, run: &str) -> StoreResult<Vec<TaskRow>>;
    fn hosts(&self, run: &str) -> StoreResult<Vec<(String, Vec<String>)>>;
    fn add_missing_tasks(&self, run: &str, tasks: &[TaskRow]) -> StoreResult<()>;
    /// Records one task transition (`started`: when the attempt started, for times).
    fn record(&self, run: &str, e: &Event, started: crate::clock::At) -> StoreResult<()>;
    /// Queues one task transition: durable at the next [`RunStore::flush`] (or any other
    /// call), committed with what else was queued by then, so a scheduling tick's
    /// transitions cost one transaction. `Err`: an earlier commit failed and the store
    /// keeps nothing queued since. A store without a queue writes at once.
    fn record_queued(&self, run: &str, e: &Event, started: crate::clock::At) -> StoreResult<()> {
        self.record(run, e, started)
    }
    /// Queues one command's record, as [`RunStore::record_queued`].
    fn record_command_queued(&self, run: &str, c: &CommandRecord) -> StoreResult<()> {
        self.record_command(run, c)
    }
    /// Makes everything queued durable before it returns (called before a command is
    /// sent: the start of its task is stored first).
    fn flush(&self) -> StoreResult<()> {
        Ok(())
    }
    /// Tasks whose end was queued but lost (a commit failed): the store still says they run.
    fn unrecorded(&self) -> Vec<String> {
        Vec::new()
    }
    fn record_fact(&self, run: &str, host: &str, name: &str, value: &str) -> StoreResult<()>;
    fn facts(&self, run: &str) -> StoreResult<Vec<(String, String, String)>>;
    fn set_state(
        &self,
        run: &str,
        state: RunState,
        reason: Option<&str>,
        ended: bool,
    ) -> StoreResult<()>;
    /// A replanned resume: the run's inputs from now on.
    fn replan(&self, run: &RunRecord) -> StoreResult<()>;
    fn request_abort(&self, run: &str, now: bool) -> StoreResult<()>;
    /// (stop requested, kill requested)
    fn abort_requested(&self, run: &str) -> StoreResult<(bool, bool)>;
    fn approve(&self, run: &str, gate: &str) -> StoreResult<()>;
    fn approved(&self, run: &str, gate: &str) -> StoreResult<bool>;
    /// Takes the fleet lock for `run` (a run may take over its own stale lock).
    fn lock(&self, fleet: &str, run: &str) -> StoreResult<()>;
    fn unlock(&self, fleet: &str, run: &str) -> StoreResult<()>;
    /// Takes the fleet lock for a new run, records it and keeps its plan: in one write where
    /// the store can (one commit before the first connection, not three). A run that cannot
    /// be recorded gives the lock back.
    fn begin_run(
        &self,
        fleet: &str,
        run: &RunRecord,
        hosts: &[(String, Vec<String>)],
        tasks: &[TaskRow],
        plan_json: &str,
    ) -> StoreResult<()> {
        self.lock(fleet, &run.id)?;
        let created = self
            .create_run(run, hosts, tasks)
            .and_then(|_| self.save_plan(&run.id, plan_json));
        if created.is_err() {
            let _ = self.unlock(fleet, &run.id);
        }
        created
    }
    /// Records the run's end (`set_state(.., ended)`) and gives back its fleet lock: in one
    /// write where the store can, so that a run's exit waits for one commit, not two.
    /// `Err`: the end was not recorded. A release that fails is not an error here, as it
    /// is not when [`FleetLock`] is dropped.
    fn end_run(
        &self,
        run: &str,
        state: RunState,
        reason: Option<&str>,
        fleet: &str,
    ) -> StoreResult<()> {
        self.set_state(run, state, reason, true)?;
        let _ = self.unlock(fleet, run);
        Ok(())
    }
    fn locks(&self) -> StoreResult<Vec<LockInfo>>;
    fn break_lock(&self, fleet: &str) -> StoreResult<()>;

    /// Keeps the run's plan (its JSON, already redacted), so that a report or a live view
    /// draws what was planned without the runbook or its secrets. A resume saves its own.
    fn save_plan(&self, run: &str, plan_json: &str) -> StoreResult<()>;
    /// The plan saved for a run (`None`: a run recorded before plans were kept).
    fn plan(&self, run: &str) -> StoreResult<Option<String>>;
    /// Records one command a task ran: its exit status, duration and a capped tail of its
    /// output (already redacted; the full output is on disk, not in the store).
    fn record_command(&self, run: &str, c: &CommandRecord) -> StoreResult<()>;
    /// Every command of a run, in the order they ended.
    fn commands(&self, run: &str) -> StoreResult<Vec<CommandRecord>>;
    /// Approvals and abort requests, with who and when, oldest first. `approve` and
    /// `request_abort` record the user this process runs as.
    fn actions(&self, run: &str) -> StoreResult<Vec<Action>>;
    /// True once this process can no longer show that it holds its locks (an etcd lease that
    /// expired or could not be renewed within its TTL). A local journal never loses them so.
    fn lease_lost(&self) -> bool {
        false
    }
    /// Joins `run`, which another controller drives, to take some of its hosts: a shared
    /// store only.
    fn join(&self, run: &str) -> StoreResult<()> {
        Err(Error::input_with_help(
            format!("run {run} is running: only a shared store lets a second controller join it"),
            "keep the run state in etcd (--state etcd://...) to share a run between controllers",
        )
        .into())
    }
    /// For a controller that joined `run`: takes the fleet lock over when nobody holds it
    /// (its holder ended or died), so that no other rollout starts on the fleet while the
    /// run goes on. True while the run holds the lock, false once another run took it. A
    /// store only one controller uses has nothing to take over.
    fn keep_lock(&self, fleet: &str, run: &str) -> StoreResult<bool> {
        let _ = (fleet, run);
        Ok(true)
    }
    /// The ledger that admits `run`'s hosts fleet-wide (`retry`/`skip`: what to do with a
    /// task a controller that died left running, as `resume --retry-unknown/--skip-unknown`).
    fn ledger(self: Arc<Self>, run: &str, retry: bool, skip: bool) -> Arc<dyn SlotLedger> {
        let _ = (run, retry, skip);
        Arc::new(LocalLedger)
    }
    /// Which controller holds which host of `run` now, as (host, controller); empty for a
    /// store only one controller uses.
    fn holders(&self, run: &str) -> StoreResult<Vec<(String, String)>> {
        let _ = run;
        Ok(Vec::new())
    }
}

/// How to reach an etcd store: TLS files, the user, and the lease TTL. The password is
/// kept here only in memory; it is never written to etcd, the journal or a message.
#[derive(Clone, Default)]
pub struct EtcdAccess {
    /// CA certificate (PEM) that signed the etcd servers' certificates: TLS on.
    pub ca: Option<std::path::PathBuf>,
    /// Client certificate and key (PEM), for servers that ask for one.
    pub cert: Option<std::path::PathBuf>,
    pub key: Option<std::path::PathBuf>,
    pub user: Option<String>,
    pub password: Option<String>,
    /// The lease TTL of this controller's lock and slots (default 10 s).
    pub ttl: Option<std::time::Duration>,
}

impl std::fmt::Debug for EtcdAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdAccess")
            .field("ca", &self.ca)
            .field("cert", &self.cert)
            .field("key", &self.key)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<secret>"))
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// The scheme of a `--state` that names an etcd cluster instead of a directory.
pub const ETCD_SCHEME: &str = "etcd://";

/// Whether `--state` names an etcd cluster (`etcd://HOST:PORT[,HOST:PORT...]/PREFIX`).
pub fn is_etcd(state: &std::path::Path) -> bool {
    state.to_str().is_some_and(|s| s.starts_with(ETCD_SCHEME))
}

/// The store in the state directory `dir`: today the SQLite journal there.
pub fn open(dir: &std::path::Path) -> Result<Arc<dyn RunStore>> {
    open_with(dir, &EtcdAccess::default())
}

/// The store `state` names: an etcd cluster (`etcd://...`), else the SQLite journal in
/// that directory.
pub fn open_with(state: &std::path::Path, access: &EtcdAccess) -> Result<Arc<dyn RunStore>> {
    if is_etcd(state) {
        return open_etcd(state.to_str().unwrap_or_default(), access);
    }
    Ok(Arc::new(crate::journal::Journal::open(state)?))
}

#[cfg(feature = "etcd")]
fn open_etcd(url: &str, access: &EtcdAccess) -> Result<Arc<dyn RunStore>> {
    Ok(Arc::new(etcd::EtcdStore::open(url, access)?))
}

#[cfg(not(feature = "etcd"))]
fn open_etcd(url: &str, _: &EtcdAccess) -> Result<Arc<dyn RunStore>> {
    Err(crate::Error::input(format!(
        "--state {url}: this fleetbook was built without etcd support (cargo feature `etcd`)"
    )))
}

/// Whether `dir` holds a store already (commands that only read do not create one). An
/// etcd cluster is asked when it is opened.
pub fn exists(dir: &std::path::Path) -> bool {
    is_etcd(dir) || dir.join(crate::journal::FILE).exists()
}

/// The fleet lock held by a run: released when dropped, and able to say whether it was
/// lost meanwhile (broken with `fleetbook unlock`, or taken over).
pub struct FleetLock {
    store: Arc<dyn RunStore>,
    fleet: String,
    run: String,
    /// A controller that joined the run: the lock is another's; only its lease counts.
    joined: bool,
    /// Given back with the run's end ([`FleetLock::end_run`]): nothing left to release.
    released: bool,
}

impl FleetLock {
    pub fn take(store: Arc<dyn RunStore>, fleet: &str, run: &str) -> Result<FleetLock> {
        store.lock(fleet, run)?;
        Ok(FleetLock {
            store,
            fleet: fleet.to_string(),
            run: run.to_string(),
            joined: false,
            released: false,
        })
    }

    /// The guard of a controller that joined `run` ([`RunStore::join`]): it takes the lock
    /// over when the holder ends or dies ([`RunStore::keep_lock`]), and is lost with its
    /// lease or when another run took the lock.
    pub fn joined(store: Arc<dyn RunStore>, fleet: &str, run: &str) -> FleetLock {
        FleetLock {
            store,
            fleet: fleet.to_string(),
            run: run.to_string(),
            joined: true,
            released: false,
        }
    }

    /// Watches a lock `run` already holds (taken with [`RunStore::lock`]).
    pub fn watch(store: Arc<dyn RunStore>, fleet: &str, run: &str) -> FleetLock {
        FleetLock {
            store,
            fleet: fleet.to_string(),
            run: run.to_string(),
            joined: false,
            released: false,
        }
    }

    /// True when the store no longer says this run holds the lock. A store that cannot
    /// be read answers `true`: a run that cannot show it holds the fleet must not go on.
    pub fn lost(&self) -> bool {
        !self.held().unwrap_or(false)
    }

    /// Whether the store still says this run holds the lock; `Err` when it cannot be read
    /// (the caller may try a recoverable error again before it takes the lock as lost).
    pub fn held(&self) -> StoreResult<bool> {
        if self.store.lease_lost() {
            return Ok(false);
        }
        if self.joined {
            return self.store.keep_lock(&self.fleet, &self.run);
        }
        let locks = self.store.locks()?;
        Ok(locks
            .iter()
            .any(|l| l.fleet == self.fleet && l.run_id == self.run))
    }
}

impl FleetLock {
    /// Records the run's end and gives the lock back with it (one write; see
    /// [`RunStore::end_run`]). A joined controller records the end only: the store gives
    /// the lock back when it is dropped, if it took it over. On `Err` the lock is still
    /// given back when dropped.
    pub fn end_run(&mut self, state: RunState, reason: Option<&str>) -> StoreResult<()> {
        if self.joined {
            return self.store.set_state(&self.run, state, reason, true);
        }
        self.store.end_run(&self.run, state, reason, &self.fleet)?;
        self.released = true;
        Ok(())
    }
}

impl Drop for FleetLock {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        // A joined controller may have taken the lock over; the store releases it only if so.
        let _ = self.store.unlock(&self.fleet, &self.run);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::TaskKind;

    fn serde_name<T: serde::Serialize>(v: T) -> String {
        serde_json::to_value(v)
            .unwrap()
            .as_str()
            .unwrap()
            .to_string()
    }

    /// `fleetbook runs` pads the state to a column (`{:24}`): a typed state pads like the
    /// string it replaced, or the runbook column wanders with the state's length.
    #[test]
    fn a_state_pads_to_its_column() {
        assert_eq!(format!("[{:10}]", RunState::Aborted), "[aborted   ]");
        assert_eq!(format!("[{:>10}]", RunState::Halted), "[    halted]");
    }

    /// The names stored and shown are the serde names, so JSON and the journal agree.
    #[test]
    fn stored_names_are_the_serde_names() {
        for s in RunState::ALL {
            assert_eq!(s.as_str(), serde_name(s));
            assert_eq!(RunState::parse(s.as_str()), Some(s));
        }
        assert_eq!(RunState::parse("bogus"), None);
        for s in TaskState::ALL {
            assert_eq!(s.as_str(), serde_name(s));
            assert_eq!(TaskState::parse(s.as_str()), Some(s));
        }
        assert_eq!(TaskState::parse("bogus"), None);
        use State::*;
        for s in [
            Running,
            Ok,
            Failed,
            Unreachable,
            Skipped,
            Retrying,
            RolledBack,
            NotRun,
            WaitingApproval,
            RollingBack,
            UndoFailed,
        ] {
            assert_eq!(s.as_str(), serde_name(s));
            assert_eq!(TaskState::from(s).as_str(), s.as_str());
        }
        use TaskKind::*;
        for k in [
            Once, BeforeRole, Host, AfterRole, Gate, CanaryGate, Approval, RoleDone, CanaryDone,
            HostCheck, Finally,
        ] {
            assert_eq!(k.as_str(), serde_name(k));
        }
    }
}
