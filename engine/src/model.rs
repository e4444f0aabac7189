//! The runbook model: what a script declared, with the script position of every declaration.
//! Built by `script`, read by `compile`; holds no inventory knowledge.

use crate::error::Pos;
use rhai::FnPtr;
use std::time::Duration;

/// A count or a share of a role's hosts.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(untagged)]
pub enum Amount {
    Count(u32),
    Percent(f64),
}

impl Amount {
    /// Parses `3`, `"3"` or `"25%"`.
    pub fn parse(text: &str) -> Result<Amount, String> {
        let t = text.trim();
        if let Some(p) = t.strip_suffix('%') {
            let v: f64 = p
                .trim()
                .parse()
                .map_err(|_| format!("invalid percentage {text:?}"))?;
            if !(0.0..=100.0).contains(&v) {
                return Err(format!("percentage {text:?} must be between 0% and 100%"));
            }
            return Ok(Amount::Percent(v));
        }
        t.parse::<u32>()
            .map(Amount::Count)
            .map_err(|_| format!("expected a count or a percentage like \"25%\", found {text:?}"))
    }

    /// The count for a role of `total` hosts. Percentages round down but never below 1, as
    /// Ansible's `serial` does; a count of 0 stays 0 (meaningful for failure tolerances).
    pub fn of(&self, total: usize) -> usize {
        match *self {
            Amount::Count(n) => n as usize,
            Amount::Percent(p) => (((total as f64) * p / 100.0).floor() as usize).max(1),
        }
    }
}

impl std::fmt::Display for Amount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Amount::Count(n) => write!(f, "{n}"),
            Amount::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// A role-scoped setting: `role` is a role name or `"*"` (every role without its own).
#[derive(Debug, Clone)]
pub struct RoleAmount {
    pub role: String,
    pub amount: Amount,
    pub pos: Pos,
}

/// `.order([a, b])` or `.after(b, [a])`: hosts of `after` wait for every host of `before`.
#[derive(Debug, Clone)]
pub struct OrderEdge {
    pub before: String,
    pub after: String,
    pub pos: Pos,
}

#[derive(Debug, Clone)]
pub struct LimitBy {
    pub var: String,
    pub max: u32,
    pub pos: Pos,
}

#[derive(Debug, Clone)]
pub struct Canary {
    pub role: String,
    pub count: u32,
    pub pos: Pos,
}

/// Where a step runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// On each host of `roles` (every host when `None`).
    Host { roles: Option<Vec<String>> },
    /// Once per run, before any host starts.
    Once,
    /// Once, before the first host of the role starts.
    BeforeRole(String),
    /// Once, after the last host of the role finished.
    AfterRole(String),
    /// A check after the role (and after its canary hosts) that must hold to go on.
    Gate(String),
    /// A pause after the role until a human approves.
    Approval(String),
    /// `rb.before_each_host(name, |h| ...)`: a check each host runs first, inside its slot;
    /// false or an error halts the run.
    HostCheck,
    /// `rb.finally(...)`: once at the end of every attempt of the run, whatever its outcome.
    Finally,
}

impl Scope {
    pub fn kind(&self) -> &'static str {
        match self {
            Scope::Host { .. } => "host",
            Scope::Once => "once",
            Scope::BeforeRole(_) => "before_role",
            Scope::AfterRole(_) => "after_role",
            Scope::Gate(_) => "gate",
            Scope::Approval(_) => "approval",
            Scope::HostCheck => "before_each_host",
            Scope::Finally => "finally",
        }
    }

    pub fn role(&self) -> Option<&str> {
        match self {
            Scope::BeforeRole(r) | Scope::AfterRole(r) | Scope::Gate(r) | Scope::Approval(r) => {
                Some(r)
            }
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    pub scope: Scope,
    /// The closure: `|h| ...` for host steps, `|| ...` otherwise; none for approvals.
    pub action: Option<FnPtr>,
    pub timeout: Option<Duration>,
    pub retries: u32,
    pub retry_delay: Duration,
    pub undo: Option<FnPtr>,
    pub throttle: Option<u32>,
    pub when: Option<FnPtr>,
    /// Where `.when(...)` was called, for errors about what the predicate returned.
    pub when_pos: Option<Pos>,
    pub estimate: Option<Duration>,
    pub idempotent: bool,
    /// `.always()`: runs on a host that ran a step even after an earlier step of that host
    /// failed, or the run stopped while the host was in flight (release steps).
    pub always: bool,
    /// `.soak(d)`: after the step succeeds the host keeps its slot this long.
    pub soak: Option<Duration>,
    pub pos: Pos,
}

impl Step {
    pub fn new(name: String, scope: Scope, action: Option<FnPtr>, pos: Pos) -> Step {
        Step {
            name,
            scope,
            action,
            timeout: None,
            retries: 0,
            retry_delay: Duration::from_secs(10),
            undo: None,
            throttle: None,
            when: None,
            when_pos: None,
            estimate: None,
            idempotent: false,
            always: false,
            soak: None,
            pos,
        }
    }
}

/// `rb.rollback_scope(...)`: on a host's failure, the undo closures of which hosts run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RollbackScope {
    /// The failed host only.
    #[default]
    Host,
    /// Every host of the failed host's roles that completed steps.
    Role,
    /// Every host of the run that completed steps.
    Run,
}

impl RollbackScope {
    pub fn parse(text: &str) -> Result<RollbackScope, String> {
        match text {
            "host" => Ok(RollbackScope::Host),
            "role" => Ok(RollbackScope::Role),
            "run" => Ok(RollbackScope::Run),
            _ => Err(format!(
                "rollback_scope must be \"host\", \"role\" or \"run\", found {text:?}"
            )),
        }
    }
}

/// A `param(name, default)` the script declared, with the value in force.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Param {
    pub name: String,
    pub default: String,
    pub value: String,
    pub secret: bool,
    #[serde(skip)]
    pub pos: Pos,
}

#[derive(Debug, Clone, Default)]
pub struct Runbook {
    pub name: String,
    pub description: String,
    pub pos: Pos,
    pub order: Vec<OrderEdge>,
    pub limits: Vec<RoleAmount>,
    pub limit_total: Option<(Amount, Pos)>,
    pub limit_by: Vec<LimitBy>,
    pub batches: bool,
    pub canaries: Vec<Canary>,
    pub max_failures: Vec<RoleAmount>,
    /// `rb.max_failures_total(n)`: failed hosts tolerated in the whole run.
    pub max_failures_total: Option<(Amount, Pos)>,
    pub rollback_on_failure: bool,
    /// Whose completed steps a failure rolls back (with `rollback_on_failure`).
    pub rollback_scope: RollbackScope,
    /// `rb.deadline(d)`: after `d` from an attempt's start no new host starts.
    pub deadline: Option<(Duration, Pos)>,
    /// `rb.become(true)`: host operations that need root use sudo unless the inventory
    /// says otherwise for a host.
    pub become_default: bool,
    pub steps: Vec<Step>,
    /// Host variables the runbook marks as secret (`rb.secret_vars([...])`).
    pub secret_vars: Vec<String>,
}

impl Runbook {
    /// Every role the runbook names, with where it first named it.
    pub fn named_roles(&self) -> Vec<(String, Pos)> {
        let mut out: Vec<(String, Pos)> = Vec::new();
        let mut add = |r: &str, p: &Pos| {
            if r != "*" && !out.iter().any(|(n, _)| n == r) {
                out.push((r.to_string(), p.clone()));
            }
        };
        for e in &self.order {
            add(&e.before, &e.pos);
            add(&e.after, &e.pos);
        }
        for l in self.limits.iter().chain(&self.max_failures) {
            add(&l.role, &l.pos);
        }
        for c in &self.canaries {
            add(&c.role, &c.pos);
        }
        for s in &self.steps {
            match &s.scope {
                Scope::Host { roles: Some(rs) } => rs.iter().for_each(|r| add(r, &s.pos)),
                other => {
                    if let Some(r) = other.role() {
                        add(r, &s.pos)
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_round_down_but_not_to_zero() {
        assert_eq!(Amount::parse("25%").unwrap().of(10), 2);
        assert_eq!(Amount::parse("25%").unwrap().of(2), 1);
        assert_eq!(Amount::parse("3").unwrap().of(100), 3);
        assert!(Amount::parse("150%").is_err());
        assert!(Amount::parse("many").is_err());
    }
}
