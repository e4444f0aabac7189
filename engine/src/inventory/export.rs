//! What fleetbook understood of an inventory, in `ansible-inventory`'s forms: `--list` JSON,
//! `--graph` text and `--host` variables, so the two can be compared line for line.

use super::{pattern, Inventory};
use crate::error::Result;
use crate::shared::NameSet;
use serde_json::{json, Map, Value};

/// What `fleetbook inventory` prints: `--graph GROUP`, else `--host HOST`, else `--list`;
/// JSON as ansible-inventory writes it (sorted keys, four-space indents).
pub fn text(
    inv: &Inventory,
    graph_of: Option<&str>,
    host_of: Option<&str>,
    limit: Option<&str>,
) -> Result<String> {
    match (graph_of, host_of) {
        (Some(group), _) => graph(inv, group, limit),
        (None, Some(h)) => Ok(json(&host(inv, h)?)),
        (None, None) => Ok(json(&list(inv, limit)?)),
    }
}

fn json(v: &Value) -> String {
    use serde::Serialize;
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    // Serializing a Value into memory cannot fail.
    let _ = v.serialize(&mut ser);
    String::from_utf8_lossy(&out).into_owned() + "\n"
}

/// `ansible-inventory --list`: groups with their hosts and children (empty keys and empty
/// groups left out) and `_meta.hostvars` with each host's merged, typed variables.
pub fn list(inv: &Inventory, limit: Option<&str>) -> Result<Value> {
    let selected = selected(inv, limit)?;
    let mut out = Map::new();
    let mut seen: NameSet<String> = NameSet::default();
    format_group(inv, "all", &selected, &mut out, &mut seen);
    let values = inv.all_host_values();
    let mut hostvars = Map::new();
    for (h, vars) in values {
        if selected.contains(&h) && !vars.is_empty() {
            let vars = vars.into_iter().map(|(k, v)| (k, listed(inv, v)));
            hostvars.insert(h, Value::Object(vars.collect()));
        }
    }
    out.insert(
        "_meta".into(),
        json!({"hostvars": hostvars, "profile": "inventory_legacy"}),
    );
    Ok(Value::Object(out))
}

fn selected(inv: &Inventory, limit: Option<&str>) -> Result<NameSet<String>> {
    match limit {
        Some(p) => pattern::select(inv, p),
        None => Ok(inv.hosts.keys().cloned().collect()),
    }
}

/// `all`'s children as Ansible has them: `ungrouped` first, the groups the file put under
/// `all`, then every other group with no parent, in the order they were defined.
fn children_of(inv: &Inventory, name: &str) -> Vec<String> {
    let Some(g) = inv.groups.get(name) else {
        return Vec::new();
    };
    if name != "all" {
        return g.children.iter().cloned().collect();
    }
    let mut kids: NameSet<String> = NameSet::default();
    kids.insert("ungrouped".into());
    kids.extend(g.children.iter().cloned());
    let has_parent: NameSet<&str> = inv
        .groups
        .values()
        .filter(|p| p.name != "all")
        .flat_map(|p| p.children.iter().map(String::as_str))
        .collect();
    kids.extend(
        inv.groups
            .keys()
            .filter(|n| *n != "all" && !has_parent.contains(n.as_str()))
            .cloned(),
    );
    kids.into_iter().collect()
}

fn format_group(
    inv: &Inventory,
    name: &str,
    selected: &NameSet<String>,
    out: &mut Map<String, Value>,
    seen: &mut NameSet<String>,
) {
    let mut body = Map::new();
    if name != "all" {
        let hosts: Vec<Value> = inv
            .groups
            .get(name)
            .map(|g| {
                g.hosts
                    .iter()
                    .filter(|h| selected.contains(*h))
                    .map(|h| Value::String(h.clone()))
                    .collect()
            })
            .unwrap_or_default();
        if !hosts.is_empty() {
            body.insert("hosts".into(), Value::Array(hosts));
        }
    }
    let kids = children_of(inv, name);
    for k in &kids {
        if seen.insert(k.clone()) {
            format_group(inv, k, selected, out, seen);
        }
    }
    if !kids.is_empty() {
        body.insert(
            "children".into(),
            Value::Array(kids.into_iter().map(Value::String).collect()),
        );
    }
    if !body.is_empty() {
        out.insert(name.to_string(), Value::Object(body));
    }
}

/// `ansible-inventory --graph [GROUP]`: `@group:` lines, children then hosts, `  |` per level.
pub fn graph(inv: &Inventory, group: &str, limit: Option<&str>) -> Result<String> {
    if !inv.groups.contains_key(group) {
        return Err(crate::error::Error::input(format!(
            "--graph {group}: the inventory {} has no such group",
            inv.source
        )));
    }
    let selected = selected(inv, limit)?;
    let mut lines = Vec::new();
    graph_group(inv, group, 0, &selected, &mut lines);
    Ok(lines.join("\n") + "\n")
}

fn graph_name(name: &str, depth: usize) -> String {
    if depth == 0 {
        name.to_string()
    } else {
        format!("{}--{name}", "  |".repeat(depth))
    }
}

fn graph_group(
    inv: &Inventory,
    name: &str,
    depth: usize,
    selected: &NameSet<String>,
    lines: &mut Vec<String>,
) {
    lines.push(graph_name(&format!("@{name}:"), depth));
    for k in children_of(inv, name) {
        graph_group(inv, &k, depth + 1, selected, lines);
    }
    if name != "all" {
        if let Some(g) = inv.groups.get(name) {
            for h in g.hosts.iter().filter(|h| selected.contains(*h)) {
                lines.push(graph_name(h, depth + 1));
            }
        }
    }
}

/// `ansible-inventory --host HOST`: the host's merged, typed variables.
pub fn host(inv: &Inventory, name: &str) -> Result<Value> {
    let mut values = inv.all_host_values();
    match values.shift_remove(name) {
        Some(vars) => Ok(Value::Object(
            vars.into_iter().map(|(k, v)| (k, listed(inv, v))).collect(),
        )),
        None => Err(crate::error::Error::input(format!(
            "host {name:?} is not in the inventory {}",
            inv.source
        ))),
    }
}

/// A value as Ansible lists it: a decrypted `!vault` string as `{"__ansible_vault": ...}`.
fn listed(inv: &Inventory, v: Value) -> Value {
    match v {
        Value::String(s) => match inv.vault_envelopes.get(&s) {
            Some(e) => json!({ "__ansible_vault": e }),
            None => Value::String(s),
        },
        Value::Array(items) => Value::Array(items.into_iter().map(|v| listed(inv, v)).collect()),
        Value::Object(m) => {
            Value::Object(m.into_iter().map(|(k, v)| (k, listed(inv, v))).collect())
        }
        other => other,
    }
}
