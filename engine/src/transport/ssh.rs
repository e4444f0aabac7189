//! The SSH transport: one OpenSSH master connection per host (the `openssh` crate, native
//! multiplexing), reused for every command. Host keys are checked strictly unless the user
//! explicitly relaxes it. The master has an idle `ControlPersist`, so a crashed fleetbook
//! leaves no ssh behind for long. Every command runs under `timeout(1)` on the host when the
//! step has a timeout, because a local timeout alone would leave it running there.

use fleetbook_stdlib::quote::quote;
use fleetbook_stdlib::{HostInfo, Output, Transport, TransportError};
use openssh::{ControlPersist, KnownHosts, Session, SessionBuilder, Stdio};
use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OnceCell, Semaphore};

#[derive(Debug, Clone)]
pub struct SshOptions {
    /// `-F FILE`: read this ssh config instead of `~/.ssh/config`.
    pub config_file: Option<PathBuf>,
    /// Accept unknown host keys (and add them to known_hosts). Off by default.
    pub accept_new_host_keys: bool,
    pub connect_timeout: Duration,
    /// Commands in flight per host (sshd refuses the 11th session by default).
    pub max_per_host: usize,
}

impl Default for SshOptions {
    fn default() -> Self {
        SshOptions {
            config_file: None,
            accept_new_host_keys: false,
            connect_timeout: Duration::from_secs(10),
            max_per_host: 4,
        }
    }
}

type Conn = Arc<OnceCell<Result<Arc<Session>, String>>>;

/// Masters exit after this long idle (ControlPersist), so a crash leaves no ssh behind.
const CONTROL_PERSIST: usize = 60;
/// A master idle longer than this is checked before use.
const IDLE_CHECK: u64 = 30;

pub struct Ssh {
    rt: tokio::runtime::Runtime,
    opts: SshOptions,
    control_dir: tempfile::TempDir,
    sessions: Mutex<HashMap<String, Conn>>,
    permits: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// When each host's master was last used: an idle master exits after ControlPersist.
    last_used: Mutex<HashMap<String, Instant>>,
    killed: AtomicBool,
    /// The stdin of each command in flight, by a command number: written to kill it.
    in_flight: Mutex<HashMap<u64, openssh::ChildStdin>>,
    next_command: std::sync::atomic::AtomicU64,
}

/// Seconds for `timeout(1)`, rounded up so a command never gets less than it was given.
fn remote_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// What fleetbook writes to a command's stdin to have it stopped on the host.
const KILL_LINE: &[u8] = b"kill\n";

/// The command line sent to the host: always `sh -c`, whatever the login shell is.
///
/// The command runs in its own session (`setsid`), beside a watcher that reads the channel's
/// stdin, which fleetbook holds open and writes only to kill: on `kill` the watcher stops the
/// command's whole process group (TERM, then KILL after 5 s). Closing the SSH connection alone
/// would not stop it (sshd sends no signal without a tty). Plain end of input (the command
/// ended, or fleetbook died) stops nothing: a crashed controller leaves its hosts to finish
/// what they were doing (an apt run cut in half is worse than one that completes), and
/// `resume` takes it from there.
pub fn remote_command(command: &str, timeout: Option<Duration>) -> String {
    let run = match timeout {
        Some(t) => format!(
            "timeout -k 5 {} sh -c {}",
            remote_secs(t).max(1),
            quote(command)
        ),
        None => format!("sh -c {}", quote(command)),
    };
    let script = format!(
        "exec 3<&0; setsid {run} </dev/null 3<&- & c=$!; \
         {{ read -r w <&3 && [ \"$w\" = kill ] && {{ kill -TERM -$c; sleep 5; kill -KILL -$c; }}; }} >/dev/null 2>&1 & w=$!; \
         exec 3<&-; wait $c; r=$?; kill $w 2>/dev/null; exit $r"
    );
    format!("sh -c {}", quote(&script))
}

fn describe(e: &openssh::Error) -> String {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(s.to_string().trim());
        src = s.source();
    }
    msg
}

/// `ssh -O exit` on a control socket: ends the master and every session on it.
fn exit_master(socket: &std::path::Path) {
    let _ = std::process::Command::new("ssh")
        .arg("-S")
        .arg(socket)
        .args(["-O", "exit", "fleetbook-host"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

impl Ssh {
    pub fn new(opts: SshOptions) -> std::io::Result<Ssh> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("fleetbook-ssh")
            .build()?;
        // A short directory: control socket paths must fit in sun_path (108 bytes).
        let control_dir = tempfile::Builder::new().prefix("fb-").tempdir_in("/tmp")?;
        Ok(Ssh {
            rt,
            opts,
            control_dir,
            sessions: Mutex::default(),
            permits: Mutex::default(),
            last_used: Mutex::default(),
            killed: AtomicBool::new(false),
            in_flight: Mutex::default(),
            next_command: Default::default(),
        })
    }

    fn builder(&self, host: &HostInfo) -> SessionBuilder {
        let mut b = SessionBuilder::default();
        b.known_hosts_check(if self.opts.accept_new_host_keys {
            KnownHosts::Add
        } else {
            KnownHosts::Strict
        })
        .connect_timeout(self.opts.connect_timeout)
        .server_alive_interval(Duration::from_secs(15))
        .control_directory(self.control_dir.path())
        .control_persist(ControlPersist::IdleFor(
            NonZeroUsize::new(CONTROL_PERSIST).expect("non-zero"),
        ));
        if let Some(cfg) = &self.opts.config_file {
            b.config_file(cfg);
        }
        if let Some(u) = host.vars.get("ansible_user") {
            b.user(u.clone());
        }
        if let Some(p) = host.vars.get("ansible_port").and_then(|p| p.parse().ok()) {
            b.port(p);
        }
        if let Some(k) = host.vars.get("ansible_ssh_private_key_file") {
            let path = match (k.strip_prefix("~/"), std::env::var_os("HOME")) {
                (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
                _ => PathBuf::from(k),
            };
            b.keyfile(path);
        }
        b
    }

    /// The host's master connection, checked (and replaced) when it has been idle long
    /// enough that ControlPersist may have ended it: a host waiting for its turn in a long
    /// rollout must not find its connection gone.
    fn session(&self, host: &HostInfo) -> Result<Arc<Session>, TransportError> {
        let idle = self
            .last_used
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(host.name.clone(), Instant::now())
            .is_some_and(|t| t.elapsed() > Duration::from_secs(IDLE_CHECK));
        let session = self.connect(host)?;
        if idle && self.rt.block_on(session.check()).is_err() {
            self.sessions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&host.name);
            return self.connect(host);
        }
        Ok(session)
    }

    fn connect(&self, host: &HostInfo) -> Result<Arc<Session>, TransportError> {
        let cell = self
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(host.name.clone())
            .or_default()
            .clone();
        let dest = host
            .vars
            .get("ansible_host")
            .cloned()
            .unwrap_or_else(|| host.name.clone());
        let builder = self.builder(host);
        // ConnectTimeout covers only the TCP connect; a link that dies during the handshake
        // would otherwise hang until the server-alive checks give up.
        let limit = self.opts.connect_timeout + Duration::from_secs(5);
        let result = self.rt.block_on(cell.get_or_init(|| async move {
            match tokio::time::timeout(limit, builder.connect_mux(&dest)).await {
                Ok(r) => r.map(Arc::new).map_err(|e| describe(&e)),
                Err(_) => Err(format!(
                    "no SSH session with {dest} after {}s",
                    limit.as_secs()
                )),
            }
        }));
        result.clone().map_err(TransportError::Unreachable)
    }

    fn permit(&self, host: &str) -> Arc<Semaphore> {
        self.permits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(host.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.opts.max_per_host.max(1))))
            .clone()
    }

    /// Every control socket: `ssh -O exit` on it ends the master and its sessions.
    fn exit_masters(&self) {
        let sessions: Vec<Conn> = self
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for cell in sessions {
            if let Some(Ok(s)) = cell.get() {
                exit_master(s.control_socket());
            }
        }
    }
}

impl Transport for Ssh {
    fn exec(
        &self,
        host: &HostInfo,
        command: &str,
        timeout: Option<Duration>,
    ) -> Result<Output, TransportError> {
        if self.killed.load(Ordering::SeqCst) {
            return Err(TransportError::Other("the run was killed".into()));
        }
        let session = self.session(host)?;
        let permits = self.permit(&host.name);
        let remote = remote_command(command, timeout);
        let start = Instant::now();
        let result = self.rt.block_on(async {
            let _permit = permits.acquire().await;
            let run = async {
                let mut child = session
                    .raw_command(&remote)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .await?;
                // Held open, and written only by kill_all (see remote_command).
                let id = self.next_command.fetch_add(1, Ordering::SeqCst);
                if let Some(stdin) = child.stdin().take() {
                    self.in_flight
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(id, stdin);
                }
                let out = child.wait_with_output().await;
                self.in_flight
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id);
                out
            };
            match timeout {
                // The host enforces the timeout; this one only guards against a dead link.
                Some(t) => tokio::time::timeout(t + Duration::from_secs(15), run)
                    .await
                    .ok(),
                None => Some(run.await),
            }
        });
        let out = match result {
            None => return Err(TransportError::TimedOut(timeout.unwrap_or_default())),
            Some(Err(e)) => {
                return Err(match e {
                    openssh::Error::Disconnected
                    | openssh::Error::RemoteProcessTerminated
                    | openssh::Error::SshMux(_) => {
                        if self.killed.load(Ordering::SeqCst) {
                            TransportError::Other("the run was killed".into())
                        } else {
                            TransportError::Unreachable(describe(&e))
                        }
                    }
                    other => TransportError::Other(describe(&other)),
                })
            }
            Some(Ok(o)) => o,
        };
        let code = out.status.code().unwrap_or(-1);
        // timeout(1) exits 124 (or 137 after -k) when it had to stop the command.
        if let Some(t) = timeout {
            if (code == 124 || code == 137) && start.elapsed() + Duration::from_millis(500) >= t {
                return Err(TransportError::TimedOut(t));
            }
        }
        Ok(Output {
            code,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    fn kill_all(&self) {
        self.killed.store(true, Ordering::SeqCst);
        // Ask every host to stop the commands in flight, give the requests a moment to get
        // there, then close the connections.
        let stdins: Vec<openssh::ChildStdin> = self
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, s)| s)
            .collect();
        if !stdins.is_empty() {
            self.rt.block_on(async {
                use tokio::io::AsyncWriteExt;
                let writes: Vec<_> = stdins
                    .into_iter()
                    .map(|mut s| {
                        tokio::spawn(async move {
                            let _ = s.write_all(KILL_LINE).await;
                            let _ = s.flush().await;
                            // Kept until the requests had time to reach the hosts.
                            tokio::time::sleep(Duration::from_millis(300)).await;
                        })
                    })
                    .collect();
                for w in writes {
                    let _ = tokio::time::timeout(Duration::from_secs(2), w).await;
                }
            });
        }
        self.exit_masters();
    }

    fn shutdown(&self) {
        let cells: Vec<Conn> = self
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, c)| c)
            .collect();
        for cell in cells {
            let Ok(cell) = Arc::try_unwrap(cell) else {
                continue;
            };
            if let Some(Ok(session)) = cell.into_inner() {
                match Arc::try_unwrap(session) {
                    Ok(s) => {
                        let _ = self.rt.block_on(s.close());
                    }
                    Err(s) => exit_master(s.control_socket()),
                }
            }
        }
    }
}

impl Drop for Ssh {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_commands_are_wrapped_and_quoted() {
        let plain = remote_command("echo 'hi' ; id", None);
        assert!(
            plain.starts_with("sh -c 'exec 3<&0; setsid sh -c '"),
            "{plain}"
        );
        let timed = remote_command("sleep 100", Some(Duration::from_millis(2500)));
        assert!(timed.contains("setsid timeout -k 5 3 sh -c"), "{timed}");
    }

    /// The wrapper as a host's login shell runs it: `sh -c LINE`, stdin a pipe (the channel).
    fn start(command: &str) -> std::process::Child {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(remote_command(command, None))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }

    #[test]
    fn the_wrapper_passes_output_and_exit_code_through() {
        let child = start("echo 'it'\\''s'; echo err >&2; exit 3");
        let out = child.wait_with_output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "it's\n");
        assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
        assert_eq!(out.status.code(), Some(3));
    }

    #[test]
    fn kill_on_stdin_stops_the_whole_command_and_end_of_input_does_not() {
        use std::io::Write;
        // Killed: the command and its children (its process group) stop at once.
        let mut child = start("sleep 41.5 & sleep 41.5; echo never");
        std::thread::sleep(Duration::from_millis(300));
        let started = Instant::now();
        child.stdin.take().unwrap().write_all(KILL_LINE).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(started.elapsed() < Duration::from_secs(4));
        assert_eq!(out.status.code(), Some(143), "terminated");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "");
        std::thread::sleep(Duration::from_millis(200));
        let left = std::process::Command::new("pgrep")
            .args(["-f", "sleep 41.5"])
            .output()
            .unwrap();
        assert!(left.stdout.is_empty(), "children left running");
        // Input ends (fleetbook died): the command goes on to its end.
        let mut child = start("sleep 0.5; echo finished");
        drop(child.stdin.take());
        let out = child.wait_with_output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "finished\n");
        assert_eq!(out.status.code(), Some(0));
    }
}
