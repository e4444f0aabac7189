//! `fleetbook lib list`: the project's dependency tree as locked, as text (indented by
//! depth) or JSON. Takes a [`Resolved`] tree; gives what is printed.

use super::tree::Resolved;

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
