//! Commands that read or steer recorded runs: `status`, `runs`, `abort`, `approve`,
//! `unlock`, `resume`, `run --join`, `rollback`, and `apply` of a saved plan. The rules are
//! the engine's (`session`, `status`); this file turns arguments into its inputs and its
//! answers into output.

use crate::cli::{ReportFormat, RunArgs, ScriptArgs, StateArgs, StatusCmd, StatusFormat};
use crate::drive;
use crate::exit;
use fleetbook_engine::libs::Libraries;
use fleetbook_engine::session::{self, Inputs, Prepared, ResumeOptions, Start};
use fleetbook_engine::store::RunStore;
use fleetbook_engine::{render, Error, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub fn status(c: &StatusCmd) -> Result<i32> {
    let (id, state, output) = (c.run_id.as_deref(), &c.state, c.output.as_deref());
    let store = state.open_recorded()?;
    if c.format == StatusFormat::Html {
        let view = render::RunView::load(&*store, id)?;
        let page = render::report(&view, &state.page_options(false));
        exit::write_output(output, &page)?;
        if let Some(path) = output {
            eprintln!(
                "report of run {} written to {}",
                view.status.run.id,
                path.display()
            );
        }
        return Ok(exit::OK);
    }
    let run = match c.watch {
        true => fleetbook_views::status::watch(&*store, id, &exit::print)?,
        false => store.run(id)?,
    };
    let st = fleetbook_engine::status::of(&*store, run)?;
    let text = match c.format {
        StatusFormat::Json => render::json(&st)?,
        _ => fleetbook_engine::status::text(&*store, &st)?,
    };
    exit::write_output(output, &text)?;
    Ok(exit::OK)
}

pub fn runs(state: &StateArgs, format: ReportFormat) -> Result<i32> {
    // A fresh state has no store yet: that is no runs, not an error.
    let dir = state.resolve();
    if !fleetbook_engine::store::exists(&dir) {
        let text = match format {
            ReportFormat::Json => "[]\n".to_string(),
            ReportFormat::Text => format!("no runs recorded in {}\n", dir.display()),
        };
        exit::print(&text)?;
        return Ok(exit::OK);
    }
    let store = state.open_recorded()?;
    let runs = store.runs()?;
    let text = match format {
        ReportFormat::Json => render::json(&runs)?,
        ReportFormat::Text => fleetbook_engine::status::runs_text(&runs, &store.location()),
    };
    exit::print(&text)?;
    Ok(exit::OK)
}

pub fn abort(id: &str, now: bool, state: &StateArgs) -> Result<i32> {
    let store = state.open_recorded()?;
    session::request_abort(&*store, id, now)?;
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

pub fn approve(id: &str, gate: Option<&str>, state: &StateArgs) -> Result<i32> {
    let store = state.open_recorded()?;
    let gate = session::give_approval(&*store, id, gate)?;
    eprintln!("approved {gate:?} for run {id}");
    Ok(exit::OK)
}

pub fn unlock(state: &StateArgs, yes: bool) -> Result<i32> {
    let store = state.open_recorded()?;
    let dir = state.resolve();
    let dir = dir.canonicalize().unwrap_or(dir);
    let held = session::break_stale_locks(
        &*store,
        &mut |l| {
            eprintln!("stale lock: {}", l.describe());
            let refusal =
                Error::input("pass --yes to break the lock (standard input is not a terminal)");
            drive::ask(yes, "Break it?", refusal)
        },
        &mut |l| {
            eprintln!(
                "lock broken; resume the run with: fleetbook resume {} --state {}",
                l.run_id,
                crate::cli::shell_word(&dir.display().to_string())
            )
        },
    )?;
    if held == 0 {
        eprintln!("no lock held in {}", store.location());
    }
    Ok(exit::OK)
}

/// What `resume`, `rollback` and `apply` are given besides the run.
pub struct Given<'a> {
    pub params: &'a [(String, String)],
    pub lib_dirs: &'a [PathBuf],
    /// The project's dependencies, checked against its lock.
    pub libs: &'a Libraries,
    pub run: &'a RunArgs,
}

impl<'a> Given<'a> {
    pub fn new(
        params: &'a [(String, String)],
        lib_dirs: &'a [PathBuf],
        libs: &'a Libraries,
        run: &'a RunArgs,
    ) -> Given<'a> {
        Given {
            params,
            lib_dirs,
            libs,
            run,
        }
    }

    fn inputs(&self) -> Inputs<'a> {
        Inputs {
            params: self.params,
            lib_dirs: self.lib_dirs,
            libs: self.libs,
            approve: &self.run.approve,
        }
    }

    fn drive(&self, store: Arc<dyn RunStore>, p: Prepared) -> Result<i32> {
        drive::drive(p.planned, store, p.start, self.run, self.lib_dirs)
    }
}

/// `fleetbook run --join RUN`: another controller on a running run, with the run's own
/// inputs (secret parameters given again).
pub fn join_run(id: &str, script: &ScriptArgs, libs: &Libraries, args: &RunArgs) -> Result<i32> {
    let store = args.state.open_recorded()?;
    let params = script.given_params();
    let given = Given::new(&params, &script.lib_dirs, libs, args);
    let prepared = session::join(&*store, id, &given.inputs(), (false, false))?;
    given.drive(store, prepared)
}

pub fn resume(id: &str, mut o: ResumeOptions, given: Given) -> Result<i32> {
    let store = given.run.state.open_recorded()?;
    o.shared = fleetbook_engine::store::is_etcd(&given.run.state.resolve());
    let say = |line: &str| eprintln!("{line}");
    let prepared = session::resume(&*store, id, &given.inputs(), o, &say)?;
    given.drive(store, prepared)
}

/// `fleetbook rollback RUN`: the `undo` of every step the run completed, on the hosts the
/// limit selects, newest first — hosts that finished too.
pub fn rollback(
    id: &str,
    limit: Option<&str>,
    unknown: session::Unknown,
    given: Given,
) -> Result<i32> {
    let store = given.run.state.open_recorded()?;
    let prepared = session::rollback(&*store, id, &given.inputs(), limit, unknown)?;
    given.drive(store, prepared)
}

pub fn apply(path: &Path, given: Given) -> Result<i32> {
    let planned = session::apply(path, &given.inputs())?;
    let store = given.run.state.open()?;
    let start = Start::New;
    given.drive(store, Prepared { planned, start })
}
