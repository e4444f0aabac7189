//! `ansible-inventory --list` JSON (and a dynamic inventory script's output) as an input:
//! `{"_meta": {"hostvars": {...}}, "group": {"hosts": [...], "children": [...], "vars": {...}}}`.
//! Every inventory plugin's result reaches fleetbook this way, unchanged.

use super::{Inventory, ParseError, Vars};
use serde_json::Value;

/// Whether `text` is such JSON (an object with `_meta`), not a YAML inventory.
pub(crate) fn is_list_output(text: &str) -> bool {
    let t = text.trim_start();
    t.starts_with('{')
        && serde_json::from_str::<Value>(t)
            .ok()
            .is_some_and(|v| v.get("_meta").is_some_and(Value::is_object))
}

pub(crate) fn parse(text: &str, inv: &mut Inventory) -> Result<(), ParseError> {
    let doc: Value = serde_json::from_str(text).map_err(|e| ParseError {
        line: e.line(),
        col: e.column(),
        message: format!("not ansible-inventory JSON: {e}"),
    })?;
    let Value::Object(top) = doc else {
        return Err(ParseError::at(
            1,
            "ansible-inventory JSON must be an object",
        ));
    };
    let hostvars = top
        .get("_meta")
        .and_then(|m| m.get("hostvars"))
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let line_of = |needle: &str| {
        text.find(&format!("\"{needle}\""))
            .map_or(1, |i| text[..i].matches('\n').count() + 1)
    };
    for (name, body) in &top {
        if name == "_meta" {
            continue;
        }
        inv.group_mut(name);
        // A script may give a group as a bare list of hosts.
        let (hosts, children, vars) = match body {
            Value::Array(h) => (Some(h), None, None),
            Value::Object(o) => (
                o.get("hosts").and_then(Value::as_array),
                o.get("children").and_then(Value::as_array),
                o.get("vars").and_then(Value::as_object),
            ),
            _ => {
                return Err(ParseError::at(
                    line_of(name),
                    format!("group {name:?}: expected an object or a list of hosts"),
                ))
            }
        };
        for h in hosts.into_iter().flatten() {
            let h = h.as_str().ok_or_else(|| {
                ParseError::at(
                    line_of(name),
                    format!("group {name:?}: a host name must be a string"),
                )
            })?;
            inv.add_host(Some(name), h, None, Vars::default())
                .map_err(|m| ParseError::at(line_of(h), m))?;
        }
        for c in children.into_iter().flatten() {
            let c = c.as_str().ok_or_else(|| {
                ParseError::at(
                    line_of(name),
                    format!("group {name:?}: a child name must be a string"),
                )
            })?;
            inv.group_mut(c);
            inv.group_mut(name).children.insert(c.to_string());
        }
        for (k, v) in vars.into_iter().flatten() {
            inv.set_group_var(name, k, v.clone())
                .map_err(|m| ParseError::at(line_of(k), m))?;
        }
    }
    for (host, vars) in hostvars {
        let Value::Object(vars) = vars else { continue };
        let vars: Vars = vars.into_iter().collect();
        inv.add_host(None, &host, None, vars)
            .map_err(|m| ParseError::at(line_of(&host), m))?;
    }
    Ok(())
}
