//! Ansible YAML inventories: `all: { hosts, vars, children: { group: {...} } }`.

use super::{Inventory, ParseError};
use indexmap::IndexMap;
use serde_yaml::{Mapping, Value};

pub(crate) fn parse(text: &str, inv: &mut Inventory) -> Result<(), ParseError> {
    let doc: Value = serde_yaml::from_str(text).map_err(|e| {
        let (line, col) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((1, 1));
        ParseError {
            line,
            col,
            message: e.to_string(),
        }
    })?;
    let finder = LineFinder { text };
    let top = match doc {
        Value::Mapping(m) => m,
        Value::Null => return Ok(()),
        _ => {
            return Err(ParseError::at(
                1,
                "the top level must be a mapping of groups (e.g. all:)",
            ))
        }
    };
    for (name, body) in &top {
        let name = key(name, &finder)?;
        group(&name, body, inv, &finder)?;
    }
    Ok(())
}

struct LineFinder<'a> {
    text: &'a str,
}

impl LineFinder<'_> {
    /// The first line that defines `name:`, for messages about structure (serde_yaml's
    /// values carry no positions).
    fn line_of(&self, name: &str) -> usize {
        self.line_after(name, 1)
    }

    /// The first line at or after `from` that defines `name:` (or the first line at all).
    fn line_after(&self, name: &str, from: usize) -> usize {
        let defines = |l: &str| {
            let t = l.trim_start().trim_start_matches("- ");
            t.starts_with(&format!("{name}:"))
                || t.starts_with(&format!("\"{name}\":"))
                || t.starts_with(&format!("'{name}':"))
                // Flow mappings: `host: { ansible_port: 22 }`.
                || t.contains(&format!("{{ {name}:"))
                || t.contains(&format!(", {name}:"))
        };
        let lines = || self.text.lines().enumerate();
        lines()
            .skip(from.saturating_sub(1))
            .find(|(_, l)| defines(l))
            .or_else(|| lines().find(|(_, l)| defines(l)))
            .map_or(1, |(i, _)| i + 1)
    }
}

fn key(v: &Value, f: &LineFinder) -> Result<String, ParseError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(ParseError::at(
            f.line_of(&scalar(other)),
            format!("expected a name, found {}", kind(other)),
        )),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// A variable value as a string; lists and mappings become JSON.
fn scalar(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        other => serde_json::to_string(other).unwrap_or_default(),
    }
}

fn mapping<'v>(
    v: &'v Value,
    what: &str,
    f: &LineFinder,
) -> Result<Option<&'v Mapping>, ParseError> {
    match v {
        Value::Null => Ok(None),
        Value::Mapping(m) => Ok(Some(m)),
        other => Err(ParseError::at(
            f.line_of(what),
            format!("{what}: expected a mapping, found {}", kind(other)),
        )),
    }
}

fn vars(v: &Value, what: &str, f: &LineFinder) -> Result<IndexMap<String, String>, ParseError> {
    let mut out = IndexMap::new();
    if let Some(m) = mapping(v, what, f)? {
        for (k, v) in m {
            let (k, v) = (key(k, f)?, scalar(v));
            // Lines are looked for only on error: the search reads the whole text.
            super::check_var(&k, &v)
                .map_err(|m| ParseError::at(f.line_after(&k, f.line_of(what)), m))?;
            out.insert(k, v);
        }
    }
    Ok(out)
}

fn group(name: &str, body: &Value, inv: &mut Inventory, f: &LineFinder) -> Result<(), ParseError> {
    inv.group_mut(name);
    let Some(body) = mapping(body, name, f)? else {
        return Ok(());
    };
    for (k, v) in body {
        match key(k, f)?.as_str() {
            "hosts" => {
                let Some(hosts) = mapping(v, "hosts", f)? else {
                    continue;
                };
                for (h, hv) in hosts {
                    let pattern = key(h, f)?;
                    let hvars = vars(hv, &pattern, f)?;
                    let at = |m| ParseError::at(f.line_of(&pattern), m);
                    let names = inv.expand(&pattern).map_err(at)?;
                    let target = (name != "all").then_some(name);
                    for host in names {
                        inv.add_host(target, &host, hvars.clone()).map_err(at)?;
                    }
                }
            }
            "vars" => {
                let gv = vars(v, "vars", f)?;
                inv.group_mut(name).vars.extend(gv);
            }
            "children" => {
                let Some(children) = mapping(v, "children", f)? else {
                    continue;
                };
                for (c, cv) in children {
                    let child = key(c, f)?;
                    inv.group_mut(name).children.insert(child.clone());
                    group(&child, cv, inv, f)?;
                }
            }
            other => {
                return Err(ParseError::at(
                    f.line_of(other),
                    format!(
                        "unknown key {other:?} in group {name:?} (expected hosts, vars or children)"
                    ),
                ))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::inventory::{Format, Inventory};

    #[test]
    fn reads_the_ansible_layout() {
        let text = r#"
all:
  vars:
    ansible_user: root
  children:
    controller:
      hosts:
        ctl[1:2]:
          ansible_port: 2200
    storage:
      hosts:
        st1: { replication_group: 1 }
        st2: { replication_group: 2 }
"#;
        let inv = Inventory::parse("inv.yml", text, Format::Yaml).unwrap();
        assert_eq!(inv.hosts.len(), 4);
        let vars = inv.all_host_vars();
        assert_eq!(vars["ctl2"]["ansible_port"], "2200");
        assert_eq!(vars["st2"]["replication_group"], "2");
        assert_eq!(vars["st1"]["ansible_user"], "root");
        assert_eq!(inv.direct_groups("st1"), ["storage"]);
    }

    #[test]
    fn errors_carry_a_line() {
        let err = Inventory::parse("inv.yml", "all:\n  hosts: [a, b]\n", Format::Yaml).unwrap_err();
        assert!(
            err.to_string().contains("hosts: expected a mapping"),
            "{err}"
        );
        let err =
            Inventory::parse("inv.yml", "all:\n  hostz:\n    a:\n", Format::Yaml).unwrap_err();
        assert!(err.to_string().contains("unknown key \"hostz\""), "{err}");
        let err = Inventory::parse("inv.yml", "all:\n  hosts: {a: 1\n", Format::Yaml).unwrap_err();
        let crate::Error::Source(d) = err else {
            panic!()
        };
        assert_eq!(d.labels.len(), 1);
    }
}
