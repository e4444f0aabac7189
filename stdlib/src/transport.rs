//! The boundary between host operations and the machinery that reaches a host. The engine
//! provides implementations (dry-run recorder, local, ssh); host operations only see this trait.

use litemap::LiteMap;
use std::fmt;
use std::time::Duration;

/// What a host operation needs to know about a host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostInfo {
    pub name: String,
    pub roles: Vec<String>,
    /// Inventory variables as text (strings as they are, other values as JSON), merged from
    /// `all` through the groups to the host line: what commands, limits and secrets use.
    pub vars: LiteMap<String, String>,
    /// The same variables with the types Ansible gives them (int, float, bool, string, list,
    /// map, null): what `h.var(name)` returns. A name missing here falls back to `vars`.
    pub values: LiteMap<String, serde_json::Value>,
    /// Whether root operations go through sudo when the inventory has no `ansible_become`
    /// for this host (the runbook's `rb.become(true)`).
    pub become_default: bool,
    /// Set on a `h.delegate_to(other)` value: the host whose task these commands are for
    /// (commands run on this host, and are recorded under that host's task).
    pub delegate_for: Option<String>,
}

impl HostInfo {
    /// Whether commands that need root go through sudo (Ansible's `become`): the host's
    /// `ansible_become` when it has one, else the runbook's default.
    pub fn becomes(&self) -> bool {
        match self.vars.get("ansible_become") {
            Some(v) => ["true", "yes", "1", "on"]
                .iter()
                .any(|t| v.eq_ignore_ascii_case(t)),
            None => self.become_default,
        }
    }

    /// Whether the host logs in as root, so root operations need no sudo.
    pub fn logs_in_as_root(&self) -> bool {
        self.vars.get("ansible_user").map(String::as_str) == Some("root")
    }
}

/// A file to write on a host ([`Transport::put`]): `check` prints `unchanged` when the
/// host already has these bytes (and sets the mode), `write` reads them on stdin and puts
/// them in place. Both are built by `file::` (already wrapped in sudo where the host becomes).
#[derive(Debug, Clone)]
pub struct Upload {
    pub check: String,
    pub write: String,
    pub content: Vec<u8>,
    /// What plans and errors show instead of the scripts and the bytes (which may be secret):
    /// `copy LOCAL -> REMOTE (sha256:...)`.
    pub shown: String,
}

/// What [`Transport::put`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Put {
    /// The host already had the bytes.
    Unchanged,
    /// `write` ran; its output (a non-zero code means the file was not written).
    Written(Output),
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

/// `command` for a shell that fails a pipeline when any of its commands fails
/// (`fm alarm-list | wc -l` fails when `fm` fails): `set -o pipefail` where `sh` has it
/// (bash, busybox, dash >= 0.5.13); else, where bash is installed (Debian 12's dash has no
/// pipefail), the command runs in `bash -o pipefail`; else in `sh` as it is. `set` is a
/// special builtin: an unknown option would end a POSIX shell, so it is tried in a subshell.
pub fn fail_closed(command: &str) -> String {
    format!(
        "if (set -o pipefail) 2>/dev/null; then set -o pipefail; \
         elif command -v bash >/dev/null 2>&1; then exec bash -o pipefail -c {}; fi\n{command}",
        crate::quote::quote(command)
    )
}

/// Runs shell commands on hosts. Calls block: runbook closures run on blocking threads.
pub trait Transport: Send + Sync {
    /// Runs `command` (a shell command line) on `host`.
    fn exec(
        &self,
        host: &HostInfo,
        command: &str,
        timeout: Option<Duration>,
    ) -> Result<Output, TransportError>;

    /// Runs `command` with `input` on its stdin. Transports that cannot send input refuse.
    fn exec_with_input(
        &self,
        host: &HostInfo,
        command: &str,
        input: &[u8],
        timeout: Option<Duration>,
    ) -> Result<Output, TransportError> {
        let _ = (host, command, input, timeout);
        Err(TransportError::Other(
            "this transport cannot send a file to a host".into(),
        ))
    }

    /// Writes a file on the host unless it already has the bytes: `check`, then `write`
    /// with the bytes on stdin. The recorder shows `upload.shown` instead.
    fn put(
        &self,
        host: &HostInfo,
        upload: &Upload,
        timeout: Option<Duration>,
    ) -> Result<Put, TransportError> {
        let checked = self.exec(host, &upload.check, timeout)?;
        if checked.code == 0 && checked.stdout.trim() == "unchanged" {
            return Ok(Put::Unchanged);
        }
        self.exec_with_input(host, &upload.write, &upload.content, timeout)
            .map(Put::Written)
    }

    /// Drops the host's connection, so the next command opens a fresh one (after a reboot,
    /// or to retry a host that was unreachable).
    fn disconnect(&self, host: &HostInfo) {
        let _ = host;
    }

    /// Told which hosts are likely to start next, in schedule order: a transport may open
    /// their connections now, so that they start on a ready one. Only hosts the run will
    /// surely act on are named.
    fn connect_ahead(&self, hosts: &[&HostInfo]) {
        let _ = hosts;
    }

    /// Told that the run has no step left for `host`: its connection may close now (a
    /// later command, such as a rollback's, opens a new one).
    fn finished_with(&self, host: &HostInfo) {
        let _ = host;
    }

    /// Told of each root operation (`op`, as `service::restart`) that runs `command` on a
    /// host that does not become root; the plan recorder turns these into warnings.
    fn without_root(&self, host: &HostInfo, op: &str, command: &str) {
        let _ = (host, op, command);
    }

    /// Told when an operation's answer in a plan is assumed, not known (`file::exists` is
    /// true because the recorded command "succeeded"): the plan recorder warns.
    fn assumed(&self, host: &HostInfo, op: &str, assumption: &str) {
        let _ = (host, op, assumption);
    }

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
    fn a_pipeline_fails_when_its_first_command_fails() {
        let sh = |cmd: &str| {
            std::process::Command::new("sh")
                .arg("-c")
                .arg(fail_closed(cmd))
                .output()
                .unwrap()
        };
        let out = sh("false | wc -l");
        assert_ne!(out.status.code(), Some(0), "pipefail");
        let out = sh("echo a | wc -l; exit 4");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");
        assert_eq!(out.status.code(), Some(4));
        // A host with neither pipefail in sh nor bash (no bash in an empty PATH) still runs it,
        // if this machine's sh has no pipefail.
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(fail_closed("echo ran; exit 5"))
            .env("PATH", "/nonexistent")
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "ran\n");
        assert_eq!(out.status.code(), Some(5));
    }

    #[test]
    fn become_follows_the_inventory_then_the_runbook_default() {
        let mut info = HostInfo {
            become_default: true,
            ..HostInfo::default()
        };
        assert!(info.becomes());
        info.vars.insert("ansible_become".into(), "False".into());
        assert!(!info.becomes(), "the inventory says no");
        info.become_default = false;
        info.vars.insert("ansible_become".into(), "yes".into());
        assert!(info.becomes());
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
