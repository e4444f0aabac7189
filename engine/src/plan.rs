//! The plan: the compiled DAG for an inventory, the recorded commands of every task and the
//! simulated schedule, in the serialisable form that `fleetbook plan` prints and saves.
//! `docs/plan-schema.md` documents it; bump [`SCHEMA_VERSION`] on any incompatible change.

use crate::compile::{self, Graph, TaskKind};
use crate::error::{read_file, Result};
use crate::inventory::Inventory;
use crate::model::Scope;
use crate::schedule;
use crate::script::{self, Limits, Script, ScriptInput};
use crate::secrets::Secrets;
use crate::shared::{Interner, NameMap, Shared, SharedList};
use crate::transport::dry_run;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub schema_version: u32,
    pub fleetbook_version: String,
    pub runbook: RunbookInfo,
    pub runbook_digest: String,
    pub inventory: String,
    pub inventory_digest: String,
    /// Every library the runbook imported from, with the digest of each file it used.
    #[serde(default)]
    pub libraries: Vec<LibraryInfo>,
    pub limit_pattern: Option<String>,
    pub params: Vec<ParamInfo>,
    pub limits: LimitsInfo,
    pub roles: Vec<RoleInfo>,
    pub hosts: Vec<HostInfo>,
    pub tasks: Vec<TaskInfo>,
    /// Simulated total duration, in seconds (the unit of every `start`/`end`).
    pub duration: u64,
    pub time_unit: String,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunbookInfo {
    pub name: String,
    pub description: String,
    pub path: String,
    pub rollback_on_failure: bool,
    /// Whose steps a failure rolls back: `host`, `role` or `run`.
    pub rollback_scope: crate::model::RollbackScope,
    /// `rb.deadline(...)` in seconds: no host starts after it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(default)]
    pub deadline: Option<u64>,
    /// `rb.become(true)`: host operations that need root use sudo by default.
    pub r#become: bool,
    pub steps: Vec<StepInfo>,
}

/// A library a plan was made with: `local` is the runbook's own directory, `std` the
/// library embedded in fleetbook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LibraryInfo {
    pub name: String,
    pub version: Option<String>,
    pub source: String,
    /// The host-operation namespaces it may call (None: unrestricted).
    pub uses: Option<Vec<String>>,
    /// sha256 over its files below, in order (`path NUL digest NUL`...).
    pub digest: String,
    pub files: Vec<LibraryFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LibraryFile {
    pub path: String,
    pub sha256: String,
}

/// The libraries of a script, grouped from the files it used, in the order first used.
pub fn libraries_of(script: &Script) -> Vec<LibraryInfo> {
    let used = script.used.lock().unwrap_or_else(|e| e.into_inner());
    let mut out: Vec<LibraryInfo> = Vec::new();
    for f in &used.files {
        let file = LibraryFile {
            path: f.path.clone(),
            sha256: f.sha256.clone(),
        };
        match out.iter_mut().find(|l| l.name == f.library) {
            Some(l) => l.files.push(file),
            None => out.push(LibraryInfo {
                name: f.library.clone(),
                version: f.version.clone(),
                source: f.source.clone(),
                uses: f.uses.clone(),
                digest: String::new(),
                files: vec![file],
            }),
        }
    }
    for l in &mut out {
        l.files.sort_by(|a, b| a.path.cmp(&b.path));
        let mut bytes = Vec::new();
        for f in &l.files {
            bytes.extend_from_slice(f.path.as_bytes());
            bytes.push(0);
            bytes.extend_from_slice(f.sha256.as_bytes());
            bytes.push(0);
        }
        l.digest = digest(&bytes);
    }
    out
}

/// Why the libraries of a plan made now differ from a saved plan's (None: they do not):
/// the first library file added, removed or changed.
pub fn library_changes(saved: &[LibraryInfo], now: &[LibraryInfo]) -> Option<String> {
    let files = |ls: &[LibraryInfo]| -> BTreeMap<(String, String), (Option<String>, String)> {
        ls.iter()
            .flat_map(|l| {
                l.files.iter().map(move |f| {
                    (
                        (l.name.clone(), f.path.clone()),
                        (l.version.clone(), f.sha256.clone()),
                    )
                })
            })
            .collect()
    };
    let (old, new) = (files(saved), files(now));
    let label = |(lib, path): &(String, String), v: &Option<String>| match v {
        Some(v) => format!("{path} of library {lib} {v}"),
        None => format!("{path} of library {lib}"),
    };
    for (k, (v, d)) in &old {
        match new.get(k) {
            None => {
                return Some(format!(
                    "the library file {} is no longer used",
                    label(k, v)
                ))
            }
            Some((nv, _)) if nv != v => {
                return Some(format!(
                    "library {} is now version {}, the plan was made with {}",
                    k.0,
                    nv.as_deref().unwrap_or("-"),
                    v.as_deref().unwrap_or("-")
                ))
            }
            Some((_, nd)) if nd != d => {
                return Some(format!(
                    "the library file {} changed since the plan was made",
                    label(k, v)
                ))
            }
            Some(_) => {}
        }
    }
    new.iter()
        .find(|(k, _)| !old.contains_key(*k))
        .map(|(k, (v, _))| format!("the plan computed now also uses {}", label(k, v)))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepInfo {
    pub name: String,
    pub kind: String,
    /// Host steps: the roles they are limited to (none = every host). Role hooks: their role.
    pub roles: Option<Vec<String>>,
    pub timeout: Option<u64>,
    pub retries: u32,
    pub retry_delay: u64,
    pub throttle: Option<u32>,
    pub estimate: u64,
    pub has_undo: bool,
    pub conditional: bool,
    pub idempotent: bool,
    /// `.always()`: runs on a started host even after a failure or a stop.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    #[serde(default)]
    pub always: bool,
    /// `.soak(...)` in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(default)]
    pub soak: Option<u64>,
    pub line: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ParamInfo {
    pub name: String,
    pub value: String,
    pub default: String,
    pub secret: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LimitsInfo {
    pub total: Option<usize>,
    /// `rb.max_failures_total`: failed hosts tolerated in the whole run.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(default)]
    pub max_failures_total: Option<usize>,
    pub limit_by: Vec<LimitByInfo>,
    pub batches: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LimitByInfo {
    pub var: String,
    pub max: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoleInfo {
    pub name: String,
    pub hosts: usize,
    pub after: Vec<String>,
    /// Hosts in flight at once (none = unlimited), and as declared (`"25%"`).
    pub limit: Option<usize>,
    pub limit_declared: Option<String>,
    pub max_failures: Option<usize>,
    pub canary: Option<usize>,
    /// The role whose inventory group holds this one as a child (nested groups).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(default)]
    pub within: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostInfo {
    pub name: Shared,
    pub roles: Vec<String>,
    pub vars: NameMap<Shared, Shared>,
    pub start: u64,
    pub end: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskInfo {
    pub id: Shared,
    pub kind: TaskKind,
    pub host: Option<Shared>,
    pub step: Option<Shared>,
    pub role: Option<Shared>,
    pub start: u64,
    pub end: u64,
    // Not `Vec`s: no spare capacity, and a list of one (most tasks' commands and
    // dependencies) without an allocation of its own, in an array of a task per host and step.
    pub depends_on: SharedList,
    pub commands: SharedList,
    #[serde(skip_serializing_if = "<[Shared]>::is_empty")]
    #[serde(default)]
    pub undo_commands: SharedList,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    #[serde(default)]
    pub skipped: bool,
    /// It cannot start: it is, or waits for, a host of a held role (limit 0).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    #[serde(default)]
    pub held: bool,
}

/// What `fleetbook plan` is asked.
pub struct PlanRequest<'a> {
    pub runbook: &'a Path,
    pub inventory: &'a Path,
    pub params: &'a BTreeMap<String, String>,
    pub limit: Option<&'a str>,
    pub lib_dirs: &'a [PathBuf],
    /// The project's dependencies (checked against its lock).
    pub libs: &'a crate::libs::Libraries,
    /// Vault passwords for the inventory (`None`: those the environment names).
    pub vault: Option<&'a crate::inventory::VaultKeys>,
}

/// A compiled runbook with its plan: what the executor needs (script and graph) and what
/// the user sees (plan).
pub struct Planned {
    pub script: Script,
    pub graph: Graph,
    pub plan: Plan,
    /// Every secret value of this run; what leaves the engine is redacted with it.
    pub secrets: Secrets,
}

/// The secrets of a run: the script's secret parameters and every host's secret variables
/// (named like credentials, or marked by the runbook or the inventory), planned or not.
pub fn secrets_of(script: &Script, graph: &Graph) -> Secrets {
    let secrets = script.secrets.clone();
    for h in graph.hosts.iter().chain(&graph.outside) {
        secrets.add_typed_vars(&h.vars, &h.values, &script.runbook.secret_vars);
    }
    secrets
}

pub fn digest(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Compiles a runbook file without an inventory (`fleetbook check`).
/// The directory a runbook's relative imports start from: its own (`.` for a bare name).
pub fn script_dir(path: &Path) -> Option<&Path> {
    path.parent().map(|p| {
        if p.as_os_str().is_empty() {
            Path::new(".")
        } else {
            p
        }
    })
}

pub fn load_script(
    path: &Path,
    params: &BTreeMap<String, String>,
    lib_dirs: &[PathBuf],
    libs: &crate::libs::Libraries,
) -> Result<(Script, String)> {
    let text = read_file(path)?;
    let name = path.display().to_string();
    let script = script::compile(ScriptInput {
        name: &name,
        text: &text,
        dir: script_dir(path),
        lib_dirs,
        libs,
        params,
        limits: Limits::default(),
    })?;
    Ok((script, digest(text.as_bytes())))
}

/// Compiles, records and schedules: the whole of `fleetbook plan`.
pub fn plan(req: &PlanRequest) -> Result<Planned> {
    let _span = tracing::info_span!("plan", runbook = %req.runbook.display()).entered();
    let started = std::time::Instant::now();
    let (script, runbook_digest) = load_script(req.runbook, req.params, req.lib_dirs, req.libs)?;
    tracing::info!(
        steps = script.runbook.steps.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "runbook compiled"
    );
    // As Ansible reads a playbook's: group_vars/ and host_vars/ beside the inventory and
    // beside the runbook; the digest covers every file read.
    let vault = match req.vault {
        Some(v) => v.clone(),
        None => crate::inventory::VaultKeys::from_env().map_err(crate::Error::input)?,
    };
    let playbook_dir = req
        .runbook
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .map(Path::to_path_buf);
    let inventory = Inventory::load_with(
        req.inventory,
        &crate::inventory::LoadOptions {
            vault,
            playbook_dir,
        },
    )?;
    tracing::info!(
        inventory = %req.inventory.display(),
        hosts = inventory.hosts.len(),
        "inventory loaded"
    );
    let inventory_digest = inventory.digest.clone();
    let planned = plan_loaded(
        script,
        runbook_digest,
        inventory,
        inventory_digest,
        req.limit,
    )?;
    tracing::info!(
        tasks = planned.plan.tasks.len(),
        hosts = planned.graph.hosts.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "plan built"
    );
    Ok(planned)
}

/// Returns to the system the memory freed by the stage that just ended, so that the next
/// stage's peak does not stack on it. The binaries allocate with mimalloc (src/main.rs),
/// which purges freed pages only after a delay (a second): collecting after each stage
/// lowered the peak of planning 10,000 hosts from 7.1 to 5.4 KiB a host (bench/README.md,
/// Planning). glibc's malloc (tests and embedders that keep the system allocator) keeps the
/// dry run's temporaries in another thread's arena that the plan's arrays made next cannot
/// reuse. Either call is a walk over free lists, small next to the stage before it.
fn give_back_freed_memory() {
    // SAFETY: mi_collect only returns memory mimalloc holds free; it does nothing to a heap
    // that never allocated.
    unsafe { libmimalloc_sys::mi_collect(true) };
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory; it is safe to call at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Plans an already compiled script against an already parsed inventory.
pub fn plan_loaded(
    script: Script,
    runbook_digest: String,
    mut inventory: Inventory,
    inventory_digest: String,
    limit: Option<&str>,
) -> Result<Planned> {
    let mut warnings = compile::validate(&script)?;
    let graph = compile::compile(&script, &inventory, limit)?;
    // The graph holds what the plan needs of the inventory, but its text: the parsed
    // inventory (every host's groups and variables) goes before the dry run starts.
    let inventory_text = std::mem::take(&mut inventory.source);
    drop(inventory);
    give_back_freed_memory();
    let secrets = secrets_of(&script, &graph);
    warnings.extend(graph.warnings.iter().cloned());
    // One allocation per distinct name and command, shared by every task that shows it.
    let interner = Interner::new();
    let recorded = dry_run::record(&script, &graph, &secrets, &interner)?;
    give_back_freed_memory();
    warnings.extend(recorded.warnings);
    let records = recorded.tasks;
    let skipped: Vec<bool> = records.iter().map(|r| r.skipped).collect();
    let sched = schedule::simulate(&graph, &skipped)?;
    give_back_freed_memory();
    if let Some(d) = graph.rules.deadline {
        if sched.duration > d.as_secs() {
            warnings.push(format!(
                "the simulated run takes {}, past rb.deadline({:?}): hosts not started by then will not start",
                fleetbook_stdlib::duration::format_duration(std::time::Duration::from_secs(sched.duration)),
                fleetbook_stdlib::duration::format_duration(d)
            ));
        }
    }
    let plan = assemble(
        &script,
        &graph,
        &secrets,
        records,
        &sched,
        &interner,
        &inventory_text,
        limit,
        runbook_digest,
        inventory_digest,
        warnings,
    );
    Ok(Planned {
        script,
        graph,
        plan,
        secrets,
    })
}

/// Plans a runbook and an inventory given as text (tests, benchmarks, embedding).
pub fn plan_text(
    runbook: &str,
    inventory: &str,
    format: crate::inventory::Format,
    params: &BTreeMap<String, String>,
    limit: Option<&str>,
) -> Result<Planned> {
    let script = script::compile(ScriptInput {
        name: "runbook.rhai",
        text: runbook,
        dir: None,
        lib_dirs: &[],
        libs: &crate::libs::Libraries::default(),
        params,
        limits: Limits::default(),
    })?;
    let inv = Inventory::parse("inventory", inventory, format)?;
    plan_loaded(
        script,
        digest(runbook.as_bytes()),
        inv,
        digest(inventory.as_bytes()),
        limit,
    )
}

#[allow(clippy::too_many_arguments)]
fn assemble(
    script: &Script,
    graph: &Graph,
    secrets: &Secrets,
    records: Vec<dry_run::TaskRecord>,
    sched: &schedule::Schedule,
    interner: &Interner,
    inventory: &str,
    limit: Option<&str>,
    runbook_digest: String,
    inventory_digest: String,
    warnings: Vec<String>,
) -> Plan {
    let rb = &script.runbook;
    let names = Names::of(graph, rb, secrets, interner);
    Plan {
        schema_version: SCHEMA_VERSION,
        fleetbook_version: env!("CARGO_PKG_VERSION").to_string(),
        runbook: RunbookInfo {
            name: secrets.redacted(&rb.name),
            description: secrets.redacted(&rb.description),
            path: script.name.clone(),
            rollback_on_failure: rb.rollback_on_failure,
            rollback_scope: rb.rollback_scope,
            deadline: rb.deadline.as_ref().map(|(d, _)| d.as_secs()),
            r#become: rb.become_default,
            steps: step_infos(script, secrets),
        },
        runbook_digest,
        inventory: inventory.to_string(),
        inventory_digest,
        libraries: libraries_of(script),
        limit_pattern: limit.map(str::to_string),
        params: param_infos(script),
        limits: limits_info(graph),
        roles: role_infos(graph),
        hosts: host_infos(graph, secrets, sched, &names, interner),
        tasks: task_infos(graph, records, sched, &names),
        duration: sched.duration,
        time_unit: "s".to_string(),
        warnings: warnings.iter().map(|w| secrets.redacted(w)).collect(),
    }
}

fn step_infos(script: &Script, secrets: &Secrets) -> Vec<StepInfo> {
    script
        .runbook
        .steps
        .iter()
        .map(|s| StepInfo {
            name: secrets.redacted(&s.name),
            kind: s.scope.kind().to_string(),
            roles: match &s.scope {
                Scope::Host { roles } => roles.clone(),
                other => other.role().map(|r| vec![r.to_string()]),
            },
            timeout: s.timeout.map(|d| d.as_secs()),
            retries: s.retries,
            retry_delay: s.retry_delay.as_secs(),
            throttle: s.throttle,
            estimate: s.estimate.unwrap_or(compile::UNIT).as_secs(),
            has_undo: s.undo.is_some(),
            conditional: s.when.is_some(),
            idempotent: s.idempotent,
            always: s.always,
            soak: s.soak.map(|d| d.as_secs()),
            line: s.pos.line,
        })
        .collect()
}

fn role_names(graph: &Graph, rs: &[usize]) -> Vec<String> {
    rs.iter().map(|&r| graph.roles[r].name.clone()).collect()
}

/// The names a plan repeats in every task, each made (and redacted) once: task ids, host,
/// step and role names.
struct Names {
    ids: Vec<Shared>,
    hosts: Vec<Shared>,
    steps: Vec<Shared>,
    roles: Vec<Shared>,
}

impl Names {
    fn of(graph: &Graph, rb: &crate::model::Runbook, secrets: &Secrets, i: &Interner) -> Names {
        Names {
            // The graph's own ids, copied only where a secret is redacted out of one.
            ids: graph
                .tasks
                .iter()
                .map(|t| match secrets.redact(&t.id) {
                    std::borrow::Cow::Borrowed(_) => t.id.clone(),
                    std::borrow::Cow::Owned(r) => Shared::from(r),
                })
                .collect(),
            hosts: graph.hosts.iter().map(|h| i.get(&h.name)).collect(),
            steps: rb
                .steps
                .iter()
                .map(|s| i.take(secrets.redacted(&s.name)))
                .collect(),
            roles: graph.roles.iter().map(|r| i.get(&r.name)).collect(),
        }
    }
}

fn host_infos(
    graph: &Graph,
    secrets: &Secrets,
    sched: &schedule::Schedule,
    names: &Names,
    interner: &Interner,
) -> Vec<HostInfo> {
    graph
        .hosts
        .iter()
        .enumerate()
        .map(|(h, host)| {
            let ts = &graph.host_tasks[h];
            HostInfo {
                name: names.hosts[h].clone(),
                roles: host
                    .roles
                    .iter()
                    .map(|&r| graph.roles[r].name.clone())
                    .collect(),
                // Keys and most values repeat across hosts (`ansible_user=ops`).
                vars: host
                    .vars
                    .iter()
                    .map(|(k, v)| {
                        let v = match secrets.redact(v) {
                            std::borrow::Cow::Borrowed(v) => interner.get(v),
                            std::borrow::Cow::Owned(v) => interner.take(v),
                        };
                        (interner.get(k), v)
                    })
                    .collect(),
                start: ts.first().map_or(0, |&t| sched.tasks[t].start),
                end: ts.last().map_or(0, |&t| sched.tasks[t].end),
            }
        })
        .collect()
}

fn task_infos(
    graph: &Graph,
    records: Vec<dry_run::TaskRecord>,
    sched: &schedule::Schedule,
    names: &Names,
) -> Vec<TaskInfo> {
    graph
        .tasks
        .iter()
        .zip(records)
        .enumerate()
        .map(|(t, (task, rec))| TaskInfo {
            id: names.ids[t].clone(),
            kind: task.kind,
            host: task.host.map(|h| names.hosts[h].clone()),
            step: task.step.map(|s| names.steps[s].clone()),
            role: task.role.map(|r| names.roles[r].clone()),
            start: sched.tasks[t].start,
            end: sched.tasks[t].end,
            depends_on: task.deps.indices().map(|d| names.ids[d].clone()).collect(),
            commands: rec.commands,
            undo_commands: rec.undo,
            skipped: rec.skipped,
            held: graph.held[t],
        })
        .collect()
}

/// The runbook's parameters, secret ones masked.
fn param_infos(script: &Script) -> Vec<ParamInfo> {
    let shown = |secret: bool, v: &str| {
        if secret {
            "<secret>".to_string()
        } else {
            v.to_string()
        }
    };
    script
        .params
        .iter()
        .map(|p| ParamInfo {
            name: p.name.clone(),
            value: shown(p.secret, &p.value),
            default: shown(p.secret, &p.default),
            secret: p.secret,
        })
        .collect()
}

fn limits_info(graph: &Graph) -> LimitsInfo {
    LimitsInfo {
        total: graph.rules.total,
        max_failures_total: graph.rules.max_failures_total,
        limit_by: graph
            .rules
            .by
            .iter()
            .map(|(v, m)| LimitByInfo {
                var: v.clone(),
                max: *m,
            })
            .collect(),
        batches: graph.rules.batches,
    }
}

fn role_infos(graph: &Graph) -> Vec<RoleInfo> {
    graph
        .roles
        .iter()
        .map(|r| RoleInfo {
            name: r.name.clone(),
            hosts: r.hosts.len(),
            after: role_names(graph, &r.after),
            limit: r.limit,
            limit_declared: r.limit_decl.map(|a| a.to_string()),
            max_failures: r.max_failures,
            canary: r.canary,
            within: r.within.map(|w| graph.roles[w].name.clone()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lib(name: &str, version: Option<&str>, files: &[(&str, &str)]) -> LibraryInfo {
        LibraryInfo {
            name: name.into(),
            version: version.map(Into::into),
            source: "path ../x".into(),
            uses: None,
            digest: String::new(),
            files: files
                .iter()
                .map(|(p, d)| LibraryFile {
                    path: p.to_string(),
                    sha256: d.to_string(),
                })
                .collect(),
        }
    }

    #[test]
    fn a_changed_added_or_removed_library_file_is_named() {
        let saved = [lib(
            "acme",
            Some("1.2.0"),
            &[("a.rhai", "1"), ("b.rhai", "2")],
        )];
        assert_eq!(library_changes(&saved, &saved), None);
        let changed = [lib(
            "acme",
            Some("1.2.0"),
            &[("a.rhai", "1"), ("b.rhai", "3")],
        )];
        assert_eq!(
            library_changes(&saved, &changed).unwrap(),
            "the library file b.rhai of library acme 1.2.0 changed since the plan was made"
        );
        let bumped = [lib(
            "acme",
            Some("1.3.0"),
            &[("a.rhai", "1"), ("b.rhai", "2")],
        )];
        assert!(library_changes(&saved, &bumped)
            .unwrap()
            .contains("now version 1.3.0"));
        let fewer = [lib("acme", Some("1.2.0"), &[("a.rhai", "1")])];
        assert!(library_changes(&saved, &fewer)
            .unwrap()
            .contains("b.rhai of library acme 1.2.0 is no longer used"));
        let more = [
            saved[0].clone(),
            lib("local", None, &[("helpers.rhai", "9")]),
        ];
        assert!(library_changes(&saved, &more)
            .unwrap()
            .contains("also uses helpers.rhai of library local"));
    }
}
