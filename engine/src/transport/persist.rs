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

/// How deep `Include`s nest before ssh itself gives up (its `READCONF_MAX_DEPTH`).
const MAX_INCLUDE_DEPTH: usize = 16;

/// A digest of everything ssh reads for its configuration, so that a master is never reused
/// after any of it changed: `config` (`-F`), else the user's `~/.ssh/config` and the system's
/// `/etc/ssh/ssh_config`; each with the files it `Include`s, as ssh_config(5) has them (glob
/// patterns in lexical order, `~` in a user's file, a relative path from `~/.ssh` in a
/// user's file and from `/etc/ssh` in the system's), wherever in the file the `Include` is
/// (ssh reads them inside a `Host` or `Match` block only when it matches; the digest covers
/// them always, which at worst opens a new master).
pub fn config_digest(config: Option<&Path>, home: Option<&Path>) -> String {
    let home = home.map(Path::to_path_buf);
    let mut read = Vec::new();
    let user = Origin::User(home.clone());
    match config {
        Some(c) => read_config(c, &user, 0, &mut read),
        None => {
            if let Some(h) = &home {
                read_config(&h.join(".ssh/config"), &user, 0, &mut read);
            }
            read_config(
                Path::new("/etc/ssh/ssh_config"),
                &Origin::System,
                0,
                &mut read,
            );
        }
    }
    crate::plan::digest(&read)
}

/// Whose configuration a file is: where its relative `Include`s start, and whether `~` is
/// expanded in them.
enum Origin {
    User(Option<PathBuf>),
    System,
}

/// Adds `path`'s name and bytes to `out` (a missing file adds its name only), then those of
/// every file it includes.
fn read_config(path: &Path, origin: &Origin, depth: usize, out: &mut Vec<u8>) {
    out.extend_from_slice(path.as_os_str().as_encoded_bytes());
    out.push(0);
    let Ok(text) = std::fs::read(path) else {
        return;
    };
    out.extend_from_slice(&text);
    out.push(0);
    if depth >= MAX_INCLUDE_DEPTH {
        return;
    }
    for pattern in String::from_utf8_lossy(&text).lines().flat_map(included) {
        let pattern = match (origin, pattern.strip_prefix("~/")) {
            (Origin::User(Some(home)), Some(rest)) => home.join(rest),
            (Origin::User(home), None) if !pattern.starts_with('/') => home.as_ref().map_or_else(
                || PathBuf::from(&pattern),
                |h| h.join(".ssh").join(&pattern),
            ),
            (Origin::System, None) if !pattern.starts_with('/') => {
                Path::new("/etc/ssh").join(&pattern)
            }
            _ => PathBuf::from(&pattern),
        };
        let Ok(found) = glob::glob(&pattern.to_string_lossy()) else {
            continue;
        };
        let mut files: Vec<PathBuf> = found.flatten().filter(|p| p.is_file()).collect();
        files.sort();
        for f in files {
            read_config(&f, origin, depth + 1, out);
        }
    }
}

/// The paths an `Include` line names (`Include a b`, `include=a`, `"a b"` quoted); none for
/// any other line.
fn included(line: &str) -> Vec<String> {
    let line = line.trim_start();
    let Some(keyword) = line.get(..7) else {
        return Vec::new();
    };
    let rest = &line[7..];
    if !keyword.eq_ignore_ascii_case("include")
        || !rest.starts_with(|c: char| c.is_whitespace() || c == '=')
    {
        return Vec::new();
    }
    let rest = rest.trim_start().strip_prefix('=').unwrap_or(rest).trim();
    let mut paths = Vec::new();
    let mut chars = rest.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '#' {
            break;
        } else if c == '"' {
            chars.next();
            paths.push(chars.by_ref().take_while(|&c| c != '"').collect());
        } else {
            let mut word = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                word.push(c);
                chars.next();
            }
            paths.push(word);
        }
    }
    paths
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
    fn include_lines_are_read_as_ssh_reads_them() {
        assert_eq!(included("Include config.d/*"), ["config.d/*"]);
        assert_eq!(
            included("  include=~/a \"b c\" d # note"),
            ["~/a", "b c", "d"]
        );
        assert_eq!(included("INCLUDE\t/etc/x"), ["/etc/x"]);
        assert!(included("IncludeX y").is_empty());
        assert!(included("Host include").is_empty());
        assert!(included("# Include a").is_empty());
    }

    /// A change in a file the config includes (by a relative glob, or by `~`) opens a new
    /// master, as a change in the config itself does.
    #[test]
    fn the_config_digest_covers_what_the_config_includes() {
        let home = tempfile::tempdir().unwrap();
        let ssh = home.path().join(".ssh");
        std::fs::create_dir_all(ssh.join("conf.d")).unwrap();
        let config = home.path().join("my_config");
        std::fs::write(&config, "Include conf.d/*.conf\nHost x\n  Include ~/deep\n").unwrap();
        std::fs::write(ssh.join("conf.d/a.conf"), "Host a\n  User one\n").unwrap();
        std::fs::write(home.path().join("deep"), "Include /nonexistent/*\n").unwrap();
        let digest = || config_digest(Some(&config), Some(home.path()));
        let first = digest();
        assert_eq!(first, digest(), "the same files, the same digest");
        std::fs::write(ssh.join("conf.d/a.conf"), "Host a\n  User two\n").unwrap();
        let second = digest();
        assert_ne!(first, second, "an included file changed");
        std::fs::write(ssh.join("conf.d/b.conf"), "").unwrap();
        let third = digest();
        assert_ne!(second, third, "a file appeared under the include's pattern");
        std::fs::write(home.path().join("deep"), "# changed\n").unwrap();
        assert_ne!(third, digest(), "a file included from a Host block changed");
        // Files the pattern does not match change nothing.
        let fourth = digest();
        std::fs::write(ssh.join("conf.d/notes.txt"), "x").unwrap();
        assert_eq!(fourth, digest());
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
