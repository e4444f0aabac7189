//! Reading an inventory from disk as Ansible does: the file (decrypted if vaulted, its
//! format decided by extension and content), then `group_vars/` and `host_vars/` beside it
//! and beside the playbook (runbook) directory.

use super::{vars_dirs, vault, Format, Inventory, VaultKeys};
use crate::error::{read_file, Error, Result};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// How to read an inventory: vault passwords and the playbook (runbook) directory.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    pub vault: VaultKeys,
    /// Its `group_vars/` and `host_vars/` are read too, above the inventory's own.
    pub playbook_dir: Option<PathBuf>,
}

impl LoadOptions {
    /// Vault passwords from the environment, no playbook directory.
    pub fn from_env() -> Result<LoadOptions> {
        Ok(LoadOptions {
            vault: VaultKeys::from_env().map_err(Error::input)?,
            playbook_dir: None,
        })
    }
}

impl Inventory {
    /// Reads `path` (`-` is standard input, as `ansible-inventory --list` JSON) with its
    /// variable directories. [`Inventory::digest`] covers every file read.
    pub fn load_with(path: &Path, opts: &LoadOptions) -> Result<Inventory> {
        let source = path.display().to_string();
        let mut inv = Inventory::empty(&source)?;
        let mut hasher = Sha256::new();
        if path == Path::new("-") {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .map_err(|e| Error::input(format!("standard input: {e}")))?;
            hasher.update(text.as_bytes());
            inv.read_text("<stdin>", &text, Format::Json, &opts.vault)?;
            inv.finish()?;
            inv.digest = hex(&hasher.finalize());
            return Ok(inv);
        }
        let text = read_file(path)?;
        hasher.update(text.as_bytes());
        let vaulted = vault::is_vaulted(&text);
        let text = if vaulted {
            opts.vault.decrypt(&text).map_err(|m| {
                Error::input(format!(
                    "{source}: cannot decrypt this vaulted inventory: {m}"
                ))
            })?
        } else {
            text
        };
        inv.read_text(&source, &text, Format::of(path), &opts.vault)?;
        if vaulted {
            // Every value of a vaulted inventory was encrypted: all of them are secrets.
            inv.mark_all_secret();
        }
        let mut bases = vec![path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf()];
        if let Some(dir) = &opts.playbook_dir {
            if !bases.iter().any(|b| same_dir(b, dir)) {
                bases.push(dir.clone());
            }
        }
        for base in bases {
            let mut files = vars_dirs::read(&base, &mut inv, &opts.vault)?;
            files.sort();
            for f in files {
                hasher.update(f.display().to_string().as_bytes());
                hasher.update(std::fs::read(&f).unwrap_or_default());
            }
        }
        inv.finish()?;
        inv.digest = hex(&hasher.finalize());
        Ok(inv)
    }
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

fn hex(bytes: &[u8]) -> String {
    let h: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{h}")
}
