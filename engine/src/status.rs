//! Where a run stands, from its store: each host upgraded / upgrading / pending / failed /
//! rolled back, counts per role, the StarlingX-style overall state, the approval it waits
//! for and the runbook-level tasks. `fleetbook status` prints it; a live view can too.

use crate::error::Result;
use crate::journal::{RunRecord, TaskRow};
use crate::store::{RunState, RunStore, TaskState};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// Where a host stands, from the states of its tasks. Declared in the order of the names,
/// so that a role's counts (a map keyed by it) print in the order they always did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HostState {
    Failed,
    Pending,
    RolledBack,
    Upgraded,
    Upgrading,
}

impl HostState {
    pub fn as_str(self) -> &'static str {
        match self {
            HostState::Failed => "failed",
            HostState::Pending => "pending",
            HostState::RolledBack => "rolled_back",
            HostState::Upgraded => "upgraded",
            HostState::Upgrading => "upgrading",
        }
    }
}

/// Padded like a string (`{:11}` in `status`).
impl std::fmt::Display for HostState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

#[derive(Debug, Serialize)]
pub struct HostStatus {
    pub host: String,
    pub roles: Vec<String>,
    pub state: HostState,
    pub step: Option<String>,
    pub message: Option<String>,
    /// When the step it is running started (Unix seconds in JSON), for a live view.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<crate::clock::At>,
}

#[derive(Debug, Serialize)]
pub struct Status {
    pub run: RunRecord,
    /// StarlingX-style: not started, partial, applied, partially rolled back, aborted.
    pub overall: &'static str,
    pub waiting_approval: Option<String>,
    pub roles: BTreeMap<String, BTreeMap<HostState, usize>>,
    pub hosts: Vec<HostStatus>,
    /// The tasks of no single host (hooks, gates, approvals, role barriers) and their state.
    pub tasks: Vec<RunTask>,
}

#[derive(Debug, Serialize)]
pub struct RunTask {
    pub task: String,
    pub state: TaskState,
}

fn host_state(tasks: &[&TaskRow]) -> (HostState, Option<String>, Option<String>) {
    use TaskState as T;
    let any = |s: TaskState| tasks.iter().find(|t| t.state == s);
    if let Some(t) = any(T::UndoFailed).or_else(|| any(T::RollingBack)) {
        return (HostState::Failed, t.step.clone(), t.message.clone());
    }
    if let Some(t) = any(T::RolledBack) {
        return (HostState::RolledBack, t.step.clone(), t.message.clone());
    }
    if let Some(t) = any(T::Failed).or_else(|| any(T::Unreachable)) {
        return (HostState::Failed, t.step.clone(), t.message.clone());
    }
    if let Some(t) = any(T::Running).or_else(|| any(T::Retrying)) {
        return (HostState::Upgrading, t.step.clone(), None);
    }
    if !tasks.is_empty() && tasks.iter().all(|t| t.state.is_done()) {
        return (HostState::Upgraded, None, None);
    }
    if tasks.iter().any(|t| t.state.is_done()) {
        return (HostState::Upgrading, None, None);
    }
    (HostState::Pending, None, None)
}

/// Where run `run` stands, from its store: per host and per role.
pub fn of(journal: &dyn RunStore, run: RunRecord) -> Result<Status> {
    let tasks = journal.tasks(&run.id)?;
    let mut by_host: HashMap<&str, Vec<&TaskRow>> = HashMap::new();
    for t in &tasks {
        if let Some(h) = &t.host {
            by_host.entry(h).or_default().push(t);
        }
    }
    let mut hosts = Vec::new();
    let mut roles: BTreeMap<String, BTreeMap<HostState, usize>> = BTreeMap::new();
    for (host, host_roles) in journal.hosts(&run.id)? {
        let ts = by_host.get(host.as_str()).cloned().unwrap_or_default();
        if ts.is_empty() {
            continue;
        }
        let (state, step, message) = host_state(&ts);
        let since = ts
            .iter()
            .find(|t| t.state.is_running())
            .and_then(|t| t.started_at);
        for r in &host_roles {
            *roles
                .entry(r.clone())
                .or_default()
                .entry(state)
                .or_default() += 1;
        }
        hosts.push(HostStatus {
            host,
            roles: host_roles,
            state,
            step,
            message,
            since,
        });
    }
    let upgraded = hosts
        .iter()
        .filter(|h| h.state == HostState::Upgraded)
        .count();
    let started = tasks.iter().any(|t| t.state != TaskState::Pending);
    let overall = if run.state == RunState::RolledBack {
        "rolled back"
    } else if hosts.iter().any(|h| h.state == HostState::RolledBack)
        || run.state == RunState::RollbackFailed
    {
        "partially rolled back"
    } else if run.state == RunState::Aborted {
        "aborted"
    } else if !started {
        "not started"
    } else if upgraded == hosts.len()
        && tasks
            .iter()
            .all(|t| t.state.is_done() || t.kind.ends_with("done"))
    {
        "applied"
    } else {
        "partial"
    };
    let waiting_approval = tasks
        .iter()
        .find(|t| t.state == TaskState::WaitingApproval)
        .and_then(|t| t.step.clone());
    let run_tasks = tasks
        .iter()
        .filter(|t| t.host.is_none())
        .map(|t| RunTask {
            task: t.task_id.clone(),
            state: t.state,
        })
        .collect();
    Ok(Status {
        run,
        overall,
        waiting_approval,
        roles,
        hosts,
        tasks: run_tasks,
    })
}

/// Appends a line to a `String`.
macro_rules! line {
    ($o:expr) => {
        $o.push('\n')
    };
    ($o:expr, $($t:tt)*) => {{
        $o.push_str(&format!($($t)*));
        $o.push('\n');
    }};
}

/// `fleetbook status` for people: the run, its counts per role, which controller holds
/// which hosts (several may share a run in etcd), and a line per host.
pub fn text(store: &dyn RunStore, st: &Status) -> Result<String> {
    let mut o = String::new();
    let r = &st.run;
    line!(o, "run {}  {}  ({})", r.id, r.state, st.overall);
    line!(
        o,
        "runbook {} on {}, started {} by {}@{}",
        r.runbook,
        r.inventory_path,
        r.started_at,
        r.user,
        r.controller
    );
    if let Some(reason) = &r.reason {
        line!(o, "reason: {reason}");
    }
    if let Some(gate) = &st.waiting_approval {
        line!(
            o,
            "waiting for approval {gate:?}: fleetbook approve {} --gate {gate}",
            r.id
        );
    }
    line!(o);
    role_lines(&mut o, st);
    line!(o);
    let holders: BTreeMap<String, String> = store.holders(&r.id)?.into_iter().collect();
    controller_lines(&mut o, &holders);
    host_lines(&mut o, st, &holders);
    Ok(o)
}

fn role_lines(o: &mut String, st: &Status) {
    for (role, counts) in &st.roles {
        let get = |k: HostState| counts.get(&k).copied().unwrap_or(0);
        let rolled_back = match get(HostState::RolledBack) {
            0 => String::new(),
            n => format!(" rolled back {n}"),
        };
        line!(
            o,
            "{role:16} upgraded {:<4} upgrading {:<4} pending {:<4} failed {:<4}{rolled_back}",
            get(HostState::Upgraded),
            get(HostState::Upgrading),
            get(HostState::Pending),
            get(HostState::Failed),
        );
    }
}

fn controller_lines(o: &mut String, holders: &BTreeMap<String, String>) {
    let mut by_controller: BTreeMap<&str, usize> = BTreeMap::new();
    for c in holders.values() {
        *by_controller.entry(c.as_str()).or_default() += 1;
    }
    for (c, n) in &by_controller {
        line!(o, "controller {c} holds {n} host(s)");
    }
    if !by_controller.is_empty() {
        line!(o);
    }
}

fn host_lines(o: &mut String, st: &Status, holders: &BTreeMap<String, String>) {
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
        line!(o, "{:width$}  {:11}{}", h.host, h.state, detail);
    }
}

/// `fleetbook runs` for people: a line per run, newest first.
pub fn runs_text(runs: &[RunRecord], location: &str) -> String {
    let mut o = String::new();
    if runs.is_empty() {
        line!(o, "no runs recorded in {location}");
    }
    for r in runs {
        line!(
            o,
            "{}  {:24} {:20} {}  {}@{}",
            r.id,
            r.state,
            r.runbook,
            r.started_at,
            r.user,
            r.controller
        );
    }
    o
}
