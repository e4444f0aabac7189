//! Executor: runs a planned DAG for real. Takes the [`Planned`] runbook (script + graph) and
//! a transport; starts tasks as their dependencies finish, under the same [`Slots`] the
//! schedule simulator uses; reports every task transition as an [`Event`]; gives a
//! [`RunOutcome`] with a recap per host.
//!
//! Rhai closures block, so each running task has its own thread; the scheduler loop owns all
//! state and learns of results through a channel.
//!
//! Failure policy: a step fails its host after its retries; the host's remaining steps do not
//! run (with `rollback_on_failure`, the `undo` closures of its steps run in reverse, the
//! failed one first). Failures are counted per role; past a role's `max_failures` (0 when
//! undeclared) the run halts: no new host starts, hosts in flight finish the step they are
//! in, then stop. A failed once/hook/gate step, a gate that says no or a refused approval
//! halts the run too, and so does, whatever the budget, a transport error that says the
//! host must not be touched (`TransportError::halts_run`: a changed host key, a host leased
//! by another run).

use crate::compile::{Graph, TaskKind};
use crate::dispatch::{rollback_hosts, Dispatcher, Stop};
use crate::model::RollbackScope;
use crate::plan::Planned;
use crate::predicate;
use crate::script::Script;
use crate::secrets::Secrets;
use crate::slots::{fleet_limits, Admit, SlotLedger};
use crate::transport::dry_run::{bind, hosts as host_objects};
use fleetbook_stdlib::{Host, Transport};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// Requests from outside the run: Ctrl-C once (`stop`), twice (`kill`), `fleetbook abort`.
#[derive(Default)]
pub struct Control {
    pub stop: AtomicBool,
    pub kill: AtomicBool,
    /// Set while the scheduler has nothing to do but wait for a task to end: everything the
    /// last transition allowed has started (what a test driving the run in lockstep waits for).
    pub idle: AtomicBool,
    /// The run store refused a transition (lost lock, unreachable store): a task whose
    /// start could not be recorded is not run, so nothing runs that a resume cannot see.
    pub unrecorded: AtomicBool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Running,
    Ok,
    Failed,
    Unreachable,
    Skipped,
    Retrying,
    RolledBack,
    NotRun,
    WaitingApproval,
    /// Its `undo` is running.
    RollingBack,
    /// Its `undo` failed: the step's change is still there.
    UndoFailed,
}

impl State {
    /// The name events, the journal and logs use.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Running => "running",
            State::Ok => "ok",
            State::Failed => "failed",
            State::Unreachable => "unreachable",
            State::Skipped => "skipped",
            State::Retrying => "retrying",
            State::RolledBack => "rolled_back",
            State::NotRun => "not_run",
            State::WaitingApproval => "waiting_approval",
            State::RollingBack => "rolling_back",
            State::UndoFailed => "undo_failed",
        }
    }
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        crate::store::RunState::from(self).as_str()
    }
}

/// One task transition, as `--events jsonl` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Time since the run started (seconds in `--events jsonl`).
    #[serde(with = "crate::clock::secs")]
    pub at: std::time::Duration,
    pub task: String,
    pub kind: TaskKind,
    pub host: Option<String>,
    pub step: Option<String>,
    pub role: Option<String>,
    pub state: State,
    pub attempt: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Succeeded,
    /// Every host ran, but some failed within the tolerance.
    SucceededWithFailures,
    Halted,
    Aborted,
    /// `fleetbook rollback` undid every completed step it was asked to.
    RolledBack,
    /// `fleetbook rollback` stopped on a host whose undo failed (or was stopped).
    RollbackFailed,
    /// The run lost its fleet lock or could not write its journal, and stopped starting
    /// tasks (set by the session, never by the executor).
    StoreFailed,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct HostRecap {
    pub name: String,
    pub ok: usize,
    pub failed: usize,
    pub skipped: usize,
    pub unreachable: usize,
    pub not_run: usize,
    pub rolled_back: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunOutcome {
    pub status: RunStatus,
    pub reason: Option<String>,
    pub hosts: Vec<HostRecap>,
    #[serde(with = "crate::clock::secs")]
    pub elapsed: std::time::Duration,
}

pub struct ExecOptions<'a> {
    pub transport: Arc<dyn Transport>,
    pub control: Arc<Control>,
    pub on_event: &'a (dyn Fn(&Event) + Sync),
    /// Asked when an `.approval(...)` is reached; false halts the run.
    pub approve: &'a (dyn Fn(&str) -> bool + Sync),
    /// Tasks already done by an earlier attempt of this run (resume): not run again.
    pub done: Vec<bool>,
    /// Facts hosts learned in an earlier attempt of this run (resume): (host, name, value).
    pub facts: Vec<(String, String, String)>,
    /// Called with (host, name, value) for each fact as a step sets it, before `set_fact`
    /// returns, so that a journal has the fact even if the controller dies mid-step.
    pub on_fact: fleetbook_stdlib::host::FactSink,
    /// `fleetbook rollback`: run only the `undo` of these tasks, in this order (newest
    /// first), instead of the plan.
    pub undo_only: Option<Vec<usize>>,
    /// The run's id, for the structured log (`tracing` spans).
    pub run_id: String,
    /// Admits hosts fleet-wide when other controllers share the run ([`SlotLedger`]).
    pub ledger: Arc<dyn SlotLedger>,
}

enum Outcome {
    Ok,
    Skipped,
    Failed {
        message: String,
        unreachable: bool,
        /// The run halts at once, whatever the failure budget (a changed host key, a host
        /// leased by another run).
        halts: bool,
    },
}

struct Done {
    task: usize,
    outcome: Outcome,
    attempts: u32,
    rolled_back: bool,
}

impl Done {
    fn ok(task: usize, attempts: u32) -> Done {
        Done {
            task,
            outcome: Outcome::Ok,
            attempts,
            rolled_back: false,
        }
    }

    fn failed(task: usize, message: String, unreachable: bool, attempts: u32) -> Done {
        Done {
            task,
            outcome: Outcome::Failed {
                message,
                unreachable,
                halts: false,
            },
            attempts,
            rolled_back: false,
        }
    }
}

/// One attempt of a task's step.
struct Try<'a> {
    t: usize,
    step: &'a crate::model::Step,
    host: Option<&'a Host>,
    attempt: u32,
    last: bool,
}

/// A task transition in the structured log (already redacted, as every event is).
fn trace_event(e: &Event) {
    let detail = e.message.as_deref().unwrap_or("");
    let (task, host, step) = (
        e.task.as_str(),
        e.host.as_deref().unwrap_or(""),
        e.step.as_deref().unwrap_or(""),
    );
    let state = e.state.as_str();
    match e.state {
        State::Failed | State::Unreachable | State::Retrying | State::NotRun => {
            tracing::warn!(
                task,
                host,
                step,
                state,
                attempt = e.attempt,
                detail,
                "task {state}"
            )
        }
        _ => tracing::info!(
            task,
            host,
            step,
            state,
            attempt = e.attempt,
            detail,
            "task {state}"
        ),
    }
}

/// Tasks whose closure answers yes or no.
fn is_predicate(kind: TaskKind) -> bool {
    matches!(
        kind,
        TaskKind::Gate | TaskKind::CanaryGate | TaskKind::HostCheck
    )
}

/// Marks a failure that must halt the run whatever the budget.
fn mark_halting(d: &mut Done, e: &rhai::EvalAltResult) {
    if let Outcome::Failed { halts, .. } = &mut d.outcome {
        *halts = Script::transport_error(e).is_some_and(|te| te.halts_run());
    }
}

/// Sleeps up to `d`, waking early once `woken` says so (checked every 100 ms).
fn nap(d: Duration, woken: impl Fn() -> bool) {
    let end = Instant::now() + d;
    while Instant::now() < end && !woken() {
        std::thread::sleep((end - Instant::now()).min(Duration::from_millis(100)));
    }
}

struct Runner<'a> {
    /// Set when the run halts, so that soaking hosts stop waiting.
    halting: AtomicBool,
    script: &'a Script,
    secrets: &'a Secrets,
    graph: &'a Graph,
    hosts: Vec<Host>,
    opts: &'a ExecOptions<'a>,
    start: Instant,
    /// Which waiting hosts the transport may connect to before they start.
    ahead: crate::ahead::Ahead,
}

impl Runner<'_> {
    fn event(&self, t: usize, state: State, attempt: u32, message: Option<String>) {
        let task = &self.graph.tasks[t];
        // Barriers run nothing; their transitions would only be noise.
        if matches!(task.kind, TaskKind::RoleDone | TaskKind::CanaryDone) {
            return;
        }
        let rb = &self.script.runbook;
        let e = Event {
            at: self.start.elapsed(),
            task: self.secrets.redacted(&task.id),
            kind: task.kind,
            host: task.host.map(|h| self.graph.hosts[h].name.clone()),
            step: task.step.map(|s| self.secrets.redacted(&rb.steps[s].name)),
            role: task.role.map(|r| self.graph.roles[r].name.clone()),
            state,
            attempt,
            message: message.map(|m| self.secrets.redacted(&m)),
        };
        trace_event(&e);
        (self.opts.on_event)(&e);
    }

    /// Runs one task to its outcome, with retries; `done_before` are the host's earlier
    /// tasks that ran, for rollback.
    fn run(&self, t: usize, done_before: &[usize]) -> Done {
        let task = &self.graph.tasks[t];
        let control = &self.opts.control;
        if control.unrecorded.load(Ordering::SeqCst) && task.step.is_some() {
            let why = "not started: the run store could not record its start";
            return Done::failed(t, why.into(), false, 1);
        }
        let Some(step) = task.step.map(|s| &self.script.runbook.steps[s]) else {
            return Done::ok(t, 0);
        };
        if task.kind == TaskKind::Approval {
            self.event(t, State::WaitingApproval, 1, None);
            return if (self.opts.approve)(&step.name) {
                Done::ok(t, 1)
            } else {
                let why = format!("approval {:?} was not given", step.name);
                Done::failed(t, why, false, 1)
            };
        }
        let host = task.host.map(|h| &self.hosts[h]);
        if let (Some(h), Some(when)) = (host, &step.when) {
            if let Some(skipped_or_failed) = self.when(t, when, h) {
                return skipped_or_failed;
            }
        }
        let Some(action) = &step.action else {
            return Done::ok(t, 0);
        };
        let attempts = step.retries + 1;
        for attempt in 1..=attempts {
            if control.kill.load(Ordering::SeqCst) {
                return Done::failed(t, "killed".into(), false, attempt);
            }
            if attempt > 1 {
                self.event(t, State::Running, attempt, None);
            }
            let tried = Try {
                t,
                step,
                host,
                attempt,
                last: attempt == attempts,
            };
            match self.attempt(&tried, action, done_before) {
                Ok(done) => return done,
                Err(err) => {
                    self.event(t, State::Retrying, attempt, Some(err));
                    nap(step.retry_delay, || control.kill.load(Ordering::SeqCst));
                }
            }
        }
        Done::failed(t, "no attempt was made".into(), false, 0)
    }

    /// A step's `.when(...)` on its host: `None` to run it, else its outcome (skipped, or
    /// failed: the predicate did not answer yes or no).
    fn when(&self, t: usize, when: &rhai::FnPtr, h: &Host) -> Option<Done> {
        match self
            .script
            .call_host(when, h.clone())
            .map(|v| predicate::decide(&v))
        {
            Ok(Ok(false)) => Some(Done {
                task: t,
                outcome: Outcome::Skipped,
                attempts: 0,
                rolled_back: false,
            }),
            Ok(Ok(true)) => None,
            Ok(Err(returned)) => {
                let what = predicate::not_a_bool(".when(...)", &returned);
                Some(Done::failed(
                    t,
                    format!("{what}: the step did not run"),
                    false,
                    1,
                ))
            }
            Err(e) => {
                let why = format!("when: {}", self.script.describe(&e));
                let mut d = Done::failed(t, why, Script::is_unreachable(&e), 1);
                mark_halting(&mut d, &e);
                Some(d)
            }
        }
    }

    /// One attempt of a step's action: its outcome, or the error to retry after.
    fn attempt(
        &self,
        a: &Try,
        action: &rhai::FnPtr,
        done_before: &[usize],
    ) -> Result<Done, String> {
        let (t, step, kind) = (a.t, a.step, self.graph.tasks[a.t].kind);
        let result = match a.host {
            Some(h) => self.script.call_host(action, h.with_timeout(step.timeout)),
            None => self.script.call(action),
        };
        let err = match result {
            Ok(v) if is_predicate(kind) => match self.verdict(a, &v) {
                None => return Ok(Done::ok(t, a.attempt)),
                Some(no) => no,
            },
            Ok(_) => {
                self.soak(a);
                return Ok(Done::ok(t, a.attempt));
            }
            Err(e) if kind == TaskKind::HostCheck => {
                // A check that cannot say yes is a no: fail closed, and halt.
                let mut d = Done::failed(t, self.script.describe_step(&e, step), false, a.attempt);
                if let Outcome::Failed { halts, .. } = &mut d.outcome {
                    *halts = true;
                }
                if a.last {
                    return Ok(d);
                }
                self.script.describe_step(&e, step)
            }
            Err(e) => return self.call_failed(a, &e, done_before),
        };
        if a.last {
            let mut d = Done::failed(t, err, false, a.attempt);
            if let Outcome::Failed { halts, .. } = &mut d.outcome {
                // A failed host check halts the run, whatever the failure budget.
                *halts = kind == TaskKind::HostCheck;
            }
            return Ok(d);
        }
        Err(err)
    }

    /// What a gate or check answered: `None` for yes, else why it does not hold.
    fn verdict(&self, a: &Try, v: &rhai::Dynamic) -> Option<String> {
        let what = if self.graph.tasks[a.t].kind == TaskKind::HostCheck {
            "check"
        } else {
            "gate"
        };
        match predicate::decide(v) {
            Ok(true) => None,
            Ok(false) => Some(format!(
                "{what} {:?} does not hold{}",
                a.step.name,
                a.host
                    .map(|h| format!(" on {}", h.info.name))
                    .unwrap_or_default()
            )),
            Err(returned) => Some(format!(
                "{what} {:?}: {}",
                a.step.name,
                predicate::not_a_bool(&format!("the {what}"), &returned)
            )),
        }
    }

    /// A succeeded host step with a soak time keeps its host (and slot) while the change
    /// soaks; a stop, a kill or a halt ends it.
    fn soak(&self, a: &Try) {
        let kind = self.graph.tasks[a.t].kind;
        let Some(soak) = a.step.soak.filter(|_| kind == TaskKind::Host) else {
            return;
        };
        let what = format!(
            "soaking for {}",
            fleetbook_stdlib::duration::format_duration(soak)
        );
        self.event(a.t, State::Running, a.attempt, Some(what));
        let control = &self.opts.control;
        nap(soak, || {
            control.kill.load(Ordering::SeqCst)
                || control.stop.load(Ordering::SeqCst)
                || self.halting.load(Ordering::SeqCst)
        });
    }

    /// The action raised an error: fail now (the host must not be touched again, it is
    /// unreachable, or this was the last attempt; rolled back when the runbook says so),
    /// or the message to retry after.
    fn call_failed(
        &self,
        a: &Try,
        e: &rhai::EvalAltResult,
        done_before: &[usize],
    ) -> Result<Done, String> {
        let unreachable = Script::is_unreachable(e);
        let halts = Script::transport_error(e).is_some_and(|te| te.halts_run());
        let message = self.script.describe_step(e, a.step);
        if halts {
            // Nothing more goes to this host, not even an undo.
            let mut d = Done::failed(a.t, message, false, a.attempt);
            mark_halting(&mut d, e);
            return Ok(d);
        }
        if unreachable || a.last {
            let mut d = Done::failed(a.t, message, unreachable, a.attempt);
            if let Some(h) = a.host {
                d.rolled_back = self.rollback(a.t, done_before, h);
            }
            return Ok(d);
        }
        Err(message)
    }

    /// Runs the `undo` closures of the failed step and the host's earlier steps, newest
    /// first. Returns whether any undo ran and all of them succeeded.
    fn rollback(&self, failed: usize, done_before: &[usize], h: &Host) -> bool {
        if !self.script.runbook.rollback_on_failure {
            return false;
        }
        let mut any = false;
        for &t in std::iter::once(&failed).chain(done_before.iter().rev()) {
            match self.undo(t, h) {
                None => {}
                Some(true) => any = true,
                Some(false) => return false,
            }
        }
        any
    }

    /// Runs task `t`'s `undo` on `h`: `None` when its step has none, else whether it worked.
    fn undo(&self, t: usize, h: &Host) -> Option<bool> {
        let step = self.graph.tasks[t]
            .step
            .map(|s| &self.script.runbook.steps[s])?;
        let undo = step.undo.as_ref()?;
        self.event(t, State::RollingBack, 1, None);
        Some(
            match self.script.call_host(undo, h.with_timeout(step.timeout)) {
                Ok(_) => {
                    self.event(t, State::RolledBack, 1, None);
                    true
                }
                Err(e) => {
                    self.event(
                        t,
                        State::UndoFailed,
                        1,
                        Some(format!("undo failed: {}", self.script.describe(&e))),
                    );
                    false
                }
            },
        )
    }
}

/// Runs the plan. Blocks until every started task has ended.
pub fn execute(planned: &Planned, opts: ExecOptions) -> RunOutcome {
    let graph = &planned.graph;
    let script = &planned.script;
    let hosts = host_objects(graph, opts.transport.clone());
    for (host, name, value) in &opts.facts {
        if let Some(h) = hosts.get(host) {
            // Facts are journaled redacted; a resumed run has the same secrets. A fact that
            // held a secret learned on the host is not kept, so it is not known again.
            if let Some(value) = planned.secrets.reveal(value) {
                h.seed_fact(name, value);
            }
        }
    }
    // Facts reach the journal as they are set, redacted like everything that leaves.
    for h in hosts.values() {
        let (sink, secrets) = (opts.on_fact.clone(), planned.secrets.clone());
        let marked = script.runbook.secret_vars.clone();
        h.set_fact_sink(Arc::new(move |host: &str, name: &str, value: &str| {
            // A fact named like a credential (or marked secret) is a secret from now on.
            if secrets.is_secret(name) || marked.iter().any(|m| m == name) {
                secrets.add(name, value);
            }
            sink(host, name, &secrets.redact(value))
        }));
    }
    bind(script, graph, &hosts);
    let span = tracing::info_span!(
        "run",
        run = %opts.run_id,
        runbook = %planned.secrets.redacted(&script.runbook.name)
    );
    let _run = span.enter();
    tracing::info!(
        hosts = graph.hosts.len(),
        tasks = graph.tasks.len(),
        "run starts"
    );
    let runner = Runner {
        halting: AtomicBool::new(false),
        script,
        secrets: &planned.secrets,
        graph,
        hosts: hosts.into_values().collect(),
        opts: &opts,
        start: Instant::now(),
        ahead: crate::ahead::Ahead::new(planned),
    };
    let outcome = match &opts.undo_only {
        Some(order) => undo_tasks(&runner, order),
        None => std::thread::scope(|scope| schedule(&runner, scope)),
    };
    opts.transport.shutdown();
    tracing::info!(status = ?outcome.status, reason = outcome.reason.as_deref().unwrap_or(""), elapsed = outcome.elapsed.as_secs_f64(), "run ends");
    outcome
}

/// `fleetbook rollback`: the undo of each task in `order`, one at a time; an undo that
/// fails stops that host's rollback (its older steps stay as they are), not the others'.
fn undo_tasks(r: &Runner, order: &[usize]) -> RunOutcome {
    let graph = r.graph;
    let mut recap: Vec<HostRecap> = graph
        .hosts
        .iter()
        .map(|h| HostRecap {
            name: h.name.clone(),
            ..Default::default()
        })
        .collect();
    let mut broken: Vec<Option<String>> = vec![None; graph.hosts.len()];
    let stopped = || r.opts.control.stop.load(Ordering::SeqCst);
    for &t in order {
        let Some(h) = graph.tasks[t].host else {
            continue;
        };
        if broken[h].is_some() || stopped() {
            recap[h].not_run += 1;
            continue;
        }
        match r.undo(t, &r.hosts[h]) {
            Some(true) => {
                recap[h].ok += 1;
                recap[h].rolled_back = true;
            }
            Some(false) => {
                recap[h].failed += 1;
                broken[h] = Some(graph.tasks[t].id.to_string());
            }
            None => recap[h].skipped += 1,
        }
    }
    let failed: Vec<String> = broken.into_iter().flatten().collect();
    let (status, mut reason) = if stopped() {
        (
            RunStatus::RollbackFailed,
            Some("stopped by the operator: `fleetbook rollback` again goes on".into()),
        )
    } else if !failed.is_empty() {
        (
            RunStatus::RollbackFailed,
            Some(format!(
                "rollback failed at {}: those hosts' older steps were not undone; fix them, then `fleetbook rollback` again retries it first",
                failed.join(", ")
            )),
        )
    } else {
        (RunStatus::RolledBack, None)
    };
    // The run's `finally` steps, if it never ran them (it crashed or was killed before).
    if !r.opts.control.kill.load(Ordering::SeqCst) {
        for t in (0..graph.tasks.len()).filter(|&t| {
            graph.tasks[t].kind == TaskKind::Finally
                && !r.opts.done.get(t).copied().unwrap_or(false)
        }) {
            if let Some(why) = run_finally(r, t) {
                reason = Some(match reason {
                    Some(x) => format!("{x}; then {why}"),
                    None => why,
                });
            }
        }
    }
    RunOutcome {
        status,
        reason: reason.map(|m| r.secrets.redacted(&m)),
        hosts: recap,
        elapsed: r.start.elapsed(),
    }
}

/// What the executor keeps about a run in progress, beyond what the dispatcher decides.
struct Progress {
    /// Tasks that ran and succeeded: only their `undo` closures run on rollback.
    ran_ok: Vec<bool>,
    /// When each task succeeded, in order (0: not, or in an earlier attempt): rollback
    /// undoes the newest first.
    ok_seq: Vec<u64>,
    seq: u64,
    recap: Vec<HostRecap>,
}

/// Takes a place for `host` in throttled step `step` fleet-wide (other controllers' hosts
/// count against the throttle too).
fn enter_step(r: &Runner, step: usize, host: usize) -> bool {
    let cap = r.graph.rules.throttle[step].unwrap_or(usize::MAX);
    let name = r.secrets.redacted(&r.script.runbook.steps[step].name);
    r.opts
        .ledger
        .enter_step(&r.graph.hosts[host].name, &name, cap)
}

/// Task `t` leaves its throttled step: its place is free fleet-wide.
fn leave_step(r: &Runner, t: usize) {
    let task = &r.graph.tasks[t];
    if let (Some(h), Some(step)) = (task.host, task.step) {
        let name = r.secrets.redacted(&r.script.runbook.steps[step].name);
        r.opts.ledger.leave_step(&r.graph.hosts[h].name, &name);
    }
}

fn is_always(r: &Runner, t: usize) -> bool {
    let task = &r.graph.tasks[t];
    task.kind == TaskKind::Host && task.step.is_some_and(|s| r.script.runbook.steps[s].always)
}

/// The executor's loop: a driver of the [`Dispatcher`] with a thread per running task, the
/// fleet-wide ledger, and an event per transition.
struct Sched<'s> {
    r: &'s Runner<'s>,
    d: Dispatcher<'s>,
    p: Progress,
    running: usize,
    /// Hosts that other controllers hold or that wait for fleet-wide slots.
    parked: usize,
    killed: bool,
    expired: bool,
    /// Hosts whose completed steps a role- or run-wide rollback undoes after the loop.
    undo_hosts: Vec<bool>,
    tx: mpsc::Sender<Done>,
    run_span: tracing::Span,
    /// One span per host, under the run's, for the tasks of that host.
    host_spans: Vec<tracing::Span>,
}

fn schedule<'s>(r: &'s Runner<'s>, scope: &'s std::thread::Scope<'s, '_>) -> RunOutcome {
    let (tx, rx) = mpsc::channel::<Done>();
    let mut s = Sched::new(r, tx);
    let control = &r.opts.control;
    loop {
        let stopping = s.d.halted().is_some() || control.stop.load(Ordering::SeqCst);
        s.expired = s.expired
            || r.graph
                .rules
                .deadline
                .is_some_and(|d| r.start.elapsed() >= d);
        s.pass(stopping, scope);
        if s.running == 0 {
            // Nothing runs here, but hosts other controllers finished (ready) or hold
            // (`parked`) may let more start.
            if s.d.has_ready() && !stopping {
                continue;
            }
            if s.parked == 0 || stopping || s.expired || s.d.halted().is_some() {
                break;
            }
            r.opts.ledger.wait(Duration::from_millis(200));
            continue;
        }
        if let Some(done) = s.next_done(&rx) {
            s.complete(done);
        }
    }
    s.end()
}

impl<'s> Sched<'s> {
    fn new(r: &'s Runner<'s>, tx: mpsc::Sender<Done>) -> Sched<'s> {
        let graph = r.graph;
        let n = graph.tasks.len();
        let always = (0..n).map(|t| is_always(r, t)).collect();
        let d = Dispatcher::run(graph, &r.opts.done, always);
        let mut p = Progress {
            ran_ok: vec![false; n],
            ok_seq: vec![0; n],
            seq: 0,
            recap: graph
                .hosts
                .iter()
                .map(|h| HostRecap {
                    name: h.name.clone(),
                    ..Default::default()
                })
                .collect(),
        };
        for t in (0..n).filter(|&t| d.is_finished(t)) {
            p.ran_ok[t] = true;
            if let Some((h, _)) = d.position(t) {
                p.recap[h].ok += 1;
            }
        }
        let run_span = tracing::Span::current();
        let host_spans = graph
            .hosts
            .iter()
            .map(|h| tracing::info_span!(parent: &run_span, "host", host = %h.name))
            .collect();
        Sched {
            r,
            d,
            p,
            running: 0,
            parked: 0,
            killed: false,
            expired: false,
            undo_hosts: vec![false; graph.hosts.len()],
            tx,
            run_span,
            host_spans,
        }
    }

    /// Places the ready tasks, then starts what the limits allow.
    fn pass(&mut self, stopping: bool, scope: &'s std::thread::Scope<'s, '_>) {
        let r = self.r;
        let stop = Stop {
            stopping,
            killing: r.opts.control.kill.load(Ordering::SeqCst),
            expired: self.expired,
        };
        let placed = self.d.place_ready(stop);
        for &h in &placed.waiting {
            tracing::debug!(host = %r.graph.hosts[h].name, "host waits for its slots");
        }
        for t in placed.start {
            self.start(t, scope);
        }
        if stopping {
            return;
        }
        self.admit_hosts(scope);
        for t in self.d.enter_steps_fleet(|step, h| enter_step(r, step, h)) {
            self.start(t, scope);
        }
        // Steps that wait here wait for other controllers' hosts to leave them.
        self.parked += self.d.steps_waiting();
        self.d.end_pass();
        let transport = &*r.opts.transport;
        r.ahead.connect(self.d.waiting_hosts(), &r.hosts, transport);
    }

    /// Starts the hosts whose slots are free, once the fleet-wide ledger admits them.
    fn admit_hosts(&mut self, scope: &'s std::thread::Scope<'s, '_>) {
        let (r, graph) = (self.r, self.r.graph);
        let mut parked = Vec::new();
        while let Some(h) = (!self.expired).then(|| self.d.next_host()).flatten() {
            let name = &graph.hosts[h].name;
            match r
                .opts
                .ledger
                .admit(name, &fleet_limits(graph, self.d.slot_key(h)))
            {
                Admit::Go { done, unknown } if done.is_empty() && unknown.is_empty() => {
                    if let Some(t) = self.d.open_host(h) {
                        self.start(t, scope);
                    }
                }
                Admit::Go { unknown, .. } if self.unknown_not_idempotent(h, &unknown) => {
                    self.left_unknown(h)
                }
                Admit::Go { done, .. } => self.take_over(h, &done),
                Admit::Full => {
                    self.d.give_back(h);
                    parked.push(h);
                    break;
                }
                Admit::Elsewhere => {
                    self.d.give_back(h);
                    parked.push(h);
                }
                Admit::Finished { ok } => {
                    self.d.give_back(h);
                    self.finished_elsewhere(&graph.host_tasks[h], ok);
                    if !ok {
                        self.d.host_failed(h);
                    }
                }
            }
        }
        self.parked = parked.len();
        for h in parked {
            self.d.park(h);
        }
    }

    /// Does a task of host `h` that a dead controller left running (`unknown`, ids) lack
    /// `.idempotent()`?
    fn unknown_not_idempotent(&self, h: usize, unknown: &[String]) -> bool {
        let (r, graph) = (self.r, self.r.graph);
        graph.host_tasks[h].iter().any(|&t| {
            unknown.contains(&r.secrets.redacted(&graph.tasks[t].id))
                && !graph.tasks[t]
                    .step
                    .is_some_and(|s| r.script.runbook.steps[s].idempotent)
        })
    }

    /// A controller that died left a step of host `h` running: what it did is unknown,
    /// and only the operator can say (resume's choices).
    fn left_unknown(&mut self, h: usize) {
        let (r, graph) = (self.r, self.r.graph);
        let name = &graph.hosts[h].name;
        self.d.give_back(h);
        r.opts.ledger.release(name, None);
        let ts = &graph.host_tasks[h];
        self.finished_elsewhere(ts, false);
        self.p.recap[h].not_run += ts.len();
        self.d.halt(format!(
            "{name}: a controller that died left a step of it running; resume with --retry-unknown or --skip-unknown"
        ));
    }

    /// Takes host `h` over from a controller that died: what it finished (`done`, ids) is
    /// done; its first step still to do starts in the next pass.
    fn take_over(&mut self, h: usize, done: &[String]) {
        let (r, graph) = (self.r, self.r.graph);
        self.d.hold(h);
        let done: Vec<usize> = graph.host_tasks[h]
            .iter()
            .copied()
            .filter(|&t| done.contains(&r.secrets.redacted(&graph.tasks[t].id)))
            .collect();
        self.finished_elsewhere(&done, true);
        if self.d.close_if_done(h) {
            r.opts.ledger.release(&graph.hosts[h].name, Some(true));
        } else {
            self.d.ready_next(h);
        }
    }

    /// Tasks another controller finished: finished here too, without running, so that
    /// what waits for them (the next batch, the role after) goes on.
    fn finished_elsewhere(&mut self, tasks: &[usize], ok: bool) {
        for t in self.d.finish_elsewhere(tasks) {
            self.p.ran_ok[t] = ok;
        }
    }

    /// Starts task `t` on its own thread (a barrier, which runs nothing, ends at once).
    /// Throttled steps were let in by the dispatcher, which took their place in the step.
    fn start(&mut self, t: usize, scope: &'s std::thread::Scope<'s, '_>) {
        let (r, graph) = (self.r, self.r.graph);
        let position = self.d.position(t);
        let parent = position.map_or(&self.run_span, |(h, _)| &self.host_spans[h]);
        let span = tracing::info_span!(
            parent: parent,
            "task",
            task = %r.secrets.redacted(&graph.tasks[t].id)
        );
        self.running += 1;
        self.d.started(t);
        r.event(t, State::Running, 1, None);
        let done_before: Vec<usize> = match position {
            Some((h, i)) => graph.host_tasks[h][..i]
                .iter()
                .copied()
                .filter(|&q| self.p.ran_ok[q])
                .collect(),
            None => Vec::new(),
        };
        // A barrier runs nothing: it ends at once, before the scheduler waits again.
        if graph.tasks[t].step.is_none() {
            let _ = self.tx.send(Done {
                task: t,
                outcome: Outcome::Ok,
                attempts: 0,
                rolled_back: false,
            });
            return;
        }
        let tx = self.tx.clone();
        scope.spawn(move || {
            let _task = span.enter();
            let _ = tx.send(run_caught(r, t, &done_before));
        });
    }

    /// The next task to end, within 100 ms; a second Ctrl-C kills every command.
    fn next_done(&mut self, rx: &mpsc::Receiver<Done>) -> Option<Done> {
        let control = &self.r.opts.control;
        let next = rx.try_recv().or_else(|_| {
            control.idle.store(true, Ordering::SeqCst);
            let next = rx.recv_timeout(Duration::from_millis(100));
            control.idle.store(false, Ordering::SeqCst);
            next
        });
        if next.is_err() && control.kill.load(Ordering::SeqCst) && !self.killed {
            self.killed = true;
            self.r.opts.transport.kill_all();
        }
        next.ok()
    }

    /// A task ended: its transition, the host's steps that will not run now, and what the
    /// dispatcher may start next.
    fn complete(&mut self, done: Done) {
        let r = self.r;
        self.running -= 1;
        let t = done.task;
        let mut complete = vec![t];
        let host = self.d.position(t).map(|(h, _)| h);
        match done.outcome {
            Outcome::Ok => {
                self.p.ran_ok[t] = true;
                self.p.seq += 1;
                self.p.ok_seq[t] = self.p.seq;
                r.event(t, State::Ok, done.attempts, None);
                if let Some(h) = host {
                    self.p.recap[h].ok += 1;
                }
            }
            Outcome::Skipped => {
                r.event(t, State::Skipped, 0, Some("condition is false".into()));
                if let Some(h) = host {
                    self.p.recap[h].skipped += 1;
                }
            }
            Outcome::Failed { .. } => self.failed(&done, &mut complete),
        }
        let halted = self.d.halted().is_some();
        // A halt ends soaks: no host will start in the slots they keep.
        if halted {
            r.halting.store(true, Ordering::SeqCst);
        }
        // Stopping: an in-flight host finishes this step and stops here, but for its
        // `.always()` steps.
        if halted || r.opts.control.stop.load(Ordering::SeqCst) {
            for rest in self.d.cancel_rest(t) {
                r.event(rest, State::NotRun, 0, Some("the run stopped".into()));
                if let Some(h) = host {
                    self.p.recap[h].not_run += 1;
                }
                complete.push(rest);
            }
        }
        for &c in &complete {
            if self.d.in_step(c) {
                leave_step(r, c);
            }
        }
        for h in self.d.finish(&complete) {
            self.host_closed(h);
        }
    }

    /// A task failed: the host's remaining steps will not run (but its `.always()` steps),
    /// and the run may halt (the failure budget, a role- or run-wide rollback).
    fn failed(&mut self, done: &Done, complete: &mut Vec<usize>) {
        let (r, graph) = (self.r, self.r.graph);
        let Outcome::Failed {
            message,
            unreachable,
            halts,
        } = &done.outcome
        else {
            return;
        };
        let (t, task) = (done.task, &graph.tasks[done.task]);
        if *halts {
            self.d.halt(match task.host {
                Some(_) => message.clone(),
                None => format!("{}: {message}", task.id),
            });
        }
        let state = if *unreachable {
            State::Unreachable
        } else {
            State::Failed
        };
        r.event(t, state, done.attempts, Some(message.clone()));
        let Some((h, _)) = self.d.position(t) else {
            self.d.halt(format!("{}: {message}", task.id));
            return;
        };
        let rc = &mut self.p.recap[h];
        if *unreachable {
            rc.unreachable += 1;
        } else {
            rc.failed += 1;
        }
        rc.rolled_back = done.rolled_back;
        for rest in self.d.cancel_rest(t) {
            let why = Some("an earlier step failed".into());
            r.event(rest, State::NotRun, 0, why);
            self.p.recap[h].not_run += 1;
            complete.push(rest);
        }
        self.group_rollback_after(h);
        self.d.host_failed(h);
    }

    /// A role- or run-wide rollback stops the run, whatever the budget; the other hosts'
    /// steps are undone after the loop.
    fn group_rollback_after(&mut self, h: usize) {
        let (graph, rb) = (self.r.graph, &self.r.script.runbook);
        if !rb.rollback_on_failure || rb.rollback_scope == RollbackScope::Host {
            return;
        }
        for o in rollback_hosts(graph, rb.rollback_scope, h) {
            if o != h {
                self.undo_hosts[o] = true;
            }
        }
        self.d.halt(format!(
            "host {} failed: rolling back {}",
            graph.hosts[h].name,
            match rb.rollback_scope {
                RollbackScope::Role => "the hosts of its roles",
                _ => "every host of the run",
            },
        ));
    }

    /// Host `h`'s last task ended: its connection may close, and the ledger frees it.
    fn host_closed(&mut self, h: usize) {
        let r = self.r;
        r.ahead.finished(h, &r.hosts, &*r.opts.transport);
        let rc = &self.p.recap[h];
        let finished = if rc.failed + rc.unreachable > 0 {
            Some(false)
        } else if rc.not_run > 0 {
            None
        } else {
            Some(true)
        };
        r.opts.ledger.release(&r.graph.hosts[h].name, finished);
    }

    /// After the loop: group rollbacks, the count of what never started, `finally`.
    fn end(mut self) -> RunOutcome {
        let (r, graph) = (self.r, self.r.graph);
        let killed = r.opts.control.kill.load(Ordering::SeqCst);
        if self.undo_hosts.iter().any(|&u| u) && !killed {
            group_rollback(r, &mut self.p, &self.undo_hosts);
        }
        // Hosts that never started, and held ones.
        for (h, ts) in graph.host_tasks.iter().enumerate() {
            let untouched = ts.iter().filter(|&&t| !self.d.is_finished(t)).count();
            self.p.recap[h].not_run += untouched;
        }
        let mut halted = match self.d.halted() {
            Some(why) => Some(why.to_string()),
            None => unfinished_reason(r, &self.d, self.expired),
        };
        if !killed {
            let finals =
                (0..graph.tasks.len()).filter(|&t| graph.tasks[t].kind == TaskKind::Finally);
            for t in finals {
                if let Some(why) = run_finally(r, t) {
                    halted = Some(match halted {
                        Some(h) => format!("{h}; then {why}"),
                        None => why,
                    });
                }
            }
        }
        outcome(r, self.p.recap, halted)
    }
}

/// The run's status and reason, from the hosts' recaps and why it halted.
fn outcome(r: &Runner, hosts: Vec<HostRecap>, halted: Option<String>) -> RunOutcome {
    let aborted = r.opts.control.stop.load(Ordering::SeqCst);
    let any_failed = hosts.iter().any(|h| h.failed + h.unreachable > 0);
    let status = if aborted {
        RunStatus::Aborted
    } else if halted.is_some() {
        RunStatus::Halted
    } else if any_failed {
        RunStatus::SucceededWithFailures
    } else {
        RunStatus::Succeeded
    };
    RunOutcome {
        status,
        reason: if aborted {
            Some("stopped by the operator".into())
        } else {
            halted.map(|m| r.secrets.redacted(&m))
        },
        hosts,
        elapsed: r.start.elapsed(),
    }
}

/// Runs a task, turning a panic (a fleetbook bug) into a failure that halts the run rather
/// than a run waiting for an answer that never comes.
fn run_caught(r: &Runner, t: usize, done_before: &[usize]) -> Done {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| r.run(t, done_before))).unwrap_or_else(
        |panic| {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Done {
                task: t,
                outcome: Outcome::Failed {
                    message: format!("internal error (a fleetbook bug): {why}"),
                    unreachable: false,
                    halts: true,
                },
                attempts: 1,
                rolled_back: false,
            }
        },
    )
}

/// Undoes the completed steps of `hosts` (but those a failure already rolled back), newest
/// first across hosts; an undo that fails stops that host's rollback, not the others'.
fn group_rollback(r: &Runner, p: &mut Progress, hosts: &[bool]) {
    let mut order: Vec<(u64, usize, usize)> = Vec::new();
    for (h, ts) in r.graph.host_tasks.iter().enumerate() {
        // A failed host's own rollback already ran, when it failed.
        if !hosts[h] || p.recap[h].failed + p.recap[h].unreachable > 0 {
            continue;
        }
        for &t in ts.iter().filter(|&&t| p.ran_ok[t]) {
            order.push((p.ok_seq[t], t, h));
        }
    }
    // Newest first; steps done in an earlier attempt (no sequence) last, latest step first.
    order.sort_by(|a, b| b.cmp(a));
    let mut broken = vec![false; r.graph.hosts.len()];
    for (_, t, h) in order {
        if broken[h] {
            continue;
        }
        match r.undo(t, &r.hosts[h]) {
            Some(false) => {
                broken[h] = true;
                p.recap[h].rolled_back = false;
            }
            Some(true) => p.recap[h].rolled_back = true,
            None => {}
        }
    }
}

/// Why hosts are left that did not start, if they are: the deadline passed, or a role
/// is held.
fn unfinished_reason(r: &Runner, d: &Dispatcher, expired: bool) -> Option<String> {
    let graph = r.graph;
    let left = |pred: &dyn Fn(usize) -> bool| {
        graph
            .host_tasks
            .iter()
            .filter(|ts| ts.iter().any(|&t| !d.is_finished(t) && pred(t)))
            .count()
    };
    let held = left(&|t| graph.held[t]);
    let unstarted = left(&|t| !graph.held[t]);
    if expired && unstarted > 0 {
        let d = graph.rules.deadline.unwrap_or_default();
        return Some(format!(
            "the run's deadline ({}) passed: {unstarted} host(s) did not start; `fleetbook resume` goes on",
            fleetbook_stdlib::duration::format_duration(d)
        ));
    }
    if held > 0 {
        let roles: Vec<&str> = graph
            .roles
            .iter()
            .filter(|r| r.limit == Some(0) && !r.hosts.is_empty())
            .map(|r| r.name.as_str())
            .collect();
        return Some(format!(
            "role {} is held (limit 0): {held} host(s) did not start",
            roles.join(", ")
        ));
    }
    None
}

/// Runs a `finally` step; the reason it failed, if it did.
fn run_finally(r: &Runner, t: usize) -> Option<String> {
    r.event(t, State::Running, 1, None);
    let done = run_caught(r, t, &[]);
    match done.outcome {
        Outcome::Failed { message, .. } => {
            r.event(t, State::Failed, done.attempts, Some(message.clone()));
            Some(format!("{}: {message}", r.graph.tasks[t].id))
        }
        _ => {
            r.event(t, State::Ok, done.attempts, None);
            None
        }
    }
}
