//! `fleetbook watch`: the run report as a local web page that follows the run. The page is
//! the engine's report (`render::report`); this file serves it and pushes a new body over
//! Server-Sent Events whenever the store shows a change. It reads through the store, so any
//! backend works.
//!
//! Safety: 127.0.0.1 on a free port by default, another address only with `--listen` and a
//! token file; every request must carry the token (`?token=`), else 401. Read-only unless
//! `--control`; the page's approvals and aborts take the CLI's own code path, so the journal
//! records them with the user exactly as `fleetbook approve`/`abort` do.
//!
//! Takes an open store and the page's options; gives nothing back until it stops.

use crate::Print;
use axum::extract::{Form, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use fleetbook_engine::render::{self, PageOptions, RunView};
use fleetbook_engine::store::{RunState, RunStore};
use fleetbook_engine::{Error, Result};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// What `fleetbook watch` serves, and to whom.
pub struct WatchArgs<'a> {
    pub store: Arc<dyn RunStore>,
    /// The run (the latest when `None`).
    pub run: Option<String>,
    /// How the page names the state directory in the commands it suggests.
    pub page: PageOptions,
    /// Whether the page may approve and abort.
    pub control: bool,
    /// `--listen`: 127.0.0.1 on a free port when `None`.
    pub listen: Option<String>,
    pub token_file: Option<PathBuf>,
    /// Where the URL is written (standard output).
    pub print: Print<'a>,
}

struct Shared {
    store: Arc<dyn RunStore>,
    run: String,
    token: String,
    opts: PageOptions,
}

/// How often the store is read for changes.
const POLL: Duration = Duration::from_millis(400);
/// The least time between two updates of the page.
const MIN_GAP: Duration = Duration::from_millis(600);

/// Serves the page until the process is stopped.
pub fn watch(a: WatchArgs) -> Result<()> {
    let store = a.store;
    let run = store.run(a.run.as_deref())?.id;
    let token = match &a.token_file {
        Some(f) => token_from(f)?,
        None => one_time_token()?,
    };
    let mut opts = a.page;
    opts.live = true;
    opts.control = a.control;
    let listen = a.listen.clone().unwrap_or_else(|| "127.0.0.1:0".into());
    let shared = Arc::new(Shared {
        store,
        run,
        token,
        opts,
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("cannot start the web server: {e}")))?;
    rt.block_on(serve(shared, &listen, a.control, a.print))
}

async fn serve(shared: Arc<Shared>, listen: &str, control: bool, print: Print<'_>) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Error::input(format!("--listen {listen}: cannot listen there: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Internal(e.to_string()))?;
    eprintln!(
        "watching run {} ({}); open the URL below; Ctrl-C stops",
        shared.run,
        if control {
            "the page can approve and abort"
        } else {
            "read-only"
        }
    );
    print(&format!(
        "http://{}/?token={}\n",
        reachable(addr),
        shared.token
    ))?;
    let app = Router::new()
        .route("/", get(page))
        .route("/events", get(events))
        .route("/approve", post(approve))
        .route("/abort", post(abort))
        .with_state(shared);
    axum::serve(listener, app)
        .await
        .map_err(|e| Error::Internal(format!("the web server stopped: {e}")))
}

/// Where a browser can reach `addr`: a wildcard address (`0.0.0.0`, `::`) is not one, so the
/// URL names this machine instead.
fn reachable(addr: std::net::SocketAddr) -> String {
    if !addr.ip().is_unspecified() {
        return addr.to_string();
    }
    let host = fleetbook_engine::journal::controller();
    format!("{host}:{}", addr.port())
}

/// A token read from a file: its first line, long enough not to be guessed. Like ssh with a
/// private key, a file that others may read is refused: its token is no secret.
fn token_from(path: &std::path::Path) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::input(format!("--token-file {}: {e}", path.display())))?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    if token.len() < 16
        || !token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b))
    {
        return Err(Error::input_with_help(
            format!(
                "--token-file {}: the token must be at least 16 characters of A-Z a-z 0-9 - _ . ~ on the first line",
                path.display()
            ),
            "make one with: (umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \\n' > FILE)",
        ));
    }
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)
        .map_err(|e| Error::input(format!("--token-file {}: {e}", path.display())))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(Error::input_with_help(
            format!(
                "--token-file {}: others may read it (mode {:o}), so its token is no secret",
                path.display(),
                meta.permissions().mode() & 0o777
            ),
            format!("chmod 600 {}", path.display()),
        ));
    }
    Ok(token)
}

fn one_time_token() -> Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| Error::Internal(format!("cannot make a token: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Compares in time that does not depend on where the first difference is.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

fn refused() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        "this page needs the token that `fleetbook watch` printed with its URL\n",
    )
        .into_response()
}

fn authorised(shared: &Shared, q: &HashMap<String, String>) -> bool {
    q.get("token").is_some_and(|t| same(t, &shared.token))
}

/// Reads the store off the async threads (the store's calls block).
async fn view(shared: &Arc<Shared>) -> Result<RunView> {
    let s = shared.clone();
    tokio::task::spawn_blocking(move || RunView::load(&*s.store, Some(&s.run)))
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
}

fn private(mut r: Response) -> Response {
    let h = r.headers_mut();
    // The token is in the URL: it must not leave in a Referer, nor the page in a cache.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

async fn page(State(s): State<Arc<Shared>>, Query(q): Query<HashMap<String, String>>) -> Response {
    if !authorised(&s, &q) {
        return refused();
    }
    match view(&s).await {
        Ok(v) => private(
            (
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                render::report(&v, &s.opts),
            )
                .into_response(),
        ),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

/// What changes when the run moves (not the clock).
fn fingerprint(v: &RunView) -> String {
    let mut f = format!(
        "{}|{}|{}",
        v.status.run.state,
        v.commands.len(),
        v.actions.len()
    );
    for t in &v.tasks {
        f.push_str(&format!("|{}{}{:?}", t.state, t.attempt, t.ended_at));
    }
    f
}

async fn events(
    State(s): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if !authorised(&s, &q) {
        return refused();
    }
    // (shared, last fingerprint, finished)
    let stream =
        futures_util::stream::unfold((s, String::new(), false), |(s, last, done)| async move {
            if done {
                return None;
            }
            loop {
                let v = match view(&s).await {
                    Ok(v) => v,
                    Err(e) => {
                        let ev = Event::default()
                            .event("failed")
                            .data(e.to_string().replace(['\n', '\r'], " "));
                        return Some((Ok::<_, std::convert::Infallible>(ev), (s, last, true)));
                    }
                };
                let over = v.status.run.state != RunState::Running;
                let fp = fingerprint(&v);
                if fp != last {
                    let html = render::report_body(&v, &s.opts);
                    let data = serde_json::to_string(&html).unwrap_or_default();
                    if !last.is_empty() {
                        // A busy run of a thousand hosts changes at every poll: an update
                        // every 600 ms at most is enough to watch and keeps the browser light.
                        tokio::time::sleep(MIN_GAP).await;
                    }
                    return Some((
                        Ok(Event::default().event("update").data(data)),
                        (s, fp, false),
                    ));
                }
                if over {
                    return Some((
                        Ok(Event::default().event("end").data("over")),
                        (s, fp, true),
                    ));
                }
                tokio::time::sleep(POLL).await;
            }
        });
    private(
        Sse::new(stream)
            .keep_alive(KeepAlive::default())
            .into_response(),
    )
}

fn read_only() -> Response {
    (
        StatusCode::FORBIDDEN,
        "read-only: start `fleetbook watch` with --control to approve or abort from the page\n",
    )
        .into_response()
}

async fn approve(
    State(s): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    if !authorised(&s, &q) {
        return refused();
    }
    if !s.opts.control {
        return read_only();
    }
    let gate = f.get("gate").filter(|g| !g.is_empty()).cloned();
    let s2 = s.clone();
    let done = tokio::task::spawn_blocking(move || {
        fleetbook_engine::session::give_approval(&*s2.store, &s2.run, gate.as_deref())
    })
    .await;
    match done {
        Ok(Ok(gate)) => {
            eprintln!("approved {gate:?} for run {} (from the page)", s.run);
            (StatusCode::OK, format!("approved {gate}")).into_response()
        }
        Ok(Err(e)) => (StatusCode::CONFLICT, e.to_string()).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn abort(State(s): State<Arc<Shared>>, Query(q): Query<HashMap<String, String>>) -> Response {
    if !authorised(&s, &q) {
        return refused();
    }
    if !s.opts.control {
        return read_only();
    }
    let s2 = s.clone();
    let done = tokio::task::spawn_blocking(move || {
        fleetbook_engine::session::request_abort(&*s2.store, &s2.run, false)
    })
    .await;
    match done {
        Ok(Ok(())) => {
            eprintln!("abort requested for run {} (from the page)", s.run);
            (StatusCode::OK, "abort requested: no new host starts").into_response()
        }
        Ok(Err(e)) => (StatusCode::CONFLICT, e.to_string()).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(same("abcd", "abcd"));
        assert!(!same("abcd", "abce"));
        assert!(!same("abc", "abcd"));
        let t = one_time_token().unwrap();
        assert_eq!(t.len(), 32);
        assert_ne!(t, one_time_token().unwrap());
    }
}
