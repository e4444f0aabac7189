//! The project file's defaults put into a parsed command line (options given on it win),
//! and the one way every command finds the project.

use crate::{
    ApplyCmd, CheckCmd, Command, PlanCmd, ResumeCmd, RollbackCmd, RunArgs, RunCmd, ScriptArgs,
    StatusCmd, WatchCmd,
};
use fleetbook_engine::project::Project;
use fleetbook_engine::Result;
use std::path::{Path, PathBuf};

/// The project around `dir`; a project file passed over is named on standard error.
pub fn find_project(dir: &Path) -> Result<Option<Project>> {
    Project::find(dir, &mut |file, why| {
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "warning: ignoring {}: {why}",
            file.display()
        );
    })
}

/// Fills what the command line left out from the project file, for every command; gives
/// the notes to show (a limit taken from the file).
pub fn fill(command: &mut Command, project: Option<&Project>) -> Vec<String> {
    use Command as C;
    let mut notes = Vec::new();
    let Some(p) = project else { return notes };
    let s = &p.settings;
    let inventory = |i: &mut Option<PathBuf>| {
        if i.is_none() {
            *i = s.inventory.as_deref().map(|f| p.path(f));
        }
    };
    let script = |a: &mut ScriptArgs| {
        // Soft defaults: a runbook that does not declare one ignores it.
        for (k, v) in p.params() {
            if !a.params.iter().any(|(given, _)| *given == k) {
                a.params
                    .push((format!("{k}{}", fleetbook_engine::script::SOFT), v));
            }
        }
        a.lib_dirs.extend(s.lib.iter().map(|l| p.path(l)));
    };
    // The file's limit is for the file's inventory: with `-i OTHER` it does not apply.
    let mut limit = |l: &mut Option<String>, own_inventory: bool| {
        if l.is_none() && own_inventory {
            if let Some(pattern) = &s.limit {
                notes.push(format!("--limit {pattern} (from {})", p.file.display()));
                *l = Some(pattern.clone());
            }
        }
    };
    let run = |r: &mut RunArgs| {
        r.state.fill(p);
        r.ssh.fill(p);
    };
    match command {
        C::Check(c) => {
            inventory(&mut c.inventory);
            script(&mut c.script);
        }
        C::Plan(c) => {
            let own = c.inventory.is_none();
            inventory(&mut c.inventory);
            script(&mut c.script);
            limit(&mut c.limit, own);
        }
        C::Run(c) => {
            let own = c.inventory.is_none();
            inventory(&mut c.inventory);
            script(&mut c.script);
            limit(&mut c.limit, own);
            run(&mut c.run);
        }
        C::Test { lib_dirs, .. } => lib_dirs.extend(s.lib.iter().map(|l| p.path(l))),
        C::Apply(ApplyCmd {
            run: r, lib_dirs, ..
        })
        | C::Resume(ResumeCmd {
            run: r, lib_dirs, ..
        })
        | C::Rollback(RollbackCmd {
            run: r, lib_dirs, ..
        }) => {
            run(r);
            lib_dirs.extend(s.lib.iter().map(|l| p.path(l)));
        }
        C::Status(StatusCmd { state, .. })
        | C::Runs { state, .. }
        | C::Abort { state, .. }
        | C::Approve { state, .. }
        | C::Watch(WatchCmd { state, .. })
        | C::Unlock { state, .. } => state.fill(p),
        // `config` shows where the state comes from: it takes the flag as given.
        C::Config { .. } => {}
        C::Exec(c) => {
            inventory(&mut c.inventory);
            if c.forks.is_none() {
                c.forks = s.forks;
            }
            c.ssh.fill(p);
        }
        C::Completions { .. }
        | C::Man { .. }
        | C::Inventory(_)
        | C::Lsp { .. }
        | C::Doc { .. }
        | C::Lib { .. } => {}
        C::Definitions { lib_dirs, .. } => lib_dirs.extend(s.lib.iter().map(|l| p.path(l))),
    }
    notes
}

/// `$FLEETBOOK_PATH` after the `--lib` directories (and the project's `lib`).
pub fn add_path_dirs(command: &mut Command) {
    let extra = fleetbook_engine::project::path_dirs();
    if extra.is_empty() {
        return;
    }
    match command {
        Command::Check(CheckCmd { script, .. })
        | Command::Plan(PlanCmd { script, .. })
        | Command::Run(RunCmd { script, .. }) => script.lib_dirs.extend(extra),
        Command::Apply(ApplyCmd { lib_dirs, .. })
        | Command::Resume(ResumeCmd { lib_dirs, .. })
        | Command::Rollback(RollbackCmd { lib_dirs, .. }) => lib_dirs.extend(extra),
        _ => {}
    }
}
