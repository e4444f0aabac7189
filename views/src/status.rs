//! `fleetbook status RUN --watch`: the live display of a run from another terminal, read from
//! the store twice a second until the run ends, then the run's status. On a terminal it is
//! the same [`Board`] the run draws; otherwise one line per host whose state or step changed.

use crate::board::{short, Board, Flying, RoleRow};
use crate::Print;
use fleetbook_engine::clock::At;
use fleetbook_engine::plan::{self, Plan};
use fleetbook_engine::status::{HostState, Status};
use fleetbook_engine::store::RunRecord;
use fleetbook_engine::store::{RunState, RunStore};
use fleetbook_engine::Result;
use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

/// The plan of a recorded run, to show its limits: only when the runbook and the inventory
/// are still the ones it was made from (a run with secret parameters or `--lib` directories
/// may not plan again here; its board then shows counts without limits).
fn recorded_plan(run: &RunRecord) -> Option<Plan> {
    let planned = plan::plan(&plan::PlanRequest {
        runbook: Path::new(&run.runbook_path),
        inventory: Path::new(&run.inventory_path),
        params: &run.params,
        limit: run.limit_pattern.as_deref(),
        lib_dirs: &[],
        libs: &Default::default(),
        vault: None,
    })
    .ok()?;
    let p = planned.plan;
    (p.runbook_digest == run.runbook_digest && p.inventory_digest == run.inventory_digest)
        .then_some(p)
}

fn board(st: &Status, plan: Option<&Plan>, now: At) -> Board {
    // Role order: the plan's when known, else the store's.
    let mut names: Vec<String> = match plan {
        Some(p) => p.roles.iter().map(|r| r.name.clone()).collect(),
        None => Vec::new(),
    };
    for r in st.roles.keys() {
        if !names.contains(r) {
            names.push(r.clone());
        }
    }
    let info = |n: &str| plan.and_then(|p| p.roles.iter().find(|r| r.name == n));
    let mut rows: Vec<RoleRow> = names
        .iter()
        .filter_map(|n| {
            let counts = st.roles.get(n)?;
            let get = |k: HostState| counts.get(&k).copied().unwrap_or(0);
            Some(RoleRow {
                name: n.clone(),
                hosts: counts.values().sum(),
                done: get(HostState::Upgraded),
                failed: get(HostState::Failed),
                in_flight: 0,
                limit: info(n).and_then(|r| r.limit),
                max_failures: info(n).and_then(|r| r.max_failures),
            })
        })
        .collect();
    let mut flying = Vec::new();
    for h in &st.hosts {
        let (Some(step), Some(since)) = (&h.step, h.since) else {
            continue;
        };
        for r in rows.iter_mut().filter(|r| h.roles.contains(&r.name)) {
            r.in_flight += 1;
        }
        if let Some(role) = h.roles.first() {
            flying.push(Flying {
                host: h.host.clone(),
                role: role.clone(),
                step: step.clone(),
                secs: now.since(since).as_secs(),
            });
        }
    }
    let mut notes = Vec::new();
    if let Some(gate) = &st.waiting_approval {
        notes.push(format!(
            "waiting for approval {gate:?}: fleetbook approve {} --gate {gate}",
            st.run.id
        ));
    }
    Board {
        title: format!(
            "run {} {} {}",
            st.run.id,
            st.run.state,
            short(now.since(st.run.started_at).as_secs())
        ),
        roles: rows,
        flying,
        failed: st
            .hosts
            .iter()
            .filter(|h| h.state == HostState::Failed)
            .count(),
        failures_allowed: plan.and_then(|p| p.limits.max_failures_total),
        notes,
    }
}

/// Follows run `id` until it is no longer running.
pub fn watch(store: &dyn RunStore, id: Option<&str>, print: Print) -> Result<RunRecord> {
    let run = store.run(id)?;
    let plan = recorded_plan(&run);
    let tty = std::io::stdout().is_terminal();
    let term = console::Term::stdout();
    let mut drawn = 0;
    let mut seen: HashMap<String, (HostState, Option<String>)> = HashMap::new();
    loop {
        let run = store.run(Some(&run.id))?;
        let running = run.state == RunState::Running;
        let st = fleetbook_engine::status::of(store, run)?;
        if tty {
            let (rows, cols) = term.size();
            let lines = board(&st, plan.as_ref(), At::now()).render(
                (cols as usize).saturating_sub(1),
                (rows as usize).saturating_sub(2),
            );
            let _ = term.clear_last_lines(drawn);
            drawn = lines.len();
            for l in &lines {
                let _ = term.write_line(l);
            }
        } else {
            print(&changes(&st, &mut seen))?;
        }
        if !running {
            let _ = term.clear_last_lines(if tty { drawn } else { 0 });
            return Ok(st.run);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// One line per host whose state or step changed since the last look.
fn changes(st: &Status, seen: &mut HashMap<String, (HostState, Option<String>)>) -> String {
    let mut out = String::new();
    for h in &st.hosts {
        let now = (h.state, h.step.clone());
        if seen.get(&h.host) == Some(&now) {
            continue;
        }
        out.push_str(&format!(
            "{} {}{}\n",
            h.host,
            h.state,
            h.step
                .as_deref()
                .map(|s| format!(" {s}"))
                .unwrap_or_default()
        ));
        seen.insert(h.host.clone(), now);
    }
    out
}
