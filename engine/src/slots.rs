//! Slot accounting: the limits a runbook declares, as counters that say whether a host may
//! start now. The schedule simulator and the executor both ask this one type, so the plan
//! and the run obey the same rules.
//!
//! A host takes a slot in each of its roles, in the fleet total and in its `limit_by`
//! groups when its first step starts, and gives them back when its last step ends. With
//! batches, a role's hosts start in lock-step: a new batch opens only when the role has no
//! host in flight, and it closes at the end of the scheduling pass that opened it.

use crate::compile::{Graph, Rules};
use std::collections::HashMap;

#[derive(Debug, Clone, Default)]
struct RoleState {
    in_flight: usize,
    batch_started: usize,
    batch_open: bool,
}

#[derive(Debug, Clone)]
pub struct Slots {
    role_limit: Vec<Option<usize>>,
    roles: Vec<RoleState>,
    rules: Rules,
    total: usize,
    /// Per `limit_by` rule: value -> hosts in flight.
    by: Vec<HashMap<String, usize>>,
    /// Per step: hosts in it now (for throttles).
    in_step: Vec<usize>,
}

/// What about a host matters for slots: its roles and its `limit_by` values.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SlotKey {
    pub roles: Vec<usize>,
    pub by: Vec<Option<String>>,
}

impl Slots {
    pub fn new(graph: &Graph) -> Slots {
        Slots {
            role_limit: graph.roles.iter().map(|r| r.limit).collect(),
            roles: vec![RoleState::default(); graph.roles.len()],
            rules: graph.rules.clone(),
            total: 0,
            by: vec![HashMap::new(); graph.rules.by.len()],
            in_step: vec![0; graph.rules.throttle.len()],
        }
    }

    pub fn key(graph: &Graph, host: usize) -> SlotKey {
        let h = &graph.hosts[host];
        SlotKey {
            roles: h.roles.clone(),
            by: graph
                .rules
                .by
                .iter()
                .map(|(var, _)| h.vars.get(var).cloned())
                .collect(),
        }
    }

    /// May a host with this key take its slots now?
    pub fn can_start(&self, key: &SlotKey) -> bool {
        if self.rules.total.is_some_and(|t| self.total >= t) {
            return false;
        }
        for &r in &key.roles {
            let st = &self.roles[r];
            if let Some(limit) = self.role_limit[r] {
                if st.in_flight >= limit {
                    return false;
                }
                if self.rules.batches
                    && st.in_flight > 0
                    && !(st.batch_open && st.batch_started < limit)
                {
                    return false;
                }
            }
        }
        for (i, v) in key.by.iter().enumerate() {
            if let Some(v) = v {
                if self.by[i].get(v).copied().unwrap_or(0) >= self.rules.by[i].1 {
                    return false;
                }
            }
        }
        true
    }

    pub fn start(&mut self, key: &SlotKey) {
        self.total += 1;
        for &r in &key.roles {
            let st = &mut self.roles[r];
            if st.in_flight == 0 {
                st.batch_open = true;
                st.batch_started = 0;
            }
            st.in_flight += 1;
            st.batch_started += 1;
        }
        for (i, v) in key.by.iter().enumerate() {
            if let Some(v) = v {
                match self.by[i].get_mut(v) {
                    Some(n) => *n += 1,
                    None => {
                        self.by[i].insert(v.clone(), 1);
                    }
                }
            }
        }
    }

    pub fn finish(&mut self, key: &SlotKey) {
        self.total -= 1;
        for &r in &key.roles {
            self.roles[r].in_flight -= 1;
        }
        for (i, v) in key.by.iter().enumerate() {
            if let Some(v) = v {
                if let Some(n) = self.by[i].get_mut(v) {
                    *n -= 1;
                }
            }
        }
    }

    /// Ends a scheduling pass: batches that started hosts in it take no more.
    pub fn end_pass(&mut self) {
        for st in &mut self.roles {
            if st.in_flight > 0 {
                st.batch_open = false;
            }
        }
    }

    pub fn can_enter_step(&self, step: usize) -> bool {
        self.rules.throttle[step].is_none_or(|t| self.in_step[step] < t)
    }

    pub fn enter_step(&mut self, step: usize) {
        self.in_step[step] += 1;
    }

    pub fn leave_step(&mut self, step: usize) {
        self.in_step[step] -= 1;
    }
}

/// Hosts waiting for their slots, queued by slot key: hosts with the same key are alike for
/// every limit, so a pass looks at one head per key instead of at every waiting host.
#[derive(Debug, Default)]
pub struct WaitingHosts {
    queues:
        std::collections::BTreeMap<SlotKey, std::collections::BinaryHeap<std::cmp::Reverse<usize>>>,
    /// Every waiting host, lowest first: who is likely to start next (connect-ahead).
    all: std::collections::BTreeSet<usize>,
}

impl WaitingHosts {
    /// Waiting hosts in the order they would start if every slot were free.
    pub fn upcoming(&self) -> impl Iterator<Item = usize> + '_ {
        self.all.iter().copied()
    }

    pub fn push(&mut self, key: &SlotKey, host: usize) {
        self.all.insert(host);
        // The key is copied only for a new queue: most hosts join one that exists.
        match self.queues.get_mut(key) {
            Some(q) => q.push(std::cmp::Reverse(host)),
            None => {
                let q = std::iter::once(std::cmp::Reverse(host)).collect();
                self.queues.insert(key.clone(), q);
            }
        }
    }

    /// The lowest-numbered waiting host whose slots are free now, with its slots taken.
    pub fn start_next(&mut self, slots: &mut Slots) -> Option<usize> {
        // A host is in one queue only, so the lowest host decides; the queue is found again
        // by its place, which costs no copy of its key.
        // Slots are checked only for a queue whose head would come before the best so far
        // (most queues' heads do not: the check per queue was most of a simulation's time).
        let mut best: Option<(usize, usize)> = None;
        for (i, (key, q)) in self.queues.iter().enumerate() {
            let Some(&std::cmp::Reverse(head)) = q.peek() else {
                continue;
            };
            if best.is_none_or(|(b, _)| head < b) && slots.can_start(key) {
                best = Some((head, i));
            }
        }
        let (host, at) = best?;
        let (key, q) = self.queues.iter_mut().nth(at)?;
        q.pop();
        slots.start(key);
        // Queues left empty go: every later call looks at every queue (a replication
        // group's, once its hosts are done, would be looked at for every compute host).
        if q.is_empty() {
            self.queues.retain(|_, q| !q.is_empty());
        }
        self.all.remove(&host);
        Some(host)
    }
}

/// Host tasks waiting for room in a throttled step, per step, lowest host first.
#[derive(Debug)]
pub struct WaitingSteps {
    queues: Vec<std::collections::BinaryHeap<std::cmp::Reverse<(usize, usize)>>>,
}

impl WaitingSteps {
    pub fn new(steps: usize) -> WaitingSteps {
        WaitingSteps {
            queues: vec![std::collections::BinaryHeap::new(); steps],
        }
    }

    pub fn push(&mut self, step: usize, host: usize, task: usize) {
        self.queues[step].push(std::cmp::Reverse((host, task)));
    }

    /// Tasks that may enter their step now, with their places in the step taken.
    pub fn enter_next(&mut self, slots: &mut Slots) -> Vec<usize> {
        self.enter_next_fleet(slots, |_, _| true)
    }

    /// As [`enter_next`](Self::enter_next), with a place in the step also taken fleet-wide:
    /// `fleet(step, host)` says whether it could be (the ledger's
    /// [`enter_step`](SlotLedger::enter_step)). A step whose next host is refused takes
    /// no later one, so a step's hosts enter in order.
    pub fn enter_next_fleet(
        &mut self,
        slots: &mut Slots,
        mut fleet: impl FnMut(usize, usize) -> bool,
    ) -> Vec<usize> {
        let mut out = Vec::new();
        for (step, q) in self.queues.iter_mut().enumerate() {
            while let Some(&std::cmp::Reverse((h, t))) = q.peek() {
                if !slots.can_enter_step(step) || !fleet(step, h) {
                    break;
                }
                q.pop();
                slots.enter_step(step);
                out.push(t);
            }
        }
        out
    }

    /// Tasks still waiting for room in their step.
    pub fn len(&self) -> usize {
        self.queues.iter().map(|q| q.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Fleet-wide admission of hosts, for runs that several controllers share (an etcd store):
/// before a host takes its first slot here, the ledger takes it — and a slot of each of its
/// limits — in the shared store, so that no limit is exceeded across controllers and no host
/// runs on two. A run with a local journal has one controller: [`LocalLedger`] admits all.
pub trait SlotLedger: Send + Sync {
    /// May this controller start `host` now? `limits` are (name, capacity) of each limit
    /// the host counts against ([`fleet_limits`]).
    fn admit(&self, host: &str, limits: &[(String, usize)]) -> Admit;
    /// The host is finished here (`Some(ok)`), or given back unfinished (`None`, the run
    /// stopped): its slots are freed either way.
    fn release(&self, host: &str, finished: Option<bool>);
    /// Whether other controllers may hold hosts of this run: then a controller with
    /// nothing to do waits for them instead of ending.
    fn shared(&self) -> bool;
    /// May `host` enter the throttled step `step` now (at most `cap` hosts in it at once,
    /// fleet-wide)? Its place is held until [`leave_step`](Self::leave_step).
    fn enter_step(&self, _host: &str, _step: &str, _cap: usize) -> bool {
        true
    }
    /// `host` left the throttled step `step`: its place is free.
    fn leave_step(&self, _host: &str, _step: &str) {}
    /// Waits, with nothing running here, at most `max` for other controllers to free a
    /// host or a slot.
    fn wait(&self, max: std::time::Duration) {
        std::thread::sleep(max);
    }
}

/// What the ledger says about a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admit {
    /// Taken here, with its slots; `done` are its tasks (ids) another controller already
    /// finished, not to run again; `unknown` those a controller that died left running
    /// (run again only if idempotent).
    Go {
        done: Vec<String>,
        unknown: Vec<String>,
    },
    /// A fleet-wide limit is full: ask again later, and start no later host before it.
    Full,
    /// Another controller is working on it: ask again later.
    Elsewhere,
    /// Another controller finished it (`ok`: without failure).
    Finished { ok: bool },
}

/// One controller: every host is this controller's.
pub struct LocalLedger;

impl SlotLedger for LocalLedger {
    fn admit(&self, _: &str, _: &[(String, usize)]) -> Admit {
        Admit::Go {
            done: Vec::new(),
            unknown: Vec::new(),
        }
    }
    fn release(&self, _: &str, _: Option<bool>) {}
    fn shared(&self) -> bool {
        false
    }
}

/// Refuses a further controller on a run whose rules each controller keeps for its own
/// hosts only: two controllers could break them together (docs/etcd.md). Every other limit
/// (batches too: [`BATCH`]) is held fleet-wide by the [`SlotLedger`].
pub fn check_joinable(run: &str, graph: &Graph) -> crate::Result<()> {
    if graph.rules.deadline.is_none() {
        return Ok(());
    }
    let unshared =
        "rb.deadline(...) (no host starts past it, counted from each controller's start)";
    Err(crate::Error::input_with_help(
        format!(
            "refusing to join run {run}: its runbook uses {unshared}, which one controller keeps for its own hosts and two could not keep together"
        ),
        "one controller drives such a run: `run --join` and `resume` of a run that is still running are refused; if its controller died, `fleetbook resume RUN` once its lease has expired (--etcd-ttl)",
    ))
}

/// The name of a batched role's turn among the limits of [`fleet_limits`] (`batch:ROLE`,
/// capacity 1): not a counted slot but one key, held by the controller whose hosts run the
/// role's current batch for as long as it holds one of them. While it holds it no other
/// controller starts a host of the role, so "no host of the role in flight" is what this
/// controller's own [`Slots`] see, and the batch rule holds fleet-wide.
pub const BATCH: &str = "batch:";

/// The limits a host counts against, named as in the store: `role:ROLE`, `total`,
/// `by:VAR=VALUE`, and with batches `batch:ROLE` ([`BATCH`]) for each role with a limit.
pub fn fleet_limits(graph: &Graph, key: &SlotKey) -> Vec<(String, usize)> {
    let mut out: Vec<(String, usize)> = Vec::new();
    for &r in &key.roles {
        let (name, Some(l)) = (&graph.roles[r].name, graph.roles[r].limit) else {
            continue;
        };
        out.push((format!("role:{name}"), l));
        // The batch rule applies to limited roles only (`Slots::can_start`).
        if graph.rules.batches {
            out.push((format!("{BATCH}{name}"), 1));
        }
    }
    if let Some(t) = graph.rules.total {
        out.push(("total".into(), t));
    }
    for (i, v) in key.by.iter().enumerate() {
        if let Some(v) = v {
            let (var, cap) = &graph.rules.by[i];
            out.push((format!("by:{var}={v}"), *cap));
        }
    }
    out
}
