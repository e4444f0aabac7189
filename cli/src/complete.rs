//! Shell completion (clap_complete's dynamic engine): the shell runs
//! `COMPLETE=SHELL fleetbook -- WORDS...` and fleetbook answers with candidates, so that
//! run ids, approval names and host patterns come from the state and inventory in force.
//!
//! A completer is only given the word being completed; what else is on the line (`-i`,
//! `--state`, the run id, the runbook) is read from the words the shell passed after `--`,
//! parsed by the same command tree with errors ignored.

use clap::ArgMatches;
use clap_complete::engine::{ArgValueCompleter, CompletionCandidate};
use fleetbook_engine::inventory::Inventory;
use fleetbook_engine::project::Project;
use fleetbook_engine::store::TaskState;
use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

/// Adds the completers to every argument that takes a run id, an approval name or a host
/// pattern, by argument id (so new subcommands with the same arguments get them too).
pub fn attach(mut cmd: clap::Command) -> clap::Command {
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    for name in names {
        // `mut_args` keeps the arguments' order (help, man pages, docs/cli.md).
        cmd = cmd.mut_subcommand(&name, |sub| {
            sub.mut_args(|a| {
                let completer = match (name.as_str(), a.get_id().as_str()) {
                    (_, "run_id") => ArgValueCompleter::new(run_ids),
                    (_, "gate" | "approve") => ArgValueCompleter::new(gates),
                    ("inventory", "host") => ArgValueCompleter::new(hosts),
                    ("inventory", "graph") => ArgValueCompleter::new(groups),
                    (_, "limit" | "pattern") => ArgValueCompleter::new(patterns),
                    _ => return a,
                };
                a.add(completer)
            })
        });
    }
    cmd
}

/// `fleetbook completions SHELL`: the script that registers the dynamic completer, the
/// same as `COMPLETE=SHELL fleetbook` prints.
pub fn registration(shell: clap_complete::Shell) -> fleetbook_engine::Result<String> {
    use clap_complete::env::{Bash, Elvish, EnvCompleter, Fish, Powershell, Zsh};
    use clap_complete::Shell as S;
    let completer: &dyn EnvCompleter = match shell {
        S::Bash => &Bash,
        S::Elvish => &Elvish,
        S::Fish => &Fish,
        S::PowerShell => &Powershell,
        S::Zsh => &Zsh,
        other => {
            return Err(fleetbook_engine::Error::input(format!(
                "no completion for {other}"
            )))
        }
    };
    // As CompleteEnv does: a bare name is looked up on $PATH when completing; a path is
    // made absolute so the script works from any directory.
    let mut bin = std::env::args_os()
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("fleetbook"));
    if bin.components().count() > 1 && bin.is_relative() {
        if let Ok(here) = std::env::current_dir() {
            bin = here.join(bin);
        }
    }
    let mut out = Vec::new();
    completer
        .write_registration(
            "COMPLETE",
            "fleetbook",
            "fleetbook",
            &bin.to_string_lossy(),
            &mut out,
        )
        .map_err(|e| fleetbook_engine::Error::Internal(e.to_string()))?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// What is on the command line before the word being completed.
struct Line {
    sub: String,
    m: ArgMatches,
}

impl Line {
    fn read() -> Option<Line> {
        let args: Vec<OsString> = std::env::args_os().collect();
        let words = &args[args.iter().position(|a| a == "--")? + 1..];
        // bash and zsh say which word is completed; fish passes the line up to it.
        let index = std::env::var("_CLAP_COMPLETE_INDEX")
            .ok()
            .and_then(|i| i.parse::<usize>().ok())
            .unwrap_or(words.len().saturating_sub(1))
            .min(words.len());
        let m = crate::command()
            .ignore_errors(true)
            .try_get_matches_from(&words[..index])
            .ok()?;
        let (sub, m) = m.subcommand()?;
        Some(Line {
            sub: sub.to_string(),
            m: m.clone(),
        })
    }

    fn get<T: Clone + Send + Sync + 'static>(&self, id: &str) -> Option<T> {
        self.m.try_get_one::<T>(id).ok().flatten().cloned()
    }

    fn project(&self) -> Option<Project> {
        let here = std::env::current_dir().ok()?;
        crate::find_project(&here).ok().flatten()
    }

    /// The store in force, by the one rule (project.rs); none when there is none yet.
    fn store(&self) -> Option<std::sync::Arc<dyn fleetbook_engine::store::RunStore>> {
        let flag: Option<PathBuf> = self.get("dir");
        let (dir, _) =
            fleetbook_engine::project::state_dir(flag.as_deref(), self.project().as_ref());
        // An etcd cluster could keep the shell waiting: completions read only a journal.
        if !fleetbook_engine::store::exists(&dir) || fleetbook_engine::store::is_etcd(&dir) {
            return None;
        }
        fleetbook_engine::store::open(&dir).ok()
    }

    /// The inventory in force: `-i` on the line, else the project file's.
    fn inventory(&self) -> Option<Inventory> {
        let path = match self.get::<PathBuf>("inventory") {
            Some(p) if p.as_os_str() == "-" => return None,
            Some(p) => p,
            None => {
                let p = self.project()?;
                p.path(p.settings.inventory.as_deref()?)
            }
        };
        Inventory::load(&path).ok()
    }
}

fn matching(
    current: &OsStr,
    names: impl IntoIterator<Item = (String, String)>,
) -> Vec<CompletionCandidate> {
    let current = current.to_string_lossy();
    let mut seen = std::collections::BTreeSet::new();
    names
        .into_iter()
        .filter(|(name, _)| name.starts_with(current.as_ref()) && seen.insert(name.clone()))
        .map(|(name, help)| CompletionCandidate::new(name).help(Some(help.into())))
        .collect()
}

fn run_ids(current: &OsStr) -> Vec<CompletionCandidate> {
    let Some(store) = Line::read().and_then(|l| l.store()) else {
        return Vec::new();
    };
    let runs = store.runs().unwrap_or_default();
    matching(
        current,
        runs.into_iter()
            .map(|r| (r.id, format!("{} {}", r.runbook, r.state))),
    )
}

/// The approvals of the run on the line (approve, resume, rollback), of the runbook on
/// the line (run) or of the saved plan (apply).
fn gates(current: &OsStr) -> Vec<CompletionCandidate> {
    let Some(line) = Line::read() else {
        return Vec::new();
    };
    let names: Vec<(String, String)> = match line.sub.as_str() {
        "run" => line
            .get::<PathBuf>("runbook")
            .map(|rb| runbook_approvals(&line, &rb))
            .unwrap_or_default(),
        "apply" => line
            .get::<PathBuf>("plan")
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .map(|plan| {
                plan["tasks"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|t| t["kind"] == "approval")
                    .filter_map(|t| t["step"].as_str())
                    .map(|s| (s.to_string(), "approval of the plan".to_string()))
                    .collect()
            })
            .unwrap_or_default(),
        _ => {
            let (Some(store), Some(id)) = (line.store(), line.get::<String>("run_id")) else {
                return Vec::new();
            };
            let mut tasks = store.tasks(&id).unwrap_or_default();
            // The ones the run waits for first.
            tasks.sort_by_key(|t| t.state != TaskState::WaitingApproval);
            tasks
                .into_iter()
                .filter(|t| t.kind == "approval")
                .filter_map(|t| {
                    let help = if t.state == TaskState::WaitingApproval {
                        "the run waits for it".to_string()
                    } else {
                        format!("approval ({})", t.state)
                    };
                    t.step.map(|s| (s, help))
                })
                .collect()
        }
    };
    matching(current, names)
}

/// The approvals a runbook declares: compiled with the parameters on the line; a runbook
/// that does not compile yet is read for `approval("NAME"`.
fn runbook_approvals(line: &Line, runbook: &std::path::Path) -> Vec<(String, String)> {
    use fleetbook_engine::model::Scope;
    let params: std::collections::BTreeMap<String, String> = line
        .m
        .try_get_many::<(String, String)>("params")
        .ok()
        .flatten()
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    let libs: Vec<PathBuf> = line
        .m
        .try_get_many::<PathBuf>("lib_dirs")
        .ok()
        .flatten()
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    let help = |role: &str| format!("approval after {role}");
    let deps = std::env::current_dir()
        .ok()
        .and_then(|d| crate::find_project(&d).ok().flatten())
        .and_then(|p| fleetbook_engine::project::libraries(Some(&p)).ok())
        .unwrap_or_default();
    if let Ok((script, _)) = fleetbook_engine::plan::load_script(runbook, &params, &libs, &deps) {
        return script
            .runbook
            .steps
            .iter()
            .filter_map(|s| match &s.scope {
                Scope::Approval(role) => Some((s.name.clone(), help(role))),
                _ => None,
            })
            .collect();
    }
    let text = std::fs::read_to_string(runbook).unwrap_or_default();
    text.split("approval(")
        .skip(1)
        .filter_map(|rest| {
            let rest = rest.trim_start().strip_prefix('"')?;
            Some((rest.split('"').next()?.to_string(), "approval".to_string()))
        })
        .collect()
}

/// Host patterns: groups and hosts of the inventory in force (for `rollback`, of the run),
/// after what the word already holds up to its last `:`, `&`, `!` or `,`.
fn patterns(current: &OsStr) -> Vec<CompletionCandidate> {
    let current = current.to_string_lossy();
    let cut = current.rfind([':', '&', '!', ',']).map_or(0, |i| i + 1);
    let (head, tail) = current.split_at(cut);
    let names = Line::read().map(|l| names_in_force(&l)).unwrap_or_default();
    matching(OsStr::new(tail), names)
        .into_iter()
        .map(|c| {
            let value = format!("{head}{}", c.get_value().to_string_lossy());
            let help = c.get_help().cloned();
            CompletionCandidate::new(value).help(help)
        })
        .collect()
}

fn hosts(current: &OsStr) -> Vec<CompletionCandidate> {
    let names = Line::read().map(|l| names_in_force(&l)).unwrap_or_default();
    matching(current, names.into_iter().filter(|(_, h)| h == "host"))
}

fn groups(current: &OsStr) -> Vec<CompletionCandidate> {
    let names = Line::read().map(|l| names_in_force(&l)).unwrap_or_default();
    matching(current, names.into_iter().filter(|(_, h)| h != "host"))
}

/// (name, "group, N hosts" or "host"): groups first.
fn names_in_force(line: &Line) -> Vec<(String, String)> {
    if line.sub == "rollback" {
        let (Some(store), Some(id)) = (line.store(), line.get::<String>("run_id")) else {
            return Vec::new();
        };
        let hosts = store.hosts(&id).unwrap_or_default();
        let mut groups: std::collections::BTreeMap<String, usize> = Default::default();
        for (_, gs) in &hosts {
            for g in gs {
                *groups.entry(g.clone()).or_default() += 1;
            }
        }
        return groups
            .into_iter()
            .map(|(g, n)| (g, format!("group, {}", count(n))))
            .chain(hosts.into_iter().map(|(h, _)| (h, "host".to_string())))
            .collect();
    }
    let Some(inv) = line.inventory() else {
        return Vec::new();
    };
    inv.groups
        .keys()
        .map(|g| (g.clone(), format!("group, {}", count(inv.members(g).len()))))
        .chain(inv.hosts.keys().map(|h| (h.clone(), "host".to_string())))
        .collect()
}

fn count(n: usize) -> String {
    fleetbook_engine::render::count(n, "host")
}
