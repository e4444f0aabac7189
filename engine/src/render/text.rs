//! The plan as text for a terminal: the runbook, its roles in order with their limits, the
//! steps, the schedule as start times with the hosts that start then, and the commands of
//! one host per role.

use super::describe::{
    busy_hosts, dur, policy, role_extras, role_limit, role_notes, sample_hosts, short_digest,
    step_options, step_scope,
};
use crate::compile::TaskKind;
use crate::plan::Plan;
use std::collections::BTreeMap;
use std::fmt::Write;

const MAX_SCHEDULE_LINES: usize = 40;
const MAX_NAMES_PER_LINE: usize = 8;

pub fn text(plan: &Plan) -> String {
    let mut o = String::new();
    header(&mut o, plan);
    roles(&mut o, plan);
    steps(&mut o, plan);
    schedule(&mut o, plan);
    commands(&mut o, plan);
    for w in &plan.warnings {
        let _ = writeln!(o, "\nwarning: {w}");
    }
    o
}

/// The runbook, its source, inventory, libraries, params and policy.
fn header(o: &mut String, plan: &Plan) {
    let rb = &plan.runbook;
    let _ = writeln!(
        o,
        "Runbook    {}{}",
        rb.name,
        if rb.description.is_empty() {
            String::new()
        } else {
            format!(" — {}", rb.description)
        }
    );
    let _ = writeln!(
        o,
        "Source     {} ({})",
        rb.path,
        short_digest(&plan.runbook_digest)
    );
    let _ = writeln!(
        o,
        "Inventory  {} ({}): {} host{}{}",
        plan.inventory,
        short_digest(&plan.inventory_digest),
        plan.hosts.len(),
        if plan.hosts.len() == 1 { "" } else { "s" },
        plan.limit_pattern
            .as_ref()
            .map(|p| format!(", --limit {p}"))
            .unwrap_or_default()
    );
    for l in &plan.libraries {
        let may = match &l.uses {
            None => "unrestricted".to_string(),
            Some(u) if u.is_empty() => "may use no host operation".to_string(),
            Some(u) => format!("may use {}", u.join(", ")),
        };
        let _ = writeln!(
            o,
            "Library    {}{} ({}) {}; {may}",
            l.name,
            l.version
                .as_ref()
                .map(|v| format!(" {v}"))
                .unwrap_or_default(),
            short_digest(&l.digest),
            l.source
        );
    }
    if !plan.params.is_empty() {
        let ps: Vec<String> = plan
            .params
            .iter()
            .map(|p| format!("{}={}", p.name, p.value))
            .collect();
        let _ = writeln!(o, "Params     {}", ps.join(" "));
    }
    let _ = writeln!(o, "Policy     {}", policy(plan).join("; "));
}

fn roles(o: &mut String, plan: &Plan) {
    let _ = writeln!(o, "\nRoles, in order");
    let width = plan.roles.iter().map(|r| r.name.len()).max().unwrap_or(4);
    for (i, r) in plan.roles.iter().enumerate() {
        let limit = role_limit(r);
        let mut extra = role_extras(r);
        extra.extend(role_notes(plan, i));
        let _ = writeln!(
            o,
            "  {:>2}. {:width$}  {:>5} host{}  {:18} {}",
            i + 1,
            r.name,
            r.hosts,
            if r.hosts == 1 { " " } else { "s" },
            limit,
            extra.join("  ")
        );
    }
}

fn steps(o: &mut String, plan: &Plan) {
    let rb = &plan.runbook;
    let _ = writeln!(o, "\nSteps");
    for s in &rb.steps {
        let (scope, opts) = (step_scope(s), step_options(s));
        let _ = writeln!(o, "  {:24} {:28} {}", s.name, scope, opts.join(", "));
    }
}

/// The schedule as start times with what starts then.
fn schedule(o: &mut String, plan: &Plan) {
    let _ = writeln!(
        o,
        "\nSchedule   estimated {} (a step without .estimate counts 1m)",
        dur(plan.duration)
    );
    let Events {
        events,
        mut held_hosts,
        idle,
    } = events(plan);
    let total_lines = events.len();
    for (i, (t, labels)) in events.iter().enumerate() {
        if i == MAX_SCHEDULE_LINES {
            let _ = writeln!(
                o,
                "  … {} more start times (see --format json)",
                total_lines - MAX_SCHEDULE_LINES
            );
            break;
        }
        for l in labels {
            let _ = writeln!(o, "  +{:<8} {l}", dur(*t));
        }
    }
    let _ = writeln!(o, "  +{:<8} done", dur(plan.duration));
    if !held_hosts.is_empty() {
        let more = held_hosts.len().saturating_sub(MAX_NAMES_PER_LINE);
        held_hosts.truncate(MAX_NAMES_PER_LINE);
        let _ = writeln!(
            o,
            "  held (a role at limit 0, or waiting for one): {}{}",
            held_hosts.join(" "),
            if more > 0 {
                format!(" … +{more} more")
            } else {
                String::new()
            }
        );
    }
    if idle > 0 {
        let _ = writeln!(
            o,
            "  ({idle} host{} run no step)",
            if idle == 1 { "" } else { "s" }
        );
    }
}

/// What starts when (host starts and runbook-level tasks), the hosts a held role keeps,
/// and how many hosts run no step.
struct Events<'p> {
    events: BTreeMap<u64, Vec<String>>,
    held_hosts: Vec<&'p str>,
    idle: usize,
}

fn events(plan: &Plan) -> Events<'_> {
    let mut events: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let mut host_starts: BTreeMap<u64, Vec<&str>> = BTreeMap::new();
    let busy = busy_hosts(plan);
    let idle = plan
        .hosts
        .iter()
        .filter(|h| !busy.contains(h.name.as_str()))
        .count();
    let held: std::collections::HashSet<&str> = plan
        .tasks
        .iter()
        .filter(|t| t.held)
        .filter_map(|t| t.host.as_deref())
        .collect();
    let mut held_hosts = Vec::new();
    for h in plan.hosts.iter().filter(|h| busy.contains(h.name.as_str())) {
        if held.contains(h.name.as_str()) {
            held_hosts.push(h.name.as_str());
        } else {
            host_starts.entry(h.start).or_default().push(&h.name);
        }
    }
    for t in &plan.tasks {
        let label = match t.kind {
            TaskKind::Host | TaskKind::HostCheck | TaskKind::RoleDone | TaskKind::CanaryDone => {
                continue
            }
            _ if t.held => continue,
            TaskKind::Approval => {
                format!("wait for approval {:?}", t.step.as_deref().unwrap_or(""))
            }
            k => format!(
                "{} {}{}",
                k.as_str().replace('_', " "),
                t.step.as_deref().unwrap_or(""),
                t.role
                    .as_ref()
                    .map(|r| format!(" [{r}]"))
                    .unwrap_or_default()
            ),
        };
        events.entry(t.start).or_default().push(label);
    }
    for (t, names) in host_starts {
        let shown: Vec<&str> = names.iter().take(MAX_NAMES_PER_LINE).copied().collect();
        let more = names.len().saturating_sub(MAX_NAMES_PER_LINE);
        let mut line = format!("start {}", shown.join(" "));
        if more > 0 {
            let _ = write!(line, " … +{more} more");
        }
        events.entry(t).or_default().push(line);
    }
    Events {
        events,
        held_hosts,
        idle,
    }
}

fn commands(o: &mut String, plan: &Plan) {
    // Commands, for the first host of each role: hosts of a role usually run the same ones.
    let _ = writeln!(
        o,
        "\nCommands (dry-run; first host of each role, --format json lists every task)"
    );
    for h in sample_hosts(plan) {
        let _ = writeln!(o, "  {} ({})", h.name, h.roles.join(", "));
        for t in plan
            .tasks
            .iter()
            .filter(|t| t.host.as_ref() == Some(&h.name))
        {
            let step = t.step.as_deref().unwrap_or("");
            if t.skipped {
                let _ = writeln!(o, "    {step:22} (skipped: its condition is false)");
                continue;
            }
            if t.commands.is_empty() {
                let _ = writeln!(o, "    {step:22} (runs no command)");
            }
            for (i, c) in t.commands.iter().enumerate() {
                let _ = writeln!(
                    o,
                    "    {:22} {}",
                    if i == 0 { step } else { "" },
                    c.replace('\n', "\n                           ")
                );
            }
        }
    }
    let others: Vec<_> = plan
        .tasks
        .iter()
        .filter(|t| t.host.is_none() && !t.commands.is_empty())
        .collect();
    if !others.is_empty() {
        let _ = writeln!(o, "  runbook-level");
        for t in others {
            for (i, c) in t.commands.iter().enumerate() {
                let _ = writeln!(o, "    {:22} {c}", if i == 0 { t.id.as_str() } else { "" });
            }
        }
    }
}
