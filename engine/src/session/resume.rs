//! A recorded run taken up again: `resume` (the done set skipped, `--replan` to take new
//! inputs), `run --join` (a further controller on a running run) and `rollback` (the undo
//! of what the run changed). Each plans the run again from its own runbook, inventory and
//! parameters, refuses what differs, and gives the [`Start`] a [`super::Session`] begins
//! with.

use super::{Start, Unknown};
use crate::error::{Error, Result};
use crate::journal::RunRecord;
use crate::libs::Libraries;
use crate::plan::{self, Planned};
use crate::store::{RunState, RunStore};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// What the operator gives now to plan a recorded run again.
pub struct Inputs<'a> {
    /// Parameters given again (secret ones must be).
    pub params: &'a [(String, String)],
    /// `--lib` directories.
    pub lib_dirs: &'a [PathBuf],
    /// The project's dependencies, checked against its lock.
    pub libs: &'a Libraries,
    /// `--approve`: approvals given now.
    pub approve: &'a [String],
}

/// A run planned again, and how its session starts.
pub struct Prepared {
    pub planned: Planned,
    pub start: Start,
}

/// How `fleetbook resume` treats what it finds.
#[derive(Debug, Clone, Copy, Default)]
pub struct ResumeOptions {
    /// `--retry-unknown`: run again a task a crash left running.
    pub retry_unknown: bool,
    /// `--skip-unknown`: take such a task as done.
    pub skip_unknown: bool,
    /// `--replan`: continue with inputs that differ from the recorded ones.
    pub replan: bool,
    /// The store is shared (etcd): a run still running is joined, not refused.
    pub shared: bool,
}

/// A recorded run planned again from its runbook, inventory and parameters (secret ones
/// given again): the plan, approvals given now that the run had not, and what differs.
fn plan_again(run: &RunRecord, inputs: &Inputs) -> Result<(Planned, Vec<String>, Vec<String>)> {
    let mut changed = Vec::new();
    let params = super::params(run, inputs.params, &mut changed)?;
    let planned = plan::plan(&plan::PlanRequest {
        runbook: Path::new(&run.runbook_path),
        inventory: Path::new(&run.inventory_path),
        params: &params,
        limit: run.limit_pattern.as_deref(),
        lib_dirs: inputs.lib_dirs,
        libs: inputs.libs,
        vault: None,
    })?;
    let new_approvals = super::changes(run, &planned, inputs.approve, &mut changed)?;
    Ok((planned, new_approvals, changed))
}

/// A recorded run, for `resume` and `rollback`: refused while it runs.
fn stopped_run(store: &dyn RunStore, id: &str) -> Result<RunRecord> {
    let run = store.run(Some(id))?;
    if run.state == RunState::Running {
        return Err(Error::input(format!(
            "run {} is still running (pid {} on {})",
            run.id, run.pid, run.controller
        )));
    }
    Ok(run)
}

/// A further controller on a run that is running: it takes the hosts no controller holds.
/// `unknown`: (--retry-unknown, --skip-unknown) for hosts a dead controller left.
pub fn join(
    store: &dyn RunStore,
    id: &str,
    inputs: &Inputs,
    unknown: (bool, bool),
) -> Result<Prepared> {
    let run = store.run(Some(id))?;
    if run.state != RunState::Running {
        return Err(Error::input_with_help(
            format!(
                "run {} is not running ({}): there is no controller to join",
                run.id, run.state
            ),
            format!("`fleetbook resume {}` continues it", run.id),
        ));
    }
    let (planned, _, changed) = plan_again(&run, inputs)?;
    if !changed.is_empty() {
        return Err(Error::input_with_help(
            format!(
                "refusing to join run {} with other inputs than it runs with:\n  {}",
                run.id,
                changed.join("\n  ")
            ),
            "every controller of a run runs the same runbook, inventory and parameters",
        ));
    }
    crate::slots::check_joinable(&run.id, &planned.graph)?;
    // Tasks running now are other controllers'; the ledger keeps their hosts theirs.
    let done = super::done_tasks(&run, store.tasks(&run.id)?, &planned, true, false)?;
    let run = Box::new(run);
    Ok(Prepared {
        planned,
        start: Start::Join { run, done, unknown },
    })
}

/// `fleetbook resume RUN`: the run planned again, the tasks it finished skipped. `say`
/// tells the operator what a `--replan` changes before it is recorded.
pub fn resume(
    store: &dyn RunStore,
    id: &str,
    inputs: &Inputs,
    o: ResumeOptions,
    say: &dyn Fn(&str),
) -> Result<Prepared> {
    let unknown = (o.retry_unknown, o.skip_unknown);
    if o.shared && store.run(Some(id))?.state == RunState::Running {
        // Another controller still drives it: this one joins.
        return join(store, id, inputs, unknown);
    }
    let mut run = stopped_run(store, id)?;
    resumable(&run)?;
    let (planned, new_approvals, changed) = plan_again(&run, inputs)?;
    if !changed.is_empty() {
        if !o.replan {
            return Err(Error::input_with_help(
                format!(
                    "refusing to resume run {} with other inputs than it started with:\n  {}",
                    run.id,
                    changed.join("\n  ")
                ),
                "a resumed run keeps its parameters, secrets, approvals, runbook, inventory and modules; resume with --replan to continue with the new ones (tasks done stay done), or drop the options that differ",
            ));
        }
        say(&format!(
            "replanning run {}:\n  {}",
            run.id,
            changed.join("\n  ")
        ));
        super::replanned(&mut run, &planned, new_approvals);
        store.replan(&run)?;
        store.add_missing_tasks(&run.id, &super::task_rows(&planned.plan))?;
    }
    let rows = store.tasks(&run.id)?;
    let done = super::done_tasks(&run, rows, &planned, o.retry_unknown, o.skip_unknown)?;
    let run = Box::new(run);
    Ok(Prepared {
        planned,
        start: Start::Resume { run, done, unknown },
    })
}

/// A succeeded or rolled back run has nothing to resume.
fn resumable(run: &RunRecord) -> Result<()> {
    if run.state == RunState::Succeeded {
        return Err(Error::input(format!(
            "run {} succeeded: there is nothing to resume",
            run.id
        )));
    }
    if run.state.is_rolled_back() {
        return Err(Error::input_with_help(
            format!(
                "run {} was rolled back ({}): there is nothing to resume",
                run.id, run.state
            ),
            "finish the rollback with `fleetbook rollback`, or start a new run to apply the change again",
        ));
    }
    Ok(())
}

/// `fleetbook rollback RUN`: the `undo` of every step the run completed, on the hosts the
/// `limit` pattern selects, newest first — hosts that finished too.
pub fn rollback(
    store: &dyn RunStore,
    id: &str,
    inputs: &Inputs,
    limit: Option<&str>,
    unknown: Unknown,
) -> Result<Prepared> {
    let run = stopped_run(store, id)?;
    let (planned, _, changed) = plan_again(&run, inputs)?;
    if !changed.is_empty() {
        return Err(Error::input_with_help(
            format!(
                "refusing to roll back run {} with other inputs than it ran with:\n  {}",
                run.id,
                changed.join("\n  ")
            ),
            "the undo steps must be those of the runbook that made the changes: restore it (or the inventory, parameters, modules) first",
        ));
    }
    let hosts = limit.map(|p| limited_hosts(&run, p)).transpose()?;
    let rows = store.tasks(&run.id)?;
    let order = super::undo_order(&rows, &planned, hosts.as_ref(), unknown)?;
    // The `finally` steps the run already ran; the others are owed, and run at the end.
    let ok: HashSet<&str> = rows
        .iter()
        .filter(|r| r.state == crate::store::TaskState::Ok)
        .map(|r| r.task_id.as_str())
        .collect();
    let done = planned
        .graph
        .tasks
        .iter()
        .map(|t| ok.contains(t.id.as_str()))
        .collect();
    let run = Box::new(run);
    Ok(Prepared {
        planned,
        start: Start::Rollback { run, order, done },
    })
}

/// The hosts of the run's inventory that `pattern` selects; none is an error.
fn limited_hosts(run: &RunRecord, pattern: &str) -> Result<HashSet<String>> {
    let path = Path::new(&run.inventory_path);
    let text = crate::error::read_file(path)?;
    let inv = crate::inventory::Inventory::parse(
        &path.display().to_string(),
        &text,
        crate::inventory::Format::of(path),
    )?;
    Ok(crate::inventory::pattern::select(&inv, pattern)?
        .into_iter()
        .collect())
}
