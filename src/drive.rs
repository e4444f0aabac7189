//! Driving a run from the terminal: the summary and confirmation, the transport from the
//! ssh options, Ctrl-C, the live display, the recap and the command that continues the run.
//! The session itself (lock, store, abort and approval requests) is the engine's
//! (`fleetbook_engine::session`). `run`, `apply`, `resume` and `rollback` all end here.

use crate::cli::{EventsFormat, RunArgs, SshArgs};
use crate::exit;
use fleetbook_engine::exec::{Control, RunOutcome, RunStatus};
use fleetbook_engine::plan::Planned;
use fleetbook_engine::session::{self, RunConfig, Session, Start};
use fleetbook_engine::store::RunStore;
use fleetbook_engine::transport::{local::Local, ssh, Router};
use fleetbook_engine::{Error, Result};
use fleetbook_stdlib::duration::parse_duration;
use fleetbook_views::board::fit;
use fleetbook_views::progress::{self, Progress};
use fleetbook_views::recap::recap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
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

/// What a run needs besides the plan and the store.
pub struct Invocation<'a> {
    pub args: &'a RunArgs,
    /// `--lib` directories, for the resume hint.
    pub libs: &'a [PathBuf],
}

/// Runs a plan: the summary and the question, the session in the engine with the live
/// display, the recap and how to go on; gives the exit status.
pub fn drive(
    planned: Planned,
    store: Arc<dyn RunStore>,
    start: Start,
    inv: Invocation,
) -> Result<i32> {
    let args = inv.args;
    let p = &planned.plan;
    for w in &p.warnings {
        eprintln!("{}", fit(&format!("warning: {w}")));
    }
    if let Start::New = start {
        session::check_approvals(p, &args.approve)?;
    }
    let summary = match &start {
        Start::Rollback { order, .. } => rollback_summary(&planned, order),
        _ => fleetbook_engine::render::summary(p),
    };
    eprintln!("{}", fit(&summary));
    if !confirm(args, &question(&start))? {
        eprintln!("not run");
        return Ok(exit::ABORTED);
    }
    let transport = transport(&args.ssh)?;
    let state_dir = args.state.resolve();
    let output_dir = args.state.output_dir();
    let config = RunConfig {
        approve: &args.approve,
        output_dir: &output_dir,
    };
    let new = matches!(start, Start::New);
    let run = Session::begin(&planned, store.clone(), start, &config).map_err(|e| match new {
        true => stale_lock_hint(e, &*store, &p.inventory, &state_dir, &inv),
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
    how_to_go_on(&planned, &outcome, &run_id, &state_dir, &inv);
    if let Some(err) = progress.events_failed() {
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

/// What the operator is asked before the run starts.
fn question(start: &Start) -> String {
    let done = |d: &[bool]| d.iter().filter(|d| **d).count();
    match start {
        Start::New => "Run it?".to_string(),
        Start::Resume { run, done: d, .. } => format!(
            "Resume run {} ({} of {} tasks already done)?",
            run.id,
            done(d),
            d.len()
        ),
        Start::Join { run, done: d, .. } => format!(
            "Join run {} ({} of {} tasks already done) as a further controller?",
            run.id,
            done(d),
            d.len()
        ),
        Start::Rollback { run, order, .. } => format!(
            "Roll back run {}: undo {} step(s), newest first?",
            run.id,
            order.len()
        ),
    }
}

/// After a run that did not end well: how to see it and how to continue it.
fn how_to_go_on(
    planned: &Planned,
    outcome: &RunOutcome,
    run_id: &str,
    state_dir: &std::path::Path,
    inv: &Invocation,
) {
    let state = shell_word(&state_dir.display().to_string());
    if outcome.status == RunStatus::RollbackFailed {
        eprintln!(
            "status: fleetbook status {run_id} --state {state}\ncontinue the rollback: fleetbook rollback {run_id} --state {state}",
        );
        return;
    }
    if matches!(outcome.status, RunStatus::Succeeded | RunStatus::RolledBack) {
        return;
    }
    let hint = resume_hint(run_id, state_dir, inv.args, inv.libs);
    eprintln!("status: fleetbook status {run_id} --state {state}\ncontinue: {hint}");
    let secrets: Vec<String> = planned
        .script
        .params
        .iter()
        .filter(|p| p.secret)
        .map(|p| format!("--param {}=...", p.name))
        .collect();
    if !secrets.is_empty() {
        eprintln!(
            "  (add the secret parameter{} again: {})",
            if secrets.len() == 1 { "" } else { "s" },
            secrets.join(" ")
        );
    }
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
    store: &dyn RunStore,
    inventory: &str,
    state: &std::path::Path,
    inv: &Invocation,
) -> Error {
    let Error::Locked { message, .. } = &err else {
        return err;
    };
    let Some(l) = session::stale_lock(store, inventory) else {
        return err;
    };
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
