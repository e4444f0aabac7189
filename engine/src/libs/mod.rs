//! Runbook libraries: a directory with `fleetbook-lib.toml` and `.rhai` modules. Takes a
//! project's `[dependencies]` (and each library's own) and gives the libraries an import may
//! bind to, each at one `name@version`, checked against `fleetbook.lock` (versions, commits
//! and the sha256 of every file). See docs/libraries.md.
//!
//! - `manifest.rs`: `fleetbook-lib.toml` and a dependency's `{ path | git, tag | rev, version }`
//! - `tree.rs`: the dependency tree, one version per library, the lock checks
//! - `lock.rs`: `fleetbook.lock`
//! - `git.rs`: the system `git`, a cache of bare repositories and checkouts
//! - `confine.rs`: what host operations a library's code calls, against its `uses`

pub mod confine;
pub mod git;
pub mod listing;
pub mod lock;
pub mod manifest;
pub mod resolver;
pub mod tree;
pub mod vendor;

pub use manifest::{DepSpec, Manifest};
pub use tree::{resolve, Mode, ProjectDeps, Resolved};

use crate::error::{Error, Result};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

pub const MANIFEST: &str = "fleetbook-lib.toml";
pub const LOCK: &str = "fleetbook.lock";
/// The name of the library embedded in the binary (`import "std/rolling"`).
pub const STD: &str = "std";

/// A library an import may bind to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Library {
    pub name: String,
    /// None for a plain `--lib` directory (one without `fleetbook-lib.toml`).
    pub version: Option<String>,
    pub description: String,
    /// Canonical; None for the embedded stdlib.
    pub dir: Option<PathBuf>,
    /// Where it came from, for people: `path ../libs/acme`, `git URL tag v1.2.0 (commit)`.
    pub source: String,
    /// The host-operation namespaces its code may call; None: unrestricted (a plain
    /// directory, the runbook's own directory, the stdlib).
    pub uses: Option<BTreeSet<String>>,
    /// The libraries its modules may import by name (its own `[dependencies]`).
    pub deps: Vec<String>,
}

impl Library {
    /// `acme 1.2.0`, or the name alone when there is no version.
    pub fn label(&self) -> String {
        match &self.version {
            Some(v) => format!("{} {v}", self.name),
            None => self.name.clone(),
        }
    }
}

/// Every library of a project's dependency tree, and which of them the project itself
/// requires (those a runbook may import).
#[derive(Debug, Clone, Default)]
pub struct Libraries {
    pub all: Vec<Library>,
    pub direct: Vec<String>,
}

impl Libraries {
    pub fn get(&self, name: &str) -> Option<&Library> {
        self.all.iter().find(|l| l.name == name)
    }
}

/// `sha256:` and the hex digest of `bytes` (the form plans and the lock use).
pub fn sha256(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// The digest of every file of a library (its manifest and every `.rhai` module, found
/// recursively; hidden entries such as `.git` are not part of it), by path relative to
/// `dir` with `/` separators. A symlink that leads outside the library is an error.
pub fn hash_files(dir: &Path) -> Result<BTreeMap<String, String>> {
    let root = dir
        .canonicalize()
        .map_err(|e| Error::input(format!("cannot open {}: {e}", dir.display())))?;
    let mut out = BTreeMap::new();
    walk(&root, &root, &mut out)?;
    Ok(out)
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) -> Result<()> {
    let io = |p: &Path, e: std::io::Error| Error::input(format!("{}: {e}", p.display()));
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| io(dir, e))?
        .filter_map(|e| e.ok())
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let real = path.canonicalize().map_err(|e| io(&path, e))?;
        if !real.starts_with(root) {
            return Err(Error::input(format!(
                "{} leads outside the library {} (through a symlink)",
                path.display(),
                root.display()
            )));
        }
        if real.is_dir() {
            walk(root, &path, out)?;
            continue;
        }
        let is_lib_file = path.extension().is_some_and(|e| e == "rhai") || name == MANIFEST;
        if is_lib_file {
            let bytes = std::fs::read(&real).map_err(|e| io(&path, e))?;
            let rel = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            out.insert(rel, sha256(&bytes));
        }
    }
    Ok(())
}

/// The libraries of `--lib DIR` / `FLEETBOOK_PATH` entries: a directory with
/// `fleetbook-lib.toml` is that library (confined by its `uses`); another is a plain
/// directory of modules named after itself, unrestricted.
pub fn from_dirs(dirs: &[PathBuf]) -> Result<Vec<Library>> {
    let mut out = Vec::new();
    for d in dirs {
        let Ok(dir) = d.canonicalize() else { continue };
        if dir.join(MANIFEST).is_file() {
            let m = Manifest::load(&dir)?;
            m.check_fleetbook_version()?;
            out.push(Library {
                name: m.name.clone(),
                version: Some(m.version.to_string()),
                description: m.description.clone(),
                dir: Some(dir),
                source: format!("--lib {}", d.display()),
                uses: Some(m.uses.clone()),
                deps: m.dependencies.keys().cloned().collect(),
            });
        } else {
            let name = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "lib".into());
            out.push(Library {
                name,
                version: None,
                description: String::new(),
                dir: Some(dir),
                source: format!("--lib {}", d.display()),
                uses: None,
                deps: Vec::new(),
            });
        }
    }
    Ok(out)
}
