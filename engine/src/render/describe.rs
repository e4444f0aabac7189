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

/// The first busy host of each role (a host shown once): hosts of a role usually run the
/// same commands, so one stands for its role.
pub fn sample_hosts(plan: &Plan) -> Vec<&HostInfo> {
    let busy = busy_hosts(plan);
    let mut shown: Vec<&HostInfo> = Vec::new();
    for r in &plan.roles {
        if let Some(h) = plan.hosts.iter().find(|h| {
            h.roles.contains(&r.name)
                && busy.contains(h.name.as_str())
                && !shown.iter().any(|s| s.name == h.name)
        }) {
            shown.push(h);
        }
    }
    shown
}
