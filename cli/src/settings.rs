//! The arguments as the engine's typed settings: the ssh transport's options, the vault
//! keys, the store a command reads, how report pages name the state directory, the plan's
//! format, the parameters a joined run takes, what resume and rollback do with unknown steps, `exec`'s
//! timeout, and the command line that continues a run.

use crate::{ResumeCmd, RollbackCmd, RunArgs, ScriptArgs, SshArgs, StateArgs, VaultArgs};
use fleetbook_engine::inventory::VaultKeys;
use fleetbook_engine::render::{PageOptions, PlanFormat};
use fleetbook_engine::session::{ResumeOptions, Unknown};
use fleetbook_engine::store::RunStore;
use fleetbook_engine::transport::ssh::{self, SshOptions};
use fleetbook_engine::{Error, Result};
use fleetbook_stdlib::duration::parse_duration;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

impl SshArgs {
    /// The ssh transport's options, checked; `--accept-new-host-keys` is warned about on
    /// standard error, since it trusts whatever answers.
    pub fn options(&self) -> Result<SshOptions> {
        let connect_timeout = parse_duration(self.connect_timeout())
            .map_err(|e| Error::input(format!("--connect-timeout: {e}")))?;
        if self.accept_new_host_keys {
            use std::io::Write as _;
            let _ = writeln!(std::io::stderr(), "warning: --accept-new-host-keys: unknown host keys are trusted and remembered; a man in the middle would go unnoticed");
        }
        if let Some(kex) = &self.ssh_kex {
            ssh::check_kex(kex).map_err(|e| Error::input(format!("--ssh-kex: {e}")))?;
        }
        Ok(SshOptions {
            config_file: self.ssh_config.clone(),
            accept_new_host_keys: self.accept_new_host_keys,
            connect_timeout,
            max_per_host: self.max_per_host(),
            kex: self.ssh_kex.clone(),
            persist: Duration::from_secs(self.persist()),
        })
    }
}

impl From<crate::Format> for PlanFormat {
    fn from(f: crate::Format) -> PlanFormat {
        match f {
            crate::Format::Text => PlanFormat::Text,
            crate::Format::Json => PlanFormat::Json,
            crate::Format::Dot => PlanFormat::Dot,
            crate::Format::Mermaid => PlanFormat::Mermaid,
            crate::Format::Html => PlanFormat::Html,
        }
    }
}

impl ScriptArgs {
    /// The parameters the command line gave, without the project file's defaults
    /// ([`crate::fill`] marks those): a run that is joined keeps its own.
    pub fn given_params(&self) -> Vec<(String, String)> {
        let soft = fleetbook_engine::script::SOFT;
        let given = self.params.iter().filter(|(k, _)| !k.ends_with(soft));
        given.cloned().collect()
    }
}

impl RollbackCmd {
    /// What rollback does with steps whose outcome is unknown: `--undo-unknown`,
    /// `--skip-unknown`, or refuse.
    pub fn unknown(&self) -> Unknown {
        match (self.undo_unknown, self.skip_unknown) {
            (true, _) => Unknown::Undo,
            (_, true) => Unknown::Skip,
            _ => Unknown::Refuse,
        }
    }
}

impl ResumeCmd {
    /// What resume may take as done or do again (`shared` is the store's to say).
    pub fn options(&self) -> ResumeOptions {
        ResumeOptions {
            retry_unknown: self.retry_unknown,
            skip_unknown: self.skip_unknown,
            replan: self.replan,
            shared: false,
        }
    }
}

/// `exec --timeout`: how long each host's command may take (`30s`, `5m`).
pub fn parse_timeout(timeout: Option<&str>) -> Result<Option<Duration>> {
    let parsed = timeout.map(parse_duration).transpose();
    parsed.map_err(|e| Error::input(format!("--timeout: {e}")))
}

impl VaultArgs {
    /// The vault passwords: `ANSIBLE_VAULT_PASSWORD_FILE`, then the files given.
    pub fn keys(&self) -> Result<VaultKeys> {
        let mut keys = VaultKeys::from_env().map_err(Error::input)?;
        for f in &self.vault_password_file {
            keys.add_file("default", f).map_err(Error::input)?;
        }
        for spec in &self.vault_id {
            keys.add_vault_id(spec).map_err(Error::input)?;
        }
        Ok(keys)
    }
}

impl StateArgs {
    /// The store of a command that reads recorded runs: none recorded yet is an error that
    /// says where runs are looked for.
    pub fn open_recorded(&self) -> Result<Arc<dyn RunStore>> {
        let dir = self.resolve();
        if !fleetbook_engine::store::exists(&dir) {
            return Err(Error::input_with_help(
                format!("no runs recorded in {}", dir.display()),
                "runs are recorded in --state DIR or $FLEETBOOK_STATE, else in the project's state (fleetbook.toml), else in $XDG_STATE_HOME/fleetbook; `fleetbook config` shows which is in force here",
            ));
        }
        self.open()
    }

    /// How report pages name the state directory in the commands they suggest.
    pub fn page_options(&self, live: bool) -> PageOptions {
        let dir = self.resolve();
        let dir = dir.canonicalize().unwrap_or(dir);
        PageOptions {
            state_dir: Some(dir.display().to_string()),
            live,
            control: false,
        }
    }
}

impl RunArgs {
    /// A `fleetbook resume` command line that works when pasted: the state directory and
    /// every option of this run, absolute paths, each word shell-quoted; never a secret's
    /// value.
    pub fn resume_command(&self, run_id: &str, state: &Path, libs: &[PathBuf]) -> String {
        let abs = |p: &Path| {
            std::fs::canonicalize(p)
                .unwrap_or_else(|_| p.to_path_buf())
                .display()
                .to_string()
        };
        let mut words: Vec<String> = vec!["fleetbook".into(), "resume".into(), run_id.into()];
        words.extend(["--state".into(), abs(state)]);
        for l in libs {
            words.extend(["--lib".into(), abs(l)]);
        }
        // How this run reached etcd (never the password: it comes from the environment).
        let e = &self.state.etcd;
        for (flag, file) in [
            ("--etcd-ca", &e.etcd_ca),
            ("--etcd-cert", &e.etcd_cert),
            ("--etcd-key", &e.etcd_key),
            ("--etcd-password-file", &e.etcd_password_file),
        ] {
            if let Some(f) = file {
                words.extend([flag.into(), abs(f)]);
            }
        }
        if let Some(u) = &e.etcd_user {
            words.extend(["--etcd-user".into(), u.clone()]);
        }
        if fleetbook_engine::store::is_etcd(state) {
            words.extend(["--etcd-ttl".into(), e.etcd_ttl.clone()]);
        }
        words.extend(self.ssh_words(&abs));
        if self.events == Some(crate::EventsFormat::Jsonl) {
            words.extend(["--events".into(), "jsonl".into()]);
        }
        if self.yes {
            words.push("--yes".into());
        }
        words
            .iter()
            .map(|w| shell_word(w))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn ssh_words(&self, abs: &dyn Fn(&Path) -> String) -> Vec<String> {
        let ssh = &self.ssh;
        let mut words = Vec::new();
        if let Some(c) = &ssh.ssh_config {
            words.extend(["--ssh-config".into(), abs(c)]);
        }
        if ssh.accept_new_host_keys {
            words.push("--accept-new-host-keys".into());
        }
        words.extend([
            "--connect-timeout".into(),
            ssh.connect_timeout().to_string(),
        ]);
        words.extend(["--max-per-host".into(), ssh.max_per_host().to_string()]);
        if let Some(kex) = &ssh.ssh_kex {
            words.extend(["--ssh-kex".into(), kex.clone()]);
        }
        words
    }
}

/// A word as a shell reads it: bare when it holds no special character, else quoted.
pub fn shell_word(w: &str) -> String {
    if fleetbook_stdlib::quote::is_plain(w) {
        w.to_string()
    } else {
        fleetbook_stdlib::quote::quote(w)
    }
}

/// `-o FILE` must not name one of the command's inputs: writing it would destroy it.
pub fn refuse_to_overwrite(
    out: &std::path::Path,
    inputs: &[(&str, &std::path::Path)],
) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let Ok(o) = std::fs::metadata(out) else {
        return Ok(()); // a new file
    };
    for (what, input) in inputs {
        if let Ok(i) = std::fs::metadata(input) {
            if (i.dev(), i.ino()) == (o.dev(), o.ino()) {
                return Err(Error::input_with_help(
                    format!(
                        "refusing to write the plan to {}: it is the {what} {}",
                        out.display(),
                        input.display()
                    ),
                    "give -o another file name",
                ));
            }
        }
    }
    // A plan is never a Rhai module (an imported library would be destroyed) nor an SQLite
    // database (a journal: history and resume would be lost).
    let refuse = |what: &str| {
        Err(Error::input_with_help(
            format!(
                "refusing to write the plan to {}: it is {what}",
                out.display()
            ),
            "give -o another file name",
        ))
    };
    if out.extension().is_some_and(|e| e == "rhai") {
        return refuse("a Rhai script (a runbook or a library module)");
    }
    let mut head = [0u8; 16];
    let is_sqlite = std::fs::File::open(out)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .is_ok()
        && &head == b"SQLite format 3\0";
    if is_sqlite {
        return refuse("an SQLite database (a fleetbook journal?)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hint_words_are_bare_only_when_a_shell_reads_them_unchanged() {
        assert_eq!(shell_word("--state"), "--state");
        assert_eq!(shell_word("/srv/fleet/.fleetbook"), "/srv/fleet/.fleetbook");
        for w in ["a b", "it's", "$(id)", "x;y", "", "*"] {
            let q = shell_word(w);
            assert_ne!(q, w, "{w:?} must be quoted");
            let back = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {q}"))
                .output()
                .unwrap()
                .stdout;
            assert_eq!(String::from_utf8(back).unwrap(), w);
        }
    }
}
