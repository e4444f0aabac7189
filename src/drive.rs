//! Driving a run from the terminal: the summary and confirmation, the transport from the
//! ssh options, Ctrl-C, the live display, the recap and the command that continues the run.
//! The session itself (lock, store, abort and approval requests) is the engine's
//! (`fleetbook_engine::session`). `run`, `apply`, `resume` and `rollback` all end here.

use crate::cli::{shell_word, EventsFormat, RunArgs};
use crate::exit;
use fleetbook_engine::exec::Control;
use fleetbook_engine::plan::Planned;
use fleetbook_engine::session::{self, RunConfig, Session, Start};
use fleetbook_engine::store::RunStore;
use fleetbook_engine::transport::Router;
use fleetbook_engine::{Error, Result};
use fleetbook_views::board::fit;
use fleetbook_views::progress::{self, Progress};
use fleetbook_views::recap::recap;
use fleetbook_views::summary;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Ctrl-C once asks to stop starting work; twice asks to kill what runs.
pub fn install_ctrl_c(control: Arc<Control>) {
    let presses = AtomicUsize::new(0);
    let _ = ctrlc::set_handler(move || {
        let n = presses.fetch_add(1, Ordering::SeqCst) + 1;
        if n == 1 {
            control.stop.store(true, Ordering::SeqCst);
            // A stopped command leaves no connection behind, whatever --persist says.
            fleetbook_engine::transport::persist::keep_none();
            progress::suspend(|| {
                eprintln!("\nstopping: no new host starts; steps in flight finish (Ctrl-C again to kill them)")
            });
        } else {
            control.kill.store(true, Ordering::SeqCst);
            progress::suspend(|| eprintln!("\nkilling the steps in flight"));
        }
    });
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

/// Runs a plan: the summary and the question, the session in the engine with the live
/// display, the recap and how to go on; gives the exit status.
pub fn drive(
    planned: Planned,
    store: Arc<dyn RunStore>,
    start: Start,
    args: &RunArgs,
    lib_dirs: &[PathBuf],
) -> Result<i32> {
    let p = &planned.plan;
    for w in &p.warnings {
        eprintln!("{}", fit(&format!("warning: {w}")));
    }
    if let Start::New = start {
        session::check_approvals(p, &args.approve)?;
    }
    let summary = summary::before(&planned, &start);
    eprintln!("{}", fit(&summary));
    if !confirm(args, &summary::question(&start))? {
        eprintln!("not run");
        return Ok(exit::ABORTED);
    }
    let transport = Router::new(args.ssh.options()?)?;
    let state_dir = args.state.resolve();
    let output_dir = args.state.output_dir();
    let config = RunConfig {
        approve: &args.approve,
        output_dir: &output_dir,
    };
    let new = matches!(start, Start::New);
    let run = Session::begin(&planned, store.clone(), start, &config).map_err(|e| match new {
        true => stale_lock_hint(e, &*store, &p.inventory, &state_dir, (args, lib_dirs)),
        false => e,
    })?;
    let run_id = run.run_id().to_string();
    eprintln!(
        "{}",
        fit(&format!("run {run_id} (journal {})", store.location()))
    );
    let control = Arc::new(Control::default());
    install_ctrl_c(control.clone());
    let progress = Progress::new(
        p,
        &run_id,
        std::io::stderr().is_terminal(),
        args.events == Some(EventsFormat::Jsonl),
    );
    let outcome = match run.execute(&planned, transport, control, &progress) {
        Ok(finished) => finished.outcome,
        Err(e) => {
            // The run could not start (its facts unreadable): no display is left behind.
            progress.finish();
            return Err(e);
        }
    };
    let width = std::io::stderr()
        .is_terminal()
        .then(|| progress::terminal_size().0.saturating_sub(1));
    eprint!("{}", recap(&outcome, p, &progress.spans(), width));
    let state_word = shell_word(&state_dir.display().to_string());
    let resume = args.resume_command(&run_id, &state_dir, lib_dirs);
    if let Some(text) = summary::next_steps(&planned, outcome.status, &run_id, &state_word, &resume)
    {
        eprintln!("{text}");
    }
    if let Some(err) = progress.events_failed() {
        return Err(exit::stdout_error(&std::io::Error::other(format!(
            "the event stream broke ({err}); the run was stopped"
        ))));
    }
    Ok(exit::of_run(outcome.status))
}

/// A new run that finds the lock of a crashed run is told how to continue that run, not
/// only how to break its lock.
fn stale_lock_hint(
    err: Error,
    store: &dyn RunStore,
    inventory: &str,
    state: &std::path::Path,
    (args, lib_dirs): (&RunArgs, &[PathBuf]),
) -> Error {
    let Error::Locked { message, .. } = &err else {
        return err;
    };
    let Some(l) = session::stale_lock(store, inventory) else {
        return err;
    };
    // On a line of its own, so that it can be pasted whole.
    let resume = args.resume_command(&l.run_id, state, lib_dirs);
    eprintln!("continue: {resume}");
    let state_word = shell_word(&state.display().to_string());
    let help = summary::stale_lock(&l.run_id, &state_word);
    Error::Locked {
        message: message.clone(),
        help,
    }
}
