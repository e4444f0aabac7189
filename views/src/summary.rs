//! What is said around a run: before it, the question asked and what a rollback will undo;
//! after a run that did not end well, how to see it and how to continue it; to a run kept
//! out by a crashed run's lock, how to continue that one.

use fleetbook_engine::exec::RunStatus;
use fleetbook_engine::plan::Planned;
use fleetbook_engine::session::Start;

/// What is shown before the question: the plan's summary, or what a rollback will undo.
pub fn before(planned: &Planned, start: &Start) -> String {
    match start {
        Start::Rollback { order, .. } => rollback(planned, order),
        _ => fleetbook_engine::render::summary(&planned.plan),
    }
}

/// What the operator is asked before the run starts.
pub fn question(start: &Start) -> String {
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

/// What `fleetbook rollback` will undo, newest first, before it asks.
pub fn rollback(planned: &Planned, order: &[usize]) -> String {
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

/// After a run that did not end well: how to see it and how to continue it (`state`: the
/// state directory as a shell word; `resume`: the command that continues the run). `None`
/// after a run that needs nothing more.
pub fn next_steps(
    planned: &Planned,
    status: RunStatus,
    run_id: &str,
    state: &str,
    resume: &str,
) -> Option<String> {
    if status == RunStatus::RollbackFailed {
        return Some(format!(
            "status: fleetbook status {run_id} --state {state}\ncontinue the rollback: fleetbook rollback {run_id} --state {state}",
        ));
    }
    if matches!(status, RunStatus::Succeeded | RunStatus::RolledBack) {
        return None;
    }
    let mut text = format!("status: fleetbook status {run_id} --state {state}\ncontinue: {resume}");
    let secrets: Vec<String> = planned
        .script
        .params
        .iter()
        .filter(|p| p.secret)
        .map(|p| format!("--param {}=...", p.name))
        .collect();
    if !secrets.is_empty() {
        text.push_str(&format!(
            "\n  (add the secret parameter{} again: {})",
            if secrets.len() == 1 { "" } else { "s" },
            secrets.join(" ")
        ));
    }
    Some(text)
}

/// The help of a new run refused by the lock of a run whose process is gone, once the
/// `continue:` line that resumes that run has been printed.
pub fn stale_lock(run_id: &str, state_word: &str) -> String {
    format!("that process is gone: continue run {run_id} with the `continue:` command above, or break the lock with `fleetbook unlock --state {state_word}`")
}
