//! The plan as one self-contained HTML page (no script, no external resource), for reviewing a
//! dry run as a picture: the runbook and its policy, roles and steps, hosts in flight per role
//! over the simulated schedule against each role's limit, a Gantt chart of the hosts' steps,
//! and the commands of one host per role.
//!
//! Sized for big fleets: the in-flight curves cost two points per host, and the Gantt chart
//! draws at most `MAX_GANTT_ROWS_PER_ROLE` hosts of each role (the JSON plan has all).

use super::describe::{
    busy_hosts, dur, policy, role_extras, role_limit, sample_hosts, short_digest, step_options,
    step_scope,
};
use crate::compile::TaskKind;
use crate::plan::{HostInfo, Plan, TaskInfo};
use std::collections::HashMap;
use std::fmt::Write;

const MAX_GANTT_ROWS_PER_ROLE: usize = 40;
/// Left margin for labels, and the drawing's width for the whole schedule, in pixels.
const LABEL_W: f64 = 170.0;
const CHART_W: f64 = 860.0;
const ROW_H: f64 = 16.0;
const LANE_H: f64 = 56.0;
const PALETTE: [&str; 10] = [
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac",
];

/// Escapes text for HTML element content and attribute values.
fn esc(s: &str) -> String {
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

struct Scale {
    duration: f64,
}

impl Scale {
    fn x(&self, t: u64) -> f64 {
        LABEL_W + t as f64 * CHART_W / self.duration
    }
    fn w(&self, a: u64, b: u64) -> f64 {
        ((b.saturating_sub(a)) as f64 * CHART_W / self.duration).max(1.0)
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

fn axis(o: &mut String, sc: &Scale, duration: u64, top: f64, height: f64) {
    let step = tick_step(duration);
    let mut t = 0;
    while t <= duration {
        let x = sc.x(t);
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
fn in_flight(o: &mut String, plan: &Plan, sc: &Scale, roles: &HashMap<&str, usize>) {
    let busy = busy_hosts(plan);
    let mut spans: Vec<Vec<(u64, u64)>> = vec![Vec::new(); plan.roles.len()];
    for h in plan.hosts.iter().filter(|h| busy.contains(h.name.as_str())) {
        if let Some(&r) = roles.get(h.name.as_str()) {
            spans[r].push((h.start, h.end));
        }
    }
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
            .map(|&(t, v)| format!("{:.1},{:.1}", sc.x(t), y(v)))
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

fn task_title(t: &TaskInfo) -> String {
    let mut s = format!("{} +{} .. +{}", t.id, dur(t.start), dur(t.end));
    if t.skipped {
        s.push_str(" (skipped: its condition is false)");
    }
    for c in &t.commands {
        s.push('\n');
        s.push_str(c);
    }
    s
}

/// One row per host (at most `MAX_GANTT_ROWS_PER_ROLE` per role), a bar per step coloured by
/// step; runbook-level tasks (once, gates, approvals, role hooks) on the first row.
fn gantt(o: &mut String, plan: &Plan, sc: &Scale, roles: &HashMap<&str, usize>) {
    let step_index: HashMap<&str, usize> = plan
        .runbook
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    let mut by_host: HashMap<&str, Vec<&TaskInfo>> = HashMap::new();
    let mut runbook_level = Vec::new();
    for t in &plan.tasks {
        match (&t.host, t.kind) {
            (Some(h), _) => by_host.entry(h.as_str()).or_default().push(t),
            (None, TaskKind::RoleDone | TaskKind::CanaryDone) => {}
            (None, _) => runbook_level.push(t),
        }
    }
    // Rows: (label, tasks), role by role in order.
    let mut rows: Vec<(String, Vec<&TaskInfo>)> = Vec::new();
    if !runbook_level.is_empty() {
        rows.push(("runbook".into(), runbook_level));
    }
    for (i, role) in plan.roles.iter().enumerate() {
        let hosts: Vec<&HostInfo> = plan
            .hosts
            .iter()
            .filter(|h| {
                roles.get(h.name.as_str()) == Some(&i) && by_host.contains_key(h.name.as_str())
            })
            .collect();
        for h in hosts.iter().take(MAX_GANTT_ROWS_PER_ROLE) {
            rows.push((
                format!("{} · {}", h.name, role.name),
                by_host.remove(h.name.as_str()).unwrap_or_default(),
            ));
        }
        if hosts.len() > MAX_GANTT_ROWS_PER_ROLE {
            rows.push((
                format!(
                    "… {} more {} hosts",
                    hosts.len() - MAX_GANTT_ROWS_PER_ROLE,
                    role.name
                ),
                Vec::new(),
            ));
        }
    }
    let height = rows.len() as f64 * ROW_H;
    let _ = write!(
        o,
        r##"<svg class="chart" width="{:.0}" height="{:.0}" role="img" aria-label="schedule per host">"##,
        LABEL_W + CHART_W + 60.0,
        height + 24.0
    );
    axis(o, sc, plan.duration, 0.0, height);
    for (r, (label, tasks)) in rows.iter().enumerate() {
        let top = r as f64 * ROW_H;
        let _ = write!(
            o,
            r##"<text x="4" y="{:.1}" class="row">{}</text>"##,
            top + ROW_H - 4.0,
            esc(label)
        );
        for t in tasks {
            let colour = t
                .step
                .as_deref()
                .and_then(|s| step_index.get(s))
                .map(|&i| PALETTE[i % PALETTE.len()])
                .unwrap_or("#888");
            let class = match (t.skipped, t.host.is_some()) {
                (true, _) => "bar skipped",
                (false, true) => "bar",
                (false, false) => "bar runbook",
            };
            let _ = write!(
                o,
                r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" class="{class}" style="fill:{colour}"><title>{}</title></rect>"##,
                sc.x(t.start),
                top + 2.0,
                sc.w(t.start, t.end),
                ROW_H - 4.0,
                esc(&task_title(t))
            );
        }
    }
    o.push_str("</svg>");
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222}\
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}\
table{border-collapse:collapse}td,th{padding:3px 10px;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}\
th{background:#f4f4f4}code,pre{font:12px/1.4 ui-monospace,monospace}pre{background:#f7f7f7;padding:8px;overflow-x:auto;margin:4px 0}\
.meta td:first-child{color:#666}.warn{color:#a40}.swatch{display:inline-block;width:12px;height:12px;margin-right:6px;vertical-align:-1px}\
svg text{font:11px system-ui,sans-serif}.grid{stroke:#eee}.tick{fill:#888;text-anchor:middle}\
.lanebg{fill:#fafafa;stroke:#ddd}.label{font-weight:600}.sub{fill:#666}.flight{fill:none;stroke-width:2}\
.limit{stroke:#c00;stroke-dasharray:5 3}.limitlabel{fill:#c00}.row{fill:#333}\
.bar{stroke:#fff;stroke-width:.5}.bar.skipped{opacity:.3}.bar.runbook{stroke:#333}";

pub fn html(plan: &Plan) -> String {
    let rb = &plan.runbook;
    let roles = run_roles(plan);
    let sc = Scale {
        duration: plan.duration.max(1) as f64,
    };
    let mut o = String::new();
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>plan: {}</title><style>{STYLE}</style></head><body>\n",
        esc(&rb.name)
    );
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
    o.push_str("</table>\n<h2>Steps</h2><table><tr><th>step</th><th>where</th><th>options</th><th>estimate</th></tr>");
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
    o.push_str("</table>\n<h2>Hosts in flight per role</h2>");
    in_flight(&mut o, plan, &sc, &roles);
    o.push_str("\n<h2>Schedule</h2><p>Hover a bar for its task, times and commands.</p>");
    gantt(&mut o, plan, &sc, &roles);

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
    o.push_str("\n</body></html>\n");
    o
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
    fn ticks_are_round_and_about_eight() {
        assert_eq!(tick_step(240), 30);
        assert_eq!(tick_step(3600), 600);
        assert_eq!(tick_step(5), 1);
        assert!(tick_step(10 * 86400) >= 86400);
    }
}
