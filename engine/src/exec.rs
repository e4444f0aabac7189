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
use crate::model::RollbackScope;
use crate::plan::Planned;
use crate::predicate;
use crate::script::Script;
use crate::secrets::Secrets;
use crate::slots::{fleet_limits, Admit, SlotKey, SlotLedger, Slots, WaitingHosts, WaitingSteps};
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
    /// Seconds since the run started.
    pub at: f64,
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
    pub elapsed: f64,
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
            at: self.start.elapsed().as_secs_f64(),
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
            return Done {
                task: t,
                outcome: Outcome::Failed {
                    message: "not started: the run store could not record its start".into(),
                    unreachable: false,
                    halts: false,
                },
                attempts: 1,
                rolled_back: false,
            };
        }
        let Some(step) = task.step.map(|s| &self.script.runbook.steps[s]) else {
            return Done {
                task: t,
                outcome: Outcome::Ok,
                attempts: 0,
                rolled_back: false,
            };
        };
        let fail = |message: String, unreachable: bool, attempts: u32| Done {
            task: t,
            outcome: Outcome::Failed {
                message,
                unreachable,
                halts: false,
            },
            attempts,
            rolled_back: false,
        };
        if task.kind == TaskKind::Approval {
            self.event(t, State::WaitingApproval, 1, None);
            return if (self.opts.approve)(&step.name) {
                Done {
                    task: t,
                    outcome: Outcome::Ok,
                    attempts: 1,
                    rolled_back: false,
                }
            } else {
                fail(format!("approval {:?} was not given", step.name), false, 1)
            };
        }
        let host = task.host.map(|h| &self.hosts[h]);
        if let (Some(h), Some(when)) = (host, &step.when) {
            match self
                .script
                .call_host(when, h.clone())
                .map(|v| predicate::decide(&v))
            {
                Ok(Ok(false)) => {
                    return Done {
                        task: t,
                        outcome: Outcome::Skipped,
                        attempts: 0,
                        rolled_back: false,
                    }
                }
                Ok(Ok(true)) => {}
                Ok(Err(returned)) => {
                    let what = predicate::not_a_bool(".when(...)", &returned);
                    return fail(format!("{what}: the step did not run"), false, 1);
                }
                Err(e) => {
                    let mut d = fail(
                        format!("when: {}", self.script.describe(&e)),
                        Script::is_unreachable(&e),
                        1,
                    );
                    mark_halting(&mut d, &e);
                    return d;
                }
            }
        }
        let Some(action) = &step.action else {
            return Done {
                task: t,
                outcome: Outcome::Ok,
                attempts: 0,
                rolled_back: false,
            };
        };
        let attempts = step.retries + 1;
        for attempt in 1..=attempts {
            if control.kill.load(Ordering::SeqCst) {
                return fail("killed".into(), false, attempt);
            }
            if attempt > 1 {
                self.event(t, State::Running, attempt, None);
            }
            let result = match host {
                Some(h) => self.script.call_host(action, h.with_timeout(step.timeout)),
                None => self.script.call(action),
            };
            let err = match result {
                Ok(v) if is_predicate(task.kind) => {
                    let what = if task.kind == TaskKind::HostCheck {
                        "check"
                    } else {
                        "gate"
                    };
                    match predicate::decide(&v) {
                        Ok(true) => {
                            return Done {
                                task: t,
                                outcome: Outcome::Ok,
                                attempts: attempt,
                                rolled_back: false,
                            };
                        }
                        Ok(false) => format!(
                            "{what} {:?} does not hold{}",
                            step.name,
                            host.map(|h| format!(" on {}", h.info.name))
                                .unwrap_or_default()
                        ),
                        Err(returned) => format!(
                            "{what} {:?}: {}",
                            step.name,
                            predicate::not_a_bool(&format!("the {what}"), &returned)
                        ),
                    }
                }
                Ok(_) => {
                    if let Some(soak) = step.soak.filter(|_| task.kind == TaskKind::Host) {
                        // The host keeps its slot while the change soaks; a stop ends it.
                        self.event(
                            t,
                            State::Running,
                            attempt,
                            Some(format!(
                                "soaking for {}",
                                fleetbook_stdlib::duration::format_duration(soak)
                            )),
                        );
                        nap(soak, || {
                            control.kill.load(Ordering::SeqCst)
                                || control.stop.load(Ordering::SeqCst)
                                || self.halting.load(Ordering::SeqCst)
                        });
                    }
                    return Done {
                        task: t,
                        outcome: Outcome::Ok,
                        attempts: attempt,
                        rolled_back: false,
                    };
                }
                Err(e) if task.kind == TaskKind::HostCheck => {
                    // A check that cannot say yes is a no: fail closed, and halt.
                    let mut d = fail(self.script.describe_step(&e, step), false, attempt);
                    if let Outcome::Failed { halts, .. } = &mut d.outcome {
                        *halts = true;
                    }
                    if attempt == attempts {
                        return d;
                    }
                    self.script.describe_step(&e, step)
                }
                Err(e) => {
                    let unreachable = Script::is_unreachable(&e);
                    let halts = Script::transport_error(&e).is_some_and(|te| te.halts_run());
                    let message = self.script.describe_step(&e, step);
                    if halts {
                        // Nothing more goes to this host, not even an undo.
                        let mut d = fail(message, false, attempt);
                        mark_halting(&mut d, &e);
                        return d;
                    }
                    if unreachable || attempt == attempts {
                        let mut d = fail(message, unreachable, attempt);
                        if let Some(h) = host {
                            d.rolled_back = self.rollback(t, done_before, h);
                        }
                        return d;
                    }
                    message
                }
            };
            if attempt == attempts {
                let mut d = fail(err, false, attempt);
                if let Outcome::Failed { halts, .. } = &mut d.outcome {
                    // A failed host check halts the run, whatever the failure budget.
                    *halts = task.kind == TaskKind::HostCheck;
                }
                return d;
            }
            self.event(t, State::Retrying, attempt, Some(err));
            nap(step.retry_delay, || control.kill.load(Ordering::SeqCst));
        }
        fail("no attempt was made".into(), false, 0)
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
    tracing::info!(status = ?outcome.status, reason = outcome.reason.as_deref().unwrap_or(""), elapsed = outcome.elapsed, "run ends");
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
                broken[h] = Some(graph.tasks[t].id.clone());
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
        elapsed: r.start.elapsed().as_secs_f64(),
    }
}

/// The scheduler's view of a run in progress.
struct Progress {
    finished: Vec<bool>,
    /// Tasks that ran and succeeded: only their `undo` closures run on rollback.
    ran_ok: Vec<bool>,
    /// When each task succeeded, in order (0: not, or in an earlier attempt): rollback
    /// undoes the newest first.
    ok_seq: Vec<u64>,
    seq: u64,
    /// Per host: it holds its slots now.
    open: Vec<bool>,
    /// Per host: a step of it (not a check) started, so its `.always()` steps are owed.
    ran: Vec<bool>,
    recap: Vec<HostRecap>,
}

impl Progress {
    fn host_done(&self, graph: &Graph, h: usize) -> bool {
        graph.host_tasks[h].iter().all(|&t| self.finished[t])
    }

    /// Tasks another controller finished: finished here too, without running, so that
    /// what waits for them (the next batch, the role after) goes on.
    fn finished_elsewhere(
        &mut self,
        tasks: &[usize],
        ok: bool,
        (dependents, waiting): (&[Vec<usize>], &mut [usize]),
        ready: &mut Vec<usize>,
    ) {
        // All marked first: a later step of the host, freed by an earlier one, must not
        // be made ready (and run here) when it is finished too.
        let fresh: Vec<usize> = tasks
            .iter()
            .copied()
            .filter(|&t| !self.finished[t])
            .collect();
        for &t in &fresh {
            self.finished[t] = true;
            self.ran_ok[t] = ok;
        }
        for &t in &fresh {
            for &d in &dependents[t] {
                waiting[d] -= 1;
                if waiting[d] == 0 && !self.finished[d] {
                    ready.push(d);
                }
            }
        }
    }
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

fn leave_step(r: &Runner, step: usize, at: Option<(usize, usize)>) {
    if let Some((h, _)) = at {
        let name = r.secrets.redacted(&r.script.runbook.steps[step].name);
        r.opts.ledger.leave_step(&r.graph.hosts[h].name, &name);
    }
}

fn is_always(r: &Runner, t: usize) -> bool {
    let task = &r.graph.tasks[t];
    task.kind == TaskKind::Host && task.step.is_some_and(|s| r.script.runbook.steps[s].always)
}

fn schedule<'s>(r: &'s Runner<'s>, scope: &'s std::thread::Scope<'s, '_>) -> RunOutcome {
    let graph = r.graph;
    let rb = &r.script.runbook;
    let n = graph.tasks.len();
    let control = &r.opts.control;
    let (dependents, mut waiting) = graph.dependents();
    let keys: Vec<SlotKey> = (0..graph.hosts.len())
        .map(|h| Slots::key(graph, h))
        .collect();
    let position: Vec<Option<(usize, usize)>> = {
        let mut v = vec![None; n];
        for (h, ts) in graph.host_tasks.iter().enumerate() {
            for (i, &t) in ts.iter().enumerate() {
                v[t] = Some((h, i));
            }
        }
        v
    };
    let finals: Vec<usize> = (0..n)
        .filter(|&t| graph.tasks[t].kind == TaskKind::Finally)
        .collect();
    let mut slots = Slots::new(graph);
    let mut p = Progress {
        finished: vec![false; n],
        ran_ok: vec![false; n],
        ok_seq: vec![0; n],
        seq: 0,
        open: vec![false; graph.hosts.len()],
        ran: vec![false; graph.hosts.len()],
        recap: graph
            .hosts
            .iter()
            .map(|h| HostRecap {
                name: h.name.clone(),
                ..Default::default()
            })
            .collect(),
    };
    let mut waiting_hosts = WaitingHosts::default();
    let mut waiting_steps = WaitingSteps::new(graph.rules.throttle.len());
    // `finally` steps run at the end of every attempt, whatever an earlier one did; a
    // resumed host with steps still to do runs its `.always()` (release) steps again after
    // them, so that the release comes last.
    let mut done = r.opts.done.clone();
    done.resize(n, false);
    for ts in &graph.host_tasks {
        if ts.iter().any(|&t| !done[t] && !is_always(r, t)) {
            ts.iter()
                .filter(|&&t| is_always(r, t))
                .for_each(|&t| done[t] = false);
        }
    }
    for t in (0..n).filter(|&t| done[t] && graph.tasks[t].kind != TaskKind::Finally) {
        p.finished[t] = true;
        p.ran_ok[t] = true;
        if let Some((h, _)) = position[t] {
            p.recap[h].ok += 1;
        }
        for &d in &dependents[t] {
            waiting[d] -= 1;
        }
    }
    // A resumed host takes its slot again at its first task still to do.
    let first_pending: Vec<usize> = graph
        .host_tasks
        .iter()
        .map(|ts| ts.iter().position(|&t| !p.finished[t]).unwrap_or(ts.len()))
        .collect();
    let mut ready: Vec<usize> = (0..n)
        .filter(|&t| waiting[t] == 0 && !p.finished[t])
        .collect();
    // One counter per role, then one for the whole run.
    let mut role_failures = vec![0usize; graph.roles.len() + 1];
    let mut halted: Option<String> = None;
    let mut running = 0usize;
    let mut parked = 0usize;
    let mut killed = false;
    let mut expired = false;
    // Hosts whose completed steps a role- or run-wide rollback undoes after the loop.
    let mut undo_hosts: Vec<bool> = vec![false; graph.hosts.len()];
    let (tx, rx) = mpsc::channel::<Done>();

    // One span per host, under the run's, for the tasks of that host.
    let run_span = tracing::Span::current();
    let host_spans: Vec<tracing::Span> = graph
        .hosts
        .iter()
        .map(|h| tracing::info_span!(parent: &run_span, "host", host = %h.name))
        .collect();
    // Throttled steps were let in by `waiting_steps`, which took their place in the step.
    let start_task = |t: usize, running: &mut usize, p: &mut Progress| {
        let parent = position[t].map_or(&run_span, |(h, _)| &host_spans[h]);
        let span = tracing::info_span!(
            parent: parent,
            "task",
            task = %r.secrets.redacted(&graph.tasks[t].id)
        );
        *running += 1;
        r.event(t, State::Running, 1, None);
        let done_before: Vec<usize> = match position[t] {
            Some((h, i)) => {
                if graph.tasks[t].kind == TaskKind::Host {
                    p.ran[h] = true;
                }
                graph.host_tasks[h][..i]
                    .iter()
                    .copied()
                    .filter(|&q| p.ran_ok[q])
                    .collect()
            }
            None => Vec::new(),
        };
        // A barrier runs nothing: it ends at once, before the scheduler waits again.
        if graph.tasks[t].step.is_none() {
            let _ = tx.send(Done {
                task: t,
                outcome: Outcome::Ok,
                attempts: 0,
                rolled_back: false,
            });
            return;
        }
        let tx = tx.clone();
        scope.spawn(move || {
            let _task = span.enter();
            let _ = tx.send(run_caught(r, t, &done_before));
        });
    };

    loop {
        let stopping = halted.is_some() || control.stop.load(Ordering::SeqCst);
        let killing = control.kill.load(Ordering::SeqCst);
        expired = expired || graph.rules.deadline.is_some_and(|d| r.start.elapsed() >= d);
        // Place ready tasks, then start what the limits allow.
        for t in std::mem::take(&mut ready) {
            let task = &graph.tasks[t];
            // Held tasks never start; `finally` steps run after the loop.
            if graph.held[t] || task.kind == TaskKind::Finally {
                continue;
            }
            // A stopping run still releases the hosts it touched (`.always()` steps); past
            // the deadline only hosts in flight go on (no hook, gate or approval either).
            let owed = is_always(r, t) && position[t].is_some_and(|(h, _)| p.open[h] && p.ran[h]);
            let in_flight = position[t].is_some_and(|(h, _)| p.open[h]);
            if (stopping && !owed) || killing || (expired && !in_flight) {
                continue;
            }
            match position[t] {
                Some((h, i)) if i == first_pending[h] && !p.open[h] => {
                    tracing::debug!(host = %graph.hosts[h].name, "host waits for its slots");
                    waiting_hosts.push(&keys[h], h)
                }
                Some((h, _))
                    if graph.rules.throttle[task.step.unwrap_or(0)].is_some() && !stopping =>
                {
                    waiting_steps.push(task.step.unwrap_or(0), h, t)
                }
                _ => start_task(t, &mut running, &mut p),
            }
        }
        if !stopping {
            // Hosts that other controllers hold or that wait for fleet-wide slots.
            let mut parked_now = Vec::new();
            while let Some(h) = (!expired)
                .then(|| waiting_hosts.start_next(&mut slots))
                .flatten()
            {
                let name = &graph.hosts[h].name;
                let ts = &graph.host_tasks[h];
                match r.opts.ledger.admit(name, &fleet_limits(graph, &keys[h])) {
                    Admit::Go { done, unknown } if done.is_empty() && unknown.is_empty() => {}
                    Admit::Go { unknown, .. }
                        if ts.iter().any(|&t| {
                            unknown.contains(&r.secrets.redacted(&graph.tasks[t].id))
                                && !graph.tasks[t].step.is_some_and(|s| rb.steps[s].idempotent)
                        }) =>
                    {
                        // A controller that died left a step of it running: what it did is
                        // unknown, and only the operator can say (resume's choices).
                        slots.finish(&keys[h]);
                        r.opts.ledger.release(name, None);
                        p.finished_elsewhere(ts, false, (&dependents, &mut waiting), &mut ready);
                        p.recap[h].not_run += ts.len();
                        halted.get_or_insert(format!(
                            "{name}: a controller that died left a step of it running; resume with --retry-unknown or --skip-unknown"
                        ));
                        continue;
                    }
                    Admit::Go { done, .. } => {
                        // Taken over from a controller that died: what it finished is done.
                        p.open[h] = true;
                        let done: Vec<usize> = ts
                            .iter()
                            .copied()
                            .filter(|&t| done.contains(&r.secrets.redacted(&graph.tasks[t].id)))
                            .collect();
                        p.finished_elsewhere(&done, true, (&dependents, &mut waiting), &mut ready);
                        if p.host_done(graph, h) {
                            p.open[h] = false;
                            slots.finish(&keys[h]);
                            r.opts.ledger.release(name, Some(true));
                        } else if let Some(&next) = ts.iter().find(|&&t| !p.finished[t]) {
                            // Its first step still to do starts in the next pass.
                            if waiting[next] == 0 && !ready.contains(&next) {
                                ready.push(next);
                            }
                        }
                        continue;
                    }
                    Admit::Full => {
                        slots.finish(&keys[h]);
                        parked_now.push(h);
                        break;
                    }
                    Admit::Elsewhere => {
                        slots.finish(&keys[h]);
                        parked_now.push(h);
                        continue;
                    }
                    Admit::Finished { ok } => {
                        slots.finish(&keys[h]);
                        p.finished_elsewhere(ts, ok, (&dependents, &mut waiting), &mut ready);
                        if !ok {
                            if let Some(why) = count_failure(graph, &mut role_failures, h) {
                                halted.get_or_insert(why);
                            }
                        }
                        continue;
                    }
                }
                p.open[h] = true;
                let first = graph.host_tasks[h][first_pending[h]];
                let step = graph.tasks[first].step.unwrap_or(0);
                if graph.rules.throttle[step].is_some() {
                    waiting_steps.push(step, h, first);
                } else {
                    start_task(first, &mut running, &mut p);
                }
            }
            for h in parked_now.iter() {
                waiting_hosts.push(&keys[*h], *h);
            }
            for t in waiting_steps.enter_next_fleet(&mut slots, |s, h| enter_step(r, s, h)) {
                start_task(t, &mut running, &mut p);
            }
            // Steps that wait here wait for other controllers' hosts to leave them.
            parked = parked_now.len() + waiting_steps.len();
            slots.end_pass();
            let transport = &*r.opts.transport;
            r.ahead
                .connect(&waiting_hosts, running, &r.hosts, transport);
        }
        if running == 0 {
            // Nothing runs here, but hosts other controllers finished (`ready`) or hold
            // (`parked`) may let more start.
            if !ready.is_empty() && !stopping {
                continue;
            }
            if parked == 0 || stopping || expired || halted.is_some() {
                break;
            }
            r.opts.ledger.wait(Duration::from_millis(200));
            continue;
        }
        let next = rx.try_recv().or_else(|_| {
            control.idle.store(true, Ordering::SeqCst);
            let next = rx.recv_timeout(Duration::from_millis(100));
            control.idle.store(false, Ordering::SeqCst);
            next
        });
        let done = match next {
            Ok(d) => d,
            Err(_) => {
                if control.kill.load(Ordering::SeqCst) && !killed {
                    killed = true;
                    r.opts.transport.kill_all();
                }
                continue;
            }
        };
        running -= 1;
        let t = done.task;
        let task = &graph.tasks[t];
        if let Some(step) = task.step.filter(|_| task.kind == TaskKind::Host) {
            if graph.rules.throttle[step].is_some() {
                slots.leave_step(step);
                leave_step(r, step, position[t]);
            }
        }
        let mut complete = vec![t];
        match done.outcome {
            Outcome::Ok => {
                p.ran_ok[t] = true;
                p.seq += 1;
                p.ok_seq[t] = p.seq;
                r.event(t, State::Ok, done.attempts, None);
                if let Some((h, _)) = position[t] {
                    p.recap[h].ok += 1;
                }
            }
            Outcome::Skipped => {
                r.event(t, State::Skipped, 0, Some("condition is false".into()));
                if let Some((h, _)) = position[t] {
                    p.recap[h].skipped += 1;
                }
            }
            Outcome::Failed {
                message,
                unreachable,
                halts,
            } => {
                if halts && halted.is_none() {
                    halted = Some(match graph.tasks[t].host {
                        Some(_) => message.clone(),
                        None => format!("{}: {message}", task.id),
                    });
                }
                r.event(
                    t,
                    if unreachable {
                        State::Unreachable
                    } else {
                        State::Failed
                    },
                    done.attempts,
                    Some(message.clone()),
                );
                match position[t] {
                    Some((h, i)) => {
                        if unreachable {
                            p.recap[h].unreachable += 1;
                        } else {
                            p.recap[h].failed += 1;
                        }
                        p.recap[h].rolled_back = done.rolled_back;
                        // The host's remaining steps will not run (but its `.always()`
                        // steps); they count as done so that a tolerated failure does not
                        // block the role.
                        for &rest in &graph.host_tasks[h][i + 1..] {
                            if is_always(r, rest) && p.ran[h] {
                                continue;
                            }
                            r.event(
                                rest,
                                State::NotRun,
                                0,
                                Some("an earlier step failed".into()),
                            );
                            p.recap[h].not_run += 1;
                            p.finished[rest] = true;
                            complete.push(rest);
                        }
                        // A role- or run-wide rollback stops the run, whatever the budget.
                        if rb.rollback_on_failure && rb.rollback_scope != RollbackScope::Host {
                            let hosts = rollback_hosts(graph, rb.rollback_scope, h);
                            for o in hosts.iter().filter(|&&o| o != h) {
                                undo_hosts[*o] = true;
                            }
                            halted.get_or_insert(format!(
                                "host {} failed: rolling back {}",
                                graph.hosts[h].name,
                                match rb.rollback_scope {
                                    RollbackScope::Role => "the hosts of its roles",
                                    _ => "every host of the run",
                                },
                            ));
                        }
                        if let Some(why) = count_failure(graph, &mut role_failures, h) {
                            halted.get_or_insert(why);
                        }
                    }
                    None => {
                        if halted.is_none() {
                            halted = Some(format!("{}: {message}", task.id));
                        }
                    }
                }
            }
        }
        let stopping = halted.is_some() || control.stop.load(Ordering::SeqCst);
        // A halt ends soaks: no host will start in the slots they keep.
        if halted.is_some() {
            r.halting.store(true, Ordering::SeqCst);
        }
        let mut touched = Vec::new();
        while let Some(c) = complete.pop() {
            p.finished[c] = true;
            if let Some((h, i)) = position[c] {
                touched.push(h);
                // Stopping: an in-flight host finishes this step and stops here, but for
                // its `.always()` steps.
                if stopping {
                    for &rest in &graph.host_tasks[h][i + 1..] {
                        if p.finished[rest] || (is_always(r, rest) && p.ran[h]) {
                            continue;
                        }
                        p.finished[rest] = true;
                        r.event(rest, State::NotRun, 0, Some("the run stopped".into()));
                        p.recap[h].not_run += 1;
                        complete.push(rest);
                    }
                }
            }
            for &d in &dependents[c] {
                waiting[d] -= 1;
                if waiting[d] == 0 && !p.finished[d] {
                    ready.push(d);
                }
            }
        }
        for h in touched {
            if p.open[h] && p.host_done(graph, h) {
                p.open[h] = false;
                slots.finish(&keys[h]);
                r.ahead.finished(h, &r.hosts, &*r.opts.transport);
                let rc = &p.recap[h];
                let finished = if rc.failed + rc.unreachable > 0 {
                    Some(false)
                } else if rc.not_run > 0 {
                    None
                } else {
                    Some(true)
                };
                r.opts.ledger.release(&graph.hosts[h].name, finished);
            }
        }
    }
    let killed = control.kill.load(Ordering::SeqCst);
    if undo_hosts.iter().any(|&u| u) && !killed {
        group_rollback(r, &mut p, &undo_hosts);
    }
    // Hosts that never started, and held ones.
    for (h, ts) in graph.host_tasks.iter().enumerate() {
        let untouched = ts.iter().filter(|&&t| !p.finished[t]).count();
        p.recap[h].not_run += untouched;
    }
    if halted.is_none() {
        halted = unfinished_reason(r, &p, expired);
    }
    if !killed {
        for &t in &finals {
            if let Some(why) = run_finally(r, t) {
                halted = Some(match halted {
                    Some(h) => format!("{h}; then {why}"),
                    None => why,
                });
            }
        }
    }
    let aborted = control.stop.load(Ordering::SeqCst);
    let any_failed = p.recap.iter().any(|h| h.failed + h.unreachable > 0);
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
        hosts: p.recap,
        elapsed: r.start.elapsed().as_secs_f64(),
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

/// Counts a host's failure in each of its roles; the reason to halt when a role is past
/// its tolerance. The tolerances that apply are those the runbook declared for the host's
/// roles; a host in no role with a declared tolerance gets none (0): a broken change must
/// not keep rolling (salt#54521).
fn count_failure(graph: &Graph, role_failures: &mut [usize], h: usize) -> Option<String> {
    let roles = &graph.hosts[h].roles;
    for &role in roles {
        role_failures[role] += 1;
    }
    if let Some(all) = role_failures.last_mut() {
        *all += 1;
    }
    // The whole run's budget (its own counter, after the roles'), with unreachable hosts.
    let total = graph.rules.max_failures_total;
    if let Some(max) = total {
        let failed = role_failures.last().copied().unwrap_or(0);
        if failed > max {
            return Some(format!(
                "{failed} hosts failed in all (max_failures_total {max})"
            ));
        }
    }
    if roles.is_empty() && total.is_none() {
        return Some(format!(
            "host {} failed (it is in no role, so no failure is tolerated)",
            graph.hosts[h].name
        ));
    }
    let declared: Vec<usize> = roles
        .iter()
        .copied()
        .filter(|&r| graph.roles[r].max_failures.is_some())
        .collect();
    // With a run-wide budget, a role without its own is not limited by role.
    let checked: Vec<(usize, usize)> = if declared.is_empty() && total.is_some() {
        Vec::new()
    } else if declared.is_empty() {
        roles.first().map(|&r| (r, 0)).into_iter().collect()
    } else {
        declared
            .iter()
            .map(|&r| (r, graph.roles[r].max_failures.unwrap_or(0)))
            .collect()
    };
    checked.into_iter().find_map(|(role, max)| {
        (role_failures[role] > max).then(|| {
            format!(
                "role {} has {} failed host{} (max_failures {max})",
                graph.roles[role].name,
                role_failures[role],
                if role_failures[role] == 1 { "" } else { "s" }
            )
        })
    })
}

/// The hosts a failure of host `h` rolls back under `scope`.
fn rollback_hosts(graph: &Graph, scope: RollbackScope, h: usize) -> Vec<usize> {
    match scope {
        RollbackScope::Host => vec![h],
        RollbackScope::Role => {
            let mut out: Vec<usize> = graph.hosts[h]
                .roles
                .iter()
                .flat_map(|&r| graph.roles[r].hosts.iter().copied())
                .collect();
            out.sort_unstable();
            out.dedup();
            out
        }
        RollbackScope::Run => (0..graph.hosts.len()).collect(),
    }
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
fn unfinished_reason(r: &Runner, p: &Progress, expired: bool) -> Option<String> {
    let graph = r.graph;
    let left = |pred: &dyn Fn(usize) -> bool| {
        graph
            .host_tasks
            .iter()
            .filter(|ts| ts.iter().any(|&t| !p.finished[t] && pred(t)))
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
