//! Host leases: before a run acts on a host it takes a lease on that host, a small file on
//! the host itself (`/run/lock/fleetbook.lease`, or `/tmp/fleetbook.lease` where `/run/lock`
//! is not writable) naming the run, the controller (`hostname:pid`) and an expiry in the
//! host's clock; the host variable `fleetbook_lease_dir` puts it elsewhere (hosts that share
//! a filesystem, such as containers on one machine, need one each). Two controllers never act on one host at once, whatever their state
//! directories. This module builds the shell scripts and reads their answers; the SSH
//! transport sends them, renews the lease while the run goes on and releases it at the end.

use fleetbook_stdlib::quote::quote;
use std::time::Duration;

/// How long a lease lasts unless renewed: a crashed controller's lease expires after this.
pub const TTL: Duration = Duration::from_secs(60);
/// How often a run renews its leases.
pub const RENEW: Duration = Duration::from_secs(20);

/// Who takes the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub run: String,
    /// `hostname:pid` of the controller.
    pub controller: String,
}

/// What a take (or renewal) found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Taken,
    Held {
        run: String,
        controller: String,
        /// Unix time, in the host's clock.
        until: i64,
    },
}

/// The host variable that sets the lease's directory.
pub const DIR_VAR: &str = "fleetbook_lease_dir";

/// Picks the lease file. The lock beside it serializes takers where `flock(1)` exists
/// (util-linux); without it the check and the write are still one short script.
fn path(dir: Option<&str>) -> String {
    let pick = match dir {
        Some(d) => format!("f={};", quote(d)),
        None => "f=/run/lock; { [ -d \"$f\" ] && [ -w \"$f\" ]; } || f=/tmp;".into(),
    };
    format!(
        "{pick} f=$f/fleetbook.lease; \
         if command -v flock >/dev/null 2>&1 && : 2>/dev/null >>\"$f.lock\"; then exec 9>>\"$f.lock\"; flock -w 10 9; fi; "
    )
}

/// Sets `now` to the host's clock in Unix seconds: bash's own `EPOCHSECONDS` where the script
/// runs in bash 5 or later (a POSIX login shell that is bash, or a `/bin/sh` that is), else
/// `date +%s` (one process more). No `!` in it: csh expands one even inside the single quotes
/// of the `sh -c` that carries the script there.
const NOW: &str = "now=; case ${BASH_VERSION-} in [5-9]*) now=${EPOCHSECONDS-};; esac; \
     [ \"$now\" -gt 0 ] 2>/dev/null || now=$(date +%s);";

/// Takes the lease, or renews it when this run holds it (a resumed run takes over its own
/// lease); `stale` names a run whose lease may be taken over too (its controller is known
/// to be dead). Prints `taken`, or `held`, the holder's run, controller and expiry, one a
/// line.
///
/// The new lease is always written beside the file and moved over it, with or without the
/// lock: a taker that could not get the lock (`flock -w` timed out, or a lock file it may not
/// open) never reads half a lease as no lease, and a write that fails (a full disk) leaves
/// the old lease whole.
pub fn take_script(owner: &Owner, dir: Option<&str>, stale: Option<&str>) -> String {
    format!(
        "{}run={}; stale={}; {NOW} \
         if [ -s \"$f\" ]; then {{ read -r r; read -r c; read -r e; }} < \"$f\"; \
         if [ \"$r\" != \"$run\" ] && [ \"$r\" != \"$stale\" ] && [ \"${{e:-0}}\" -gt \"$now\" ] 2>/dev/null; then printf 'held\\n%s\\n%s\\n%s\\n' \"$r\" \"$c\" \"$e\"; exit 0; fi; fi; \
         printf '%s\\n%s\\n%s\\n' \"$run\" {} $((now + {})) > \"$f.$$\" && mv -f \"$f.$$\" \"$f\" && echo taken",
        path(dir),
        quote(&owner.run),
        quote(stale.unwrap_or("")),
        quote(&owner.controller),
        TTL.as_secs()
    )
}

/// Removes the lease if this run still holds it.
pub fn release_script(run: &str, dir: Option<&str>) -> String {
    format!(
        "{}if [ -s \"$f\" ]; then read -r r < \"$f\"; [ \"$r\" = {} ] && rm -f \"$f\"; fi; echo released",
        path(dir),
        quote(run)
    )
}

/// Reads what `take_script` printed; `None` when it printed neither answer (the file could
/// not be written).
pub fn parse(stdout: &str) -> Option<Answer> {
    let mut lines = stdout.lines().map(str::trim);
    match lines.next()? {
        "taken" => Some(Answer::Taken),
        "held" => Some(Answer::Held {
            run: lines.next()?.to_string(),
            controller: lines.next()?.to_string(),
            until: lines.next()?.parse().ok()?,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> String {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    fn a_lease_is_refused_to_another_run_and_taken_over_by_the_same_run() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        let a = Owner {
            run: "run-a".into(),
            controller: "ctl-a:1".into(),
        };
        let b = Owner {
            run: "run-b".into(),
            controller: "ctl b:2".into(),
        };
        assert_eq!(
            parse(&sh(&take_script(&a, Some(&d), None))),
            Some(Answer::Taken)
        );
        match parse(&sh(&take_script(&b, Some(&d), None))) {
            Some(Answer::Held {
                run, controller, ..
            }) => assert_eq!((run.as_str(), controller.as_str()), ("run-a", "ctl-a:1")),
            other => panic!("{other:?}"),
        }
        // The same run (a resume) takes it over.
        assert_eq!(
            parse(&sh(&take_script(&a, Some(&d), None))),
            Some(Answer::Taken)
        );
        // Another run's release leaves it; the holder's removes it.
        sh(&release_script("run-b", Some(&d)));
        assert!(dir.path().join("fleetbook.lease").exists());
        sh(&release_script("run-a", Some(&d)));
        assert!(!dir.path().join("fleetbook.lease").exists());
        assert_eq!(
            parse(&sh(&take_script(&b, Some(&d), None))),
            Some(Answer::Taken)
        );
        // A dead controller's run is taken over when named stale.
        assert_eq!(
            parse(&sh(&take_script(&a, Some(&d), Some("run-b")))),
            Some(Answer::Taken)
        );
    }

    /// A directory of links to these programs only: a host's PATH that lacks the others.
    fn only(tools: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for tool in tools {
            let found = std::process::Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .unwrap();
            let path = String::from_utf8_lossy(&found.stdout).trim().to_string();
            std::os::unix::fs::symlink(path, dir.path().join(tool)).unwrap();
        }
        dir
    }

    /// Takes a lease in `dir` for run-a with `shell` (and `path` as its PATH): it must say
    /// taken. The lease file's text.
    fn taken_in(shell: &str, path: Option<&std::path::Path>, dir: &std::path::Path) -> String {
        let owner = Owner {
            run: "run-a".into(),
            controller: "c:1".into(),
        };
        let mut cmd = std::process::Command::new(shell);
        if let Some(p) = path {
            cmd.env("PATH", p);
        }
        let d = dir.display().to_string();
        let out = cmd
            .arg("-c")
            .arg(take_script(&owner, Some(&d), None))
            .output()
            .unwrap();
        assert_eq!(
            parse(&String::from_utf8_lossy(&out.stdout)),
            Some(Answer::Taken),
            "{shell} PATH {path:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read_to_string(dir.join("fleetbook.lease")).unwrap()
    }

    #[test]
    fn a_lease_is_taken_with_flock_and_without_it_and_leaves_no_temporary_file() {
        // A host without util-linux's flock: only what the script needs besides it.
        let tools = only(&["date", "mv", "rm"]);
        for path in [None, Some(tools.path())] {
            let dir = tempfile::tempdir().unwrap();
            let case = format!("PATH {path:?}");
            let lease = taken_in("/bin/sh", path, dir.path());
            assert!(lease.starts_with("run-a\nc:1\n"), "{case}: {lease}");
            let mut names: Vec<String> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            let expected: &[&str] = match path {
                None => &["fleetbook.lease", "fleetbook.lease.lock"],
                Some(_) => &["fleetbook.lease"],
            };
            assert_eq!(names, expected, "{case}");
        }
    }

    #[test]
    fn a_take_that_cannot_write_leaves_the_holders_lease_whole() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        let owner = |run: &str| Owner {
            run: run.into(),
            controller: "c:1".into(),
        };
        assert_eq!(
            parse(&sh(&take_script(&owner("run-a"), Some(&d), None))),
            Some(Answer::Taken)
        );
        let before = std::fs::read_to_string(dir.path().join("fleetbook.lease")).unwrap();
        // The holder's renewal on a full disk (no byte may be written) fails...
        let full = format!(
            "trap '' XFSZ; ulimit -f 0; {}",
            take_script(&owner("run-a"), Some(&d), None)
        );
        assert_eq!(parse(&sh(&full)), None);
        // ...and leaves its lease as it was, so another run is still refused.
        let after = std::fs::read_to_string(dir.path().join("fleetbook.lease")).unwrap();
        assert_eq!(before, after);
        assert!(matches!(
            parse(&sh(&take_script(&owner("run-b"), Some(&d), None))),
            Some(Answer::Held { .. })
        ));
    }

    /// The expiry is the host's clock plus the TTL, read by bash itself or by `date`.
    #[test]
    fn a_lease_expires_a_ttl_after_the_hosts_clock_in_bash_and_in_sh() {
        // bash finds the time without `date`: its PATH has only `mv`.
        let tools = only(&["mv"]);
        for (shell, path) in [("/bin/bash", Some(tools.path())), ("/bin/sh", None)] {
            let dir = tempfile::tempdir().unwrap();
            let before = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64;
            let lease = taken_in(shell, path, dir.path());
            let until: i64 = lease.lines().nth(2).unwrap().parse().unwrap();
            let ttl = TTL.as_secs() as i64;
            assert!(
                (before + ttl..=before + ttl + 5).contains(&until),
                "{shell}: {until} against {before}"
            );
        }
    }

    #[test]
    fn an_expired_lease_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        std::fs::write(dir.path().join("fleetbook.lease"), "old\nctl:1\n1000\n").unwrap();
        let a = Owner {
            run: "run-a".into(),
            controller: "c:1".into(),
        };
        assert_eq!(
            parse(&sh(&take_script(&a, Some(&d), None))),
            Some(Answer::Taken)
        );
    }
}
