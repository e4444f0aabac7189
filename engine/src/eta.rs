//! When a run will end: the rest of its plan simulated again from what has happened so far.
//! Takes the saved plan and the stored task rows; gives the time left.
//!
//! The saved plan is all a reader of the store has (no runbook, no secrets), so the graph
//! is rebuilt from it (tasks, dependencies, hosts with their variables, roles, limits,
//! `limit_by`, batches, throttles) and laid out by the schedule simulator the plan came from
//! (`schedule.rs`, the one dispatcher): each task takes its planned time, finished tasks
//! are over, hosts that started keep their slots, running tasks end at their planned time,
//! or now if that has passed; a waiting approval is taken as given now.

use crate::clock::At;
use crate::compile::{Graph, PlanHost, Role, Rules, Task};
use crate::journal::TaskRow;
use crate::plan::Plan;
use crate::schedule::{self, Progress};
use crate::store::TaskState;
use std::collections::HashMap;
use std::time::Duration;

fn is_over(state: TaskState) -> bool {
    !matches!(
        state,
        TaskState::Pending
            | TaskState::Running
            | TaskState::Retrying
            | TaskState::WaitingApproval
            | TaskState::RollingBack
    )
}

fn is_running(state: TaskState) -> bool {
    state.is_running() || state == TaskState::RollingBack
}

/// The time from `now` until the last task ends; `None` when the plan and the stored tasks
/// do not match (a run recorded with another plan).
pub fn remaining(plan: &Plan, rows: &[TaskRow], now: At) -> Option<Duration> {
    let graph = graph_of(plan)?;
    let progress = progress(&graph, rows, now)?;
    let rest = schedule::simulate_rest(&graph, &progress).ok()?;
    Some(Duration::from_secs(rest.duration))
}

/// What the stored rows say has happened, task by task of the rebuilt graph.
fn progress(graph: &Graph, rows: &[TaskRow], now: At) -> Option<Progress> {
    let by_id: HashMap<&str, &TaskRow> = rows.iter().map(|r| (r.task_id.as_str(), r)).collect();
    let mut p = Progress {
        done: vec![false; graph.tasks.len()],
        ..Progress::default()
    };
    let mut started = vec![false; graph.tasks.len()];
    for (t, task) in graph.tasks.iter().enumerate() {
        let row = by_id.get(task.id.as_str())?;
        if is_over(row.state) {
            p.done[t] = true;
            started[t] = true;
        } else if is_running(row.state) {
            // Past its planned time it is taken to end now.
            let ran = row.started_at.map_or(Duration::ZERO, |s| now.since(s));
            let left = Duration::from_secs(task.duration).saturating_sub(ran);
            p.running
                .push((t, left.as_secs() + u64::from(left.subsec_nanos() > 0)));
            started[t] = true;
        }
    }
    p.in_flight = (0..graph.hosts.len())
        .filter(|&h| {
            let ts = &graph.host_tasks[h];
            ts.iter().any(|&t| started[t]) && ts.iter().any(|&t| !p.done[t])
        })
        .collect();
    Some(p)
}

/// The graph a saved plan was made from, as far as laying it out needs: each task takes its
/// planned time (a soak included), held tasks stay held. `None` if the plan names a role,
/// host, step or task it does not list.
fn graph_of(plan: &Plan) -> Option<Graph> {
    let index = |names: Vec<&str>| -> HashMap<String, usize> {
        names
            .into_iter()
            .enumerate()
            .map(|(i, n)| (n.to_string(), i))
            .collect()
    };
    let role_ix = index(plan.roles.iter().map(|r| r.name.as_str()).collect());
    let host_ix = index(plan.hosts.iter().map(|h| &*h.name).collect());
    let step_ix = index(plan.runbook.steps.iter().map(|s| s.name.as_str()).collect());
    let task_ix = index(plan.tasks.iter().map(|t| &*t.id).collect());
    let find = |ix: &HashMap<String, usize>, name: &str| ix.get(name).copied();
    let hosts = plan
        .hosts
        .iter()
        .map(|h| {
            Some(PlanHost {
                name: h.name.to_string(),
                roles: h
                    .roles
                    .iter()
                    .map(|r| find(&role_ix, r))
                    .collect::<Option<_>>()?,
                vars: h
                    .vars
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                values: Default::default(),
            })
        })
        .collect::<Option<Vec<_>>>()?;
    let roles = roles_of(plan, &hosts, &role_ix);
    let tasks = plan
        .tasks
        .iter()
        .map(|t| {
            let opt = |ix, name: &Option<crate::shared::Shared>| match name {
                Some(n) => find(ix, n).map(Some),
                None => Some(None),
            };
            Some(Task {
                id: t.id.clone(),
                kind: t.kind,
                host: opt(&host_ix, &t.host)?,
                step: opt(&step_ix, &t.step)?,
                role: opt(&role_ix, &t.role)?,
                deps: t
                    .depends_on
                    .iter()
                    .map(|d| find(&task_ix, d))
                    .collect::<Option<_>>()?,
                duration: t.end.saturating_sub(t.start),
            })
        })
        .collect::<Option<Vec<_>>>()?;
    // A host's tasks were made in step order, so the plan lists them in it.
    let mut host_tasks = vec![Vec::new(); hosts.len()];
    for (i, t) in tasks.iter().enumerate() {
        if let Some(h) = t.host {
            host_tasks[h].push(i);
        }
    }
    Some(Graph {
        hosts,
        roles,
        host_tasks,
        rules: rules_of(plan),
        warnings: Vec::new(),
        outside: Vec::new(),
        groups: Default::default(),
        held: plan.tasks.iter().map(|t| t.held).collect(),
        become_default: false,
        tasks,
    })
}

fn roles_of(plan: &Plan, hosts: &[PlanHost], role_ix: &HashMap<String, usize>) -> Vec<Role> {
    let mut roles: Vec<Role> = plan
        .roles
        .iter()
        .map(|r| Role {
            name: r.name.clone(),
            hosts: Vec::new(),
            after: r
                .after
                .iter()
                .filter_map(|a| role_ix.get(a).copied())
                .collect(),
            limit: r.limit,
            limit_decl: None,
            max_failures: r.max_failures,
            canary: r.canary,
            named: true,
            within: None,
        })
        .collect();
    for (h, host) in hosts.iter().enumerate() {
        for &r in &host.roles {
            roles[r].hosts.push(h);
        }
    }
    roles
}

/// The plan's limits as the dispatcher's rules; soak times are in the tasks' planned times.
fn rules_of(plan: &Plan) -> Rules {
    let steps = &plan.runbook.steps;
    Rules {
        total: plan.limits.total,
        by: plan
            .limits
            .limit_by
            .iter()
            .map(|b| (b.var.clone(), b.max))
            .collect(),
        batches: plan.limits.batches,
        throttle: steps
            .iter()
            .map(|s| s.throttle.map(|n| n as usize))
            .collect(),
        soak: vec![None; steps.len()],
        deadline: None,
        max_failures_total: plan.limits.max_failures_total,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn unix(secs: f64) -> At {
        At::from_unix(secs).unwrap()
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// Three web hosts, one at a time, one step of a minute each: planned 3 minutes.
    fn planned() -> Plan {
        planned_with("rb.limit(\"web\", 1);", "", "[web]\nw1\nw2\nw3\n")
    }

    /// Three web hosts with one step of a minute (`step` added to it), under `rules`.
    fn planned_with(rules: &str, step: &str, inventory: &str) -> Plan {
        let dir = tempfile::tempdir().unwrap();
        let rb = dir.path().join("rb.rhai");
        let inv = dir.path().join("hosts");
        std::fs::write(&inv, inventory).unwrap();
        std::fs::write(
            &rb,
            format!("let rb = runbook(\"t\");\n{rules}\nrb.step(\"a\", |h| h.run(\"true\")).estimate(\"1m\"){step};\nrb\n"),
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
                    state: TaskState::parse(s.map_or("pending", |s| s.1)).unwrap(),
                    attempt: 1,
                    started_at: s.and_then(|s| s.2).map(unix),
                    ended_at: s.and_then(|s| s.3).map(unix),
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
        assert_eq!(
            remaining(&plan, &rows(&plan, &[]), unix(at)),
            Some(secs(180))
        );
        // The first host was quick: two hosts of a minute are left.
        let quick = rows(&plan, &[("host:w1:a", "ok", Some(at), Some(at + 10.0))]);
        assert_eq!(remaining(&plan, &quick, unix(at + 10.0)), Some(secs(120)));
        // The first host overran its estimate: it is taken to end now, the others after it.
        let slow = rows(&plan, &[("host:w1:a", "running", Some(at), None)]);
        assert_eq!(remaining(&plan, &slow, unix(at + 100.0)), Some(secs(120)));
        // The limit holds: with w1 running, w2 waits for it.
        let early = rows(&plan, &[("host:w1:a", "running", Some(at), None)]);
        assert_eq!(remaining(&plan, &early, unix(at + 30.0)), Some(secs(150)));
        // Rows of another plan: no estimate.
        assert_eq!(remaining(&plan, &[], unix(at)), None);
    }

    /// The old estimate replayed only role limits and the fleet total, in a rolling window:
    /// it said 60 s for each of these, where the run takes what the plan says.
    #[test]
    fn limit_by_batches_and_throttles_count_in_the_time_left() {
        // One host per rack at once: w2 waits for w1.
        let racks = planned_with(
            "rb.limit_by(\"rack\", 1);",
            "",
            "[web]\nw1 rack=a\nw2 rack=a\nw3 rack=b\n",
        );
        assert_eq!(racks.duration, 120);
        assert_eq!(
            remaining(&racks, &rows(&racks, &[]), unix(0.0)),
            Some(secs(120))
        );
        // One host in the step at once.
        let throttled = planned_with("", ".throttle(1)", "[web]\nw1\nw2\nw3\n");
        assert_eq!(throttled.duration, 180);
        let w1_done = rows(&throttled, &[("host:w1:a", "ok", Some(0.0), Some(60.0))]);
        assert_eq!(remaining(&throttled, &w1_done, unix(60.0)), Some(secs(120)));
        // Lock-step batches of two: w1 ended early, w3 still waits for w2, its batch.
        let batches = planned_with(
            "rb.limit(\"web\", 2);\nrb.batches(true);",
            "",
            "[web]\nw1\nw2\nw3\n",
        );
        assert_eq!(batches.duration, 120);
        let w1_quick = rows(
            &batches,
            &[
                ("host:w1:a", "ok", Some(0.0), Some(10.0)),
                ("host:w2:a", "running", Some(0.0), None),
            ],
        );
        assert_eq!(remaining(&batches, &w1_quick, unix(10.0)), Some(secs(110)));
    }
}
