//! The run store in an etcd cluster (`--state etcd://HOST:PORT[,...]/PREFIX`), shared by
//! every controller and every operator's terminal.
//!
//! The fleet lock is a key under this controller's lease ([`conn::Lease`]), kept alive by
//! a loop of ours. Every write a lock holder makes is *fenced*: one transaction that also
//! compares the lock key's create revision with the one this controller created, so once
//! the lease has expired (and the key with it), or the lock was broken, the write is refused
//! — a controller that lost its lock never writes again. The same holds locally: past the
//! lease's deadline nothing is even sent.
//!
//! Key layout: [`keys`] (and docs/etcd.md).

mod conn;
mod docs;
pub mod harness;
pub mod keys;
mod ledger;
mod watch;

use crate::clock::At;
use crate::error::{Error, Result};
use crate::exec::Event;
use crate::journal::{self, Action, CommandRecord, LockInfo, RunRecord, TaskRow};
use crate::store::{EtcdAccess, RunState, RunStore, StoreError, StoreResult, TaskState};
use conn::{store_error, Conn, Lease};
use docs::{HostDoc, LockDoc, RunDoc, TaskDoc};
use etcd_client::{Compare, CompareOp, GetOptions, KeyValue, PutOptions, Txn, TxnOp};
use keys::Keys;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

/// etcd refuses a transaction of more than 128 operations (`--max-txn-ops`).
const TXN_OPS: usize = 100;

pub struct EtcdStore {
    conn: Conn,
    keys: Keys,
    /// This controller's lease: granted when it first takes a lock.
    lease: Mutex<Option<Lease>>,
    /// Run -> (lock key, its create revision): the fence of that run's writes.
    fences: Mutex<HashMap<String, (String, i64)>>,
    /// Run -> its approvals and abort request, kept by watches.
    requests: Mutex<HashMap<String, watch::Shared>>,
    /// Documents of the hosts this controller holds (the host's and its tasks'), as last
    /// read or written: while it holds a host it is their only writer, so a transition
    /// is written without reading them first.
    held_docs: Mutex<HashMap<String, Vec<u8>>>,
}

/// The members of the cluster at `endpoints`, as (cluster id, member names): tests check
/// they talk to the cluster they started.
pub fn members(endpoint: &str) -> Result<(u64, Vec<String>)> {
    let url = format!("{}{endpoint}/members", crate::store::ETCD_SCHEME);
    let quick = EtcdAccess {
        ttl: Some(std::time::Duration::from_secs(2)),
        ..EtcdAccess::default()
    };
    let conn = Conn::connect(&url, &[endpoint.to_string()], &quick)?;
    let r = conn.call("member list", |mut c| async move { c.member_list().await })?;
    let id = r.header().map(|h| h.cluster_id()).unwrap_or_default();
    Ok((
        id,
        r.members().iter().map(|m| m.name().to_string()).collect(),
    ))
}

pub(crate) fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

impl EtcdStore {
    pub fn open(url: &str, access: &EtcdAccess) -> Result<EtcdStore> {
        let (endpoints, prefix) = keys::parse_url(url)?;
        Ok(EtcdStore {
            conn: Conn::connect(url, &endpoints, access)?,
            keys: Keys::new(&prefix),
            lease: Mutex::default(),
            fences: Mutex::default(),
            requests: Mutex::default(),
            held_docs: Mutex::default(),
        })
    }

    fn error(&self, what: impl std::fmt::Display) -> Error {
        store_error(&self.conn.url, what)
    }

    fn lost_error(&self, run: &str) -> Error {
        self.error(format!(
            "the fleet lock of run {run} was lost (its lease expired, or the lock was broken): this controller writes nothing more"
        ))
    }

    /// Every key-value under `prefix`.
    fn range(&self, prefix: String) -> Result<Vec<KeyValue>> {
        let mut r = self.conn.call("read", move |mut c| {
            let p = prefix.clone();
            async move { c.get(p, Some(GetOptions::new().with_prefix())).await }
        })?;
        Ok(r.take_kvs())
    }

    pub(crate) fn get(&self, key: String) -> Result<Option<KeyValue>> {
        let mut r = self.conn.call("read", move |mut c| {
            let k = key.clone();
            async move { c.get(k, None).await }
        })?;
        Ok(r.take_kvs().into_iter().next())
    }

    /// Two keys (the second optional) read at one revision, in one request.
    fn get_two(&self, a: String, b: Option<String>) -> Result<[Option<KeyValue>; 2]> {
        let mut ops = vec![TxnOp::get(a, None)];
        ops.extend(b.map(|b| TxnOp::get(b, None)));
        let txn = Txn::new().and_then(ops);
        let r = self.conn.call("read", move |mut c| {
            let t = txn.clone();
            async move { c.txn(t).await }
        })?;
        let mut found = r.op_responses().into_iter().map(|o| match o {
            etcd_client::TxnOpResponse::Get(mut g) => g.take_kvs().into_iter().next(),
            _ => None,
        });
        Ok([found.next().flatten(), found.next().flatten()])
    }

    fn parse<T: serde::de::DeserializeOwned>(&self, kv: &KeyValue) -> Result<T> {
        self.parse_value(&String::from_utf8_lossy(kv.key()), kv.value())
    }

    fn parse_value<T: serde::de::DeserializeOwned>(&self, key: &str, value: &[u8]) -> Result<T> {
        serde_json::from_slice(value)
            .map_err(|e| self.error(format!("key {key} is not what fleetbook wrote: {e}")))
    }

    /// Keeps the documents of a host this controller now holds.
    pub(crate) fn hold_docs(&self, docs: Vec<(String, Vec<u8>)>) {
        self.held_docs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(docs);
    }

    /// Forgets the documents of a host this controller no longer holds: another may write
    /// them now.
    pub(crate) fn drop_docs(&self, keys: &[String]) {
        let mut held = self.held_docs.lock().unwrap_or_else(|e| e.into_inner());
        for k in keys {
            held.remove(k);
        }
    }

    /// The values of `a` and `b`: held ones from memory, the others read (at one revision,
    /// in one request).
    fn docs_of(&self, a: String, b: Option<String>) -> Result<[Option<Vec<u8>>; 2]> {
        let held = |k: &String| {
            self.held_docs
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(k)
                .cloned()
        };
        if let Some(va) = held(&a) {
            match b.as_ref().map(held) {
                None => return Ok([Some(va), None]),
                Some(Some(vb)) => return Ok([Some(va), Some(vb)]),
                Some(None) => {}
            }
        }
        let [ka, kb] = self.get_two(a, b)?;
        Ok([ka, kb].map(|kv| kv.map(|kv| kv.value().to_vec())))
    }

    /// Writes `puts` (fenced), keeping the new values of held documents.
    fn put_docs(&self, run: &str, puts: Vec<(String, Vec<u8>)>) -> Result<()> {
        self.put_all(run, puts.clone())?;
        let mut held = self.held_docs.lock().unwrap_or_else(|e| e.into_inner());
        for (k, v) in puts {
            if let Some(old) = held.get_mut(&k) {
                *old = v;
            }
        }
        Ok(())
    }

    /// One transaction, with `run`'s fence when this controller holds one; false when a
    /// comparison failed.
    pub(crate) fn txn(
        &self,
        run: Option<&str>,
        when: Vec<Compare>,
        ops: Vec<TxnOp>,
    ) -> Result<bool> {
        Ok(self.txn_read(run, when, ops)?.is_some())
    }

    /// [`txn`](Self::txn), with what its operations answered (the reads among them) when
    /// it succeeded.
    pub(crate) fn txn_read(
        &self,
        run: Option<&str>,
        when: Vec<Compare>,
        ops: Vec<TxnOp>,
    ) -> Result<Option<Vec<etcd_client::TxnOpResponse>>> {
        let mut when = when;
        if let Some(run) = run {
            if let Some((key, rev)) = self.fence_key(run) {
                if self.lease_lost() {
                    return Err(self.lost_error(run));
                }
                when.push(Compare::create_revision(key, CompareOp::Equal, rev));
            }
        }
        let fenced = run.is_some_and(|r| self.fenced(r));
        let txn = Txn::new().when(when).and_then(ops);
        let r = self.conn.call("write", move |mut c| {
            let t = txn.clone();
            async move { c.txn(t).await }
        })?;
        if !r.succeeded() && fenced {
            // Was it the fence? Then nothing more is written for this run.
            let key = self.fence_key(run.unwrap_or_default());
            let held = key
                .map(|(k, rev)| {
                    self.get(k)
                        .map(|kv| kv.is_some_and(|kv| kv.create_revision() == rev))
                })
                .transpose()?
                .unwrap_or(true);
            if !held {
                return Err(self.lost_error(run.unwrap_or_default()));
            }
        }
        Ok(r.succeeded().then(|| r.op_responses()))
    }

    fn fence_key(&self, run: &str) -> Option<(String, i64)> {
        self.fences
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(run)
            .cloned()
    }

    fn fenced(&self, run: &str) -> bool {
        self.fence_key(run).is_some()
    }

    /// Puts, in transactions small enough for etcd, each fenced.
    fn put_all(&self, run: &str, puts: Vec<(String, Vec<u8>)>) -> Result<()> {
        let mut ops: Vec<TxnOp> = puts
            .into_iter()
            .map(|(k, v)| TxnOp::put(k, v, None))
            .collect();
        while !ops.is_empty() {
            let rest = ops.split_off(ops.len().min(TXN_OPS));
            if !self.txn(Some(run), vec![], ops)? {
                return Err(self.lost_error(run));
            }
            ops = rest;
        }
        Ok(())
    }

    pub(crate) fn lease_id(&self) -> Result<i64> {
        let mut lease = self.lease.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(l) = lease.as_ref().filter(|l| !l.lost()) {
            return Ok(l.id);
        }
        let l = self.conn.lease()?;
        let id = l.id;
        *lease = Some(l);
        Ok(id)
    }

    /// Runs with a live controller: a lease-held key under `controllers/RUN/` whose
    /// process, if it ran on this machine, still exists (a lease outlives its process by
    /// up to a TTL).
    fn live_runs(&self) -> Result<HashSet<String>> {
        let start = self.keys.all("controllers");
        let mut live = HashSet::new();
        for kv in self.range(start.clone())? {
            let doc: LockDoc = self.parse(&kv)?;
            if doc.controller == journal::controller() && !journal::pid_alive(doc.pid) {
                continue;
            }
            if let Some(run) = Keys::tail(kv.key(), &start).split('/').next() {
                live.insert(run.to_string());
            }
        }
        Ok(live)
    }

    fn run_record(&self, kv: &KeyValue, live: &HashSet<String>) -> Result<RunRecord> {
        let doc: RunDoc = self.parse(kv)?;
        let mut r = doc.record();
        if r.state == RunState::Running {
            // Any live controller keeps it running (it may have joined on another
            // machine); a record made without one (no lease) has its own process.
            let own = r.controller == journal::controller() && journal::pid_alive(r.pid);
            if !own && !live.contains(&r.id) {
                r.state = RunState::Crashed;
            }
        }
        Ok(r)
    }

    fn run_doc(&self, run: &str) -> Result<(RunDoc, i64)> {
        let kv = self.get(self.keys.run(run))?.ok_or_else(|| {
            Error::input_with_help(
                format!("no run {run} in {}", self.conn.url),
                "`fleetbook runs` lists them",
            )
        })?;
        Ok((self.parse(&kv)?, kv.mod_revision()))
    }

    /// Changes the run's document (read, change, write if unchanged meanwhile).
    fn update_run(&self, run: &str, change: impl Fn(&mut RunDoc)) -> Result<()> {
        loop {
            let (mut doc, rev) = self.run_doc(run)?;
            change(&mut doc);
            let key = self.keys.run(run);
            let same = Compare::mod_revision(key.clone(), CompareOp::Equal, rev);
            if self.txn(
                Some(run),
                vec![same],
                vec![TxnOp::put(key, json(&doc), None)],
            )? {
                return Ok(());
            }
        }
    }

    pub(crate) fn task_docs(&self, run: &str) -> Result<Vec<TaskDoc>> {
        let mut docs: Vec<TaskDoc> = self
            .range(self.keys.of_run("tasks", run))?
            .iter()
            .map(|kv| self.parse(kv))
            .collect::<Result<_>>()?;
        docs.sort_by_key(|d| d.seq);
        Ok(docs)
    }

    /// Barriers run nothing and report no transition: at the end of a run one is passed
    /// when every other task of its role is (as the SQLite journal does).
    fn pass_barriers(&self, run: &str) -> Result<()> {
        let docs = self.task_docs(run)?;
        let barrier = |d: &TaskDoc| matches!(d.kind.as_str(), "role_done" | "canary_done");
        let open_roles: HashSet<Option<&str>> = docs
            .iter()
            .filter(|d| !barrier(d) && !d.state.is_done())
            .map(|d| d.role.as_deref())
            .collect();
        let now = At::now();
        let puts = docs
            .iter()
            .filter(|d| barrier(d) && d.state == TaskState::Pending)
            .filter(|d| !open_roles.contains(&d.role.as_deref()))
            .map(|d| {
                let mut d = d.clone();
                d.state = TaskState::Ok;
                d.ended_at = Some(now);
                (self.keys.task(run, &d.task_id), json(&d))
            })
            .collect();
        self.put_all(run, puts)
    }

    /// The run's approvals and abort request, as its watches keep them.
    fn requests(&self, run: &str) -> Result<watch::Shared> {
        let mut all = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = all.get(run) {
            if s.lock().unwrap_or_else(|e| e.into_inner()).live {
                return Ok(s.clone());
            }
        }
        let s = watch::start(&self.conn, &self.keys, run)?;
        all.insert(run.to_string(), s.clone());
        Ok(s)
    }

    /// What this controller wrote itself, known at once (its watch may lag a moment).
    fn seen(&self, run: &str, f: impl FnOnce(&mut watch::Requests)) {
        if let Some(s) = self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(run)
        {
            f(&mut s.lock().unwrap_or_else(|e| e.into_inner()));
        }
    }

    fn lock_doc(&self, run: &str, lease: i64) -> LockDoc {
        LockDoc {
            run_id: run.to_string(),
            pid: std::process::id() as i64,
            user: journal::user(),
            controller: journal::controller(),
            since: At::now(),
            lease,
        }
    }

    /// Takes `key` for `run` if it is free (or `replace` is its current (mod, create)
    /// revision), with this controller's key under the run; the new fence on success (a
    /// replaced key keeps its create revision).
    fn take_lock(&self, key: &str, run: &str, replace: Option<(i64, i64)>) -> Result<Option<i64>> {
        let lease = self.lease_id()?;
        let doc = json(&self.lock_doc(run, lease));
        let when = match replace {
            None => Compare::create_revision(key, CompareOp::Equal, 0),
            Some((rev, _)) => Compare::mod_revision(key, CompareOp::Equal, rev),
        };
        let leased = || Some(PutOptions::new().with_lease(lease));
        let ops = vec![
            TxnOp::put(key, doc.clone(), leased()),
            TxnOp::put(self.keys.controller(run, lease), doc, leased()),
        ];
        let txn = Txn::new().when(vec![when]).and_then(ops);
        let r = self.conn.call("lock", move |mut c| {
            let t = txn.clone();
            async move { c.txn(t).await }
        })?;
        let created = r.header().map(|h| h.revision()).unwrap_or_default();
        Ok(r.succeeded()
            .then(|| replace.map_or(created, |(_, create)| create)))
    }
}

impl EtcdStore {
    /// This controller's lease, if it has one yet.
    fn own_lease(&self) -> Option<i64> {
        self.lease
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|l| l.id)
    }

    /// Another controller at work on `run` than the one with lease `not`, as the lock
    /// should name it.
    fn successor(&self, run: &str, not: i64) -> Result<Option<LockDoc>> {
        for kv in self.range(self.keys.of_run("controllers", run))? {
            let doc: LockDoc = self.parse(&kv)?;
            if kv.lease() != not && kv.lease() != 0 {
                return Ok(Some(LockDoc {
                    lease: kv.lease(),
                    since: At::now(),
                    ..doc
                }));
            }
        }
        Ok(None)
    }

    /// This controller ends its part of `run`: its key goes (fenced). True when no other
    /// controller is left on the run.
    fn leave(&self, run: &str) -> Result<bool> {
        if let Some(lease) = self.own_lease() {
            let mine = self.keys.controller(run, lease);
            self.txn(Some(run), vec![], vec![TxnOp::delete(mine.clone(), None)])?;
            let mut fences = self.fences.lock().unwrap_or_else(|e| e.into_inner());
            if fences.get(run).is_some_and(|(k, _)| *k == mine) {
                // A joined controller's fence was that key: its last writes go unfenced.
                fences.remove(run);
            }
        }
        let others = self.range(self.keys.of_run("controllers", run))?;
        Ok(others.is_empty())
    }
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        if let Some(l) = self.lease.lock().unwrap_or_else(|e| e.into_inner()).take() {
            self.conn.revoke(&l);
        }
    }
}

impl RunStore for EtcdStore {
    fn location(&self) -> String {
        self.conn.url.clone()
    }

    fn create_run(
        &self,
        run: &RunRecord,
        hosts: &[(String, Vec<String>)],
        tasks: &[TaskRow],
    ) -> StoreResult<()> {
        let mut puts: Vec<(String, Vec<u8>)> = hosts
            .iter()
            .map(|(h, roles)| (self.keys.host(&run.id, h), json(&HostDoc::new(roles))))
            .collect();
        puts.extend(tasks.iter().enumerate().map(|(i, t)| {
            (
                self.keys.task(&run.id, &t.task_id),
                json(&TaskDoc::new(i as u64, t)),
            )
        }));
        self.put_all(&run.id, puts)?;
        // The run itself last: a run that is listed is whole.
        let key = self.keys.run(&run.id);
        let absent = Compare::create_revision(key.clone(), CompareOp::Equal, 0);
        let put = TxnOp::put(key, json(&RunDoc::from(run)), None);
        if !self.txn(Some(&run.id), vec![absent], vec![put])? {
            return Err(self.error(format!("run {} exists already", run.id)).into());
        }
        Ok(())
    }

    fn run(&self, id: Option<&str>) -> StoreResult<RunRecord> {
        match id {
            Some(id) => {
                let kv = self.get(self.keys.run(id))?.ok_or_else(|| {
                    Error::input_with_help(
                        format!("no run {id} in {}", self.conn.url),
                        "`fleetbook runs` lists them",
                    )
                })?;
                Ok(self.run_record(&kv, &self.live_runs()?)?)
            }
            None => Ok(self.runs()?.into_iter().next().ok_or_else(|| {
                Error::input(format!("no run recorded in {} yet", self.conn.url))
            })?),
        }
    }

    fn runs(&self) -> StoreResult<Vec<RunRecord>> {
        let live = self.live_runs()?;
        let mut runs: Vec<RunRecord> = self
            .range(self.keys.all("runs"))?
            .iter()
            .map(|kv| self.run_record(kv, &live))
            .collect::<Result<_>>()?;
        runs.sort_by(|a, b| {
            b.started_at
                .cmp(&a.started_at)
                .then_with(|| b.id.cmp(&a.id))
        });
        Ok(runs)
    }

    fn tasks(&self, run: &str) -> StoreResult<Vec<TaskRow>> {
        Ok(self.task_docs(run)?.into_iter().map(TaskDoc::row).collect())
    }

    fn hosts(&self, run: &str) -> StoreResult<Vec<(String, Vec<String>)>> {
        let start = self.keys.of_run("hosts", run);
        let mut hosts = Vec::new();
        for kv in self.range(start.clone())? {
            let doc: HostDoc = self.parse(&kv)?;
            hosts.push((Keys::tail(kv.key(), &start).to_string(), doc.roles));
        }
        Ok(hosts)
    }

    fn add_missing_tasks(&self, run: &str, tasks: &[TaskRow]) -> StoreResult<()> {
        let have = self.task_docs(run)?;
        let next = have.iter().map(|d| d.seq + 1).max().unwrap_or(0);
        let known: HashSet<&str> = have.iter().map(|d| d.task_id.as_str()).collect();
        let puts = tasks
            .iter()
            .filter(|t| !known.contains(t.task_id.as_str()))
            .enumerate()
            .map(|(i, t)| {
                (
                    self.keys.task(run, &t.task_id),
                    json(&TaskDoc::new(next + i as u64, t)),
                )
            })
            .collect();
        Ok(self.put_all(run, puts)?)
    }

    fn record(&self, run: &str, e: &Event, started: At) -> StoreResult<()> {
        let key = self.keys.task(run, &e.task);
        let hkey = e.host.as_ref().map(|h| self.keys.host(run, h));
        // The task and its host in one round trip, or none for a host held here.
        let [task, host] = self.docs_of(key.clone(), hkey.clone())?;
        let Some(value) = task else {
            // As the journal: a transition of a task the run does not have changes nothing.
            return Ok(());
        };
        let mut doc: TaskDoc = self.parse_value(&key, &value)?;
        doc.apply(e, started.after(e.at));
        let mut puts = vec![(key, json(&doc))];
        if let (Some(hkey), Some(value)) = (hkey, host) {
            let mut host: HostDoc = self.parse_value(&hkey, &value)?;
            host.apply(e, started.after(e.at));
            puts.push((hkey, json(&host)));
        }
        Ok(self.put_docs(run, puts)?)
    }

    fn record_fact(&self, run: &str, host: &str, name: &str, value: &str) -> StoreResult<()> {
        let doc = serde_json::json!({ "value": value });
        let mut puts = vec![(self.keys.fact(run, host, name), json(&doc))];
        if name == docs::VERSION_FACT {
            let hkey = self.keys.host(run, host);
            if let [Some(v), _] = self.docs_of(hkey.clone(), None)? {
                let mut h: HostDoc = self.parse_value(&hkey, &v)?;
                h.version = Some(value.to_string());
                puts.push((hkey, json(&h)));
            }
        }
        Ok(self.put_docs(run, puts)?)
    }

    fn facts(&self, run: &str) -> StoreResult<Vec<(String, String, String)>> {
        let start = self.keys.of_run("facts", run);
        let mut facts = Vec::new();
        for kv in self.range(start.clone())? {
            let doc: serde_json::Value = self.parse(&kv)?;
            let tail = Keys::tail(kv.key(), &start);
            if let Some((host, name)) = tail.split_once('/') {
                let value = doc["value"].as_str().unwrap_or_default().to_string();
                facts.push((host.to_string(), name.to_string(), value));
            }
        }
        facts.sort();
        Ok(facts)
    }

    fn set_state(
        &self,
        run: &str,
        state: RunState,
        reason: Option<&str>,
        ended: bool,
    ) -> StoreResult<()> {
        let now = At::now();
        if ended && !self.leave(run)? {
            // Other controllers still work on the run: the last one to end says how.
            return Ok(());
        }
        self.update_run(run, |d| {
            d.state = state.as_str().to_string();
            d.reason = reason.map(str::to_string);
            d.ended_at = ended.then_some(now);
            if !ended {
                d.pid = std::process::id() as i64;
                d.controller = journal::controller();
            }
        })?;
        // A new attempt of the run starts with no request pending, and tries its failed
        // hosts again (hosts done are done by their tasks).
        let mut dels = vec![TxnOp::delete(self.keys.abort(run), None)];
        if !ended {
            let done = self.keys.of_run("done", run);
            dels.push(TxnOp::delete(
                done,
                Some(etcd_client::DeleteOptions::new().with_prefix()),
            ));
        }
        self.txn(Some(run), vec![], dels)?;
        self.seen(run, |r| r.abort = (false, false));
        if ended {
            self.pass_barriers(run)?;
        }
        Ok(())
    }

    fn replan(&self, run: &RunRecord) -> StoreResult<()> {
        let new = RunDoc::from(run);
        Ok(self.update_run(&run.id, |d| d.replanned(&new))?)
    }

    fn request_abort(&self, run: &str, now: bool) -> StoreResult<()> {
        let key = self.keys.abort(run);
        let (_, was_now) = self.abort_requested(run)?;
        let doc = serde_json::json!({
            "stop": true,
            "now": now || was_now,
            "requested_by": journal::user(),
            "at": At::now(),
        });
        self.txn(None, vec![], vec![TxnOp::put(key, json(&doc), None)])?;
        self.seen(run, |r| r.abort = (true, now || was_now));
        Ok(())
    }

    fn abort_requested(&self, run: &str) -> StoreResult<(bool, bool)> {
        let r = self.requests(run)?;
        let abort = r.lock().unwrap_or_else(|e| e.into_inner()).abort;
        Ok(abort)
    }

    fn save_plan(&self, run: &str, plan_json: &str) -> StoreResult<()> {
        Ok(self.put_all(
            run,
            vec![(self.keys.plan(run), plan_json.as_bytes().to_vec())],
        )?)
    }

    fn plan(&self, run: &str) -> StoreResult<Option<String>> {
        Ok(self
            .get(self.keys.plan(run))?
            .map(|kv| String::from_utf8_lossy(kv.value()).into_owned()))
    }

    fn record_command(&self, run: &str, c: &CommandRecord) -> StoreResult<()> {
        Ok(self.put_all(run, vec![(self.keys.command(run), json(c))])?)
    }

    fn commands(&self, run: &str) -> StoreResult<Vec<CommandRecord>> {
        self.range(self.keys.of_run("commands", run))?
            .iter()
            .map(|kv| self.parse(kv).map_err(Into::into))
            .collect()
    }

    fn actions(&self, run: &str) -> StoreResult<Vec<Action>> {
        fn epoch() -> At {
            At::EPOCH
        }
        #[derive(serde::Deserialize)]
        struct Approval {
            approved_by: String,
            at: At,
        }
        #[derive(serde::Deserialize)]
        struct Abort {
            stop: bool,
            now: bool,
            #[serde(default)]
            requested_by: String,
            // Written without a time by older versions: the epoch, as then.
            #[serde(default = "epoch")]
            at: At,
        }
        let prefix = self.keys.of_run("approvals", run);
        let mut all = Vec::new();
        for kv in self.range(prefix.clone())? {
            let a: Approval = self.parse(&kv)?;
            let gate = String::from_utf8_lossy(kv.key());
            all.push(Action::Approve {
                gate: gate.strip_prefix(&prefix).unwrap_or(&gate).to_string(),
                by: a.approved_by,
                at: a.at,
            });
        }
        if let Some(kv) = self.get(self.keys.abort(run))? {
            let a: Abort = self.parse(&kv)?;
            if a.stop {
                all.push(Action::Abort {
                    now: a.now,
                    by: a.requested_by,
                    at: a.at,
                });
            }
        }
        all.sort_by_key(Action::at);
        Ok(all)
    }

    fn approve(&self, run: &str, gate: &str) -> StoreResult<()> {
        let doc = serde_json::json!({ "approved_by": journal::user(), "at": At::now() });
        let put = TxnOp::put(self.keys.approval(run, gate), json(&doc), None);
        self.txn(None, vec![], vec![put])?;
        self.seen(run, |r| {
            r.approvals.insert(gate.to_string());
        });
        Ok(())
    }

    fn approved(&self, run: &str, gate: &str) -> StoreResult<bool> {
        let r = self.requests(run)?;
        let approved = r
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .approvals
            .contains(gate);
        Ok(approved)
    }

    fn lock(&self, fleet: &str, run: &str) -> StoreResult<()> {
        let key = self.keys.lock(fleet);
        let mut taken = self.take_lock(&key, run, None)?;
        if taken.is_none() {
            if let Some(kv) = self.get(key.clone())? {
                let held: LockDoc = self.parse(&kv)?;
                let info = held.info(fleet);
                // A run may take over its own lock when its process on this machine is gone
                // (resume after a crash, before the lease expired).
                if held.run_id == run && info.is_stale() {
                    let revs = (kv.mod_revision(), kv.create_revision());
                    taken = self.take_lock(&key, run, Some(revs))?;
                } else {
                    return Err(StoreError::from(Error::Locked {
                        message: format!("the fleet is locked by {}", info.describe()),
                        help: format!(
                            "one operator at a time: wait for it, or `fleetbook abort` it; a controller that died frees the lock when its lease expires (within {}s)",
                            self.conn.ttl.as_secs()
                        ),
                    }));
                }
            }
        }
        match taken {
            Some(rev) => {
                self.fences
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(run.to_string(), (key, rev));
                Ok(())
            }
            // Freed or taken meanwhile: ask again.
            None => self.lock(fleet, run),
        }
    }

    fn unlock(&self, fleet: &str, run: &str) -> StoreResult<()> {
        let key = self.keys.lock(fleet);
        let fence = self
            .fences
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(run);
        let mine = self.own_lease();
        if let Some(kv) = self.get(key.clone())? {
            let held: LockDoc = self.parse(&kv)?;
            // Only the holder releases: a joined controller that never took the lock over
            // leaves it to the one that holds it.
            if held.run_id == run && mine.is_none_or(|m| m == held.lease) {
                let same = Compare::mod_revision(key.clone(), CompareOp::Equal, kv.mod_revision());
                let mut ops = vec![TxnOp::delete(self.keys.controller(run, held.lease), None)];
                // A controller still at work on the run gets the lock, under its own lease
                // (etcd lets a key be put under any live lease): the fleet stays locked
                // until the run's last controller ends.
                ops.push(match self.successor(run, held.lease)? {
                    Some(next) => TxnOp::put(
                        key,
                        json(&next),
                        Some(PutOptions::new().with_lease(next.lease)),
                    ),
                    None => TxnOp::delete(key, None),
                });
                self.txn(None, vec![same], ops)?;
            }
        }
        drop(fence);
        Ok(())
    }

    fn keep_lock(&self, fleet: &str, run: &str) -> StoreResult<bool> {
        let key = self.keys.lock(fleet);
        for _ in 0..3 {
            if let Some(kv) = self.get(key.clone())? {
                return Ok(self.parse::<LockDoc>(&kv)?.run_id == run);
            }
            // Its holder ended or died (its lease expired): this controller, still at work
            // on the run, holds the fleet from now on. Fenced like every write: a controller
            // whose own lease is gone takes nothing.
            let lease = self.lease_id()?;
            let free = Compare::create_revision(key.clone(), CompareOp::Equal, 0);
            let put = TxnOp::put(
                key.clone(),
                json(&self.lock_doc(run, lease)),
                Some(PutOptions::new().with_lease(lease)),
            );
            if self.txn(Some(run), vec![free], vec![put])? {
                tracing::info!(fleet, run, "took the fleet lock over");
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn locks(&self) -> StoreResult<Vec<LockInfo>> {
        let start = self.keys.all("locks");
        self.range(start.clone())?
            .iter()
            .map(|kv| {
                Ok(self
                    .parse::<LockDoc>(kv)?
                    .info(Keys::tail(kv.key(), &start)))
            })
            .collect()
    }

    fn break_lock(&self, fleet: &str) -> StoreResult<()> {
        self.txn(
            None,
            vec![],
            vec![TxnOp::delete(self.keys.lock(fleet), None)],
        )?;
        Ok(())
    }

    fn join(&self, run: &str) -> StoreResult<()> {
        let lease = self.lease_id()?;
        let key = self.keys.controller(run, lease);
        let exists = Compare::create_revision(self.keys.run(run), CompareOp::Greater, 0);
        let put = TxnOp::put(
            key.clone(),
            json(&self.lock_doc(run, lease)),
            Some(PutOptions::new().with_lease(lease)),
        );
        let txn = Txn::new().when(vec![exists]).and_then(vec![put]);
        let r = self.conn.call("join", move |mut c| {
            let t = txn.clone();
            async move { c.txn(t).await }
        })?;
        if !r.succeeded() {
            return Err(Error::input(format!("no run {run} in {}", self.conn.url)).into());
        }
        let rev = r.header().map(|h| h.revision()).unwrap_or_default();
        self.fences
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(run.to_string(), (key, rev));
        Ok(())
    }

    fn ledger(
        self: std::sync::Arc<Self>,
        run: &str,
        retry: bool,
        skip: bool,
    ) -> std::sync::Arc<dyn crate::slots::SlotLedger> {
        std::sync::Arc::new(ledger::EtcdLedger::new(self, run, retry, skip))
    }

    fn holders(&self, run: &str) -> StoreResult<Vec<(String, String)>> {
        let start = self.keys.of_run("claims", run);
        let mut out = Vec::new();
        for kv in self.range(start.clone())? {
            let v: serde_json::Value = self.parse(&kv)?;
            let who = v["controller"].as_str().unwrap_or_default().to_string();
            out.push((Keys::tail(kv.key(), &start).to_string(), who));
        }
        Ok(out)
    }

    fn lease_lost(&self) -> bool {
        self.lease
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|l| l.lost())
    }
}

#[cfg(test)]
mod tests {
    use super::harness::Etcd;
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// Each check gets a prefix of its own in the one cluster.
    fn conforms(etcd: &Etcd) {
        let n = AtomicUsize::new(0);
        crate::store::conformance::check_all(&|| {
            let url = etcd.url(&format!("conformance/{}", n.fetch_add(1, Ordering::SeqCst)));
            let s: Arc<dyn RunStore> =
                Arc::new(EtcdStore::open(&url, &EtcdAccess::default()).unwrap());
            s
        });
    }

    #[test]
    fn a_single_etcd_node_conforms_to_the_run_store() {
        let etcd = Etcd::single();
        assert_ne!(etcd.cluster_id, 0);
        conforms(&etcd);
    }

    /// A document fleetbook did not write is a corrupt store: fatal, naming its key.
    #[test]
    fn a_garbled_document_is_fatal() {
        let etcd = Etcd::single();
        let s = EtcdStore::open(&etcd.url("garbled"), &EtcdAccess::default()).unwrap();
        let key = s.keys.run("r1");
        s.conn
            .call("put", move |mut c| {
                let k = key.clone();
                async move { c.put(k, "not json", None).await }
            })
            .unwrap();
        crate::store::conformance::check_unusable(Ok(Arc::new(s)), "is not what fleetbook wrote");
    }

    /// Another controller's store hears of an approval and an abort request through its
    /// watches, without asking again.
    #[test]
    fn approvals_and_aborts_reach_other_controllers_through_watches() {
        let etcd = Etcd::single();
        let open = || EtcdStore::open(&etcd.url("watches"), &EtcdAccess::default()).unwrap();
        let (operator, controller) = (open(), open());
        assert!(!controller.approved("r1", "go").unwrap());
        assert_eq!(controller.abort_requested("r1").unwrap(), (false, false));
        operator.approve("r1", "go").unwrap();
        operator.request_abort("r1", true).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !(controller.approved("r1", "go").unwrap()
            && controller.abort_requested("r1").unwrap() == (true, true))
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the watches never told"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // Read from memory: the cluster paused, the answers stay.
        etcd.pause(0);
        assert!(controller.approved("r1", "go").unwrap());
        etcd.resume(0);
    }

    #[test]
    fn a_three_member_etcd_cluster_conforms_to_the_run_store() {
        let etcd = Etcd::cluster(3);
        conforms(&etcd);
    }
}
