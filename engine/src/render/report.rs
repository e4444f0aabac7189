//! A run as one self-contained HTML page: what was planned with what happened laid over it.
//! Takes what a [`RunStore`] keeps of a run (its saved plan, tasks, commands, approvals and
//! abort requests), so any backend gives the same page; gives the document that
//! `fleetbook status RUN --format html` writes and the part that `fleetbook watch` sends again
//! as the run moves ([`body`]).
//!
//! Every text from the run (host names, variables, parameters, commands, outputs, messages)
//! is untrusted and goes through [`esc`]; the page's script reads it with `textContent` only.

use super::describe::dur;
use super::html::{canary_hosts, clip, esc, page, Scale, LABEL_W};
use crate::clock::At;
use crate::error::{Error, Result};
use crate::journal::{Action, CommandRecord, RunRecord, TaskRow};
use crate::plan::Plan;
use crate::status::{HostState, Status};
use crate::store::{RunState, RunStore, TaskState};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::time::Duration;

/// Everything a page shows of a run, read once from its store.
pub struct RunView {
    pub status: Status,
    pub plan: Option<Plan>,
    pub tasks: Vec<TaskRow>,
    pub commands: Vec<CommandRecord>,
    pub actions: Vec<Action>,
    /// When it was read: the end of the actual schedule of a running run.
    pub now: At,
}

impl RunView {
    /// Run `id` (`None`: the newest) as its store has it now.
    pub fn load(store: &dyn RunStore, id: Option<&str>) -> Result<RunView> {
        let run = store.run(id)?;
        let plan = match store.plan(&run.id)? {
            Some(json) => Some(serde_json::from_str(&json).map_err(|e| {
                Error::Internal(format!(
                    "the plan saved for run {} cannot be read: {e}",
                    run.id
                ))
            })?),
            None => None,
        };
        let tasks = store.tasks(&run.id)?;
        let commands = store.commands(&run.id)?;
        let actions = store.actions(&run.id)?;
        let status = crate::status::of(store, run)?;
        Ok(RunView {
            status,
            plan,
            tasks,
            commands,
            actions,
            now: At::now(),
        })
    }

    fn run(&self) -> &RunRecord {
        &self.status.run
    }

    fn live(&self) -> bool {
        self.run().state == RunState::Running
    }

    /// From the run's start to its end (or now).
    fn elapsed(&self) -> Duration {
        self.run()
            .ended_at
            .unwrap_or(self.now)
            .since(self.run().started_at)
    }
}

/// How the page is served.
#[derive(Debug, Clone, Default)]
pub struct PageOptions {
    /// The state directory, for the commands the page suggests (`--state DIR`).
    pub state_dir: Option<String>,
    /// Served by `fleetbook watch`: it updates itself; with `control`, it can approve and abort.
    pub live: bool,
    pub control: bool,
}

/// A task's outcome, as the page colours it.
fn outcome(state: TaskState, run_live: bool) -> &'static str {
    use TaskState as T;
    match state {
        T::Ok => "ok",
        T::Failed | T::Unreachable | T::UndoFailed => "failed",
        T::Skipped => "skipped",
        T::RolledBack => "undone",
        T::WaitingApproval => "waiting",
        T::Running | T::Retrying | T::RollingBack if run_live => "inflight",
        // Left running by a run that is over: nobody knows how it ended.
        T::Running | T::Retrying | T::RollingBack => "unknown",
        T::NotRun => "notrun",
        T::Pending => "pending",
    }
}

const OUTCOMES: [(&str, &str); 9] = [
    ("ok", "ok"),
    ("failed", "failed"),
    ("skipped", "skipped"),
    ("undone", "undone"),
    ("unknown", "unknown"),
    ("inflight", "in flight"),
    ("waiting", "waiting for approval"),
    ("notrun", "not run"),
    ("pending", "pending"),
];

/// The whole document.
pub fn report(view: &RunView, opts: &PageOptions) -> String {
    let title = format!("run {} · {}", view.run().id, view.run().runbook);
    let body = format!("<main id=\"live\">{}</main>", body(view, opts));
    page(&title, &body, opts.live)
}

/// What the live page replaces as the run moves.
pub fn body(view: &RunView, opts: &PageOptions) -> String {
    let mut o = String::new();
    header(&mut o, view);
    banner(&mut o, view, opts);
    totals(&mut o, view);
    roles(&mut o, view);
    schedule(&mut o, view);
    hosts(&mut o, view);
    runbook_level(&mut o, view);
    recap(&mut o, view, opts);
    o
}

fn header(o: &mut String, view: &RunView) {
    let r = view.run();
    let _ = write!(
        o,
        "<h1>{}</h1><p><span class=\"state st-{}\" data-run-state=\"{}\">{}</span> <span class=\"overall\">{}</span> · run <code>{}</code></p><table class=\"meta\">",
        esc(&r.runbook),
        r.state,
        r.state,
        esc(&r.state.to_string().replace('_', " ")),
        esc(view.status.overall),
        esc(&r.id)
    );
    let mut meta = |k: &str, v: String| {
        let _ = write!(o, "<tr><td>{k}</td><td>{v}</td></tr>");
    };
    meta(
        "Started",
        format!(
            "{} by {}@{}",
            esc(&r.started_at.to_string()),
            esc(&r.user),
            esc(&r.controller)
        ),
    );
    let took = dur(view.elapsed().as_secs());
    match r.ended_at {
        Some(e) => meta(
            "Ended",
            format!("{} (took {})", esc(&e.to_string()), esc(&took)),
        ),
        None => meta("Running for", esc(&took)),
    }
    if let Some(p) = &view.plan {
        meta("Planned", format!("{} (estimate)", esc(&dur(p.duration))));
    }
    meta("Runbook", format!("<code>{}</code>", esc(&r.runbook_path)));
    let limit = r
        .limit_pattern
        .as_ref()
        .map(|p| format!(", --limit <code>{}</code>", esc(p)))
        .unwrap_or_default();
    meta(
        "Inventory",
        format!("<code>{}</code>{limit}", esc(&r.inventory_path)),
    );
    if !r.params.is_empty() {
        let params: Vec<String> = r
            .params
            .iter()
            .map(|(k, v)| format!("<code>{}={}</code>", esc(k), esc(v)))
            .collect();
        meta("Params", params.join(" "));
    }
    if let Some(reason) = &r.reason {
        meta(
            "Reason",
            format!("<span class=\"reason\">{}</span>", esc(reason)),
        );
    }
    o.push_str("</table>");
}

/// Why nothing moves now, as far as the store tells: approvals, full role slots, the
/// failure budget, soaks. And when it should end.
fn waiting_reasons(view: &RunView) -> Vec<String> {
    let mut why = Vec::new();
    for t in view
        .tasks
        .iter()
        .filter(|t| t.state == TaskState::WaitingApproval)
    {
        why.push(format!(
            "approval {} waits for someone: <code>fleetbook approve {} --gate {}</code>",
            esc(&format!("{:?}", t.step.as_deref().unwrap_or(""))),
            esc(&view.run().id),
            esc(t.step.as_deref().unwrap_or(""))
        ));
    }
    for t in view.tasks.iter().filter(|t| t.state == TaskState::Retrying) {
        why.push(format!(
            "{} waits to retry {} (attempt {} failed{})",
            esc(t.host.as_deref().unwrap_or("the run")),
            esc(t.step.as_deref().unwrap_or(&t.task_id)),
            t.attempt,
            t.message
                .as_ref()
                .map(|m| format!(": {}", esc(m)))
                .unwrap_or_default()
        ));
    }
    let Some(plan) = &view.plan else { return why };
    if let Some(m) = plan.limits.max_failures_total {
        let failed = view
            .status
            .hosts
            .iter()
            .filter(|h| h.state == HostState::Failed)
            .count();
        if failed > m {
            why.push(format!(
                "{failed} hosts failed, over the run's failure budget of {m}: no new host starts"
            ));
        }
    }
    let states: HashMap<&str, HostState> = view
        .status
        .hosts
        .iter()
        .map(|h| (h.host.as_str(), h.state))
        .collect();
    for r in &plan.roles {
        let members: Vec<&str> = plan
            .hosts
            .iter()
            .filter(|h| h.roles.contains(&r.name))
            .map(|h| h.name.as_str())
            .collect();
        let count = |s: HostState| {
            members
                .iter()
                .filter(|h| states.get(*h) == Some(&s))
                .count()
        };
        let (busy, pending, failed) = (
            count(HostState::Upgrading),
            count(HostState::Pending),
            count(HostState::Failed),
        );
        if let Some(l) = r.limit {
            if l > 0 && busy >= l && pending > 0 {
                why.push(format!(
                    "role {}: its {l} slot(s) are full ({busy} in flight, {pending} waiting)",
                    esc(&r.name)
                ));
            } else if l == 0 && pending > 0 {
                why.push(format!("role {} is held (limit 0)", esc(&r.name)));
            }
        }
        if let Some(m) = r.max_failures {
            if failed > m {
                why.push(format!(
                    "role {}: {failed} failed, over its failure budget of {m}: no new host starts",
                    esc(&r.name)
                ));
            }
        }
    }
    for t in &view.tasks {
        let (Some(step), Some(end)) = (&t.step, t.ended_at) else {
            continue;
        };
        let Some(soak) = plan
            .runbook
            .steps
            .iter()
            .find(|s| &s.name == step)
            .and_then(|s| s.soak)
        else {
            continue;
        };
        let left = end
            .after(Duration::from_secs(soak))
            .since(view.run().ended_at.unwrap_or(view.now));
        if t.state == TaskState::Ok && !left.is_zero() {
            why.push(format!(
                "{} soaks after {} for {} more",
                esc(t.host.as_deref().unwrap_or("the run")),
                esc(step),
                esc(&dur(ceil_secs(left)))
            ));
        }
    }
    why
}

fn banner(o: &mut String, view: &RunView, opts: &PageOptions) {
    if !view.live() {
        return;
    }
    let why = waiting_reasons(view);
    o.push_str("<div class=\"banner\" data-banner>");
    if why.is_empty() {
        o.push_str("<b>Running.</b>");
    } else {
        o.push_str("<b>Waiting because…</b><ul>");
        for w in &why {
            let _ = write!(o, "<li data-why>{w}</li>");
        }
        o.push_str("</ul>");
    }
    if let Some(plan) = &view.plan {
        if let Some(left) = crate::eta::remaining(plan, &view.tasks, view.now) {
            let _ = write!(
                o,
                "<p class=\"eta\" data-eta=\"{}\">ETA {} (in {}, the rest of the plan simulated from now)</p>",
                left.as_secs(),
                esc(&view.now.after(left).to_string()),
                esc(&dur(left.as_secs()))
            );
        }
    }
    if opts.control {
        o.push_str("<div class=\"controls\">");
        for t in view
            .tasks
            .iter()
            .filter(|t| t.state == TaskState::WaitingApproval)
        {
            let gate = esc(t.step.as_deref().unwrap_or(""));
            let _ = write!(
                o,
                "<button type=\"button\" data-action=\"approve\" data-gate=\"{gate}\">Approve {gate}</button> "
            );
        }
        o.push_str("<button type=\"button\" data-action=\"abort\" class=\"danger\">Abort the run</button> <span class=\"control-result\" role=\"status\"></span></div>");
    }
    o.push_str("</div>");
}

/// Host tasks only: they are what the outcome counts are about.
fn host_tasks(view: &RunView) -> impl Iterator<Item = &TaskRow> {
    view.tasks.iter().filter(|t| t.host.is_some())
}

fn totals(o: &mut String, view: &RunView) {
    let live = view.live();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for t in host_tasks(view) {
        *counts.entry(outcome(t.state, live)).or_default() += 1;
    }
    o.push_str("<h2>Totals</h2><table class=\"totals\"><tr><th>host steps</th>");
    for (k, label) in OUTCOMES {
        if counts.contains_key(k) {
            let _ = write!(o, "<th><span class=\"dot o-{k}\"></span>{label}</th>");
        }
    }
    o.push_str("</tr><tr><td></td>");
    for (k, _) in OUTCOMES {
        if let Some(n) = counts.get(k) {
            let _ = write!(o, "<td data-total=\"{k}\">{n}</td>");
        }
    }
    let mut hosts: BTreeMap<HostState, usize> = BTreeMap::new();
    for h in &view.status.hosts {
        *hosts.entry(h.state).or_default() += 1;
    }
    o.push_str("</tr></table><p class=\"hosts-total\">");
    let parts: Vec<String> = hosts
        .iter()
        .map(|(k, n)| {
            format!(
                "<span data-hosts=\"{k}\">{n} {}</span>",
                k.as_str().replace('_', " ")
            )
        })
        .collect();
    let _ = write!(
        o,
        "{} host(s): {}</p>",
        view.status.hosts.len(),
        parts.join(", ")
    );
}

/// The roles in the plan's order (or as the hosts name them, without a plan), each with the
/// hosts that run in it.
fn role_hosts(view: &RunView) -> Vec<(String, Vec<usize>)> {
    let mut names: Vec<String> = match &view.plan {
        Some(p) => p.roles.iter().map(|r| r.name.clone()).collect(),
        None => Vec::new(),
    };
    for h in &view.status.hosts {
        for r in &h.roles {
            if !names.contains(r) {
                names.push(r.clone());
            }
        }
    }
    names
        .into_iter()
        .map(|r| {
            let hs = (0..view.status.hosts.len())
                .filter(|&i| view.status.hosts[i].roles.contains(&r))
                .collect();
            (r, hs)
        })
        .filter(|(_, hs): &(String, Vec<usize>)| !hs.is_empty())
        .collect()
}

/// Running and failed hosts first, then the rest in their order.
fn pinned(view: &RunView, hosts: &[usize]) -> Vec<usize> {
    let rank = |i: &usize| match view.status.hosts[*i].state {
        HostState::Upgrading => 0,
        HostState::Failed => 1,
        _ => 2,
    };
    let mut v = hosts.to_vec();
    v.sort_by_key(rank);
    v
}

fn canaries(view: &RunView, role: &str) -> Vec<String> {
    view.plan
        .as_ref()
        .map(|p| {
            canary_hosts(p, role)
                .into_iter()
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn roles(o: &mut String, view: &RunView) {
    o.push_str("<h2>Hosts by role</h2><p class=\"hint\">Running and failed hosts first. Click a host for its steps, commands and output.</p>");
    for (role, hs) in role_hosts(view) {
        let info = view
            .plan
            .as_ref()
            .and_then(|p| p.roles.iter().find(|r| r.name == role));
        let count = |s: HostState| {
            hs.iter()
                .filter(|&&i| view.status.hosts[i].state == s)
                .count()
        };
        let failed = count(HostState::Failed);
        let mut extra = Vec::new();
        if let Some(l) = info.and_then(|r| r.limit) {
            extra.push(format!(
                "{} in flight of limit {l}",
                count(HostState::Upgrading)
            ));
        }
        match info.and_then(|r| r.max_failures) {
            Some(m) => extra.push(format!(
                "<span class=\"budget{}\" data-budget=\"{failed}/{m}\">failure budget {failed} of {m} used</span>",
                if failed > m { " over" } else { "" }
            )),
            None if failed > 0 => extra.push(format!("{failed} failed")),
            None => {}
        }
        let canary = canaries(view, &role);
        let _ = write!(
            o,
            "<section class=\"grid\" data-role=\"{}\"><h3>{} <small>{} host(s){}{}</small></h3><div class=\"cells\">",
            esc(&role),
            esc(&role),
            hs.len(),
            if extra.is_empty() { String::new() } else { format!(" · {}", extra.join(" · ")) },
            if canary.is_empty() { String::new() } else { format!(" · canary: {}", esc(&canary.join(", "))) }
        );
        for i in pinned(view, &hs) {
            let h = &view.status.hosts[i];
            let tip = match (&h.step, &h.message) {
                (Some(s), Some(m)) => format!("{} · {}: {} · {}", h.host, h.state, s, m),
                (Some(s), None) => format!("{} · {}: {}", h.host, h.state, s),
                _ => format!("{} · {}", h.host, h.state),
            };
            let _ = write!(
                o,
                "<a class=\"cell h-{}{}\" href=\"#host-{}\" data-host=\"{}\" data-state=\"{}\" title=\"{}\"><span>{}</span></a>",
                h.state,
                if canary.contains(&h.host) { " canary" } else { "" },
                esc(&anchor(&h.host)),
                esc(&h.host),
                h.state,
                esc(&tip),
                esc(&h.host)
            );
        }
        o.push_str("</div></section>");
    }
}

/// A host name as a fragment id: only characters that need no escaping anywhere.
fn anchor(host: &str) -> String {
    host.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
                (b as char).to_string()
            } else {
                format!(".{b:02x}")
            }
        })
        .collect()
}

const ROW: f64 = 9.0;

/// Per role, each host's planned steps (outlined) with the actual ones under them (filled,
/// coloured by outcome), on one time scale.
fn schedule(o: &mut String, view: &RunView) {
    let Some(plan) = &view.plan else {
        o.push_str("<h2>Schedule</h2><p>This run was recorded without its plan (an older fleetbook): only what happened is shown.</p>");
        return;
    };
    let started = view.run().started_at;
    let span = (plan.duration as f64)
        .max(view.elapsed().as_secs_f64())
        .max(1.0);
    let sc = Scale { duration: span };
    let live = view.live();
    let rows: HashMap<&str, &TaskRow> =
        view.tasks.iter().map(|t| (t.task_id.as_str(), t)).collect();
    o.push_str("<h2>Schedule: planned and actual</h2><p class=\"hint\">Per host, the planned steps (outlined) and what happened under them. <span class=\"legend\">");
    for (k, label) in OUTCOMES {
        let _ = write!(o, "<span class=\"dot o-{k}\"></span>{label} ");
    }
    o.push_str("</span></p>");
    let runbook_level: Vec<&crate::plan::TaskInfo> = plan
        .tasks
        .iter()
        .filter(|t| t.host.is_none() && !t.kind.as_str().ends_with("done"))
        .collect();
    let lane = Lane {
        sc: &sc,
        rows: &rows,
        started,
        now: view.now,
        live,
    };
    if !runbook_level.is_empty() {
        let height = runbook_level.len() as f64 * ROW * 2.0 + 20.0;
        let _ = write!(
            o,
            "<details class=\"lane\" data-lane=\"runbook\" open><summary>runbook-level: hooks, gates, approvals</summary><svg class=\"chart\" width=\"{:.0}\" height=\"{height:.0}\" role=\"img\" aria-label=\"runbook-level tasks\">",
            LABEL_W + super::html::CHART_W + 20.0
        );
        super::html::axis(o, &sc, span as u64, 0.0, height - 20.0);
        for (r, t) in runbook_level.iter().enumerate() {
            lane.row(o, r, &t.id, std::slice::from_ref(t));
        }
        o.push_str("</svg></details>");
    }
    for (role, hs) in role_hosts(view) {
        // Each host's tasks of this role (a host in two roles has each role's steps).
        let hosts: Vec<(&str, Vec<&crate::plan::TaskInfo>)> = hs
            .iter()
            .map(|&i| view.status.hosts[i].host.as_str())
            .map(|h| {
                let ts = plan
                    .tasks
                    .iter()
                    .filter(|t| t.host.as_deref() == Some(h) && in_role(t.role.as_deref(), &role))
                    .collect();
                (h, ts)
            })
            .filter(|(_, ts): &(&str, Vec<_>)| !ts.is_empty())
            .collect();
        let n = hosts.len();
        let _ = write!(
            o,
            "<details class=\"lane\" data-role=\"{}\"{}><summary>{} <small>({n} host(s))</small></summary>",
            esc(&role),
            if n <= 20 { " open" } else { "" },
            esc(&role),
        );
        if n == 0 {
            o.push_str("<p class=\"hint\">No step runs as this role: its hosts are in the lanes of their other roles.</p></details>");
            continue;
        }
        let height = n as f64 * ROW * 2.0 + 20.0;
        let _ = write!(
            o,
            "<svg class=\"chart\" width=\"{:.0}\" height=\"{height:.0}\" role=\"img\" aria-label=\"planned and actual schedule of {}\">",
            LABEL_W + super::html::CHART_W + 20.0,
            esc(&role)
        );
        super::html::axis(o, &sc, span as u64, 0.0, height - 20.0);
        for (r, (host, ts)) in hosts.iter().enumerate() {
            lane.row(o, r, host, ts);
        }
        o.push_str("</svg></details>");
    }
}

/// What a row of the planned-and-actual chart needs.
struct Lane<'a> {
    sc: &'a Scale,
    rows: &'a HashMap<&'a str, &'a TaskRow>,
    started: At,
    now: At,
    live: bool,
}

impl Lane<'_> {
    /// A labelled row: the planned tasks outlined, what happened under them.
    fn row(&self, o: &mut String, r: usize, label: &str, tasks: &[&crate::plan::TaskInfo]) {
        let (sc, top) = (self.sc, r as f64 * ROW * 2.0);
        let _ = write!(
            o,
            "<text x=\"4\" y=\"{:.1}\" class=\"row\">{}</text>",
            top + ROW * 1.5,
            esc(&clip(label, 26))
        );
        for t in tasks {
            let _ = write!(
                o,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" class=\"planned\" data-task=\"{}\"><title>{} planned +{} .. +{}</title></rect>",
                sc.x(t.start as f64),
                top + 1.0,
                sc.w(t.start as f64, t.end as f64),
                ROW - 2.0,
                esc(&t.id),
                esc(t.step.as_deref().unwrap_or(&t.id)),
                esc(&dur(t.start)),
                esc(&dur(t.end))
            );
            let Some(row) = self.rows.get(t.id.as_str()) else {
                continue;
            };
            let Some(s) = row.started_at else { continue };
            let (a, b) = (
                s.since(self.started).as_secs_f64(),
                row.ended_at
                    .unwrap_or(self.now)
                    .since(self.started)
                    .as_secs_f64(),
            );
            let oc = outcome(row.state, self.live);
            let _ = write!(
                o,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" class=\"actual o-{oc}\" data-task=\"{}\" data-outcome=\"{oc}\"><title>{}: {} +{} .. +{}</title></rect>",
                sc.x(a),
                top + ROW,
                sc.w(a, b),
                ROW - 1.0,
                esc(&t.id),
                esc(t.step.as_deref().unwrap_or(&t.id)),
                esc(row.state.as_str()),
                esc(&dur(a as u64)),
                esc(&dur(b as u64))
            );
        }
    }
}

/// A task of no role, or of this one (a host in two roles has each role's steps).
fn in_role(task_role: Option<&str>, role: &str) -> bool {
    task_role.is_none_or(|r| r == role)
}

fn commands_of<'a>(view: &'a RunView, task: &str) -> Vec<&'a CommandRecord> {
    view.commands
        .iter()
        .filter(|c| c.task_id.as_deref() == Some(task))
        .collect()
}

fn command_block(o: &mut String, c: &CommandRecord) {
    let status = match (c.exit_code, &c.error) {
        (Some(0), _) => "exit 0".to_string(),
        (Some(n), _) => format!("exit {n}"),
        (None, Some(e)) => format!("did not finish: {e}"),
        (None, None) => "did not finish".to_string(),
    };
    let cut = if c.output_bytes as usize > c.output_tail.len() {
        format!(
            " · last {} of {} bytes",
            c.output_tail.len(),
            c.output_bytes
        )
    } else {
        String::new()
    };
    let _ = write!(
        o,
        "<div class=\"cmd{}\" data-exit=\"{}\"><code class=\"line\">$ {}</code><div class=\"cmdmeta\">{} · {:.1}s{}{}</div>",
        if c.exit_code == Some(0) { "" } else { " bad" },
        c.exit_code.map(|n| n.to_string()).unwrap_or_default(),
        esc(&c.command),
        esc(&status),
        c.duration.as_secs_f64(),
        if c.attempt > 1 { format!(" · attempt {}", c.attempt) } else { String::new() },
        cut
    );
    if !c.output_tail.is_empty() {
        let _ = write!(o, "<pre class=\"out\">{}</pre>", esc(&c.output_tail));
    }
    o.push_str("</div>");
}

fn slot(from: Option<At>, to: Option<At>, started: At) -> String {
    let off = |t: At| dur(t.since(started).as_secs());
    match (from, to) {
        (Some(a), Some(b)) => format!("+{} .. +{}", off(a), off(b)),
        (Some(a), None) => format!("+{} ..", off(a)),
        _ => String::new(),
    }
}

/// Whole seconds, a part of one counted as one.
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

fn hosts(o: &mut String, view: &RunView) {
    let started = view.run().started_at;
    let live = view.live();
    let planned: HashMap<&str, (u64, u64)> = view
        .plan
        .iter()
        .flat_map(|p| p.tasks.iter().map(|t| (t.id.as_str(), (t.start, t.end))))
        .collect();
    let host_plan: HashMap<&str, (u64, u64)> = view
        .plan
        .iter()
        .flat_map(|p| p.hosts.iter().map(|h| (h.name.as_str(), (h.start, h.end))))
        .collect();
    o.push_str("<h2>Hosts</h2>");
    let all: Vec<usize> = (0..view.status.hosts.len()).collect();
    for i in pinned(view, &all) {
        let h = &view.status.hosts[i];
        let tasks: Vec<&TaskRow> = view
            .tasks
            .iter()
            .filter(|t| t.host.as_ref() == Some(&h.host))
            .collect();
        let first = tasks.iter().filter_map(|t| t.started_at).min();
        let last = tasks.iter().filter_map(|t| t.ended_at).max();
        let actual = if first.is_some() {
            slot(first, last, started)
        } else {
            "not started".into()
        };
        let plan_slot = host_plan
            .get(h.host.as_str())
            .map(|(a, b)| format!("+{} .. +{}", dur(*a), dur(*b)))
            .unwrap_or_default();
        let _ = write!(
            o,
            "<details class=\"host\" id=\"host-{}\" data-host=\"{}\" data-state=\"{}\"{}><summary><b>{}</b> <span class=\"tag h-{}\">{}</span> <small>{} · planned {} · actual {}</small>{}</summary><table class=\"steps\"><tr><th>step</th><th>outcome</th><th>attempts</th><th>planned</th><th>actual</th><th>commands</th></tr>",
            esc(&anchor(&h.host)),
            esc(&h.host),
            h.state,
            if h.state == HostState::Failed { " open" } else { "" },
            esc(&h.host),
            h.state,
            h.state.as_str().replace('_', " "),
            esc(&h.roles.join(", ")),
            esc(&plan_slot),
            esc(&actual),
            h.message
                .as_ref()
                .map(|m| format!("<div class=\"reason\">{}</div>", esc(m)))
                .unwrap_or_default()
        );
        for t in tasks {
            let oc = outcome(t.state, live);
            let p = planned
                .get(t.task_id.as_str())
                .map(|(a, b)| format!("+{} .. +{}", dur(*a), dur(*b)))
                .unwrap_or_default();
            let _ = write!(
                o,
                "<tr data-task=\"{}\" data-outcome=\"{oc}\"><td>{}</td><td><span class=\"dot o-{oc}\"></span>{}{}</td><td>{}</td><td>{}</td><td>{}</td><td>",
                esc(&t.task_id),
                esc(t.step.as_deref().unwrap_or(&t.task_id)),
                esc(&t.state.as_str().replace('_', " ")),
                t.message
                    .as_ref()
                    .map(|m| format!("<div class=\"reason\">{}</div>", esc(m)))
                    .unwrap_or_default(),
                t.attempt,
                esc(&p),
                esc(&slot(t.started_at, t.ended_at, started))
            );
            for c in commands_of(view, &t.task_id) {
                command_block(o, c);
            }
            o.push_str("</td></tr>");
        }
        o.push_str("</table></details>");
    }
}

fn runbook_level(o: &mut String, view: &RunView) {
    let live = view.live();
    let tasks: Vec<&TaskRow> = view
        .tasks
        .iter()
        .filter(|t| t.host.is_none() && !t.kind.ends_with("done"))
        .collect();
    if !tasks.is_empty() {
        o.push_str("<h2>Runbook-level steps, gates and approvals</h2><table class=\"steps\"><tr><th>task</th><th>outcome</th><th>actual</th><th>commands</th></tr>");
        for t in tasks {
            let oc = outcome(t.state, live);
            let _ = write!(
                o,
                "<tr data-task=\"{}\" data-outcome=\"{oc}\"><td>{}</td><td><span class=\"dot o-{oc}\"></span>{}{}</td><td>{}</td><td>",
                esc(&t.task_id),
                esc(&t.task_id),
                esc(&t.state.as_str().replace('_', " ")),
                t.message
                    .as_ref()
                    .map(|m| format!("<div class=\"reason\">{}</div>", esc(m)))
                    .unwrap_or_default(),
                esc(&slot(t.started_at, t.ended_at, view.run().started_at))
            );
            for c in commands_of(view, &t.task_id) {
                command_block(o, c);
            }
            o.push_str("</td></tr>");
        }
        o.push_str("</table>");
    }
    o.push_str("<h2>Approvals and aborts</h2>");
    if view.actions.is_empty() && view.run().pre_approved.is_empty() {
        o.push_str("<p>None.</p>");
        return;
    }
    o.push_str("<ul class=\"actions\">");
    for g in &view.run().pre_approved {
        let _ = write!(
            o,
            "<li data-action=\"approve\">approval <b>{}</b> given in advance (<code>--approve</code>) by {}</li>",
            esc(g),
            esc(&view.run().user)
        );
    }
    for a in &view.actions {
        match a {
            Action::Approve { gate, by, at } => {
                let _ = write!(
                    o,
                    "<li data-action=\"approve\">approval <b>{}</b> given by <b>{}</b> at {}</li>",
                    esc(gate),
                    esc(by),
                    esc(&at.to_string())
                );
            }
            Action::Abort { now, by, at } => {
                let _ = write!(
                    o,
                    "<li data-action=\"abort\">abort{} requested by <b>{}</b> at {}</li>",
                    if *now {
                        " (killing the steps in flight)"
                    } else {
                        ""
                    },
                    esc(by),
                    esc(&at.to_string())
                );
            }
        }
    }
    o.push_str("</ul>");
}

/// `--state DIR` for the suggested commands, quoted for a shell.
fn state_arg(opts: &PageOptions) -> String {
    opts.state_dir
        .as_deref()
        .map(|d| format!(" --state {}", shell_word(d)))
        .unwrap_or_default()
}

fn shell_word(w: &str) -> String {
    if fleetbook_stdlib::quote::is_plain(w) {
        w.to_string()
    } else {
        fleetbook_stdlib::quote::quote(w)
    }
}

/// The command that moves this run on, if any.
pub fn next_command(view: &RunView, opts: &PageOptions) -> Option<String> {
    let r = view.run();
    let id = shell_word(&r.id);
    let state = state_arg(opts);
    let secrets: String = view
        .plan
        .iter()
        .flat_map(|p| p.params.iter().filter(|x| x.secret))
        .map(|x| format!(" --param {}=...", x.name))
        .collect();
    match r.state {
        RunState::Running => Some(match &view.status.waiting_approval {
            Some(g) => format!("fleetbook approve {id} --gate {}{state}", shell_word(g)),
            None => format!("fleetbook watch {id}{state}"),
        }),
        RunState::Succeeded | RunState::RolledBack => None,
        RunState::RollbackFailed | RunState::RollingBack => {
            Some(format!("fleetbook rollback {id}{state}{secrets}"))
        }
        _ => Some(format!("fleetbook resume {id}{state}{secrets}")),
    }
}

fn recap(o: &mut String, view: &RunView, opts: &PageOptions) {
    o.push_str("<h2>Recap</h2>");
    // Failures grouped by cause: the same step failing with the same message.
    let mut causes: BTreeMap<(String, String), Vec<&str>> = BTreeMap::new();
    for t in host_tasks(view).filter(|t| outcome(t.state, false) == "failed") {
        let message = t.message.clone().unwrap_or_else(|| t.state.to_string());
        // "host web-3: command exited with code 3": the host is in the hosts column, so the
        // same failure on several hosts is one cause.
        let cause = t
            .host
            .as_deref()
            .and_then(|h| message.strip_prefix(&format!("host {h}: ")))
            .map(str::to_string)
            .unwrap_or(message);
        let key = (t.step.clone().unwrap_or_default(), cause);
        causes
            .entry(key)
            .or_default()
            .push(t.host.as_deref().unwrap_or(""));
    }
    if causes.is_empty() {
        o.push_str("<p data-failures=\"0\">No host failed.</p>");
    } else {
        let _ = write!(o, "<table class=\"causes\" data-failures=\"{}\"><tr><th>step</th><th>cause</th><th>hosts</th></tr>", causes.values().map(Vec::len).sum::<usize>());
        let mut sorted: Vec<_> = causes.into_iter().collect();
        sorted.sort_by_key(|(_, hs)| std::cmp::Reverse(hs.len()));
        for ((step, why), hs) in sorted {
            let _ = write!(
                o,
                "<tr data-cause><td>{}</td><td class=\"reason\">{}</td><td>{} <small>{}</small></td></tr>",
                esc(&step),
                esc(&why),
                hs.len(),
                esc(&hs.join(", "))
            );
        }
        o.push_str("</table>");
    }
    match next_command(view, opts) {
        Some(c) => {
            let _ = write!(
                o,
                "<p class=\"next\">Next: <code data-next>{}</code></p>",
                esc(&c)
            );
        }
        None => o.push_str("<p class=\"next\">Nothing left to do.</p>"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::TaskKind;
    use crate::exec::{Event, State};
    use crate::journal::Journal;

    /// A run of three web hosts, one at a time, recorded in a real journal with its plan:
    /// web1 is running, the others wait for its slot.
    fn running_run(dir: &std::path::Path) -> Journal {
        let (rb, inv) = (dir.join("rb.rhai"), dir.join("hosts"));
        std::fs::write(&inv, "[web]\nweb1\nweb2\nweb3\n").unwrap();
        std::fs::write(
            &rb,
            "let rb = runbook(\"t\");\nrb.limit(\"web\", 1);\nrb.step(\"a\", |h| h.run(\"true\")).estimate(\"1m\");\nrb\n",
        )
        .unwrap();
        let plan = crate::plan::plan(&crate::plan::PlanRequest {
            runbook: &rb,
            inventory: &inv,
            params: &Default::default(),
            limit: None,
            lib_dirs: &[],
            libs: &Default::default(),
            vault: None,
        })
        .unwrap()
        .plan;
        let j = Journal::open(&dir.join("state")).unwrap();
        let now = At::now();
        let run = RunRecord {
            id: "r1".into(),
            runbook: "t".into(),
            runbook_path: rb.display().to_string(),
            runbook_digest: plan.runbook_digest.clone(),
            inventory_path: inv.display().to_string(),
            inventory_digest: plan.inventory_digest.clone(),
            params: Default::default(),
            limit_pattern: None,
            user: "ops".into(),
            controller: crate::journal::controller(),
            pid: std::process::id() as i64,
            started_at: now,
            ended_at: None,
            state: RunState::Running,
            reason: None,
            lib_digest: None,
            secret_digests: Default::default(),
            pre_approved: Vec::new(),
        };
        let hosts: Vec<(String, Vec<String>)> = plan
            .hosts
            .iter()
            .map(|h| (h.name.to_string(), h.roles.clone()))
            .collect();
        let tasks = crate::session::task_rows(&plan);
        j.create_run(&run, &hosts, &tasks).unwrap();
        j.save_plan("r1", &serde_json::to_string(&plan).unwrap())
            .unwrap();
        let e = Event {
            at: Duration::from_millis(500),
            task: "host:web1:a".into(),
            kind: TaskKind::Host,
            host: Some("web1".into()),
            step: Some("a".into()),
            role: Some("web".into()),
            state: State::Running,
            attempt: 1,
            message: None,
        };
        j.record("r1", &e, now).unwrap();
        j
    }

    #[test]
    fn a_running_run_says_why_it_waits_pins_its_busy_host_and_gives_an_eta() {
        let dir = tempfile::tempdir().unwrap();
        let j = running_run(dir.path());
        let view = RunView::load(&j, Some("r1")).unwrap();
        let opts = PageOptions {
            state_dir: Some("/srv/my state".into()),
            live: true,
            control: true,
        };
        let html = body(&view, &opts);
        assert!(
            html.contains("role web: its 1 slot(s) are full (1 in flight, 2 waiting)"),
            "{html}"
        );
        assert!(
            html.contains("data-eta=\"1"),
            "an ETA of about three minutes: {html}"
        );
        // The busy host comes first in its role's cells.
        let cells = html.find("<div class=\"cells\">").unwrap();
        assert!(
            html[cells..].find("data-host=\"web1\"") < html[cells..].find("data-host=\"web2\"")
        );
        assert!(
            html.contains("data-action=\"abort\""),
            "control offers Abort"
        );
        assert_eq!(
            next_command(&view, &opts).unwrap(),
            "fleetbook watch r1 --state '/srv/my state'"
        );
        let page = report(&view, &PageOptions::default());
        assert!(
            !page.contains("data-action=\"abort\""),
            "read-only by default"
        );
    }

    #[test]
    fn anchors_keep_only_plain_characters() {
        assert_eq!(anchor("web-1"), "web-1");
        assert_eq!(anchor("<img>"), ".3cimg.3e");
    }

    #[test]
    fn a_step_left_running_by_an_ended_run_is_unknown() {
        assert_eq!(outcome(TaskState::Running, true), "inflight");
        assert_eq!(outcome(TaskState::Running, false), "unknown");
        assert_eq!(outcome(TaskState::RolledBack, false), "undone");
        assert_eq!(outcome(TaskState::Unreachable, false), "failed");
    }
}
