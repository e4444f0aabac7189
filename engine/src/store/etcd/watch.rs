//! Approvals and abort requests reach every controller of a run through etcd watches: the
//! first question about a run reads its `aborts/RUN` and `approvals/RUN/` keys once, then
//! watches them from that revision, so the controller's frequent questions are answered
//! from memory. A broken watch (its member stopped) makes the next question read again.

use super::conn::Conn;
use super::keys::Keys;
use etcd_client::{EventType, GetOptions, KeyValue, Txn, TxnOp, TxnOpResponse, WatchOptions};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub struct Requests {
    /// (stop, now)
    pub abort: (bool, bool),
    pub approvals: HashSet<String>,
    /// False once a watch broke: read again.
    pub live: bool,
}

pub type Shared = Arc<Mutex<Requests>>;

fn abort_of(kv: &KeyValue) -> (bool, bool) {
    let v: serde_json::Value = serde_json::from_slice(kv.value()).unwrap_or_default();
    (
        v["stop"].as_bool().unwrap_or(false),
        v["now"].as_bool().unwrap_or(false),
    )
}

/// Reads the run's requests and starts watching them.
pub fn start(conn: &Conn, keys: &Keys, run: &str) -> crate::Result<Shared> {
    let (abort_key, approvals) = (keys.abort(run), keys.of_run("approvals", run));
    let ops = vec![
        TxnOp::get(abort_key.clone(), None),
        TxnOp::get(approvals.clone(), Some(GetOptions::new().with_prefix())),
    ];
    let txn = Txn::new().and_then(ops);
    let r = conn.call("read requests", move |mut c| {
        let t = txn.clone();
        async move { c.txn(t).await }
    })?;
    let rev = r.header().map(|h| h.revision()).unwrap_or_default();
    let mut req = Requests {
        live: true,
        ..Requests::default()
    };
    for (i, op) in r.op_responses().into_iter().enumerate() {
        let TxnOpResponse::Get(g) = op else { continue };
        for kv in g.kvs() {
            if i == 0 {
                req.abort = abort_of(kv);
            } else {
                req.approvals
                    .insert(Keys::tail(kv.key(), &approvals).to_string());
            }
        }
    }
    let shared: Shared = Arc::new(Mutex::new(req));
    let from = WatchOptions::new().with_start_revision(rev + 1);
    conn.spawn(follow(
        conn.client.clone(),
        abort_key,
        from.clone(),
        None,
        shared.clone(),
    ));
    conn.spawn(follow(
        conn.client.clone(),
        approvals.clone(),
        from.with_prefix(),
        Some(approvals),
        shared.clone(),
    ));
    Ok(shared)
}

/// Applies the watched events to `shared` until the watch breaks. `approvals`: the prefix
/// of approval keys (`None`: the abort key).
async fn follow(
    mut client: etcd_client::Client,
    key: String,
    options: WatchOptions,
    approvals: Option<String>,
    shared: Shared,
) {
    let broke = |s: &Shared| s.lock().unwrap_or_else(|e| e.into_inner()).live = false;
    let Ok(mut stream) = client.watch(key, Some(options)).await else {
        return broke(&shared);
    };
    while let Ok(Some(resp)) = stream.message().await {
        if resp.canceled() {
            break;
        }
        let mut s = shared.lock().unwrap_or_else(|e| e.into_inner());
        for ev in resp.events() {
            let (Some(kv), put) = (ev.kv(), ev.event_type() == EventType::Put) else {
                continue;
            };
            match &approvals {
                None if put => s.abort = abort_of(kv),
                None => s.abort = (false, false),
                Some(prefix) => {
                    let gate = Keys::tail(kv.key(), prefix).to_string();
                    if put {
                        s.approvals.insert(gate);
                    } else {
                        s.approvals.remove(&gate);
                    }
                }
            }
        }
    }
    broke(&shared);
}
