//! Steering a recorded run from another terminal or the live page: abort requests,
//! approvals, and breaking the lock a dead run left. Each checks the run's state first, so
//! a request the run cannot act on is refused with why.

use crate::error::{Error, Result};
use crate::journal::LockInfo;
use crate::store::{RunState, RunStore};

/// `fleetbook abort`, and the live page's Abort button: refused unless the run runs.
pub fn request_abort(store: &dyn RunStore, id: &str, now: bool) -> Result<()> {
    let run = store.run(Some(id))?;
    if run.state != RunState::Running {
        return Err(Error::input(format!(
            "run {id} is not running (it is {})",
            run.state
        )));
    }
    tracing::info!(run = %id, kill = now, "abort requested");
    Ok(store.request_abort(id, now)?)
}

/// `fleetbook approve`, and the live page's Approve button: the approval named (or the one
/// the run waits for) is recorded with the user; which one it was.
pub fn give_approval(store: &dyn RunStore, id: &str, gate: Option<&str>) -> Result<String> {
    let run = store.run(Some(id))?;
    let tasks = store.tasks(id)?;
    let mut gates: Vec<String> = tasks
        .iter()
        .filter(|t| t.kind == "approval")
        .filter_map(|t| t.step.clone())
        .collect();
    gates.sort();
    gates.dedup();
    let listed = || match gates.is_empty() {
        true => format!("run {id} has no approvals"),
        false => format!("run {id}'s approvals are: {}", gates.join(", ")),
    };
    if matches!(
        run.state,
        RunState::Succeeded | RunState::SucceededWithFailures
    ) {
        return Err(Error::input_with_help(
            format!(
                "run {id} has finished ({}): there is nothing left to approve",
                run.state
            ),
            listed(),
        ));
    }
    let gate = match gate {
        Some(g) if gates.iter().any(|x| x == g) => g.to_string(),
        Some(g) => {
            return Err(Error::input_with_help(
                format!("run {id} has no approval {g:?}"),
                listed(),
            ))
        }
        None => {
            let waiting: Vec<String> = tasks
                .into_iter()
                .filter(|t| t.state == crate::store::TaskState::WaitingApproval)
                .filter_map(|t| t.step)
                .collect();
            waiting_gate(id, waiting, listed)?
        }
    };
    tracing::info!(run = %id, gate = %gate, "approval given");
    store.approve(&run.id, &gate)?;
    Ok(gate)
}

/// The one approval the run waits for, when none is named.
fn waiting_gate(id: &str, waiting: Vec<String>, listed: impl Fn() -> String) -> Result<String> {
    match waiting.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(Error::input_with_help(
            format!("run {id} waits for no approval now; name one with --gate"),
            listed(),
        )),
        _ => Err(Error::input(format!(
            "run {id} waits for several approvals ({}); name one with --gate",
            waiting.join(", ")
        ))),
    }
}

/// The stale lock (its process gone) a run of `inventory` would take, if any: a new run
/// that finds one is told how to continue that run, not only how to break its lock.
pub fn stale_lock(store: &dyn RunStore, inventory: &str) -> Option<LockInfo> {
    let key = super::fleet_key(inventory);
    store
        .locks()
        .unwrap_or_default()
        .into_iter()
        .find(|l| l.fleet == key && l.is_stale())
}

/// `fleetbook unlock`: each stale lock that `confirm` agrees to is broken, then `broken` is
/// told. A lock whose run is alive is refused: that run is stopped with `abort`. Gives how
/// many locks were held.
pub fn break_stale_locks(
    store: &dyn RunStore,
    confirm: &mut dyn FnMut(&LockInfo) -> Result<bool>,
    broken: &mut dyn FnMut(&LockInfo),
) -> Result<usize> {
    let locks = store.locks()?;
    let held = locks.len();
    for l in locks {
        if !l.is_stale() {
            return Err(Error::Locked {
                message: format!("the fleet is locked by {}", l.describe()),
                help: "that run is alive: stop it with `fleetbook abort`, not unlock".into(),
            });
        }
        if !confirm(&l)? {
            continue;
        }
        tracing::info!(fleet = %l.fleet, run = %l.run_id, "stale lock broken");
        store.break_lock(&l.fleet)?;
        broken(&l);
    }
    Ok(held)
}
