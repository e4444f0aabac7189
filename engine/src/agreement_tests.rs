//! The plan is what will run. Random runbooks and inventories (the scheduler properties'
//! generator: roles, hosts in several roles, order, role and total limits, `limit_by`,
//! batches, canaries, throttles) go through the schedule simulator and through the executor.
//! The executor runs over a transport whose commands end when this test says: in the order
//! of the simulator's end times, each once the executor has done everything the previous
//! end let it do. Every task then takes a distinct duration, so no two end at once and the
//! simulated order is unambiguous. Both must start every task, and in the same order.

use crate::compile::{Graph, TaskKind};
use crate::exec::{execute, Control, Event, ExecOptions, State};
use crate::inventory::Format;
use crate::plan::plan_text;
use crate::schedule::simulate;
use crate::schedule_tests::{spec, Spec};
use fleetbook_stdlib::transport::{HostInfo, Output, Transport, TransportError};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Commands block until released, one host at a time (a host runs one step at a time).
#[derive(Default)]
struct Scripted {
    state: Mutex<Gate>,
    changed: Condvar,
}

#[derive(Default)]
struct Gate {
    /// Hosts whose command is in flight, waiting for the test.
    blocked: BTreeSet<String>,
    released: BTreeSet<String>,
    /// Every transition the executor reported, in order.
    events: Vec<(String, State)>,
}

impl Transport for Scripted {
    fn exec(
        &self,
        host: &HostInfo,
        _command: &str,
        _timeout: Option<Duration>,
    ) -> Result<Output, TransportError> {
        let mut g = self.state.lock().unwrap();
        g.blocked.insert(host.name.clone());
        self.changed.notify_all();
        // The test takes the host out of `blocked` as it releases it, so that it never
        // mistakes a released command for one still waiting.
        while !g.released.remove(&host.name) {
            g = self.changed.wait(g).unwrap();
        }
        Ok(Output {
            code: 0,
            stdout: String::new(),
            stderr: String::new(),
        })
    }
}

impl Scripted {
    /// Waits until `ready` holds of the gate; fails the test after a generous while (the
    /// executor never did what the plan says it does next).
    fn wait_for(&self, what: &str, ready: impl Fn(&Gate) -> bool) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut g = self.state.lock().unwrap();
        while !ready(&g) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("{what}; transitions so far: {:?}", g.events));
            }
            // `idle` is a flag the scheduler sets without notifying: look again soon.
            g = self
                .changed
                .wait_timeout(g, left.min(Duration::from_millis(2)))
                .unwrap()
                .0;
        }
        Ok(())
    }
}

/// Tasks started and not ended, from the executor's transitions.
fn in_flight(events: &[(String, State)]) -> BTreeSet<String> {
    let mut open = BTreeSet::new();
    for (task, state) in events {
        match state {
            State::Running => open.insert(task.clone()),
            _ => open.remove(task),
        };
    }
    open
}

/// Gives every host task its own power-of-two duration: any two sums of them differ, so no
/// two tasks end at the same simulated time.
fn distinct_durations(graph: &mut Graph) {
    let mut k = 0;
    for t in graph.tasks.iter_mut() {
        if t.kind == TaskKind::Host {
            t.duration = 1 << k;
            k += 1;
        }
    }
}

fn agree(spec: &Spec) -> Result<(), String> {
    let mut planned = plan_text(
        &spec.runbook(),
        &spec.inventory(),
        Format::Ini,
        &BTreeMap::new(),
        None,
    )
    .map_err(|e| format!("plan failed: {e:?}"))?;
    distinct_durations(&mut planned.graph);
    let graph = &planned.graph;
    let schedule = simulate(graph, &vec![false; graph.tasks.len()]).map_err(|e| e.to_string())?;
    let id = |t: usize| graph.tasks[t].id.to_string();
    let mut ends: Vec<usize> = (0..graph.tasks.len())
        .filter(|&t| graph.tasks[t].kind == TaskKind::Host)
        .collect();
    ends.sort_by_key(|&t| schedule.tasks[t].end);

    let transport = Arc::new(Scripted::default());
    let on_event = {
        let transport = transport.clone();
        move |e: &Event| {
            transport
                .state
                .lock()
                .unwrap()
                .events
                .push((e.task.clone(), e.state));
            transport.changed.notify_all();
        }
    };
    let approve = |_: &str| true;
    let control = Arc::new(Control::default());
    let outcome = std::thread::scope(|scope| {
        let run = scope.spawn(|| {
            execute(
                &planned,
                ExecOptions {
                    transport: transport.clone(),
                    control: control.clone(),
                    on_event: &on_event,
                    approve: &approve,
                    done: Vec::new(),
                    facts: Vec::new(),
                    on_fact: Arc::new(|_: &str, _: &str, _: &str| {}),
                    undo_only: None,
                    run_id: "agreement".into(),
                    ledger: Arc::new(crate::slots::LocalLedger),
                },
            )
        });
        let drive = || -> Result<(), String> {
            for &t in &ends {
                let host = graph.hosts[graph.tasks[t].host.unwrap()].name.clone();
                let task = id(t);
                // Quiet: the scheduler waits, everything in flight is a command waiting
                // here, and the task the plan ends next is one of them.
                transport.wait_for(
                    &format!("the plan ends {task} next, but the executor did not start it"),
                    |g| {
                        let open = in_flight(&g.events);
                        control.idle.load(std::sync::atomic::Ordering::SeqCst)
                            && open.contains(&task)
                            && open.len() == g.blocked.len()
                            && g.blocked.contains(&host)
                    },
                )?;
                let mut g = transport.state.lock().unwrap();
                g.blocked.remove(&host);
                g.released.insert(host);
                transport.changed.notify_all();
            }
            Ok(())
        };
        let driven = drive();
        if driven.is_err() {
            // Let the executor finish: release every command from now on.
            let release_all = || loop {
                let mut g = transport.state.lock().unwrap();
                let blocked = std::mem::take(&mut g.blocked);
                g.released.extend(blocked);
                transport.changed.notify_all();
                drop(g);
                if run.is_finished() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            };
            release_all();
        }
        (driven, run.join().unwrap())
    });
    outcome.0?;
    let events = transport.state.lock().unwrap().events.clone();
    let started: Vec<&str> = events
        .iter()
        .filter(|(_, s)| *s == State::Running)
        .map(|(t, _)| t.as_str())
        .collect();
    let index: HashMap<String, usize> = (0..graph.tasks.len()).map(|t| (id(t), t)).collect();
    // Barriers report no transition; every other task must start, once.
    let reported = graph
        .tasks
        .iter()
        .filter(|t| !matches!(t.kind, TaskKind::RoleDone | TaskKind::CanaryDone))
        .count();
    if started.len() != reported || started.iter().collect::<BTreeSet<_>>().len() != reported {
        return Err(format!(
            "the executor started {} tasks, the plan has {reported}: {started:?}",
            started.len(),
        ));
    }
    for pair in started.windows(2) {
        let (a, b) = (index[pair[0]], index[pair[1]]);
        if schedule.tasks[a].start > schedule.tasks[b].start {
            return Err(format!(
                "the executor started {} before {}, the plan at {} after {}",
                pair[0], pair[1], schedule.tasks[a].start, schedule.tasks[b].start
            ));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    #[test]
    fn the_executor_starts_what_the_plan_starts_in_the_same_order(spec in spec()) {
        if let Err(e) = agree(&spec) {
            prop_assert!(false, "{e}\nrunbook:\n{}\ninventory:\n{}", spec.runbook(), spec.inventory());
        }
    }
}
