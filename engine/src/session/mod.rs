//! The run session: lock → create or take up a run → execute → record → finish
//! ([`Session`], `run.rs`, watched by `watch.rs`), what resume, join and rollback start from
//! (`resume.rs`), a saved plan checked before it runs (`apply.rs`) and the requests other
//! terminals make of a run (`control.rs`). This file holds the rules of a run across
//! attempts: what a new run records (digests of modules and secrets), the approvals it may
//! be given, what differs on resume (refused unless `--replan`) and which tasks an earlier
//! attempt finished.

mod apply;
mod control;
mod resume;
mod run;
#[cfg(test)]
mod run_tests;
mod watch;

pub use apply::apply;
pub use control::{break_stale_locks, give_approval, request_abort, stale_lock};
pub use resume::{join, resume, rollback, Inputs, Prepared, ResumeOptions};
pub(crate) use run::fleet_key;
pub use run::{Finished, RunConfig, RunUi, Session, Start};

use crate::compile::TaskKind;
use crate::error::{Error, Result};
use crate::journal::{self, RunRecord, TaskRow};
use crate::plan::{self, Planned};
use crate::store::TaskState;
use std::collections::{BTreeMap, HashMap};

/// How a secret parameter's value appears in recorded parameters.
pub const SECRET: &str = "<secret>";

/// The names of the `.approval(...)` gates of a plan.
pub(crate) fn gates(p: &plan::Plan) -> Vec<String> {
    let mut names: Vec<String> = p
        .tasks
        .iter()
        .filter(|t| t.kind == TaskKind::Approval)
        .filter_map(|t| t.step.as_deref().map(str::to_string))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// `--approve NAME` must name a gate of the plan.
pub fn check_approvals(p: &plan::Plan, approve: &[String]) -> Result<()> {
    let gates = gates(p);
    let unknown: Vec<&str> = approve
        .iter()
        .filter(|a| !gates.contains(a))
        .map(String::as_str)
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    Err(Error::input_with_help(
        format!(
            "--approve {}: the runbook has no such approval",
            unknown.join(", ")
        ),
        if gates.is_empty() {
            "this runbook has no .approval(...) gates".to_string()
        } else {
            format!("its approvals are: {}", gates.join(", "))
        },
    ))
}

/// The digest of every module the runbook imported (not the runbook itself).
pub(crate) fn lib_digest(planned: &Planned) -> String {
    let sources = planned
        .script
        .sources
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let mut all: Vec<(String, std::sync::Arc<str>)> = sources
        .into_iter()
        .filter(|(name, _)| *name != planned.script.name)
        .collect();
    all.sort();
    let mut bytes = Vec::new();
    for (name, text) in all {
        bytes.extend_from_slice(name.as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(text.as_bytes());
        bytes.push(0);
    }
    plan::digest(&bytes)
}

/// Salted digests of the secret parameters' values, for run `id`.
pub(crate) fn secret_digests(planned: &Planned, id: &str) -> BTreeMap<String, String> {
    planned
        .script
        .params
        .iter()
        .filter(|p| p.secret)
        .map(|p| {
            (
                p.name.clone(),
                journal::secret_digest(id, &p.name, &p.value),
            )
        })
        .collect()
}

/// The run's recorded parameters, with the secret ones given again. Any other difference
/// between what is given now and what the run recorded is added to `changed` (values of
/// secrets never shown).
pub(crate) fn params(
    run: &RunRecord,
    given: &[(String, String)],
    changed: &mut Vec<String>,
) -> Result<BTreeMap<String, String>> {
    let given: BTreeMap<String, String> = given.iter().cloned().collect();
    let mut out = run.params.clone();
    for (k, v) in &run.params {
        if v == SECRET && !given.contains_key(k) {
            return Err(Error::input_with_help(
                format!("secret parameter {k} is not recorded: give it again"),
                format!("--param {k}=..."),
            ));
        }
    }
    for (k, v) in given {
        match run.params.get(&k) {
            Some(old) if old == SECRET => {
                let recorded = run.secret_digests.get(&k);
                if recorded.is_some_and(|d| *d != journal::secret_digest(&run.id, &k, &v)) {
                    changed.push(format!("secret parameter {k}: changed (values not shown)"));
                }
            }
            Some(old) if *old != v => changed.push(format!("parameter {k}: {old} -> {v}")),
            Some(_) => {}
            None => changed.push(format!("parameter {k}: (not set) -> {v}")),
        }
        out.insert(k, v);
    }
    Ok(out)
}

fn short(d: &str) -> &str {
    &d[..d.len().min(19)]
}

/// What differs between the run's record and a plan made now (runbook, inventory, modules)
/// and the approvals given now, added to `changed`. Returns the approvals the run did not
/// have.
pub(crate) fn changes(
    run: &RunRecord,
    planned: &Planned,
    approve: &[String],
    changed: &mut Vec<String>,
) -> Result<Vec<String>> {
    let p = &planned.plan;
    if p.runbook_digest != run.runbook_digest {
        changed.push(format!(
            "the runbook {} changed: {} -> {}",
            run.runbook_path,
            short(&run.runbook_digest),
            short(&p.runbook_digest)
        ));
    }
    if p.inventory_digest != run.inventory_digest {
        changed.push(format!(
            "the inventory {} changed: {} -> {}",
            run.inventory_path,
            short(&run.inventory_digest),
            short(&p.inventory_digest)
        ));
    }
    let libs = lib_digest(planned);
    if let Some(old) = run.lib_digest.as_ref().filter(|d| **d != libs) {
        changed.push(format!(
            "the imported modules changed: {} -> {}",
            short(old),
            short(&libs)
        ));
    }
    let new: Vec<String> = approve
        .iter()
        .filter(|g| !run.pre_approved.contains(g))
        .cloned()
        .collect();
    if !new.is_empty() {
        check_approvals(p, approve)?;
        let mut now = run.pre_approved.clone();
        now.extend(new.iter().cloned());
        changed.push(format!(
            "approved in advance: [{}] -> [{}]",
            run.pre_approved.join(", "),
            now.join(", ")
        ));
    }
    Ok(new)
}

/// The run's record after `--replan`: the inputs of `planned`, the approvals added.
pub(crate) fn replanned(run: &mut RunRecord, planned: &Planned, approvals: Vec<String>) {
    let p = &planned.plan;
    run.pre_approved.extend(approvals);
    run.runbook_digest = p.runbook_digest.clone();
    run.inventory_digest = p.inventory_digest.clone();
    run.lib_digest = Some(lib_digest(planned));
    run.params = p
        .params
        .iter()
        .map(|x| (x.name.clone(), x.value.clone()))
        .collect();
    run.secret_digests = secret_digests(planned, &run.id);
}

/// Which tasks an earlier attempt finished. A task left `running` by a crash is unknown: it
/// runs again only if its step is idempotent or `retry` (`--retry-unknown`) says so; `skip`
/// (`--skip-unknown`) takes it as done; otherwise resume stops and names them.
pub(crate) fn done_tasks(
    run: &RunRecord,
    rows: Vec<TaskRow>,
    planned: &Planned,
    retry: bool,
    skip: bool,
) -> Result<Vec<bool>> {
    let rows: HashMap<String, TaskRow> = rows.into_iter().map(|t| (t.task_id.clone(), t)).collect();
    let rb = &planned.script.runbook;
    let mut unknown = Vec::new();
    let done = planned
        .graph
        .tasks
        .iter()
        .map(|t| match rows.get(&*t.id).map(|r| r.state) {
            // `finally` steps run at the end of every attempt, a resumed one too; one a
            // crash cut short is unknown, as any step is.
            Some(s) if t.kind == crate::compile::TaskKind::Finally && !s.is_running() => false,
            None if t.kind == crate::compile::TaskKind::Finally => false,
            Some(s) if s.is_done() => true,
            Some(s) if s.is_running() => {
                let idempotent = t.step.is_some_and(|s| rb.steps[s].idempotent);
                if skip {
                    true
                } else {
                    if !idempotent && !retry {
                        unknown.push(t.id.clone());
                    }
                    false
                }
            }
            _ => false,
        })
        .collect();
    if !unknown.is_empty() {
        return Err(Error::input_with_help(
            format!(
                "run {} stopped while {} task(s) were running, and their steps are not idempotent: {}",
                run.id,
                unknown.len(),
                unknown.join(", ")
            ),
            "check those hosts, then resume with --retry-unknown (run them again) or --skip-unknown (take them as done); steps declared .idempotent(true) are re-run on their own",
        ));
    }
    Ok(done)
}

/// What `fleetbook rollback` does with a step a crash left in an unknown state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unknown {
    /// Stop and name them.
    Refuse,
    /// Undo them too (`--undo-unknown`).
    Undo,
    /// Leave them as they are (`--skip-unknown`).
    Skip,
}

/// `fleetbook rollback`: the run's host steps that have an `undo` and whose change is there
/// — completed, or whose undo failed or was cut short (tried again first) — on `hosts`
/// (all when `None`), newest first by when they ended. Nothing to undo is an error.
pub(crate) fn undo_order(
    rows: &[TaskRow],
    planned: &Planned,
    hosts: Option<&std::collections::HashSet<String>>,
    unknown: Unknown,
) -> Result<Vec<usize>> {
    let g = &planned.graph;
    let rb = &planned.script.runbook;
    let index: HashMap<&str, usize> = g
        .tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (t.id.as_str(), i))
        .collect();
    let in_run = |h: usize| hosts.is_none_or(|set| set.contains(&g.hosts[h].name));
    if let Some(set) = hosts {
        if !g.hosts.iter().any(|h| set.contains(&h.name)) {
            return Err(Error::input(
                "--limit selects none of the run's hosts: nothing to roll back",
            ));
        }
    }
    let undoable = |t: usize| {
        let task = &g.tasks[t];
        task.kind == crate::compile::TaskKind::Host
            && task.host.is_some_and(in_run)
            && task.step.is_some_and(|s| rb.steps[s].undo.is_some())
    };
    let in_flight: Vec<&TaskRow> = rows
        .iter()
        .filter(|r| r.state.is_running())
        .filter(|r| index.get(r.task_id.as_str()).is_some_and(|&t| undoable(t)))
        .collect();
    if !in_flight.is_empty() && unknown == Unknown::Refuse {
        return Err(Error::input_with_help(
            format!(
                "the run stopped while {} step(s) were running, so whether they changed their host is unknown: {}",
                in_flight.len(),
                in_flight
                    .iter()
                    .map(|r| r.task_id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "check those hosts, then roll back with --undo-unknown (undo them too) or --skip-unknown (leave them as they are)",
        ));
    }
    let mut done: Vec<(Option<crate::clock::At>, usize)> = rows
        .iter()
        .filter(|r| match r.state {
            TaskState::Ok | TaskState::UndoFailed | TaskState::RollingBack => true,
            TaskState::Running | TaskState::Retrying => unknown == Unknown::Undo,
            _ => false,
        })
        .filter_map(|r| {
            let at = r.ended_at.or(r.started_at);
            index.get(r.task_id.as_str()).map(|&t| (at, t))
        })
        .filter(|&(_, t)| undoable(t))
        .collect();
    // Newest first; a tie keeps the later step of a host first.
    done.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
    if done.is_empty() {
        return Err(Error::input(
            "nothing to roll back: no completed step with an undo on the selected hosts",
        ));
    }
    Ok(done.into_iter().map(|(_, t)| t).collect())
}

/// The hosts of a plan as a store records them: each with its roles.
pub(crate) fn host_rows(p: &plan::Plan) -> Vec<(String, Vec<String>)> {
    p.hosts
        .iter()
        .map(|h| (h.name.to_string(), h.roles.clone()))
        .collect()
}

/// The tasks of a plan as a store records them before the run: all pending.
pub(crate) fn task_rows(p: &plan::Plan) -> Vec<TaskRow> {
    p.tasks
        .iter()
        .map(|t| TaskRow {
            task_id: t.id.to_string(),
            kind: t.kind.as_str().to_string(),
            host: t.host.as_deref().map(str::to_string),
            step: t.step.as_deref().map(str::to_string),
            role: t.role.as_deref().map(str::to_string),
            state: TaskState::Pending,
            attempt: 0,
            started_at: None,
            ended_at: None,
            message: None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(params: &[(&str, &str)], secrets: &[(&str, &str)]) -> RunRecord {
        RunRecord {
            id: "r1".into(),
            runbook: "t".into(),
            runbook_path: "rb.rhai".into(),
            runbook_digest: "d".into(),
            inventory_path: "hosts".into(),
            inventory_digest: "d".into(),
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            limit_pattern: None,
            user: "u".into(),
            controller: "c".into(),
            pid: 1,
            started_at: crate::clock::At::EPOCH,
            ended_at: None,
            state: crate::store::RunState::Halted,
            reason: None,
            lib_digest: None,
            secret_digests: secrets
                .iter()
                .map(|(k, v)| (k.to_string(), journal::secret_digest("r1", k, v)))
                .collect(),
            pre_approved: Vec::new(),
        }
    }

    fn given(kv: &[(&str, &str)]) -> Vec<(String, String)> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_resume_keeps_recorded_params_and_names_each_difference() {
        let r = run(&[("v", "1"), ("token", SECRET)], &[("token", "s3cr3t")]);
        let mut changed = Vec::new();
        let p = params(&r, &given(&[("token", "s3cr3t")]), &mut changed).unwrap();
        assert!(changed.is_empty(), "{changed:?}");
        assert_eq!(p["v"], "1");
        assert_eq!(p["token"], "s3cr3t");

        let p = params(
            &r,
            &given(&[("token", "other"), ("v", "2"), ("new", "x")]),
            &mut changed,
        )
        .unwrap();
        assert_eq!(
            changed,
            [
                "parameter new: (not set) -> x",
                "secret parameter token: changed (values not shown)",
                "parameter v: 1 -> 2"
            ]
        );
        assert_eq!(p["v"], "2");

        let e = params(&r, &[], &mut Vec::new()).err().unwrap().to_string();
        assert!(e.contains("secret parameter token is not recorded"), "{e}");
    }
}
