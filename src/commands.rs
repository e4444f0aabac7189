//! One function per subcommand: glue between the arguments and the engine.

use crate::cli::{Cli, Command, Format, ScriptArgs};
use crate::drive;
use crate::run_cmds::{self, Given};
use crate::{adhoc, exit, inventory_cmd};
use fleetbook_engine::libs::Libraries;
use fleetbook_engine::project;
use fleetbook_engine::{plan, render, Error, Result};

pub fn run(cli: Cli) -> Result<i32> {
    let mut command = cli.command;
    let here =
        std::env::current_dir().map_err(|e| Error::input(format!("the current directory: {e}")))?;
    let project = crate::cli::find_project(&here)?;
    for note in crate::cli::fill(&mut command, project.as_ref()) {
        eprintln!("{note}");
    }
    crate::cli::add_path_dirs(&mut command);
    let libs = libraries_for(&command, project.as_ref())?;
    match command {
        c @ (Command::Plan { .. }
        | Command::Run { .. }
        | Command::Apply { .. }
        | Command::Resume { .. }
        | Command::Rollback { .. }) => runs(c, &libs),
        c @ (Command::Status { .. }
        | Command::Watch { .. }
        | Command::Runs { .. }
        | Command::Abort { .. }
        | Command::Approve { .. }
        | Command::Unlock { .. }) => recorded(c),
        c => tools(
            c,
            &Context {
                here: &here,
                project: project.as_ref(),
                libs: &libs,
                verbose: cli.verbose > 0,
            },
        ),
    }
}

/// What the commands that neither plan a run nor read one may need.
struct Context<'a> {
    here: &'a std::path::Path,
    project: Option<&'a project::Project>,
    libs: &'a Libraries,
    verbose: bool,
}

/// Every command that plans imports from the project's dependencies, as locked; a plan that
/// may run also asks the repositories whether a locked tag moved (`check` and `test` do not).
fn libraries_for(command: &Command, project: Option<&project::Project>) -> Result<Libraries> {
    let plans = matches!(
        command,
        Command::Check { .. }
            | Command::Plan { .. }
            | Command::Run { .. }
            | Command::Apply { .. }
            | Command::Resume { .. }
            | Command::Rollback { .. }
            | Command::Test { .. }
    );
    if !plans {
        return Ok(Libraries::default());
    }
    let check_tags = !matches!(command, Command::Check { .. } | Command::Test { .. });
    project::libraries_checked(project, check_tags)
}

/// `plan`, `run`, `apply`, `resume` and `rollback`: the commands that plan a run.
fn runs(command: Command, libs: &Libraries) -> Result<i32> {
    match command {
        Command::Plan {
            runbook,
            inventory,
            script,
            limit,
            format,
            output,
        } => plan_cmd(
            &runbook,
            inventory.as_deref(),
            &script,
            limit.as_deref(),
            format,
            output,
            libs,
        ),
        Command::Run {
            join: Some(id),
            script,
            run,
            ..
        } => run_cmds::join_run(&id, &script, libs, &run),
        Command::Run {
            runbook,
            inventory,
            script,
            limit,
            run,
            ..
        } => {
            let runbook = runbook.unwrap_or_default();
            let inventory = project::need_inventory(inventory.as_deref())?;
            let planned = plan_of(&runbook, inventory, &script, limit.as_deref(), libs)?;
            let store = run.state.open()?;
            drive::drive(
                planned,
                store,
                fleetbook_engine::session::Start::New,
                drive::Invocation {
                    args: &run,
                    libs: &script.lib_dirs,
                },
            )
        }
        Command::Apply {
            plan,
            params,
            lib_dirs,
            run,
        } => run_cmds::apply(
            &plan,
            Given {
                params: &params,
                lib_dirs: &lib_dirs,
                libs,
                run: &run,
            },
        ),
        Command::Resume {
            run_id,
            retry_unknown,
            skip_unknown,
            replan,
            params,
            lib_dirs,
            run,
        } => run_cmds::resume(
            &run_id,
            fleetbook_engine::session::ResumeOptions {
                retry_unknown,
                skip_unknown,
                replan,
                shared: false,
            },
            Given {
                params: &params,
                lib_dirs: &lib_dirs,
                libs,
                run: &run,
            },
        ),
        Command::Rollback {
            run_id,
            limit,
            undo_unknown,
            skip_unknown,
            params,
            lib_dirs,
            run,
        } => run_cmds::rollback(
            &run_id,
            limit.as_deref(),
            match (undo_unknown, skip_unknown) {
                (true, _) => fleetbook_engine::session::Unknown::Undo,
                (_, true) => fleetbook_engine::session::Unknown::Skip,
                _ => fleetbook_engine::session::Unknown::Refuse,
            },
            Given {
                params: &params,
                lib_dirs: &lib_dirs,
                libs,
                run: &run,
            },
        ),
        _ => unreachable!("commands::run sends only the planning commands here"),
    }
}

/// `fleetbook plan`: the plan in the chosen format, to standard output or a file.
fn plan_cmd(
    runbook: &std::path::Path,
    inventory: Option<&std::path::Path>,
    script: &ScriptArgs,
    limit: Option<&str>,
    format: Format,
    output: Option<std::path::PathBuf>,
    libs: &Libraries,
) -> Result<i32> {
    let inventory = project::need_inventory(inventory)?;
    if let Some(out) = &output {
        crate::cli::refuse_to_overwrite(out, &[("runbook", runbook), ("inventory", inventory)])?;
    }
    let planned = plan_of(runbook, inventory, script, limit, libs)?;
    let p = &planned.plan;
    for w in &p.warnings {
        eprintln!("warning: {w}");
    }
    let text = match format {
        Format::Text => render::text(p),
        Format::Json => {
            let mut s =
                serde_json::to_string_pretty(p).map_err(|e| Error::Internal(e.to_string()))?;
            s.push('\n');
            s
        }
        Format::Dot => render::dot(p),
        Format::Mermaid => render::mermaid(p),
        Format::Html => render::html(p),
    };
    write_output(output.as_deref(), &text)?;
    if let Some(path) = output {
        eprintln!(
            "plan of {} on {} ({}) written to {}",
            p.runbook.name,
            render::count(p.hosts.len(), "host"),
            render::count(p.tasks.len(), "task"),
            path.display()
        );
    }
    Ok(exit::OK)
}

/// `status`, `watch`, `runs`, `abort`, `approve` and `unlock`: the commands that read or
/// steer recorded runs.
fn recorded(command: Command) -> Result<i32> {
    match command {
        Command::Status {
            run_id,
            state,
            format,
            output,
            watch,
        } => run_cmds::status(run_id.as_deref(), &state, format, output.as_deref(), watch),
        Command::Watch {
            run_id,
            state,
            control,
            listen,
            token_file,
        } => {
            fleetbook_views::web::watch(fleetbook_views::web::WatchArgs {
                store: state.open_recorded()?,
                run: run_id,
                page: state.page_options(true),
                control,
                listen,
                token_file,
                print: &exit::print,
            })?;
            Ok(exit::OK)
        }
        Command::Runs { state, format } => run_cmds::runs(&state, format),
        Command::Abort { run_id, now, state } => run_cmds::abort(&run_id, now, &state),
        Command::Approve {
            run_id,
            gate,
            state,
        } => run_cmds::approve(&run_id, gate.as_deref(), &state),
        Command::Unlock { state, yes } => run_cmds::unlock(&state, yes),
        _ => unreachable!("commands::run sends only the commands on recorded runs here"),
    }
}

/// The authoring and inspection tools: check, lib, config, inventory, lsp, definitions,
/// test, doc, completions, man and exec.
fn tools(command: Command, ctx: &Context) -> Result<i32> {
    match command {
        Command::Check {
            runbook,
            inventory,
            script,
            format,
        } => crate::check_cmd::command(
            &runbook,
            inventory.as_deref(),
            &script,
            format,
            ctx.libs,
            ctx.verbose,
        ),
        Command::Lib { command } => crate::lib_cmd::run(command, ctx.project),
        Command::Config { state, format } => {
            let text = project::show(
                ctx.project,
                state.dir.as_deref(),
                format == crate::cli::ReportFormat::Json,
            )?;
            exit::print(&text)?;
            Ok(exit::OK)
        }
        Command::Inventory {
            inventory,
            limit,
            list: _,
            graph,
            host,
            vault,
            playbook_dir,
        } => inventory_cmd::run(
            &inventory,
            limit.as_deref(),
            graph,
            host,
            &vault,
            playbook_dir,
        ),
        Command::Lsp { .. } => {
            fleetbook_tooling::lsp::serve(fleetbook_tooling::lsp::project_settings)?;
            Ok(exit::OK)
        }
        Command::Definitions { output, lib_dirs } => {
            let written = fleetbook_tooling::definitions::write(&output, &lib_dirs)?;
            eprintln!(
                "{} definition files written to {}",
                written.len(),
                output.display()
            );
            Ok(exit::OK)
        }
        Command::Test { path, lib_dirs } => {
            crate::test_cmd::run(path.as_deref(), ctx.here, &lib_dirs, ctx.libs)
        }
        Command::Doc { lib, format } => {
            let format = match format {
                crate::cli::DocFormat::Text => fleetbook_tooling::doc::DocFormat::Text,
                crate::cli::DocFormat::Md => fleetbook_tooling::doc::DocFormat::Md,
            };
            exit::print(&fleetbook_tooling::doc::render(lib.as_deref(), format)?)?;
            Ok(exit::OK)
        }
        Command::Completions { shell } => {
            write_output(None, &crate::cli::complete::registration(shell)?)?;
            Ok(exit::OK)
        }
        Command::Man { output: Some(dir) } => {
            let written = crate::cli::man::write_to(&dir)?;
            eprintln!(
                "{} manual pages written to {}",
                written.len(),
                dir.display()
            );
            Ok(exit::OK)
        }
        Command::Man { output: None } => {
            let pages = crate::cli::man::pages()?;
            write_output(None, &pages[0].1)?;
            Ok(exit::OK)
        }
        Command::Exec {
            inventory,
            pattern,
            forks,
            group_identical,
            timeout,
            ssh,
            command,
        } => adhoc::adhoc(
            project::need_inventory(inventory.as_deref())?,
            &pattern,
            forks.unwrap_or(10),
            group_identical,
            timeout.as_deref(),
            &ssh,
            &command.join(" "),
        ),
        _ => unreachable!("commands::run sends the planning and recorded-run commands elsewhere"),
    }
}

/// Plans a runbook file against an inventory file with the command line's parameters.
fn plan_of(
    runbook: &std::path::Path,
    inventory: &std::path::Path,
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

pub(crate) fn write_output(path: Option<&std::path::Path>, text: &str) -> Result<()> {
    match path {
        Some(p) => {
            // Write next to the target and rename, so a failure never leaves half a plan.
            let tmp = p.with_extension("fleetbook-tmp");
            std::fs::write(&tmp, text)
                .and_then(|_| std::fs::rename(&tmp, p))
                .map_err(|e| Error::input(format!("cannot write {}: {e}", p.display())))
        }
        None => exit::print(text),
    }
}
