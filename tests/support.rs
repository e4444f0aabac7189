//! A fluent builder around the `fleetbook` binary.

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub struct Fleetbook {
    args: Vec<String>,
    dir: PathBuf,
    env: Vec<(String, String)>,
}

#[derive(Debug)]
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// The user state directory of this test process (`$XDG_STATE_HOME`).
pub fn tests_state() -> PathBuf {
    std::env::temp_dir().join(format!("fleetbook-tests-{}", std::process::id()))
}

/// No ssh master outlives a test: every fleetbook this test binary starts, however it is
/// started, has `--persist 0` by default (a test of `--persist` passes the option).
pub fn keep_no_connections() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| std::env::set_var("FLEETBOOK_PERSIST", "0"));
}

pub fn fleetbook(args: &[&str]) -> Fleetbook {
    keep_no_connections();
    Fleetbook {
        args: args.iter().map(|s| s.to_string()).collect(),
        dir: root().to_path_buf(),
        env: Vec::new(),
    }
}

impl Fleetbook {
    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }

    /// Runs in `dir` instead of the repository root (short paths in messages).
    pub fn in_dir(mut self, dir: &Path) -> Self {
        self.dir = dir.to_path_buf();
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// The binary and its arguments, for tests that spawn it themselves.
    pub fn argv(&self) -> Vec<String> {
        let mut v = vec![env!("CARGO_BIN_EXE_fleetbook").to_string()];
        v.extend(self.args.iter().cloned());
        v
    }

    pub fn run(self) -> Outcome {
        let out = Command::new(env!("CARGO_BIN_EXE_fleetbook"))
            .args(&self.args)
            .current_dir(&self.dir)
            .env("NO_COLOR", "1")
            .env_remove("CLICOLOR_FORCE")
            // The limits the tests check must be the defaults, whatever the caller's shell set
            // (a test that sets one with `env` still does).
            .env_remove("FLEETBOOK_MAX_HOSTS")
            // Runs without --state go to the user's state directory: the tests' own, not the
            // user's (a test may set XDG_STATE_HOME itself).
            .env("XDG_STATE_HOME", tests_state())
            .env_remove("FLEETBOOK_STATE")
            // Library lookups are the test's own: no caller's library path or mirror.
            .env_remove("FLEETBOOK_PATH")
            .env_remove("FLEETBOOK_LIB_MIRROR")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("fleetbook runs");
        Outcome {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs and insists on exit code `code`, showing stderr otherwise.
    pub fn code(self, code: i32) -> Outcome {
        let args = self.args.join(" ");
        let out = self.run();
        assert_eq!(
            out.code, code,
            "fleetbook {args}\nstdout:\n{}\nstderr:\n{}",
            out.stdout, out.stderr
        );
        out
    }
}

/// Replaces digests (which change with every edit of a runbook) by a placeholder.
pub fn redact_digests(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("sha256:") {
        out.push_str(&rest[..i + 7]);
        rest = &rest[i + 7..];
        let hex = rest
            .find(|c: char| !c.is_ascii_hexdigit())
            .unwrap_or(rest.len());
        out.push_str("[digest]");
        rest = &rest[hex..];
    }
    out.push_str(rest);
    out
}

/// A diagnostic with miette's line wrapping undone, for assertions on whole sentences.
pub fn flat(text: &str) -> String {
    text.replace("\n  │ ", " ")
}
