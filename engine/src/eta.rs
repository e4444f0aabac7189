//! When a run will end: the rest of its plan simulated again from what has happened so far.
//! Takes the saved plan and the stored task rows; gives the seconds left.
//!
//! The saved plan is all a reader of the store has (no runbook, no secrets), so this replays
//! the plan's own schedule rules on it: each task takes its planned time, starts when the
//! tasks it depends on are over, one task at a time per host, and a role lets no more hosts
//! be in flight at once than its limit (the run-wide total too). Running tasks end at their
//! planned time, or now if that has passed; a waiting approval is taken as given now.

use crate::journal::TaskRow;
use crate::plan::Plan;
use std::collections::HashMap;

fn is_over(state: &str) -> bool {
    !matches!(
        state,
        "pending" | "running" | "retrying" | "waiting_approval" | "rolling_back"
    )
}

/// A host is in flight from its first task's start to its last task's end.
fn in_flight(tasks: &[usize], started: &[bool], end: &[Option<f64>], now: f64) -> bool {
    tasks.iter().any(|&t| started[t]) && tasks.iter().any(|&t| end[t].is_none_or(|e| e > now))
}

fn is_running(state: &str) -> bool {
    matches!(state, "running" | "retrying" | "rolling_back")
}

/// Seconds from `elapsed` (since the run started) until the last task ends; `None` when the
/// plan and the stored tasks do not match (a run recorded with another plan).
pub fn remaining(plan: &Plan, rows: &[TaskRow], run_started: f64, elapsed: f64) -> Option<f64> {
    let state: HashMap<&str, &TaskRow> = rows.iter().map(|r| (r.task_id.as_str(), r)).collect();
    let n = plan.tasks.len();
    let index: HashMap<&str, usize> = plan
        .tasks
        .iter()
        .enumerate()
        .map(|(i, t)| (t.id.as_str(), i))
        .collect();
    let mut end: Vec<Option<f64>> = vec![None; n];
    let mut started = vec![false; n];
    for (i, t) in plan.tasks.iter().enumerate() {
        let row = state.get(t.id.as_str())?;
        let planned = t.end.saturating_sub(t.start) as f64;
        if is_over(&row.state) {
            end[i] = Some(elapsed.min(row.ended_at.map_or(0.0, |e| e - run_started)));
            started[i] = true;
        } else if is_running(&row.state) {
            let since = row.started_at.map_or(elapsed, |s| s - run_started);
            end[i] = Some((since + planned).max(elapsed));
            started[i] = true;
        }
    }
    let role_of = |t: usize| plan.tasks[t].role.as_deref().unwrap_or("");
    let limit: HashMap<&str, usize> = plan
        .roles
        .iter()
        .filter_map(|r| r.limit.map(|l| (r.name.as_str(), l.max(1))))
        .collect();
    let host_tasks = {
        let mut m: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, t) in plan.tasks.iter().enumerate() {
            if let Some(h) = &t.host {
                m.entry(h.as_str()).or_default().push(i);
            }
        }
        m
    };
    let mut order: Vec<usize> = (0..n).filter(|&i| !started[i]).collect();
    order.sort_by_key(|&i| plan.tasks[i].start);
    let mut now = elapsed;
    let deps: Vec<Vec<usize>> = plan
        .tasks
        .iter()
        .map(|t| {
            t.depends_on
                .iter()
                .filter_map(|d| index.get(d.as_str()).copied())
                .collect()
        })
        .collect();
    while !order.is_empty() {
        let mut per_role: HashMap<&str, usize> = HashMap::new();
        let mut total = 0;
        for ts in host_tasks.values() {
            if in_flight(ts, &started, &end, now) {
                total += 1;
                *per_role.entry(role_of(ts[0])).or_default() += 1;
            }
        }
        let mut progressed = false;
        let mut waiting = Vec::with_capacity(order.len());
        for &i in &order {
            let t = &plan.tasks[i];
            let ready = deps[i].iter().all(|&d| end[d].is_some_and(|e| e <= now));
            let may = ready
                && match t.host.as_deref().map(|h| &host_tasks[h]) {
                    None => true,
                    Some(ts)
                        if ts
                            .iter()
                            .any(|&o| started[o] && end[o].is_some_and(|e| e > now)) =>
                    {
                        false
                    }
                    Some(ts) if in_flight(ts, &started, &end, now) => true,
                    Some(_) => {
                        let role = role_of(i);
                        let full = limit
                            .get(role)
                            .is_some_and(|&l| per_role.get(role).copied().unwrap_or(0) >= l)
                            || plan.limits.total.is_some_and(|l| total >= l.max(1));
                        if !full {
                            *per_role.entry(role).or_default() += 1;
                            total += 1;
                        }
                        !full
                    }
                };
            if may {
                started[i] = true;
                end[i] = Some(now + t.end.saturating_sub(t.start) as f64);
                progressed = true;
            } else {
                waiting.push(i);
            }
        }
        order = waiting;
        let next = end
            .iter()
            .flatten()
            .copied()
            .filter(|&e| e > now)
            .fold(f64::INFINITY, f64::min);
        if next.is_finite() {
            now = next;
        } else if !progressed {
            // Nothing runs and nothing can start: the plan's dependencies say no more.
            break;
        }
    }
    let last = end.iter().flatten().copied().fold(elapsed, f64::max);
    Some(last - elapsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Three web hosts, one at a time, one step of a minute each: planned 3 minutes.
    fn planned() -> Plan {
        let dir = tempfile::tempdir().unwrap();
        let rb = dir.path().join("rb.rhai");
        let inv = dir.path().join("hosts");
        std::fs::write(&inv, "[web]\nw1\nw2\nw3\n").unwrap();
        std::fs::write(
            &rb,
            "let rb = runbook(\"t\");\nrb.limit(\"web\", 1);\nrb.step(\"a\", |h| h.run(\"true\")).estimate(\"1m\");\nrb\n",
        )
        .unwrap();
        crate::plan::plan(&crate::plan::PlanRequest {
            runbook: &rb,
            inventory: &inv,
            params: &BTreeMap::new(),
            limit: None,
            lib_dirs: &[],
            libs: &Default::default(),
            vault: None,
        })
        .unwrap()
        .plan
    }

    fn rows(plan: &Plan, set: &[(&str, &str, Option<f64>, Option<f64>)]) -> Vec<TaskRow> {
        plan.tasks
            .iter()
            .map(|t| {
                let s = set.iter().find(|s| s.0 == t.id);
                TaskRow {
                    task_id: t.id.to_string(),
                    kind: t.kind.as_str().into(),
                    host: t.host.as_deref().map(str::to_string),
                    step: t.step.as_deref().map(str::to_string),
                    role: t.role.as_deref().map(str::to_string),
                    state: s.map_or("pending", |s| s.1).into(),
                    attempt: 1,
                    started_at: s.and_then(|s| s.2),
                    ended_at: s.and_then(|s| s.3),
                    message: None,
                }
            })
            .collect()
    }

    #[test]
    fn the_rest_of_the_plan_is_simulated_from_what_happened() {
        let plan = planned();
        assert_eq!(plan.duration, 180);
        let at = 1000.0;
        assert_eq!(remaining(&plan, &rows(&plan, &[]), at, 0.0), Some(180.0));
        // The first host was quick: two hosts of a minute are left.
        let quick = rows(&plan, &[("host:w1:a", "ok", Some(at), Some(at + 10.0))]);
        assert_eq!(remaining(&plan, &quick, at, 10.0), Some(120.0));
        // The first host overran its estimate: it is taken to end now, the others after it.
        let slow = rows(&plan, &[("host:w1:a", "running", Some(at), None)]);
        assert_eq!(remaining(&plan, &slow, at, 100.0), Some(120.0));
        // The limit holds: with w1 running, w2 waits for it.
        let early = rows(&plan, &[("host:w1:a", "running", Some(at), None)]);
        assert_eq!(remaining(&plan, &early, at, 30.0), Some(150.0));
        // Rows of another plan: no estimate.
        assert_eq!(remaining(&plan, &[], at, 0.0), None);
    }
}
