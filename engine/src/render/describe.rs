//! Words for a plan's parts, shared by the text and HTML renderers so that both say the same
//! thing: the policy, a role's limit and extras, a step's scope and options, the duration.

use crate::model::RollbackScope;
use crate::plan::{HostInfo, Plan, RoleInfo, StepInfo};
use fleetbook_stdlib::duration::format_duration;
use std::collections::HashSet;
use std::time::Duration;

pub fn dur(secs: u64) -> String {
    format_duration(Duration::from_secs(secs))
}

pub fn short_digest(d: &str) -> &str {
    &d[..d.len().min(19)]
}

/// The fleet-wide rules: total, limit_by, batches or window, rollback.
pub fn policy(plan: &Plan) -> Vec<String> {
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
    if plan.runbook.rollback_on_failure {
        policy.push(match plan.runbook.rollback_scope {
            RollbackScope::Host => "failed hosts roll back (undo)".into(),
            RollbackScope::Role => "a failed host rolls back every host of its roles (undo)".into(),
            RollbackScope::Run => "a failed host rolls back every host of the run (undo)".into(),
        });
    }
    if let Some(m) = plan.limits.max_failures_total {
        policy.push(format!("at most {m} failed hosts in all"));
    }
    if let Some(d) = plan.runbook.deadline {
        policy.push(format!("no host starts after {}", dur(d)));
    }
    if plan.runbook.r#become {
        policy.push("root operations use sudo (become)".into());
    }
    policy
}

/// `limit 3`, `limit 3 (25%)` or `no limit`.
pub fn role_limit(r: &RoleInfo) -> String {
    match (&r.limit, &r.limit_declared) {
        (Some(0), _) => "held (limit 0)".into(),
        (Some(l), Some(d)) if d.ends_with('%') => format!("limit {l} ({d})"),
        (Some(l), _) => format!("limit {l}"),
        (None, _) => "no limit".into(),
    }
}

/// Failure tolerance, canary and the roles it waits for.
pub fn role_extras(r: &RoleInfo) -> Vec<String> {
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
    extra
}

/// Where a step runs: every host, some roles, or a runbook-level hook.
pub fn step_scope(s: &StepInfo) -> String {
    match (s.kind.as_str(), &s.roles) {
        ("host", None) => "every host".to_string(),
        ("before_each_host", _) => "before each host (halts)".to_string(),
        ("finally", _) => "finally (end of every run)".to_string(),
        ("host", Some(rs)) => format!("roles {}", rs.join(", ")),
        (k, Some(rs)) => format!("{} {}", k.replace('_', " "), rs.join(", ")),
        (k, None) => k.to_string(),
    }
}

/// Timeout, retries, throttle, undo, condition.
pub fn step_options(s: &StepInfo) -> Vec<String> {
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
    if let Some(t) = s.soak {
        opts.push(format!("soak {}", dur(t)));
    }
    if s.always {
        opts.push("always (even after a failure or a stop)".into());
    }
    opts
}

/// Hosts that run at least one step.
pub fn busy_hosts(plan: &Plan) -> HashSet<&str> {
    plan.tasks
        .iter()
        .filter_map(|t| t.host.as_deref())
        .collect()
}

/// Each role's enclosing role (`within`), as an index into `plan.roles`.
pub fn enclosing(plan: &Plan) -> Vec<Option<usize>> {
    plan.roles
        .iter()
        .map(|r| {
            r.within
                .as_ref()
                .and_then(|w| plan.roles.iter().position(|o| &o.name == w))
        })
        .collect()
}

/// Roles `i` is inside of, nearest first.
pub fn ancestors(within: &[Option<usize>], i: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut at = within[i];
    while let Some(p) = at.filter(|p| !out.contains(p) && *p != i) {
        out.push(p);
        at = within[p];
    }
    out
}

/// Hosts of each role (a host in several roles is in each; a nested group's hosts are in
/// its enclosing role too), in plan order.
pub fn role_members(plan: &Plan) -> Vec<Vec<&HostInfo>> {
    plan.roles
        .iter()
        .map(|r| {
            plan.hosts
                .iter()
                .filter(|h| h.roles.contains(&r.name))
                .collect()
        })
        .collect()
}

/// Per role, (start, end) of each of its busy hosts: a host takes a slot in every role it is
/// in, so the hosts in flight of a nested group also count in their enclosing role.
pub fn role_spans(plan: &Plan) -> Vec<Vec<(u64, u64)>> {
    let busy = busy_hosts(plan);
    role_members(plan)
        .iter()
        .map(|hs| {
            hs.iter()
                .filter(|h| busy.contains(h.name.as_str()))
                .map(|h| (h.start, h.end))
                .collect()
        })
        .collect()
}

/// What else holds a role's hosts back or ties them to other roles: the role it is within,
/// `limit_by` over its hosts' values, lock-step batches, hosts it shares with other roles.
pub fn role_notes(plan: &Plan, i: usize) -> Vec<String> {
    let within = enclosing(plan);
    let members = role_members(plan);
    let role = &plan.roles[i];
    let mut notes = Vec::new();
    if let Some(p) = within[i] {
        notes.push(format!("within {}", plan.roles[p].name));
    }
    if plan.limits.batches && role.limit.is_some_and(|l| l > 0) {
        notes.push("lock-step batches".into());
    }
    for b in &plan.limits.limit_by {
        if let Some(n) = limit_by_note(&members[i], &b.var, b.max) {
            notes.push(n);
        }
    }
    let family =
        |j: usize| ancestors(&within, i).contains(&j) || ancestors(&within, j).contains(&i);
    let shared: Vec<String> = plan
        .roles
        .iter()
        .enumerate()
        .filter(|&(j, _)| j != i && !family(j))
        .filter_map(|(_, other)| {
            let n = members[i]
                .iter()
                .filter(|h| h.roles.contains(&other.name))
                .count();
            (n > 0).then(|| format!("{n} also in {}", other.name))
        })
        .collect();
    let more = shared.len().saturating_sub(MAX_SHARED);
    notes.extend(shared.into_iter().take(MAX_SHARED));
    if more > 0 {
        notes.push(format!("hosts also in {more} more roles"));
    }
    notes
}

const MAX_VALUES: usize = 4;
/// Roles sharing hosts with one role, named before the rest are counted.
const MAX_SHARED: usize = 3;

/// `at most 1 per cluster: php 3, tomcat 4`: the distinct values among `hosts` with their
/// host counts (None when no host has the variable).
fn limit_by_note(hosts: &[&HostInfo], var: &str, max: usize) -> Option<String> {
    let mut values: Vec<(&str, usize)> = Vec::new();
    for h in hosts {
        if let Some(v) = h.vars.get(var) {
            match values.iter_mut().find(|(x, _)| *x == v.as_str()) {
                Some(e) => e.1 += 1,
                None => values.push((v.as_str(), 1)),
            }
        }
    }
    if values.is_empty() {
        return None;
    }
    let mut shown: Vec<String> = values
        .iter()
        .take(MAX_VALUES)
        .map(|(v, n)| format!("{v} {n}"))
        .collect();
    if values.len() > MAX_VALUES {
        shown.push(format!("+{} more", values.len() - MAX_VALUES));
    }
    let without = hosts.len() - values.iter().map(|(_, n)| n).sum::<usize>();
    if without > 0 {
        shown.push(format!("{without} without it"));
    }
    Some(format!("at most {max} per {var}: {}", shown.join(", ")))
}

/// One busy host for each innermost role, then one for each role none of those is in:
/// hosts of a role usually run the same commands, so one stands for its role, and a nested
/// group (`php_cluster` within `members`) is shown by its own first host.
pub fn sample_hosts(plan: &Plan) -> Vec<&HostInfo> {
    let busy = busy_hosts(plan);
    let within = enclosing(plan);
    let members = role_members(plan);
    let inner = |i: usize| !within.contains(&Some(i));
    let mut shown: Vec<&HostInfo> = Vec::new();
    let order = (0..plan.roles.len())
        .filter(|&i| inner(i))
        .chain((0..plan.roles.len()).filter(|&i| !inner(i)));
    for i in order {
        let name = &plan.roles[i].name;
        if shown.iter().any(|h| h.roles.contains(name)) {
            continue;
        }
        if let Some(h) = members[i].iter().find(|h| busy.contains(h.name.as_str())) {
            shown.push(h);
        }
    }
    // In the plan's host order, so the listing reads like the inventory.
    shown.sort_by_key(|h| plan.hosts.iter().position(|x| x.name == h.name));
    shown
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::Format;
    use crate::plan::plan_text;
    use std::collections::BTreeMap;

    const RUNBOOK: &str = "let rb = runbook(\"n\");\nrb.limit_by(\"rack\", 1);\n\
        rb.step(\"up\", |h| h.run(\"true\")).roles([\"members\"]);\nrb\n";
    // `members` gathers two groups through a group that is not a role of its own, and `ops`
    // shares a host with `php`.
    const INVENTORY: &str = "[php]\nphp1 rack=a\nphp2 rack=a\n\n[java]\njava1 rack=b\njava2\n\n\
        [ops]\nphp2\nops1\n\n[apps:children]\nphp\njava\n\n[members:children]\napps\n";

    fn plan() -> Plan {
        plan_text(RUNBOOK, INVENTORY, Format::Ini, &BTreeMap::new(), None)
            .unwrap()
            .plan
    }

    #[test]
    fn nested_groups_are_within_the_nearest_role_above_them() {
        let p = plan();
        let within: BTreeMap<&str, Option<&str>> = p
            .roles
            .iter()
            .map(|r| (r.name.as_str(), r.within.as_deref()))
            .collect();
        assert_eq!(within["php"], Some("members"), "{within:?}");
        assert_eq!(within["java"], Some("members"));
        assert_eq!(within["members"], None);
        assert_eq!(within["ops"], None);
    }

    #[test]
    fn notes_count_limit_by_values_and_shared_hosts() {
        let p = plan();
        let at = |n: &str| p.roles.iter().position(|r| r.name == n).unwrap();
        assert_eq!(
            role_notes(&p, at("members")),
            [
                "at most 1 per rack: a 2, b 1, 1 without it",
                "1 also in ops"
            ]
        );
        assert_eq!(
            role_notes(&p, at("php")),
            ["within members", "at most 1 per rack: a 2", "1 also in ops"]
        );
    }

    #[test]
    fn commands_are_shown_for_the_first_host_of_each_innermost_role() {
        let p = plan();
        let names: Vec<&str> = sample_hosts(&p).iter().map(|h| h.name.as_str()).collect();
        // php2 stands for ops (ops1 runs no step), not for php, which php1 shows.
        assert_eq!(names, ["php1", "php2", "java1"]);
    }

    #[test]
    fn a_host_in_flight_counts_in_each_of_its_roles() {
        let p = plan();
        let spans = role_spans(&p);
        for (r, s) in p.roles.iter().zip(&spans) {
            let busy = match r.name.as_str() {
                "members" => 4,
                "php" | "java" => 2,
                "ops" => 1,
                _ => 0,
            };
            assert_eq!(s.len(), busy, "{}", r.name);
        }
    }
}
