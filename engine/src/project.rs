//! The project file and where state lives: `fleetbook.toml`, found by walking up from the
//! current directory, sets a project's defaults; options on the command line win over it.
//!
//! One rule for the state directory, for every command: `--state DIR` (or
//! `$FLEETBOOK_STATE`), else the project's (`state` in fleetbook.toml, default
//! `.fleetbook` beside the file), else the user's (`$XDG_STATE_HOME/fleetbook`, default
//! `~/.local/state/fleetbook`). So `status`, `runs`, `abort` and `approve` find a run from
//! any terminal of the same user, or anywhere inside the project.
//!
//! Takes a directory (and the `--state` flag); gives the [`Project`] around it, the state
//! directory in force with where it came from, and `fleetbook config`'s text. Filling a
//! command's options from it is the command line's business (`fleetbook-cli`).

use crate::libs::{self, DepSpec, Libraries};
use crate::{Error, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const FILE: &str = "fleetbook.toml";

/// What `fleetbook.toml` may set. Paths are relative to the file's directory.
#[derive(Debug, Default, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub inventory: Option<PathBuf>,
    pub state: Option<PathBuf>,
    pub ssh_config: Option<PathBuf>,
    /// `exec --forks`.
    pub forks: Option<usize>,
    /// The default `--limit` pattern of plan and run.
    pub limit: Option<String>,
    pub connect_timeout: Option<String>,
    pub max_per_host: Option<usize>,
    #[serde(default)]
    pub lib: Vec<PathBuf>,
    /// Parameter defaults for the project's runbooks (a runbook that does not declare one
    /// ignores it; `--param` wins).
    #[serde(default)]
    pub params: BTreeMap<String, toml::Value>,
    /// A plain-directory mirror of the libraries (`fleetbook lib vendor`'s output);
    /// `$FLEETBOOK_LIB_MIRROR` wins over it.
    pub lib_mirror: Option<PathBuf>,
    /// The libraries the project's runbooks import, as Cargo.toml declares crates.
    #[serde(default)]
    pub dependencies: BTreeMap<String, DepSpec>,
}

#[derive(Debug, Clone)]
pub struct Project {
    pub file: PathBuf,
    pub settings: Settings,
}

impl Project {
    /// The project whose `fleetbook.toml` is in `start` or the nearest directory above it.
    /// A file another user could have written is not trusted (as git's `safe.directory`):
    /// it could point `lib` at their modules or `ssh_config` at their hosts; `ignored` is
    /// told which file was passed over and why (the caller warns).
    pub fn find(start: &Path, ignored: &mut dyn FnMut(&Path, &str)) -> Result<Option<Project>> {
        let start = std::fs::canonicalize(start).unwrap_or_else(|_| start.to_path_buf());
        for dir in start.ancestors() {
            let file = dir.join(FILE);
            if file.is_file() {
                if let Some(why) = untrusted(&file) {
                    ignored(&file, &why);
                    return Ok(None);
                }
                return Project::load(&file).map(Some);
            }
        }
        Ok(None)
    }

    pub fn load(file: &Path) -> Result<Project> {
        let text = crate::error::read_file(file)?;
        let settings: Settings = toml::from_str(&text)
            .map_err(|e| crate::libs::manifest::toml_error(file, &text, &e))?;
        Ok(Project {
            file: file.to_path_buf(),
            settings,
        })
    }

    pub fn dir(&self) -> &Path {
        self.file.parent().unwrap_or(Path::new("."))
    }

    /// A path from the file, as the file means it: relative to the file's directory.
    pub fn path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir().join(p)
        }
    }

    /// The project's state directory.
    pub fn state(&self) -> PathBuf {
        // `state = "etcd://..."` names a cluster, not a path beside the file.
        if let Some(s) = self.settings.state.as_deref() {
            if crate::store::is_etcd(s) {
                return s.to_path_buf();
            }
        }
        self.path(
            self.settings
                .state
                .as_deref()
                .unwrap_or(Path::new(".fleetbook")),
        )
    }

    /// The library mirror in force: `$FLEETBOOK_LIB_MIRROR`, else `lib_mirror`.
    pub fn mirror(&self) -> Option<PathBuf> {
        std::env::var_os("FLEETBOOK_LIB_MIRROR")
            .filter(|m| !m.is_empty())
            .map(PathBuf::from)
            .or_else(|| self.settings.lib_mirror.as_deref().map(|m| self.path(m)))
    }

    /// The project's dependency tree (`fetch`: fetched and locked anew; else checked
    /// against fleetbook.lock, offline).
    pub fn resolve(&self, mode: libs::Mode) -> Result<libs::Resolved> {
        self.resolve_with(mode, false)
    }

    /// [`resolve`](Self::resolve), also asking git repositories whether a locked tag moved.
    pub fn resolve_with(&self, mode: libs::Mode, check_tags: bool) -> Result<libs::Resolved> {
        let deps: Vec<(String, DepSpec)> = self
            .settings
            .dependencies
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (name, _) in &deps {
            if !libs::manifest::valid_name(name) {
                return Err(Error::input(format!(
                    "{}: dependency name {name:?} must be letters, digits, '-' and '_'",
                    self.file.display()
                )));
            }
        }
        let mirror = self.mirror();
        libs::resolve(
            &libs::ProjectDeps {
                dir: self.dir(),
                deps: &deps,
                mirror: mirror.as_deref(),
                check_tags,
            },
            mode,
        )
    }

    /// The parameter defaults as strings, as `--param` would give them.
    pub fn params(&self) -> BTreeMap<String, String> {
        self.settings
            .params
            .iter()
            .map(|(k, v)| {
                let text = match v {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), text)
            })
            .collect()
    }
}

/// The project a `lib` command works on: libraries are a project's.
pub fn required(project: Option<&Project>) -> Result<&Project> {
    project.ok_or_else(|| {
        Error::input_with_help(
            "no fleetbook.toml here or in a directory above: libraries are a project's",
            "create fleetbook.toml with a [dependencies] table (docs/libraries.md)",
        )
    })
}

/// The libraries a command that plans may import: the project's dependencies, checked
/// against its lock (none outside a project, or without `[dependencies]`). With
/// `check_tags`, git repositories that answer are asked whether a locked tag moved.
pub fn libraries_checked(project: Option<&Project>, check_tags: bool) -> Result<Libraries> {
    match project {
        Some(p) if !p.settings.dependencies.is_empty() => {
            Ok(p.resolve_with(libs::Mode::Verify, check_tags)?.libraries)
        }
        _ => Ok(Libraries::default()),
    }
}

/// [`libraries_checked`] from the lock and the cache only (check, the editor).
pub fn libraries(project: Option<&Project>) -> Result<Libraries> {
    libraries_checked(project, false)
}

/// `$FLEETBOOK_PATH`: more library directories, searched after `--lib` (':'-separated).
pub fn path_dirs() -> Vec<PathBuf> {
    std::env::var_os("FLEETBOOK_PATH")
        .map(|v| {
            std::env::split_paths(&v)
                .filter(|p| !p.as_os_str().is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// Why a project file must not be trusted: another user owns it or its directory, or
/// others may write to either.
fn untrusted(file: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    let dir = file.parent().unwrap_or(Path::new("/"));
    for (what, path) in [("it", file), ("its directory", dir)] {
        let Ok(m) = std::fs::metadata(path) else {
            return Some(format!("{what} cannot be read"));
        };
        if m.uid() != me && m.uid() != 0 {
            return Some(format!(
                "{what} belongs to another user (uid {}); fleetbook.toml is only read from your own directories",
                m.uid()
            ));
        }
        // A world- or group-writable file or directory, unless it is a sticky directory
        // owned by the user (their own /tmp corner is fine).
        let writable = m.mode() & 0o022 != 0;
        let sticky_own = m.is_dir() && m.mode() & 0o1000 != 0 && m.uid() == me;
        if writable && !sticky_own {
            return Some(format!("others may write to {what} ({})", path.display()));
        }
    }
    None
}

/// The user's state directory: `$XDG_STATE_HOME/fleetbook`, or `~/.local/state/fleetbook`.
pub fn user_state() -> PathBuf {
    let xdg = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute());
    match xdg {
        Some(d) => d.join("fleetbook"),
        None => {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default();
            home.join(".local/state/fleetbook")
        }
    }
}

/// Where a value in force came from, for `fleetbook config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    CommandLine,
    Environment,
    ProjectFile,
    Default,
}

impl Source {
    pub fn describe(self, project: Option<&Project>) -> String {
        match (self, project) {
            (Source::CommandLine, _) => "command line".into(),
            (Source::Environment, _) => "environment".into(),
            (Source::ProjectFile, Some(p)) => p.file.display().to_string(),
            (Source::ProjectFile, None) | (Source::Default, _) => "default".into(),
        }
    }
}

/// The state directory in force and where it came from.
pub fn state_dir(flag: Option<&Path>, project: Option<&Project>) -> (PathBuf, Source) {
    if let Some(d) = flag {
        let from_env = std::env::var_os("FLEETBOOK_STATE").is_some_and(|e| Path::new(&e) == d);
        let source = if from_env {
            Source::Environment
        } else {
            Source::CommandLine
        };
        return (d.to_path_buf(), source);
    }
    match project {
        Some(p) => (
            p.state(),
            if p.settings.state.is_some() {
                Source::ProjectFile
            } else {
                Source::Default
            },
        ),
        None => (user_state(), Source::Default),
    }
}

/// The inventory a command needs: given, or from the project file.
pub fn need_inventory(i: Option<&Path>) -> Result<&Path> {
    i.ok_or_else(|| {
        Error::input_with_help(
            "no inventory given",
            "pass -i INVENTORY, or set `inventory = \"...\"` in a fleetbook.toml in this directory or one above it",
        )
    })
}

/// `fleetbook config`: each setting in force here, with where it comes from.
pub fn show(project: Option<&Project>, state_flag: Option<&Path>, json: bool) -> Result<String> {
    let s = project.map(|p| p.settings.clone()).unwrap_or_default();
    let from = |set: bool| {
        if set {
            Source::ProjectFile
        } else {
            Source::Default
        }
    };
    let path = |v: &Option<PathBuf>| {
        v.as_deref().map(|f| {
            project
                .map_or(f.to_path_buf(), |p| p.path(f))
                .display()
                .to_string()
        })
    };
    let (state, state_from) = state_dir(state_flag, project);
    let mut rows: Vec<(&str, Option<String>, Source)> = vec![
        ("inventory", path(&s.inventory), from(s.inventory.is_some())),
        ("state", Some(state.display().to_string()), state_from),
        (
            "ssh_config",
            path(&s.ssh_config),
            from(s.ssh_config.is_some()),
        ),
        (
            "forks",
            Some(s.forks.unwrap_or(10).to_string()),
            from(s.forks.is_some()),
        ),
        ("limit", s.limit.clone(), from(s.limit.is_some())),
        (
            "connect_timeout",
            Some(s.connect_timeout.clone().unwrap_or_else(|| "10s".into())),
            from(s.connect_timeout.is_some()),
        ),
        (
            "max_per_host",
            Some(s.max_per_host.unwrap_or(4).to_string()),
            from(s.max_per_host.is_some()),
        ),
    ];
    let libs: Vec<String> = s
        .lib
        .iter()
        .map(|l| path(&Some(l.clone())).unwrap_or_default())
        .collect();
    if !libs.is_empty() {
        rows.push(("lib", Some(libs.join(", ")), Source::ProjectFile));
    }
    if let Some(m) = project.and_then(Project::mirror) {
        let from_env = std::env::var_os("FLEETBOOK_LIB_MIRROR").is_some_and(|e| !e.is_empty());
        let source = if from_env {
            Source::Environment
        } else {
            Source::ProjectFile
        };
        rows.push(("lib_mirror", Some(m.display().to_string()), source));
    }
    if !s.dependencies.is_empty() {
        let deps: Vec<String> = s
            .dependencies
            .iter()
            .map(|(name, spec)| format!("{name} {}", spec.describe()))
            .collect();
        rows.push(("dependencies", Some(deps.join(", ")), Source::ProjectFile));
    }
    // Named like a credential: shown as such, never its value.
    let params: BTreeMap<String, String> = project
        .map(Project::params)
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| {
            let secret = crate::secrets::is_secret_name(&k);
            (k, if secret { "<secret>".to_string() } else { v })
        })
        .collect();
    if json {
        let v = serde_json::json!({
            "project_file": project.map(|p| p.file.display().to_string()),
            "settings": rows.iter().map(|(k, v, src)| serde_json::json!({
                "name": k, "value": v, "source": src,
            })).collect::<Vec<_>>(),
            "params": params,
        });
        return serde_json::to_string_pretty(&v)
            .map(|t| t + "\n")
            .map_err(|e| Error::Internal(e.to_string()));
    }
    let mut o = match project {
        Some(p) => format!("project file  {}\n", p.file.display()),
        None => format!("project file  none ({FILE} in this directory or above)\n"),
    };
    for (k, v, src) in &rows {
        o.push_str(&format!(
            "{k:15} {:40} ({})\n",
            v.as_deref().unwrap_or("-"),
            src.describe(project)
        ));
    }
    for (k, v) in params {
        o.push_str(&format!(
            "param {k:9} {v:40} ({}, for runbooks that declare it)\n",
            Source::ProjectFile.describe(project)
        ));
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_key_names_the_file_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join(FILE);
        std::fs::write(&f, "inventory = \"hosts\"\ninventroy = \"x\"\n").unwrap();
        let e = Project::load(&f).unwrap_err().to_string();
        assert!(e.contains("fleetbook.toml:2:1"), "{e}");
        assert!(e.contains("inventroy"), "{e}");
    }

    #[test]
    fn the_file_is_found_from_a_directory_below_and_paths_are_its_own() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(FILE),
            "inventory = \"inv/hosts\"\n[params]\nversion = \"2.0\"\nretries = 3\n",
        )
        .unwrap();
        let below = dir.path().join("a/b");
        std::fs::create_dir_all(&below).unwrap();
        let p = Project::find(&below, &mut |f, why| panic!("{}: {why}", f.display()))
            .unwrap()
            .unwrap();
        let root = std::fs::canonicalize(dir.path()).unwrap();
        assert_eq!(
            p.path(p.settings.inventory.as_deref().unwrap()),
            root.join("inv/hosts")
        );
        assert_eq!(p.state(), root.join(".fleetbook"));
        assert_eq!(p.params()["retries"], "3");
    }
}
