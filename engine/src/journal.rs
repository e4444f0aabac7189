//! The run journal: every run and every task transition, in an embedded SQLite database
//! (`journal.sqlite` in the state directory). Takes events from the executor; gives run
//! history, per-task state for `status` and `resume`, abort and approval requests from other
//! terminals, and the fleet lock.
//!
//! Durability: WAL with `synchronous=FULL`. A run's task transitions and command records
//! are queued ([`Journal::record_queued`]) and committed together, one transaction for what
//! a scheduling tick queued: by a flusher thread as soon as they are queued (what queues up
//! while it commits goes in its next transaction), and by [`Journal::flush`], which the
//! recording transport calls before it sends a command, so a transition to running is on
//! disk before the command is sent, and a host's result before its next command. Every
//! other call commits the queue first, so it sees it and the order is kept. Secrets never
//! reach it: secret parameters are stored as `<secret>`, and the executor's messages are
//! redacted before they arrive.
//!
//! A journal that is not a fleetbook journal, is corrupted or has a newer schema is an error
//! and is never touched. Schema: see `docs/journal.md`; bump [`SCHEMA_VERSION`] on change.

use crate::clock::At;
use crate::error::{Error, Result};
use crate::exec::{Event, State};
use crate::store::{RunState, RunStore, StoreResult, TaskState};
use rusqlite::config::DbConfig;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

pub const SCHEMA_VERSION: i32 = 4;
pub const FILE: &str = "journal.sqlite";
/// Beside the journal: how its files looked when a fleetbook last closed it (`seal`).
pub const SEAL: &str = "journal.sqlite-sealed";
/// Beside the journal: held shared by every fleetbook that has it open, so the last to
/// close it knows it is the last (only that one seals).
pub const OPENERS: &str = "journal.sqlite-openers";

const SCHEMA: &str = "
CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    runbook TEXT NOT NULL,
    runbook_path TEXT NOT NULL,
    runbook_digest TEXT NOT NULL,
    inventory_path TEXT NOT NULL,
    inventory_digest TEXT NOT NULL,
    params TEXT NOT NULL,
    limit_pattern TEXT,
    user TEXT NOT NULL,
    controller TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started_at REAL NOT NULL,
    ended_at REAL,
    state TEXT NOT NULL,
    reason TEXT,
    abort_requested INTEGER NOT NULL DEFAULT 0,
    abort_now INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE hosts (
    run_id TEXT NOT NULL REFERENCES runs(id),
    host TEXT NOT NULL,
    roles TEXT NOT NULL,
    PRIMARY KEY (run_id, host)
);
CREATE TABLE tasks (
    run_id TEXT NOT NULL REFERENCES runs(id),
    task_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    host TEXT,
    step TEXT,
    role TEXT,
    state TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0,
    started_at REAL,
    ended_at REAL,
    message TEXT,
    PRIMARY KEY (run_id, task_id)
);
CREATE TABLE events (
    run_id TEXT NOT NULL REFERENCES runs(id),
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    task_id TEXT NOT NULL,
    state TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    message TEXT
);
CREATE TABLE approvals (
    run_id TEXT NOT NULL REFERENCES runs(id),
    gate TEXT NOT NULL,
    approved_by TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (run_id, gate)
);
CREATE TABLE locks (
    fleet TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    pid INTEGER NOT NULL,
    user TEXT NOT NULL,
    controller TEXT NOT NULL,
    since REAL NOT NULL
);
";

/// Schema 2: what each host learned during a run (`h.set_fact`, the versions `pkg::` found
/// before changing them), so that a resumed run's undo still knows them.
const FACTS: &str = "
CREATE TABLE facts (
    run_id TEXT NOT NULL REFERENCES runs(id),
    host TEXT NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (run_id, host, name)
);
";

/// Schema 3: what a resumed run must keep exactly: the digest of the imported modules,
/// salted digests of the secret parameters (never their values) and the gates approved in
/// advance with `--approve`.
const INPUTS: &str = "
ALTER TABLE runs ADD COLUMN lib_digest TEXT;
ALTER TABLE runs ADD COLUMN secret_digests TEXT NOT NULL DEFAULT '{}';
ALTER TABLE runs ADD COLUMN pre_approved TEXT NOT NULL DEFAULT '[]';
";

/// Schema 4: what a report of the run shows: its plan (JSON, redacted), each command's exit
/// status, duration and output tail (redacted, capped), and who asked for an abort, when.
const REPORT: &str = "
CREATE TABLE plans (
    run_id TEXT PRIMARY KEY REFERENCES runs(id),
    plan TEXT NOT NULL
);
CREATE TABLE commands (
    run_id TEXT NOT NULL REFERENCES runs(id),
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id TEXT,
    host TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    command TEXT NOT NULL,
    exit_code INTEGER,
    error TEXT,
    started_at REAL NOT NULL,
    duration REAL NOT NULL,
    output_tail TEXT NOT NULL,
    output_bytes INTEGER NOT NULL
);
CREATE TABLE aborts (
    run_id TEXT NOT NULL REFERENCES runs(id),
    now INTEGER NOT NULL,
    requested_by TEXT NOT NULL,
    at REAL NOT NULL
);
";

/// The tables and columns a journal at `version` lacks.
fn migration(version: i32) -> String {
    let mut sql = String::new();
    if version < 1 {
        sql.push_str(SCHEMA);
    }
    if version < 2 {
        sql.push_str(FACTS);
    }
    if version < 3 {
        sql.push_str(INPUTS);
    }
    if version < 4 {
        sql.push_str(REPORT);
    }
    sql
}

/// A secret parameter's digest, salted with the run and the name so that equal secrets of two
/// runs do not match and a short secret cannot be looked up in a table.
pub fn secret_digest(run: &str, name: &str, value: &str) -> String {
    crate::plan::digest(format!("fleetbook-secret\0{run}\0{name}\0{value}").as_bytes())
}

/// The name of the user this process runs as, from the password database (`$USER` can be
/// unset or wrong, as under cron or `env -i`).
pub fn user() -> String {
    // SAFETY: getuid cannot fail; getpwuid_r writes only into `pwd` and `buf`, which outlive
    // the call, and `pw_name` points into `buf` when `found` is set.
    let uid = unsafe { libc::getuid() };
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut found) };
    if rc == 0 && !found.is_null() && !pwd.pw_name.is_null() {
        let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) }
            .to_string_lossy()
            .into_owned();
        if !name.is_empty() {
            return name;
        }
    }
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| format!("uid {uid}"))
}

/// This machine's host name (the kernel's, as `hostname` prints it).
pub fn controller() -> String {
    let name = gethostname::gethostname()
        .to_string_lossy()
        .trim()
        .to_string();
    if name.is_empty() {
        "localhost".into()
    } else {
        name
    }
}

/// Whether a process of this machine is alive (a zombie is not).
pub fn pid_alive(pid: i64) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    !stat.is_empty() && !stat.contains(") Z ") && !stat.contains(") X ")
}

#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    pub id: String,
    pub runbook: String,
    pub runbook_path: String,
    pub runbook_digest: String,
    pub inventory_path: String,
    pub inventory_digest: String,
    pub params: BTreeMap<String, String>,
    pub limit_pattern: Option<String>,
    pub user: String,
    pub controller: String,
    pub pid: i64,
    pub started_at: At,
    pub ended_at: Option<At>,
    /// A `running` run whose process is gone reads `crashed`.
    pub state: RunState,
    pub reason: Option<String>,
    /// Digest of the modules the runbook imported (`None` in journals before schema 3).
    pub lib_digest: Option<String>,
    /// Secret parameter -> [`secret_digest`] of its value. Not shown anywhere.
    #[serde(skip)]
    pub secret_digests: BTreeMap<String, String>,
    /// Gates approved in advance (`run --approve`): a resumed run does not wait at them.
    pub pre_approved: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TaskRow {
    pub task_id: String,
    pub kind: String,
    pub host: Option<String>,
    pub step: Option<String>,
    pub role: Option<String>,
    pub state: TaskState,
    pub attempt: i64,
    pub started_at: Option<At>,
    pub ended_at: Option<At>,
    pub message: Option<String>,
}

/// One command a task ran, as a report shows it.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct CommandRecord {
    /// The task it ran for (`None`: no task of that host was running, e.g. a runbook-level
    /// hook with several in flight).
    pub task_id: Option<String>,
    pub host: String,
    pub attempt: i64,
    /// The command line, redacted and capped.
    pub command: String,
    /// `None` when it could not run or ran out of time; `error` says why.
    pub exit_code: Option<i64>,
    pub error: Option<String>,
    pub started_at: At,
    #[serde(with = "crate::clock::secs")]
    pub duration: Duration,
    /// The end of stdout and stderr, redacted, at most [`OUTPUT_TAIL`] bytes.
    pub output_tail: String,
    /// The whole output's size: more than the tail means it was cut.
    pub output_bytes: i64,
}

/// The most output bytes of one command a store keeps: a huge log must not fill the store or
/// break a page (the whole output is written next to the journal).
pub const OUTPUT_TAIL: usize = 4096;

/// What a person asked of a run from outside it, with who and when.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    Approve { gate: String, by: String, at: At },
    Abort { now: bool, by: String, at: At },
}

impl Action {
    pub fn at(&self) -> At {
        match self {
            Action::Approve { at, .. } | Action::Abort { at, .. } => *at,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct LockInfo {
    pub fleet: String,
    pub run_id: String,
    pub pid: i64,
    pub user: String,
    pub controller: String,
    pub since: At,
}

impl LockInfo {
    /// The holder is gone: it ran on this machine and its process no longer exists.
    pub fn is_stale(&self) -> bool {
        self.controller == controller() && !pid_alive(self.pid)
    }

    pub fn describe(&self) -> String {
        format!(
            "run {} by {} on {} (pid {}{}) since {}",
            self.run_id,
            self.user,
            self.controller,
            self.pid,
            if self.is_stale() {
                ", no longer running"
            } else {
                ""
            },
            self.since
        )
    }
}

pub struct Journal {
    shared: Arc<Shared>,
    /// Commits queued writes in the background; started by the first queued write.
    flusher: Mutex<Option<std::thread::JoinHandle<()>>>,
    pub path: PathBuf,
    /// This opener's shared hold on `OPENERS` (see `last_opener`).
    openers: Option<std::fs::File>,
}

/// What the journal and its flusher thread share.
struct Shared {
    conn: Mutex<Connection>,
    queue: Mutex<Queue>,
    /// Wakes the flusher: a write was queued, or the journal is closing.
    wake: Condvar,
    path: PathBuf,
}

#[derive(Default)]
struct Queue {
    writes: Vec<Queued>,
    /// Why a commit of queued writes failed: what it held is lost, and every write queued
    /// later is refused with this (the run must stop: a resume could not see its tasks).
    broken: Option<String>,
    /// Tasks whose end (a transition other than `running`) a failed commit lost or a broken
    /// queue refused: the journal still says they run.
    lost: Vec<String>,
    closing: bool,
}

impl Queue {
    fn lose(&mut self, w: &Queued) {
        if let Queued::Transition { task, state, .. } = w {
            if *state != State::Running && !self.lost.contains(task) {
                self.lost.push(task.clone());
            }
        }
    }
}

/// A write waiting for the next commit.
enum Queued {
    Transition {
        run: String,
        at: At,
        task: String,
        state: State,
        attempt: u32,
        message: Option<String>,
    },
    Command {
        run: String,
        cmd: CommandRecord,
    },
}

impl Queued {
    fn write(&self, tx: &rusqlite::Transaction) -> rusqlite::Result<()> {
        match self {
            Queued::Transition {
                run,
                at,
                task,
                state,
                attempt,
                message,
            } => write_transition(tx, run, *at, task, *state, *attempt, message.as_deref()),
            Queued::Command { run, cmd } => write_command(tx, run, cmd),
        }
    }
}

/// Writes one task transition: its event, and the task's row.
fn write_transition(
    tx: &rusqlite::Transaction,
    run: &str,
    at: At,
    task: &str,
    state: State,
    attempt: u32,
    message: Option<&str>,
) -> rusqlite::Result<()> {
    let name = state_name(state);
    tx.prepare_cached(
        "INSERT INTO events (run_id, at, task_id, state, attempt, message) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![run, at, task, name, attempt, message])?;
    let sql = match state {
        State::Running => "UPDATE tasks SET state = ?3, attempt = ?4, started_at = ?5, ended_at = NULL, message = ?6 WHERE run_id = ?1 AND task_id = ?2",
        State::Retrying | State::WaitingApproval | State::RollingBack => "UPDATE tasks SET state = ?3, attempt = ?4, message = ?6 WHERE run_id = ?1 AND task_id = ?2 AND ?5 IS NOT NULL",
        _ => "UPDATE tasks SET state = ?3, attempt = max(attempt, ?4), ended_at = ?5, message = ?6 WHERE run_id = ?1 AND task_id = ?2",
    };
    tx.prepare_cached(sql)?
        .execute(params![run, task, name, attempt, at, message])?;
    Ok(())
}

fn write_command(
    tx: &rusqlite::Transaction,
    run: &str,
    cmd: &CommandRecord,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO commands (run_id, task_id, host, attempt, command, exit_code, error, started_at, duration, output_tail, output_bytes)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        run,
        cmd.task_id,
        cmd.host,
        cmd.attempt,
        cmd.command,
        cmd.exit_code,
        cmd.error,
        cmd.started_at,
        cmd.duration.as_secs_f64(),
        cmd.output_tail,
        cmd.output_bytes
    ])?;
    Ok(())
}

/// A new run's record and all its tasks, pending, inside the caller's transaction.
fn insert_run(
    tx: &rusqlite::Transaction,
    run: &RunRecord,
    hosts: &[(String, Vec<String>)],
    tasks: &[TaskRow],
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO runs (id, runbook, runbook_path, runbook_digest, inventory_path, inventory_digest, params, limit_pattern, user, controller, pid, started_at, state, lib_digest, secret_digests, pre_approved)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, 'running', ?13, ?14, ?15)",
        params![
            run.id,
            run.runbook,
            run.runbook_path,
            run.runbook_digest,
            run.inventory_path,
            run.inventory_digest,
            serde_json::to_string(&run.params).unwrap_or_default(),
            run.limit_pattern,
            run.user,
            run.controller,
            run.pid,
            run.started_at,
            run.lib_digest,
            serde_json::to_string(&run.secret_digests).unwrap_or_default(),
            serde_json::to_string(&run.pre_approved).unwrap_or_default(),
        ],
    )?;
    // Prepared once for all the rows (hundreds at a few hundred hosts).
    let mut host =
        tx.prepare_cached("INSERT INTO hosts (run_id, host, roles) VALUES (?1, ?2, ?3)")?;
    for (h, roles) in hosts {
        host.execute(params![
            run.id,
            h,
            serde_json::to_string(roles).unwrap_or_default()
        ])?;
    }
    let mut task = tx.prepare_cached(
        "INSERT INTO tasks (run_id, task_id, kind, host, step, role, state) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for t in tasks {
        task.execute(params![
            run.id, t.task_id, t.kind, t.host, t.step, t.role, t.state
        ])?;
    }
    Ok(())
}

/// Takes the fleet lock for `run` inside the caller's (immediate) transaction, or answers
/// who holds it (see [`Journal::lock`]).
fn take_lock(
    tx: &rusqlite::Transaction,
    fleet: &str,
    run: &str,
) -> rusqlite::Result<Option<LockInfo>> {
    let current = tx
        .query_row(
            "SELECT fleet, run_id, pid, user, controller, since FROM locks WHERE fleet = ?1",
            [fleet],
            lock_from_row,
        )
        .optional()?;
    let take = match &current {
        None => true,
        Some(l) => l.run_id == run && l.is_stale(),
    };
    if !take {
        return Ok(current);
    }
    tx.execute(
        "INSERT OR REPLACE INTO locks (fleet, run_id, pid, user, controller, since) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![fleet, run, std::process::id() as i64, user(), controller(), At::now()],
    )?;
    Ok(None)
}

/// The error for a fleet lock another run holds.
fn locked(l: LockInfo) -> Error {
    let help = match l.is_stale() {
        true => "that process is gone: break the lock with `fleetbook unlock`",
        false => "one operator at a time: wait for it, or `fleetbook abort` it",
    };
    Error::Locked {
        message: format!("the fleet is locked by {}", l.describe()),
        help: help.into(),
    }
}

/// A run's state (see [`Journal::set_state`]), inside the caller's transaction.
fn write_state(
    tx: &rusqlite::Transaction,
    run: &str,
    state: RunState,
    reason: Option<&str>,
    ended: bool,
) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE runs SET state = ?2, reason = ?3, ended_at = CASE WHEN ?4 THEN ?5 ELSE NULL END, pid = CASE WHEN ?4 THEN pid ELSE ?6 END, abort_requested = 0, abort_now = 0 WHERE id = ?1",
        params![run, state.as_str(), reason, ended, At::now(), std::process::id() as i64],
    )?;
    if ended {
        // Barriers run nothing and report no transition: one is passed when every
        // other task of its role is.
        tx.execute(
            "UPDATE tasks SET state = 'ok', ended_at = ?2 WHERE run_id = ?1 AND kind IN ('role_done', 'canary_done') AND state = 'pending'
             AND NOT EXISTS (SELECT 1 FROM tasks o WHERE o.run_id = tasks.run_id AND o.role IS tasks.role
                             AND o.kind NOT IN ('role_done', 'canary_done') AND o.state NOT IN ('ok', 'skipped'))",
            params![run, At::now()],
        )?;
    }
    Ok(())
}

/// Writes `writes` in one transaction: all of them or none.
fn commit(c: &mut Connection, writes: &[Queued]) -> rusqlite::Result<()> {
    let tx = c.transaction()?;
    for w in writes {
        w.write(&tx)?;
    }
    tx.commit()
}

impl Shared {
    /// Commits what is queued (with the connection held: whoever took a write off the queue
    /// holds it until the write is on disk, so a `flush` that finds the queue empty knows).
    fn commit_queued(&self, c: &mut Connection) -> Result<()> {
        let writes = {
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            // A write queued while a failing commit was under way got past `queue`'s check:
            // it is refused here, never committed after what was lost before it.
            if let Some(why) = q.broken.clone() {
                let late = std::mem::take(&mut q.writes);
                late.iter().for_each(|w| q.lose(w));
                return Err(Error::Internal(why));
            }
            std::mem::take(&mut q.writes)
        };
        if writes.is_empty() {
            return Ok(());
        }
        commit(c, &writes).map_err(|e| {
            let err = db_error(&self.path, e);
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            q.broken = Some(err.to_string());
            writes.iter().for_each(|w| q.lose(w));
            err
        })
    }

    /// The flusher: commits as soon as something is queued, until the journal closes.
    fn flush_loop(&self) {
        loop {
            {
                let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                while q.writes.is_empty() && !q.closing {
                    q = self.wake.wait(q).unwrap_or_else(|e| e.into_inner());
                }
                if q.writes.is_empty() {
                    return;
                }
            }
            let mut c = self.conn.lock().unwrap_or_else(|e| e.into_inner());
            // A failure is kept in `broken`: the next queued write or flush reports it.
            let _ = self.commit_queued(&mut c);
        }
    }
}

/// Another process holding the journal busy past the busy timeout may let go: that is
/// worth another try ([`Error::Unavailable`]); anything else SQLite says is not.
fn db_error(path: &Path, e: rusqlite::Error) -> Error {
    let message = format!("journal {}: {e}", path.display());
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            Error::Unavailable { message }
        }
        _ => Error::Internal(message),
    }
}

/// Writes a complete new journal next to `path` and links it into place; if another process
/// was first, its journal stays and this one is dropped.
fn create(dir: &Path, path: &Path) -> Result<()> {
    let failed =
        |e: String| Error::Internal(format!("cannot create journal {}: {e}", path.display()));
    let tmp = tempfile::Builder::new()
        .prefix(".journal-")
        .suffix(".new")
        .tempfile_in(dir)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::PermissionDenied => Error::Journal {
                message: format!(
                    "cannot create journal {}: the state directory is read-only ({e}); make it writable, or use another --state",
                    path.display()
                ),
            },
            _ => failed(e.to_string()),
        })?;
    let conn = Connection::open(tmp.path()).map_err(|e| failed(e.to_string()))?;
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; BEGIN; {} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;",
        migration(0)
    ))
    .map_err(|e| failed(e.to_string()))?;
    conn.close().map_err(|(_, e)| failed(e.to_string()))?;
    // As readable as a journal SQLite creates itself, not the temporary file's 0600.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644))
        .map_err(|e| failed(e.to_string()))?;
    match std::fs::hard_link(tmp.path(), path) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(failed(e.to_string())),
        _ => Ok(()),
    }
}

/// Why the journal cannot be written, if it cannot: the file, or the directory where SQLite
/// keeps its write-ahead log.
fn read_only(dir: &Path, path: &Path) -> Option<String> {
    use std::os::unix::ffi::OsStrExt;
    let writable = |p: &Path| {
        let c = std::ffi::CString::new(p.as_os_str().as_bytes()).ok()?;
        // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
        Some(unsafe { libc::access(c.as_ptr(), libc::W_OK) } == 0)
    };
    if writable(path) == Some(false) {
        return Some("the file is not writable".into());
    }
    if writable(dir) == Some(false) {
        return Some(format!("its directory {} is not writable", dir.display()));
    }
    None
}

fn state_name(s: State) -> &'static str {
    s.as_str()
}

/// Stored as its name, the text column it always was.
impl rusqlite::types::ToSql for TaskState {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(self.as_str().into())
    }
}

/// An unknown name is a corrupt journal, reported with the name found.
impl rusqlite::types::FromSql for TaskState {
    fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        let name = v.as_str()?;
        TaskState::parse(name).ok_or_else(|| {
            rusqlite::types::FromSqlError::Other(format!("unknown task state {name:?}").into())
        })
    }
}

fn lock_from_row(r: &rusqlite::Row) -> rusqlite::Result<LockInfo> {
    Ok(LockInfo {
        fleet: r.get(0)?,
        run_id: r.get(1)?,
        pid: r.get(2)?,
        user: r.get(3)?,
        controller: r.get(4)?,
        since: r.get(5)?,
    })
}

/// Creates `dir` and its missing parents readable by the owner only: run records and command
/// output are nobody else's business. An existing directory keeps the mode it has.
pub(crate) fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// The identity of the journal's database and write-ahead log as the file system keeps it
/// (device, inode, size, change and modification times to the nanosecond): a write through
/// the file system, by SQLite or any other tool, changes it; `None` when the journal
/// cannot be read.
fn marks(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let mut out = String::new();
    for (file, required) in [(path.to_path_buf(), true), (PathBuf::from(wal), false)] {
        match std::fs::metadata(&file) {
            Ok(m) => out.push_str(&format!(
                "{} {} {} {}.{} {}.{}\n",
                m.dev(),
                m.ino(),
                m.len(),
                m.ctime(),
                m.ctime_nsec(),
                m.mtime(),
                m.mtime_nsec()
            )),
            Err(_) if !required => out.push_str("-\n"),
            Err(_) => return None,
        }
    }
    Some(out)
}

/// Whether the journal is exactly as a fleetbook left it when it closed it (its `seal`
/// matches): nothing wrote to it since, so the `quick_check` it passed when it was opened
/// still holds, and reading the whole journal again is skipped.
fn sealed(dir: &Path, path: &Path) -> bool {
    match (std::fs::read_to_string(dir.join(SEAL)), marks(path)) {
        (Ok(seal), Some(now)) => seal == now,
        _ => false,
    }
}

/// Records how the journal's files look now, after this process's last write: the next
/// open skips the whole-journal check while they stay so. Written whole (a rename) and not
/// synced: a lost or stale seal only means the next open checks.
fn seal(path: &Path) {
    let Some(dir) = path.parent() else { return };
    let Some(now) = marks(path) else { return };
    let tmp = dir.join(format!("{SEAL}.{}", std::process::id()));
    if std::fs::write(&tmp, now).is_err() || std::fs::rename(&tmp, dir.join(SEAL)).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

/// Takes a shared hold on the journal's openers file for as long as the returned file is
/// kept; `None` when it cannot be made (a read-only directory: then nothing is sealed).
fn hold_open(dir: &Path) -> Option<std::fs::File> {
    use std::os::fd::AsRawFd;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join(OPENERS))
        .ok()?;
    // SAFETY: flock(2) on a descriptor owned by `file`, which outlives the call.
    (unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH) } == 0).then_some(file)
}

/// Whether this is the journal's last opener: no other fleetbook holds it open (one that
/// does may still write, or crash after its last write, which a seal would hide).
fn last_opener(held: Option<&std::fs::File>) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: flock(2) on a descriptor owned by `file`, which outlives the call.
    held.is_some_and(|file| unsafe {
        libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0
    })
}

impl Journal {
    /// Opens (or creates) the journal in `dir`. A new journal appears whole or not at all,
    /// so that runs started at once on a new state directory meet at the fleet lock; an
    /// existing one is checked before anything is written to it.
    pub fn open(dir: &Path) -> Result<Journal> {
        private_dir(dir).map_err(|e| {
            Error::Internal(format!(
                "cannot create state directory {}: {e}",
                dir.display()
            ))
        })?;
        let path = dir.join(FILE);
        if !path.exists() {
            create(dir, &path)?;
        }
        let unusable = |what: String| Error::Journal {
            message: format!("journal {} {what}; it was left as it is", path.display()),
        };
        if let Some(what) = read_only(dir, &path) {
            return Err(Error::Journal {
                message: format!(
                    "journal {} is read-only ({what}): fleetbook records every run in it; make it writable, or use another --state",
                    path.display()
                ),
            });
        }
        // Before SQLite opens it (opening a WAL journal may create its log).
        let openers = hold_open(dir);
        let unchanged = sealed(dir, &path);
        let mut conn = Connection::open(&path).map_err(|e| db_error(&path, e))?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(|e| db_error(&path, e))?;
        let version: i32 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| unusable(format!("is not a fleetbook journal or is corrupted ({e})")))?;
        if version > SCHEMA_VERSION {
            return Err(unusable(format!(
                "has schema version {version}, newer than this fleetbook's ({SCHEMA_VERSION}): use a newer fleetbook"
            )));
        }
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
                [],
                |r| r.get(0),
            )
            .map_err(|e| unusable(format!("is not a fleetbook journal or is corrupted ({e})")))?;
        if version == 0 && tables > 0 {
            return Err(unusable("is a database but not a fleetbook journal".into()));
        }
        // Before the first write: a corrupted journal is reported as it was found. The check
        // reads the whole journal (milliseconds per MB, on every command): skipped when the
        // journal is as the last fleetbook to close it left it (`sealed`); anything else (a
        // crash, a kill -9, another tool's write, a copy) changes its files and checks.
        if !unchanged {
            let quick: String = conn
                .query_row("PRAGMA quick_check", [], |r| r.get(0))
                .map_err(|e| unusable(format!("is corrupted ({e})")))?;
            if quick != "ok" {
                return Err(unusable(format!("is corrupted ({quick})")));
            }
        }
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
        )
        .map_err(|e| unusable(format!("cannot be used ({e})")))?;
        // No checkpoint when the connection closes (it cost every command's exit a write
        // and an fsync of the database file): every commit is already durable in the WAL
        // (synchronous=FULL), the next open reads it, and SQLite's automatic checkpoint
        // (1,000 pages) keeps it bounded.
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
            .map_err(|e| unusable(format!("cannot be used ({e})")))?;
        if version < SCHEMA_VERSION {
            // Another fleetbook may be upgrading it too: look again inside the transaction.
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(|e| db_error(&path, e))?;
            let version: i32 = tx
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .map_err(|e| db_error(&path, e))?;
            if version < SCHEMA_VERSION {
                tx.execute_batch(&format!(
                    "{} PRAGMA user_version = {SCHEMA_VERSION};",
                    migration(version)
                ))
                .map_err(|e| db_error(&path, e))?;
            }
            tx.commit().map_err(|e| db_error(&path, e))?;
        }
        Ok(Journal {
            shared: Arc::new(Shared {
                conn: Mutex::new(conn),
                queue: Mutex::default(),
                wake: Condvar::new(),
                path: path.clone(),
            }),
            flusher: Mutex::default(),
            openers,
            path,
        })
    }

    /// Runs `f` on the connection, after committing what was queued: `f` sees it, and the
    /// journal keeps the order of writes.
    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>) -> Result<T> {
        let mut c = self.shared.conn.lock().unwrap_or_else(|e| e.into_inner());
        self.shared.commit_queued(&mut c)?;
        f(&mut c).map_err(|e| db_error(&self.path, e))
    }

    /// How long a call waits for another process's write before it is refused as busy.
    #[cfg(test)]
    pub(crate) fn set_busy_timeout(&self, d: Duration) {
        let c = self.shared.conn.lock().unwrap_or_else(|e| e.into_inner());
        c.busy_timeout(d).unwrap();
    }

    /// Queues a write for the flusher (started now if it is not yet).
    fn queue(&self, w: Queued) -> Result<()> {
        {
            let mut q = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(why) = q.broken.clone() {
                q.lose(&w);
                return Err(Error::Internal(why));
            }
            q.writes.push(w);
        }
        self.shared.wake.notify_one();
        let mut flusher = self.flusher.lock().unwrap_or_else(|e| e.into_inner());
        if flusher.is_none() {
            let shared = self.shared.clone();
            let spawned = std::thread::Builder::new()
                .name("fleetbook-journal".into())
                .spawn(move || shared.flush_loop());
            match spawned {
                Ok(h) => *flusher = Some(h),
                // Without a flusher, `flush` and every other call still commit the queue.
                Err(e) => {
                    tracing::warn!(error = %e, "the journal's flusher thread could not start")
                }
            }
        }
        Ok(())
    }

    /// Queues one transition: durable at the next [`Journal::flush`] or any other call (or
    /// as soon as the flusher commits it). `Err`: an earlier commit failed.
    pub fn record_queued(&self, run: &str, e: &Event, started: At) -> Result<()> {
        self.queue(transition(run, e, started))
    }

    /// Queues one command's record, as [`Journal::record_queued`].
    pub fn record_command_queued(&self, run: &str, cmd: &CommandRecord) -> Result<()> {
        self.queue(Queued::Command {
            run: run.to_string(),
            cmd: cmd.clone(),
        })
    }

    /// Tasks whose end a failed commit lost (see [`RunStore::unrecorded`]).
    pub fn unrecorded(&self) -> Vec<String> {
        self.shared
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .lost
            .clone()
    }

    /// Everything queued is on disk when this returns `Ok`; `Err` when a commit of queued
    /// writes failed (now or before): something queued may be lost.
    pub fn flush(&self) -> Result<()> {
        let mut c = self.shared.conn.lock().unwrap_or_else(|e| e.into_inner());
        let broken = self
            .shared
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .broken
            .clone();
        if let Some(why) = broken {
            return Err(Error::Internal(why));
        }
        self.shared.commit_queued(&mut c)
    }

    /// Records a new run and all its tasks as pending, with each host's roles.
    pub fn create_run(
        &self,
        run: &RunRecord,
        hosts: &[(String, Vec<String>)],
        tasks: &[TaskRow],
    ) -> Result<()> {
        self.with(|c| {
            let tx = c.transaction()?;
            insert_run(&tx, run, hosts, tasks)?;
            tx.commit()
        })
    }

    /// Records one transition, durably, before returning.
    pub fn record(&self, run: &str, e: &Event, started: At) -> Result<()> {
        let w = transition(run, e, started);
        self.with(|c| commit(c, std::slice::from_ref(&w)))
    }

    /// Records what a host learned, durably, before `set_fact` returns to the step.
    pub fn record_fact(&self, run: &str, host: &str, name: &str, value: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO facts (run_id, host, name, value) VALUES (?1, ?2, ?3, ?4)",
                params![run, host, name, value],
            )
            .map(|_| ())
        })
    }

    /// Every fact of a run, as (host, name, value).
    pub fn facts(&self, run: &str) -> Result<Vec<(String, String, String)>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT host, name, value FROM facts WHERE run_id = ?1 ORDER BY host, name",
            )?;
            let rows = st.query_map(params![run], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            rows.collect()
        })
    }

    pub fn set_state(
        &self,
        run: &str,
        state: RunState,
        reason: Option<&str>,
        ended: bool,
    ) -> Result<()> {
        self.with(|c| {
            let tx = c.transaction()?;
            write_state(&tx, run, state, reason, ended)?;
            tx.commit()
        })
    }

    /// Records the run's end and gives back its fleet lock in one transaction (one fsync,
    /// not two at the end of every run): both happen, or neither.
    pub fn end_run(
        &self,
        run: &str,
        state: RunState,
        reason: Option<&str>,
        fleet: &str,
    ) -> Result<()> {
        self.with(|c| {
            let tx = c.transaction()?;
            write_state(&tx, run, state, reason, true)?;
            tx.execute(
                "DELETE FROM locks WHERE fleet = ?1 AND run_id = ?2",
                [fleet, run],
            )?;
            tx.commit()
        })
    }

    fn run_from_row(r: &rusqlite::Row) -> rusqlite::Result<RunRecord> {
        let params: String = r.get("params")?;
        let name: String = r.get("state")?;
        let mut state = RunState::parse(&name).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                0,
                rusqlite::types::Type::Text,
                format!("unknown run state {name:?}").into(),
            )
        })?;
        let pid: i64 = r.get("pid")?;
        let ctl: String = r.get("controller")?;
        if state == RunState::Running && ctl == controller() && !pid_alive(pid) {
            state = RunState::Crashed;
        }
        Ok(RunRecord {
            id: r.get("id")?,
            runbook: r.get("runbook")?,
            runbook_path: r.get("runbook_path")?,
            runbook_digest: r.get("runbook_digest")?,
            inventory_path: r.get("inventory_path")?,
            inventory_digest: r.get("inventory_digest")?,
            params: serde_json::from_str(&params).unwrap_or_default(),
            limit_pattern: r.get("limit_pattern")?,
            user: r.get("user")?,
            controller: ctl,
            pid,
            started_at: r.get("started_at")?,
            ended_at: r.get("ended_at")?,
            state,
            reason: r.get("reason")?,
            lib_digest: r.get("lib_digest")?,
            secret_digests: serde_json::from_str(&r.get::<_, String>("secret_digests")?)
                .unwrap_or_default(),
            pre_approved: serde_json::from_str(&r.get::<_, String>("pre_approved")?)
                .unwrap_or_default(),
        })
    }

    /// A replanned resume: the run goes on with these inputs from now on.
    pub fn replan(&self, run: &RunRecord) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE runs SET runbook_digest = ?2, inventory_digest = ?3, params = ?4, lib_digest = ?5, secret_digests = ?6, pre_approved = ?7 WHERE id = ?1",
                params![
                    run.id,
                    run.runbook_digest,
                    run.inventory_digest,
                    serde_json::to_string(&run.params).unwrap_or_default(),
                    run.lib_digest,
                    serde_json::to_string(&run.secret_digests).unwrap_or_default(),
                    serde_json::to_string(&run.pre_approved).unwrap_or_default(),
                ],
            )
            .map(|_| ())
        })
    }

    pub fn runs(&self) -> Result<Vec<RunRecord>> {
        self.with(|c| {
            let mut st = c.prepare("SELECT * FROM runs ORDER BY started_at DESC, id DESC")?;
            let rows = st.query_map([], Self::run_from_row)?;
            rows.collect()
        })
    }

    /// A run by id, or the newest when `id` is `None`.
    pub fn run(&self, id: Option<&str>) -> Result<RunRecord> {
        let found = match id {
            Some(id) => self.with(|c| {
                c.query_row("SELECT * FROM runs WHERE id = ?1", [id], Self::run_from_row)
                    .optional()
            })?,
            None => self.runs()?.into_iter().next(),
        };
        found.ok_or_else(|| match id {
            Some(id) => Error::input_with_help(
                format!("no run {id} in {}", self.path.display()),
                "`fleetbook runs` lists them",
            ),
            None => Error::input(format!("no run recorded in {} yet", self.path.display())),
        })
    }

    pub fn tasks(&self, run: &str) -> Result<Vec<TaskRow>> {
        self.with(|c| {
            let mut st = c.prepare("SELECT task_id, kind, host, step, role, state, attempt, started_at, ended_at, message FROM tasks WHERE run_id = ?1 ORDER BY rowid")?;
            let rows = st.query_map([run], |r| {
                Ok(TaskRow {
                    task_id: r.get(0)?,
                    kind: r.get(1)?,
                    host: r.get(2)?,
                    step: r.get(3)?,
                    role: r.get(4)?,
                    state: r.get(5)?,
                    attempt: r.get(6)?,
                    started_at: r.get(7)?,
                    ended_at: r.get(8)?,
                    message: r.get(9)?,
                })
            })?;
            rows.collect()
        })
    }

    pub fn hosts(&self, run: &str) -> Result<Vec<(String, Vec<String>)>> {
        self.with(|c| {
            let mut st =
                c.prepare("SELECT host, roles FROM hosts WHERE run_id = ?1 ORDER BY rowid")?;
            let rows = st.query_map([run], |r| {
                let roles: String = r.get(1)?;
                Ok((
                    r.get::<_, String>(0)?,
                    serde_json::from_str(&roles).unwrap_or_default(),
                ))
            })?;
            rows.collect()
        })
    }

    /// Adds tasks that a replanned resume has and the run did not.
    pub fn add_missing_tasks(&self, run: &str, tasks: &[TaskRow]) -> Result<()> {
        self.with(|c| {
            let tx = c.transaction()?;
            for t in tasks {
                tx.execute(
                    "INSERT OR IGNORE INTO tasks (run_id, task_id, kind, host, step, role, state) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![run, t.task_id, t.kind, t.host, t.step, t.role, t.state],
                )?;
            }
            tx.commit()
        })
    }

    pub fn request_abort(&self, run: &str, now: bool) -> Result<()> {
        self.with(|c| {
            let tx = c.transaction()?;
            tx.execute(
                "UPDATE runs SET abort_requested = 1, abort_now = max(abort_now, ?2) WHERE id = ?1",
                params![run, now],
            )?;
            tx.execute(
                "INSERT INTO aborts (run_id, now, requested_by, at) VALUES (?1, ?2, ?3, ?4)",
                params![run, now, user(), At::now()],
            )?;
            tx.commit()
        })
    }

    pub fn save_plan(&self, run: &str, plan_json: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO plans (run_id, plan) VALUES (?1, ?2)",
                params![run, plan_json],
            )
            .map(|_| ())
        })
    }

    pub fn plan(&self, run: &str) -> Result<Option<String>> {
        self.with(|c| {
            c.query_row("SELECT plan FROM plans WHERE run_id = ?1", [run], |r| {
                r.get(0)
            })
            .optional()
        })
    }

    pub fn record_command(&self, run: &str, cmd: &CommandRecord) -> Result<()> {
        self.with(|c| {
            let tx = c.transaction()?;
            write_command(&tx, run, cmd)?;
            tx.commit()
        })
    }

    pub fn commands(&self, run: &str) -> Result<Vec<CommandRecord>> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT task_id, host, attempt, command, exit_code, error, started_at, duration, output_tail, output_bytes FROM commands WHERE run_id = ?1 ORDER BY seq",
            )?;
            let rows = st.query_map([run], |r| {
                Ok(CommandRecord {
                    task_id: r.get(0)?,
                    host: r.get(1)?,
                    attempt: r.get(2)?,
                    command: r.get(3)?,
                    exit_code: r.get(4)?,
                    error: r.get(5)?,
                    started_at: r.get(6)?,
                    duration: crate::clock::span(r.get(7)?),
                    output_tail: r.get(8)?,
                    output_bytes: r.get(9)?,
                })
            })?;
            rows.collect()
        })
    }

    pub fn actions(&self, run: &str) -> Result<Vec<Action>> {
        let mut all = self.with(|c| {
            let mut st =
                c.prepare("SELECT gate, approved_by, at FROM approvals WHERE run_id = ?1")?;
            let approvals: Vec<Action> = st
                .query_map([run], |r| {
                    Ok(Action::Approve {
                        gate: r.get(0)?,
                        by: r.get(1)?,
                        at: r.get(2)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            let mut st = c.prepare("SELECT now, requested_by, at FROM aborts WHERE run_id = ?1")?;
            let aborts: Vec<Action> = st
                .query_map([run], |r| {
                    Ok(Action::Abort {
                        now: r.get(0)?,
                        by: r.get(1)?,
                        at: r.get(2)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            Ok(approvals.into_iter().chain(aborts).collect::<Vec<_>>())
        })?;
        all.sort_by_key(Action::at);
        Ok(all)
    }

    /// (abort requested, kill in-flight steps too)
    pub fn abort_requested(&self, run: &str) -> Result<(bool, bool)> {
        self.with(|c| {
            c.query_row(
                "SELECT abort_requested, abort_now FROM runs WHERE id = ?1",
                [run],
                |r| Ok((r.get::<_, bool>(0)?, r.get::<_, bool>(1)?)),
            )
        })
    }

    pub fn approve(&self, run: &str, gate: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT OR REPLACE INTO approvals (run_id, gate, approved_by, at) VALUES (?1, ?2, ?3, ?4)",
                params![run, gate, user(), At::now()],
            )
            .map(|_| ())
        })
    }

    pub fn approved(&self, run: &str, gate: &str) -> Result<bool> {
        self.with(|c| {
            c.query_row(
                "SELECT count(*) FROM approvals WHERE run_id = ?1 AND gate = ?2",
                [run, gate],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
        })
    }

    /// Takes the fleet lock for `run`. A lock held by another live run is refused; a lock
    /// whose process is gone is reported as stale (break it with `fleetbook unlock`), except
    /// that a run may take over its own stale lock (resume after a crash).
    pub fn lock(&self, fleet: &str, run: &str) -> Result<()> {
        let held = self.with(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let held = take_lock(&tx, fleet, run)?;
            tx.commit()?;
            Ok(held)
        })?;
        held.map_or(Ok(()), |l| Err(locked(l)))
    }

    /// Takes the fleet lock and records a new run with its plan, in one transaction (one
    /// fsync before the first connection, not three): all of it, or nothing.
    pub fn begin_run(
        &self,
        fleet: &str,
        run: &RunRecord,
        hosts: &[(String, Vec<String>)],
        tasks: &[TaskRow],
        plan_json: &str,
    ) -> Result<()> {
        let held = self.with(|c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            if let Some(l) = take_lock(&tx, fleet, &run.id)? {
                return Ok(Some(l));
            }
            insert_run(&tx, run, hosts, tasks)?;
            tx.execute(
                "INSERT OR REPLACE INTO plans (run_id, plan) VALUES (?1, ?2)",
                params![run.id, plan_json],
            )?;
            tx.commit()?;
            Ok(None)
        })?;
        held.map_or(Ok(()), |l| Err(locked(l)))
    }

    pub fn unlock(&self, fleet: &str, run: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "DELETE FROM locks WHERE fleet = ?1 AND run_id = ?2",
                [fleet, run],
            )
            .map(|_| ())
        })
    }

    pub fn locks(&self) -> Result<Vec<LockInfo>> {
        self.with(|c| {
            let mut st =
                c.prepare("SELECT fleet, run_id, pid, user, controller, since FROM locks")?;
            let rows = st.query_map([], lock_from_row)?;
            rows.collect()
        })
    }

    pub fn break_lock(&self, fleet: &str) -> Result<()> {
        self.with(|c| {
            c.execute("DELETE FROM locks WHERE fleet = ?1", [fleet])
                .map(|_| ())
        })
    }
}

/// A transition as it is queued.
fn transition(run: &str, e: &Event, started: At) -> Queued {
    Queued::Transition {
        run: run.to_string(),
        at: started.after(e.at),
        task: e.task.clone(),
        state: e.state,
        attempt: e.attempt,
        message: e.message.clone(),
    }
}

impl Drop for Journal {
    /// The flusher commits what is left, then ends.
    fn drop(&mut self) {
        self.shared
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .closing = true;
        self.shared.wake.notify_one();
        if let Some(h) = self
            .flusher
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            let _ = h.join();
        }
        // Sealed only when everything queued was committed (a failed commit may have left
        // the journal in a state worth checking).
        let c = self.shared.conn.lock().unwrap_or_else(|e| e.into_inner());
        let q = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
        // And only by the last opener: another may write after this seal, or crash.
        if q.broken.is_none() && q.writes.is_empty() && last_opener(self.openers.as_ref()) {
            seal(&self.path);
        } else if let Some(dir) = self.path.parent() {
            let _ = std::fs::remove_file(dir.join(SEAL));
        }
        drop((q, c));
    }
}

impl RunStore for Journal {
    fn location(&self) -> String {
        self.path.display().to_string()
    }
    fn create_run(
        &self,
        run: &RunRecord,
        hosts: &[(String, Vec<String>)],
        tasks: &[TaskRow],
    ) -> StoreResult<()> {
        Ok(Journal::create_run(self, run, hosts, tasks)?)
    }
    fn run(&self, id: Option<&str>) -> StoreResult<RunRecord> {
        Ok(Journal::run(self, id)?)
    }
    fn runs(&self) -> StoreResult<Vec<RunRecord>> {
        Ok(Journal::runs(self)?)
    }
    fn tasks(&self, run: &str) -> StoreResult<Vec<TaskRow>> {
        Ok(Journal::tasks(self, run)?)
    }
    fn hosts(&self, run: &str) -> StoreResult<Vec<(String, Vec<String>)>> {
        Ok(Journal::hosts(self, run)?)
    }
    fn add_missing_tasks(&self, run: &str, tasks: &[TaskRow]) -> StoreResult<()> {
        Ok(Journal::add_missing_tasks(self, run, tasks)?)
    }
    fn record(&self, run: &str, e: &Event, started: At) -> StoreResult<()> {
        Ok(Journal::record(self, run, e, started)?)
    }
    fn record_queued(&self, run: &str, e: &Event, started: At) -> StoreResult<()> {
        Ok(Journal::record_queued(self, run, e, started)?)
    }
    fn record_command_queued(&self, run: &str, c: &CommandRecord) -> StoreResult<()> {
        Ok(Journal::record_command_queued(self, run, c)?)
    }
    fn flush(&self) -> StoreResult<()> {
        Ok(Journal::flush(self)?)
    }
    fn unrecorded(&self) -> Vec<String> {
        Journal::unrecorded(self)
    }
    fn record_fact(&self, run: &str, host: &str, name: &str, value: &str) -> StoreResult<()> {
        Ok(Journal::record_fact(self, run, host, name, value)?)
    }
    fn facts(&self, run: &str) -> StoreResult<Vec<(String, String, String)>> {
        Ok(Journal::facts(self, run)?)
    }
    fn set_state(
        &self,
        run: &str,
        state: RunState,
        reason: Option<&str>,
        ended: bool,
    ) -> StoreResult<()> {
        Ok(Journal::set_state(self, run, state, reason, ended)?)
    }
    fn replan(&self, run: &RunRecord) -> StoreResult<()> {
        Ok(Journal::replan(self, run)?)
    }
    fn request_abort(&self, run: &str, now: bool) -> StoreResult<()> {
        Ok(Journal::request_abort(self, run, now)?)
    }
    fn abort_requested(&self, run: &str) -> StoreResult<(bool, bool)> {
        Ok(Journal::abort_requested(self, run)?)
    }
    fn approve(&self, run: &str, gate: &str) -> StoreResult<()> {
        Ok(Journal::approve(self, run, gate)?)
    }
    fn approved(&self, run: &str, gate: &str) -> StoreResult<bool> {
        Ok(Journal::approved(self, run, gate)?)
    }
    fn lock(&self, fleet: &str, run: &str) -> StoreResult<()> {
        Ok(Journal::lock(self, fleet, run)?)
    }
    fn unlock(&self, fleet: &str, run: &str) -> StoreResult<()> {
        Ok(Journal::unlock(self, fleet, run)?)
    }
    fn end_run(
        &self,
        run: &str,
        state: RunState,
        reason: Option<&str>,
        fleet: &str,
    ) -> StoreResult<()> {
        Ok(Journal::end_run(self, run, state, reason, fleet)?)
    }
    fn begin_run(
        &self,
        fleet: &str,
        run: &RunRecord,
        hosts: &[(String, Vec<String>)],
        tasks: &[TaskRow],
        plan_json: &str,
    ) -> StoreResult<()> {
        Ok(Journal::begin_run(
            self, fleet, run, hosts, tasks, plan_json,
        )?)
    }
    fn locks(&self) -> StoreResult<Vec<LockInfo>> {
        Ok(Journal::locks(self)?)
    }
    fn break_lock(&self, fleet: &str) -> StoreResult<()> {
        Ok(Journal::break_lock(self, fleet)?)
    }
    fn save_plan(&self, run: &str, plan_json: &str) -> StoreResult<()> {
        Ok(Journal::save_plan(self, run, plan_json)?)
    }
    fn plan(&self, run: &str) -> StoreResult<Option<String>> {
        Ok(Journal::plan(self, run)?)
    }
    fn record_command(&self, run: &str, c: &CommandRecord) -> StoreResult<()> {
        Ok(Journal::record_command(self, run, c)?)
    }
    fn commands(&self, run: &str) -> StoreResult<Vec<CommandRecord>> {
        Ok(Journal::commands(self, run)?)
    }
    fn actions(&self, run: &str) -> StoreResult<Vec<Action>> {
        Ok(Journal::actions(self, run)?)
    }
}

/// A new run id: a ULID, unique across controllers and sortable by the time it was made.
pub fn new_run_id() -> String {
    ulid::Ulid::new().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: f64) -> At {
        At::from_unix(secs).unwrap()
    }

    #[test]
    fn a_journal_is_checked_again_once_anything_wrote_to_it_since_it_was_closed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        drop(Journal::open(dir.path()).unwrap());
        assert!(sealed(dir.path(), &path), "closed as it was left");
        drop(Journal::open(dir.path()).unwrap());
        assert!(sealed(dir.path(), &path), "reopened and closed again");
        // Another tool's write of the same bytes (same size) still changes what the seal
        // recorded: the next open checks the whole journal.
        std::fs::write(&path, std::fs::read(&path).unwrap()).unwrap();
        assert!(!sealed(dir.path(), &path));
        drop(Journal::open(dir.path()).unwrap());
        assert!(sealed(dir.path(), &path));
        // So does a write to its log, and a lost seal.
        use std::io::Write;
        let wal = dir.path().join(format!("{FILE}-wal"));
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&wal)
            .unwrap()
            .write_all(b"x")
            .unwrap();
        assert!(!sealed(dir.path(), &path));
        drop(Journal::open(dir.path()).unwrap());
        std::fs::remove_file(dir.path().join(SEAL)).unwrap();
        assert!(!sealed(dir.path(), &path));
    }

    #[test]
    fn only_the_last_opener_seals_so_a_crash_of_another_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        drop(Journal::open(dir.path()).unwrap());
        assert!(sealed(dir.path(), &path));
        // A run has the journal open; `status` opens and closes it meanwhile; then the run
        // dies without closing (kill -9: no Drop). The next open must check.
        let run = Journal::open(dir.path()).unwrap();
        drop(Journal::open(dir.path()).unwrap());
        assert!(
            !sealed(dir.path(), &path),
            "sealed by an opener that was not the last"
        );
        std::mem::forget(run);
        assert!(!sealed(dir.path(), &path));
    }

    #[test]
    fn a_new_state_directory_is_the_owners_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("a/state");
        Journal::open(&state).unwrap();
        let mode = std::fs::metadata(&state).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{mode:o}");
    }

    #[test]
    fn a_schema_1_journal_keeps_its_runs_and_gains_facts() {
        let dir = tempfile::tempdir().unwrap();
        Connection::open(dir.path().join(FILE))
            .unwrap()
            .execute_batch(&format!(
                "{SCHEMA} INSERT INTO runs (id, runbook, runbook_path, runbook_digest, inventory_path, inventory_digest, params, user, controller, pid, started_at, state) \
                 VALUES ('r1', 'rb', 'rb.rhai', 'd', 'hosts', 'd', '{{}}', 'u', 'c', 1, 0, 'halted'); PRAGMA user_version = 1;"
            ))
            .unwrap();
        let j = Journal::open(dir.path()).unwrap();
        assert_eq!(j.run(Some("r1")).unwrap().state, RunState::Halted);
        j.record_fact("r1", "web1", "previous_version", "1.0")
            .unwrap();
        j.record_fact("r1", "web1", "previous_version", "1.1")
            .unwrap();
        assert_eq!(
            j.facts("r1").unwrap(),
            [("web1".into(), "previous_version".into(), "1.1".into())]
        );
        drop(j);
        // Opened again: already at the current schema, nothing to do.
        let v: i32 = Connection::open(dir.path().join(FILE))
            .unwrap()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        assert!(Journal::open(dir.path()).is_ok());
    }

    /// A journal written before commands and plans were kept opens, keeps its runs, and gains
    /// the new tables (its old runs simply have no plan and no commands).
    #[test]
    fn a_schema_3_journal_gains_plans_commands_and_aborts() {
        let dir = tempfile::tempdir().unwrap();
        Connection::open(dir.path().join(FILE))
            .unwrap()
            .execute_batch(&format!(
                "{SCHEMA} {FACTS} {INPUTS} INSERT INTO runs (id, runbook, runbook_path, runbook_digest, inventory_path, inventory_digest, params, user, controller, pid, started_at, state) \
                 VALUES ('r1', 'rb', 'rb.rhai', 'd', 'hosts', 'd', '{{}}', 'u', 'c', 1, 0, 'halted'); \
                 INSERT INTO approvals (run_id, gate, approved_by, at) VALUES ('r1', 'go', 'alice', 5); PRAGMA user_version = 3;"
            ))
            .unwrap();
        let j = Journal::open(dir.path()).unwrap();
        assert_eq!(j.run(Some("r1")).unwrap().state, RunState::Halted);
        assert_eq!(j.plan("r1").unwrap(), None);
        assert!(j.commands("r1").unwrap().is_empty());
        assert_eq!(
            j.actions("r1").unwrap(),
            [Action::Approve {
                gate: "go".into(),
                by: "alice".into(),
                at: at(5.0)
            }]
        );
        j.request_abort("r1", false).unwrap();
        assert!(matches!(
            j.actions("r1").unwrap()[1],
            Action::Abort { now: false, .. }
        ));
    }

    #[test]
    fn newer_schemas_and_foreign_files_are_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(FILE),
            b"this is not sqlite at all, just bytes",
        )
        .unwrap();
        let e = Journal::open(dir.path()).err().unwrap().to_string();
        assert!(e.contains("not a fleetbook journal or is corrupted"), "{e}");
        assert_eq!(
            std::fs::read(dir.path().join(FILE)).unwrap(),
            b"this is not sqlite at all, just bytes"
        );

        let dir = tempfile::tempdir().unwrap();
        Connection::open(dir.path().join(FILE))
            .unwrap()
            .execute_batch("PRAGMA user_version = 99;")
            .unwrap();
        let e = Journal::open(dir.path()).err().unwrap().to_string();
        assert!(e.contains("schema version 99, newer"), "{e}");
    }

    #[test]
    fn secret_digests_are_salted_with_the_run_and_the_name() {
        let d = secret_digest("r1", "token", "hunter2");
        assert_eq!(d, secret_digest("r1", "token", "hunter2"));
        assert!(d.starts_with("sha256:") && !d.contains("hunter2"));
        assert_ne!(d, secret_digest("r2", "token", "hunter2"));
        assert_ne!(d, secret_digest("r1", "password", "hunter2"));
        assert_ne!(d, crate::plan::digest(b"hunter2"));
    }

    #[test]
    fn a_new_journal_is_readable_by_others_and_leaves_no_temporary_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        drop(Journal::open(dir.path()).unwrap());
        let mode = std::fs::metadata(dir.path().join(FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644);
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".new"))
            .collect();
        assert!(names.is_empty(), "{names:?}");
    }

    #[test]
    fn locks_are_exclusive_and_stale_ones_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        j.lock("fleet", "r1").unwrap();
        let e = j.lock("fleet", "r2").err().unwrap().to_string();
        assert!(e.contains("locked by run r1"), "{e}");
        // A holder whose process is gone.
        j.with(|c| c.execute("UPDATE locks SET pid = 999999999", []))
            .unwrap();
        let e = j.lock("fleet", "r2").err().unwrap();
        assert!(e.to_string().contains("no longer running"), "{e}");
        // The same run may take its own stale lock back.
        j.lock("fleet", "r1").unwrap();
        j.unlock("fleet", "r1").unwrap();
        j.lock("fleet", "r2").unwrap();
    }

    /// A new run's lock, record and plan are one write: a run refused the lock leaves no
    /// record. Its end and the lock's release are one write too.
    #[test]
    fn a_run_begins_and_ends_with_its_lock() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        j.begin_run(
            "fleet",
            &test_run("r1"),
            &[],
            &[test_task("host:w1:s")],
            "{}",
        )
        .unwrap();
        assert_eq!(j.plan("r1").unwrap().as_deref(), Some("{}"));
        assert_eq!(j.locks().unwrap()[0].run_id, "r1");
        let e = j
            .begin_run("fleet", &test_run("r2"), &[], &[], "{}")
            .err()
            .unwrap();
        assert!(e.to_string().contains("locked by run r1"), "{e}");
        assert!(j.run(Some("r2")).is_err(), "a refused run was recorded");
        assert_eq!(j.plan("r2").unwrap(), None);
        j.end_run("r1", RunState::Succeeded, None, "fleet").unwrap();
        assert!(j.locks().unwrap().is_empty());
        let r1 = j.run(Some("r1")).unwrap();
        assert_eq!(r1.state, RunState::Succeeded);
        assert!(r1.ended_at.is_some());
    }

    /// A task state fleetbook never wrote is a corrupt journal, reported with the name
    /// found, not a panic and not a state read as another.
    #[test]
    fn an_unknown_task_state_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        j.create_run(&test_run("r1"), &[], &[test_task("host:w1:s")])
            .unwrap();
        Connection::open(dir.path().join(FILE))
            .unwrap()
            .execute_batch("UPDATE tasks SET state = 'exploded'")
            .unwrap();
        let e = j.tasks("r1").unwrap_err().to_string();
        assert!(e.contains("unknown task state \"exploded\""), "{e}");
    }

    /// Queued writes are on disk for another process once `flush` returns; a commit that
    /// fails is reported by `flush`, and every write queued after it is refused, so a run
    /// stops before it sends a command whose start a resume could not see.
    #[test]
    fn queued_writes_reach_other_readers_at_flush_and_a_failed_commit_refuses_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        j.create_run(&test_run("r1"), &[], &[test_task("host:w1:s")])
            .unwrap();
        let other = Connection::open(dir.path().join(FILE)).unwrap();
        let state = || -> TaskState {
            other
                .query_row(
                    "SELECT state FROM tasks WHERE task_id = 'host:w1:s'",
                    [],
                    |r| r.get(0),
                )
                .unwrap()
        };
        j.record_queued("r1", &test_event(State::Running), at(100.0))
            .unwrap();
        j.flush().unwrap();
        assert_eq!(state(), TaskState::Running);

        // Another process breaks the journal: the next commit fails.
        other.execute_batch("DROP TABLE commands;").unwrap();
        let cmd = CommandRecord {
            task_id: Some("host:w1:s".into()),
            host: "w1".into(),
            attempt: 1,
            command: "true".into(),
            exit_code: Some(0),
            error: None,
            started_at: at(101.0),
            duration: Duration::from_millis(100),
            output_tail: String::new(),
            output_bytes: 0,
        };
        j.record_command_queued("r1", &cmd).unwrap();
        // Refused already if the flusher tried the commit first.
        let _ = j.record_queued("r1", &test_event(State::Ok), at(100.0));
        let e = j.flush().unwrap_err().to_string();
        assert!(e.contains("no such table: commands"), "{e}");
        assert_eq!(state(), TaskState::Running, "all of a commit or none of it");
        let e = j
            .record_queued("r1", &test_event(State::Ok), at(100.0))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no such table: commands"), "{e}");
        assert!(j.flush().is_err());
        assert_eq!(j.unrecorded(), ["host:w1:s"], "its end was lost");
    }

    fn test_run(id: &str) -> RunRecord {
        RunRecord {
            id: id.into(),
            runbook: "rb".into(),
            runbook_path: "/rb.rhai".into(),
            runbook_digest: "d".into(),
            inventory_path: "/hosts".into(),
            inventory_digest: "d".into(),
            params: Default::default(),
            limit_pattern: None,
            user: "ops".into(),
            controller: controller(),
            pid: std::process::id() as i64,
            started_at: at(100.0),
            ended_at: None,
            state: RunState::Running,
            reason: None,
            lib_digest: None,
            secret_digests: Default::default(),
            pre_approved: vec![],
        }
    }

    fn test_task(id: &str) -> TaskRow {
        TaskRow {
            task_id: id.into(),
            kind: "host".into(),
            host: Some("w1".into()),
            step: Some("s".into()),
            role: None,
            state: TaskState::Pending,
            attempt: 0,
            started_at: None,
            ended_at: None,
            message: None,
        }
    }

    fn test_event(state: State) -> Event {
        Event {
            at: Duration::from_secs(1),
            task: "host:w1:s".into(),
            kind: crate::compile::TaskKind::Host,
            host: Some("w1".into()),
            step: Some("s".into()),
            role: None,
            state,
            attempt: 1,
            message: None,
        }
    }

    /// A read-only journal file and one of garbage are fatal: the run cannot go on with
    /// either, however often it tries.
    #[test]
    fn a_read_only_or_garbage_journal_is_fatal() {
        use std::os::unix::fs::PermissionsExt;
        let check = crate::store::conformance::check_unusable;
        let ro = tempfile::tempdir().unwrap();
        // Root writes a file whatever its mode: there, the journal is on a file system
        // mounted read-only (a tmpfs the test mounts).
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let mount = |args: &[&str]| {
            let ok = std::process::Command::new("mount")
                .args(args)
                .arg(ro.path())
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "mount {args:?}");
        };
        if root {
            mount(&["-t", "tmpfs", "-o", "size=1m", "tmpfs"]);
        }
        Journal::open(ro.path()).unwrap();
        if root {
            mount(&["-o", "remount,ro"]);
        } else {
            let file = ro.path().join(FILE);
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o444)).unwrap();
        }
        let opened = crate::store::open(ro.path());
        if root {
            let _ = std::process::Command::new("umount").arg(ro.path()).status();
        }
        check(opened, "is read-only");

        let garbage = tempfile::tempdir().unwrap();
        std::fs::write(garbage.path().join(FILE), vec![0x5a; 8192]).unwrap();
        check(
            crate::store::open(garbage.path()),
            "is not a fleetbook journal or is corrupted",
        );
    }

    /// Another process holding a write transaction past the busy timeout is recoverable:
    /// once it lets go, the same write goes through.
    #[test]
    fn a_busy_journal_is_recoverable() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        j.create_run(&test_run("r1"), &[], &[test_task("host:w1:s")])
            .unwrap();
        j.set_busy_timeout(Duration::from_millis(10));
        let other = Connection::open(dir.path().join(FILE)).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let store: &dyn RunStore = &j;
        let err = store.record_fact("r1", "w1", "k", "v").unwrap_err();
        assert!(!err.is_fatal(), "{err}");
        assert!(err.to_string().contains("database is locked"), "{err}");
        other.execute_batch("COMMIT").unwrap();
        store.record_fact("r1", "w1", "k", "v").unwrap();
        assert_eq!(store.facts("r1").unwrap().len(), 1);
    }

    /// The SQLite journal does all a run store must.
    #[test]
    fn the_sqlite_journal_conforms_to_the_run_store() {
        let dirs = std::sync::Mutex::new(Vec::new());
        crate::store::conformance::check_all(&|| {
            let d = tempfile::tempdir().unwrap();
            let j: std::sync::Arc<dyn RunStore> =
                std::sync::Arc::new(Journal::open(d.path()).unwrap());
            dirs.lock().unwrap().push(d);
            j
        });
    }
}
