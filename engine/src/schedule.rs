//! Schedule simulator: lays a [`Graph`] out in time under every limit, with each task taking
//! its estimate. Takes the graph; gives a start and end (seconds from the run's start) per
//! task. Runs in O(tasks log tasks): waiting hosts are queued by slot key, so a pass looks
//! at one head per key instead of every waiting host.

use crate::compile::{Graph, TaskKind};
use crate::error::{Error, Result};
use crate::slots::{SlotKey, Slots, WaitingHosts, WaitingSteps};
use std::cmp::Reverse;
use std::collections::BinaryHeap;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Slot {
    pub start: u64,
    pub end: u64,
}

#[derive(Debug, Clone)]
pub struct Schedule {
    pub tasks: Vec<Slot>,
    pub duration: u64,
}

/// Simulates the run. `skipped[t]` tasks (a `.when` that said no) take no time.
pub fn simulate(graph: &Graph, skipped: &[bool]) -> Result<Schedule> {
    let n = graph.tasks.len();
    let (dependents, mut waiting) = graph.dependents();
    let first_of_host: Vec<Option<usize>> = {
        let mut v = vec![None; n];
        for (h, ts) in graph.host_tasks.iter().enumerate() {
            if let Some(&f) = ts.first() {
                v[f] = Some(h);
            }
        }
        v
    };
    let last_of_host: Vec<Option<usize>> = {
        let mut v = vec![None; n];
        for (h, ts) in graph.host_tasks.iter().enumerate() {
            if let Some(&l) = ts.last() {
                v[l] = Some(h);
            }
        }
        v
    };
    let keys: Vec<SlotKey> = (0..graph.hosts.len())
        .map(|h| Slots::key(graph, h))
        .collect();

    let mut slots = Slots::new(graph);
    let mut out = vec![Slot::default(); n];
    let mut done = 0usize;
    let mut events: BinaryHeap<Reverse<(u64, usize)>> = BinaryHeap::new();
    let mut waiting_hosts = WaitingHosts::default();
    let mut waiting_steps = WaitingSteps::new(graph.rules.throttle.len());
    let mut ready: Vec<usize> = (0..n).filter(|&t| waiting[t] == 0).collect();
    let mut now = 0u64;

    // A soaking step keeps its host (and the host's slots) for its soak time too.
    let duration = |t: usize| {
        if skipped.get(t).copied().unwrap_or(false) {
            0
        } else {
            let soak = graph.tasks[t]
                .step
                .filter(|_| graph.tasks[t].kind == TaskKind::Host)
                .and_then(|s| graph.rules.soak.get(s).copied().flatten())
                .unwrap_or(0);
            graph.tasks[t].duration + soak
        }
    };
    let held = |t: usize| graph.held.get(t).copied().unwrap_or(false);

    loop {
        // Place newly ready tasks: a host's first task needs slots; a throttled step needs
        // room in the step; anything else starts now.
        let mut pass_ready = std::mem::take(&mut ready);
        loop {
            let mut instant = Vec::new();
            for t in pass_ready.drain(..) {
                let task = &graph.tasks[t];
                if held(t) {
                    // Never starts; what waits for it is held too (but `finally`).
                    instant.push(t);
                } else if let Some(h) = first_of_host[t] {
                    waiting_hosts.push(&keys[h], h);
                } else if task.kind == TaskKind::Host
                    && graph.rules.throttle[task.step.unwrap_or(0)].is_some()
                {
                    waiting_steps.push(task.step.unwrap_or(0), task.host.unwrap_or(0), t);
                } else {
                    out[t].start = now;
                    events.push(Reverse((now + duration(t), t)));
                }
            }
            // Start hosts whose slots are free, lowest host index first.
            while let Some(h) = waiting_hosts.start_next(&mut slots) {
                let first = graph.host_tasks[h][0];
                let step = graph.tasks[first].step.unwrap_or(0);
                if graph.rules.throttle[step].is_some() {
                    waiting_steps.push(step, h, first);
                } else {
                    out[first].start = now;
                    events.push(Reverse((now + duration(first), first)));
                }
            }
            for t in waiting_steps.enter_next(&mut slots) {
                out[t].start = now;
                events.push(Reverse((now + duration(t), t)));
            }
            for t in instant {
                out[t] = Slot {
                    start: now,
                    end: now,
                };
                done += 1;
                for &d in &dependents[t] {
                    waiting[d] -= 1;
                    if waiting[d] == 0 {
                        pass_ready.push(d);
                    }
                }
            }
            if pass_ready.is_empty() {
                break;
            }
        }
        slots.end_pass();

        // Advance to the next completion time and finish everything that ends then.
        let Some(&Reverse((t_next, _))) = events.peek() else {
            break;
        };
        now = t_next;
        while let Some(&Reverse((t_end, t))) = events.peek() {
            if t_end != now {
                break;
            }
            events.pop();
            out[t].end = now;
            done += 1;
            let task = &graph.tasks[t];
            if task.kind == TaskKind::Host {
                if let Some(step) = task.step {
                    if graph.rules.throttle[step].is_some() {
                        slots.leave_step(step);
                    }
                }
            }
            if let Some(h) = last_of_host[t] {
                slots.finish(&keys[h]);
            }
            for &d in &dependents[t] {
                waiting[d] -= 1;
                if waiting[d] == 0 {
                    ready.push(d);
                }
            }
        }
    }

    if done != n {
        let stuck: Vec<&str> = graph
            .tasks
            .iter()
            .enumerate()
            .filter(|(t, _)| waiting[*t] > 0)
            .map(|(_, t)| t.id.as_str())
            .take(5)
            .collect();
        return Err(Error::input(format!(
            "the plan cannot complete: {} task(s) wait on each other (e.g. {}); a host in several roles that are ordered or have canaries can end up waiting for itself",
            n - done,
            stuck.join(", ")
        )));
    }
    let duration = out.iter().map(|s| s.end).max().unwrap_or(0);
    Ok(Schedule {
        tasks: out,
        duration,
    })
}
