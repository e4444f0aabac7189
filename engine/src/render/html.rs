//! The plan as one self-contained HTML page (no external resource; a small script of our own),
//! for reviewing a dry run as a picture: the runbook and its policy, roles and steps, hosts in
//! flight per role over the simulated schedule against each role's limit, a Gantt chart of the
//! hosts' steps (one lane per role, folded when the role is big; click a bar for its
//! commands), and the commands of one host per role. Also the pieces the run report
//! (`report.rs`) shares: escaping, the time scale, the page with its style and script.
//!
//! Sized for big fleets: the in-flight curves cost two points per host, and a lane of more
//! than `OPEN_LANE_HOSTS` hosts starts folded. DOM hooks for tests and tools: `data-role` on
//! lanes, `data-host` on rows, `data-task` on bars and on their commands.

use super::describe::{
    dur, policy, role_extras, role_limit, sample_hosts, short_digest, step_options, step_scope,
};
use crate::compile::TaskKind;
use crate::plan::{HostInfo, Plan, RoleInfo, TaskInfo};
use std::collections::HashMap;
use std::fmt::Write;

/// A role's lane starts unfolded up to this many hosts.
const OPEN_LANE_HOSTS: usize = 40;
/// Left margin for labels, and the drawing's width for the whole schedule, in pixels.
pub(crate) const LABEL_W: f64 = 170.0;
pub(crate) const CHART_W: f64 = 860.0;
const ROW_H: f64 = 16.0;
const LANE_H: f64 = 56.0;
pub(crate) const PALETTE: [&str; 10] = [
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac",
];

/// Escapes text for HTML element content and attribute values (quoted with `"`), and so for
/// SVG inside HTML too.
pub(crate) fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// The role each host runs with: the first role, in the plan's order, that it belongs to.
fn run_roles(plan: &Plan) -> HashMap<&str, usize> {
    plan.hosts
        .iter()
        .filter_map(|h| {
            plan.roles
                .iter()
                .position(|r| h.roles.contains(&r.name))
                .map(|i| (h.name.as_str(), i))
        })
        .collect()
}

/// Seconds to pixels.
pub(crate) struct Scale {
    pub duration: f64,
}

impl Scale {
    pub fn x(&self, t: f64) -> f64 {
        LABEL_W + t.max(0.0) * CHART_W / self.duration
    }
    pub fn w(&self, a: f64, b: f64) -> f64 {
        ((b - a).max(0.0) * CHART_W / self.duration).max(1.0)
    }
}

/// A tick every "round" interval so that there are about eight of them.
fn tick_step(duration: u64) -> u64 {
    const NICE: [u64; 14] = [
        1, 5, 10, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 43200,
    ];
    let want = (duration / 8).max(1);
    NICE.iter()
        .copied()
        .find(|&n| n >= want)
        .unwrap_or(86400 * want.div_ceil(86400))
}

pub(crate) fn axis(o: &mut String, sc: &Scale, duration: u64, top: f64, height: f64) {
    let step = tick_step(duration);
    let mut t = 0;
    while t <= duration {
        let x = sc.x(t as f64);
        let _ = write!(
            o,
            r##"<line x1="{x:.1}" y1="{top:.1}" x2="{x:.1}" y2="{:.1}" class="grid"/><text x="{x:.1}" y="{:.1}" class="tick">+{}</text>"##,
            top + height,
            top + height + 12.0,
            esc(&dur(t))
        );
        t += step;
    }
}

/// Hosts of each role in flight over time (a host holds its slot from its first step to the
/// end of its last), with the role's limit as a dashed line.
/// A host counts in every role it is in, nested groups included (a host of `php_cluster`
/// is in flight in `members` too).
fn in_flight(o: &mut String, plan: &Plan, sc: &Scale) {
    let spans = super::describe::role_spans(plan);
    let height = plan.roles.len() as f64 * (LANE_H + 8.0);
    let _ = write!(
        o,
        r##"<svg class="chart" width="{:.0}" height="{:.0}" role="img" aria-label="hosts in flight per role">"##,
        LABEL_W + CHART_W + 60.0,
        height + 24.0
    );
    axis(o, sc, plan.duration, 0.0, height);
    for (i, (role, s)) in plan.roles.iter().zip(&spans).enumerate() {
        let top = i as f64 * (LANE_H + 8.0);
        let mut ev: Vec<(u64, i64)> = s.iter().flat_map(|&(a, b)| [(a, 1), (b, -1)]).collect();
        // At equal times an end frees its slot before a start takes it.
        ev.sort();
        let mut points = vec![(0u64, 0i64)];
        let mut n = 0;
        let mut max = 0;
        for (t, d) in ev {
            points.push((t, n));
            n += d;
            max = max.max(n);
            points.push((t, n));
        }
        points.push((plan.duration, n));
        let top_value = role.limit.map(|l| l as i64).unwrap_or(0).max(max).max(1) as f64;
        let y = |v: i64| top + LANE_H - v as f64 * (LANE_H - 6.0) / top_value;
        let poly: Vec<String> = points
            .iter()
            .map(|&(t, v)| format!("{:.1},{:.1}", sc.x(t as f64), y(v)))
            .collect();
        let _ = write!(
            o,
            r##"<g class="lane" data-role="{}" data-max="{max}" data-limit="{}"><rect x="{LABEL_W}" y="{top:.1}" width="{CHART_W}" height="{LANE_H}" class="lanebg"/><text x="4" y="{:.1}" class="label">{}</text><text x="4" y="{:.1}" class="sub">max {max} in flight</text><polyline points="{}" class="flight" style="stroke:{}"/>"##,
            esc(&role.name),
            role.limit.map(|l| l.to_string()).unwrap_or_default(),
            top + 20.0,
            esc(&role.name),
            top + 36.0,
            poly.join(" "),
            PALETTE[i % PALETTE.len()]
        );
        if let Some(l) = role.limit {
            let _ = write!(
                o,
                r##"<line x1="{LABEL_W}" y1="{0:.1}" x2="{1:.1}" y2="{0:.1}" class="limit"><title>limit {l}</title></line><text x="{2:.1}" y="{3:.1}" class="limitlabel">limit {l}</text>"##,
                y(l as i64),
                LABEL_W + CHART_W,
                LABEL_W + CHART_W + 2.0,
                y(l as i64) + 3.0
            );
        }
        o.push_str("</g>");
    }
    o.push_str("</svg>");
}

/// A bar's hover text (its commands show on a click).
fn task_title(t: &TaskInfo) -> String {
    let mut s = format!("{} +{} .. +{}", t.id, dur(t.start), dur(t.end));
    if t.skipped {
        s.push_str(" (skipped: its condition is false)");
    }
    s
}

/// The hosts that are canaries of a role: its first `canary` hosts, as the compiler picks them.
pub(crate) fn canary_hosts<'p>(plan: &'p Plan, role: &str) -> Vec<&'p str> {
    let n = plan
        .roles
        .iter()
        .find(|r| r.name == role)
        .and_then(|r| r.canary)
        .unwrap_or(0);
    plan.hosts
        .iter()
        .filter(|h| h.roles.iter().any(|r| r == role))
        .take(n)
        .map(|h| h.name.as_str())
        .collect()
}

fn bar(o: &mut String, t: &TaskInfo, sc: &Scale, top: f64, colour: &str) {
    let class = match (t.skipped, t.host.is_some()) {
        (true, _) => "bar skipped",
        (false, true) => "bar",
        (false, false) => "bar runbook",
    };
    let _ = write!(
        o,
        r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" class="{class}" style="fill:{colour}" data-task="{}" tabindex="0"><title>{}</title></rect>"##,
        sc.x(t.start as f64),
        top + 2.0,
        sc.w(t.start as f64, t.end as f64),
        ROW_H - 4.0,
        esc(&t.id),
        esc(&task_title(t))
    );
}

fn lane_svg(o: &mut String, sc: &Scale, duration: u64, rows: usize, label: &str) {
    let height = rows as f64 * ROW_H;
    let _ = write!(
        o,
        r##"<svg class="chart" width="{:.0}" height="{:.0}" role="img" aria-label="{}">"##,
        LABEL_W + CHART_W + 60.0,
        height + 24.0,
        esc(label)
    );
    axis(o, sc, duration, 0.0, height);
}

/// One lane per role (folded when big), a row per host and a bar per step coloured by step;
/// a lane of runbook-level tasks (hooks, gates, approvals) first, one row each, named.
fn gantt(o: &mut String, plan: &Plan, sc: &Scale, roles: &HashMap<&str, usize>) {
    let step_index: HashMap<&str, usize> = plan
        .runbook
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    let colour = |t: &TaskInfo| {
        t.step
            .as_deref()
            .and_then(|s| step_index.get(s))
            .map(|&i| PALETTE[i % PALETTE.len()])
            .unwrap_or("#888")
    };
    runbook_lane(o, plan, sc, &colour);
    let mut by_host: HashMap<&str, Vec<&TaskInfo>> = HashMap::new();
    for t in plan.tasks.iter().filter(|t| t.host.is_some()) {
        by_host
            .entry(t.host.as_deref().unwrap_or(""))
            .or_default()
            .push(t);
    }
    let lanes = Lanes {
        plan,
        sc,
        roles,
        by_host: &by_host,
        colour: &colour,
    };
    for (i, role) in plan.roles.iter().enumerate() {
        lanes.role_lane(o, i, role);
    }
    commands_on_click(o, plan);
}

/// The lane of runbook-level tasks, one row each, named.
fn runbook_lane(
    o: &mut String,
    plan: &Plan,
    sc: &Scale,
    colour: &dyn Fn(&TaskInfo) -> &'static str,
) {
    let runbook_level: Vec<&TaskInfo> = plan
        .tasks
        .iter()
        .filter(|t| {
            t.host.is_none() && !matches!(t.kind, TaskKind::RoleDone | TaskKind::CanaryDone)
        })
        .collect();
    if !runbook_level.is_empty() {
        o.push_str("<details class=\"lane\" data-lane=\"runbook\" open><summary>runbook-level: hooks, gates, approvals</summary>");
        lane_svg(
            o,
            sc,
            plan.duration,
            runbook_level.len(),
            "runbook-level tasks",
        );
        for (r, t) in runbook_level.iter().enumerate() {
            let top = r as f64 * ROW_H;
            let _ = write!(
                o,
                r##"<text x="4" y="{:.1}" class="row {}">{}</text>"##,
                top + ROW_H - 4.0,
                t.kind.as_str(),
                esc(&clip(&runbook_label(t), 26))
            );
            bar(o, t, sc, top, colour(t));
        }
        o.push_str("</svg></details>");
    }
}

/// What the role lanes share.
struct Lanes<'a> {
    plan: &'a Plan,
    sc: &'a Scale,
    /// Per host: the role whose lane shows its tasks of no role.
    roles: &'a HashMap<&'a str, usize>,
    by_host: &'a HashMap<&'a str, Vec<&'a TaskInfo>>,
    colour: &'a dyn Fn(&TaskInfo) -> &'static str,
}

impl Lanes<'_> {
    /// Role `i`'s lane: a row per host that runs a step as this role.
    fn role_lane(&self, o: &mut String, i: usize, role: &RoleInfo) {
        let (plan, sc, roles, by_host, colour) =
            (self.plan, self.sc, self.roles, self.by_host, self.colour);
        // A task of this role, or of none on a host that runs with this role first.
        let in_lane = |t: &TaskInfo| match &t.role {
            Some(r) => *r == role.name,
            None => t.host.as_deref().and_then(|h| roles.get(h)) == Some(&i),
        };
        let mut hosts: Vec<(&HostInfo, Vec<&TaskInfo>)> = plan
            .hosts
            .iter()
            .filter_map(|h| {
                let ts: Vec<&TaskInfo> = by_host
                    .get(h.name.as_str())?
                    .iter()
                    .copied()
                    .filter(|t| in_lane(t))
                    .collect();
                (!ts.is_empty()).then_some((h, ts))
            })
            .collect();
        hosts.sort_by_key(|(_, ts)| ts.iter().map(|t| t.start).min().unwrap_or(0));
        let canary = canary_hosts(plan, &role.name);
        let bars: usize = hosts.iter().map(|(_, ts)| ts.len()).sum();
        let _ = write!(
            o,
            "<details class=\"lane\" data-role=\"{}\" data-hosts=\"{}\" data-bars=\"{bars}\"{}><summary><span class=\"swatch\" style=\"background:{}\"></span>{} <small>({} host(s), {}{})</small></summary>",
            esc(&role.name),
            hosts.len(),
            if hosts.len() <= OPEN_LANE_HOSTS { " open" } else { "" },
            PALETTE[i % PALETTE.len()],
            esc(&role.name),
            hosts.len(),
            esc(&role_limit(role)),
            if canary.is_empty() { String::new() } else { format!("; canary {}", esc(&canary.join(", "))) }
        );
        if hosts.is_empty() {
            o.push_str("<p class=\"hint\">No step runs as this role: its hosts run in the lanes of their other roles.</p></details>");
            return;
        }
        lane_svg(
            o,
            sc,
            plan.duration,
            hosts.len(),
            &format!("schedule of role {}", role.name),
        );
        for (r, (h, ts)) in hosts.iter().enumerate() {
            let top = r as f64 * ROW_H;
            let is_canary = canary.contains(&h.name.as_str());
            let _ = write!(
                o,
                r##"<g class="hostrow{}" data-host="{}"><text x="4" y="{:.1}" class="row">{}{}</text>"##,
                if is_canary { " canary" } else { "" },
                esc(&h.name),
                top + ROW_H - 4.0,
                if is_canary { "★ " } else { "" },
                esc(&clip(&h.name, 24))
            );
            for t in ts {
                bar(o, t, sc, top, colour(t));
            }
            o.push_str("</g>");
        }
        o.push_str("</svg></details>");
    }
}

/// What a click on a bar shows: its task's commands, hidden until then.
fn commands_on_click(o: &mut String, plan: &Plan) {
    for t in &plan.tasks {
        let _ = write!(
            o,
            "<div class=\"cmds\" data-commands=\"{}\" hidden><b>{}</b> <small>+{} .. +{}</small>",
            esc(&t.id),
            esc(&t.id),
            esc(&dur(t.start)),
            esc(&dur(t.end))
        );
        if t.skipped {
            o.push_str("<p>skipped: its condition is false</p>");
        } else if t.commands.is_empty() {
            o.push_str("<p>runs no command</p>");
        } else {
            let _ = write!(o, "<pre>{}</pre>", esc(&t.commands.join("\n")));
        }
        if !t.undo_commands.is_empty() {
            let _ = write!(
                o,
                "<div>undo:</div><pre>{}</pre>",
                esc(&t.undo_commands.join("\n"))
            );
        }
        o.push_str("</div>");
    }
}

/// At most `n` characters (labels must not run into the chart; the bar's title has it all).
pub(crate) fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}

/// A runbook-level task as a row label: `approval go-ahead (before web)`.
fn runbook_label(t: &TaskInfo) -> String {
    let what = match t.kind {
        TaskKind::Approval => "approval",
        TaskKind::Gate => "gate",
        TaskKind::CanaryGate => "canary gate",
        _ => t.kind.as_str(),
    };
    match (&t.step, &t.role) {
        (Some(s), Some(r)) => format!("{what} {s} ({r})"),
        (Some(s), None) => format!("{what} {s}"),
        (None, Some(r)) => format!("{what} ({r})"),
        (None, None) => t.id.to_string(),
    }
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222}\
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}h3{font-size:15px;margin:14px 0 4px}\
table{border-collapse:collapse}td,th{padding:3px 10px;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}\
th{background:#f4f4f4}code,pre{font:12px/1.4 ui-monospace,monospace}pre{background:#f7f7f7;padding:8px;overflow-x:auto;margin:4px 0;white-space:pre-wrap;word-break:break-all}\
.meta td:first-child{color:#666}.warn{color:#a40}.swatch{display:inline-block;width:12px;height:12px;margin-right:6px;vertical-align:-1px}\
svg text{font:11px system-ui,sans-serif}.grid{stroke:#eee}.tick{fill:#888;text-anchor:middle}\
.lanebg{fill:#fafafa;stroke:#ddd}.label{font-weight:600}.sub{fill:#666}.flight{fill:none;stroke-width:2}\
.limit{stroke:#c00;stroke-dasharray:5 3}.limitlabel{fill:#c00}.row{fill:#333}.row.approval,.row.gate,.row.canary_gate{font-weight:600;fill:#7a4d00}\
.bar{stroke:#fff;stroke-width:.5;cursor:pointer}.bar.skipped{opacity:.3}.bar.runbook{stroke:#333}.bar.sel{stroke:#000;stroke-width:2}\
.canary text{font-weight:700;fill:#8a5a00}\
details.lane{margin:4px 0}details.lane>summary{cursor:pointer;font-weight:600;padding:2px 0}\
.chart{max-width:100%;height:auto}\
#detail{position:sticky;bottom:0;background:#fff;border-top:2px solid #888;padding:6px 0;max-height:40vh;overflow:auto}#detail:empty{display:none}\
.state{padding:2px 8px;border-radius:10px;background:#ddd;font-weight:600}.st-running{background:#cfe3ff}.st-succeeded{background:#cdeccd}\
.st-succeeded_with_failures,.st-halted,.st-aborted,.st-crashed,.st-store_failed,.st-rollback_failed{background:#f7c9c9}\
.banner{border:2px solid #e0a800;background:#fff8e1;padding:8px 12px;margin:12px 0;border-radius:6px}.banner ul{margin:4px 0}\
.controls button{margin:4px 6px 0 0;padding:4px 10px}.controls .danger{border-color:#c00;color:#c00}\
.dot{display:inline-block;width:10px;height:10px;border-radius:2px;margin:0 4px 0 2px;vertical-align:-1px}\
.o-ok{background:#59a14f;fill:#59a14f}.o-failed{background:#e15759;fill:#e15759}.o-skipped{background:#cfcfcf;fill:#cfcfcf}\
.o-undone{background:#b07aa1;fill:#b07aa1}.o-unknown{background:#f28e2b;fill:#f28e2b}.o-inflight{background:#4e79a7;fill:#4e79a7}\
.o-waiting{background:#edc948;fill:#edc948}.o-notrun{background:#8c8c8c;fill:#8c8c8c}.o-pending{background:#eee;fill:#eee}\
.planned{fill:none;stroke:#999;stroke-dasharray:2 1}.actual{stroke:#fff;stroke-width:.3}\
.cells{display:flex;flex-wrap:wrap;gap:3px}.cell{display:inline-block;min-width:12px;height:16px;padding:0 5px;border-radius:3px;font-size:11px;line-height:16px;color:#fff;text-decoration:none;background:#bbb}\
.cells.dense .cell{padding:0;width:12px;height:12px}.cells.dense .cell span{display:none}\
.cell.canary{outline:2px solid #8a5a00}.h-upgraded{background:#59a14f}.h-upgrading{background:#4e79a7}.h-pending{background:#d6d6d6;color:#333}\
.h-failed{background:#e15759}.h-rolled_back{background:#b07aa1}.tag{padding:0 6px;border-radius:3px;color:#fff;font-size:12px}\
.reason{color:#a00}.budget.over{color:#c00;font-weight:700}.cmd{margin:2px 0 6px}.cmd .line{display:block;white-space:pre-wrap;word-break:break-all}\
.cmd.bad .cmdmeta{color:#c00}.cmdmeta{color:#666;font-size:12px}.steps td{font-size:13px}.host>summary{cursor:pointer;padding:2px 0}\
.next{font-size:15px;margin-top:16px}.next code{background:#f0f0f0;padding:2px 6px}.hint{color:#666}\
@media (max-width:900px){body{margin:8px}}\
@media print{body{margin:0;font-size:11px}.controls,#detail,.hint{display:none}details>summary{list-style:none}\
.banner{border-width:1px}pre{white-space:pre-wrap;max-height:none}.cell{-webkit-print-color-adjust:exact;print-color-adjust:exact}\
.dot,.tag,.state,rect{-webkit-print-color-adjust:exact;print-color-adjust:exact}h2{break-after:avoid}.host{break-inside:avoid}}";

/// The page's script, written for this project: a click on a bar shows its task's commands,
/// printing unfolds every section, and the live page (`fleetbook watch`) replaces its body on
/// each update and sends approvals and aborts. It puts no text of the run into markup: the
/// HTML it inserts was escaped by the server, and it reads values with `textContent` and
/// `dataset` only.
const SCRIPT: &str = r#"(function () {
  'use strict';
  var detail = document.getElementById('detail');
  function showTask(id) {
    var found = null;
    document.querySelectorAll('[data-commands]').forEach(function (el) {
      if (el.dataset.commands === id) { found = el; }
    });
    document.querySelectorAll('.bar.sel').forEach(function (el) { el.classList.remove('sel'); });
    if (!found || !detail) { return; }
    var copy = found.cloneNode(true);
    copy.hidden = false;
    copy.removeAttribute('data-commands');
    copy.dataset.shown = id;
    detail.replaceChildren(copy);
    document.querySelectorAll('.bar').forEach(function (el) {
      if (el.dataset.task === id) { el.classList.add('sel'); }
    });
  }
  var token = new URLSearchParams(location.search).get('token') || '';
  function post(what, fields, out) {
    var body = new URLSearchParams(fields);
    fetch(what + '?token=' + encodeURIComponent(token), { method: 'POST', body: body })
      .then(function (r) { return r.text().then(function (t) { return [r.ok, t]; }); })
      .then(function (a) { if (out) { out.textContent = a[1]; out.dataset.ok = a[0] ? '1' : '0'; } })
      .catch(function (e) { if (out) { out.textContent = String(e); out.dataset.ok = '0'; } });
  }
  document.addEventListener('click', function (ev) {
    var t = ev.target.closest ? ev.target.closest('[data-task],[data-action]') : null;
    if (!t) { return; }
    var out = document.querySelector('.control-result');
    if (t.tagName === 'BUTTON' && t.dataset.action === 'approve') {
      post('approve', { gate: t.dataset.gate || '' }, out);
    } else if (t.tagName === 'BUTTON' && t.dataset.action === 'abort') {
      if (t.dataset.armed === '1') { post('abort', {}, out); }
      else { t.dataset.armed = '1'; t.textContent = 'Click again to abort the run'; }
    } else if (t.dataset.task && t.classList.contains('bar')) {
      showTask(t.dataset.task);
    }
  });
  document.addEventListener('keydown', function (ev) {
    var t = ev.target;
    if (ev.key === 'Enter' && t && t.classList && t.classList.contains('bar')) { showTask(t.dataset.task); }
  });
  window.addEventListener('beforeprint', function () {
    document.querySelectorAll('details').forEach(function (d) { d.open = true; });
  });
  function dense() {
    document.querySelectorAll('.cells').forEach(function (c) {
      c.classList.toggle('dense', c.children.length > 60);
    });
  }
  dense();
  if (document.body.dataset.live !== '1') { return; }
  var live = document.getElementById('live');
  function key(d) { return (d.dataset.role || '') + '\u0000' + (d.dataset.host || '') + '\u0000' + (d.dataset.lane || ''); }
  var es = new EventSource('events?token=' + encodeURIComponent(token));
  es.addEventListener('update', function (e) {
    var open = {};
    live.querySelectorAll('details').forEach(function (d) { open[key(d)] = d.open; });
    live.innerHTML = JSON.parse(e.data);
    live.querySelectorAll('details').forEach(function (d) {
      if (Object.prototype.hasOwnProperty.call(open, key(d))) { d.open = open[key(d)]; }
    });
    dense();
    document.body.dataset.updates = String(Number(document.body.dataset.updates || '0') + 1);
  });
  es.addEventListener('end', function () { es.close(); document.body.dataset.ended = '1'; });
  es.onerror = function () { document.body.dataset.disconnected = '1'; };
})();"#;

/// The page's policy, a second line of defence behind the escaping: only our own script
/// (by its digest) runs, no inline handler, nothing is loaded from anywhere, and the page
/// talks to no one but the server that served it.
fn content_policy() -> String {
    use sha2::{Digest, Sha256};
    let digest = base64(&Sha256::digest(SCRIPT.as_bytes()));
    format!(
        "default-src 'none'; script-src 'sha256-{digest}'; style-src 'unsafe-inline'; connect-src 'self'; img-src 'none'; base-uri 'none'; form-action 'none'"
    )
}

fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut o = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                o.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                o.push('=');
            }
        }
    }
    o
}

/// A whole document around `body`: the style, a panel for what a click shows, the script.
pub(crate) fn page(title: &str, body: &str, live: bool) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta http-equiv=\"Content-Security-Policy\" content=\"{}\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{}</title><style>{STYLE}</style></head><body{}>\n{body}\n<div id=\"detail\" aria-live=\"polite\"></div><script>{SCRIPT}</script></body></html>\n",
        content_policy(),
        esc(title),
        if live { " data-live=\"1\"" } else { "" }
    )
}

pub fn html(plan: &Plan) -> String {
    let roles = run_roles(plan);
    let sc = Scale {
        duration: plan.duration.max(1) as f64,
    };
    let mut o = String::new();
    header(&mut o, plan);
    role_table(&mut o, plan);
    step_table(&mut o, plan);
    o.push_str("<h2>Hosts in flight per role</h2>");
    in_flight(&mut o, plan, &sc);
    o.push_str("\n<h2>Schedule</h2><p>Click a role to fold or unfold its lane; click a bar for its task's commands (hover for times).</p>");
    gantt(&mut o, plan, &sc, &roles);
    commands(&mut o, plan);
    page(&format!("plan: {}", plan.runbook.name), &o, false)
}

/// The runbook's name and description, a table of where it comes from and its policy,
/// and the plan's warnings.
fn header(o: &mut String, plan: &Plan) {
    let rb = &plan.runbook;
    let _ = write!(o, "<h1>{}</h1>", esc(&rb.name));
    if !rb.description.is_empty() {
        let _ = write!(o, "<p>{}</p>", esc(&rb.description));
    }
    o.push_str("<table class=\"meta\">");
    let mut meta = |k: &str, v: String| {
        let _ = write!(o, "<tr><td>{k}</td><td>{v}</td></tr>");
    };
    meta(
        "Source",
        format!(
            "<code>{}</code> ({})",
            esc(&rb.path),
            esc(short_digest(&plan.runbook_digest))
        ),
    );
    meta(
        "Inventory",
        format!(
            "<code>{}</code> ({}): {} host{}{}",
            esc(&plan.inventory),
            esc(short_digest(&plan.inventory_digest)),
            plan.hosts.len(),
            if plan.hosts.len() == 1 { "" } else { "s" },
            plan.limit_pattern
                .as_ref()
                .map(|p| format!(", --limit <code>{}</code>", esc(p)))
                .unwrap_or_default()
        ),
    );
    for l in &plan.libraries {
        let may = match &l.uses {
            None => "unrestricted".to_string(),
            Some(u) if u.is_empty() => "may use no host operation".to_string(),
            Some(u) => format!("may use {}", u.join(", ")),
        };
        meta(
            "Library",
            format!(
                "<code>{}{}</code> ({}) {}; {}",
                esc(&l.name),
                esc(&l
                    .version
                    .as_ref()
                    .map(|v| format!(" {v}"))
                    .unwrap_or_default()),
                esc(short_digest(&l.digest)),
                esc(&l.source),
                esc(&may)
            ),
        );
    }
    if !plan.params.is_empty() {
        meta(
            "Params",
            plan.params
                .iter()
                .map(|p| format!("<code>{}={}</code>", esc(&p.name), esc(&p.value)))
                .collect::<Vec<_>>()
                .join(" "),
        );
    }
    meta("Policy", esc(&policy(plan).join("; ")));
    meta(
        "Estimated",
        format!(
            "{} (a step without .estimate counts 1m)",
            esc(&dur(plan.duration))
        ),
    );
    meta("fleetbook", esc(&plan.fleetbook_version));
    o.push_str("</table>\n");
    for w in &plan.warnings {
        let _ = write!(o, "<p class=\"warn\">warning: {}</p>", esc(w));
    }
}

fn role_table(o: &mut String, plan: &Plan) {
    o.push_str("<h2>Roles, in order</h2><table><tr><th></th><th>role</th><th>hosts</th><th>limit</th><th></th></tr>");
    for (i, r) in plan.roles.iter().enumerate() {
        let _ = write!(
            o,
            "<tr><td>{}</td><td><span class=\"swatch\" style=\"background:{}\"></span>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            i + 1,
            PALETTE[i % PALETTE.len()],
            esc(&r.name),
            r.hosts,
            esc(&role_limit(r)),
            esc(&role_extras(r).join(", "))
        );
    }
    o.push_str("</table>\n");
}

fn step_table(o: &mut String, plan: &Plan) {
    let rb = &plan.runbook;
    o.push_str("<h2>Steps</h2><table><tr><th>step</th><th>where</th><th>options</th><th>estimate</th></tr>");
    for (i, s) in rb.steps.iter().enumerate() {
        let _ = write!(
            o,
            "<tr><td><span class=\"swatch\" style=\"background:{}\"></span>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            PALETTE[i % PALETTE.len()],
            esc(&s.name),
            esc(&step_scope(s)),
            esc(&step_options(s).join(", ")),
            esc(&dur(s.estimate))
        );
    }
    o.push_str("</table>\n");
}

/// The dry run's commands of the first host of each role, and the runbook-level ones.
fn commands(o: &mut String, plan: &Plan) {
    o.push_str("\n<h2>Commands (dry run; first host of each role)</h2>");
    for h in sample_hosts(plan) {
        let _ = write!(
            o,
            "<details><summary><b>{}</b> ({})</summary>",
            esc(&h.name),
            esc(&h.roles.join(", "))
        );
        for t in plan
            .tasks
            .iter()
            .filter(|t| t.host.as_ref() == Some(&h.name))
        {
            let step = esc(t.step.as_deref().unwrap_or(""));
            if t.skipped {
                let _ = write!(o, "<div>{step}: skipped (its condition is false)</div>");
            } else if t.commands.is_empty() {
                let _ = write!(o, "<div>{step}: runs no command</div>");
            } else {
                let _ = write!(
                    o,
                    "<div>{step}</div><pre>{}</pre>",
                    esc(&t.commands.join("\n"))
                );
            }
        }
        o.push_str("</details>");
    }
    let others: Vec<&TaskInfo> = plan
        .tasks
        .iter()
        .filter(|t| t.host.is_none() && !t.commands.is_empty())
        .collect();
    if !others.is_empty() {
        o.push_str("<details><summary><b>runbook-level</b></summary>");
        for t in others {
            let _ = write!(
                o,
                "<div>{}</div><pre>{}</pre>",
                esc(&t.id),
                esc(&t.commands.join("\n"))
            );
        }
        o.push_str("</details>");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc(r#"<script>"a" & 'b'</script>"#),
            "&lt;script&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/script&gt;"
        );
    }

    #[test]
    fn base64_is_the_standard_alphabet_with_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn ticks_are_round_and_about_eight() {
        assert_eq!(tick_step(240), 30);
        assert_eq!(tick_step(3600), 600);
        assert_eq!(tick_step(5), 1);
        assert!(tick_step(10 * 86400) >= 86400);
    }
}
