//! `file::` (read, exists, copy, put) and `http::` (ok, checked from the host itself).
//!
//! `copy` and `put` write a file over the host's own connection: the bytes go on the stdin of
//! a `sh -c` that writes a temporary file beside the target, checks its SHA-256 and renames it
//! into place, so a reader never sees half a file. They are idempotent by digest: a host whose
//! file already has the bytes is left alone (only its mode is set). Plans show the digest and
//! the size, never the bytes (`put` is how a runbook writes a secret).
//!
//! `cat` and `curl` get `--` before the path or URL. `test -e PATH` needs none: with two
//! arguments POSIX `test` always reads the first as the operator and the second as its operand.
//! curl gets `--globoff` (`[1-9]` and `{a,b}` would fetch several URLs) and `--proto
//! =http,https,file` (`http::` checks HTTP, or a local `file://` that a health check writes;
//! never `dict://`, `gopher://` or another protocol).

use crate::host::{command_failed, Host};
use crate::quote::quote;
use crate::transport::{Put, Upload};
use crate::{located, refused, runtime_error};
use rhai::{Dynamic, EvalAltResult, FuncRegistration, Module, NativeCallContext};
use sha2::{Digest, Sha256};
use std::path::PathBuf;

type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

pub fn read_command(path: &str) -> String {
    format!("cat -- {}", quote(path))
}

pub fn exists_command(path: &str) -> String {
    format!("test -e {}", quote(path))
}

pub fn http_ok_command(url: &str) -> String {
    format!(
        "curl -fsS -o /dev/null --max-time 10 --globoff --proto =http,https,file -- {}",
        quote(url)
    )
}

/// What `file::put` accepts: more belongs in a file that `file::copy` sends.
pub const PUT_MAX: usize = 1 << 20;

/// The SHA-256 of `bytes`, in lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Prints `unchanged` (after setting the mode) when `remote` already has the digest.
pub fn check_script(remote: &str, digest: &str, mode: Option<u32>) -> String {
    let chmod = mode
        .map(|m| format!(" && chmod {m:04o} -- \"$r\""))
        .unwrap_or_default();
    format!(
        "r={}; [ \"$(sha256sum 2>/dev/null < \"$r\")\" = \"{digest}  -\" ]{chmod} && echo unchanged",
        quote(remote)
    )
}

/// Reads the bytes on stdin into a temporary file beside `remote`, checks their digest, and
/// renames the file into place. Without a mode, a replaced file keeps its mode and owner and
/// a new one gets 0644.
pub fn write_script(remote: &str, digest: &str, mode: Option<u32>) -> String {
    let perms = match mode {
        Some(m) => format!("chmod {m:04o} \"$t\""),
        None => "if [ -e \"$r\" ]; then chmod \"$(stat -c %a -- \"$r\")\" \"$t\"; \
                 chown \"$(stat -c %u:%g -- \"$r\")\" \"$t\" 2>/dev/null || true; \
                 else chmod 0644 \"$t\"; fi"
            .into(),
    };
    format!(
        "set -e; r={}; t=$(mktemp \"${{r%/*}}/.fleetbook.XXXXXX\"); trap 'rm -f -- \"$t\"' EXIT; \
         cat > \"$t\"; [ \"$(sha256sum < \"$t\")\" = \"{digest}  -\" ] || \
         {{ echo \"fleetbook: the bytes that arrived do not have sha256:{digest}\" >&2; exit 1; }}; \
         {perms}; mv -f -- \"$t\" \"$r\"; trap - EXIT",
        quote(remote)
    )
}

/// A remote path `copy`/`put` accept: absolute (the login's home differs per user and
/// `become`), naming a file.
fn check_remote(op: &str, remote: &str) -> RhaiResult<()> {
    if !remote.starts_with('/') || remote.ends_with('/') || remote.contains('\0') {
        return Err(refused(
            op,
            "remote path",
            remote,
            "give the absolute path of a file",
        ));
    }
    Ok(())
}

/// A file mode as `"0644"` (octal text, as Ansible's) or `0o644`.
fn parse_mode(op: &str, mode: &Dynamic) -> RhaiResult<u32> {
    let bad = || {
        refused(
            op,
            "mode",
            &mode.to_string(),
            "give octal text such as \"0644\" or a number such as 0o644",
        )
    };
    let m = if let Ok(text) = mode.clone().into_string() {
        u32::from_str_radix(text.trim_start_matches("0o"), 8).map_err(|_| bad())?
    } else if let Ok(n) = mode.as_int() {
        u32::try_from(n).map_err(|_| bad())?
    } else {
        return Err(bad());
    };
    if m > 0o7777 {
        return Err(bad());
    }
    Ok(m)
}

/// Sends `content` to `remote` unless it is there already; true when the file was written.
/// `shown` says what plans and errors show, given the digest.
fn send(
    h: &Host,
    op: &str,
    remote: &str,
    content: Vec<u8>,
    mode: Option<u32>,
    shown: impl FnOnce(&str) -> String,
) -> RhaiResult<bool> {
    check_remote(op, remote)?;
    let digest = sha256_hex(&content);
    let as_root = |script: String| {
        if h.becomes() {
            h.become_command(&script)
        } else {
            script
        }
    };
    let upload = Upload {
        check: as_root(check_script(remote, &digest, mode)),
        write: as_root(write_script(remote, &digest, mode)),
        content,
        shown: shown(&digest),
    };
    let left = h.time_left(&upload.shown)?;
    match h.transport().put(&h.info, &upload, left) {
        Ok(Put::Unchanged) => Ok(false),
        Ok(Put::Written(out)) if out.code == 0 => Ok(true),
        Ok(Put::Written(out)) => Err(command_failed(&h.label(), &upload.shown, &out)),
        Err(e) => Err(h.failed_to_run(&upload.shown, e)),
    }
}

/// `file::copy(h, local, remote[, mode])`: a controller file, read relative to the runbook.
fn copy(h: &Host, local: &str, remote: &str, mode: Option<u32>) -> RhaiResult<bool> {
    let path = match h.runbook_dir() {
        Some(dir) if PathBuf::from(local).is_relative() => dir.join(local),
        _ => PathBuf::from(local),
    };
    let content = std::fs::read(&path)
        .map_err(|e| runtime_error(format!("file::copy: cannot read {}: {e}", path.display())))?;
    let mode_shown = mode.map(|m| format!(" mode {m:04o}")).unwrap_or_default();
    send(h, "file::copy", remote, content, mode, |digest| {
        format!(
            "copy {} -> {}{mode_shown} (sha256:{digest})",
            quote(local),
            quote(remote)
        )
    })
}

/// `file::put(h, remote, text[, mode])`: small contents, shown by size and digest only.
fn put(h: &Host, remote: &str, text: &str, mode: Option<u32>) -> RhaiResult<bool> {
    if text.len() > PUT_MAX {
        return Err(runtime_error(format!(
            "file::put: {} bytes is more than {PUT_MAX}: send a file with file::copy",
            text.len()
        )));
    }
    let mode_shown = mode.map(|m| format!(" mode {m:04o}")).unwrap_or_default();
    let size = text.len();
    send(
        h,
        "file::put",
        remote,
        text.as_bytes().to_vec(),
        mode,
        |digest| {
            format!(
                "put {}{mode_shown} ({size} bytes, sha256:{digest})",
                quote(remote)
            )
        },
    )
}

pub(crate) fn file_module() -> Module {
    let mut m = Module::new();
    FuncRegistration::new("read").set_into_module(
        &mut m,
        |ctx: NativeCallContext, h: &mut Host, path: &str| -> RhaiResult<String> {
            located(&ctx, || {
                let out = h.run(&read_command(path))?;
                Ok(crate::host::strip_newline(&out.stdout).to_string())
            })
        },
    );
    FuncRegistration::new("exists").set_into_module(
        &mut m,
        |ctx: NativeCallContext, h: &mut Host, path: &str| -> RhaiResult<bool> {
            located(&ctx, || {
                let found = h.run_ok(&exists_command(path))?;
                if h.is_dry_run() {
                    h.assumed("file::exists", &format!("file::exists({path:?}) is true"));
                }
                Ok(found)
            })
        },
    );
    FuncRegistration::new("copy").set_into_module(
        &mut m,
        |ctx: NativeCallContext, h: &mut Host, local: &str, remote: &str| -> RhaiResult<bool> {
            located(&ctx, || copy(h, local, remote, None))
        },
    );
    FuncRegistration::new("copy").set_into_module(
        &mut m,
        |ctx: NativeCallContext,
         h: &mut Host,
         local: &str,
         remote: &str,
         mode: Dynamic|
         -> RhaiResult<bool> {
            located(&ctx, || {
                copy(h, local, remote, Some(parse_mode("file::copy", &mode)?))
            })
        },
    );
    FuncRegistration::new("put").set_into_module(
        &mut m,
        |ctx: NativeCallContext, h: &mut Host, remote: &str, text: &str| -> RhaiResult<bool> {
            located(&ctx, || put(h, remote, text, None))
        },
    );
    FuncRegistration::new("put").set_into_module(
        &mut m,
        |ctx: NativeCallContext,
         h: &mut Host,
         remote: &str,
         text: &str,
         mode: Dynamic|
         -> RhaiResult<bool> {
            located(&ctx, || {
                put(h, remote, text, Some(parse_mode("file::put", &mode)?))
            })
        },
    );
    m
}

pub(crate) fn http_module() -> Module {
    let mut m = Module::new();
    FuncRegistration::new("ok").set_into_module(
        &mut m,
        |ctx: NativeCallContext, h: &mut Host, url: &str| -> RhaiResult<bool> {
            located(&ctx, || h.run_ok(&http_ok_command(url)))
        },
    );
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::{HostInfo, Output, Transport, TransportError};
    use std::io::Write;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// Runs every command in a real local `sh` (as the transports do, with pipefail), and
    /// keeps the commands.
    #[derive(Default)]
    struct Sh(Mutex<Vec<String>>);

    impl Sh {
        fn sh(&self, command: &str, input: &[u8]) -> Output {
            self.0.lock().unwrap().push(command.to_string());
            let mut child = std::process::Command::new("sh")
                .arg("-c")
                .arg(crate::transport::fail_closed(command))
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let _ = child.stdin.take().unwrap().write_all(input);
            let out = child.wait_with_output().unwrap();
            Output {
                code: out.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&out.stdout).into(),
                stderr: String::from_utf8_lossy(&out.stderr).into(),
            }
        }
    }

    impl Transport for Sh {
        fn exec(
            &self,
            _: &HostInfo,
            c: &str,
            _: Option<Duration>,
        ) -> Result<Output, TransportError> {
            Ok(self.sh(c, b""))
        }
        fn exec_with_input(
            &self,
            _: &HostInfo,
            c: &str,
            input: &[u8],
            _: Option<Duration>,
        ) -> Result<Output, TransportError> {
            Ok(self.sh(c, input))
        }
    }

    fn eval(script: &str, dir: &std::path::Path) -> (Result<rhai::Dynamic, String>, Vec<String>) {
        let sh = Arc::new(Sh::default());
        let h = Host::new(Arc::new(HostInfo::default()), sh.clone());
        h.set_runbook_dir(dir.to_path_buf());
        let mut engine = rhai::Engine::new();
        crate::register(&mut engine);
        let mut scope = rhai::Scope::new();
        scope.push("h", h);
        scope.push("d", dir.display().to_string());
        let value = engine
            .eval_with_scope::<rhai::Dynamic>(&mut scope, script)
            .map_err(|e| e.to_string());
        let commands = sh.0.lock().unwrap().clone();
        (value, commands)
    }

    fn mode(path: &std::path::Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn copy_writes_once_then_skips_by_digest_and_sets_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("app.jar"), b"jar bytes\0\x01").unwrap();
        let copy = r#"file::copy(h, "app.jar", `${d}/out/it's $(touch pwned) a;b`, "0750")"#;
        std::fs::create_dir(dir.path().join("out")).unwrap();
        let (first, _) = eval(copy, dir.path());
        assert_eq!(first.unwrap().as_bool(), Ok(true), "written");
        let target = dir.path().join("out/it's $(touch pwned) a;b");
        assert_eq!(std::fs::read(&target).unwrap(), b"jar bytes\0\x01");
        assert_eq!(mode(&target), 0o750);
        std::fs::set_permissions(&target, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let (again, commands) = eval(copy, dir.path());
        assert_eq!(again.unwrap().as_bool(), Ok(false), "unchanged: skipped");
        assert_eq!(commands.len(), 1, "only the check ran: {commands:?}");
        assert_eq!(mode(&target), 0o750, "the mode is set even when unchanged");
        // No temporary file is left beside the target.
        let left: Vec<_> = std::fs::read_dir(dir.path().join("out")).unwrap().collect();
        assert_eq!(left.len(), 1);
        assert!(!std::path::Path::new("pwned").exists());
    }

    #[test]
    fn put_replaces_a_file_keeping_its_mode_and_refuses_relative_paths() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("conf");
        std::fs::write(&target, "old").unwrap();
        std::fs::set_permissions(&target, std::os::unix::fs::PermissionsExt::from_mode(0o640))
            .unwrap();
        let (changed, _) = eval(r#"file::put(h, `${d}/conf`, "new\n")"#, dir.path());
        assert_eq!(changed.unwrap().as_bool(), Ok(true));
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "new\n");
        assert_eq!(mode(&target), 0o640);
        let (refused, commands) = eval(r#"file::put(h, "conf", "x")"#, dir.path());
        assert!(refused.unwrap_err().contains("give the absolute path"));
        assert!(commands.is_empty());
        let (missing, _) = eval(r#"file::copy(h, "nope", "/tmp/x")"#, dir.path());
        assert!(missing.unwrap_err().contains("file::copy: cannot read"));
    }

    #[test]
    fn bytes_that_arrive_with_another_digest_are_not_put_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("f");
        let script = write_script(&target.display().to_string(), &sha256_hex(b"meant"), None);
        let out = Sh::default().sh(&script, b"other");
        assert_eq!(out.code, 1);
        assert!(out.stderr.contains("do not have sha256:"), "{}", out.stderr);
        assert!(!target.exists());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "temp removed"
        );
    }

    #[test]
    fn modes_are_octal_text_or_numbers() {
        assert_eq!(parse_mode("op", &"0644".into()).ok(), Some(0o644));
        assert_eq!(
            parse_mode("op", &Dynamic::from_int(0o755)).ok(),
            Some(0o755)
        );
        assert!(parse_mode("op", &"rw-r--r--".into()).is_err());
        assert!(parse_mode("op", &"17777".into()).is_err());
    }
}
