//! One function per subcommand: glue between the arguments and the engine.

use crate::cli::{Cli, Command, EventsFormat, Format, ScriptArgs, SshArgs};
use crate::exit;
use crate::progress::{recap, Progress};
use fleetbook_engine::exec::{self, Control, ExecOptions, RunStatus};
use fleetbook_engine::inventory::{pattern, Inventory};
use fleetbook_engine::transport::{local::Local, ssh, Router};
use fleetbook_engine::{compile, plan, render, Error, Result};
use fleetbook_stdlib::duration::parse_duration;
use fleetbook_stdlib::{HostInfo, Transport, TransportError};
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

pub fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Check { runbook, script } => check(&runbook, &script),
        Command::Plan {
            runbook,
            inventory,
            script,
            limit,
            format,
            output,
        } => {
            let params = script.param_map().map_err(Error::input)?;
            let planned = plan::plan(&plan::PlanRequest {
                runbook: &runbook,
                inventory: &inventory,
                params: &params,
                limit: limit.as_deref(),
                lib_dirs: &script.lib_dirs,
            })?;
            let p = &planned.plan;
            for w in &p.warnings {
                eprintln!("warning: {w}");
            }
            let text = match format {
                Format::Text => render::text(p),
                Format::Json => {
                    let mut s = serde_json::to_string_pretty(p)
                        .map_err(|e| Error::Internal(e.to_string()))?;
                    s.push('\n');
                    s
                }
                Format::Dot => render::dot(p),
                Format::Mermaid => render::mermaid(p),
            };
            write_output(output.as_deref(), &text)?;
            if let Some(path) = output {
                eprintln!(
                    "plan of {} on {} hosts ({} tasks) written to {}",
                    p.runbook.name,
                    p.hosts.len(),
                    p.tasks.len(),
                    path.display()
                );
            }
            Ok(exit::OK)
        }
        Command::Run {
            runbook,
            inventory,
            script,
            limit,
            yes,
            events,
            approve,
            ssh,
        } => {
            let params = script.param_map().map_err(Error::input)?;
            let planned = plan::plan(&plan::PlanRequest {
                runbook: &runbook,
                inventory: &inventory,
                params: &params,
                limit: limit.as_deref(),
                lib_dirs: &script.lib_dirs,
            })?;
            run_planned(
                planned,
                yes,
                events.is_some_and(|e| e == EventsFormat::Jsonl),
                approve,
                &ssh,
            )
        }
        Command::Exec {
            inventory,
            pattern,
            forks,
            group_identical,
            timeout,
            ssh,
            command,
        } => adhoc(
            &inventory,
            &pattern,
            forks,
            group_identical,
            timeout.as_deref(),
            &ssh,
            &command.join(" "),
        ),
    }
}

fn transport(args: &SshArgs) -> Result<Arc<Router>> {
    let connect_timeout = parse_duration(&args.connect_timeout)
        .map_err(|e| Error::input(format!("--connect-timeout: {e}")))?;
    if args.accept_new_host_keys {
        eprintln!("warning: --accept-new-host-keys: unknown host keys are trusted and remembered; a man in the middle would go unnoticed");
    }
    let ssh = ssh::Ssh::new(ssh::SshOptions {
        config_file: args.ssh_config.clone(),
        accept_new_host_keys: args.accept_new_host_keys,
        connect_timeout,
        max_per_host: args.max_per_host,
    })
    .map_err(|e| Error::Internal(format!("cannot start the ssh transport: {e}")))?;
    Ok(Arc::new(Router {
        local: Arc::new(Local::default()),
        ssh: Arc::new(ssh),
    }))
}

/// Ctrl-C once asks to stop starting work; twice asks to kill what runs.
fn install_ctrl_c(control: Arc<Control>) {
    let presses = AtomicUsize::new(0);
    let _ = ctrlc::set_handler(move || {
        let n = presses.fetch_add(1, Ordering::SeqCst) + 1;
        if n == 1 {
            control.stop.store(true, Ordering::SeqCst);
            eprintln!("\nstopping: no new host starts; steps in flight finish (Ctrl-C again to kill them)");
        } else {
            control.kill.store(true, Ordering::SeqCst);
            eprintln!("\nkilling the steps in flight");
        }
    });
}

fn summary(p: &plan::Plan) -> String {
    let roles: Vec<String> = p
        .roles
        .iter()
        .filter(|r| r.hosts > 0)
        .map(|r| {
            format!(
                "{} {}{}",
                r.name,
                r.hosts,
                r.limit.map(|l| format!(" (limit {l})")).unwrap_or_default()
            )
        })
        .collect();
    format!(
        "runbook {} on {} hosts, {} tasks; roles: {}; estimated {}",
        p.runbook.name,
        p.hosts.len(),
        p.tasks.len(),
        roles.join(", "),
        fleetbook_stdlib::duration::format_duration(std::time::Duration::from_secs(p.duration))
    )
}

fn run_planned(
    planned: plan::Planned,
    yes: bool,
    jsonl: bool,
    approvals: Vec<String>,
    ssh: &SshArgs,
) -> Result<i32> {
    let p = &planned.plan;
    for w in &p.warnings {
        eprintln!("warning: {w}");
    }
    eprintln!("{}", summary(p));
    let interactive = std::io::stdin().is_terminal();
    if !yes {
        if !interactive {
            return Err(Error::input_with_help(
                "refusing to run without confirmation: standard input is not a terminal",
                "review the plan with `fleetbook plan`, then pass --yes",
            ));
        }
        eprint!("Run it? [y/N] ");
        let mut answer = String::new();
        let _ = std::io::stdin().read_line(&mut answer);
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            eprintln!("not run");
            return Ok(exit::ABORTED);
        }
    }
    let transport = transport(ssh)?;
    let control = Arc::new(Control::default());
    install_ctrl_c(control.clone());
    let progress = Progress::new(p, std::io::stderr().is_terminal(), jsonl);
    let ask = Mutex::new(());
    let approve = |name: &str| -> bool {
        if approvals.iter().any(|a| a == name) {
            return true;
        }
        if !interactive {
            eprintln!("approval {name:?} needed: not given (pass --approve {name})");
            return false;
        }
        let _one_at_a_time = ask.lock();
        eprint!("\napproval {name:?}: go on? [y/N] ");
        let mut answer = String::new();
        let _ = std::io::stdin().read_line(&mut answer);
        matches!(answer.trim(), "y" | "Y" | "yes")
    };
    let outcome = exec::execute(
        &planned,
        ExecOptions {
            transport,
            control,
            on_event: &|e| progress.event(e),
            approve: &approve,
        },
    );
    progress.finish();
    eprint!("{}", recap(&outcome));
    Ok(match outcome.status {
        RunStatus::Succeeded => exit::OK,
        RunStatus::SucceededWithFailures => exit::FAILURES,
        RunStatus::Halted => exit::HALTED,
        RunStatus::Aborted => exit::ABORTED,
    })
}

/// One host's answer to an ad-hoc command.
type Answer = std::result::Result<fleetbook_stdlib::Output, TransportError>;

fn adhoc(
    inventory: &std::path::Path,
    pat: &str,
    forks: usize,
    group: bool,
    timeout: Option<&str>,
    ssh: &SshArgs,
    command: &str,
) -> Result<i32> {
    let inv = Inventory::load(inventory)?;
    let selected = pattern::select(&inv, pat)?;
    let timeout = timeout
        .map(parse_duration)
        .transpose()
        .map_err(|e| Error::input(format!("--timeout: {e}")))?;
    let vars = inv.all_host_vars();
    let hosts: Vec<HostInfo> = selected
        .iter()
        .map(|h| HostInfo {
            name: h.clone(),
            roles: inv.direct_groups(h),
            vars: vars
                .get(h)
                .map(|v| v.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
        })
        .collect();
    let transport = transport(ssh)?;
    let control = Arc::new(Control::default());
    install_ctrl_c(control.clone());
    let next = AtomicUsize::new(0);
    let answers: Mutex<Vec<Option<Answer>>> = Mutex::new(vec![None; hosts.len()]);
    std::thread::scope(|scope| {
        for _ in 0..forks.clamp(1, hosts.len().max(1)) {
            scope.spawn(|| loop {
                if control.stop.load(Ordering::SeqCst) {
                    break;
                }
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(h) = hosts.get(i) else { break };
                let a = transport.exec(h, command, timeout);
                answers.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(a);
            });
        }
        scope.spawn(|| {
            while next.load(Ordering::SeqCst) < hosts.len() + forks
                && !control.kill.load(Ordering::SeqCst)
            {
                std::thread::sleep(std::time::Duration::from_millis(100));
                if answers
                    .lock()
                    .map(|a| a.iter().all(Option::is_some))
                    .unwrap_or(true)
                {
                    return;
                }
            }
            if control.kill.load(Ordering::SeqCst) {
                transport.kill_all();
            }
        });
    });
    transport.shutdown();
    let answers = answers.into_inner().unwrap_or_else(|e| e.into_inner());
    let render = |a: &Option<Answer>| -> (String, bool) {
        match a {
            None => ("(not run)\n".into(), false),
            Some(Ok(o)) => {
                let mut text = format!("rc={}\n{}", o.code, o.stdout);
                if !o.stderr.is_empty() {
                    text.push_str(&o.stderr);
                }
                (text, o.code == 0)
            }
            Some(Err(e)) => (format!("{e}\n"), false),
        }
    };
    let mut groups: Vec<(Vec<&str>, String)> = Vec::new();
    let mut all_ok = true;
    for (h, a) in hosts.iter().zip(&answers) {
        let (text, ok) = render(a);
        all_ok &= ok;
        match groups.iter_mut().find(|(_, t)| group && *t == text) {
            Some((names, _)) => names.push(&h.name),
            None => groups.push((vec![&h.name], text)),
        }
    }
    let mut out = std::io::stdout().lock();
    for (names, text) in groups {
        let header = names.join(",");
        let _ = writeln!(
            out,
            "{}\n{header}\n{}\n{}",
            "-".repeat(header.len().min(78)),
            "-".repeat(header.len().min(78)),
            text.trim_end()
        );
    }
    Ok(if all_ok { exit::OK } else { exit::FAILURES })
}

fn check(runbook: &std::path::Path, args: &ScriptArgs) -> Result<i32> {
    let params = args.param_map().map_err(Error::input)?;
    let (script, _) = plan::load_script(runbook, &params, &args.lib_dirs)?;
    let warnings = compile::validate(&script)?;
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    let rb = &script.runbook;
    let roles: Vec<String> = rb.named_roles().into_iter().map(|(r, _)| r).collect();
    println!(
        "ok: runbook {:?} ({}): {} step{}, {} parameter{}{}",
        rb.name,
        runbook.display(),
        rb.steps.len(),
        if rb.steps.len() == 1 { "" } else { "s" },
        script.params.len(),
        if script.params.len() == 1 { "" } else { "s" },
        if roles.is_empty() {
            String::new()
        } else {
            format!(", roles {}", roles.join(", "))
        }
    );
    Ok(exit::OK)
}

fn write_output(path: Option<&std::path::Path>, text: &str) -> Result<()> {
    match path {
        Some(p) => {
            // Write next to the target and rename, so a failure never leaves half a plan.
            let tmp = p.with_extension("fleetbook-tmp");
            std::fs::write(&tmp, text)
                .and_then(|_| std::fs::rename(&tmp, p))
                .map_err(|e| Error::input(format!("cannot write {}: {e}", p.display())))
        }
        None => {
            let mut out = std::io::stdout().lock();
            match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
                // A closed pipe (`| head`) is the reader's choice, not an error.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                other => other.map_err(|e| Error::Internal(format!("cannot write to stdout: {e}"))),
            }
        }
    }
}
