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
    /// The command ran past its timeout. `after` is the time it was given (the host's
    /// `Host` puts the step's timeout there); `killed` says whether the host confirmed that
    /// it stopped the command: over a dead or frozen link nobody can know.
    TimedOut { after: Duration, killed: bool },
    /// The host offered a key that differs from the one known_hosts pins: possibly a man
    /// in the middle. Fingerprints as `ssh-keygen -l` prints them, when they could be read.
    HostKeyChanged {
        host: String,
        expected: Option<String>,
        offered: Option<String>,
    },
    /// Another run holds the host's lease: two controllers never act on one host at once.
    Leased {
        host: String,
        run: String,
        controller: String,
        /// When the lease expires unless its holder renews it (UTC).
        until: String,
    },
    /// Anything else (spawn failure, I/O error).
    Other(String),
}

impl TransportError {
    /// Errors that must stop the whole run at once, whatever the failure budget: going on
    /// would act where fleetbook cannot trust the host or must not touch it.
    pub fn halts_run(&self) -> bool {
        matches!(
            self,
            TransportError::HostKeyChanged { .. } | TransportError::Leased { .. }
        )
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportError::Unreachable(m) => write!(f, "host unreachable: {m}"),
            TransportError::TimedOut { after, .. } if after.is_zero() => {
                f.write_str("the step's timeout has passed")
            }
            TransportError::TimedOut {
                after,
                killed: true,
            } => write!(
                f,
                "timed out after {} (the command was stopped on the host)",
                crate::duration::format_duration(*after)
            ),
            TransportError::TimedOut {
                after,
                killed: false,
            } => write!(
                f,
                "timed out after {}; the host did not answer, so it is unconfirmed whether the command was stopped there",
                crate::duration::format_duration(*after)
            ),
            TransportError::HostKeyChanged {
                host,
                expected,
                offered,
            } => write!(
                f,
                "host {host} offered a host key that differs from known_hosts (possibly a man in the middle): expected {}, offered {}; if the host was really reinstalled, remove its old key with `ssh-keygen -R`",
                expected.as_deref().unwrap_or("(unknown)"),
                offered.as_deref().unwrap_or("(unknown)")
            ),
            TransportError::Leased {
                host,
                run,
                controller,
                until,
            } => write!(
                f,
                "host {host} is held by run {run} from controller {controller} until {until} (renewed while that run acts on it)"
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

    /// Whether [`kill_all`](Self::kill_all) was called: waits that run no command stop too.
    fn is_killed(&self) -> bool {
        false
    }

    /// Closes connections; called once when the run ends.
    fn shutdown(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timeout_says_whether_the_host_confirmed_the_kill() {
        let t = |killed| {
            TransportError::TimedOut {
                after: Duration::from_secs(10),
                killed,
            }
            .to_string()
        };
        assert_eq!(
            t(true),
            "timed out after 10s (the command was stopped on the host)"
        );
        assert!(t(false).starts_with("timed out after 10s; the host did not answer"));
        assert!(t(false).contains("unconfirmed"));
    }

    #[test]
    fn only_a_changed_key_or_a_leased_host_halts_the_run() {
        assert!(TransportError::HostKeyChanged {
            host: "h".into(),
            expected: None,
            offered: None,
        }
        .halts_run());
        assert!(!TransportError::Unreachable("refused".into()).halts_run());
    }
}
