//! Dispatch: each subcommand's arguments handed to the engine, `tooling/` or `views/`, what
//! they give printed, and the exit status it calls for.

use crate::cli::{
    self, CheckCmd, Cli, Command, LibCommand, PlanCmd, ReportFormat, RunCmd, ScriptArgs, SshArgs,
};
use crate::drive::{self, install_ctrl_c};
use crate::exit::{self, print, write_output, OK};
use crate::run_cmds::{self, Given};
use fleetbook_engine::exec::Control;
use fleetbook_engine::inventory::{export, Inventory, LoadOptions};
use fleetbook_engine::libs::{self, Libraries};
use fleetbook_engine::project::{self, Project};
use fleetbook_engine::session::Start;
use fleetbook_engine::transport::Router;
use fleetbook_engine::{adhoc, plan, render, Error, Result};
use fleetbook_tooling::check::{self, Depth, Subject};
use std::path::Path;
use std::sync::Arc;

pub fn run(args: Cli) -> Result<i32> {
    let mut command = args.command;
    let verbose = args.verbose > 0;
    let here =
        std::env::current_dir().map_err(|e| Error::input(format!("the current directory: {e}")))?;
    let project = cli::find_project(&here)?;
    for note in cli::fill(&mut command, project.as_ref()) {
        eprintln!("{note}");
    }
    cli::add_path_dirs(&mut command);
    let libs = &libraries_for(&command, project.as_ref())?;
    match command {
        Command::Plan(c) => plan_cmd(&c, libs),
        Command::Run(RunCmd {
            join: Some(id),
            script,
            run,
            ..
        }) => run_cmds::join_run(&id, &script, libs, &run),
        Command::Run(c) => {
            let inventory = project::need_inventory(c.inventory.as_deref())?;
            let runbook = c.runbook.unwrap_or_default();
            let planned = plan_of(&runbook, inventory, &c.script, c.limit.as_deref(), libs)?;
            let store = c.run.state.open()?;
            drive::drive(planned, store, Start::New, &c.run, &c.script.lib_dirs)
        }
        Command::Apply(c) => {
            run_cmds::apply(&c.plan, Given::new(&c.params, &c.lib_dirs, libs, &c.run))
        }
        Command::Resume(c) => {
            let given = Given::new(&c.params, &c.lib_dirs, libs, &c.run);
            run_cmds::resume(&c.run_id, c.options(), given)
        }
        Command::Rollback(c) => {
            let given = Given::new(&c.params, &c.lib_dirs, libs, &c.run);
            run_cmds::rollback(&c.run_id, c.limit.as_deref(), c.unknown(), given)
        }
        Command::Status(c) => run_cmds::status(&c),
        Command::Watch(c) => {
            fleetbook_views::web::watch(fleetbook_views::web::WatchArgs {
                store: c.state.open_recorded()?,
                page: c.state.page_options(true),
                run: c.run_id,
                control: c.control,
                listen: c.listen,
                token_file: c.token_file,
                print: &print,
            })?;
            Ok(OK)
        }
        Command::Runs { state, format } => run_cmds::runs(&state, format),
        Command::Abort { run_id, now, state } => run_cmds::abort(&run_id, now, &state),
        Command::Approve {
            run_id,
            gate,
            state,
        } => run_cmds::approve(&run_id, gate.as_deref(), &state),
        Command::Unlock { state, yes } => run_cmds::unlock(&state, yes),
        Command::Check(c) => check_cmd(&c, libs, verbose),
        Command::Lib { command } => lib_cmd(command, project::required(project.as_ref())?),
        Command::Config { state, format } => {
            let json = format == ReportFormat::Json;
            print(&project::show(
                project.as_ref(),
                state.dir.as_deref(),
                json,
            )?)?;
            Ok(OK)
        }
        Command::Inventory(c) => {
            let opts = LoadOptions {
                vault: c.vault.keys()?,
                playbook_dir: c.playbook_dir,
            };
            let inv = Inventory::load_with(&c.inventory, &opts)?;
            for w in &inv.warnings {
                eprintln!("warning: {}: {w}", inv.source);
            }
            let (graph, host) = (c.graph.as_deref(), c.host.as_deref());
            print(&export::text(&inv, graph, host, c.limit.as_deref())?)?;
            Ok(OK)
        }
        Command::Lsp { .. } => {
            fleetbook_tooling::lsp::serve(fleetbook_tooling::lsp::project_settings)?;
            Ok(OK)
        }
        Command::Definitions { output, lib_dirs } => {
            let written = fleetbook_tooling::definitions::write(&output, &lib_dirs)?;
            let (n, to) = (written.len(), output.display());
            eprintln!("{n} definition files written to {to}");
            Ok(OK)
        }
        Command::Test { path, lib_dirs } => {
            let test_run = fleetbook_tooling::test_run::run;
            let report = test_run(path.as_deref(), &here, &lib_dirs, libs)?;
            print(&report.text)?;
            Ok(if report.passed { OK } else { exit::FAILURES })
        }
        Command::Doc { lib, format } => {
            use fleetbook_tooling::doc::{self, DocFormat};
            let format = match format {
                cli::DocFormat::Text => DocFormat::Text,
                cli::DocFormat::Md => DocFormat::Md,
            };
            print(&doc::render(lib.as_deref(), format)?)?;
            Ok(OK)
        }
        Command::Completions { shell } => {
            print(&cli::complete::registration(shell)?)?;
            Ok(OK)
        }
        Command::Man { output: Some(dir) } => {
            let written = cli::man::write_to(&dir)?;
            let (n, to) = (written.len(), dir.display());
            eprintln!("{n} manual pages written to {to}");
            Ok(OK)
        }
        Command::Man { output: None } => {
            print(&cli::man::pages()?[0].1)?;
            Ok(OK)
        }
        Command::Exec(c) => {
            let inventory = project::need_inventory(c.inventory.as_deref())?;
            let selected = adhoc::select(inventory, &c.pattern)?;
            let command = adhoc::Command {
                command: &c.command.join(" "),
                forks: c.forks.unwrap_or(10),
                timeout: cli::parse_timeout(c.timeout.as_deref())?,
            };
            exec_cmd(&selected, &command, c.group_identical, &c.ssh)
        }
    }
}

/// Every command that plans imports from the project's dependencies, as locked; a plan that
/// may run also asks the repositories whether a locked tag moved (`check` and `test` do not).
fn libraries_for(command: &Command, project: Option<&Project>) -> Result<Libraries> {
    let check_tags = match command {
        Command::Check { .. } | Command::Test { .. } => false,
        Command::Plan { .. }
        | Command::Run { .. }
        | Command::Apply { .. }
        | Command::Resume { .. }
        | Command::Rollback { .. } => true,
        _ => return Ok(Libraries::default()),
    };
    project::libraries_checked(project, check_tags)
}

/// Plans a runbook file against an inventory file with the command line's parameters.
fn plan_of(
    runbook: &Path,
    inventory: &Path,
    script: &ScriptArgs,
    limit: Option<&str>,
    libs: &Libraries,
) -> Result<plan::Planned> {
    let params = script.param_map().map_err(Error::input)?;
    plan::plan(&plan::PlanRequest {
        runbook,
        inventory,
        params: &params,
        limit,
        lib_dirs: &script.lib_dirs,
        libs,
        vault: Some(&script.vault.keys()?),
    })
}

/// `fleetbook plan`: the plan in the chosen format, to standard output or a file.
fn plan_cmd(c: &PlanCmd, libs: &Libraries) -> Result<i32> {
    let (runbook, output) = (&c.runbook, c.output.as_deref());
    let inventory = project::need_inventory(c.inventory.as_deref())?;
    if let Some(out) = output {
        cli::refuse_to_overwrite(out, &[("runbook", runbook), ("inventory", inventory)])?;
    }
    let planned = plan_of(runbook, inventory, &c.script, c.limit.as_deref(), libs)?;
    let p = &planned.plan;
    for w in &p.warnings {
        eprintln!("warning: {w}");
    }
    write_output(output, &render::plan(p, c.format.into())?)?;
    if let Some(path) = output {
        eprintln!(
            "plan of {} on {} ({}) written to {}",
            p.runbook.name,
            render::count(p.hosts.len(), "host"),
            render::count(p.tasks.len(), "task"),
            path.display()
        );
    }
    Ok(OK)
}

/// `fleetbook check`: tooling's checker; its summary (or every diagnostic as JSON) on
/// standard output, its warnings on standard error.
fn check_cmd(c: &CheckCmd, libs: &Libraries, verbose: bool) -> Result<i32> {
    let params = c.script.param_map().map_err(Error::input)?;
    let subject = Subject {
        path: &c.runbook,
        text: None,
        lib_dirs: &c.script.lib_dirs,
        libs,
        params: &params,
        inventory: c.inventory.as_deref(),
        depth: Depth::Compile,
    };
    let outcome = check::run(&subject);
    if c.format == ReportFormat::Json {
        print(&check::to_json(&check::diagnostics(&subject, &outcome)))?;
        return Ok(outcome.map_or_else(|f| exit::code_of(&f.error), |_| OK));
    }
    let human = check::human(&c.runbook, outcome.map_err(|f| f.error)?, verbose)?;
    eprint!("{}", human.notes);
    print(&human.summary)?;
    Ok(OK)
}

/// `fleetbook lib fetch | list | vendor`: the project's libraries, through the engine's
/// resolver (engine/src/libs/).
fn lib_cmd(command: LibCommand, project: &Project) -> Result<i32> {
    match command {
        LibCommand::Fetch { update } => {
            let resolved = project.resolve(libs::Mode::Fetch { update })?;
            let path = project.dir().join(libs::LOCK);
            let old = libs::lock::Lock::read(&path).ok().flatten();
            resolved.lock.write(&path)?;
            eprint!(
                "{}",
                libs::listing::fetched(old.as_ref(), &resolved.lock, &path)
            );
        }
        LibCommand::List { format } => {
            let resolved = project.resolve(libs::Mode::Verify)?;
            print(&match format {
                ReportFormat::Json => render::json(&libs::listing::json(&resolved))?,
                ReportFormat::Text => libs::listing::text(&resolved),
            })?;
        }
        LibCommand::Vendor { dir } => {
            let resolved = project.resolve(libs::Mode::Verify)?;
            libs::vendor::vendor(&resolved, &dir, &mut |label, to| {
                eprintln!("{label} -> {}", to.display())
            })?;
            eprint!("{}", libs::listing::vendored(&resolved, &dir));
        }
    }
    Ok(OK)
}

/// `fleetbook exec`: the engine's `adhoc` over the ssh transport, with Ctrl-C; its answer
/// on standard output, FAILURES if a host failed.
fn exec_cmd(
    selected: &adhoc::Selected,
    c: &adhoc::Command,
    group: bool,
    ssh: &SshArgs,
) -> Result<i32> {
    let transport = Router::new(ssh.options()?)?;
    let control = Arc::new(Control::default());
    install_ctrl_c(control.clone());
    let (out, all_ok) = adhoc::run(selected, &*transport, &control, c, group);
    print(&out)?;
    Ok(if all_ok { OK } else { exit::FAILURES })
}
