//! The plan's summary shown before a run asks for confirmation: what will happen, in a few
//! lines — hosts and tasks, each role with its host count, limit and failure budget, the
//! fleet-wide rules, `--limit`, parameters, approvals to wait for, warnings' count.

use super::describe::{dur, policy, role_extras, role_limit, role_notes};
use crate::compile::TaskKind;
use crate::plan::Plan;
use std::fmt::Write;

/// `1 host`, `2 hosts`.
pub fn count(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

pub fn summary(plan: &Plan) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "runbook {} on {}, {}; estimated {}",
        plan.runbook.name,
        count(plan.hosts.len(), "host"),
        count(plan.tasks.len(), "task"),
        dur(plan.duration)
    );
    if let Some(p) = &plan.limit_pattern {
        let _ = writeln!(o, "  limit      {p}");
    }
    if !plan.params.is_empty() {
        let ps: Vec<String> = plan
            .params
            .iter()
            .map(|p| format!("{}={}", p.name, p.value))
            .collect();
        let _ = writeln!(o, "  params     {}", ps.join(" "));
    }
    let roles: Vec<_> = plan
        .roles
        .iter()
        .enumerate()
        .filter(|(_, r)| r.hosts > 0)
        .collect();
    let width = roles.iter().map(|(_, r)| r.name.len()).max().unwrap_or(0);
    let counts: Vec<String> = roles.iter().map(|(_, r)| count(r.hosts, "host")).collect();
    let cwidth = counts.iter().map(String::len).max().unwrap_or(0);
    for (k, ((i, r), n)) in roles.iter().zip(&counts).enumerate() {
        let mut parts = vec![role_limit(r)];
        parts.extend(role_extras(r));
        parts.extend(role_notes(plan, *i));
        let _ = writeln!(
            o,
            "  {:10} {:width$}  {n:cwidth$}  {}",
            if k == 0 { "roles" } else { "" },
            r.name,
            parts.join(", ")
        );
    }
    let _ = writeln!(o, "  policy     {}", policy(plan).join("; "));
    let approvals: Vec<&str> = plan
        .tasks
        .iter()
        .filter(|t| t.kind == TaskKind::Approval)
        .filter_map(|t| t.step.as_deref())
        .collect();
    if !approvals.is_empty() {
        let _ = writeln!(
            o,
            "  approvals  {} (waits for `fleetbook approve RUN --gate NAME` or --approve NAME)",
            approvals.join(", ")
        );
    }
    if !plan.warnings.is_empty() {
        let _ = writeln!(o, "  warnings   {} (above)", plan.warnings.len());
    }
    o.pop();
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_agree_with_their_number() {
        assert_eq!(count(1, "host"), "1 host");
        assert_eq!(count(0, "host"), "0 hosts");
        assert_eq!(count(3, "task"), "3 tasks");
    }
}
