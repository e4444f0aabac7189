//! `fleetbook.lock`: for every library of the tree, the version, the commit (git) and the
//! sha256 of every file. Written by `fleetbook lib fetch`; read by every command that plans.

use super::manifest::toml_error;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

pub const LOCK_VERSION: u32 = 1;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    pub version: u32,
    #[serde(default, rename = "library")]
    pub libraries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub name: String,
    pub version: String,
    /// `path+DIR` (as the requirer wrote it) or `git+URL`.
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rev: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    pub required_by: Vec<String>,
    pub uses: Vec<String>,
    /// Path inside the library -> `sha256:HEX`.
    pub files: BTreeMap<String, String>,
}

impl Lock {
    /// The lock beside the project file, or None when there is none.
    pub fn read(path: &Path) -> Result<Option<Lock>> {
        if !path.exists() {
            return Ok(None);
        }
        let text = crate::error::read_file(path)?;
        let lock: Lock = toml::from_str(&text).map_err(|e| toml_error(path, &text, &e))?;
        if lock.version != LOCK_VERSION {
            return Err(Error::input_with_help(
                format!(
                    "{}: lock version {} is not the {LOCK_VERSION} this fleetbook reads",
                    path.display(),
                    lock.version
                ),
                "run `fleetbook lib fetch --update` to write it again",
            ));
        }
        Ok(Some(lock))
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        let body = toml::to_string(self).map_err(|e| Error::Internal(e.to_string()))?;
        let text = format!(
            "# Written by `fleetbook lib fetch`: the version, commit and sha256 of every file of\n# every library this project uses. Commit it; do not edit it.\n{body}"
        );
        let tmp = path.with_extension("lock.tmp");
        std::fs::write(&tmp, text)
            .and_then(|_| std::fs::rename(&tmp, path))
            .map_err(|e| Error::input(format!("cannot write {}: {e}", path.display())))
    }

    pub fn entry(&self, name: &str) -> Option<&Entry> {
        self.libraries.iter().find(|e| e.name == name)
    }
}

/// What differs between the files a lock entry records and those found now, one line each.
pub fn file_changes(
    locked: &BTreeMap<String, String>,
    now: &BTreeMap<String, String>,
) -> Vec<String> {
    let short = |d: &str| d.chars().take(19).collect::<String>();
    let mut out = Vec::new();
    for (f, d) in locked {
        match now.get(f) {
            None => out.push(format!("{f} was removed")),
            Some(n) if n != d => out.push(format!(
                "{f} changed (lock {}…, now {}…)",
                short(d),
                short(n)
            )),
            Some(_) => {}
        }
    }
    for f in now.keys().filter(|f| !locked.contains_key(*f)) {
        out.push(format!("{f} was added"));
    }
    out
}
