//! One attempt of a run: take the fleet lock, create the run or take up a recorded one,
//! execute with the store watched (abort requests, approvals, a lost lock or lease), record
//! every transition and fact, and record how it ended. What the operator sees goes through
//! a [`RunUi`]; the engine never prints.

use super::watch::{self, Recorder};
use crate::clock::At;
use crate::error::{Error, Result};
use crate::exec::{self, Control, Event, ExecOptions, RunOutcome, RunStatus};
use crate::journal::{self, RunRecord};
use crate::plan::{self, Planned};
use crate::slots::{LocalLedger, SlotLedger};
use crate::store::{FleetLock, RunState, RunStore};
use crate::transport::{record::Recording, Router};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A fresh run, or the continuation of a recorded one.
pub enum Start {
    New,
    Resume {
        run: Box<RunRecord>,
        done: Vec<bool>,
        /// (--retry-unknown, --skip-unknown), for hosts taken over from a dead controller.
        unknown: (bool, bool),
    },
    /// A further controller on a running run (a shared store): it takes hosts no
    /// controller holds.
    Join {
        run: Box<RunRecord>,
        done: Vec<bool>,
        unknown: (bool, bool),
    },
    /// `fleetbook rollback`: the undo of these tasks, newest first; `done` says which
    /// `finally` steps the run already ran (the others are owed).
    Rollback {
        run: Box<RunRecord>,
        order: Vec<usize>,
        done: Vec<bool>,
    },
}

/// What the operator sees of a running run: the binary's live display, a test's record.
/// Every text handed over is already redacted.
pub trait RunUi: Sync {
    /// A task transition.
    fn event(&self, e: &Event);
    /// A line for the operator (an abort request seen, a lost lock).
    fn say(&self, line: &str);
    /// Run `run` waits for approval `gate` (`None`: it no longer waits).
    fn approval(&self, run: &str, gate: Option<&str>);
    /// Why the display's own output broke, once it did: the run stops and ends aborted.
    fn broken(&self) -> Option<String>;
    /// The run's tasks are over: the display ends before the run's end is recorded.
    fn ended(&self);
}

/// What a run takes besides its plan and its store: plain values, no command line.
pub struct RunConfig<'a> {
    /// Gates approved in advance (`--approve`); a new run records them.
    pub approve: &'a [String],
    /// Where each command's whole output goes, a file per run and host (`RUN/HOST.log`): the
    /// state directory's `output/`, or the user's with a store that is not a directory.
    pub output_dir: &'a Path,
}

/// The fleet a lock protects: the inventory, by its real path (an edited inventory is still
/// the same fleet), in this state directory.
pub(crate) fn fleet_key(inventory: &str) -> String {
    let p = Path::new(inventory);
    format!(
        "inventory:{}",
        p.canonicalize()
            .unwrap_or_else(|_| p.to_path_buf())
            .display()
    )
}

fn absolute(path: &str) -> String {
    std::fs::canonicalize(path)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| path.to_string())
}

/// A run that holds its fleet (or joined one that runs), ready to execute.
pub struct Session {
    store: Arc<dyn RunStore>,
    run_id: String,
    started_at: At,
    done: Vec<bool>,
    pre_approved: Vec<String>,
    undo_only: Option<Vec<usize>>,
    /// (--retry-unknown, --skip-unknown)
    unknown: (bool, bool),
    joined: bool,
    fleet: String,
    /// Where each command's whole output goes, a file per host.
    output_dir: PathBuf,
}

/// How a run ended, as recorded.
pub struct Finished {
    pub outcome: RunOutcome,
}

impl Session {
    /// Takes the fleet lock and creates the run (`Start::New`), or takes up a recorded one.
    /// A new run that finds the fleet locked fails with [`Error::Locked`] (see
    /// [`super::stale_lock`]).
    pub fn begin(
        planned: &Planned,
        store: Arc<dyn RunStore>,
        start: Start,
        cfg: &RunConfig,
    ) -> Result<Session> {
        let p = &planned.plan;
        let fleet = fleet_key(&p.inventory);
        let mut s = Session {
            store,
            run_id: String::new(),
            started_at: At::now(),
            done: Vec::new(),
            pre_approved: Vec::new(),
            undo_only: None,
            unknown: (false, false),
            joined: false,
            fleet,
            output_dir: PathBuf::new(),
        };
        match start {
            Start::New => s.create(planned, cfg)?,
            Start::Resume { run, done, unknown } => {
                s.take_up(*run, done);
                s.store.lock(&s.fleet, &s.run_id)?;
                save_plan(&*s.store, &s.run_id, p)?;
                s.store
                    .set_state(&s.run_id, RunState::Running, None, false)?;
                s.unknown = unknown;
            }
            Start::Join { run, done, unknown } => {
                s.take_up(*run, done);
                s.store.join(&s.run_id)?;
                s.unknown = unknown;
                s.joined = true;
            }
            Start::Rollback { run, order, done } => {
                s.take_up(*run, done);
                s.store.lock(&s.fleet, &s.run_id)?;
                // Not `running`: a rollback that dies leaves a run that must not be resumed.
                s.store
                    .set_state(&s.run_id, RunState::RollingBack, None, false)?;
                s.undo_only = Some(order);
            }
        }
        s.output_dir = cfg.output_dir.join(&s.run_id);
        tracing::info!(run = %s.run_id, store = %s.store.location(), "run session begins");
        Ok(s)
    }

    fn take_up(&mut self, run: RunRecord, done: Vec<bool>) {
        self.run_id = run.id;
        self.pre_approved = run.pre_approved;
        self.done = done;
    }

    /// A new run: the lock, its record and its plan, together (see [`RunStore::begin_run`]);
    /// the lock is not kept if the run cannot be recorded.
    fn create(&mut self, planned: &Planned, cfg: &RunConfig) -> Result<()> {
        let p = &planned.plan;
        let record = new_record(planned, cfg.approve);
        let json = serde_json::to_string(p).map_err(|e| Error::Internal(e.to_string()))?;
        self.store.begin_run(
            &self.fleet,
            &record,
            &super::host_rows(p),
            &super::task_rows(p),
            &json,
        )?;
        self.started_at = record.started_at;
        self.take_up(record, Vec::new());
        Ok(())
    }

    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Runs the plan over `transport` until it ends, then records how it ended and gives
    /// back the fleet lock. `control` is the caller's too (Ctrl-C). A lost lock or lease or
    /// a store that cannot be written stops new tasks at once and ends the run
    /// [`RunStatus::StoreFailed`], naming the tasks whose outcome the store lacks.
    pub fn execute(
        self,
        planned: &Planned,
        transport: Arc<Router>,
        control: Arc<Control>,
        ui: &dyn RunUi,
    ) -> Result<Finished> {
        let run_id = self.run_id.clone();
        let store = self.store.clone();
        // The lock is already taken; the guard watches it (and releases it at the end). A
        // joined controller holds no lock of its own: only its lease can be lost.
        let guard = match self.joined {
            true => FleetLock::joined(store.clone(), &self.fleet, &run_id),
            false => FleetLock::watch(store.clone(), &self.fleet, &run_id),
        };
        // Hosts are admitted fleet-wide when the store is shared; a rollback undoes this
        // controller's own choice of hosts.
        let ledger: Arc<dyn SlotLedger> = match self.undo_only.is_some() {
            true => Arc::new(LocalLedger),
            false => store
                .clone()
                .ledger(&run_id, self.unknown.0, self.unknown.1),
        };
        // Whatever the state directory, no other run acts on a host this run acts on.
        transport.ssh.lease_hosts(&run_id);
        // On resume, what the hosts learned before (e.g. the versions to roll back to).
        let facts = store.facts(&run_id)?;
        // Each command's exit status, time and output tail go to the store; the whole
        // output to a file per host under the state directory.
        let recording = Arc::new(Recording::new(
            transport,
            store.clone(),
            &run_id,
            planned.secrets.clone(),
            Some(self.output_dir.clone()),
        ));
        let recorder = Arc::new(Recorder::new(
            store.clone(),
            &run_id,
            self.started_at,
            control.clone(),
        ));
        let opts = ExecOptions {
            transport: recording.clone(),
            control: control.clone(),
            on_event: &|e: &Event| {
                recording.event(e);
                recorder.event(e);
                ui.event(e);
                if ui.broken().is_some() {
                    control
                        .stop
                        .store(true, std::sync::atomic::Ordering::SeqCst);
                }
            },
            approve: &|gate: &str| self.approve(gate, &control, ui),
            done: self.done.clone(),
            facts,
            on_fact: recorder.clone().fact_sink(),
            undo_only: self.undo_only.clone(),
            run_id: run_id.clone(),
            ledger,
        };
        let watched = watch::run_watched(&*store, &guard, &run_id, (&control, ui), || {
            exec::execute(planned, opts)
        });
        ui.ended();
        let mut outcome = watched.outcome;
        recorder.verdict(&mut outcome, watched.lock_lost, ui);
        if let Some(err) = ui.broken() {
            outcome.status = RunStatus::Aborted;
            outcome.reason = Some(format!("the event stream on standard output broke: {err}"));
        }
        record_end(guard, &run_id, &mut outcome, ui);
        Ok(Finished { outcome })
    }

    /// An `.approval(...)` reached: given in advance, or waited for in the store until it
    /// is given or the run stops.
    fn approve(&self, gate: &str, control: &Control, ui: &dyn RunUi) -> bool {
        if self.pre_approved.iter().any(|a| a == gate) {
            return true;
        }
        ui.approval(&self.run_id, Some(gate));
        let approved = watch::wait_for_approval(&*self.store, &self.run_id, gate, control);
        ui.approval(&self.run_id, None);
        approved
    }
}

/// The record of a new run of `planned`.
fn new_record(planned: &Planned, approve: &[String]) -> RunRecord {
    let p = &planned.plan;
    let id = journal::new_run_id();
    RunRecord {
        runbook: p.runbook.name.clone(),
        runbook_path: absolute(&p.runbook.path),
        runbook_digest: p.runbook_digest.clone(),
        inventory_path: absolute(&p.inventory),
        inventory_digest: p.inventory_digest.clone(),
        params: p
            .params
            .iter()
            .map(|x| (x.name.clone(), x.value.clone()))
            .collect(),
        limit_pattern: p.limit_pattern.clone(),
        user: journal::user(),
        controller: journal::controller(),
        pid: std::process::id() as i64,
        started_at: At::now(),
        ended_at: None,
        state: RunState::Running,
        reason: None,
        lib_digest: Some(super::lib_digest(planned)),
        secret_digests: super::secret_digests(planned, &id),
        pre_approved: approve.to_vec(),
        id,
    }
}

/// The plan goes with the run into the store, so that reports and `fleetbook watch` can draw
/// it without the runbook or its secrets (plans are redacted).
fn save_plan(store: &dyn RunStore, run: &str, p: &plan::Plan) -> Result<()> {
    let json = serde_json::to_string(p).map_err(|e| Error::Internal(e.to_string()))?;
    Ok(store.save_plan(run, &json)?)
}

/// Records how the run ended and gives back the fleet lock (in one write). When that fails
/// (a full disk, say) the store still says the run is running, which a resume takes as
/// interrupted: the run ends with the store's status, and the lock is given back alone.
fn record_end(mut guard: FleetLock, run_id: &str, outcome: &mut RunOutcome, ui: &dyn RunUi) {
    let state = RunState::from(outcome.status);
    let end = || guard.end_run(state, outcome.reason.as_deref());
    let Err(err) = super::watch::retried("write", end) else {
        return;
    };
    drop(guard);
    tracing::error!(run = %run_id, error = %err, "the end of the run was not recorded");
    ui.say(&format!(
        "error: the journal could not record the end of the run: {err}"
    ));
    if outcome.status != RunStatus::StoreFailed {
        outcome.status = RunStatus::StoreFailed;
        outcome.reason = Some(format!("the journal could not be written ({err})"));
    }
}
