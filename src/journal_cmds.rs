//! Commands that read or steer recorded runs: `status`, `runs`, `abort`, `approve`,
//! `unlock`, `resume`, and `apply` of a saved plan.

use crate::cli::{ReportFormat, RunArgs, StateArgs, StatusFormat};
use crate::drive::{self, Start};
use crate::exit;
use fleetbook_engine::journal::{format_time, RunRecord};
use fleetbook_engine::libs::Libraries;
use fleetbook_engine::shared::Shared;
use fleetbook_engine::store::RunState;
use fleetbook_engine::store::RunStore;
use fleetbook_engine::{plan, session};
use fleetbook_engine::{Error, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Appends a line to a `String` (printed at once with [`exit::print`]).
macro_rules! out {
    ($o:expr) => {
        $o.push('\n')
    };
    ($o:expr, $($t:tt)*) => {{
        $o.push_str(&format!($($t)*));
        $o.push('\n');
    }};
}

pub(crate) fn open(state: &StateArgs) -> Result<Arc<dyn RunStore>> {
    let dir = state.resolve();
    if !fleetbook_engine::store::exists(&dir) {
        return Err(Error::input_with_help(
            format!("no runs recorded in {}", dir.display()),
            "runs are recorded in --state DIR or $FLEETBOOK_STATE, else in the project's state (fleetbook.toml), else in $XDG_STATE_HOME/fleetbook; `fleetbook config` shows which is in force here",
        ));
    }
    state.open()
}

pub fn status(
    id: Option<&str>,
    state: &StateArgs,
    format: StatusFormat,
    output: Option<&Path>,
    watch: bool,
) -> Result<i32> {
    let journal = open(state)?;
    if format == StatusFormat::Html {
        let view = fleetbook_engine::render::RunView::load(&*journal, id)?;
        let page = fleetbook_engine::render::report(&view, &page_options(state, false));
        crate::commands::write_output(output, &page)?;
        if let Some(path) = output {
            eprintln!(
                "report of run {} written to {}",
                view.status.run.id,
                path.display()
            );
        }
        return Ok(exit::OK);
    }
    let run = match watch {
        true => crate::status_watch::watch(&*journal, id)?,
        false => journal.run(id)?,
    };
    let st = fleetbook_engine::status::of(&*journal, run)?;
    let mut o = String::new();
    if format == StatusFormat::Json {
        out!(
            o,
            "{}",
            serde_json::to_string_pretty(&st).map_err(|e| Error::Internal(e.to_string()))?
        );
        crate::commands::write_output(output, &o)?;
        return Ok(exit::OK);
    }
    let r = &st.run;
    out!(o, "run {}  {}  ({})", r.id, r.state, st.overall);
    out!(
        o,
        "runbook {} on {}, started {} by {}@{}",
        r.runbook,
        r.inventory_path,
        format_time(r.started_at),
        r.user,
        r.controller
    );
    if let Some(reason) = &r.reason {
        out!(o, "reason: {reason}");
    }
    if let Some(gate) = &st.waiting_approval {
        out!(
            o,
            "waiting for approval {gate:?}: fleetbook approve {} --gate {gate}",
            r.id
        );
    }
    out!(o);
    for (role, counts) in &st.roles {
        let get = |k| counts.get(k).copied().unwrap_or(0);
        out!(
            o,
            "{role:16} upgraded {:<4} upgrading {:<4} pending {:<4} failed {:<4}{}",
            get("upgraded"),
            get("upgrading"),
            get("pending"),
            get("failed"),
            if get("rolled_back") > 0 {
                format!(" rolled back {}", get("rolled_back"))
            } else {
                String::new()
            }
        );
    }
    out!(o);
    // Several controllers may share a run in etcd: which holds which host now.
    let holders: BTreeMap<String, String> = journal.holders(&r.id)?.into_iter().collect();
    let mut by_controller: BTreeMap<&str, usize> = BTreeMap::new();
    for c in holders.values() {
        *by_controller.entry(c.as_str()).or_default() += 1;
    }
    for (c, n) in &by_controller {
        out!(o, "controller {c} holds {n} host(s)");
    }
    if !by_controller.is_empty() {
        out!(o);
    }
    let width = st.hosts.iter().map(|h| h.host.len()).max().unwrap_or(4);
    for h in &st.hosts {
        let mut detail = match (&h.step, &h.message) {
            (Some(s), Some(m)) => format!("  {s}: {m}"),
            (Some(s), None) => format!("  {s}"),
            _ => String::new(),
        };
        if let Some(c) = holders.get(&h.host) {
            detail.push_str(&format!("  (held by {c})"));
        }
        out!(o, "{:width$}  {:11}{}", h.host, h.state, detail);
    }
    crate::commands::write_output(output, &o)?;
    Ok(exit::OK)
}

/// How report pages name the state directory in the commands they suggest.
pub fn page_options(state: &StateArgs, live: bool) -> fleetbook_engine::render::PageOptions {
    let dir = state.resolve();
    let dir = dir.canonicalize().unwrap_or(dir);
    fleetbook_engine::render::PageOptions {
        state_dir: Some(dir.display().to_string()),
        live,
        control: false,
    }
}

pub fn runs(state: &StateArgs, format: ReportFormat) -> Result<i32> {
    // A fresh state has no journal yet: that is no runs, not an error.
    let dir = state.resolve();
    if !fleetbook_engine::store::exists(&dir) {
        let text = match format {
            ReportFormat::Json => "[]\n".to_string(),
            ReportFormat::Text => format!("no runs recorded in {}\n", dir.display()),
        };
        exit::print(&text)?;
        return Ok(exit::OK);
    }
    let journal = open(state)?;
    let runs = journal.runs()?;
    let mut o = String::new();
    if format == ReportFormat::Json {
        out!(
            o,
            "{}",
            serde_json::to_string_pretty(&runs).map_err(|e| Error::Internal(e.to_string()))?
        );
        exit::print(&o)?;
        return Ok(exit::OK);
    }
    if runs.is_empty() {
        out!(o, "no runs recorded in {}", journal.location());
    }
    for r in runs {
        out!(
            o,
            "{}  {:24} {:20} {}  {}@{}",
            r.id,
            r.state,
            r.runbook,
            format_time(r.started_at),
            r.user,
            r.controller
        );
    }
    exit::print(&o)?;
    Ok(exit::OK)
}

pub fn abort(id: &str, now: bool, state: &StateArgs) -> Result<i32> {
    let journal = open(state)?;
    request_abort(&*journal, id, now)?;
    eprintln!(
        "abort requested for run {id}{}",
        if now {
            " (killing the steps in flight)"
        } else {
            ""
        }
    );
    Ok(exit::OK)
}

/// `fleetbook abort`, and the live page's Abort button: refused unless the run runs.
pub fn request_abort(journal: &dyn RunStore, id: &str, now: bool) -> Result<()> {
    let run = journal.run(Some(id))?;
    if run.state != RunState::Running {
        return Err(Error::input(format!(
            "run {id} is not running (it is {})",
            run.state
        )));
    }
    journal.request_abort(id, now)
}

pub fn approve(id: &str, gate: Option<&str>, state: &StateArgs) -> Result<i32> {
    let journal = open(state)?;
    let gate = give_approval(&*journal, id, gate)?;
    eprintln!("approved {gate:?} for run {id}");
    Ok(exit::OK)
}

/// `fleetbook approve`, and the live page's Approve button: the approval named (or the one
/// the run waits for) is recorded with the user; which one it was.
pub fn give_approval(journal: &dyn RunStore, id: &str, gate: Option<&str>) -> Result<String> {
    let run = journal.run(Some(id))?;
    let tasks = journal.tasks(id)?;
    let mut gates: Vec<String> = tasks
        .iter()
        .filter(|t| t.kind == "approval")
        .filter_map(|t| t.step.clone())
        .collect();
    gates.sort();
    gates.dedup();
    let listed = || {
        if gates.is_empty() {
            format!("run {id} has no approvals")
        } else {
            format!("run {id}'s approvals are: {}", gates.join(", "))
        }
    };
    if matches!(run.state.as_str(), "succeeded" | "succeeded_with_failures") {
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
                .filter(|t| t.state == "waiting_approval")
                .filter_map(|t| t.step)
                .collect();
            match waiting.as_slice() {
                [one] => one.clone(),
                [] => {
                    return Err(Error::input_with_help(
                        format!("run {id} waits for no approval now; name one with --gate"),
                        listed(),
                    ))
                }
                _ => {
                    return Err(Error::input(format!(
                        "run {id} waits for several approvals ({}); name one with --gate",
                        waiting.join(", ")
                    )))
                }
            }
        }
    };
    journal.approve(&run.id, &gate)?;
    Ok(gate)
}

pub fn unlock(state: &StateArgs, yes: bool) -> Result<i32> {
    let journal = open(state)?;
    let locks = journal.locks()?;
    if locks.is_empty() {
        eprintln!("no lock held in {}", journal.location());
        return Ok(exit::OK);
    }
    for l in locks {
        if !l.is_stale() {
            return Err(Error::Locked {
                message: format!("the fleet is locked by {}", l.describe()),
                help: "that run is alive: stop it with `fleetbook abort`, not unlock".into(),
            });
        }
        eprintln!("stale lock: {}", l.describe());
        let refusal =
            Error::input("pass --yes to break the lock (standard input is not a terminal)");
        if !drive::ask(yes, "Break it?", refusal)? {
            continue;
        }
        journal.break_lock(&l.fleet)?;
        let dir = state.resolve();
        let dir = dir.canonicalize().unwrap_or(dir);
        eprintln!(
            "lock broken; resume the run with: fleetbook resume {} --state {}",
            l.run_id,
            drive::shell_word(&dir.display().to_string())
        );
    }
    Ok(exit::OK)
}

fn param_map(given: &[(String, String)]) -> BTreeMap<String, String> {
    given.iter().cloned().collect()
}

pub struct ResumeArgs<'a> {
    pub id: &'a str,
    pub retry_unknown: bool,
    pub skip_unknown: bool,
    pub replan: bool,
    pub params: &'a [(String, String)],
    pub lib_dirs: &'a [PathBuf],
    /// The project's dependencies, checked against its lock.
    pub libs: &'a Libraries,
    pub run: &'a RunArgs,
}

/// A recorded run planned again from its runbook, inventory and parameters (secret ones
/// given again): the plan, approvals given now that the run had not, and what differs.
fn plan_again(
    run: &RunRecord,
    given: &[(String, String)],
    lib_dirs: &[PathBuf],
    libs: &Libraries,
    args: &RunArgs,
) -> Result<(plan::Planned, Vec<String>, Vec<String>)> {
    let mut changed = Vec::new();
    let params = session::params(run, given, &mut changed)?;
    let planned = plan::plan(&plan::PlanRequest {
        runbook: Path::new(&run.runbook_path),
        inventory: Path::new(&run.inventory_path),
        params: &params,
        limit: run.limit_pattern.as_deref(),
        lib_dirs,
        libs,
        vault: None,
    })?;
    let new_approvals = session::changes(run, &planned, &args.approve, &mut changed)?;
    Ok((planned, new_approvals, changed))
}

/// A recorded run, for `resume` and `rollback`: refused while it runs.
fn stopped_run(journal: &dyn RunStore, id: &str) -> Result<RunRecord> {
    let run = journal.run(Some(id))?;
    if run.state == RunState::Running {
        return Err(Error::input(format!(
            "run {} is still running (pid {} on {})",
            run.id, run.pid, run.controller
        )));
    }
    Ok(run)
}

/// `fleetbook run --join RUN`: another controller on a running run, with the run's own
/// inputs (secret parameters given again).
pub fn join_run(
    id: &str,
    script: &crate::cli::ScriptArgs,
    libs: &Libraries,
    args: &RunArgs,
) -> Result<i32> {
    let journal = open(&args.state)?;
    // The project file's parameter defaults are for new runs: a run keeps its own.
    let params: Vec<(String, String)> = script
        .params
        .iter()
        .filter(|(k, _)| !k.ends_with(fleetbook_engine::script::SOFT))
        .cloned()
        .collect();
    join(
        journal,
        id,
        (&params, &script.lib_dirs, libs),
        args,
        (false, false),
    )
}

/// A further controller on a run that is running: it takes the hosts no controller holds.
fn join(
    journal: Arc<dyn RunStore>,
    id: &str,
    (params, lib_dirs, libs): (&[(String, String)], &[PathBuf], &Libraries),
    args: &RunArgs,
    (retry, skip): (bool, bool),
) -> Result<i32> {
    let run = journal.run(Some(id))?;
    if run.state != RunState::Running {
        return Err(Error::input_with_help(
            format!(
                "run {} is not running ({}): there is no controller to join",
                run.id, run.state
            ),
            format!("`fleetbook resume {}` continues it", run.id),
        ));
    }
    let (planned, _, changed) = plan_again(&run, params, lib_dirs, libs, args)?;
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
    // Tasks running now are other controllers'; the ledger keeps their hosts theirs.
    let done = session::done_tasks(&run, journal.tasks(&run.id)?, &planned, true, false)?;
    drive::drive(
        planned,
        journal,
        Start::Join {
            run: Box::new(run),
            done,
            unknown: (retry, skip),
        },
        drive::Invocation {
            args,
            libs: lib_dirs,
        },
    )
}

pub fn resume(a: ResumeArgs) -> Result<i32> {
    let journal = open(&a.run.state)?;
    let running = journal.run(Some(a.id))?.state == RunState::Running;
    if running && fleetbook_engine::store::is_etcd(&a.run.state.resolve()) {
        // Another controller still drives it: this one joins.
        let unknown = (a.retry_unknown, a.skip_unknown);
        return join(
            journal,
            a.id,
            (a.params, a.lib_dirs, a.libs),
            a.run,
            unknown,
        );
    }
    let mut run = stopped_run(&*journal, a.id)?;
    match run.state.as_str() {
        "succeeded" => {
            return Err(Error::input(format!(
                "run {} succeeded: there is nothing to resume",
                run.id
            )))
        }
        "rolled_back" | "rollback_failed" | "rolling_back" => {
            return Err(Error::input_with_help(
                format!(
                    "run {} was rolled back ({}): there is nothing to resume",
                    run.id, run.state
                ),
                "finish the rollback with `fleetbook rollback`, or start a new run to apply the change again",
            ))
        }
        _ => {}
    }
    let (planned, new_approvals, changed) = plan_again(&run, a.params, a.lib_dirs, a.libs, a.run)?;
    if !changed.is_empty() {
        if !a.replan {
            return Err(Error::input_with_help(
                format!(
                    "refusing to resume run {} with other inputs than it started with:\n  {}",
                    run.id,
                    changed.join("\n  ")
                ),
                "a resumed run keeps its parameters, secrets, approvals, runbook, inventory and modules; resume with --replan to continue with the new ones (tasks done stay done), or drop the options that differ",
            ));
        }
        eprintln!("replanning run {}:\n  {}", run.id, changed.join("\n  "));
        session::replanned(&mut run, &planned, new_approvals);
        journal.replan(&run)?;
        journal.add_missing_tasks(
            &run.id,
            &fleetbook_engine::session::task_rows(&planned.plan),
        )?;
    }
    let done = session::done_tasks(
        &run,
        journal.tasks(&run.id)?,
        &planned,
        a.retry_unknown,
        a.skip_unknown,
    )?;
    drive::drive(
        planned,
        journal,
        Start::Resume {
            run: Box::new(run),
            done,
            unknown: (a.retry_unknown, a.skip_unknown),
        },
        drive::Invocation {
            args: a.run,
            libs: a.lib_dirs,
        },
    )
}

pub struct RollbackArgs<'a> {
    pub id: &'a str,
    pub unknown: session::Unknown,
    pub limit: Option<&'a str>,
    pub params: &'a [(String, String)],
    pub lib_dirs: &'a [PathBuf],
    /// The project's dependencies, checked against its lock.
    pub libs: &'a Libraries,
    pub run: &'a RunArgs,
}

/// `fleetbook rollback RUN`: the `undo` of every step the run completed, on the hosts the
/// limit selects, newest first — hosts that finished too.
pub fn rollback(a: RollbackArgs) -> Result<i32> {
    let journal = open(&a.run.state)?;
    let run = stopped_run(&*journal, a.id)?;
    let (planned, _, changed) = plan_again(&run, a.params, a.lib_dirs, a.libs, a.run)?;
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
    let hosts = match a.limit {
        Some(p) => Some(limited_hosts(&run, p)?),
        None => None,
    };
    let rows = journal.tasks(&run.id)?;
    let order = session::undo_order(&rows, &planned, hosts.as_ref(), a.unknown)?;
    // The `finally` steps the run already ran; the others are owed, and run at the end.
    let ok: std::collections::HashSet<&str> = rows
        .iter()
        .filter(|r| r.state == "ok")
        .map(|r| r.task_id.as_str())
        .collect();
    let done = planned
        .graph
        .tasks
        .iter()
        .map(|t| ok.contains(t.id.as_str()))
        .collect();
    drive::drive(
        planned,
        journal,
        Start::Rollback {
            run: Box::new(run),
            order,
            done,
        },
        drive::Invocation {
            args: a.run,
            libs: a.lib_dirs,
        },
    )
}

/// The hosts of the run's inventory that `pattern` selects; none is an error.
fn limited_hosts(run: &RunRecord, pattern: &str) -> Result<std::collections::HashSet<String>> {
    let path = Path::new(&run.inventory_path);
    let text = fleetbook_engine::error::read_file(path)?;
    let inv = fleetbook_engine::inventory::Inventory::parse(
        &path.display().to_string(),
        &text,
        fleetbook_engine::inventory::Format::of(path),
    )?;
    Ok(fleetbook_engine::inventory::pattern::select(&inv, pattern)?
        .into_iter()
        .collect())
}

pub fn apply(
    path: &Path,
    given: &[(String, String)],
    lib_dirs: &[PathBuf],
    libs: &Libraries,
    args: &RunArgs,
) -> Result<i32> {
    let text = fleetbook_engine::error::read_file(path)?;
    let not_a_plan = |e: serde_json::Error| {
        Error::input(format!("{} is not a fleetbook plan: {e}", path.display()))
    };
    let refuse = |why: String| {
        Error::input_with_help(
            format!("refusing to apply {}: {why}", path.display()),
            "make a new plan with `fleetbook plan ... -o plan.json`, review it, and apply that",
        )
    };
    // The versions first: a plan of another schema or fleetbook is refused for that, not
    // for the fields it lacks.
    let value: serde_json::Value = serde_json::from_str(&text).map_err(not_a_plan)?;
    let schema = value["schema_version"].as_u64();
    if schema != Some(u64::from(plan::SCHEMA_VERSION)) {
        return Err(refuse(format!(
            "it has plan schema {}, this fleetbook reads {}",
            schema.map_or("(none)".to_string(), |v| v.to_string()),
            plan::SCHEMA_VERSION
        )));
    }
    let version = value["fleetbook_version"].as_str().unwrap_or("(none)");
    if version != env!("CARGO_PKG_VERSION") {
        return Err(refuse(format!(
            "it was made by fleetbook {version}, this is {}",
            env!("CARGO_PKG_VERSION")
        )));
    }
    let saved: plan::Plan = serde_json::from_value(value).map_err(not_a_plan)?;
    let given_map = param_map(given);
    let mut params = BTreeMap::new();
    for p in &saved.params {
        let v = match (p.secret, given_map.get(&p.name)) {
            (true, Some(v)) => v.clone(),
            (true, None) => {
                return Err(Error::input_with_help(
                    format!(
                        "secret parameter {} is not in the plan: give it again",
                        p.name
                    ),
                    format!("--param {}=...", p.name),
                ))
            }
            (false, Some(v)) if *v != p.value => {
                return Err(refuse(format!(
                    "--param {}={v} differs from the plan's {}",
                    p.name, p.value
                )))
            }
            (false, _) => p.value.clone(),
        };
        params.insert(p.name.clone(), v);
    }
    let planned = plan::plan(&plan::PlanRequest {
        runbook: Path::new(&saved.runbook.path),
        inventory: Path::new(&saved.inventory),
        params: &params,
        limit: saved.limit_pattern.as_deref(),
        lib_dirs,
        libs,
        vault: None,
    })?;
    let p = &planned.plan;
    if p.runbook_digest != saved.runbook_digest {
        return Err(refuse(format!(
            "the runbook {} changed since the plan was made",
            saved.runbook.path
        )));
    }
    if p.inventory_digest != saved.inventory_digest {
        return Err(refuse(format!(
            "the inventory {} changed since the plan was made",
            saved.inventory
        )));
    }
    if let Some(why) = plan::library_changes(&saved.libraries, &p.libraries) {
        return Err(refuse(why));
    }
    let commands = |p: &plan::Plan| -> Vec<(Shared, Vec<Shared>)> {
        p.tasks
            .iter()
            .map(|t| (t.id.clone(), t.commands.clone()))
            .collect()
    };
    if commands(p) != commands(&saved) {
        return Err(refuse(
            "the plan computed now differs from the saved one (tasks or commands)".into(),
        ));
    }
    let journal = args.state.open()?;
    drive::drive(
        planned,
        journal,
        Start::New,
        drive::Invocation {
            args,
            libs: lib_dirs,
        },
    )
}
