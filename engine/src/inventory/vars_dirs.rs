//! `group_vars/` and `host_vars/` beside an inventory (and beside the playbook or runbook),
//! found as Ansible's `host_group_vars` plugin finds them: `<dir>/group_vars/<name>` with no
//! extension, `.yml`, `.yaml` or `.json`, or a directory `<name>/` whose files are read in
//! name order, recursively (hidden files and `~` backups skipped). Files are YAML (JSON is
//! YAML); vaulted files and `!vault` values are decrypted.

use super::yaml11::{self, Kind};
use super::{vault, Inventory, Vars, VaultKeys};
use crate::error::{Error, Result, SourceDiag};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const EXTENSIONS: [&str; 4] = ["", ".yml", ".yaml", ".json"];

/// Adds the variables found under `base` to every group and host of `inv` (as the layer
/// above the inventory file's own); returns the files read, for the inventory's digest.
pub(crate) fn read(base: &Path, inv: &mut Inventory, keys: &VaultKeys) -> Result<Vec<PathBuf>> {
    let mut read = Vec::new();
    let groups: Vec<String> = inv.groups.keys().cloned().collect();
    for g in groups {
        for file in find(&base.join("group_vars"), &g) {
            let vars = load(&file, inv, keys)?;
            inv.group_mut(&g).file_vars.extend(vars);
            read.push(file);
        }
    }
    let hosts: Vec<String> = inv.hosts.keys().cloned().collect();
    for h in hosts {
        for file in find(&base.join("host_vars"), &h) {
            let vars = load(&file, inv, keys)?;
            if let Some(host) = inv.hosts.get_mut(&h) {
                host.file_vars.extend(vars);
            }
            read.push(file);
        }
    }
    Ok(read)
}

fn find(dir: &Path, name: &str) -> Vec<PathBuf> {
    if !dir.is_dir() {
        return Vec::new();
    }
    for ext in EXTENSIONS {
        let path = dir.join(format!("{name}{ext}"));
        if path.is_dir() {
            let mut found = Vec::new();
            walk(&path, &mut found);
            return found;
        }
        if path.is_file() {
            return vec![path];
        }
    }
    Vec::new()
}

fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for n in names {
        if n.starts_with('.') || n.ends_with('~') {
            continue;
        }
        let path = dir.join(&n);
        let ext = Path::new(&n)
            .extension()
            .map(|e| format!(".{}", e.to_string_lossy()))
            .unwrap_or_default();
        if path.is_dir() && ext.is_empty() {
            walk(&path, found);
        } else if path.is_file() && EXTENSIONS.contains(&ext.as_str()) {
            found.push(path);
        }
    }
}

/// One vars file: a mapping (or nothing), every value typed as YAML 1.1.
fn load(file: &Path, inv: &mut Inventory, keys: &VaultKeys) -> Result<Vars> {
    let source = file.display().to_string();
    let text = crate::error::read_file(file)?;
    let diag = |text: &str, line: usize, col: usize, message: String| {
        Error::from(
            SourceDiag::new(&source, Arc::from(text), message)
                .label_at(line, col, "here")
                .code("inventory"),
        )
    };
    let (text, whole_secret) = if vault::is_vaulted(&text) {
        let plain = keys.decrypt(&text).map_err(|m| {
            diag(
                &text,
                1,
                1,
                format!("cannot decrypt vaulted vars file: {m}"),
            )
        })?;
        (plain, true)
    } else {
        (text, false)
    };
    let mut warnings = Vec::new();
    let doc = yaml11::parse(&text, keys, &mut warnings).map_err(|e| {
        diag(
            &text,
            e.line,
            e.col,
            format!("malformed vars file: {}", e.message),
        )
    })?;
    inv.warnings
        .extend(warnings.into_iter().map(|w| format!("{source}: {w}")));
    let mut out = Vars::default();
    match doc.map(|d| (d.kind.clone(), d)) {
        None | Some((Kind::Null, _)) => {}
        Some((Kind::Map(pairs), _)) => {
            for (k, v) in pairs {
                let name = k.key_text();
                if whole_secret || v.is_secret() {
                    inv.secret_vars.insert(name.clone());
                    let mut found = Vec::new();
                    v.envelopes(&mut found);
                    inv.vault_envelopes.extend(found);
                }
                out.insert(name, v.to_json());
            }
        }
        Some((_, d)) => {
            return Err(diag(
                &text,
                d.line,
                d.col,
                format!(
                    "malformed vars file: expected a mapping of variables, found {}",
                    d.kind_name()
                ),
            ))
        }
    }
    Ok(out)
}
