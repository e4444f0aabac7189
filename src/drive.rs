//! Driving a run: confirmation, the fleet lock, the journal, the live display, abort and
//! approval requests from other terminals, Ctrl-C, and the recap. `run`, `apply` and
//! `resume` all end here.

use crate::cli::{EventsFormat, RunArgs, SshArgs};
use crate::exit;
use crate::progress::{recap, Progress};
use fleetbook_engine::exec::{self, Control, Event, ExecOptions, RunStatus};
use fleetbook_engine::journal::{self, Journal, RunRecord, TaskRow};
use fleetbook_engine::plan::{self, Planned};
use fleetbook_engine::transport::{local::Local, ssh, Router};
use fleetbook_engine::{Error, Result};
use fleetbook_stdlib::duration::parse_duration;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub fn transport(args: &SshArgs) -> Result<Arc<Router>> {
    let connect_timeout = parse_duration(&args.connect_timeout)
        .map_err(|e| Error::input(format!("--connect-timeout: {e}")))?;
    if args.accept_new_host_keys {
        eprintln!("warning: --accept-new-host-keys: unknown host keys are trusted and remembered; a man in the middle would go unnoticed");
    }
    let ssh = ssh::Ssh::new(ssh::SshOptions {
        config_file: args.ssh_config.clone(),
        accept_new_host_keys: args.accept_new_host_keys,
        connect_timeout,
        max_per_host: args.max_per_host,
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
            eprintln!("\nstopping: no new host starts; steps in flight finish (Ctrl-C again to kill them)");
        } else {
            control.kill.store(true, Ordering::SeqCst);
            eprintln!("\nkilling the steps in flight");
        }
    });
}

fn summary(p: &plan::Plan) -> String {
    let roles: Vec<String> = p
        .roles
        .iter()
        .filter(|r| r.hosts > 0)
        .map(|r| {
            format!(
                "{} {}{}",
                r.name,
                r.hosts,
                r.limit.map(|l| format!(" (limit {l})")).unwrap_or_default()
            )
        })
        .collect();
    format!(
        "runbook {} on {} hosts, {} tasks; roles: {}; estimated {}",
        p.runbook.name,
        p.hosts.len(),
        p.tasks.len(),
        roles.join(", "),
        fleetbook_stdlib::duration::format_duration(Duration::from_secs(p.duration))
    )
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

pub fn drive(planned: Planned, journal: Journal, start: Start, args: &RunArgs) -> Result<i32> {
    let p = &planned.plan;
    for w in &p.warnings {
        eprintln!("warning: {w}");
    }
    eprintln!("{}", summary(p));
    let question = match &start {
        Start::New => "Run it?".to_string(),
        Start::Resume { run, done } => format!(
            "Resume run {} ({} of {} tasks already done)?",
            run.id,
            done.iter().filter(|d| **d).count(),
            done.len()
        ),
    };
    if !confirm(args, &question)? {
        eprintln!("not run");
        return Ok(exit::ABORTED);
    }
    let transport = transport(&args.ssh)?;
    let (run_id, started_at, done) = match start {
        Start::New => {
            let id = journal::new_run_id();
            let started_at = journal::now();
            let record = RunRecord {
                id: id.clone(),
                runbook: p.runbook.name.clone(),
                runbook_path: p.runbook.path.clone(),
                runbook_digest: p.runbook_digest.clone(),
                inventory_path: p.inventory.clone(),
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
                state: "running".into(),
                reason: None,
            };
            journal.lock(&fleet_key(&p.inventory), &id)?;
            let created = journal.create_run(&record, &hosts_of(p), &tasks_of(p));
            if let Err(e) = created {
                let _ = journal.unlock(&fleet_key(&p.inventory), &id);
                return Err(e);
            }
            (id, started_at, Vec::new())
        }
        Start::Resume { run, done } => {
            journal.lock(&fleet_key(&p.inventory), &run.id)?;
            journal.set_state(&run.id, "running", None, false)?;
            (run.id, journal::now(), done)
        }
    };
    eprintln!("run {run_id} (journal {})", journal.path.display());
    // Whatever the state directory, no other run acts on a host this run acts on.
    transport.ssh.lease_hosts(&run_id);
    // On resume, what the hosts learned before (e.g. the versions to roll back to).
    let facts = journal.facts(&run_id)?;
    let outcome = execute(
        &planned,
        &journal,
        (&run_id, started_at),
        done,
        facts,
        args,
        transport,
    );
    let state = serde_json::to_value(outcome.status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let saved = journal.set_state(&run_id, &state, outcome.reason.as_deref(), true);
    let _ = journal.unlock(&fleet_key(&p.inventory), &run_id);
    saved?;
    eprint!("{}", recap(&outcome));
    if outcome.status != RunStatus::Succeeded {
        eprintln!(
            "status: fleetbook status {run_id} --state {}; continue: fleetbook resume {run_id}",
            journal
                .path
                .parent()
                .map(|d| d.display().to_string())
                .unwrap_or_default()
        );
    }
    Ok(match outcome.status {
        RunStatus::Succeeded => exit::OK,
        RunStatus::SucceededWithFailures => exit::FAILURES,
        RunStatus::Halted => exit::HALTED,
        RunStatus::Aborted => exit::ABORTED,
    })
}

fn hosts_of(p: &plan::Plan) -> Vec<(String, Vec<String>)> {
    p.hosts
        .iter()
        .map(|h| (h.name.clone(), h.roles.clone()))
        .collect()
}

pub fn tasks_of(p: &plan::Plan) -> Vec<TaskRow> {
    p.tasks
        .iter()
        .map(|t| TaskRow {
            task_id: t.id.clone(),
            kind: serde_json::to_value(t.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            host: t.host.clone(),
            step: t.step.clone(),
            role: t.role.clone(),
            state: "pending".into(),
            attempt: 0,
            started_at: None,
            ended_at: None,
            message: None,
        })
        .collect()
}

fn execute(
    planned: &Planned,
    journal: &Journal,
    (run_id, started_at): (&str, f64),
    done: Vec<bool>,
    facts: Vec<(String, String, String)>,
    args: &RunArgs,
    transport: Arc<Router>,
) -> exec::RunOutcome {
    let p = &planned.plan;
    let control = Arc::new(Control::default());
    install_ctrl_c(control.clone());
    let progress = Progress::new(
        p,
        std::io::stderr().is_terminal(),
        args.events == Some(EventsFormat::Jsonl),
    );
    // Events and facts come out of the engine redacted (engine::secrets).
    let journal_failed: Mutex<Option<String>> = Mutex::new(None);
    let on_event = |e: &Event| {
        if let Err(err) = journal.record(run_id, e, started_at) {
            // Without a journal the run cannot be resumed: stop starting work.
            control.stop.store(true, Ordering::SeqCst);
            *journal_failed.lock().unwrap_or_else(|x| x.into_inner()) = Some(err.to_string());
        }
        progress.event(e);
    };
    let on_fact = |host: &str, name: &str, value: &str| {
        if let Err(err) = journal.record_fact(run_id, host, name, value) {
            control.stop.store(true, Ordering::SeqCst);
            *journal_failed.lock().unwrap_or_else(|x| x.into_inner()) = Some(err.to_string());
        }
    };
    let approve = |name: &str| -> bool {
        if args.approve.iter().any(|a| a == name) {
            return true;
        }
        eprintln!(
            "run {run_id} waits for approval {name:?}: fleetbook approve {run_id} --gate {name}"
        );
        loop {
            if control.stop.load(Ordering::SeqCst) {
                return false;
            }
            match journal.approved(run_id, name) {
                Ok(true) => return true,
                Ok(false) => std::thread::sleep(Duration::from_millis(300)),
                Err(_) => return false,
            }
        }
    };
    // `fleetbook abort` from another terminal reaches the run through the journal.
    let finished = AtomicBool::new(false);
    let outcome = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !finished.load(Ordering::SeqCst) {
                if let Ok((stop, now)) = journal.abort_requested(run_id) {
                    if stop && !control.stop.swap(true, Ordering::SeqCst) {
                        eprintln!("abort requested: no new host starts");
                    }
                    if now {
                        control.kill.store(true, Ordering::SeqCst);
                    }
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        });
        // Set even if the executor panics, so the poller ends and the panic is reported.
        struct Finished<'a>(&'a AtomicBool);
        impl Drop for Finished<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let _finished = Finished(&finished);
        exec::execute(
            planned,
            ExecOptions {
                transport,
                control: control.clone(),
                on_event: &on_event,
                approve: &approve,
                done,
                facts,
                on_fact: &on_fact,
            },
        )
    });
    progress.finish();
    let mut outcome = outcome;
    if let Some(err) = journal_failed
        .into_inner()
        .unwrap_or_else(|x| x.into_inner())
    {
        eprintln!("error: the journal could not be written, the run was stopped: {err}");
        outcome.status = RunStatus::Aborted;
        outcome.reason = Some(format!("journal write failed: {err}"));
    }
    outcome
}
