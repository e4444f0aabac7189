//! The connection to an etcd cluster: a private tokio runtime, blocking calls for the
//! synchronous [`RunStore`](crate::store::RunStore), retries across members, and the lease
//! this controller keeps alive.
//!
//! The client balances requests over the endpoints but does not fail over: a request that
//! lands on a stopped member fails at once with `Unavailable`. Such requests are retried
//! (on another member, the balancer's next pick) until one lease TTL has passed; then the
//! call fails and the run stops, as with a journal that cannot be written.

use crate::error::{Error, Result};
use crate::store::EtcdAccess;
use etcd_client::{Client, ConnectOptions, TlsOptions};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const DEFAULT_TTL: Duration = Duration::from_secs(10);

pub struct Conn {
    rt: tokio::runtime::Runtime,
    pub client: Client,
    /// How long a call is retried, and the lease TTL.
    pub ttl: Duration,
    /// For messages: `etcd://HOST:PORT,.../PREFIX`.
    pub url: String,
}

pub fn store_error(url: &str, what: impl std::fmt::Display) -> Error {
    Error::Journal {
        message: format!("etcd store {url}: {what}"),
    }
}

/// Errors worth another try: the member was down, had no leader, or did not answer in time.
fn retryable(e: &etcd_client::Error) -> bool {
    use tonic::Code;
    match e {
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        etcd_client::Error::GRpcStatus(s) => matches!(
            s.code(),
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown
        ),
        _ => false,
    }
}

fn read(path: &std::path::Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        Error::input(format!(
            "cannot read the etcd {what} {}: {e}",
            path.display()
        ))
    })
}

fn options(access: &EtcdAccess, ttl: Duration) -> Result<ConnectOptions> {
    let mut o = ConnectOptions::new()
        // A request waits at most a third of the TTL: a paused member does not hold a
        // controller past its lease.
        .with_timeout(ttl / 3)
        .with_connect_timeout(ttl / 3)
        .with_keep_alive(Duration::from_secs(2), ttl / 3)
        // A member cut off from the others answers "no leader" at once, instead of
        // serving stale reads.
        .with_require_leader(true);
    if let (Some(user), Some(password)) = (&access.user, &access.password) {
        o = o.with_user(user.clone(), password.clone());
    } else if access.user.is_some() {
        return Err(Error::input(
            "--etcd-user needs a password: set FLEETBOOK_ETCD_PASSWORD or pass --etcd-password-file",
        ));
    }
    if access.ca.is_some() || access.cert.is_some() {
        let mut tls = TlsOptions::new();
        if let Some(ca) = &access.ca {
            tls = tls.ca_certificate(etcd_client::Certificate::from_pem(read(ca, "CA")?));
        }
        match (&access.cert, &access.key) {
            (Some(c), Some(k)) => {
                tls = tls.identity(etcd_client::Identity::from_pem(
                    read(c, "client certificate")?,
                    read(k, "client key")?,
                ))
            }
            (None, None) => {}
            _ => {
                return Err(Error::input(
                    "--etcd-cert and --etcd-key go together: give both or neither",
                ))
            }
        }
        o = o.with_tls(tls);
    }
    Ok(o)
}

impl Conn {
    pub fn connect(url: &str, endpoints: &[String], access: &EtcdAccess) -> Result<Conn> {
        let ttl = access.ttl.unwrap_or(DEFAULT_TTL);
        if ttl < Duration::from_secs(1) {
            return Err(Error::input("--etcd-ttl must be at least 1s"));
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("etcd")
            .enable_all()
            .build()
            .map_err(|e| Error::Internal(format!("cannot start the etcd client: {e}")))?;
        let opts = options(access, ttl)?;
        let eps = endpoints.to_vec();
        let client = rt
            .block_on(async move {
                tokio::time::timeout(ttl, Client::connect(eps, Some(opts)))
                    .await
                    .unwrap_or_else(|_| {
                        Err(etcd_client::Error::InvalidArgs("no answer in time".into()))
                    })
            })
            .map_err(|e| store_error(url, format!("cannot connect: {e}")))?;
        let conn = Conn {
            rt,
            client,
            ttl,
            url: url.to_string(),
        };
        // Fail now, with the reason, rather than at the first write.
        conn.call("connect", |mut c| async move { c.status().await })?;
        Ok(conn)
    }

    /// Runs `f` on the client, again on another member while the cluster is unavailable,
    /// for up to one TTL. Safe from any thread, including one inside another runtime.
    pub fn call<T, F, Fut>(&self, what: &str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(Client) -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<T, etcd_client::Error>> + Send,
    {
        let client = self.client.clone();
        let deadline = Instant::now() + self.ttl;
        let task = async move {
            let mut pause = Duration::from_millis(20);
            loop {
                match f(client.clone()).await {
                    Err(e) if retryable(&e) && Instant::now() + pause < deadline => {
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_millis(500));
                    }
                    r => return r,
                }
            }
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.rt.spawn(async move {
            let _ = tx.send(task.await);
        });
        rx.recv()
            .map_err(|_| store_error(&self.url, format!("{what}: the client stopped")))?
            .map_err(|e| {
                let err = store_error(&self.url, format!("{what}: {e}"));
                // Still down, leaderless or slow past the deadline: it may come back.
                if retryable(&e) {
                    return Error::Unavailable {
                        message: err.to_string(),
                    };
                }
                err
            })
    }

    /// Runs `f` on the client's runtime, in the background.
    pub fn spawn(&self, f: impl Future<Output = ()> + Send + 'static) {
        self.rt.spawn(f);
    }

    /// Grants a lease and keeps it alive from the runtime until it is revoked or lost.
    pub fn lease(&self) -> Result<Lease> {
        let secs = self.ttl.as_secs().max(1) as i64;
        let id = self.call("lease grant", move |mut c| async move {
            c.lease_grant(secs, None).await
        })?;
        let id = id.id();
        let health = Arc::new(Health {
            deadline: Mutex::new(Instant::now() + self.ttl),
            gone: AtomicBool::new(false),
        });
        self.rt.spawn(keep_alive(
            self.client.clone(),
            id,
            self.ttl,
            health.clone(),
        ));
        Ok(Lease { id, health })
    }

    /// Revokes a lease (at the end of a run: its lock and slots go at once, not after a
    /// TTL). Best effort, briefly: an unreachable cluster expires it anyway.
    pub fn revoke(&self, lease: &Lease) {
        lease.health.gone.store(true, Ordering::SeqCst);
        let (id, mut client) = (lease.id, self.client.clone());
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.rt.spawn(async move {
            let _ = tx.send(client.lease_revoke(id).await.is_ok());
        });
        let _ = rx.recv_timeout(Duration::from_secs(2));
    }
}

/// When this controller last could show its lease alive.
pub struct Health {
    /// Past this instant the cluster may have dropped the lease.
    deadline: Mutex<Instant>,
    /// Revoked, or the cluster said the lease is gone.
    gone: AtomicBool,
}

pub struct Lease {
    pub id: i64,
    health: Arc<Health>,
}

impl Lease {
    /// True once the lease may have expired: the cluster said so, or no keep-alive was
    /// answered within the TTL. Decided locally, so it holds while etcd is unreachable.
    pub fn lost(&self) -> bool {
        self.health.gone.load(Ordering::SeqCst)
            || Instant::now()
                >= *self
                    .health
                    .deadline
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
    }
}

/// Renews the lease every third of its TTL. A broken stream (its member stopped) is opened
/// again, on whichever member the balancer picks. The deadline counts from when a renewal
/// was sent, so it never outlasts the cluster's own view of the lease.
async fn keep_alive(client: Client, id: i64, ttl: Duration, health: Arc<Health>) {
    let every = ttl / 3;
    while !health.gone.load(Ordering::SeqCst) {
        let Ok(Ok((mut keeper, mut stream))) =
            tokio::time::timeout(every, client.clone().lease_keep_alive(id)).await
        else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        while !health.gone.load(Ordering::SeqCst) {
            let sent = Instant::now();
            if keeper.keep_alive().await.is_err() {
                break;
            }
            match tokio::time::timeout(every, stream.message()).await {
                Ok(Ok(Some(r))) if r.ttl() > 0 => {
                    *health.deadline.lock().unwrap_or_else(|e| e.into_inner()) = sent + ttl;
                }
                Ok(Ok(Some(_))) => {
                    // TTL 0: the cluster no longer has the lease.
                    health.gone.store(true, Ordering::SeqCst);
                    return;
                }
                _ => break,
            }
            tokio::time::sleep(every.saturating_sub(sent.elapsed())).await;
        }
    }
}
