//! `fleetbook lib list`: the project's dependency tree as locked, as text (indented by
//! depth) or JSON. Takes a [`Resolved`] tree; gives what is printed. Also what `lib fetch`
//! and `lib vendor` report having done.

use super::lock::Lock;
use super::tree::Resolved;
use std::path::Path;

/// "1 library", "2 libraries".
fn libraries(n: usize) -> String {
    format!("{n} {}", if n == 1 { "library" } else { "libraries" })
}

/// `lib fetch`'s report: a line per library of the new lock (added, unchanged or updated
/// since `old`), then the lock file written.
pub fn fetched(old: Option<&Lock>, new: &Lock, path: &Path) -> String {
    let mut out = String::new();
    for e in &new.libraries {
        let note = match old.and_then(|o| o.entry(&e.name)) {
            None => "added",
            Some(w) if w == e => "unchanged",
            Some(_) => "updated",
        };
        let commit = e
            .commit
            .as_deref()
            .map_or(String::new(), |c| format!(" {}", &c[..c.len().min(12)]));
        out.push_str(&format!(
            "{} {} ({}{commit}) {note}\n",
            e.name, e.version, e.source
        ));
    }
    out.push_str(&format!(
        "{} written: {}\n",
        path.display(),
        libraries(new.libraries.len())
    ));
    out
}

/// `lib vendor`'s last line: how many libraries went where, and how to use the mirror.
pub fn vendored(resolved: &Resolved, dir: &Path) -> String {
    format!(
        "{} vendored into {}: use it with FLEETBOOK_LIB_MIRROR={} (or lib_mirror = {:?} in fleetbook.toml)\n",
        libraries(resolved.libraries.all.len()),
        dir.display(),
        dir.display(),
        dir.display().to_string()
    )
}

/// One library per line, indented by its depth in the tree.
pub fn text(resolved: &Resolved) -> String {
    let mut out = String::new();
    if resolved.tree.is_empty() {
        out.push_str("no libraries ([dependencies] in fleetbook.toml is empty)\n");
    }
    for (depth, name) in &resolved.tree {
        let (Some(l), Some(e)) = (resolved.libraries.get(name), resolved.lock.entry(name)) else {
            continue;
        };
        let uses = if e.uses.is_empty() {
            "uses nothing".to_string()
        } else {
            format!("uses {}", e.uses.join(", "))
        };
        let about = if l.description.is_empty() {
            String::new()
        } else {
            format!(" — {}", l.description)
        };
        out.push_str(&format!(
            "{}{} ({}) {uses}; {}; required by {}{about}\n",
            "    ".repeat(*depth),
            l.label(),
            l.source,
            crate::render::count(e.files.len(), "file"),
            e.required_by.join(", ")
        ));
    }
    out
}

/// `{"libraries": [...]}`, in tree order.
pub fn json(resolved: &Resolved) -> serde_json::Value {
    let libraries: Vec<serde_json::Value> = resolved
        .tree
        .iter()
        .filter_map(|(depth, name)| {
            let l = resolved.libraries.get(name)?;
            let e = resolved.lock.entry(name)?;
            Some(serde_json::json!({
                "name": l.name,
                "version": l.version,
                "depth": depth,
                "source": l.source,
                "commit": e.commit,
                "required_by": e.required_by,
                "uses": e.uses,
                "dependencies": l.deps,
                "files": e.files,
            }))
        })
        .collect();
    serde_json::json!({ "libraries": libraries })
}
