//! The dispatcher: which task may start next, for the plan and the run alike. Takes the
//! [`Graph`]; gives, pass by pass, the tasks to start now, and takes back the tasks that
//! ended. It owns Kahn's counters (what each task still waits for), the ready queue, the
//! [`Slots`] accounting with the hosts and throttled steps waiting for room, each host's
//! progress (where it takes its slots, when it gives them back), the failure budgets and
//! the flow rules that are decisions rather than I/O: what a stopping run still starts
//! (`.always()` steps it owes), which of a host's steps are not run after a failure or a
//! stop, what a resumed run starts again, which hosts a rollback covers.
//!
//! Two thin drivers: the schedule simulator (`schedule.rs`) with virtual time and each task
//! taking its estimate (the whole plan, or the rest of a running run for its ETA:
//! [`Dispatcher::replay`]), the executor (`exec.rs`) with threads and a fleet-wide ledger. A
//! pass is `place_ready`, then `next_host`/`open_host` until no host may start, then
//! `enter_steps`, then `end_pass`; between passes, `finish` the tasks that ended.

use crate::compile::{Graph, TaskKind};
use crate::model::RollbackScope;
use crate::slots::{SlotKey, Slots, WaitingHosts, WaitingSteps};

/// What a run that is winding down may still start (all false in the plan).
#[derive(Debug, Clone, Copy, Default)]
pub struct Stop {
    /// Halted or stopped: hosts in flight run only the `.always()` steps they owe.
    pub stopping: bool,
    /// Killed: nothing starts.
    pub killing: bool,
    /// Past the deadline: only hosts in flight go on (no hook, gate or approval either).
    pub expired: bool,
}

/// What a pass over the ready tasks made of them.
#[derive(Debug, Default)]
pub struct Placed {
    /// Start these now.
    pub start: Vec<usize>,
    /// Held by a role with limit 0: they never run. The plan lays them out as taking no
    /// time (what waits on them is held too, but `finally`); the run leaves them unfinished.
    pub held: Vec<usize>,
    /// Hosts that began to wait for their slots.
    pub waiting: Vec<usize>,
}

pub struct Dispatcher<'g> {
    graph: &'g Graph,
    dependents: crate::compile::Dependents,
    /// Per task: dependencies not yet finished (Kahn's counters).
    waiting: Vec<usize>,
    finished: Vec<bool>,
    ready: Vec<usize>,
    /// Per task: its host and its index among the host's tasks.
    position: Vec<Option<(usize, usize)>>,
    /// Per task: an `.always()` host step (a release a started host is owed).
    always: Vec<bool>,
    /// `finally` tasks wait for the end of the loop (the run), instead of their place.
    defer_finally: bool,
    keys: Vec<SlotKey>,
    /// Per host: its first task still to do, where it takes its slots.
    first_pending: Vec<usize>,
    /// Per host: it holds its slots now.
    open: Vec<bool>,
    /// Per host: a step of it (not a check) started, so its `.always()` steps are owed.
    ran: Vec<bool>,
    /// Per task: it holds a place in its throttled step.
    in_step: Vec<bool>,
    slots: Slots,
    waiting_hosts: WaitingHosts,
    waiting_steps: WaitingSteps,
    /// One failure counter per role, then one for the whole run.
    role_failures: Vec<usize>,
    halted: Option<String>,
}

impl<'g> Dispatcher<'g> {
    /// The plan's dispatcher: nothing done yet, no step owed, `finally` in its place.
    pub fn plan(graph: &'g Graph) -> Dispatcher<'g> {
        let n = graph.tasks.len();
        Dispatcher::new(graph, &[], vec![false; n], false)
    }

    /// The run's dispatcher. `done`: tasks an earlier attempt finished (resume); `always`:
    /// per task, an `.always()` host step. `finally` steps run at the end of every attempt,
    /// whatever an earlier one did; a resumed host with steps still to do runs its
    /// `.always()` (release) steps again after them, so that the release comes last.
    pub fn run(graph: &'g Graph, done: &[bool], always: Vec<bool>) -> Dispatcher<'g> {
        Dispatcher::new(graph, done, always, true)
    }

    /// The dispatcher of a run's rest, as the plan would lay it out (for its end time):
    /// `done` tasks are over, `in_flight` hosts hold their slots already (they started, and
    /// a lock-step batch they belong to takes no more hosts), `finally` in its place.
    pub fn replay(graph: &'g Graph, done: &[bool], in_flight: &[usize]) -> Dispatcher<'g> {
        let n = graph.tasks.len();
        let mut d = Dispatcher::new(graph, done, vec![false; n], false);
        for &h in in_flight {
            if !d.open[h] {
                d.slots.start(&d.keys[h]);
                d.open[h] = true;
            }
        }
        d.slots.end_pass();
        d
    }

    fn new(graph: &'g Graph, done: &[bool], always: Vec<bool>, defer: bool) -> Dispatcher<'g> {
        let n = graph.tasks.len();
        let (dependents, mut waiting) = graph.dependents();
        let mut position = vec![None; n];
        for (h, ts) in graph.host_tasks.iter().enumerate() {
            for (i, &t) in ts.iter().enumerate() {
                position[t] = Some((h, i));
            }
        }
        let mut finished: Vec<bool> = (0..n)
            .map(|t| done.get(t).copied().unwrap_or(false))
            .collect();
        for ts in &graph.host_tasks {
            if ts.iter().any(|&t| !finished[t] && !always[t]) {
                ts.iter()
                    .filter(|&&t| always[t])
                    .for_each(|&t| finished[t] = false);
            }
        }
        for (t, task) in graph.tasks.iter().enumerate() {
            // A resumed run runs its `finally` steps again; a replay keeps what happened.
            if defer && task.kind == TaskKind::Finally {
                finished[t] = false;
            }
            if finished[t] {
                dependents.of(t).for_each(|d| waiting[d] -= 1);
            }
        }
        // A resumed host takes its slot again at its first task still to do.
        let first_pending = graph
            .host_tasks
            .iter()
            .map(|ts| ts.iter().position(|&t| !finished[t]).unwrap_or(ts.len()))
            .collect();
        let ready = (0..n)
            .filter(|&t| waiting[t] == 0 && !finished[t])
            .collect();
        Dispatcher {
            graph,
            dependents,
            waiting,
            finished,
            ready,
            position,
            always,
            defer_finally: defer,
            keys: (0..graph.hosts.len())
                .map(|h| Slots::key(graph, h))
                .collect(),
            first_pending,
            open: vec![false; graph.hosts.len()],
            ran: vec![false; graph.hosts.len()],
            in_step: vec![false; n],
            slots: Slots::new(graph),
            waiting_hosts: WaitingHosts::default(),
            waiting_steps: WaitingSteps::new(graph.rules.throttle.len()),
            role_failures: vec![0; graph.roles.len() + 1],
            halted: None,
        }
    }

    pub fn is_finished(&self, t: usize) -> bool {
        self.finished[t]
    }

    /// Tasks whose dependencies have all finished, not yet placed.
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// The hosts waiting for their slots (who is likely to start next).
    pub fn waiting_hosts(&self) -> &WaitingHosts {
        &self.waiting_hosts
    }

    pub fn slot_key(&self, h: usize) -> &SlotKey {
        &self.keys[h]
    }

    /// The host `t` belongs to and its index among the host's tasks.
    pub fn position(&self, t: usize) -> Option<(usize, usize)> {
        self.position[t]
    }

    /// Places every ready task: a host's first task waits for the host's slots, a throttled
    /// step for room in the step, anything else starts now.
    pub fn place_ready(&mut self, stop: Stop) -> Placed {
        let mut placed = Placed::default();
        for t in std::mem::take(&mut self.ready) {
            let task = &self.graph.tasks[t];
            if self.graph.held[t] {
                placed.held.push(t);
                continue;
            }
            if self.defer_finally && task.kind == TaskKind::Finally {
                continue;
            }
            let in_flight = self.position[t].is_some_and(|(h, _)| self.open[h]);
            if (stop.stopping && !self.owed(t)) || stop.killing || (stop.expired && !in_flight) {
                continue;
            }
            match self.position[t] {
                Some((h, i)) if i == self.first_pending[h] && !self.open[h] => {
                    self.waiting_hosts.push(&self.keys[h], h);
                    placed.waiting.push(h);
                }
                // A stopping run releases what it owes without waiting for room.
                Some((h, _)) if self.throttled(t) && !stop.stopping => {
                    self.waiting_steps.push(self.step_of(t), h, t)
                }
                _ => placed.start.push(t),
            }
        }
        placed
    }

    /// Is `t` a `.always()` step its host is owed: the host holds its slots and ran a step.
    fn owed(&self, t: usize) -> bool {
        self.always[t] && self.position[t].is_some_and(|(h, _)| self.open[h] && self.ran[h])
    }

    fn throttled(&self, t: usize) -> bool {
        let task = &self.graph.tasks[t];
        task.kind == TaskKind::Host && self.graph.rules.throttle[self.step_of(t)].is_some()
    }

    fn step_of(&self, t: usize) -> usize {
        self.graph.tasks[t].step.unwrap_or(0)
    }

    /// The lowest waiting host whose slots are free now, with its slots taken; the caller
    /// opens it ([`Dispatcher::open_host`]) or gives its slots back.
    pub fn next_host(&mut self) -> Option<usize> {
        self.waiting_hosts.start_next(&mut self.slots)
    }

    /// Gives back the slots [`Dispatcher::next_host`] took, the host not started.
    pub fn give_back(&mut self, h: usize) {
        self.slots.finish(&self.keys[h]);
    }

    /// Puts a host back in the queue for its slots.
    pub fn park(&mut self, h: usize) {
        self.waiting_hosts.push(&self.keys[h], h);
    }

    /// The host holds its slots from now on (until its last task finishes).
    pub fn hold(&mut self, h: usize) {
        self.open[h] = true;
    }

    /// Starts a host whose slots were taken: its first task to do, if it may start now
    /// (else it waits for room in its throttled step).
    pub fn open_host(&mut self, h: usize) -> Option<usize> {
        self.open[h] = true;
        let first = self.graph.host_tasks[h][self.first_pending[h]];
        if self.throttled(first) {
            self.waiting_steps.push(self.step_of(first), h, first);
            return None;
        }
        Some(first)
    }

    /// Tasks that may enter their throttled step now, with their places taken.
    pub fn enter_steps(&mut self) -> Vec<usize> {
        self.enter_steps_fleet(|_, _| true)
    }

    /// As [`enter_steps`](Self::enter_steps), with a place in the step also taken
    /// fleet-wide: `fleet(step, host)` says whether it could be.
    pub fn enter_steps_fleet(&mut self, fleet: impl FnMut(usize, usize) -> bool) -> Vec<usize> {
        let entered = self.waiting_steps.enter_next_fleet(&mut self.slots, fleet);
        for &t in &entered {
            self.in_step[t] = true;
        }
        entered
    }

    /// Tasks still waiting for room in their throttled step.
    pub fn steps_waiting(&self) -> usize {
        self.waiting_steps.len()
    }

    /// Whether `t` holds a place in its throttled step (until it finishes).
    pub fn in_step(&self, t: usize) -> bool {
        self.in_step[t]
    }

    /// Ends a pass: batches that started hosts in it take no more.
    pub fn end_pass(&mut self) {
        self.slots.end_pass();
    }

    /// The driver started `t`.
    pub fn started(&mut self, t: usize) {
        if let Some((h, _)) = self.position[t] {
            if self.graph.tasks[t].kind == TaskKind::Host {
                self.ran[h] = true;
            }
        }
    }

    /// The tasks of `t`'s host after it that will not run now (it failed, or the run
    /// stops): all but those finished and the `.always()` steps the host is owed. They
    /// count as finished from now on, so that a tolerated failure does not block the role;
    /// pass them to [`Dispatcher::finish`] with `t`.
    pub fn cancel_rest(&mut self, t: usize) -> Vec<usize> {
        let Some((h, i)) = self.position[t] else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for &rest in &self.graph.host_tasks[h][i + 1..] {
            if self.finished[rest] || (self.always[rest] && self.ran[h]) {
                continue;
            }
            self.finished[rest] = true;
            out.push(rest);
        }
        out
    }

    /// These tasks ended (or will not run): what waits for them may become ready, their
    /// places in throttled steps are free. Gives the hosts whose last task this was; their
    /// slots are free again.
    pub fn finish(&mut self, tasks: &[usize]) -> Vec<usize> {
        for &t in tasks {
            self.finished[t] = true;
        }
        let mut hosts = Vec::new();
        for &t in tasks {
            if std::mem::take(&mut self.in_step[t]) {
                self.slots.leave_step(self.step_of(t));
            }
            self.release(t);
            if let Some((h, _)) = self.position[t] {
                hosts.push(h);
            }
        }
        first_of_each(&mut hosts);
        hosts.retain(|&h| self.close_if_done(h));
        hosts
    }

    /// Tasks finished without running here (another controller ran them): what waits for
    /// them goes on. Gives those that were not finished yet.
    pub fn finish_elsewhere(&mut self, tasks: &[usize]) -> Vec<usize> {
        let fresh: Vec<usize> = tasks
            .iter()
            .copied()
            .filter(|&t| !self.finished[t])
            .collect();
        // All marked first: a later step of the host, freed by an earlier one, must not be
        // made ready (and run here) when it is finished too.
        for &t in &fresh {
            self.finished[t] = true;
        }
        for &t in &fresh {
            self.release(t);
        }
        fresh
    }

    fn release(&mut self, t: usize) {
        for d in self.dependents.of(t) {
            self.waiting[d] -= 1;
            if self.waiting[d] == 0 && !self.finished[d] {
                self.ready.push(d);
            }
        }
    }

    /// Closes an open host whose every task finished: its slots are free.
    pub fn close_if_done(&mut self, h: usize) -> bool {
        let done = self.graph.host_tasks[h].iter().all(|&t| self.finished[t]);
        if self.open[h] && done {
            self.open[h] = false;
            self.slots.finish(&self.keys[h]);
            return true;
        }
        false
    }

    /// Makes the host's next task to do ready, if nothing else holds it (a host taken over
    /// in the middle).
    pub fn ready_next(&mut self, h: usize) {
        let next = self.graph.host_tasks[h]
            .iter()
            .copied()
            .find(|&t| !self.finished[t]);
        if let Some(next) = next {
            if self.waiting[next] == 0 && !self.ready.contains(&next) {
                self.ready.push(next);
            }
        }
    }

    /// Tasks that still wait for others (the plan cannot complete when any are left).
    pub fn stuck(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.waiting.len()).filter(|&t| self.waiting[t] > 0)
    }

    /// Stops the run with this reason, unless it already stopped for another.
    pub fn halt(&mut self, why: String) {
        self.halted.get_or_insert(why);
    }

    pub fn halted(&self) -> Option<&str> {
        self.halted.as_deref()
    }

    /// Counts a host's failure in each of its roles, and halts the run when a role is past
    /// its tolerance. The tolerances that apply are those the runbook declared for the
    /// host's roles; a host in no role with a declared tolerance gets none (0): a broken
    /// change must not keep rolling (salt#54521).
    pub fn host_failed(&mut self, h: usize) {
        if let Some(why) = count_failure(self.graph, &mut self.role_failures, h) {
            self.halt(why);
        }
    }
}

fn count_failure(graph: &Graph, role_failures: &mut [usize], h: usize) -> Option<String> {
    let roles = &graph.hosts[h].roles;
    for &role in roles {
        role_failures[role] += 1;
    }
    if let Some(all) = role_failures.last_mut() {
        *all += 1;
    }
    // The whole run's budget (its own counter, after the roles'), with unreachable hosts.
    let total = graph.rules.max_failures_total;
    if let Some(max) = total {
        let failed = role_failures.last().copied().unwrap_or(0);
        if failed > max {
            return Some(format!(
                "{failed} hosts failed in all (max_failures_total {max})"
            ));
        }
    }
    if roles.is_empty() && total.is_none() {
        return Some(format!(
            "host {} failed (it is in no role, so no failure is tolerated)",
            graph.hosts[h].name
        ));
    }
    let declared: Vec<usize> = roles
        .iter()
        .copied()
        .filter(|&r| graph.roles[r].max_failures.is_some())
        .collect();
    // With a run-wide budget, a role without its own is not limited by role.
    let checked: Vec<(usize, usize)> = if declared.is_empty() && total.is_some() {
        Vec::new()
    } else if declared.is_empty() {
        roles.first().map(|&r| (r, 0)).into_iter().collect()
    } else {
        declared
            .iter()
            .map(|&r| (r, graph.roles[r].max_failures.unwrap_or(0)))
            .collect()
    };
    checked.into_iter().find_map(|(role, max)| {
        (role_failures[role] > max).then(|| {
            format!(
                "role {} has {} failed host{} (max_failures {max})",
                graph.roles[role].name,
                role_failures[role],
                if role_failures[role] == 1 { "" } else { "s" }
            )
        })
    })
}

/// The hosts a failure of host `h` rolls back under `scope`.
pub fn rollback_hosts(graph: &Graph, scope: RollbackScope, h: usize) -> Vec<usize> {
    match scope {
        RollbackScope::Host => vec![h],
        RollbackScope::Role => {
            let mut out: Vec<usize> = graph.hosts[h]
                .roles
                .iter()
                .flat_map(|&r| graph.roles[r].hosts.iter().copied())
                .collect();
            out.sort_unstable();
            out.dedup();
            out
        }
        RollbackScope::Run => (0..graph.hosts.len()).collect(),
    }
}

/// Drops repeated values, keeping each one at its first place, in O(n log n): a simulated
/// fleet ends thousands of tasks in one tick (every host of a 5% window of 100,000 at once),
/// where a search per value was quadratic.
fn first_of_each(values: &mut Vec<usize>) {
    let mut at: Vec<(usize, usize)> = values.iter().copied().zip(0..).collect();
    at.sort_unstable();
    at.dedup_by_key(|(v, _)| *v);
    at.sort_unstable_by_key(|&(_, i)| i);
    values.clear();
    values.extend(at.into_iter().map(|(v, _)| v));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::Format;
    use crate::plan::{plan_text, Planned};
    use std::collections::BTreeMap;

    fn planned(runbook: &str, inventory: &str) -> Planned {
        plan_text(runbook, inventory, Format::Ini, &BTreeMap::new(), None)
            .unwrap_or_else(|e| panic!("plan failed: {e:?}"))
    }

    fn always(p: &Planned) -> Vec<bool> {
        p.graph
            .tasks
            .iter()
            .map(|t| {
                t.kind == TaskKind::Host && t.step.is_some_and(|s| p.script.runbook.steps[s].always)
            })
            .collect()
    }

    const RELEASE: &str = "let rb = runbook(\"t\"); rb.limit(\"web\", 1); rb.step(\"a\", |h| h.run(\"a\")); rb.step(\"b\", |h| h.run(\"b\")); rb.step(\"release\", |h| h.run(\"r\")).always(); rb";

    #[test]
    fn a_failed_host_skips_its_rest_but_runs_the_release_it_is_owed() {
        let p = planned(RELEASE, "[web]\nw1\nw2\n");
        let g = &p.graph;
        let [a, b, release] = g.host_tasks[0][..] else {
            panic!("w1 has three tasks: {:?}", g.host_tasks[0]);
        };
        let mut d = Dispatcher::run(g, &[], always(&p));
        let placed = d.place_ready(Stop::default());
        assert!(placed.start.is_empty(), "hosts wait for their slots first");
        assert_eq!(d.next_host(), Some(0));
        assert_eq!(d.open_host(0), Some(a));
        assert_eq!(d.next_host(), None, "limit 1: w2 waits");
        d.started(a);
        assert_eq!(d.cancel_rest(a), [b], "the release is owed: w1 ran a step");
        assert!(d.finish(&[a, b]).is_empty(), "w1 still owes its release");
        assert_eq!(d.place_ready(Stop::default()).start, [release]);
        d.started(release);
        assert_eq!(
            d.finish(&[release]),
            [0],
            "w1's last task gives its slot back"
        );
        assert_eq!(d.next_host(), Some(1));
    }

    #[test]
    fn a_stopping_run_starts_only_the_releases_of_hosts_in_flight() {
        let p = planned(RELEASE, "[web]\nw1\nw2\n");
        let g = &p.graph;
        let [a, b, release] = g.host_tasks[0][..] else {
            panic!("w1 has three tasks");
        };
        let mut d = Dispatcher::run(g, &[], always(&p));
        d.place_ready(Stop::default());
        let w1 = d.next_host().expect("w1 starts");
        assert_eq!(d.open_host(w1), Some(a));
        d.started(a);
        d.finish(&[a]);
        let stop = Stop {
            stopping: true,
            ..Stop::default()
        };
        assert!(d.place_ready(stop).start.is_empty(), "b is not owed");
        assert!(!d.is_finished(b));
        // The executor cancels what the host will not run, then the release is ready.
        assert_eq!(d.cancel_rest(a), [b]);
        d.finish(&[b]);
        assert_eq!(d.place_ready(stop).start, [release]);
    }

    #[test]
    fn a_resumed_host_takes_its_slot_at_its_first_task_left_and_releases_again() {
        let p = planned(RELEASE, "[web]\nw1\n");
        let g = &p.graph;
        let [a, b, release] = g.host_tasks[0][..] else {
            panic!("w1 has three tasks");
        };
        let mut done = vec![false; g.tasks.len()];
        done[a] = true;
        done[release] = true;
        let mut d = Dispatcher::run(g, &done, always(&p));
        assert!(d.is_finished(a));
        assert!(!d.is_finished(release), "the release runs again, after b");
        let placed = d.place_ready(Stop::default());
        assert_eq!(placed.waiting, [0], "b waits for w1's slots");
        assert_eq!(d.next_host(), Some(0));
        assert_eq!(d.open_host(0), Some(b));
    }

    #[test]
    fn past_the_failure_budget_the_run_halts() {
        let p = planned(
            "let rb = runbook(\"t\"); rb.max_failures(\"web\", 1); rb.step(\"a\", |h| h.run(\"a\")); rb",
            "[web]\nw1\nw2\nw3\n",
        );
        let mut d = Dispatcher::run(&p.graph, &[], always(&p));
        d.host_failed(0);
        assert_eq!(d.halted(), None, "one failure is tolerated");
        d.host_failed(1);
        assert_eq!(
            d.halted(),
            Some("role web has 2 failed hosts (max_failures 1)")
        );
    }

    #[test]
    fn first_of_each_keeps_the_first_place_of_every_value() {
        let mut v = vec![5, 3, 5, 1, 3, 9, 1];
        first_of_each(&mut v);
        assert_eq!(v, [5, 3, 1, 9]);
        let mut none: Vec<usize> = Vec::new();
        first_of_each(&mut none);
        assert!(none.is_empty());
    }
}
