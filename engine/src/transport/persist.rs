//! Connections kept between commands (`--persist SECONDS`, like ssh's ControlPersist): a
//! host's master is left running, idle for at most that long, so that the next fleetbook
//! command (`exec`, then `run`, then `resume`) starts on a warm connection.
//!
//! The control sockets live in a private directory: `$XDG_RUNTIME_DIR/fleetbook/ssh`
//! (`/run/user/UID/...`), else `/tmp/fleetbook-UID/ssh`, made mode 0700 and refused unless
//! it is owned by this user and closed to everyone else: whoever can open a control socket
//! can run commands on the host as the user it logged in as. One directory per way of
//! reaching a host (destination, port, user, key file, ssh config, key exchange, host-key
//! policy): a master is only reused for exactly what opened it.

use sha2::{Digest, Sha256};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once the operator stopped a command (Ctrl-C): it keeps no connection behind.
static KEEP_NONE: AtomicBool = AtomicBool::new(false);

/// From now on this process leaves no master behind, whatever `--persist` says.
pub fn keep_none() {
    KEEP_NONE.store(true, Ordering::SeqCst);
}

pub fn keeping_none() -> bool {
    KEEP_NONE.load(Ordering::SeqCst)
}

/// The private socket directory, made if missing; `Err` says why it cannot be trusted.
pub fn private_dir() -> Result<PathBuf, String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    let runtime = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute() && p.is_dir())
        .or_else(|| Some(PathBuf::from(format!("/run/user/{uid}"))).filter(|p| p.is_dir()));
    let base = match runtime {
        Some(r) => r.join("fleetbook"),
        None => PathBuf::from(format!("/tmp/fleetbook-{uid}")),
    };
    let dir = base.join("ssh");
    for d in [&base, &dir] {
        make_private(d, uid)?;
    }
    Ok(dir)
}

/// Makes `dir` (mode 0700) or checks the one there: a directory (not a link), ours, closed.
fn make_private(dir: &Path, uid: u32) -> Result<(), String> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot make {}: {e}", dir.display())),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !meta.is_dir() || meta.uid() != uid {
        return Err(format!(
            "{} is not a directory of this user's (uid {uid})",
            dir.display()
        ));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "{} is open to other users (mode {:o}); it must be 0700",
            dir.display(),
            meta.permissions().mode() & 0o777
        ));
    }
    Ok(())
}

/// The directory for one way of reaching a host: a digest of everything that decides
/// where ssh connects and how, so that a master is never used for another host or user.
pub fn host_dir(root: &Path, parts: &[&str]) -> PathBuf {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    let digest = h.finalize();
    let name: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    root.join(name)
}

/// The control sockets of masters left in a host's directory, newest first.
pub fn sockets(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .map(|e| e.path().join("master"))
        .filter(|p| p.exists())
        .map(|p| {
            let t = std::fs::metadata(&p)
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            (t, p)
        })
        .collect();
    found.sort_by_key(|f| std::cmp::Reverse(f.0));
    found.into_iter().map(|(_, p)| p).collect()
}

/// Beside a kept master's control socket: what the first command of a run on it found out
/// about the host's shells (the words its probe printed after `shell=`). The next command on
/// that master starts from them, without the probe and the `sh` around it: the login shell
/// of a connection is fixed when it logs in, and the file lives in the private directory,
/// where only whoever may use the socket may write.
const SHELLS: &str = "shells";

/// Keeps `words` beside `socket` for the next command on that master (best effort: without
/// the file, that command probes again).
pub fn remember_shells(socket: &Path, words: &str) {
    let _ = std::fs::write(socket.with_file_name(SHELLS), words);
}

/// What `remember_shells` kept beside `socket`, if anything.
pub fn remembered_shells(socket: &Path) -> Option<String> {
    std::fs::read_to_string(socket.with_file_name(SHELLS)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_directory_per_way_of_reaching_a_host() {
        let root = Path::new("/r");
        let a = host_dir(root, &["10.0.0.1", "22", "root"]);
        assert_eq!(a, host_dir(root, &["10.0.0.1", "22", "root"]));
        assert_ne!(a, host_dir(root, &["10.0.0.1", "22", "ops"]));
        // The parts are separated: ("ab", "c") is not ("a", "bc").
        assert_ne!(host_dir(root, &["ab", "c"]), host_dir(root, &["a", "bc"]));
    }

    #[test]
    fn a_directory_open_to_others_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ssh");
        // SAFETY: as in private_dir.
        let uid = unsafe { libc::geteuid() };
        make_private(&dir, uid).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = make_private(&dir, uid).unwrap_err();
        assert!(err.contains("open to other users"), "{err}");
        assert!(make_private(&dir, uid + 1).is_err());
    }

    #[test]
    fn a_masters_shells_are_kept_beside_its_socket_and_nowhere_else() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        for d in [&a, &b] {
            std::fs::create_dir(d).unwrap();
        }
        assert_eq!(remembered_shells(&a.join("master")), None);
        remember_shells(&a.join("master"), "bash posix");
        assert_eq!(
            remembered_shells(&a.join("master")).as_deref(),
            Some("bash posix")
        );
        assert_eq!(remembered_shells(&b.join("master")), None);
    }
}
