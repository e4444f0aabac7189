//! Schedule simulator: lays a [`Graph`] out in time under every limit, with each task taking
//! its estimate. Takes the graph; gives a start and end (seconds from the run's start) per
//! task. A thin driver of the [`Dispatcher`] the executor uses too, in virtual time. Runs in
//! O(tasks log tasks): waiting hosts are queued by slot key, so a pass looks at one head per
//! key instead of every waiting host.

use crate::compile::{Graph, TaskKind};
use crate::dispatch::{Dispatcher, Stop};
use crate::error::{Error, Result};
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
    let take = |t| duration(graph, skipped, t);
    lay_out(graph, Dispatcher::plan(graph), 0, &take)
}

/// What already happened in a run, for [`simulate_rest`].
#[derive(Debug, Default)]
pub struct Progress {
    /// Per task: it is over (done, failed, skipped...).
    pub done: Vec<bool>,
    /// Tasks running now, with the seconds each has left.
    pub running: Vec<(usize, u64)>,
    /// Hosts that started and are not done: they hold their slots now.
    pub in_flight: Vec<usize>,
}

/// The rest of a run simulated from now (time 0) under every limit, as [`simulate`] lays
/// out the whole: running tasks take the time they have left, the others their estimate.
pub fn simulate_rest(graph: &Graph, progress: &Progress) -> Result<Schedule> {
    let dispatch = Dispatcher::replay(graph, &progress.done, &progress.in_flight);
    let mut left = vec![None; graph.tasks.len()];
    for &(t, secs) in &progress.running {
        left[t] = Some(secs);
    }
    let take = |t: usize| left[t].unwrap_or_else(|| duration(graph, &[], t));
    let done = progress.done.iter().filter(|&&d| d).count();
    lay_out(graph, dispatch, done, &take)
}

/// Drives `dispatch` in virtual time, each task taking `take(t)` seconds; `done` tasks are
/// over before it starts.
fn lay_out(
    graph: &Graph,
    mut dispatch: Dispatcher,
    mut done: usize,
    take: &dyn Fn(usize) -> u64,
) -> Result<Schedule> {
    let n = graph.tasks.len();
    let mut out = vec![Slot::default(); n];
    let mut events: BinaryHeap<Reverse<(u64, usize)>> = BinaryHeap::new();
    let mut now = 0u64;
    loop {
        for t in pass(&mut dispatch, &mut out, &mut done, now) {
            out[t].start = now;
            events.push(Reverse((now + take(t), t)));
        }
        // Advance to the next completion time and finish everything that ends then.
        let Some(&Reverse((t_next, _))) = events.peek() else {
            break;
        };
        now = t_next;
        let mut ended = Vec::new();
        while let Some(&Reverse((t_end, t))) = events.peek() {
            if t_end != now {
                break;
            }
            events.pop();
            out[t].end = now;
            ended.push(t);
        }
        done += ended.len();
        dispatch.finish(&ended);
    }
    if done != n {
        let stuck: Vec<&str> = dispatch
            .stuck()
            .map(|t| graph.tasks[t].id.as_str())
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

/// One scheduling pass at `now`: the tasks that start. Held tasks never run: they take no
/// time, and what waits for them is placed in the same pass.
fn pass(dispatch: &mut Dispatcher, out: &mut [Slot], done: &mut usize, now: u64) -> Vec<usize> {
    let mut start = Vec::new();
    loop {
        let placed = dispatch.place_ready(Stop::default());
        start.extend(placed.start);
        while let Some(h) = dispatch.next_host() {
            start.extend(dispatch.open_host(h));
        }
        start.extend(dispatch.enter_steps());
        if placed.held.is_empty() {
            break;
        }
        for &t in &placed.held {
            out[t] = Slot {
                start: now,
                end: now,
            };
        }
        *done += placed.held.len();
        dispatch.finish(&placed.held);
    }
    dispatch.end_pass();
    start
}

/// How long a task keeps its host: its estimate, and a soaking step its soak time too.
fn duration(graph: &Graph, skipped: &[bool], t: usize) -> u64 {
    if skipped.get(t).copied().unwrap_or(false) {
        return 0;
    }
    let task = &graph.tasks[t];
    let soak = task
        .step
        .filter(|_| task.kind == TaskKind::Host)
        .and_then(|s| graph.rules.soak.get(s).copied().flatten())
        .unwrap_or(0);
    task.duration + soak
}
