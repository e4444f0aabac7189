//! Fleet-wide slots in etcd: the [`SlotLedger`] of a run several controllers share.
//!
//! A host is taken by creating `claims/RUN/HOST`, and a slot of each of its limits by
//! creating `slots/RUN/LIMIT/N` for a free `N` below the limit — all in one transaction that
//! succeeds only if none of those keys exists, so no limit is exceeded however many
//! controllers ask at once. A throttled step's places are slots too (`step:STEP`). Claims
//! and slots live under the controller's lease: a controller that dies gives them back when
//! its lease expires. A finished host gets `done/RUN/HOST` (kept), so no controller runs it
//! again.
//!
//! A batched role (`rb.batches(true)`) is driven by one controller at a time: to take a host
//! of it, a controller holds `slots/RUN/batch:ROLE` — created in the host's transaction if
//! absent, or checked there to be still under its own lease — and deletes it when it holds
//! no host of the role any more (a dead holder's goes with its lease). Meanwhile no other
//! controller starts a host of the role, so the batch rule each controller's own slots keep
//! (a new batch only when none of the role's hosts is in flight) holds fleet-wide.
//!
//! Which keys exist is read once and then followed by watches, so that taking a host is one
//! round trip, and a controller waiting for a slot wakes when another frees one. Slots are
//! shared fairly: a controller that holds its share of a limit (the limit over the number
//! of controllers, rounded up) takes a further slot only once it has been free for
//! [`HOLD_OFF`] — otherwise the controller that frees a slot would take it again before a
//! waiting one heard of it.

use super::docs::{HostDoc, TaskDoc};
use super::{json, EtcdStore, Keys};
use crate::slots::{Admit, SlotLedger, BATCH};
use crate::store::TaskState;
use etcd_client::{
    Compare, CompareOp, EventType, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long a freed slot is left to controllers below their share of its limit.
const HOLD_OFF: Duration = Duration::from_millis(150);

/// The kinds of keys the view follows, under `P/KIND/RUN/`.
const KINDS: [&str; 4] = ["claims", "done", "slots", "controllers"];

#[derive(Default)]
struct View {
    /// False until read, and once a watch broke: read again.
    live: bool,
    /// Which reading the watches belong to: older watches stop.
    epoch: u64,
    claims: HashSet<String>,
    /// Host -> finished without failure.
    done: HashMap<String, bool>,
    /// Limit -> slot number -> the lease of its holder.
    slots: HashMap<String, HashMap<usize, i64>>,
    /// Batch key (`batch:ROLE`) -> the lease of its holder.
    batches: HashMap<String, i64>,
    /// Batch key -> the lease that last held it, and when it was deleted.
    batch_freed: HashMap<String, (i64, Instant)>,
    /// (limit, slot number) -> when it was last freed.
    freed: HashMap<(String, usize), Instant>,
    controllers: HashSet<String>,
    /// Counts changes heard from the watches.
    generation: u64,
}

impl View {
    /// One key of `KINDS[kind]` put (`Some(value)`, under `lease`) or deleted.
    fn apply(&mut self, kind: usize, tail: &str, value: Option<&[u8]>, lease: i64) {
        let set = |s: &mut HashSet<String>| {
            if value.is_some() {
                s.insert(tail.to_string());
            } else {
                s.remove(tail);
            }
        };
        match kind {
            0 => set(&mut self.claims),
            1 => match value {
                Some(v) => {
                    let v: serde_json::Value = serde_json::from_slice(v).unwrap_or_default();
                    let ok = v["ok"].as_bool().unwrap_or(false);
                    self.done.insert(tail.to_string(), ok);
                }
                None => {
                    self.done.remove(tail);
                }
            },
            2 if tail.starts_with(BATCH) => {
                if value.is_some() {
                    self.batches.insert(tail.to_string(), lease);
                } else if let Some(held_by) = self.batches.remove(tail) {
                    self.batch_freed
                        .insert(tail.to_string(), (held_by, Instant::now()));
                }
            }
            2 => {
                let Some((limit, n)) = tail.rsplit_once('/') else {
                    return;
                };
                let Ok(n) = n.parse() else { return };
                let used = self.slots.entry(limit.to_string()).or_default();
                if value.is_some() {
                    used.insert(n, lease);
                } else if used.remove(&n).is_some() {
                    self.freed.insert((limit.to_string(), n), Instant::now());
                }
            }
            _ => set(&mut self.controllers),
        }
    }

    /// A free slot number of `limit` that `lease` may take now, if any: any free one below
    /// its fair share, past it only one free for [`HOLD_OFF`]. Each controller looks from
    /// its own starting number, so that controllers asking at once seldom want one slot.
    /// Without `fair`, every free slot may be taken.
    fn free(&self, limit: &str, cap: usize, lease: i64, fair: bool) -> Option<usize> {
        let used = self.slots.get(limit);
        let mine = used.map_or(0, |u| u.values().filter(|&&l| l == lease).count());
        let share = if fair {
            cap.div_ceil(self.controllers.len().max(1))
        } else {
            cap
        };
        let from = (lease.unsigned_abs() % cap.max(1) as u64) as usize;
        (0..cap)
            .map(|i| (from + i) % cap)
            .filter(|n| !used.is_some_and(|u| u.contains_key(n)))
            .find(|&n| {
                mine < share
                    || self
                        .freed
                        .get(&(limit.to_string(), n))
                        .is_none_or(|t| t.elapsed() >= HOLD_OFF)
            })
    }
}

#[derive(Default)]
struct Shared {
    view: Mutex<View>,
    changed: Condvar,
}

impl Shared {
    fn view(&self) -> std::sync::MutexGuard<'_, View> {
        self.view.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The keys of a host held here.
#[derive(Default)]
struct HeldKeys {
    /// Its slots.
    slots: Vec<String>,
    /// Its documents, kept in memory by the store meanwhile.
    docs: Vec<String>,
    /// The batch keys (`batch:ROLE`, whole) of its batched roles.
    batches: Vec<String>,
}

/// The batch keys a host takes: (key, whether this controller already holds it).
type Turns = Vec<(String, bool)>;

/// What taking a host read of it.
struct Taken {
    /// A task of it started before (its document is not `pending`).
    started: bool,
    /// Its tasks' documents.
    tasks: Vec<TaskDoc>,
    /// (key, value) of its document and its tasks'.
    docs: Vec<(String, Vec<u8>)>,
}

impl Taken {
    fn read(host: &str, ops: Vec<TxnOpResponse>) -> Taken {
        let kvs: Vec<_> = ops
            .into_iter()
            .filter_map(|o| match o {
                TxnOpResponse::Get(mut g) => Some(g.take_kvs()),
                _ => None,
            })
            .collect();
        let mut taken = Taken {
            started: false,
            tasks: Vec::new(),
            docs: Vec::new(),
        };
        // The first read is the host's document, the others its tasks'.
        for (i, kv) in kvs
            .into_iter()
            .enumerate()
            .flat_map(|(i, kvs)| kvs.into_iter().map(move |kv| (i, kv)))
        {
            if i == 0 {
                // A document that does not read is taken as started: never run twice.
                taken.started = serde_json::from_slice::<HostDoc>(kv.value())
                    .map_or(true, |h| h.state != TaskState::Pending);
            } else {
                match serde_json::from_slice::<TaskDoc>(kv.value()) {
                    Ok(t) if t.host.as_deref() == Some(host) => taken.tasks.push(t),
                    _ => continue,
                }
            }
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            taken.docs.push((key, kv.value().to_vec()));
        }
        taken
    }
}

pub struct EtcdLedger {
    store: Arc<EtcdStore>,
    run: String,
    retry: bool,
    skip: bool,
    shared: Arc<Shared>,
    /// Host -> the slot keys this controller holds for it, and the keys of its documents
    /// the store keeps in memory meanwhile.
    held: Mutex<HashMap<String, HeldKeys>>,
    /// (host, step) -> the step slot this controller holds for it.
    in_steps: Mutex<HashMap<(String, String), String>>,
    /// Taken by `admit` and `release` for their whole length: whether a batch key is still
    /// needed is decided and acted on with no host taken meanwhile.
    turn: Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl EtcdLedger {
    pub fn new(store: Arc<EtcdStore>, run: &str, retry: bool, skip: bool) -> EtcdLedger {
        EtcdLedger {
            store,
            run: run.to_string(),
            retry,
            skip,
            shared: Arc::default(),
            held: Mutex::default(),
            in_steps: Mutex::default(),
            turn: Mutex::default(),
        }
    }

    fn keys(&self) -> &Keys {
        &self.store.keys
    }

    fn starts(&self) -> Vec<String> {
        KINDS
            .iter()
            .map(|k| self.keys().of_run(k, &self.run))
            .collect()
    }

    /// Reads claims, done hosts, slots and controllers at one revision, and follows them
    /// with watches from there. The view is locked only to change it: the watches change
    /// it on the client's runtime, which a network call here waits for.
    fn refresh(&self) -> crate::Result<()> {
        let starts = self.starts();
        let ops: Vec<TxnOp> = starts
            .iter()
            .map(|s| TxnOp::get(s.clone(), Some(GetOptions::new().with_prefix())))
            .collect();
        let txn = Txn::new().and_then(ops);
        let r = self.store.conn.call("read slots", move |mut c| {
            let t = txn.clone();
            async move { c.txn(t).await }
        })?;
        let rev = r.header().map(|h| h.revision()).unwrap_or_default();
        let mut view = self.shared.view();
        let epoch = view.epoch + 1;
        *view = View {
            live: true,
            epoch,
            generation: view.generation,
            ..View::default()
        };
        let gets = r.op_responses().into_iter().filter_map(|o| match o {
            TxnOpResponse::Get(g) => Some(g),
            _ => None,
        });
        for (kind, g) in gets.enumerate() {
            for kv in g.kvs() {
                let tail = Keys::tail(kv.key(), &starts[kind]);
                view.apply(kind, tail, Some(kv.value()), kv.lease());
            }
        }
        drop(view);
        for (kind, start) in starts.into_iter().enumerate() {
            let opts = WatchOptions::new()
                .with_prefix()
                .with_start_revision(rev + 1);
            let (client, shared) = (self.store.conn.client.clone(), self.shared.clone());
            self.store
                .conn
                .spawn(follow(client, start, opts, kind, shared, epoch));
        }
        Ok(())
    }

    /// The slots `host` would take now: (limit, number, key) of each of its limits, or
    /// `None` when one is full. A batched role's slots are not shared fairly: only the
    /// holder of its batch key takes them, and sharing would only shrink its batches.
    fn pick(
        &self,
        view: &View,
        limits: &[(String, usize)],
        lease: i64,
    ) -> Option<Vec<(String, usize, String)>> {
        limits
            .iter()
            .filter(|(limit, _)| !limit.starts_with(BATCH))
            .map(|(limit, cap)| {
                let batched = limit.strip_prefix("role:").is_some_and(|role| {
                    limits
                        .iter()
                        .any(|(l, _)| l.strip_prefix(BATCH) == Some(role))
                });
                let n = view.free(limit, *cap, lease, !batched)?;
                Some((limit.clone(), n, self.keys().slot(&self.run, limit, n)))
            })
            .collect()
    }

    /// The batch keys `host` needs (`batch:ROLE` among its limits), each with whether this
    /// controller holds it; `None` when another controller does — or when this one gave it
    /// up less than [`HOLD_OFF`] ago and others share the run: the next batch is left to
    /// them a moment, else the controller that ends a batch would always open the next.
    fn turns(&self, view: &View, limits: &[(String, usize)], lease: i64) -> Option<Turns> {
        limits
            .iter()
            .filter(|(limit, _)| limit.starts_with(BATCH))
            .map(|(limit, _)| {
                let key = format!("{}{limit}", self.keys().of_run("slots", &self.run));
                let just_mine = view.batch_freed.get(limit).is_some_and(|(l, at)| {
                    *l == lease && at.elapsed() < HOLD_OFF && view.controllers.len() > 1
                });
                match view.batches.get(limit) {
                    None if just_mine => None,
                    None => Some((key, false)),
                    Some(&l) if l == lease => Some((key, true)),
                    Some(_) => None,
                }
            })
            .collect()
    }

    /// One try at taking `host` with `slots` and batch keys `turns`: `None` when another
    /// controller was faster, else what the host's documents say about it.
    fn try_take(
        &self,
        host: &str,
        slots: Vec<(String, usize, String)>,
        turns: Turns,
        lease: i64,
    ) -> crate::Result<Option<Taken>> {
        let k = self.keys();
        let claim = k.claim(&self.run, host);
        let me = json(
            &serde_json::json!({ "controller": super::docs::controller_name(), "host": host }),
        );
        let absent = |key: &str| Compare::create_revision(key, CompareOp::Equal, 0);
        let mut when = vec![absent(&claim), absent(&k.done(&self.run, host))];
        when.extend(slots.iter().map(|(_, _, s)| absent(s)));
        let leased = || Some(PutOptions::new().with_lease(lease));
        let mut ops = vec![TxnOp::put(claim, me.clone(), leased())];
        // A batch key held here must still be (under this lease); one not held is taken.
        for (key, mine) in &turns {
            if *mine {
                when.push(Compare::lease(key.clone(), CompareOp::Equal, lease));
            } else {
                when.push(absent(key));
                ops.push(TxnOp::put(key.clone(), me.clone(), leased()));
            }
        }
        ops.extend(
            slots
                .iter()
                .map(|(_, _, s)| TxnOp::put(s.clone(), me.clone(), leased())),
        );
        // The host's documents in the same round trip: was it started before, and what
        // its transitions will change (the store keeps them while the host is held here).
        ops.push(TxnOp::get(k.host(&self.run, host), None));
        for kind in ["host", "check"] {
            let tasks = k.task(&self.run, &format!("{kind}:{host}:"));
            ops.push(TxnOp::get(tasks, Some(GetOptions::new().with_prefix())));
        }
        let Some(r) = self.store.txn_read(Some(&self.run), when, ops)? else {
            return Ok(None);
        };
        let mut view = self.shared.view();
        view.claims.insert(host.to_string());
        for (limit, n, _) in &slots {
            view.slots
                .entry(limit.clone())
                .or_default()
                .insert(*n, lease);
        }
        let start = self.keys().of_run("slots", &self.run);
        for (key, _) in &turns {
            view.apply(2, Keys::tail(key.as_bytes(), &start), Some(b""), lease);
        }
        drop(view);
        let taken = Taken::read(host, r);
        let docs: Vec<(String, Vec<u8>)> = taken.docs.clone();
        let doc_keys = docs.iter().map(|(k, _)| k.clone()).collect();
        self.store.hold_docs(docs);
        let held = HeldKeys {
            slots: slots.into_iter().map(|(_, _, s)| s).collect(),
            docs: doc_keys,
            batches: turns.into_iter().map(|(k, _)| k).collect(),
        };
        lock(&self.held).insert(host.to_string(), held);
        Ok(Some(taken))
    }

    /// The host's tasks a controller that died finished (to skip), and those it left
    /// running that nobody said what to do with.
    fn taken_over(&self, host: &str, taken: Taken) -> crate::Result<Admit> {
        let mut done = Vec::new();
        let mut unknown = Vec::new();
        if !taken.started {
            return Ok(Admit::Go { done, unknown });
        }
        let tasks = if taken.tasks.is_empty() {
            self.store.task_docs(&self.run)?
        } else {
            taken.tasks
        };
        for t in tasks {
            if t.host.as_deref() != Some(host) {
                continue;
            }
            if t.state.is_done() || (t.state.is_running() && self.skip) {
                done.push(t.task_id);
            } else if t.state.is_running() && !self.retry {
                unknown.push(t.task_id);
            }
        }
        Ok(Admit::Go { done, unknown })
    }

    fn admit_now(&self, host: &str, limits: &[(String, usize)]) -> crate::Result<Admit> {
        for attempt in 0..5 {
            if attempt > 0 {
                // Another controller was faster: hear of it from the watches.
                self.changed_since(Duration::from_millis(50));
            }
            if !self.shared.view().live {
                self.refresh()?;
            }
            let lease = self.store.lease_id()?;
            let (slots, turns) = {
                let view = self.shared.view();
                if let Some(&ok) = view.done.get(host) {
                    return Ok(Admit::Finished { ok });
                }
                if view.claims.contains(host) {
                    return Ok(Admit::Elsewhere);
                }
                let pick = self.pick(&view, limits, lease);
                match pick.zip(self.turns(&view, limits, lease)) {
                    Some(taken) => taken,
                    None => return Ok(Admit::Full),
                }
            };
            if let Some(doc) = self.try_take(host, slots, turns, lease)? {
                return self.taken_over(host, doc);
            }
        }
        Ok(Admit::Elsewhere)
    }

    fn enter_now(&self, host: &str, step: &str, cap: usize) -> crate::Result<bool> {
        let limit = format!("step:{step}");
        for attempt in 0..5 {
            if attempt > 0 {
                self.changed_since(Duration::from_millis(50));
            }
            if !self.shared.view().live {
                self.refresh()?;
            }
            let lease = self.store.lease_id()?;
            let Some(n) = self.shared.view().free(&limit, cap, lease, true) else {
                return Ok(false);
            };
            let key = self.keys().slot(&self.run, &limit, n);
            let me = json(&serde_json::json!({
                "controller": super::docs::controller_name(),
                "host": host,
            }));
            let absent = Compare::create_revision(key.clone(), CompareOp::Equal, 0);
            let put = TxnOp::put(key.clone(), me, Some(PutOptions::new().with_lease(lease)));
            if self.store.txn(Some(&self.run), vec![absent], vec![put])? {
                let mut view = self.shared.view();
                view.slots.entry(limit).or_default().insert(n, lease);
                lock(&self.in_steps).insert((host.to_string(), step.to_string()), key);
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Waits at most `max` for the watches to tell of a change.
    fn changed_since(&self, max: Duration) {
        let view = self.shared.view();
        let seen = view.generation;
        let _ = self
            .shared
            .changed
            .wait_timeout_while(view, max, |v| v.live && v.generation == seen);
    }

    /// Deletes keys this controller held (fenced; a controller that lost its lock writes
    /// nothing: its lease frees them), `also` in the same transaction, and forgets them.
    fn free(&self, keys: Vec<String>, also: Vec<TxnOp>) {
        let mut ops: Vec<TxnOp> = keys
            .iter()
            .map(|k| TxnOp::delete(k.clone(), None))
            .collect();
        ops.extend(also);
        let _ = self.store.txn(Some(&self.run), vec![], ops);
        let starts = self.starts();
        let mut view = self.shared.view();
        for key in &keys {
            for (kind, start) in starts.iter().enumerate() {
                if let Some(tail) = key.strip_prefix(start.as_str()) {
                    view.apply(kind, tail, None, 0);
                }
            }
        }
    }
}

/// Applies the watched events of `KINDS[kind]` to the view until the watch breaks or a
/// newer reading replaced it.
async fn follow(
    mut client: etcd_client::Client,
    start: String,
    options: WatchOptions,
    kind: usize,
    shared: Arc<Shared>,
    epoch: u64,
) {
    if let Ok(mut stream) = client.watch(start.clone(), Some(options)).await {
        while let Ok(Some(resp)) = stream.message().await {
            if resp.canceled() {
                break;
            }
            let mut view = shared.view();
            if view.epoch != epoch {
                return;
            }
            for ev in resp.events() {
                let Some(kv) = ev.kv() else { continue };
                let put = ev.event_type() == EventType::Put;
                let tail = Keys::tail(kv.key(), &start);
                view.apply(kind, tail, put.then(|| kv.value()), kv.lease());
            }
            view.generation += 1;
            drop(view);
            shared.changed.notify_all();
        }
    }
    let mut view = shared.view();
    if view.epoch == epoch {
        view.live = false;
    }
    drop(view);
    shared.changed.notify_all();
}

impl SlotLedger for EtcdLedger {
    fn admit(&self, host: &str, limits: &[(String, usize)]) -> Admit {
        let _turn = lock(&self.turn);
        // A store that cannot be reached admits nothing: the run stops on its lease.
        self.admit_now(host, limits).unwrap_or(Admit::Full)
    }

    fn release(&self, host: &str, finished: Option<bool>) {
        let _turn = lock(&self.turn);
        let k = self.keys();
        let (mut keys, docs) = {
            let mut held = lock(&self.held);
            let mine = held.remove(host).unwrap_or_default();
            // A batch key goes with the last host of its role held here: the role's batch
            // is over, and any controller may open the next.
            let mut keys = mine.slots;
            keys.extend(
                mine.batches
                    .into_iter()
                    .filter(|b| !held.values().any(|h| h.batches.contains(b))),
            );
            (keys, mine.docs)
        };
        self.store.drop_docs(&docs);
        keys.push(k.claim(&self.run, host));
        let mut also = Vec::new();
        if let Some(ok) = finished {
            let doc = serde_json::json!({ "ok": ok, "controller": super::docs::controller_name() });
            also.push(TxnOp::put(k.done(&self.run, host), json(&doc), None));
            self.shared.view().done.insert(host.to_string(), ok);
        }
        self.free(keys, also);
    }

    fn shared(&self) -> bool {
        true
    }

    fn enter_step(&self, host: &str, step: &str, cap: usize) -> bool {
        self.enter_now(host, step, cap).unwrap_or(false)
    }

    fn leave_step(&self, host: &str, step: &str) {
        let key = lock(&self.in_steps).remove(&(host.to_string(), step.to_string()));
        if let Some(key) = key {
            self.free(vec![key], Vec::new());
        }
    }

    fn wait(&self, max: Duration) {
        self.changed_since(max);
    }
}
