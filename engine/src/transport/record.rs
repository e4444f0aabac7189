//! A transport that keeps what each command did: the exit status, the duration and a capped
//! tail of the output go to the run store (for reports and the live view), the whole output
//! to a file per host next to the journal. Everything it keeps is redacted first.
//!
//! Before it sends a command it has the store commit what is queued ([`RunStore::flush`]):
//! the transitions reach the store queued, and the start of a task must be on disk before
//! anything of it runs on a host.
//!
//! The executor does not say which task a command belongs to, so the recorder follows the
//! task transitions ([`Recording::event`]): a host runs one task at a time. What a task's
//! commands did is kept when the task ends, redacted then: a value the task learned and made
//! a secret (`set_fact` of a credential) is redacted from the output that brought it too.

use crate::clock::At;
use crate::exec::{Event, State};
use crate::journal::{CommandRecord, OUTPUT_TAIL};
use crate::secrets::Secrets;
use crate::store::RunStore;
use fleetbook_stdlib::{HostInfo, Output, Transport, TransportError};
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The longest command line kept (a generated script can be long; the plan has it whole).
const COMMAND_CAP: usize = 2048;

pub struct Recording {
    inner: Arc<dyn Transport>,
    store: Arc<dyn RunStore>,
    run: String,
    secrets: Secrets,
    /// Where the whole output of each host goes (`HOST.log`), if anywhere.
    dir: Option<PathBuf>,
    /// host -> (task, attempt) running on it now.
    current: Mutex<HashMap<String, (String, u32)>>,
    /// Runbook-level tasks running now (they name no host).
    hostless: Mutex<Vec<(String, u32)>>,
    /// What each running task's commands did, not yet redacted nor kept.
    pending: Mutex<Vec<Pending>>,
}

/// One command's outcome, kept in memory until its task ends.
struct Pending {
    task: Option<String>,
    host: String,
    command: String,
    output: String,
    exit_code: Option<i64>,
    error: Option<String>,
    attempt: u32,
    started_at: At,
    duration: Duration,
}

impl Recording {
    pub fn new(
        inner: Arc<dyn Transport>,
        store: Arc<dyn RunStore>,
        run: &str,
        secrets: Secrets,
        dir: Option<PathBuf>,
    ) -> Recording {
        Recording {
            inner,
            store,
            run: run.to_string(),
            secrets,
            dir,
            current: Mutex::default(),
            hostless: Mutex::default(),
            pending: Mutex::default(),
        }
    }

    /// Follows a task transition, to know which task the next commands of its host are for.
    pub fn event(&self, e: &Event) {
        let running = matches!(e.state, State::Running | State::RollingBack);
        if !running {
            self.flush(Some(&e.task));
        }
        match &e.host {
            Some(h) => {
                let mut cur = self.current.lock().unwrap_or_else(|x| x.into_inner());
                if running {
                    cur.insert(h.clone(), (e.task.clone(), e.attempt));
                } else if cur.get(h).is_some_and(|(t, _)| *t == e.task) {
                    cur.remove(h);
                }
            }
            None => {
                let mut hl = self.hostless.lock().unwrap_or_else(|x| x.into_inner());
                hl.retain(|(t, _)| *t != e.task);
                if running {
                    hl.push((e.task.clone(), e.attempt));
                }
            }
        }
    }

    fn task_of(&self, host: &HostInfo) -> (Option<String>, u32) {
        let name = host.delegate_for.as_deref().unwrap_or(&host.name);
        if let Some((t, a)) = self
            .current
            .lock()
            .unwrap_or_else(|x| x.into_inner())
            .get(name)
        {
            return (Some(t.clone()), *a);
        }
        match self
            .hostless
            .lock()
            .unwrap_or_else(|x| x.into_inner())
            .as_slice()
        {
            [(t, a)] => (Some(t.clone()), *a),
            _ => (None, 0),
        }
    }

    fn keep(
        &self,
        host: &HostInfo,
        command: &str,
        started: (At, Instant),
        out: &Result<Output, TransportError>,
    ) {
        let (task, attempt) = self.task_of(host);
        let (exit_code, error, output) = match out {
            Ok(o) => (
                Some(o.code as i64),
                None,
                format!("{}{}", o.stdout, o.stderr),
            ),
            Err(e) => (None, Some(e.to_string()), String::new()),
        };
        let p = Pending {
            task,
            host: host.name.clone(),
            command: command.to_string(),
            output,
            exit_code,
            error,
            attempt,
            started_at: started.0,
            duration: started.1.elapsed(),
        };
        // A command of no known task is kept at once; the others when their task ends.
        match p.task {
            Some(_) => self
                .pending
                .lock()
                .unwrap_or_else(|x| x.into_inner())
                .push(p),
            None => self.write(p),
        }
    }

    /// Keeps what the commands of `task` did (of every task: `None`), redacted now.
    fn flush(&self, task: Option<&str>) {
        let done: Vec<Pending> = {
            let mut pending = self.pending.lock().unwrap_or_else(|x| x.into_inner());
            let (done, left) = std::mem::take(&mut *pending)
                .into_iter()
                .partition(|p| task.is_none() || p.task.as_deref() == task);
            *pending = left;
            done
        };
        for p in done {
            self.write(p);
        }
    }

    fn write(&self, p: Pending) {
        let output = self.secrets.redacted(&p.output);
        let command = self.secrets.redacted(&p.command);
        self.write_full(&p.host, &command, &output, p.exit_code, p.duration);
        let record = CommandRecord {
            task_id: p.task,
            host: p.host.clone(),
            attempt: p.attempt as i64,
            command: head(&command, COMMAND_CAP),
            exit_code: p.exit_code,
            error: p.error.map(|e| self.secrets.redacted(&e)),
            started_at: p.started_at,
            duration: p.duration,
            output_tail: tail(&output, OUTPUT_TAIL),
            output_bytes: output.len() as i64,
        };
        if let Err(e) = self.store.record_command_queued(&self.run, &record) {
            // The transitions are what a resume needs; a lost output tail only thins a report.
            tracing::warn!(host = %p.host, error = %e, "a command's output could not be kept");
        }
    }

    fn write_full(
        &self,
        host: &str,
        command: &str,
        output: &str,
        code: Option<i64>,
        took: Duration,
    ) {
        let Some(dir) = &self.dir else { return };
        let file = dir.join(format!("{}.log", file_name(host)));
        // Output may hold what only root should read on the hosts: owner-only, like ssh's.
        let written = crate::journal::private_dir(dir).and_then(|_| {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(&file)?;
            let code = code.map_or("did not run".to_string(), |c| format!("exit {c}"));
            let secs = took.as_secs_f64();
            write!(f, "$ {command}\n{output}[{code}, {secs:.1}s]\n")
        });
        if let Err(e) = written {
            tracing::warn!(file = %file.display(), error = %e, "a command's output could not be written");
        }
    }
}

/// A host name as a file name: nothing that leaves the directory. A name that had to be
/// changed gets a digest of the original, so that `web/1` and `web:1` keep separate logs.
fn file_name(host: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
    let mut name: String = host
        .chars()
        .map(|c| if safe(c) { c } else { '_' })
        .collect::<String>()
        .trim_start_matches('.')
        .to_string();
    if name != host || name.is_empty() {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(host.as_bytes());
        let short: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
        name = format!("{name}-{short}");
    }
    name
}

/// The last `cap` bytes of `s`, cut at a character boundary.
pub fn tail(s: &str, cap: usize) -> String {
    if s.len() <= cap {
        return s.to_string();
    }
    let mut at = s.len() - cap;
    while !s.is_char_boundary(at) {
        at += 1;
    }
    s[at..].to_string()
}

fn head(s: &str, cap: usize) -> String {
    if s.len() <= cap {
        return s.to_string();
    }
    let mut at = cap;
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    format!("{}…", &s[..at])
}

impl Recording {
    /// Before a command is sent: the store has every transition queued so far on disk (the
    /// start of this command's task among them), or the command is not sent.
    fn stored_first(&self) -> Result<(), TransportError> {
        self.store.flush().map_err(|e| {
            TransportError::Other(format!(
                "not sent: the run store could not record the task's start ({e})"
            ))
        })
    }
}

impl Transport for Recording {
    fn exec(
        &self,
        host: &HostInfo,
        command: &str,
        timeout: Option<Duration>,
    ) -> Result<Output, TransportError> {
        self.stored_first()?;
        let started = (At::now(), Instant::now());
        let out = self.inner.exec(host, command, timeout);
        self.keep(host, command, started, &out);
        out
    }

    fn exec_with_input(
        &self,
        host: &HostInfo,
        command: &str,
        input: &[u8],
        timeout: Option<Duration>,
    ) -> Result<Output, TransportError> {
        self.stored_first()?;
        let started = (At::now(), Instant::now());
        let out = self.inner.exec_with_input(host, command, input, timeout);
        self.keep(host, command, started, &out);
        out
    }

    fn disconnect(&self, host: &HostInfo) {
        self.inner.disconnect(host)
    }
    fn connect_ahead(&self, hosts: &[&HostInfo]) {
        self.inner.connect_ahead(hosts)
    }

    fn finished_with(&self, host: &HostInfo) {
        self.inner.finished_with(host)
    }

    fn without_root(&self, host: &HostInfo, op: &str, command: &str) {
        self.inner.without_root(host, op, command)
    }
    fn assumed(&self, host: &HostInfo, op: &str, assumption: &str) {
        self.inner.assumed(host, op, assumption)
    }
    fn is_dry_run(&self) -> bool {
        self.inner.is_dry_run()
    }
    fn kill_all(&self) {
        self.inner.kill_all()
    }
    fn is_killed(&self) -> bool {
        self.inner.is_killed()
    }
    fn shutdown(&self) {
        // The run is over: what is still pending (a task cut short) is kept now.
        self.flush(None);
        self.inner.shutdown()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_and_heads_cut_at_character_boundaries() {
        assert_eq!(tail("abcdef", 3), "def");
        assert_eq!(tail("ab", 3), "ab");
        assert_eq!(tail("aéé", 3), "é");
        assert_eq!(head("ééé", 3), "é…");
    }

    #[test]
    fn host_names_cannot_leave_the_output_directory() {
        assert!(file_name("../../etc/passwd").starts_with("_.._etc_passwd-"));
        assert!(file_name("<img src=x>").starts_with("_img_src_x_-"));
        assert_eq!(file_name("web-1.example"), "web-1.example");
        // Two names that differ only where they were unsafe keep separate files.
        assert_ne!(file_name("web/1"), file_name("web:1"));
        assert!(!file_name(".hidden").starts_with('.'));
    }
}
