//! Transports: how host operations reach hosts. `dry_run` records commands for plans,
//! `local` runs them on this machine (`ansible_connection=local`), `ssh` runs them over one
//! OpenSSH master connection per host, and `lease` keeps two runs off one host. `Router`
//! picks a transport per host.

pub mod dry_run;
pub mod lease;
pub mod local;
pub mod persist;
pub mod record;
pub mod ssh;

use fleetbook_stdlib::{HostInfo, Output, Transport, TransportError};
use std::sync::Arc;
use std::time::Duration;

/// Sends each host to the local transport when its `ansible_connection` is `local`, and to
/// SSH otherwise.
pub struct Router {
    pub local: Arc<local::Local>,
    pub ssh: Arc<ssh::Ssh>,
}

impl Router {
    /// The transport of a run or `exec`: ssh with these options, and the local one.
    pub fn new(options: ssh::SshOptions) -> crate::Result<Arc<Router>> {
        let ssh = ssh::Ssh::new(options)
            .map_err(|e| crate::Error::Internal(format!("cannot start the ssh transport: {e}")))?;
        Ok(Arc::new(Router {
            local: Arc::new(local::Local::default()),
            ssh: Arc::new(ssh),
        }))
    }
}

fn is_local(host: &HostInfo) -> bool {
    host.vars.get("ansible_connection").map(String::as_str) == Some("local")
}

/// A command starts: logged by its program only, never its arguments (they may hold a
/// secret; the plan and events show commands redacted).
fn traced_start(host: &HostInfo, command: &str) {
    let program = command.split_whitespace().next().unwrap_or("");
    tracing::debug!(host = %host.name, program, bytes = command.len(), "command starts");
}

fn traced_end(host: &HostInfo, out: &Result<Output, TransportError>, started: std::time::Instant) {
    let elapsed = started.elapsed().as_secs_f64();
    match out {
        Ok(o) => tracing::debug!(host = %host.name, code = o.code, elapsed, "command ends"),
        Err(e) => tracing::warn!(host = %host.name, elapsed, error = %e, "command could not run"),
    }
}

impl Transport for Router {
    fn exec(
        &self,
        host: &HostInfo,
        command: &str,
        timeout: Option<Duration>,
    ) -> Result<Output, TransportError> {
        let started = std::time::Instant::now();
        traced_start(host, command);
        let out = if is_local(host) {
            self.local.exec(host, command, timeout)
        } else {
            self.ssh.exec(host, command, timeout)
        };
        traced_end(host, &out, started);
        out
    }

    fn exec_with_input(
        &self,
        host: &HostInfo,
        command: &str,
        input: &[u8],
        timeout: Option<Duration>,
    ) -> Result<Output, TransportError> {
        let started = std::time::Instant::now();
        traced_start(host, command);
        let out = if is_local(host) {
            self.local.exec_with_input(host, command, input, timeout)
        } else {
            self.ssh.exec_with_input(host, command, input, timeout)
        };
        traced_end(host, &out, started);
        out
    }

    fn disconnect(&self, host: &HostInfo) {
        if !is_local(host) {
            self.ssh.disconnect(host);
        }
    }

    fn connect_ahead(&self, hosts: &[&HostInfo]) {
        let remote: Vec<&HostInfo> = hosts.iter().copied().filter(|h| !is_local(h)).collect();
        if !remote.is_empty() {
            self.ssh.connect_ahead(&remote);
        }
    }

    fn finished_with(&self, host: &HostInfo) {
        if !is_local(host) {
            self.ssh.finished_with(host);
        }
    }

    fn kill_all(&self) {
        self.local.kill_all();
        self.ssh.kill_all();
    }

    fn is_killed(&self) -> bool {
        self.local.is_killed() || self.ssh.is_killed()
    }

    fn shutdown(&self) {
        self.ssh.shutdown();
    }
}
