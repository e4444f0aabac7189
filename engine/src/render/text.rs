//! The plan as text for a terminal: the runbook, its roles in order with their limits, the
//! steps, the schedule as start times with the hosts that start then, and the commands of
//! one host per role.

use crate::compile::TaskKind;
use crate::plan::Plan;
use fleetbook_stdlib::duration::format_duration;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

const MAX_SCHEDULE_LINES: usize = 40;
const MAX_NAMES_PER_LINE: usize = 8;

fn dur(secs: u64) -> String {
    format_duration(Duration::from_secs(secs))
}

fn short_digest(d: &str) -> &str {
    &d[..d.len().min(19)]
}

pub fn text(plan: &Plan) -> String {
    let mut o = String::new();
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
    if !plan.params.is_empty() {
        let ps: Vec<String> = plan
            .params
            .iter()
            .map(|p| format!("{}={}", p.name, p.value))
            .collect();
        let _ = writeln!(o, "Params     {}", ps.join(" "));
    }
    let mut policy = Vec::new();
    if let Some(t) = plan.limits.total {
        policy.push(format!("at most {t} hosts in flight in all"));
    }
    for b in &plan.limits.limit_by {
        policy.push(format!("at most {} per distinct {}", b.max, b.var));
    }
    policy.push(if plan.limits.batches {
        "lock-step batches".into()
    } else {
        "rolling window".into()
    });
    if rb.rollback_on_failure {
        policy.push("failed hosts roll back (undo)".into());
    }
    let _ = writeln!(o, "Policy     {}", policy.join("; "));

    let _ = writeln!(o, "\nRoles, in order");
    let width = plan.roles.iter().map(|r| r.name.len()).max().unwrap_or(4);
    for (i, r) in plan.roles.iter().enumerate() {
        let limit = match (&r.limit, &r.limit_declared) {
            (Some(l), Some(d)) if d.ends_with('%') => format!("limit {l} ({d})"),
            (Some(l), _) => format!("limit {l}"),
            (None, _) => "no limit".into(),
        };
        let mut extra = Vec::new();
        if let Some(m) = r.max_failures {
            extra.push(format!("max failures {m}"));
        }
        if let Some(c) = r.canary {
            extra.push(format!("canary {c}"));
        }
        if !r.after.is_empty() {
            extra.push(format!("after {}", r.after.join(", ")));
        }
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

    let _ = writeln!(o, "\nSteps");
    for s in &rb.steps {
        let scope = match (s.kind, &s.roles) {
            ("host", None) => "every host".to_string(),
            ("host", Some(rs)) => format!("roles {}", rs.join(", ")),
            (k, Some(rs)) => format!("{} {}", k.replace('_', " "), rs.join(", ")),
            (k, None) => k.to_string(),
        };
        let mut opts = Vec::new();
        if let Some(t) = s.timeout {
            opts.push(format!("timeout {}", dur(t)));
        }
        if s.retries > 0 {
            opts.push(format!(
                "retries {} every {}",
                s.retries,
                dur(s.retry_delay)
            ));
        }
        if let Some(t) = s.throttle {
            opts.push(format!("throttle {t}"));
        }
        if s.has_undo {
            opts.push("undo".into());
        }
        if s.conditional {
            opts.push("when".into());
        }
        let _ = writeln!(o, "  {:24} {:28} {}", s.name, scope, opts.join(", "));
    }

    let _ = writeln!(
        o,
        "\nSchedule   estimated {} (a step without .estimate counts 1m)",
        dur(plan.duration)
    );
    // Events by time: host starts and runbook-level tasks.
    let mut events: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let mut host_starts: BTreeMap<u64, Vec<&str>> = BTreeMap::new();
    let busy: std::collections::HashSet<&str> = plan
        .tasks
        .iter()
        .filter_map(|t| t.host.as_deref())
        .collect();
    let idle = plan
        .hosts
        .iter()
        .filter(|h| !busy.contains(h.name.as_str()))
        .count();
    for h in plan.hosts.iter().filter(|h| busy.contains(h.name.as_str())) {
        host_starts.entry(h.start).or_default().push(&h.name);
    }
    for t in &plan.tasks {
        let label = match t.kind {
            TaskKind::Host | TaskKind::RoleDone | TaskKind::CanaryDone => continue,
            TaskKind::Approval => {
                format!("wait for approval {:?}", t.step.as_deref().unwrap_or(""))
            }
            k => format!(
                "{} {}{}",
                serde_json::to_value(k)
                    .ok()
                    .and_then(|v| v.as_str().map(|s| s.replace('_', " ")))
                    .unwrap_or_default(),
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
    if idle > 0 {
        let _ = writeln!(
            o,
            "  ({idle} host{} run no step)",
            if idle == 1 { "" } else { "s" }
        );
    }

    // Commands, for the first host of each role: hosts of a role usually run the same ones.
    let _ = writeln!(
        o,
        "\nCommands (dry-run; first host of each role, --format json lists every task)"
    );
    let mut shown_hosts = Vec::new();
    for r in &plan.roles {
        let Some(h) = plan.hosts.iter().find(|h| {
            h.roles.contains(&r.name)
                && busy.contains(h.name.as_str())
                && !shown_hosts.contains(&&h.name)
        }) else {
            continue;
        };
        shown_hosts.push(&h.name);
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
    for w in &plan.warnings {
        let _ = writeln!(o, "\nwarning: {w}");
    }
    o
}
