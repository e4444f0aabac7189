//! Fleet-wide slots in etcd: the [`SlotLedger`] of a run several controllers share.
//!
//! A host is taken by creating `claims/RUN/HOST`, and a slot of each of its limits by
//! creating `slots/RUN/LIMIT/N` for a free `N` below the limit — all in one transaction that
//! succeeds only if none of those keys exists, so no limit is exceeded however many
//! controllers ask at once. Claims and slots live under the controller's lease: a controller
//! that dies gives them back when its lease expires. A finished host gets `done/RUN/HOST`
//! (kept), so no controller runs it again.

use super::{json, EtcdStore, Keys};
use crate::slots::{Admit, SlotLedger};
use etcd_client::{Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How stale the view of other controllers' claims may be before it is read again.
const FRESH: Duration = Duration::from_millis(150);

#[derive(Default)]
struct View {
    read_at: Option<Instant>,
    /// Host -> lease of the controller that holds it.
    claims: HashMap<String, i64>,
    /// Host -> finished without failure.
    done: HashMap<String, bool>,
    /// Limit -> slot numbers held.
    slots: HashMap<String, HashSet<usize>>,
}

pub struct EtcdLedger {
    store: Arc<EtcdStore>,
    run: String,
    retry: bool,
    skip: bool,
    view: Mutex<View>,
    /// Host -> the slot keys this controller holds for it.
    held: Mutex<HashMap<String, Vec<String>>>,
}

impl EtcdLedger {
    pub fn new(store: Arc<EtcdStore>, run: &str, retry: bool, skip: bool) -> EtcdLedger {
        EtcdLedger {
            store,
            run: run.to_string(),
            retry,
            skip,
            view: Mutex::default(),
            held: Mutex::default(),
        }
    }

    fn keys(&self) -> &Keys {
        &self.store.keys
    }

    /// Reads claims, done hosts and slots at one revision.
    fn refresh(&self, view: &mut View) -> crate::Result<()> {
        let k = self.keys();
        let starts = [
            k.of_run("claims", &self.run),
            k.of_run("done", &self.run),
            k.of_run("slots", &self.run),
        ];
        let ops: Vec<TxnOp> = starts
            .iter()
            .map(|s| TxnOp::get(s.clone(), Some(GetOptions::new().with_prefix())))
            .collect();
        let txn = Txn::new().and_then(ops);
        let r = self.store.conn.call("read slots", move |mut c| {
            let t = txn.clone();
            async move { c.txn(t).await }
        })?;
        let mut gets = r.op_responses().into_iter().filter_map(|o| match o {
            TxnOpResponse::Get(g) => Some(g),
            _ => None,
        });
        let (claims, done, slots) = (gets.next(), gets.next(), gets.next());
        view.claims = claims
            .iter()
            .flat_map(|g| g.kvs())
            .map(|kv| (Keys::tail(kv.key(), &starts[0]).to_string(), kv.lease()))
            .collect();
        view.done = done
            .iter()
            .flat_map(|g| g.kvs())
            .map(|kv| {
                let v: serde_json::Value = serde_json::from_slice(kv.value()).unwrap_or_default();
                let ok = v["ok"].as_bool().unwrap_or(false);
                (Keys::tail(kv.key(), &starts[1]).to_string(), ok)
            })
            .collect();
        view.slots.clear();
        for kv in slots.iter().flat_map(|g| g.kvs()) {
            let tail = Keys::tail(kv.key(), &starts[2]);
            if let Some((limit, n)) = tail.rsplit_once('/') {
                if let Ok(n) = n.parse() {
                    view.slots.entry(limit.to_string()).or_default().insert(n);
                }
            }
        }
        view.read_at = Some(Instant::now());
        Ok(())
    }

    /// One try at taking `host` with a free slot of each limit: `Ok(None)` when a limit
    /// is full, `Ok(Some(false))` when another controller was faster.
    fn try_take(
        &self,
        view: &View,
        host: &str,
        limits: &[(String, usize)],
    ) -> crate::Result<Option<bool>> {
        let lease = self.store.lease_id()?;
        let k = self.keys();
        let mut slot_keys = Vec::new();
        for (limit, cap) in limits {
            let used = view.slots.get(limit);
            let Some(n) = (0..*cap).find(|n| !used.is_some_and(|u| u.contains(n))) else {
                return Ok(None);
            };
            slot_keys.push(k.slot(&self.run, limit, n));
        }
        let claim = k.claim(&self.run, host);
        let done = k.done(&self.run, host);
        let me = json(
            &serde_json::json!({ "controller": super::docs::controller_name(), "host": host }),
        );
        let absent = |key: &str| Compare::create_revision(key, CompareOp::Equal, 0);
        let mut when = vec![absent(&claim), absent(&done)];
        when.extend(slot_keys.iter().map(|s| absent(s)));
        let leased = || Some(PutOptions::new().with_lease(lease));
        let mut ops = vec![TxnOp::put(claim, me.clone(), leased())];
        ops.extend(
            slot_keys
                .iter()
                .map(|s| TxnOp::put(s.clone(), me.clone(), leased())),
        );
        let taken = self.store.txn(Some(&self.run), when, ops)?;
        if taken {
            self.held
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(host.to_string(), slot_keys);
        }
        Ok(Some(taken))
    }

    /// The host's tasks a controller that died finished (to skip), and those it left
    /// running that nobody said what to do with.
    fn taken_over(&self, host: &str) -> crate::Result<Admit> {
        let hdoc = self.store.get(self.keys().host(&self.run, host))?;
        let started = hdoc
            .and_then(|kv| serde_json::from_slice::<serde_json::Value>(kv.value()).ok())
            .is_some_and(|v| v["state"].as_str() != Some("pending"));
        let mut done = Vec::new();
        let mut unknown = Vec::new();
        if !started {
            return Ok(Admit::Go { done, unknown });
        }
        for t in self.store.task_docs(&self.run)? {
            if t.host.as_deref() != Some(host) {
                continue;
            }
            match t.state.as_str() {
                "ok" | "skipped" => done.push(t.task_id),
                "running" | "retrying" if self.skip => done.push(t.task_id),
                "running" | "retrying" if !self.retry => unknown.push(t.task_id),
                _ => {}
            }
        }
        Ok(Admit::Go { done, unknown })
    }

    fn admit_now(&self, host: &str, limits: &[(String, usize)]) -> crate::Result<Admit> {
        let mut view = self.view.lock().unwrap_or_else(|e| e.into_inner());
        for attempt in 0..5 {
            if attempt > 0 || view.read_at.is_none_or(|t| t.elapsed() > FRESH) {
                self.refresh(&mut view)?;
            }
            if let Some(&ok) = view.done.get(host) {
                return Ok(Admit::Finished { ok });
            }
            if view.claims.contains_key(host) {
                return Ok(Admit::Elsewhere);
            }
            match self.try_take(&view, host, limits)? {
                None => return Ok(Admit::Full),
                Some(true) => {
                    view.claims.insert(host.to_string(), 0);
                    for (limit, _) in limits {
                        // Not knowing which number: read again before the next host.
                        view.slots.entry(limit.clone()).or_default();
                    }
                    view.read_at = None;
                    drop(view);
                    return self.taken_over(host);
                }
                Some(false) => {}
            }
        }
        Ok(Admit::Elsewhere)
    }
}

impl SlotLedger for EtcdLedger {
    fn admit(&self, host: &str, limits: &[(String, usize)]) -> Admit {
        // A store that cannot be reached admits nothing: the run stops on its lease.
        self.admit_now(host, limits).unwrap_or(Admit::Full)
    }

    fn release(&self, host: &str, finished: Option<bool>) {
        let k = self.keys();
        let slots = self
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(host)
            .unwrap_or_default();
        let mut ops = vec![TxnOp::delete(k.claim(&self.run, host), None)];
        ops.extend(slots.into_iter().map(|s| TxnOp::delete(s, None)));
        if let Some(ok) = finished {
            let doc = serde_json::json!({ "ok": ok, "controller": super::docs::controller_name() });
            ops.push(TxnOp::put(k.done(&self.run, host), json(&doc), None));
        }
        // A controller that lost its lock writes nothing: its lease frees the slots.
        let _ = self.store.txn(Some(&self.run), vec![], ops);
        self.view.lock().unwrap_or_else(|e| e.into_inner()).read_at = None;
    }

    fn shared(&self) -> bool {
        true
    }
}
