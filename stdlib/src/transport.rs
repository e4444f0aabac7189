//! The boundary between host operations and the machinery that reaches a host. The engine
//! provides implementations (dry-run recorder, local, ssh); host operations only see this trait.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// What a host operation needs to know about a host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostInfo {
    pub name: String,
    pub roles: Vec<String>,
    /// Inventory variables, merged from `all` through the groups to the host line.
    pub vars: BTreeMap<String, String>,
}

/// The result of one command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Why a command could not produce an [`Output`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportError {
    /// The host could not be reached (connect failure, lost connection).
    Unreachable(String),
    /// The command ran past its timeout and was killed.
    TimedOut(Duration),
    /// Anything else (spawn failure, I/O error).
    Other(String),
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportError::Unreachable(m) => write!(f, "host unreachable: {m}"),
            TransportError::TimedOut(d) if d.is_zero() => {
                f.write_str("the step's timeout has passed")
            }
            TransportError::TimedOut(d) => write!(
                f,
                "command timed out after {}s (killed on the host)",
                d.as_secs()
            ),
            TransportError::Other(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for TransportError {}

/// Runs shell commands on hosts. Calls block: runbook closures run on blocking threads.
pub trait Transport: Send + Sync {
    /// Runs `command` (a shell command line) on `host`.
    fn exec(
        &self,
        host: &HostInfo,
        command: &str,
        timeout: Option<Duration>,
    ) -> Result<Output, TransportError>;

    /// True for the plan-time recorder: waits return at once and probes succeed.
    fn is_dry_run(&self) -> bool {
        false
    }

    /// Kills every command in flight (a second Ctrl-C). Later calls fail at once.
    fn kill_all(&self) {}

    /// Closes connections; called once when the run ends.
    fn shutdown(&self) {}
}
