//! The local transport: `sh -c COMMAND` on this machine, in its own process group so that a
//! timeout or a second Ctrl-C kills the whole command, not just the shell.

use fleetbook_stdlib::transport::fail_closed;
use fleetbook_stdlib::{HostInfo, Output, Transport, TransportError};
use std::collections::HashSet;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Default)]
pub struct Local {
    running: Mutex<HashSet<i32>>,
    killed: AtomicBool,
}

fn kill_group(pgid: i32, signal: i32) {
    // SAFETY: kill(2) with a negative pid signals a process group; no memory is involved.
    unsafe {
        libc::kill(-pgid, signal);
    }
}

impl Transport for Local {
    fn exec(
        &self,
        _host: &HostInfo,
        command: &str,
        timeout: Option<Duration>,
    ) -> Result<Output, TransportError> {
        self.run(command, None, timeout)
    }

    fn exec_with_input(
        &self,
        _host: &HostInfo,
        command: &str,
        input: &[u8],
        timeout: Option<Duration>,
    ) -> Result<Output, TransportError> {
        self.run(command, Some(input), timeout)
    }

    fn is_killed(&self) -> bool {
        self.killed.load(Ordering::SeqCst)
    }

    fn kill_all(&self) {
        self.killed.store(true, Ordering::SeqCst);
        for &pgid in self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            kill_group(pgid, libc::SIGKILL);
        }
    }
}

impl Local {
    /// Runs `command`, with `input` on its stdin (or none), killed at `timeout`.
    fn run(
        &self,
        command: &str,
        input: Option<&[u8]>,
        timeout: Option<Duration>,
    ) -> Result<Output, TransportError> {
        if self.killed.load(Ordering::SeqCst) {
            return Err(TransportError::Other("the run was killed".into()));
        }
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(fail_closed(command))
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(|e| TransportError::Other(format!("cannot start sh: {e}")))?;
        let pgid = child.id() as i32;
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(pgid);
        // Fed from a thread: a command that stops reading (it already has the file) must
        // not block the wait.
        let feeder = child.stdin.take().zip(input).map(|(mut pipe, bytes)| {
            let bytes = bytes.to_vec();
            std::thread::spawn(move || {
                use std::io::Write;
                let _ = pipe.write_all(&bytes);
            })
        });
        let mut out_pipe = child.stdout.take();
        let mut err_pipe = child.stderr.take();
        let out_reader = std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(p) = out_pipe.as_mut() {
                let _ = p.read_to_string(&mut s);
            }
            s
        });
        let err_reader = std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(p) = err_pipe.as_mut() {
                let _ = p.read_to_string(&mut s);
            }
            s
        });
        let start = Instant::now();
        let mut timed_out = false;
        let status = loop {
            match child.try_wait() {
                Ok(Some(st)) => break Some(st),
                Ok(None) => {}
                Err(_) => break None,
            }
            if timeout.is_some_and(|t| start.elapsed() >= t) && !timed_out {
                timed_out = true;
                kill_group(pgid, libc::SIGTERM);
                std::thread::sleep(Duration::from_millis(200));
                kill_group(pgid, libc::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        // Whatever the shell left behind in its group goes with it.
        kill_group(pgid, libc::SIGKILL);
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&pgid);
        if let Some(f) = feeder {
            let _ = f.join();
        }
        let stdout = out_reader.join().unwrap_or_default();
        let stderr = err_reader.join().unwrap_or_default();
        if timed_out {
            return Err(TransportError::TimedOut {
                after: timeout.unwrap_or_default(),
                killed: true,
            });
        }
        if self.killed.load(Ordering::SeqCst) {
            return Err(TransportError::Other("the run was killed".into()));
        }
        let code = status.and_then(|s| s.code()).unwrap_or(-1);
        Ok(Output {
            code,
            stdout,
            stderr,
        })
    }
}
