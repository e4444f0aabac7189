//! Driving a run: confirmation, the fleet lock, the journal, the live display, abort and
//! approval requests from other terminals, Ctrl-C, and the recap. `run`, `apply` and
//! `resume` all end here.

use crate::cli::{EventsFormat, RunArgs, SshArgs};
use crate::exit;
use crate::progress::{recap, Progress};
use fleetbook_engine::exec::{self, Control, Event, ExecOptions, RunStatus};
use fleetbook_engine::journal::{self, RunRecord};
use fleetbook_engine::plan::{self, Planned};
use fleetbook_engine::slots::{LocalLedger, SlotLedger};
use fleetbook_engine::store::{FleetLock, RunState, RunStore};
use fleetbook_engine::transport::{local::Local, record::Recording, ssh, Router};
use fleetbook_engine::{session, Error, Result};
use fleetbook_stdlib::duration::parse_duration;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub fn transport(args: &SshArgs) -> Result<Arc<Router>> {
    let connect_timeout = parse_duration(args.connect_timeout())
        .map_err(|e| Error::input(format!("--connect-timeout: {e}")))?;
    if args.accept_new_host_keys {
        eprintln!("warning: --accept-new-host-keys: unknown host keys are trusted and remembered; a man in the middle would go unnoticed");
    }
    if let Some(kex) = &args.ssh_kex {
        ssh::check_kex(kex).map_err(|e| Error::input(format!("--ssh-kex: {e}")))?;
    }
    let ssh = ssh::Ssh::new(ssh::SshOptions {
        config_file: args.ssh_config.clone(),
        accept_new_host_keys: args.accept_new_host_keys,
        connect_timeout,
        max_per_host: args.max_per_host(),
        kex: args.ssh_kex.clone(),
        persist: Duration::from_secs(args.persist()),
    })
    .map_err(|e| Error::Internal(format!("cannot start the ssh transport: {e}")))?;
    Ok(Arc::new(Router {
        local: Arc::new(Local::default()),
        ssh: Arc::new(ssh),
    }))
}

/// Ctrl-C once asks to stop starting work; twice asks to kill what runs.
pub fn install_ctrl_c(control: Arc<Control>) {
    let presses = AtomicUsize::new(0);
    let _ = ctrlc::set_handler(move || {
        let n = presses.fetch_add(1, Ordering::SeqCst) + 1;
        if n == 1 {
            control.stop.store(true, Ordering::SeqCst);
            // A stopped command leaves no connection behind, whatever --persist says.
            fleetbook_engine::transport::persist::keep_none();
            crate::progress::suspend(|| {
                eprintln!("\nstopping: no new host starts; steps in flight finish (Ctrl-C again to kill them)")
            });
        } else {
            control.kill.store(true, Ordering::SeqCst);
            crate::progress::suspend(|| eprintln!("\nkilling the steps in flight"));
        }
    });
}

/// The fleet a lock protects: the inventory, by its real path (an edited inventory is still
/// the same fleet), in this state directory.
pub fn fleet_key(inventory: &str) -> String {
    let p = std::path::Path::new(inventory);
    format!(
        "inventory:{}",
        p.canonicalize()
            .unwrap_or_else(|_| p.to_path_buf())
            .display()
    )
}

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

pub fn confirm(args: &RunArgs, question: &str) -> Result<bool> {
    ask(
        args.yes,
        question,
        Error::input_with_help(
            "refusing to run without confirmation: standard input is not a terminal",
            "review the plan with `fleetbook plan`, then pass --yes",
        ),
    )
}

/// A yes/no question on the terminal: true at once with `--yes`; `refusal` when there is no
/// terminal to ask on.
pub fn ask(yes: bool, question: &str, refusal: Error) -> Result<bool> {
    if yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        return Err(refusal);
    }
    eprint!("{question} [y/N] ");
    let mut answer = String::new();
    let _ = std::io::stdin().read_line(&mut answer);
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

fn absolute(path: &str) -> String {
    std::fs::canonicalize(path)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| path.to_string())
}

/// A `fleetbook resume` command line that works when pasted: the state directory and every
/// option of this run, absolute paths, each word shell-quoted; never a secret's value.
pub fn resume_hint(
    run_id: &str,
    state: &std::path::Path,
    args: &RunArgs,
    libs: &[PathBuf],
) -> String {
    let abs = |p: &std::path::Path| {
        std::fs::canonicalize(p)
            .unwrap_or_else(|_| p.to_path_buf())
            .display()
            .to_string()
    };
    let mut words: Vec<String> = vec!["fleetbook".into(), "resume".into(), run_id.into()];
    words.extend(["--state".into(), abs(state)]);
    for l in libs {
        words.extend(["--lib".into(), abs(l)]);
    }
    // How this run reached etcd (never the password: it comes from the environment).
    let e = &args.state.etcd;
    for (flag, file) in [
        ("--etcd-ca", &e.etcd_ca),
        ("--etcd-cert", &e.etcd_cert),
        ("--etcd-key", &e.etcd_key),
        ("--etcd-password-file", &e.etcd_password_file),
    ] {
        if let Some(f) = file {
            words.extend([flag.into(), abs(f)]);
        }
    }
    if let Some(u) = &e.etcd_user {
        words.extend(["--etcd-user".into(), u.clone()]);
    }
    if fleetbook_engine::store::is_etcd(state) {
        words.extend(["--etcd-ttl".into(), e.etcd_ttl.clone()]);
    }
    let ssh = &args.ssh;
    if let Some(c) = &ssh.ssh_config {
        words.extend(["--ssh-config".into(), abs(c)]);
    }
    if ssh.accept_new_host_keys {
        words.push("--accept-new-host-keys".into());
    }
    words.extend([
        "--connect-timeout".into(),
        ssh.connect_timeout().to_string(),
    ]);
    words.extend(["--max-per-host".into(), ssh.max_per_host().to_string()]);
    if let Some(kex) = &ssh.ssh_kex {
        words.extend(["--ssh-kex".into(), kex.clone()]);
    }
    if args.events == Some(EventsFormat::Jsonl) {
        words.extend(["--events".into(), "jsonl".into()]);
    }
    if args.yes {
        words.push("--yes".into());
    }
    words
        .iter()
        .map(|w| shell_word(w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A word as a shell reads it: bare when it holds no special character, else quoted.
pub fn shell_word(w: &str) -> String {
    if fleetbook_stdlib::quote::is_plain(w) {
        w.to_string()
    } else {
        fleetbook_stdlib::quote::quote(w)
    }
}

/// What a run needs besides the plan and the journal.
pub struct Invocation<'a> {
    pub args: &'a RunArgs,
    /// `--lib` directories, for the resume hint.
    pub libs: &'a [PathBuf],
}

pub fn drive(
    planned: Planned,
    journal: Arc<dyn RunStore>,
    start: Start,
    inv: Invocation,
) -> Result<i32> {
    let args = inv.args;
    let p = &planned.plan;
    for w in &p.warnings {
        eprintln!("{}", crate::board::fit(&format!("warning: {w}")));
    }
    if let Start::New = start {
        session::check_approvals(p, &args.approve)?;
    }
    match &start {
        Start::Rollback { order, .. } => {
            eprintln!("{}", crate::board::fit(&rollback_summary(&planned, order)))
        }
        _ => eprintln!(
            "{}",
            crate::board::fit(&fleetbook_engine::render::summary(p))
        ),
    }
    let question = match &start {
        Start::New => "Run it?".to_string(),
        Start::Resume { run, done, .. } => format!(
            "Resume run {} ({} of {} tasks already done)?",
            run.id,
            done.iter().filter(|d| **d).count(),
            done.len()
        ),
        Start::Join { run, done, .. } => format!(
            "Join run {} ({} of {} tasks already done) as a further controller?",
            run.id,
            done.iter().filter(|d| **d).count(),
            done.len()
        ),
        Start::Rollback { run, order, .. } => format!(
            "Roll back run {}: undo {} step(s), newest first?",
            run.id,
            order.len()
        ),
    };
    if !confirm(args, &question)? {
        eprintln!("not run");
        return Ok(exit::ABORTED);
    }
    let transport = transport(&args.ssh)?;
    let mut undo_only = None;
    let mut unknown = (false, false);
    let mut joined = false;
    let state_dir = args.state.resolve();
    let (run_id, started_at, done, pre_approved) = match start {
        Start::New => {
            let id = journal::new_run_id();
            let started_at = journal::now();
            let record = RunRecord {
                id: id.clone(),
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
                started_at,
                ended_at: None,
                state: RunState::Running,
                reason: None,
                lib_digest: Some(session::lib_digest(&planned)),
                secret_digests: session::secret_digests(&planned, &id),
                pre_approved: args.approve.clone(),
            };
            if let Err(e) = journal.lock(&fleet_key(&p.inventory), &id) {
                return Err(stale_lock_hint(
                    e,
                    &*journal,
                    &p.inventory,
                    &state_dir,
                    &inv,
                ));
            }
            let created = journal
                .create_run(&record, &session::host_rows(p), &session::task_rows(p))
                .and_then(|_| save_plan(&*journal, &id, p));
            if let Err(e) = created {
                let _ = journal.unlock(&fleet_key(&p.inventory), &id);
                return Err(e);
            }
            (id, started_at, Vec::new(), record.pre_approved)
        }
        Start::Resume {
            run,
            done,
            unknown: u,
        } => {
            journal.lock(&fleet_key(&p.inventory), &run.id)?;
            save_plan(&*journal, &run.id, p)?;
            journal.set_state(&run.id, RunState::Running, None, false)?;
            unknown = u;
            (run.id, journal::now(), done, run.pre_approved)
        }
        Start::Join {
            run,
            done,
            unknown: u,
        } => {
            journal.join(&run.id)?;
            unknown = u;
            joined = true;
            (run.id, journal::now(), done, run.pre_approved)
        }
        Start::Rollback { run, order, done } => {
            journal.lock(&fleet_key(&p.inventory), &run.id)?;
            // Not `running`: a rollback that dies leaves a run that must not be resumed.
            journal.set_state(&run.id, RunState::RollingBack, None, false)?;
            undo_only = Some(order);
            (run.id, journal::now(), done, run.pre_approved)
        }
    };
    eprintln!(
        "{}",
        crate::board::fit(&format!("run {run_id} (journal {})", journal.location()))
    );
    // The lock is already taken above; the guard watches it (and releases it at the end).
    // A joined controller holds no lock of its own: only its lease can be lost.
    let guard = if joined {
        FleetLock::joined(journal.clone(), &fleet_key(&p.inventory), &run_id)
    } else {
        FleetLock::watch(journal.clone(), &fleet_key(&p.inventory), &run_id)
    };
    // Hosts are admitted fleet-wide when the store is shared; a rollback undoes this
    // controller's own choice of hosts.
    let ledger: Arc<dyn SlotLedger> = if undo_only.is_some() {
        Arc::new(LocalLedger)
    } else {
        journal.clone().ledger(&run_id, unknown.0, unknown.1)
    };
    // Whatever the state directory, no other run acts on a host this run acts on.
    transport.ssh.lease_hosts(&run_id);
    // On resume, what the hosts learned before (e.g. the versions to roll back to).
    let facts = journal.facts(&run_id)?;
    let (outcome, events_failed, spans) = execute(
        &planned,
        (&journal, &guard),
        (&run_id, started_at),
        (done, facts, &pre_approved),
        (args, undo_only),
        (transport, ledger),
    );
    let (mut outcome, events_failed) = (outcome, events_failed);
    let saved = journal.set_state(
        &run_id,
        RunState::from(outcome.status),
        outcome.reason.as_deref(),
        true,
    );
    drop(guard);
    if let Err(err) = saved {
        // The run's end could not be recorded (a full disk, say): the journal still says the
        // run is running, which a resume takes as interrupted. Say so, with the store's status.
        eprintln!("error: the journal could not record the end of the run: {err}");
        if outcome.status != RunStatus::StoreFailed {
            outcome.status = RunStatus::StoreFailed;
            outcome.reason = Some(format!("the journal could not be written ({err})"));
        }
    }
    let width = std::io::stderr()
        .is_terminal()
        .then(|| crate::progress::terminal_size().0.saturating_sub(1));
    eprint!("{}", recap(&outcome, p, &spans, width));
    if outcome.status == RunStatus::RollbackFailed {
        eprintln!(
            "status: fleetbook status {run_id} --state {0}\ncontinue the rollback: fleetbook rollback {run_id} --state {0}",
            shell_word(&state_dir.display().to_string())
        );
    } else if !matches!(outcome.status, RunStatus::Succeeded | RunStatus::RolledBack) {
        let hint = resume_hint(&run_id, &state_dir, args, inv.libs);
        eprintln!(
            "status: fleetbook status {run_id} --state {}\ncontinue: {hint}",
            shell_word(&state_dir.display().to_string())
        );
        let secrets: Vec<String> = planned
            .script
            .params
            .iter()
            .filter(|p| p.secret)
            .map(|p| p.name.clone())
            .collect();
        if !secrets.is_empty() {
            eprintln!(
                "  (add the secret parameter{} again: {})",
                if secrets.len() == 1 { "" } else { "s" },
                secrets
                    .iter()
                    .map(|k| format!("--param {k}=..."))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
    }
    if let Some(err) = events_failed {
        return Err(exit::stdout_error(&std::io::Error::other(format!(
            "the event stream broke ({err}); the run was stopped"
        ))));
    }
    Ok(match outcome.status {
        RunStatus::Succeeded | RunStatus::RolledBack => exit::OK,
        RunStatus::SucceededWithFailures => exit::FAILURES,
        RunStatus::Halted | RunStatus::RollbackFailed => exit::HALTED,
        RunStatus::StoreFailed => exit::STORE,
        RunStatus::Aborted => exit::ABORTED,
    })
}

/// What `fleetbook rollback` will undo, newest first, before it asks.
fn rollback_summary(planned: &Planned, order: &[usize]) -> String {
    let g = &planned.graph;
    let mut lines = vec![format!(
        "rollback of runbook {}: {} undo step(s), newest first",
        planned.plan.runbook.name,
        order.len()
    )];
    for &t in order {
        let task = &g.tasks[t];
        let host = task.host.map(|h| g.hosts[h].name.as_str()).unwrap_or("");
        let step = task
            .step
            .map(|s| {
                planned
                    .secrets
                    .redacted(&planned.script.runbook.steps[s].name)
            })
            .unwrap_or_default();
        lines.push(format!("  {host}: undo {step}"));
    }
    lines.join("\n")
}

/// A new run that finds the lock of a crashed run is told how to continue that run, not
/// only how to break its lock.
fn stale_lock_hint(
    err: Error,
    journal: &dyn RunStore,
    inventory: &str,
    state: &std::path::Path,
    inv: &Invocation,
) -> Error {
    let Error::Locked { message, .. } = &err else {
        return err;
    };
    let key = fleet_key(inventory);
    let stale = journal
        .locks()
        .unwrap_or_default()
        .into_iter()
        .find(|l| l.fleet == key && l.is_stale());
    match stale {
        Some(l) => {
            // On a line of its own, so that it can be pasted whole.
            eprintln!(
                "continue: {}",
                resume_hint(&l.run_id, state, inv.args, inv.libs)
            );
            Error::Locked {
                message: message.clone(),
                help: format!(
                    "that process is gone: continue run {} with the `continue:` command above, or break the lock with `fleetbook unlock --state {}`",
                    l.run_id,
                    shell_word(&state.display().to_string())
                ),
            }
        }
        None => err,
    }
}

/// The plan goes with the run into the store, so that reports and `fleetbook watch` can draw
/// it without the runbook or its secrets (plans are redacted).
fn save_plan(journal: &dyn RunStore, run: &str, p: &plan::Plan) -> Result<()> {
    let json = serde_json::to_string(p).map_err(|e| Error::Internal(e.to_string()))?;
    journal.save_plan(run, &json)
}

/// (host, name, value) learned in an earlier attempt of a run.
type Facts = Vec<(String, String, String)>;

fn execute(
    planned: &Planned,
    (journal, lock): (&Arc<dyn RunStore>, &FleetLock),
    (run_id, started_at): (&str, f64),
    (done, facts, pre_approved): (Vec<bool>, Facts, &[String]),
    (args, undo_only): (&RunArgs, Option<Vec<usize>>),
    (transport, ledger): (Arc<Router>, Arc<dyn SlotLedger>),
) -> (
    exec::RunOutcome,
    Option<String>,
    std::collections::HashMap<String, (f64, f64)>,
) {
    let p = &planned.plan;
    let control = Arc::new(Control::default());
    install_ctrl_c(control.clone());
    // Each command's exit status, time and output tail go to the store; the whole output to
    // a file per host under the state directory.
    let recording = Arc::new(Recording::new(
        transport,
        journal.clone(),
        run_id,
        planned.secrets.clone(),
        Some(args.state.resolve().join("output").join(run_id)),
    ));
    let progress = Progress::new(
        p,
        run_id,
        std::io::stderr().is_terminal(),
        args.events == Some(EventsFormat::Jsonl),
    );
    // Events and facts come out of the engine redacted (engine::secrets).
    let journal_failed: Arc<Mutex<Option<String>>> = Arc::default();
    // Transitions the journal could not keep: their tasks' outcome is unknown to a resume.
    let unrecorded: Mutex<Vec<String>> = Mutex::default();
    let on_event = |e: &Event| {
        recording.event(e);
        // Queued: committed once per tick, and before the task's first command is sent.
        if let Err(err) = journal.record_queued(run_id, e, started_at) {
            // Without a journal the run cannot be resumed: stop starting work.
            control.unrecorded.store(true, Ordering::SeqCst);
            control.stop.store(true, Ordering::SeqCst);
            *journal_failed.lock().unwrap_or_else(|x| x.into_inner()) = Some(err.to_string());
            let mut u = unrecorded.lock().unwrap_or_else(|x| x.into_inner());
            if !u.contains(&e.task) {
                u.push(e.task.clone());
            }
        }
        progress.event(e);
        if progress.events_failed().is_some() {
            control.stop.store(true, Ordering::SeqCst);
        }
    };
    // Called from inside a step as `set_fact` runs: the fact is on disk when it returns.
    let on_fact: fleetbook_stdlib::host::FactSink = {
        let (journal, control, failed) = (journal.clone(), control.clone(), journal_failed.clone());
        let run_id = run_id.to_string();
        Arc::new(move |host: &str, name: &str, value: &str| {
            if let Err(err) = journal.record_fact(&run_id, host, name, value) {
                control.unrecorded.store(true, Ordering::SeqCst);
                control.stop.store(true, Ordering::SeqCst);
                *failed.lock().unwrap_or_else(|x| x.into_inner()) = Some(err.to_string());
            }
        })
    };
    let approve = |name: &str| -> bool {
        if pre_approved.iter().any(|a| a == name) {
            return true;
        }
        progress.say(&format!(
            "run {run_id} waits for approval {name:?}: fleetbook approve {run_id} --gate {name}"
        ));
        progress.waiting(Some(format!(
            "waiting for approval {name:?}: fleetbook approve {run_id} --gate {name}"
        )));
        let approved = loop {
            if control.stop.load(Ordering::SeqCst) {
                break false;
            }
            match journal.approved(run_id, name) {
                Ok(true) => break true,
                Ok(false) => std::thread::sleep(Duration::from_millis(300)),
                Err(_) => break false,
            }
        };
        progress.waiting(None);
        approved
    };
    // `fleetbook abort` from another terminal reaches the run through the journal; a lock
    // broken meanwhile (`fleetbook unlock`) stops the run within one poll.
    let finished = AtomicBool::new(false);
    let lock_lost = AtomicBool::new(false);
    let outcome = std::thread::scope(|scope| {
        // A lease is judged locally and at once, not behind a store request that may wait
        // for an unreachable cluster: past its TTL no new task starts.
        let lease_watch = scope.spawn(|| {
            while !finished.load(Ordering::SeqCst) {
                if journal.lease_lost() && !lock_lost.swap(true, Ordering::SeqCst) {
                    control.unrecorded.store(true, Ordering::SeqCst);
                    control.stop.store(true, Ordering::SeqCst);
                    eprintln!("error: the fleet lock was lost: this controller could not renew its etcd lease within its TTL; no new task starts");
                }
                // Woken at once when the run ends, as the poller.
                std::thread::park_timeout(Duration::from_millis(50));
            }
        });
        let poller = scope.spawn(|| {
            while !finished.load(Ordering::SeqCst) {
                if lock.lost() && !lock_lost.swap(true, Ordering::SeqCst) {
                    control.stop.store(true, Ordering::SeqCst);
                    progress.say(
                        "error: the fleet lock was taken away from this run: no new task starts",
                    );
                }
                if let Ok((stop, now)) = journal.abort_requested(run_id) {
                    if stop && !control.stop.swap(true, Ordering::SeqCst) {
                        progress.say("abort requested: no new host starts");
                    }
                    if now {
                        control.kill.store(true, Ordering::SeqCst);
                    }
                }
                // Woken at once when the run ends: the command exits without waiting a poll.
                std::thread::park_timeout(Duration::from_millis(250));
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
        exec::execute(
            planned,
            ExecOptions {
                transport: recording.clone(),
                control: control.clone(),
                on_event: &on_event,
                approve: &approve,
                done,
                facts,
                on_fact,
                undo_only,
                run_id: run_id.to_string(),
                ledger,
            },
        )
    });
    let spans = progress.finish();
    let mut outcome = outcome;
    let journal_failed = journal_failed
        .lock()
        .unwrap_or_else(|x| x.into_inner())
        .clone();
    let mut unknown = unrecorded.into_inner().unwrap_or_else(|x| x.into_inner());
    // Ends queued and then lost by a commit that failed.
    for t in journal.unrecorded() {
        if !unknown.contains(&t) {
            unknown.push(t);
        }
    }
    let left = if unknown.is_empty() {
        String::new()
    } else {
        format!(
            "; tasks whose outcome the journal lacks: {}",
            unknown.join(", ")
        )
    };
    if journal.lease_lost() {
        // Said first: the journal errors that follow are its consequence.
        outcome.status = RunStatus::StoreFailed;
        outcome.reason = Some(format!(
            "the fleet lock was lost: this controller could not renew its etcd lease within its TTL (etcd unreachable, or this process paused); no task started after that{left}"
        ));
    } else if let Some(err) = journal_failed {
        eprintln!("error: the journal could not be written, the run was stopped: {err}");
        outcome.status = RunStatus::StoreFailed;
        outcome.reason = Some(format!(
            "the journal could not be written ({err}): no task started after that{left}"
        ));
    } else if lock_lost.load(Ordering::SeqCst) {
        outcome.status = RunStatus::StoreFailed;
        outcome.reason = Some(format!(
            "the fleet lock was taken away (`fleetbook unlock`?): no task started after that, the tasks in flight finished{left}"
        ));
    }
    let events_failed = progress.events_failed();
    if let Some(err) = &events_failed {
        outcome.status = RunStatus::Aborted;
        outcome.reason = Some(format!("the event stream on standard output broke: {err}"));
    }
    (outcome, events_failed, spans)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hint_words_are_bare_only_when_a_shell_reads_them_unchanged() {
        assert_eq!(shell_word("--state"), "--state");
        assert_eq!(shell_word("/srv/fleet/.fleetbook"), "/srv/fleet/.fleetbook");
        for w in ["a b", "it's", "$(id)", "x;y", "", "*"] {
            let q = shell_word(w);
            assert_ne!(q, w, "{w:?} must be quoted");
            let back = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {q}"))
                .output()
                .unwrap()
                .stdout;
            assert_eq!(String::from_utf8(back).unwrap(), w);
        }
    }
}
