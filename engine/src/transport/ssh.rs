//! The SSH transport: one OpenSSH master connection per host (the `openssh` crate, native
//! multiplexing), reused for every command. Host keys are checked strictly unless the user
//! explicitly relaxes it. The master has an idle `ControlPersist`, so a crashed fleetbook
//! leaves no ssh behind for long. Every command runs under `timeout(1)` on the host when the
//! step has a timeout, because a local timeout alone would leave it running there.
//!
//! A step's timeout holds even when the link dies: fleetbook waits one second past the
//! host's own `timeout(1)`, then asks the host to stop the command and gives it one more
//! second to answer; without an answer the failure says the remote kill is unconfirmed.
//! When a run is leased (`lease_hosts`), each host's lease is taken before the first command
//! on it, renewed while the run goes on and released at `shutdown` (see `lease`).

use super::lease::{self, Answer, Owner};
use super::persist;
use fleetbook_stdlib::quote::quote;
use fleetbook_stdlib::transport::fail_closed;
use fleetbook_stdlib::{HostInfo, Output, Transport, TransportError};
use openssh::{ControlPersist, KnownHosts, Session, SessionBuilder, Stdio};
use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::os::unix::fs::DirBuilderExt;
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
    /// `--persist`: how long a master stays up idle after the command ends, for the next
    /// command to reuse (zero: closed at the end; see `persist`).
    pub persist: Duration,
    /// `--ssh-kex`: the key exchange algorithms for every host (else the host variable
    /// `fleetbook_ssh_kex`, else whatever the user's ssh config says).
    pub kex: Option<String>,
}

/// The host variable that chooses a host's key exchange algorithms.
pub const KEX_VAR: &str = "fleetbook_ssh_kex";

/// Checks a key exchange list as ssh's `KexAlgorithms` takes it (names, commas, and a
/// leading `+`, `-` or `^`): it goes into an ssh config file, so nothing else may.
pub fn check_kex(kex: &str) -> Result<(), String> {
    let ok = !kex.is_empty()
        && kex
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "@._,+^-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{kex:?} is not a list of key exchange algorithms (as `ssh -Q kex` names them, comma-separated, e.g. curve25519-sha256)"
        ))
    }
}

impl Default for SshOptions {
    fn default() -> Self {
        SshOptions {
            config_file: None,
            accept_new_host_keys: false,
            connect_timeout: Duration::from_secs(10),
            max_per_host: 4,
            persist: Duration::ZERO,
            kex: None,
        }
    }
}

type Conn = Arc<OnceCell<Result<Arc<Session>, TransportError>>>;
type LeaseCell = Arc<OnceCell<Result<(), TransportError>>>;

/// How long past the host's own timeout fleetbook waits for the command's end, and then
/// how long for an answer to its kill request, before it gives the link up.
const TIMEOUT_MARGIN: Duration = Duration::from_secs(1);
/// How long lease scripts and liveness checks may take before the host counts as silent.
const SHORT: Duration = Duration::from_secs(5);

/// Masters exit after this long idle (ControlPersist), so a crash leaves no ssh behind.
const CONTROL_PERSIST: usize = 60;
/// Handshakes in flight at once from this controller, and to one sshd (its MaxStartups
/// starts refusing at 10 by default): a wide window or a connect-ahead never floods either.
const HANDSHAKES: usize = 32;
const HANDSHAKES_PER_SSHD: usize = 8;
/// Connections closed at once at the end of a run.
const CLOSES: usize = 64;

/// A master idle longer than this is checked before use.
const IDLE_CHECK: u64 = 30;

pub struct Ssh {
    rt: tokio::runtime::Runtime,
    opts: SshOptions,
    control_dir: tempfile::TempDir,
    /// The private directory of kept connections, when it can be trusted (see `persist`).
    kept_dir: Option<PathBuf>,
    /// `persist::config_digest` of the ssh configuration, read at the first connection.
    config_digest: std::sync::OnceLock<String>,
    /// Control sockets of masters another command left up: never closed by this one (it
    /// may still use them); they exit after their own idle window.
    reused: Arc<Mutex<std::collections::HashSet<PathBuf>>>,
    sessions: Mutex<HashMap<String, Conn>>,
    permits: Mutex<HashMap<String, Arc<Semaphore>>>,
    handshakes: Arc<Semaphore>,
    sshd_handshakes: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// The ssh config written for each chosen key exchange (see `kex_config`).
    kex_configs: Mutex<HashMap<String, PathBuf>>,
    /// Connections of finished hosts being closed in the background: awaited at shutdown.
    closing: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// When each host's master was last used: an idle master exits after ControlPersist.
    last_used: Mutex<HashMap<String, Instant>>,
    killed: AtomicBool,
    /// The stdin of each command in flight, by a command number: written to kill it.
    in_flight: Mutex<HashMap<u64, openssh::ChildStdin>>,
    next_command: std::sync::atomic::AtomicU64,
    /// The run that leases the hosts it acts on; `None` (ad-hoc `exec`) takes no lease.
    owner: Mutex<Option<Owner>>,
    leases: Mutex<HashMap<String, LeaseCell>>,
    /// How each host's commands are sent, as its first command found (`Shells`).
    shells: Mutex<HashMap<String, Shells>>,
    /// Leases held, with what renews them: released at `shutdown`.
    held: Mutex<Vec<Held>>,
    /// Hosts whose lease another run took over (it expired while the link was down).
    lost: Arc<Mutex<HashMap<String, TransportError>>>,
}

struct Held {
    host: String,
    session: Arc<Session>,
    become_root: bool,
    /// The host's login shell runs POSIX scripts (`Shells`, known after its first command):
    /// the release is sent without `sh -c`.
    posix_login: bool,
    dir: Option<String>,
    renewal: tokio::task::JoinHandle<()>,
}

/// Whether a lease holder is a controller of this machine that no longer runs.
fn dead_here(controller: &str) -> bool {
    controller.rsplit_once(':').is_some_and(|(machine, pid)| {
        machine == crate::journal::controller()
            && pid
                .parse::<i64>()
                .is_ok_and(|p| !crate::journal::pid_alive(p))
    })
}

/// Seconds for `timeout(1)`, rounded up so a command never gets less than it was given.
fn remote_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// What fleetbook writes to a command's stdin to have it stopped on the host.
const KILL_LINE: &[u8] = b"kill\n";

/// The wrapper script of `remote_command`; the command's script is its `$1`, run as
/// `SHELL -c "$1" ARGV0` in a session of its own (`setsid`), exactly as that shell would run
/// it (its own `$$`, no trap of the wrapper's).
///
/// Always a new session, even where the wrapper already leads a process group of its own:
/// the watcher must stay outside the command's group. `sudo` does not relay a signal sent
/// from inside its command's process group, and a watcher that is not root cannot signal the
/// root command itself, so a watcher in the same group could not stop a `become` step; and
/// `timeout(1)` moves itself into a group of its own anyway. (bash's job control, `set -m`,
/// would start a group without `setsid`, but that group is not orphaned: a stray SIGTSTP
/// would stop the command, and a bash built without job control would leave the command in
/// the watcher's group, where no kill reaches it.)
///
/// The watcher reads again when a `read` times out (bash's `TMOUT`, which hardened hosts set
/// readonly in their startup files): only end of input or a line ends its watch.
///
/// Once told to kill, the watcher ignores TERM: the wrapper stops it when the command's
/// shell ends, which the TERM may do at once, while a child that ignores TERM still runs in
/// the group; the watcher then outlives the wrapper until the group is gone (it looks once a
/// second, and sends no KILL to a group it found gone, whose id may be reused) or for 5 s,
/// and KILLs what is left.
///
/// A `become` command (it starts with `sudo -n`) runs as root under a watcher that does not:
/// sudo passes a TERM on, but a KILL would reach only sudo. So that watcher signals through
/// sudo, with root's `sh` and its `kill` built in (a host may have no `kill` program), and
/// with its own rights where sudo refuses. (sudo, which runs without a terminal here, keeps
/// the command in sudo's process group even under `Defaults use_pty`.)
///
/// A timed `become` command (`timed`) has the same problem at its timeout: `timeout(1)` runs
/// as the login user, sudo does not pass on a signal from the process group it was started
/// in, and the KILL reaches only sudo. Where the link is cut, no kill request comes. So when
/// `timeout` says it killed the command (137: its TERM never reaches a root command, so a
/// timed-out `become` command always ends so), the wrapper kills what is left of the group
/// as the watcher would, in the background, and ends at once. (A command that exits 137 by
/// itself has whatever it left in its group killed too.) The job is a brace group with its
/// redirections: dash keeps copies of the wrapper's stdout and stderr open while a function
/// call with redirections of its own runs, and they would hold the channel open.
fn wrapper(shell: &str, argv0: &str, become_root: bool, timed: bool) -> String {
    let signal = if become_root {
        "sudo -n sh -c 'kill \"$1\" \"-$2\"' sh \"$1\" $c 2>/dev/null || kill \"$1\" -$c"
    } else {
        "kill \"$1\" -$c"
    };
    let after = if become_root && timed {
        "{ [ $r = 137 ] && k -0 && z; } </dev/null >/dev/null 2>&1 & "
    } else {
        ""
    };
    format!(
        "exec 3<&0; \
         setsid {shell} -c \"$1\" {argv0} </dev/null 3<&- & c=$!; \
         k() {{ {signal}; }}; \
         z() {{ trap '' TERM; k -TERM; for w in 1 2 3 4 5; do k -0 || exit 0; sleep 1; done; k -KILL; }}; \
         {{ while :; do read -r w <&3 && break; [ $? -gt 128 ] || exit 0; done; \
         [ \"$w\" = kill ] && z; }} >/dev/null 2>&1 & w=$!; \
         exec 3<&-; wait $c; r=$?; kill $w 2>/dev/null; {after}exit $r"
    )
}

/// Which shell a host's commands start in, as the first command of a run found out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HostShell {
    /// Not known (or `sh` has pipefail): `sh`, and `fail_closed` finds out per command.
    #[default]
    Sh,
    /// The host's `sh` has no pipefail and it has bash (dash hosts): every command starts in
    /// `bash -o pipefail` at once, with no probe and no second shell per command.
    BashPipefail,
}

/// How a host's commands are sent, as the first command of a run found out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Shells {
    /// The shell the commands start in.
    pub command: HostShell,
    /// sshd runs each line in the user's login shell (`$SHELL -c LINE`), and the host's is
    /// bash, dash or sh (as `$SHELL` says and the user's passwd entry agrees): a POSIX shell
    /// that runs the wrapper as `sh` would. Then the wrapper is the line itself, after
    /// `CLEAN`, and no `sh -c` is started for it: one process fewer per command. Any other
    /// login shell (or one not known yet) gets `sh -c`.
    pub posix_login: bool,
}

/// What a line sent to a POSIX login shell starts with: bash, run by sshd, reads the user's
/// `~/.bashrc` first, which may define functions or aliases named as the commands the
/// wrapper uses, set `-e`/`-u`, job control (`-m`: the command's `setsid` would be a job
/// that forks, and the wrapper would wait for nothing), tracing (`-x`, `-v`), or trap the
/// shell's exit; none of that may change the
/// wrapper (with `sh -c` it could not reach it). Its own line, so that aliases are off before
/// the wrapper's line is read; dash ignores what is bash's (`builtin`, `shopt`, `ERR`).
const CLEAN: &str = "builtin unset -f builtin unset command set exec exit trap read wait kill \
     sleep setsid sudo test '[' echo printf rm flock date mv : 2>/dev/null; \
     shopt -u expand_aliases 2>/dev/null; set +eumxv; unset IFS; trap - EXIT; \
     trap - ERR DEBUG RETURN 2>/dev/null\n";

impl Shells {
    /// What the host's lease answer said after `shell=` (see `lease_then`): the command's
    /// shell, then `posix` when the login shell is POSIX.
    fn from_probe(words: &str) -> Self {
        let mut words = words.split(' ');
        let command = match words.next() {
            Some("bash") => HostShell::BashPipefail,
            _ => HostShell::Sh,
        };
        Shells {
            command,
            posix_login: words.next() == Some("posix"),
        }
    }

    /// The words `from_probe` reads back (a probe's `none` reads as `sh`, as it is sent).
    fn words(self) -> &'static str {
        match (self.command, self.posix_login) {
            (HostShell::Sh, false) => "sh",
            (HostShell::Sh, true) => "sh posix",
            (HostShell::BashPipefail, false) => "bash",
            (HostShell::BashPipefail, true) => "bash posix",
        }
    }

    /// The line sent for `command` (see `remote_command_in`).
    fn line(self, command: &str, timeout: Option<Duration>) -> String {
        if self.posix_login {
            format!("{CLEAN}{}", inline_command(self.command, command, timeout))
        } else {
            remote_command_in(self.command, command, timeout)
        }
    }

    /// The line sent for one of fleetbook's own scripts (a lease's release).
    fn script(self, script: &str) -> String {
        if self.posix_login {
            format!("{CLEAN}{script}")
        } else {
            sh_c(script)
        }
    }
}

/// `sh -c SCRIPT` as a line that any login shell hands to `sh` unchanged: csh and tcsh
/// expand a `!` even inside single quotes and refuse a newline there (and then run the next
/// line themselves: a command outside its lease and its wrapper), and fish reads `\\` inside
/// single quotes as one backslash. A script with none of these goes single-quoted as it is;
/// one with any is sent as `printf %b` octal escapes for the characters that the single
/// quotes or `sh`'s double quotes would change, which `sh` turns back into the script and
/// `eval`s: the same script, `$0` and no arguments, as `sh -c` gives it.
fn sh_c(script: &str) -> String {
    use std::fmt::Write;
    if !script.contains(['\n', '\r', '!']) && !script.contains("\\\\") {
        return format!("sh -c {}", quote(script));
    }
    let mut line = String::with_capacity(script.len() * 2 + 32);
    line.push_str("sh -c 'eval \"$(printf %b \"");
    for c in script.chars() {
        match c {
            '\\' | '\n' | '\r' | '!' | '\'' | '$' | '`' | '"' => {
                let _ = write!(line, "\\0{:03o}", c as u32);
            }
            c => line.push(c),
        }
    }
    line.push_str("\")\"'");
    line
}

/// The command line sent to a host whose login shell is not known: `sh -c`, whatever the
/// login shell is (`Shells::line` sends the wrapper itself to a POSIX one).
///
/// The command runs beside a watcher that reads the channel's stdin, which fleetbook holds
/// open and writes only to kill: on `kill` the watcher stops the command's whole process
/// group (TERM, then KILL after 5 s). Closing the SSH connection alone would not stop it
/// (sshd sends no signal without a tty). Plain end of input (the command ended, or fleetbook
/// died) stops nothing: a crashed controller leaves its hosts to finish what they were doing
/// (an apt run cut in half is worse than one that completes), and `resume` takes it from there.
///
/// The command's script travels as the wrapper's `$1` (`wrapper`).
pub fn remote_command(command: &str, timeout: Option<Duration>) -> String {
    remote_command_in(HostShell::Sh, command, timeout)
}

/// `remote_command` on a host whose shell is known: on a dash host with bash, the command
/// runs in `bash -o pipefail` directly, as `fail_closed` would have chosen after its probe
/// (no probe, one shell fewer per command).
pub fn remote_command_in(shell: HostShell, command: &str, timeout: Option<Duration>) -> String {
    sh_c(&inline_command(shell, command, timeout))
}

/// `remote_command_in` as a script for a shell that is already running (a first command's
/// `sh`, see `lease_then`, or a POSIX login shell, see `Shells`): the wrapper runs in that
/// shell with the command's script as its `$1`, without a second `sh` started for it.
fn inline_command(shell: HostShell, command: &str, timeout: Option<Duration>) -> String {
    let (wrapper, script) = wrapped(shell, command, timeout);
    format!("set -- {}; {wrapper}", quote(&script))
}

/// The wrapper script and the command's script (the wrapper's `$1`) for a host's shell.
fn wrapped(shell: HostShell, command: &str, timeout: Option<Duration>) -> (String, String) {
    let (run, argv0, script) = match shell {
        HostShell::Sh => ("sh", "sh", fail_closed(command)),
        HostShell::BashPipefail => ("bash -o pipefail", "bash", command.to_string()),
    };
    let become_root = fleetbook_stdlib::host::runs_under_sudo(command);
    match timeout {
        // `timeout` runs the command's shell; the wrapper's `sh` runs `timeout`.
        Some(_) => (
            wrapper("sh", "sh", become_root, true),
            timed(run, script, timeout),
        ),
        None => (wrapper(run, argv0, become_root, false), script),
    }
}

/// The command's script for `sh -c`: with pipefail (see `fail_closed`), under `timeout(1)`
/// when it has one.
fn bounded(command: &str, timeout: Option<Duration>) -> String {
    timed("sh", fail_closed(command), timeout)
}

/// `script` as is, or, with a timeout, run by `shell -c` under `timeout(1)`.
fn timed(shell: &str, script: String, timeout: Option<Duration>) -> String {
    match timeout {
        Some(t) => format!(
            "exec timeout -k 5 {} {shell} -c {}",
            remote_secs(t).max(1),
            quote(&script)
        ),
        None => script,
    }
}

/// How a command's wait ended.
enum Waited {
    Done(Result<std::process::Output, openssh::Error>),
    /// Past the host's timeout and the margin without an end; `killed` when the host then
    /// answered the kill request.
    LinkSilent {
        killed: bool,
    },
}

/// Runs a short fleetbook script (a lease) on the host: `sh -c`, under sudo when the host
/// becomes, given a few seconds.
async fn short(
    session: &Session,
    script: &str,
    become_root: bool,
    posix_login: bool,
) -> Result<std::process::Output, String> {
    let script = if become_root {
        fleetbook_stdlib::host::sudo_command(script)
    } else {
        script.to_string()
    };
    let line = Shells {
        posix_login,
        ..Shells::default()
    }
    .script(&script);
    match tokio::time::timeout(
        SHORT,
        session
            .raw_command(&line)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output(),
    )
    .await
    {
        Ok(Ok(out)) => Ok(out),
        Ok(Err(e)) => Err(describe(&e)),
        Err(_) => Err(format!("no answer within {}s", SHORT.as_secs())),
    }
}

/// The lease script's answer as a result for the host.
fn read_answer(
    host: &str,
    answer: Result<std::process::Output, String>,
) -> Result<(), TransportError> {
    let out =
        answer.map_err(|e| TransportError::Unreachable(format!("taking the host's lease: {e}")))?;
    match lease::parse(&String::from_utf8_lossy(&out.stdout)) {
        Some(Answer::Taken) => Ok(()),
        Some(Answer::Held {
            run,
            controller,
            until,
        }) => Err(TransportError::Leased {
            host: host.to_string(),
            run,
            controller,
            until: crate::clock::At::from_unix_secs(until)
                .map_or_else(|| format!("@{until}"), |t| t.to_string()),
        }),
        None => {
            let err = String::from_utf8_lossy(&out.stderr);
            let hint = if err.contains("sudo: a password is required") {
                "\n  hint: the host has ansible_become, so its lease is written through sudo -n, and sudo needs a password on this host; fleetbook only uses passwordless sudo"
            } else {
                ""
            };
            Err(TransportError::Other(format!(
                "host {host}: could not take the host's lease (in {}, /run/lock or /tmp): {}{hint}",
                lease::DIR_VAR,
                err.trim()
            )))
        }
    }
}

/// The host's first command, after its lease: one round trip where two were. The take's
/// answer comes first on stdout (`split_lease` takes it off); the command runs only when the
/// lease was taken.
///
/// The same `sh` then finds out which shell the host's commands start in (`shell=`, the
/// choice `fail_closed` makes per command, kept for the host's later commands by
/// `remote_command_in`) and whether the login shell is POSIX (`Shells`), and runs the
/// command's wrapper itself, in that shell's form: no second `sh`, and no `fail_closed`
/// probe before `bash`.
///
/// On a master whose shells an earlier command found (`known`, see
/// `persist::remember_shells`), the line is sent as `Shells` sends any other: the take, then
/// the wrapper in the known shell, with no probe, and no `sh` when the login shell is POSIX.
fn lease_then(
    take: &str,
    become_root: bool,
    command: &str,
    timeout: Option<Duration>,
    known: Option<Shells>,
) -> String {
    let take = if become_root {
        fleetbook_stdlib::host::sudo_command(take)
    } else {
        format!("{{ {take}; }}")
    };
    let taken = format!("a=$({take} </dev/null); printf '%s\\n' \"$a\"; [ \"$a\" = taken ] && {{");
    if let Some(shells) = known {
        let run = inline_command(shells.command, command, timeout);
        return shells.script(&format!(
            "{taken} echo 'shell={}'; {run}; }}",
            shells.words()
        ));
    }
    let in_sh = inline_command(HostShell::Sh, command, timeout);
    let in_bash = inline_command(HostShell::BashPipefail, command, timeout);
    let script = format!(
        "{taken} \
         {LOGIN_PROBE} \
         if (set -o pipefail) 2>/dev/null; then echo \"shell=sh$p\"; {in_sh}; \
         elif command -v bash >/dev/null 2>&1; then echo \"shell=bash$p\"; {in_bash}; \
         else echo \"shell=none$p\"; {in_sh}; fi; }}"
    );
    sh_c(&script)
}

/// Sets `p` to ` posix` when the login shell is bash, dash or sh: `$SHELL` says so, and the
/// user's entry in /etc/passwd names that same shell (a login shell's startup files may set
/// `SHELL` to another shell than the one sshd runs; a user only a directory service knows
/// gets `sh -c`). Read with `read`, no process started.
const LOGIN_PROBE: &str = "p=; u=${LOGNAME:-$USER}; case ${SHELL##*/} in bash|dash|sh) \
     while IFS=: read -r n _ _ _ _ _ s; do if [ \"$n\" = \"$u\" ]; then \
     [ \"$s\" = \"$SHELL\" ] && p=' posix'; break; fi; done </etc/passwd;; esac 2>/dev/null;";

/// The lease's answer at the head of a first command's output, and the command's wait with
/// the answer taken off (`None` when the command did not run, or said nothing usable).
fn split_lease(host: &str, waited: Waited) -> (Result<Shells, TransportError>, Option<Waited>) {
    let Waited::Done(Ok(mut out)) = waited else {
        let e = TransportError::Unreachable(
            "taking the host's lease: the first command got no answer".into(),
        );
        return (Err(e), Some(waited));
    };
    if let Some(rest) = out.stdout.strip_prefix(b"taken\n") {
        // The probe's line, then the command's own output.
        let (shell, rest) = match rest.strip_prefix(b"shell=") {
            Some(r) => {
                let end = r.iter().position(|&b| b == b'\n').unwrap_or(r.len());
                let word = String::from_utf8_lossy(&r[..end]).into_owned();
                (Shells::from_probe(&word), &r[(end + 1).min(r.len())..])
            }
            None => (Shells::default(), rest),
        };
        out.stdout = rest.to_vec();
        return (Ok(shell), Some(Waited::Done(Ok(out))));
    }
    (read_answer(host, Ok(out)).map(|()| Shells::default()), None)
}

/// Reads OpenSSH's "REMOTE HOST IDENTIFICATION HAS CHANGED" report: the key the host
/// offered, and the expected one from the known_hosts line it names.
fn host_key_changed(host: &str, stderr: &str) -> Option<TransportError> {
    if !stderr.contains("REMOTE HOST IDENTIFICATION HAS CHANGED") {
        return None;
    }
    let lines: Vec<&str> = stderr.lines().map(str::trim).collect();
    let offered = lines
        .iter()
        .position(|l| l.contains("key sent by the remote host is"))
        .and_then(|i| lines.get(i + 1))
        .map(|l| l.trim_end_matches('.').to_string());
    let expected = lines
        .iter()
        .find_map(|l| l.split_once("Offending ").map(|(_, rest)| rest))
        .and_then(|rest| rest.split_once(" key in ").map(|(_, at)| at))
        .and_then(|at| at.rsplit_once(':'))
        .and_then(|(file, line)| known_hosts_fingerprint(file, line.parse().ok()?));
    Some(TransportError::HostKeyChanged {
        host: host.to_string(),
        expected,
        offered,
    })
}

/// The fingerprint of line `n` (from 1) of a known_hosts file, as `ssh-keygen -l` gives it.
fn known_hosts_fingerprint(file: &str, n: usize) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    let line = text.lines().nth(n.checked_sub(1)?)?;
    let mut tmp = tempfile::NamedTempFile::new().ok()?;
    std::io::Write::write_all(&mut tmp, format!("{line}\n").as_bytes()).ok()?;
    let out = std::process::Command::new("ssh-keygen")
        .arg("-l")
        .arg("-f")
        .arg(tmp.path())
        .stdin(std::process::Stdio::null())
        .output()
        .ok()?;
    // "256 SHA256:... host (ED25519)"
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .map(str::to_string)
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

/// Each command in flight holds about three descriptors here (its control-socket connection
/// and its output pipes): hundreds of hosts at once need more than the soft limit a shell
/// often gives (1,024). The soft limit is raised to the hard one, which the administrator set.
fn raise_descriptor_limit() {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `r` is a valid rlimit for both calls to read and write.
    let raised = unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max && {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r) == 0
        }
    };
    if raised {
        tracing::debug!(limit = r.rlim_cur, "open file limit raised");
    }
}

impl Ssh {
    pub fn new(opts: SshOptions) -> std::io::Result<Ssh> {
        raise_descriptor_limit();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("fleetbook-ssh")
            .build()?;
        // A short directory: control socket paths must fit in sun_path (108 bytes).
        let control_dir = tempfile::Builder::new().prefix("fb-").tempdir_in("/tmp")?;
        let kept_dir = match persist::private_dir() {
            Ok(d) => Some(d),
            Err(e) => {
                if !opts.persist.is_zero() {
                    tracing::warn!(error = %e, "connections are not kept between commands");
                }
                None
            }
        };
        Ok(Ssh {
            rt,
            opts,
            control_dir,
            kept_dir,
            config_digest: std::sync::OnceLock::new(),
            reused: Arc::default(),
            sessions: Mutex::default(),
            permits: Mutex::default(),
            handshakes: Arc::new(Semaphore::new(HANDSHAKES)),
            sshd_handshakes: Mutex::default(),
            closing: Mutex::default(),
            kex_configs: Mutex::default(),
            last_used: Mutex::default(),
            killed: AtomicBool::new(false),
            in_flight: Mutex::default(),
            next_command: Default::default(),
            owner: Mutex::default(),
            leases: Mutex::default(),
            shells: Mutex::default(),
            held: Mutex::default(),
            lost: Arc::default(),
        })
    }

    /// From now on, take a lease on each host before acting on it, in the name of `run`.
    pub fn lease_hosts(&self, run: &str) {
        *self.owner.lock().unwrap_or_else(|e| e.into_inner()) = Some(Owner {
            run: run.to_string(),
            controller: format!("{}:{}", crate::journal::controller(), std::process::id()),
        });
    }

    /// Takes the host's lease once; later calls give the first answer, or the loss of the
    /// lease to another run.
    fn lease(&self, host: &HostInfo, session: &Arc<Session>) -> Result<(), TransportError> {
        let Some(owner) = self.owner.lock().unwrap_or_else(|e| e.into_inner()).clone() else {
            return Ok(());
        };
        let cell = self.lease_cell(host)?;
        let become_root = host.becomes();
        let dir = host.vars.get(lease::DIR_VAR).map(String::as_str);
        let result = self.rt.block_on(cell.get_or_init(|| async {
            let script = lease::take_script(&owner, dir, None);
            let answer = read_answer(
                &host.name,
                short(session, &script, become_root, false).await,
            );
            match &answer {
                // A run whose controller died on this machine acts on nothing any more.
                Err(TransportError::Leased {
                    run, controller, ..
                }) if dead_here(controller) => {
                    let script = lease::take_script(&owner, dir, Some(run));
                    read_answer(
                        &host.name,
                        short(session, &script, become_root, false).await,
                    )
                }
                _ => answer,
            }
        }));
        if result.is_ok() {
            self.renew(host, session, owner, become_root);
        }
        result.clone()
    }

    /// Starts renewing a lease just taken (once per host).
    fn renew(&self, host: &HostInfo, session: &Arc<Session>, owner: Owner, become_root: bool) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if held.iter().any(|h| h.host == host.name) {
            return;
        }
        let (name, s, lost) = (host.name.clone(), session.clone(), self.lost.clone());
        let dir = host.vars.get(lease::DIR_VAR).cloned();
        let renewal = self.rt.spawn(async move {
            let script = lease::take_script(&owner, dir.as_deref(), None);
            loop {
                tokio::time::sleep(lease::RENEW).await;
                // A silent host keeps its lease until it expires; its commands fail anyway.
                if let Err(e @ TransportError::Leased { .. }) =
                    read_answer(&name, short(&s, &script, become_root, false).await)
                {
                    lost.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(name, e);
                    return;
                }
            }
        });
        held.push(Held {
            host: host.name.clone(),
            session: session.clone(),
            become_root,
            posix_login: false,
            dir: host.vars.get(lease::DIR_VAR).cloned(),
            renewal,
        });
    }

    /// Whether connections are left up when this command ends (`--persist`, unless the
    /// operator stopped it).
    fn keeps(&self) -> bool {
        !self.opts.persist.is_zero() && self.kept_dir.is_some() && !persist::keeping_none()
    }

    /// Whether `session`'s master outlives this command: this one keeps its masters, or
    /// the master is one an earlier command kept.
    fn kept(&self, session: &Session) -> bool {
        self.keeps()
            || self
                .reused
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(session.control_socket())
    }

    /// Where the host's kept master lives: one directory per way of reaching it.
    fn kept_host_dir(&self, root: &std::path::Path, host: &HostInfo, dest: &str) -> PathBuf {
        let var = |k: &str| host.vars.get(k).map(String::as_str).unwrap_or("");
        let config = self
            .opts
            .config_file
            .as_ref()
            .map(|c| std::path::absolute(c).unwrap_or_else(|_| c.clone()))
            .map(|c| c.display().to_string())
            .unwrap_or_default();
        // What the config says, not only where it is: a fixed HostName or Port must not
        // reach the old server through a kept master. Read once per command.
        let content = self.config_digest.get_or_init(|| {
            let home = std::env::var_os("HOME").map(PathBuf::from);
            persist::config_digest(self.opts.config_file.as_deref(), home.as_deref())
        });
        persist::host_dir(
            root,
            &[
                dest,
                var("ansible_port"),
                var("ansible_user"),
                var("ansible_ssh_private_key_file"),
                &config,
                content,
                self.kex(host).unwrap_or(""),
                if self.opts.accept_new_host_keys {
                    "accept-new"
                } else {
                    "strict"
                },
            ],
        )
    }

    /// The key exchange chosen for the host: the command line's, else its variable's.
    fn kex<'h>(&'h self, host: &'h HostInfo) -> Option<&'h str> {
        self.opts
            .kex
            .as_deref()
            .or_else(|| host.vars.get(KEX_VAR).map(String::as_str))
    }

    /// An ssh config that sets `KexAlgorithms` before anything else (ssh takes the first
    /// value it reads), then includes the config ssh would have read: the `--ssh-config`
    /// file, or the user's and the system's. Written once per choice, in the private
    /// control directory.
    fn kex_config(&self, kex: &str) -> Result<PathBuf, TransportError> {
        check_kex(kex).map_err(|e| TransportError::Other(format!("{KEX_VAR}: {e}")))?;
        let mut configs = self.kex_configs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = configs.get(kex) {
            return Ok(p.clone());
        }
        let include = match &self.opts.config_file {
            Some(c) => {
                let c = std::path::absolute(c).unwrap_or_else(|_| c.clone());
                if c.to_string_lossy().contains(['"', '\n']) {
                    return Err(TransportError::Other(format!(
                        "{KEX_VAR}: the ssh config's path {} cannot be included (it has a quote or a newline)",
                        c.display()
                    )));
                }
                format!("Include \"{}\"\n", c.display())
            }
            None => "Include ~/.ssh/config\nInclude /etc/ssh/ssh_config\n".to_string(),
        };
        let path = self
            .control_dir
            .path()
            .join(format!("kex-{}.conf", configs.len()));
        std::fs::write(&path, format!("KexAlgorithms {kex}\n{include}"))
            .map_err(|e| TransportError::Other(format!("cannot write {}: {e}", path.display())))?;
        configs.insert(kex.to_string(), path.clone());
        Ok(path)
    }

    fn builder(&self, host: &HostInfo) -> Result<SessionBuilder, TransportError> {
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
        match self.kex(host) {
            Some(kex) => {
                b.config_file(self.kex_config(kex)?);
            }
            None => {
                if let Some(cfg) = &self.opts.config_file {
                    b.config_file(cfg);
                }
            }
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
        Ok(b)
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
        let alive = || {
            self.rt
                .block_on(async { tokio::time::timeout(SHORT, session.check()).await })
                .is_ok_and(|r| r.is_ok())
        };
        if idle && !alive() {
            self.sessions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&host.name);
            return self.connect(host);
        }
        Ok(session)
    }

    /// The host's connection cell: empty until a connect (ahead or on demand) fills it.
    fn cell(&self, host: &HostInfo) -> Conn {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(host.name.clone())
            .or_default()
            .clone()
    }

    /// Opening the host's master, owned so it can run in the background: it waits for a
    /// handshake permit (this machine's and the destination sshd's), then connects.
    fn opener(
        &self,
        host: &HostInfo,
    ) -> impl std::future::Future<Output = Result<Arc<Session>, TransportError>> + Send + 'static
    {
        let dest = host
            .vars
            .get("ansible_host")
            .cloned()
            .unwrap_or_else(|| host.name.clone());
        let port = host.vars.get("ansible_port").cloned().unwrap_or_default();
        let per_sshd = self
            .sshd_handshakes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(format!("{dest}:{port}"))
            .or_insert_with(|| Arc::new(Semaphore::new(HANDSHAKES_PER_SSHD)))
            .clone();
        let all = self.handshakes.clone();
        let mut builder = self.builder(host);
        let kept = self
            .kept_dir
            .as_ref()
            .map(|root| self.kept_host_dir(root, host, &dest));
        if let (Some(dir), Ok(b)) = (&kept, &mut builder) {
            if let Some(secs) = NonZeroUsize::new(self.opts.persist.as_secs() as usize) {
                b.control_directory(dir)
                    .control_persist(ControlPersist::IdleFor(secs));
            }
        }
        let keep = self.keeps();
        let reused = self.reused.clone();
        let name = host.name.clone();
        // ConnectTimeout covers only the TCP connect; a link that dies during the handshake
        // would otherwise hang until the server-alive checks give up.
        let limit = self.opts.connect_timeout + Duration::from_secs(5);
        async move {
            let builder = builder?;
            if let Some(dir) = &kept {
                if let Some(s) = reuse(dir).await {
                    tracing::debug!(host = %name, "ssh reuses a kept connection");
                    reused
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(s.control_socket().to_path_buf());
                    return Ok(Arc::new(s));
                }
                if keep {
                    std::fs::DirBuilder::new()
                        .mode(0o700)
                        .create(dir)
                        .or_else(|e| match e.kind() {
                            std::io::ErrorKind::AlreadyExists => Ok(()),
                            _ => Err(e),
                        })
                        .map_err(|e| {
                            TransportError::Other(format!("cannot make {}: {e}", dir.display()))
                        })?;
                }
            }
            let _one = per_sshd.acquire_owned().await;
            let _all = all.acquire_owned().await;
            tracing::debug!(host = %name, dest = %dest, "ssh connecting");
            match tokio::time::timeout(limit, builder.connect_mux(&dest)).await {
                Ok(r) => r.map(Arc::new).map_err(|e| {
                    let msg = describe(&e);
                    host_key_changed(&name, &msg).unwrap_or(TransportError::Unreachable(msg))
                }),
                Err(_) => Err(TransportError::Unreachable(format!(
                    "no SSH session with {dest} after {}s",
                    limit.as_secs()
                ))),
            }
        }
    }

    fn connect(&self, host: &HostInfo) -> Result<Arc<Session>, TransportError> {
        let cell = self.cell(host);
        let started = std::time::Instant::now();
        let result = self
            .rt
            .block_on(cell.get_or_init(|| self.opener(host)))
            .clone();
        let elapsed = started.elapsed().as_secs_f64();
        match &result {
            Ok(_) => tracing::debug!(host = %host.name, elapsed, "ssh session ready"),
            Err(e) => {
                tracing::warn!(host = %host.name, elapsed, error = %e, "ssh connection failed")
            }
        }
        result
    }

    /// Runs `remote` on the host and waits for it: the host stops it at its timeout (whole
    /// seconds, rounded up); past that and a margin, the link is taken for dead.
    async fn wait_remote(
        &self,
        host: &HostInfo,
        session: &Session,
        remote: &str,
        timeout: Option<Duration>,
        start: Instant,
    ) -> Waited {
        let permits = self.permit(&host.name);
        let id = self.next_command.fetch_add(1, Ordering::SeqCst);
        let _permit = permits.acquire().await;
        // The host stops the command at its timeout (whole seconds, rounded up); past
        // that and a margin, the link is taken for dead.
        let deadline = timeout.map(|t| {
            tokio::time::Instant::from_std(
                start + Duration::from_secs(remote_secs(t).max(1)) + TIMEOUT_MARGIN,
            )
        });
        let until_deadline = || async move {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        let mut cmd = session.raw_command(remote);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let spawned = tokio::select! {
            r = cmd.spawn() => r,
            _ = until_deadline() => return Waited::LinkSilent { killed: false },
        };
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => return Waited::Done(Err(e)),
        };
        // Held open, and written only to kill (see remote_command).
        if let Some(stdin) = child.stdin().take() {
            self.in_flight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id, stdin);
        }
        let output = child.wait_with_output();
        tokio::pin!(output);
        let waited = tokio::select! {
            r = &mut output => Waited::Done(r),
            _ = until_deadline() => {
                // The host did not stop it in time: ask once more, through the watcher,
                // and give it a moment to say it did.
                let stdin = self
                    .in_flight
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id);
                if let Some(mut stdin) = stdin {
                    use tokio::io::AsyncWriteExt;
                    let _ = tokio::time::timeout(TIMEOUT_MARGIN, async {
                        let _ = stdin.write_all(KILL_LINE).await;
                        let _ = stdin.flush().await;
                    })
                    .await;
                }
                let answered = tokio::time::timeout(TIMEOUT_MARGIN, &mut output).await;
                Waited::LinkSilent {
                    killed: matches!(answered, Ok(Ok(_))),
                }
            }
        };
        self.in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        waited
    }

    /// What a command's wait gives the step.
    fn output(
        &self,
        result: Waited,
        timeout: Option<Duration>,
        start: Instant,
    ) -> Result<Output, TransportError> {
        let out = match result {
            Waited::LinkSilent { killed } => {
                return Err(TransportError::TimedOut {
                    after: timeout.unwrap_or_default(),
                    killed,
                })
            }
            Waited::Done(Err(e)) => {
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
            Waited::Done(Ok(o)) => o,
        };
        let code = out.status.code().unwrap_or(-1);
        // timeout(1) exits 124 (or 137 after -k) when it had to stop the command.
        if let Some(t) = timeout {
            if (code == 124 || code == 137) && start.elapsed() + Duration::from_millis(500) >= t {
                return Err(TransportError::TimedOut {
                    after: t,
                    killed: true,
                });
            }
        }
        Ok(Output {
            code,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// How the host's commands are sent: as its first command found out, or as the first
    /// command of an earlier run on this kept master did (`persist::remember_shells`).
    fn shells_of(&self, host: &HostInfo, session: &Session) -> Option<Shells> {
        let mut shells = self.shells.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = shells.get(&host.name) {
            return Some(*s);
        }
        let socket = session.control_socket();
        if !self
            .reused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(socket)
        {
            return None;
        }
        let found = Shells::from_probe(persist::remembered_shells(socket)?.trim());
        shells.insert(host.name.clone(), found);
        Some(found)
    }

    /// Takes the host's lease in the same round trip as its first command (`lease_then`).
    /// `Some`: the command ran, here is its wait. `None`: the lease was settled before (or by
    /// another command on the host meanwhile), and the command is still to run.
    fn lease_with(
        &self,
        host: &HostInfo,
        session: &Arc<Session>,
        command: &str,
        timeout: Option<Duration>,
        start: Instant,
        known: Option<Shells>,
    ) -> Result<Option<Waited>, TransportError> {
        let Some(owner) = self.owner.lock().unwrap_or_else(|e| e.into_inner()).clone() else {
            return Ok(None);
        };
        let cell = self.lease_cell(host)?;
        if cell.initialized() {
            return self.lease(host, session).map(|()| None);
        }
        let become_root = host.becomes();
        let dir = host.vars.get(lease::DIR_VAR).map(String::as_str);
        // Renewed from now on, not from the end of the first command: that may outlast the
        // lease's expiry. Given up below when the lease was not taken.
        self.renew(host, session, owner.clone(), become_root);
        let mut ran = None;
        let result = self
            .rt
            .block_on(cell.get_or_init(|| async {
                let take = lease::take_script(&owner, dir, None);
                let line = lease_then(&take, become_root, command, timeout, known);
                let waited = self.wait_remote(host, session, &line, timeout, start).await;
                let (answer, waited) = split_lease(&host.name, waited);
                match answer {
                    Ok(shells) => {
                        if known.is_none() && self.kept(session) {
                            persist::remember_shells(session.control_socket(), shells.words());
                        }
                        self.shells
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(host.name.clone(), shells);
                        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
                        if let Some(h) = held.iter_mut().find(|h| h.host == host.name) {
                            h.posix_login = shells.posix_login;
                        }
                        ran = waited;
                        Ok(())
                    }
                    // A run whose controller died on this machine acts on nothing any more.
                    Err(TransportError::Leased {
                        run, controller, ..
                    }) if dead_here(&controller) => {
                        let script = lease::take_script(&owner, dir, Some(&run));
                        read_answer(
                            &host.name,
                            short(session, &script, become_root, false).await,
                        )
                    }
                    Err(e) => {
                        // The command's own failure says more than the lease's.
                        ran = waited;
                        Err(e)
                    }
                }
            }))
            .clone();
        if result.is_err() {
            self.stop_renewing(&host.name);
        }
        match (result, ran) {
            (Ok(()), ran) => Ok(ran),
            (Err(_), Some(ran)) => Ok(Some(ran)),
            (Err(e), None) => Err(e),
        }
    }

    /// Forgets the host's lease without releasing it (it was not taken, or went with a reboot).
    fn stop_renewing(&self, host: &str) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.retain(|h| {
            if h.host == host {
                h.renewal.abort();
            }
            h.host != host
        });
    }

    /// The host's lease cell, or the loss of its lease to another run.
    fn lease_cell(&self, host: &HostInfo) -> Result<LeaseCell, TransportError> {
        if let Some(e) = self
            .lost
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&host.name)
        {
            return Err(e.clone());
        }
        Ok(self
            .leases
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(host.name.clone())
            .or_default()
            .clone())
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
        let reused = self
            .reused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for cell in sessions {
            if let Some(Ok(s)) = cell.get() {
                if !reused.contains(s.control_socket()) {
                    exit_master(s.control_socket());
                }
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
        let known = self.shells_of(host, &session);
        let start = Instant::now();
        let waited = match self.lease_with(host, &session, command, timeout, start, known)? {
            Some(waited) => waited,
            None => {
                let remote = known.unwrap_or_default().line(command, timeout);
                self.rt
                    .block_on(self.wait_remote(host, &session, &remote, timeout, start))
            }
        };
        self.output(waited, timeout, start)
    }

    /// `sh -c` reading `input` on stdin, on the host's connection. The channel's stdin
    /// carries the bytes, so no kill watcher: the host's `timeout(1)` bounds the command and
    /// closing the connection ends the transfer.
    fn exec_with_input(
        &self,
        host: &HostInfo,
        command: &str,
        input: &[u8],
        timeout: Option<Duration>,
    ) -> Result<Output, TransportError> {
        if self.killed.load(Ordering::SeqCst) {
            return Err(TransportError::Other("the run was killed".into()));
        }
        let session = self.session(host)?;
        self.lease(host, &session)?;
        let permits = self.permit(&host.name);
        let shells = self.shells_of(host, &session).unwrap_or_default();
        let remote = shells.script(&bounded(command, timeout));
        let limit = timeout.map(|t| Duration::from_secs(remote_secs(t).max(1)) + TIMEOUT_MARGIN);
        let out = self.rt.block_on(async {
            let _permit = permits.acquire().await;
            let run = async {
                let mut child = session
                    .raw_command(&remote)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .await?;
                if let Some(mut stdin) = child.stdin().take() {
                    use tokio::io::AsyncWriteExt;
                    // A command that stops reading (it failed) ends the write; its exit
                    // status says what happened.
                    let feed = async move {
                        let _ = stdin.write_all(input).await;
                        let _ = stdin.shutdown().await;
                    };
                    let (_, out) = tokio::join!(feed, child.wait_with_output());
                    return out;
                }
                child.wait_with_output().await
            };
            match limit {
                Some(l) => tokio::time::timeout(l, run).await.ok(),
                None => Some(run.await),
            }
        });
        match out {
            None => Err(TransportError::TimedOut {
                after: timeout.unwrap_or_default(),
                killed: false,
            }),
            Some(Err(e)) => Err(TransportError::Unreachable(describe(&e))),
            Some(Ok(o)) => Ok(Output {
                code: o.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            }),
        }
    }

    /// Ends the host's master (and its lease bookkeeping: a rebooted host lost its lease
    /// file with /run, so the next command takes the lease again on the new connection).
    fn disconnect(&self, host: &HostInfo) {
        let cell = self
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&host.name);
        if let Some(Ok(s)) = cell.as_ref().and_then(|c| c.get()) {
            exit_master(s.control_socket());
        }
        self.leases
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&host.name);
        // The shells were found on the old login: the new connection's first command finds
        // them again (a runbook may have changed them before the reboot).
        self.shells
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&host.name);
        self.stop_renewing(&host.name);
    }

    fn is_killed(&self) -> bool {
        self.killed.load(Ordering::SeqCst)
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

    /// Opens the masters of the hosts that start next, in the background; a host's first
    /// command waits for its connect to finish (or fail: the command then says why).
    fn connect_ahead(&self, hosts: &[&HostInfo]) {
        if self.killed.load(Ordering::SeqCst) {
            return;
        }
        for host in hosts {
            let cell = self.cell(host);
            if cell.initialized() {
                continue;
            }
            // Checked before its first use if it waited long enough for ControlPersist to end it.
            self.last_used
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(host.name.clone(), Instant::now());
            let open = self.opener(host);
            let name = host.name.clone();
            self.rt.spawn(async move {
                match cell.get_or_init(|| open).await {
                    Ok(_) => tracing::debug!(host = %name, "ssh connected ahead"),
                    Err(e) => tracing::debug!(host = %name, error = %e, "ssh connect-ahead failed"),
                }
            });
        }
    }

    /// Releases the host's lease and closes its master in the background.
    fn finished_with(&self, host: &HostInfo) {
        let lock = |m: &Mutex<HashMap<String, LeaseCell>>| {
            m.lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&host.name);
        };
        lock(&self.leases);
        self.last_used
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&host.name);
        let Some(cell) = self
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&host.name)
        else {
            return;
        };
        let held = {
            let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
            let i = held.iter().position(|h| h.host == host.name);
            i.map(|i| held.swap_remove(i))
        };
        let owner = self.owner.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let keep = self.keeps();
        let reused = self.reused.clone();
        let task = self.rt.spawn(async move {
            if let (Some(h), Some(owner)) = (held, owner) {
                release(h, &owner).await;
            }
            close_conn(cell, keep, &reused).await;
        });
        self.closing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(task);
    }

    /// Releases each host's lease, then closes its connection: host by host, many at once
    /// (a host's close does not wait for the other hosts' releases).
    fn shutdown(&self) {
        let mut held: HashMap<String, Held> =
            std::mem::take(&mut *self.held.lock().unwrap_or_else(|e| e.into_inner()))
                .into_iter()
                .map(|h| (h.host.clone(), h))
                .collect();
        let cells: Vec<(Option<Held>, Option<Conn>)> = self
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(host, c)| (held.remove(&host), Some(c)))
            .collect();
        // A lease whose host has no connection left is released all the same.
        let cells: Vec<_> = cells
            .into_iter()
            .chain(held.into_values().map(|h| (Some(h), None)))
            .collect();
        let closing = std::mem::take(&mut *self.closing.lock().unwrap_or_else(|e| e.into_inner()));
        if cells.is_empty() && closing.is_empty() {
            return;
        }
        let owner = self.owner.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let keep = self.keeps();
        let reused = self.reused.clone();
        self.rt.block_on(async {
            let bound = Arc::new(Semaphore::new(CLOSES));
            let closes: Vec<_> = cells
                .into_iter()
                .map(|(held, cell)| {
                    let (bound, reused, owner) = (bound.clone(), reused.clone(), owner.clone());
                    tokio::spawn(async move {
                        let _permit = bound.acquire_owned().await;
                        if let (Some(h), Some(owner)) = (held, owner) {
                            release(h, &owner).await;
                        }
                        if let Some(cell) = cell {
                            close_conn(cell, keep, &reused).await;
                        }
                    })
                })
                .collect();
            let all = async {
                for c in closing.into_iter().chain(closes) {
                    let _ = c.await;
                }
            };
            // A master that does not answer is left to its ControlPersist (a release has
            // SHORT to answer, then its close as long).
            let _ = tokio::time::timeout(2 * SHORT, all).await;
        });
    }
}

/// A live master kept in `dir` by an earlier command; dead ones are cleared away.
async fn reuse(dir: &std::path::Path) -> Option<Session> {
    for socket in persist::sockets(dir) {
        let log = socket.with_file_name("log");
        let s = Session::resume_mux(
            socket.clone().into_boxed_path(),
            Some(log.into_boxed_path()),
        );
        let alive = tokio::time::timeout(Duration::from_secs(2), s.check()).await;
        if matches!(alive, Ok(Ok(()))) {
            return Some(s);
        }
        let _ = s.detach();
        if let Some(d) = socket.parent() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
    None
}

/// Stops renewing a lease and removes it from the host.
async fn release(h: Held, owner: &Owner) {
    h.renewal.abort();
    let script = lease::release_script(&owner.run, h.dir.as_deref());
    let _ = short(&h.session, &script, h.become_root, h.posix_login).await;
}

/// Closes a master: through the mux protocol when nothing else holds the session, else by
/// its control socket (`ssh -O exit`).
async fn close_conn(cell: Conn, keep: bool, reused: &Mutex<std::collections::HashSet<PathBuf>>) {
    let session = match Arc::try_unwrap(cell) {
        Ok(cell) => match cell.into_inner() {
            Some(Ok(s)) => s,
            _ => return,
        },
        Err(shared) => match shared.get() {
            Some(Ok(s)) => s.clone(),
            _ => return,
        },
    };
    let theirs = reused
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(session.control_socket());
    match Arc::try_unwrap(session) {
        // Left running for the next command; it exits after ControlPersist idle.
        Ok(s) if keep || theirs => {
            let _ = s.detach();
        }
        Ok(s) => {
            let _ = s.close().await;
        }
        Err(_) if theirs => {}
        Err(s) => {
            let socket = s.control_socket().to_path_buf();
            let _ = tokio::task::spawn_blocking(move || exit_master(&socket)).await;
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
        // `fail_closed`'s newline: sent as escapes that `sh` turns back (`sh_c`).
        let plain = remote_command("echo 'hi' ; id", None);
        assert!(plain.starts_with("sh -c 'eval \"$(printf %b \""), "{plain}");
        assert!(!plain.contains(['\n', '!']), "{plain}");
        assert!(plain.contains("exec 3<&0; "), "{plain}");
        let timed = remote_command("sleep 100", Some(Duration::from_millis(2500)));
        assert!(timed.contains("exec timeout -k 5 3 sh -c "), "{timed}");
        // A script none of whose characters a login shell would change goes as it is.
        assert_eq!(sh_c("echo 'a b' $x"), "sh -c 'echo '\\''a b'\\'' $x'");
    }

    /// A command as the user's login shell runs `line` (`LOGIN -c LINE`, as sshd does), its
    /// stdin a pipe (the channel).
    fn under_login(login: &str, line: &str) -> std::process::Output {
        std::process::Command::new(login)
            .arg("-c")
            .arg(line)
            .env("SHELL", login)
            .env("LOGNAME", user_name())
            .stdin(std::process::Stdio::piped())
            .output()
            .unwrap()
    }

    /// Every line sent while the host's login shell is not known to be POSIX reaches `sh`
    /// unchanged through csh and tcsh (which expand `!` inside single quotes and refuse a
    /// newline there, then run the next line themselves) as through sh and bash: a command,
    /// a first command after its lease, fleetbook's own scripts.
    #[test]
    fn lines_for_a_login_shell_not_known_to_be_posix_reach_sh_unchanged_through_csh() {
        let logins = ["/bin/sh", "/bin/bash", "/usr/bin/tcsh", "/usr/bin/csh"];
        for l in logins {
            assert!(
                std::path::Path::new(l).exists(),
                "{l} is missing: ./test.sh --setup installs tcsh"
            );
        }
        let command = "x='it'\\''s'; printf '%s|%s\\n' \"$x\" 'a!b\\\\c'\n\
                       echo \"$((6*7))\" `echo q` 100% \"!\"; exit 7";
        let expected = "it's|a!b\\\\c\n42 q 100% !\n";
        let owner = |run: &str| Owner {
            run: run.into(),
            controller: "here:1".into(),
        };
        let unknown = Shells::default();
        let bash = Shells {
            command: HostShell::BashPipefail,
            posix_login: false,
        };
        for login in logins {
            for timeout in [None, Some(Duration::from_secs(30))] {
                let case = format!("{login} {timeout:?}");
                for line in [unknown.line(command, timeout), bash.line(command, timeout)] {
                    let out = under_login(login, &line);
                    assert_eq!(String::from_utf8_lossy(&out.stdout), expected, "{case}");
                    assert_eq!(out.status.code(), Some(7), "{case}");
                }
                let dir = tempfile::tempdir().unwrap();
                let d = dir.path().to_str().unwrap();
                let take = lease::take_script(&owner("a"), Some(d), None);
                let out = under_login(login, &lease_then(&take, false, command, timeout, None));
                let (answer, waited) = split_lease("h1", Waited::Done(Ok(out)));
                assert!(answer.is_ok(), "{case}: {answer:?}");
                let Some(Waited::Done(Ok(out))) = waited else {
                    panic!("{case}: the command did not run")
                };
                assert_eq!(String::from_utf8_lossy(&out.stdout), expected, "{case}");
                assert_eq!(out.status.code(), Some(7), "{case}");
                // Held by another run: no part of the command runs, not even its second line.
                let marker = dir.path().join("ran-b");
                let theirs = format!("true\ntouch {}", quote(marker.to_str().unwrap()));
                let take = lease::take_script(&owner("b"), Some(d), None);
                let out = under_login(login, &lease_then(&take, false, &theirs, timeout, None));
                let (answer, _) = split_lease("h1", Waited::Done(Ok(out)));
                assert!(
                    matches!(&answer, Err(TransportError::Leased { run, .. }) if run == "a"),
                    "{case}: {answer:?}"
                );
                assert!(!marker.exists(), "{case}: ran outside its lease");
                // The release, fleetbook's own script.
                let out = under_login(login, &unknown.script(&lease::release_script("a", Some(d))));
                assert_eq!(String::from_utf8_lossy(&out.stdout), "released\n", "{case}");
                assert!(!dir.path().join("fleetbook.lease").exists(), "{case}");
            }
        }
    }

    // Stop 28's note: a timed `become` command that ignored TERM outlived its timeout where
    // the link was cut (the login user's `timeout` reaches only sudo).
    #[test]
    fn only_a_timed_become_command_is_killed_through_sudo_after_its_timeout() {
        let t = Some(Duration::from_secs(3));
        let sudo = fleetbook_stdlib::host::sudo_command("sleep 100");
        let after = "{ [ $r = 137 ] && k -0 && z; } </dev/null >/dev/null 2>&1 & exit $r";
        for shell in [HostShell::Sh, HostShell::BashPipefail] {
            let (timed_sudo, _) = wrapped(shell, &sudo, t);
            assert!(timed_sudo.ends_with(after), "{timed_sudo}");
            assert!(timed_sudo.contains("sudo -n sh -c 'kill"), "{timed_sudo}");
            for (command, timeout) in [(sudo.as_str(), None), ("sleep 100", t)] {
                let (wrapper, _) = wrapped(shell, command, timeout);
                assert!(!wrapper.contains("$r = 137"), "{wrapper}");
            }
        }
    }

    /// The wrapper as a host's login shell runs it, stdin a pipe (the channel), for a host
    /// whose shells are known (`Shells::line`). Sent through `sh -c`: `own_group` as sshd
    /// starts it (in a new group, under a login shell that `exec`s its last command, as bash
    /// does), else inside another process group (dash as the login shell forks). Sent as
    /// the line itself to the login shell (dash, or bash): in a group of its own as sshd
    /// starts it (`own_group`), or inside another group (under another program).
    fn start_with(
        shells: Shells,
        command: &str,
        own_group: bool,
        timeout: Option<Duration>,
    ) -> std::process::Child {
        login_run(shells, shells.line(command, timeout), own_group)
    }

    /// `line` as the login shell `shells` says runs it (see `start_with`).
    fn login_run(shells: Shells, line: String, own_group: bool) -> std::process::Child {
        use std::os::unix::process::CommandExt;
        let mut cmd = match (shells.posix_login, own_group) {
            (true, true) => std::process::Command::new("bash"),
            _ => std::process::Command::new("sh"),
        };
        if shells.posix_login && own_group {
            // bash as sshd runs it reads the user's ~/.bashrc: here one that redefines what
            // the wrapper uses, as `BASH_ENV` (what a non-interactive bash reads).
            cmd.env("BASH_ENV", hostile_bashrc());
        }
        cmd.arg("-c")
            .arg(if own_group && !shells.posix_login {
                format!("exec {line}")
            } else {
                line
            })
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        if own_group {
            cmd.process_group(0);
        }
        cmd.spawn().unwrap()
    }

    #[test]
    fn the_wrapper_passes_output_and_exit_code_through() {
        for (shell, own_group) in SHELLS {
            let child = start_with(
                shell,
                "echo 'it'\\''s' \"$#\"; echo err >&2; exit 3",
                own_group,
                None,
            );
            let out = child.wait_with_output().unwrap();
            // The command sees no arguments of the wrapper's.
            let case = format!("{shell:?} {own_group}");
            assert_eq!(String::from_utf8_lossy(&out.stdout), "it's 0\n", "{case}");
            assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n", "{case}");
            assert_eq!(out.status.code(), Some(3), "{case}");
        }
    }

    /// Whether a process whose command line matches `pattern` (pgrep -f) is still running,
    /// besides a wrapper's watcher (a fork of the wrapper, whose line holds the command's
    /// script): told to kill, it outlives the command until its group is gone, 5 s at most.
    fn left_running(pattern: &str) -> bool {
        let found = std::process::Command::new("pgrep")
            .args(["-af", pattern])
            .output()
            .unwrap();
        String::from_utf8_lossy(&found.stdout)
            .lines()
            .any(|l| !l.contains("exec 3<&0"))
    }

    /// Both shells a command can start in, sent through `sh -c` or to a POSIX login shell,
    /// each on both of the wrapper's paths.
    const SHELLS: [(Shells, bool); 8] = {
        const fn s(command: HostShell, posix_login: bool) -> Shells {
            Shells {
                command,
                posix_login,
            }
        }
        use HostShell::{BashPipefail, Sh};
        [
            (s(Sh, false), false),
            (s(Sh, false), true),
            (s(BashPipefail, false), false),
            (s(BashPipefail, false), true),
            (s(Sh, true), false),
            (s(Sh, true), true),
            (s(BashPipefail, true), false),
            (s(BashPipefail, true), true),
        ]
    };

    /// A ~/.bashrc that would break a wrapper run after it: functions named as what the
    /// wrapper runs, aliases on, `set -eum`, an exit trap that prints, an `IFS` that splits
    /// numbers away, and a 1 s timeout on every `read` (a hardened host's readonly `TMOUT`).
    ///
    /// Written once per test process: a bash that read it while another test rewrote it
    /// could find it empty, export no `FB_TEST_RC`, and leave the command's own bash to read
    /// it whole.
    fn hostile_bashrc() -> PathBuf {
        static PATH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
        PATH.get_or_init(write_hostile_bashrc).clone()
    }

    fn write_hostile_bashrc() -> PathBuf {
        let path = std::env::temp_dir().join(format!("fleetbook-bashrc-{}", std::process::id()));
        std::fs::write(
            &path,
            // Only the login shell reads it (sshd's bash does; the command's own bash, a
            // level deeper, does not).
            "[ -n \"${FB_TEST_RC:-}\" ] && return; export FB_TEST_RC=1\n\
             kill() { echo kill-shadowed; }; wait() { return 0; }; read() { return 1; }\n\
             sleep() { :; }; setsid() { echo setsid-shadowed; }; exit() { builtin exit 0; }\n\
             shopt -s expand_aliases; alias exec='echo exec-shadowed'\n\
             set -eum; trap 'echo bye' EXIT; IFS=0123456789; readonly TMOUT=1; export TMOUT\n",
        )
        .unwrap();
        path
    }

    #[test]
    fn a_host_known_to_run_bash_gets_pipefail_and_bash_on_both_paths_and_under_a_timeout() {
        for (shell, own_group) in SHELLS
            .into_iter()
            .filter(|(s, _)| s.command == HostShell::BashPipefail)
        {
            for timeout in [None, Some(Duration::from_secs(30))] {
                let case = format!("{own_group} {timeout:?}");
                // A pipeline fails when any part of it fails, as `fail_closed` has it.
                let out = start_with(shell, "false | true", own_group, timeout)
                    .wait_with_output()
                    .unwrap();
                assert_eq!(out.status.code(), Some(1), "{case}");
                // The command runs in bash, as `fail_closed`'s `exec bash` ran it on such hosts.
                let out = start_with(shell, "[[ a == a ]] && echo \"$0\"", own_group, timeout)
                    .wait_with_output()
                    .unwrap();
                assert_eq!(String::from_utf8_lossy(&out.stdout), "bash\n", "{case}");
                assert_eq!(out.status.code(), Some(0), "{case}");
            }
        }
    }

    /// A first command as the host runs it (`sh -c LINE`, with bash as the login shell),
    /// its wait as `exec` sees it.
    fn first(line: &str) -> Waited {
        first_under(line, &passwd_shell())
    }

    /// Whether this machine's `sh` has pipefail (else `fail_closed` runs commands in bash).
    fn sh_has_pipefail() -> bool {
        std::process::Command::new("sh")
            .args(["-c", "set -o pipefail"])
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap()
            .success()
    }

    /// This user's name, as sshd sets `LOGNAME`.
    fn user_name() -> String {
        let out = std::process::Command::new("id")
            .arg("-un")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// This user's login shell, from its /etc/passwd entry.
    fn passwd_shell() -> String {
        let name = user_name();
        std::fs::read_to_string("/etc/passwd")
            .unwrap()
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.len() == 7 && f[0] == name)
            .map(|f| f[6].to_string())
            .expect("this user is in /etc/passwd")
    }

    /// Whether a login shell is one fleetbook sends its wrapper to as the line itself.
    fn is_posix(shell: &str) -> bool {
        matches!(shell.rsplit('/').next(), Some("bash" | "dash" | "sh"))
    }

    /// `first`, with `login` as the user's login shell (`$SHELL`).
    fn first_under(line: &str, login: &str) -> Waited {
        first_as(line, login, &user_name())
    }

    /// `first_under`, with `user` as the user's name (`$LOGNAME`).
    fn first_as(line: &str, login: &str, user: &str) -> Waited {
        Waited::Done(
            std::process::Command::new("sh")
                .arg("-c")
                .arg(line)
                .env("SHELL", login)
                .env("LOGNAME", user)
                .stdin(std::process::Stdio::piped())
                .output()
                .map_err(openssh::Error::ChildIo),
        )
    }

    #[test]
    fn a_first_command_runs_after_its_lease_and_not_without_it() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let owner = |run: &str| Owner {
            run: run.into(),
            controller: "here:1".into(),
        };
        let line = lease_then(
            &lease::take_script(&owner("a"), Some(d), None),
            false,
            "echo ran; exit 4",
            None,
            None,
        );
        let (answer, waited) = split_lease("h1", first(&line));
        // The probe's line is the shell `fail_closed` picks on this machine.
        let expected = if sh_has_pipefail() {
            HostShell::Sh
        } else {
            HostShell::BashPipefail
        };
        let expected = Shells {
            command: expected,
            posix_login: is_posix(&passwd_shell()),
        };
        assert_eq!(answer.as_ref().ok(), Some(&expected), "{answer:?}");
        let Some(Waited::Done(Ok(out))) = waited else {
            panic!("the command did not run")
        };
        assert_eq!(String::from_utf8_lossy(&out.stdout), "ran\n");
        assert_eq!(out.status.code(), Some(4));
        // Another run finds the lease held: its command does not run.
        let marker = dir.path().join("ran-b");
        let theirs = format!("touch {}", quote(marker.to_str().unwrap()));
        let line = lease_then(
            &lease::take_script(&owner("b"), Some(d), None),
            false,
            &theirs,
            None,
            None,
        );
        let (answer, waited) = split_lease("h1", first(&line));
        assert!(
            matches!(&answer, Err(TransportError::Leased { run, .. }) if run == "a"),
            "{answer:?}"
        );
        assert!(waited.is_none());
        assert!(!marker.exists());
    }

    #[test]
    fn a_first_command_runs_in_the_shell_later_commands_get_and_in_a_session_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let owner = Owner {
            run: "a".into(),
            controller: "here:1".into(),
        };
        let ours = std::process::id().to_string();
        // Its shell, whether a pipeline fails closed, and its session (field 6 of its stat).
        let command = "false | true; echo \"$0 $?\"; cut -d' ' -f6 /proc/self/stat; exit 5";
        // The passwd entry of the user these tests run as names the real login shell.
        let real = passwd_shell();
        // `SHELL` names a POSIX shell that is not the user's (a startup file set it).
        let other = if real == "/bin/sh" {
            "/bin/bash"
        } else {
            "/bin/sh"
        };
        let logins = [
            (real.as_str(), is_posix(&real)),
            (other, false),
            ("/usr/bin/fish", false),
            ("/bin/tcsh", false),
            ("", false),
        ];
        for (timeout, (login, kind)) in [None, Some(Duration::from_secs(30))]
            .into_iter()
            .flat_map(|t| logins.map(|l| (t, l)))
        {
            let take = lease::take_script(&owner, Some(d), None);
            let line = lease_then(&take, false, command, timeout, None);
            let (answer, waited) = split_lease("h1", first_under(&line, login));
            let shells = answer.unwrap();
            assert_eq!(shells.posix_login, kind, "{login}");
            let shell = shells.command;
            let Some(Waited::Done(Ok(out))) = waited else {
                panic!("the command did not run")
            };
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            let mut lines = stdout.lines();
            let argv0 = match shell {
                HostShell::BashPipefail => "bash",
                HostShell::Sh => "sh",
            };
            assert_eq!(
                lines.next(),
                Some(format!("{argv0} 1").as_str()),
                "{timeout:?}"
            );
            let session = lines.next().unwrap().trim();
            assert!(
                !session.is_empty() && session != ours,
                "{timeout:?}: {stdout}"
            );
            assert_eq!(out.status.code(), Some(5), "{timeout:?}");
        }
        // A user /etc/passwd does not know (a directory service's) gets `sh -c`.
        let take = lease::take_script(&owner, Some(d), None);
        let line = lease_then(&take, false, "exit 0", None, None);
        let (answer, _) = split_lease("h1", first_as(&line, &real, "no-such-user-fb14"));
        assert!(!answer.unwrap().posix_login);
    }

    /// On a master whose shells an earlier command found, the first command takes the lease
    /// and runs in the known shell without a probe, sent as any other line (to a POSIX login
    /// shell as itself, under a hostile ~/.bashrc), and does not run when the lease is held.
    #[test]
    fn a_first_command_on_a_master_with_known_shells_takes_the_lease_without_a_probe() {
        let owner = |run: &str| Owner {
            run: run.into(),
            controller: "here:1".into(),
        };
        let command = "false | true; echo \"$0 $?\"; exit 6";
        for (known, own_group) in SHELLS {
            let case = format!("{known:?} {own_group}");
            let dir = tempfile::tempdir().unwrap();
            let d = dir.path().to_str().unwrap();
            let take = lease::take_script(&owner("a"), Some(d), None);
            let line = lease_then(&take, false, command, None, Some(known));
            assert!(!line.contains("/etc/passwd"), "{case}: no probe: {line}");
            assert_eq!(line.starts_with("sh -c "), !known.posix_login, "{case}");
            let run = |line: String| {
                let out = login_run(known, line, own_group).wait_with_output();
                split_lease("h1", Waited::Done(out.map_err(openssh::Error::ChildIo)))
            };
            let (answer, waited) = run(line);
            assert_eq!(answer.as_ref().ok(), Some(&known), "{case}: {answer:?}");
            let Some(Waited::Done(Ok(out))) = waited else {
                panic!("{case}: the command did not run")
            };
            // In `sh`, `fail_closed` still picks per command: bash where `sh` has no pipefail.
            let argv0 = match known.command {
                HostShell::Sh if sh_has_pipefail() => "sh",
                _ => "bash",
            };
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                format!("{argv0} 1\n"),
                "{case}"
            );
            assert_eq!(out.status.code(), Some(6), "{case}");
            // Another run finds the lease held: its command does not run.
            let marker = dir.path().join("ran-b");
            let theirs = format!("touch {}", quote(marker.to_str().unwrap()));
            let take = lease::take_script(&owner("b"), Some(d), None);
            let (answer, waited) = run(lease_then(&take, false, &theirs, None, Some(known)));
            assert!(
                matches!(&answer, Err(TransportError::Leased { run, .. }) if run == "a"),
                "{case}: {answer:?}"
            );
            assert!(waited.is_none(), "{case}");
            assert!(!marker.exists(), "{case}");
        }
    }

    #[test]
    fn a_command_runs_in_a_process_group_of_its_own_wherever_the_wrapper_runs() {
        // The group a command's process is in: never the wrapper's, where its watcher is
        // (see `wrapper`), whether the wrapper leads a group (the login shell's pid) or runs
        // in another one (this test's).
        let group_of = |stat: &str| {
            let fields = stat.rsplit(')').next().unwrap().split_whitespace();
            fields.clone().nth(2).unwrap().to_string()
        };
        let ours = group_of(&std::fs::read_to_string("/proc/self/stat").unwrap());
        for (shell, own_group) in SHELLS {
            let child = start_with(shell, "cat /proc/self/stat", own_group, None);
            let login = child.id().to_string();
            let out = child.wait_with_output().unwrap();
            let group = group_of(&String::from_utf8_lossy(&out.stdout));
            let case = format!("{shell:?} {own_group}");
            assert!(!group.is_empty(), "{case}");
            assert_ne!(group, ours, "{case}");
            assert_ne!(group, login, "{case}");
        }
    }

    #[test]
    fn kill_on_stdin_stops_the_whole_command_and_end_of_input_does_not() {
        use std::io::Write;
        for (i, (shell, own_group)) in SHELLS.into_iter().enumerate() {
            let tag = format!("42.1{i}");
            // Killed: the command and its children (its process group) stop at once.
            let mut child = start_with(
                shell,
                &format!("sleep {tag} & sleep {tag}; echo never"),
                own_group,
                None,
            );
            std::thread::sleep(Duration::from_millis(300));
            let started = Instant::now();
            child.stdin.take().unwrap().write_all(KILL_LINE).unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(started.elapsed() < Duration::from_secs(4), "{own_group}");
            assert_eq!(out.status.code(), Some(143), "terminated ({own_group})");
            assert_eq!(String::from_utf8_lossy(&out.stdout), "");
            std::thread::sleep(Duration::from_millis(200));
            assert!(
                !left_running(&format!("^sleep {tag}")),
                "children left running ({own_group})"
            );
            // Input ends (fleetbook died): the command goes on to its end.
            let mut child = start_with(shell, "sleep 0.5; echo finished", own_group, None);
            drop(child.stdin.take());
            let out = child.wait_with_output().unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), "finished\n");
            assert_eq!(out.status.code(), Some(0));
        }
    }

    /// bash's `TMOUT` (1 s in the hostile ~/.bashrc) ends a watcher's `read`: it reads
    /// again, and a kill sent later still stops the command.
    #[test]
    fn a_kill_after_the_watchers_read_timed_out_still_stops_the_command() {
        for (i, (shell, own_group)) in SHELLS
            .into_iter()
            .filter(|(s, g)| s.posix_login && *g)
            .enumerate()
        {
            let out = killed_after(shell, own_group, &format!("42.6{i}"), None, 2500);
            let case = format!("{shell:?}");
            assert_eq!(String::from_utf8_lossy(&out.stdout), "", "{case}");
            assert_eq!(out.status.code(), Some(143), "{case}");
        }
    }

    /// Starts `sleep TAG & sleep TAG; echo never` on one of the wrapper's paths, writes the
    /// kill after `after_ms`, and checks that neither sleep is left; the command's output.
    fn killed_after(
        shell: Shells,
        own_group: bool,
        tag: &str,
        timeout: Option<Duration>,
        after_ms: u64,
    ) -> std::process::Output {
        use std::io::Write;
        let command = format!("sleep {tag} & sleep {tag}; echo never");
        let mut child = start_with(shell, &command, own_group, timeout);
        std::thread::sleep(Duration::from_millis(after_ms));
        child.stdin.take().unwrap().write_all(KILL_LINE).unwrap();
        let out = child.wait_with_output().unwrap();
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            !left_running(&format!("sleep {tag}")),
            "left running ({shell:?} {own_group})"
        );
        out
    }

    #[test]
    fn a_command_under_a_timeout_is_killed_whole_on_every_path() {
        // timeout(1) leaves the wrapper's group: a kill must still reach it and its command.
        for (i, (shell, own_group)) in SHELLS.into_iter().enumerate() {
            let t = Some(Duration::from_secs(60));
            let out = killed_after(shell, own_group, &format!("42.2{i}"), t, 300);
            let case = format!("{shell:?} {own_group}");
            assert_eq!(String::from_utf8_lossy(&out.stdout), "", "{case}");
            assert_ne!(out.status.code(), Some(0), "{case}");
        }
    }

    #[test]
    fn a_command_is_its_own_shell_on_every_path() {
        // `$$` is the command's shell and no trap of the wrapper's is in it: as `sh -c`.
        for (shell, own_group) in SHELLS {
            let out = start_with(shell, "kill -TERM $$; echo survived", own_group, None)
                .wait_with_output()
                .unwrap();
            let case = format!("{shell:?} {own_group}");
            assert_eq!(String::from_utf8_lossy(&out.stdout), "", "{case}");
            assert_eq!(out.status.code(), Some(143), "{case}");
        }
    }

    #[test]
    fn a_command_that_ignores_term_is_killed_after_it() {
        use std::io::Write;
        // The watcher's KILL follows a TERM that is ignored: by the command's shell, which
        // then goes on (3x), or only by a child, when the shell itself ends at the TERM and
        // the wrapper with it (4x; the child holds no output, so the channel ends at once).
        // A `become` command's watcher signals through sudo (root's `sh -c kill`), and with
        // its own rights where sudo is missing or refuses, as here (42.5x; the fleet tests
        // have sudo).
        // All paths at once: each waits out the watcher's 5 s.
        let children: Vec<_> = SHELLS
            .into_iter()
            .enumerate()
            .flat_map(|(i, (shell, own_group))| {
                let itself = format!("42.3{i}");
                let child = format!("42.4{i}");
                let become_root = format!("42.5{i}");
                let orphan = |tag: &str| {
                    format!("(trap '' TERM; exec sleep {tag}) >/dev/null 2>&1 & sleep {tag}; echo never")
                };
                [
                    (
                        itself.clone(),
                        start_with(shell, &format!("trap '' TERM; sleep {itself}; echo never"), own_group, None),
                    ),
                    (
                        child.clone(),
                        start_with(shell, &orphan(&child), own_group, None),
                    ),
                    (
                        become_root.clone(),
                        start_with(
                            shell,
                            &format!("sudo -n true 2>/dev/null; {}", orphan(&become_root)),
                            own_group,
                            None,
                        ),
                    ),
                ]
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        let killed: Vec<_> = children
            .into_iter()
            .map(|(tag, mut child)| {
                child.stdin.take().unwrap().write_all(KILL_LINE).unwrap();
                (tag, child)
            })
            .collect();
        // Those whose shell ended at the TERM first, before their watcher's KILL.
        let (mut killed, itself): (Vec<_>, Vec<_>) = killed
            .into_iter()
            .partition(|(tag, _)| !tag.starts_with("42.3"));
        killed.extend(itself);
        let mut orphans = Vec::new();
        for (tag, child) in killed {
            let out = child.wait_with_output().unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), "", "{tag}");
            assert_ne!(out.status.code(), Some(0), "{tag}");
            if !tag.starts_with("42.3") {
                // The wrapper is gone and the child is not, yet.
                assert!(left_running(&format!("^sleep {tag}")), "{tag}");
                orphans.push(tag);
            } else {
                assert!(
                    !left_running(&format!("^sleep {tag}")),
                    "left running after the KILL ({tag})"
                );
            }
        }
        let until = Instant::now() + Duration::from_secs(10);
        while orphans.iter().any(|t| left_running(&format!("^sleep {t}"))) && Instant::now() < until
        {
            std::thread::sleep(Duration::from_millis(200));
        }
        for tag in orphans {
            assert!(
                !left_running(&format!("^sleep {tag}")),
                "a child that ignores TERM outlived its command's kill ({tag})"
            );
        }
    }
}

#[cfg(test)]
mod host_key_tests {
    use super::*;

    #[test]
    fn a_changed_host_key_is_read_from_openssh_with_both_fingerprints() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k");
        let made = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key)
            .status()
            .unwrap();
        assert!(made.success());
        let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
        let known = dir.path().join("known_hosts");
        std::fs::write(
            &known,
            format!("other ssh-ed25519 AAAA\n[10.0.0.1]:22 {public}"),
        )
        .unwrap();
        let stderr = format!(
            "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n\
             @    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n\
             @@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n\
             IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!\n\
             The fingerprint for the ED25519 key sent by the remote host is\n\
             SHA256:offeredoffered.\n\
             Offending ED25519 key in {}:2\n\
             Host key verification failed.",
            known.display()
        );
        let expected = known_hosts_fingerprint(&known.display().to_string(), 2).unwrap();
        assert!(expected.starts_with("SHA256:"), "{expected}");
        assert_eq!(
            host_key_changed("db-3", &stderr),
            Some(TransportError::HostKeyChanged {
                host: "db-3".into(),
                expected: Some(expected),
                offered: Some("SHA256:offeredoffered".into()),
            })
        );
        assert_eq!(host_key_changed("db-3", "Connection refused"), None);
    }
}
