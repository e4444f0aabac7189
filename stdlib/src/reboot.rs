//! `h.reboot(timeout)` and `h.wait_reachable(timeout)`, as Ansible's reboot module: read the
//! boot identity, start the reboot detached (so the command that asked returns), drop the
//! connection, and poll on fresh connections until the host answers with a new identity.

use crate::duration::{format_duration, parse_duration};
use crate::host::Host;
use crate::runtime_error;
use crate::transport::{Output, TransportError};
use rhai::EvalAltResult;
use std::time::{Duration, Instant};

type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

/// What changes at every boot: the kernel's boot id, and the start time of PID 1 (in clock
/// ticks since the kernel booted). A container shares its host's kernel and so its boot id;
/// its PID 1 starts anew when it restarts.
pub const BOOT_ID: &str =
    "cat /proc/sys/kernel/random/boot_id && sed 's/^.*) //' /proc/1/stat | cut -d' ' -f20";

/// Reboots a second later, outside the session (and sudo's pty) of the command that asks, so
/// that command returns and the reboot is not hung up with it.
pub const REBOOT: &str =
    "setsid sh -c 'sleep 1; systemctl reboot || reboot' </dev/null >/dev/null 2>&1 &";

/// What `wait_reachable` runs to see that a host answers.
pub const PROBE: &str = "true";

/// How long one attempt may take, and how long between attempts.
const ATTEMPT: Duration = Duration::from_secs(15);
const PAUSE: Duration = Duration::from_secs(2);

/// The boot identity a command printed: both lines, or an error when they are missing.
fn boot_identity(h: &Host, out: &Output) -> RhaiResult<String> {
    let id = out.stdout.trim().to_string();
    if out.code != 0 || id.lines().count() != 2 {
        return Err(runtime_error(format!(
            "host {}: cannot read the boot identity (`{BOOT_ID}` exited {}: {})",
            h.label(),
            out.code,
            out.stderr.trim()
        )));
    }
    Ok(id)
}

fn refuse_local(h: &Host, op: &str) -> RhaiResult<()> {
    if h.var("ansible_connection") == Some("local") {
        return Err(runtime_error(format!(
            "host {}: {op} refused: the host is this controller (ansible_connection=local)",
            h.label()
        )));
    }
    Ok(())
}

/// `h.reboot(timeout)`: returns once the host runs commands again after a new boot.
pub fn reboot(h: &Host, timeout: &str) -> RhaiResult<()> {
    refuse_local(h, "reboot")?;
    let limit = parse_duration(timeout).map_err(runtime_error)?;
    let read = h.exec(BOOT_ID)?;
    let before = if h.is_dry_run() {
        String::new()
    } else {
        boot_identity(h, &read)?
    };
    h.run(&h.privileged("h.reboot", REBOOT))?;
    if h.is_dry_run() {
        // The recorder shows the poll once; there is nothing to wait for.
        h.exec(BOOT_ID)?;
        return Ok(());
    }
    h.transport().disconnect(&h.info);
    poll(
        h,
        limit,
        timeout,
        |out| boot_identity(h, out).is_ok_and(|now| now != before),
        BOOT_ID,
        "with a new boot",
    )
}

/// `h.wait_reachable(timeout)`: returns once a command runs on the host.
pub fn wait_reachable(h: &Host, timeout: &str) -> RhaiResult<()> {
    let limit = parse_duration(timeout).map_err(runtime_error)?;
    if h.is_dry_run() {
        h.exec(PROBE)?;
        return Ok(());
    }
    poll(h, limit, timeout, |out| out.code == 0, PROBE, "")
}

/// Runs `command` on fresh connections until `done` says yes or `limit` (or the step's
/// time) passes; a connection that failed is dropped so the next attempt opens a new one.
fn poll(
    h: &Host,
    limit: Duration,
    timeout: &str,
    done: impl Fn(&Output) -> bool,
    command: &str,
    what: &str,
) -> RhaiResult<()> {
    let start = Instant::now();
    loop {
        let left = limit.saturating_sub(start.elapsed());
        let step_left = h.time_left(command)?;
        let attempt = [Some(left), step_left, Some(ATTEMPT)]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(ATTEMPT);
        let last =
            match h
                .transport()
                .exec(&h.info, command, Some(attempt.max(Duration::from_secs(1))))
            {
                Ok(out) if done(&out) => return Ok(()),
                Ok(out) => format!("answered, but not yet {what} (exit {})", out.code),
                Err(
                    e @ (TransportError::HostKeyChanged { .. } | TransportError::Leased { .. }),
                ) => return Err(h.failed_to_run(command, e)),
                Err(e) => {
                    h.transport().disconnect(&h.info);
                    e.to_string()
                }
            };
        if start.elapsed() + PAUSE >= limit {
            return Err(runtime_error(format!(
                "host {} did not come back{} within {timeout} ({}); last attempt: {last}",
                h.label(),
                if what.is_empty() {
                    String::new()
                } else {
                    format!(" {what}")
                },
                format_duration(start.elapsed()),
            )));
        }
        sleep(h, PAUSE)?;
    }
}

/// Sleeps in short slices so a kill (Ctrl-C twice, abort --now) ends the wait.
fn sleep(h: &Host, d: Duration) -> RhaiResult<()> {
    let until = Instant::now() + d;
    while Instant::now() < until {
        if h.transport().is_killed() {
            return Err(runtime_error(format!(
                "host {}: killed while waiting",
                h.label()
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}
