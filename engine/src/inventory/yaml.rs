//! Ansible YAML inventories: `all: { hosts, vars, children: { group: {...} } }`, read as
//! Ansible's `yaml` plugin reads them (YAML 1.1 values, warnings where Ansible warns).

use super::yaml11::{self, Kind, Node};
use super::{address, Inventory, ParseError, Vars, VaultKeys};

/// Starts the message of an error that means "not a YAML inventory": Ansible then tries INI.
pub(crate) const NOT_YAML_INVENTORY: &str = "not a YAML inventory: ";

pub(crate) fn parse(text: &str, inv: &mut Inventory, vault: &VaultKeys) -> Result<(), ParseError> {
    let not_yaml = |line, col, m: String| ParseError {
        line,
        col,
        message: format!("{NOT_YAML_INVENTORY}{m}"),
    };
    let mut warnings = Vec::new();
    let doc = yaml11::parse(text, vault, &mut warnings).map_err(|e| {
        if e.message.starts_with("cannot decrypt") {
            ParseError {
                line: e.line,
                col: e.col,
                message: e.message,
            }
        } else {
            not_yaml(e.line, e.col, format!("YAML parsing failed: {}", e.message))
        }
    })?;
    inv.warnings.extend(warnings);
    let empty = |line, col| not_yaml(line, col, "Parsed empty YAML file".into());
    let top = match doc {
        None => return Err(empty(1, 1)),
        Some(n) => match n.kind {
            Kind::Map(pairs) if !pairs.is_empty() => pairs,
            Kind::Map(_) | Kind::Null | Kind::Bool(false) => return Err(empty(n.line, n.col)),
            Kind::Str(ref s) if s.is_empty() => return Err(empty(n.line, n.col)),
            Kind::Seq(ref s) if s.is_empty() => return Err(empty(n.line, n.col)),
            _ => {
                return Err(not_yaml(
                    n.line,
                    n.col,
                    format!(
                        "YAML inventory has invalid structure, it should be a dictionary, got: {}",
                        n.kind_name()
                    ),
                ))
            }
        },
    };
    if top
        .iter()
        .any(|(k, v)| k.key_text() == "plugin" && !matches!(v.kind, Kind::Null | Kind::Bool(false)))
    {
        return Err(ParseError::at(
            1,
            "this is an inventory plugin configuration, not an inventory: fleetbook does not run inventory plugins; \
             give it their output (`ansible-inventory -i FILE --list > inventory.json`)",
        ));
    }
    for (name, body) in &top {
        group(&name.key_text(), body, inv)?;
    }
    Ok(())
}

fn at(n: &Node, message: impl Into<String>) -> ParseError {
    ParseError {
        line: n.line,
        col: n.col,
        message: message.into(),
    }
}

fn vars_of(body: &Node, inv: &mut Inventory) -> Vars {
    let mut out = Vars::default();
    if let Kind::Map(pairs) = &body.kind {
        for (k, v) in pairs {
            let name = k.key_text();
            if v.is_secret() {
                inv.secret_vars.insert(name.clone());
                let mut found = Vec::new();
                v.envelopes(&mut found);
                inv.vault_envelopes.extend(found);
            }
            out.insert(name, v.to_json());
        }
    }
    out
}

fn group(name: &str, body: &Node, inv: &mut Inventory) -> Result<(), ParseError> {
    let pairs = match &body.kind {
        Kind::Null => {
            inv.group_mut(name);
            return Ok(());
        }
        Kind::Map(pairs) => pairs,
        _ => {
            inv.warnings.push(format!(
                "line {}: skipping '{name}' as this is not a valid group definition",
                body.line
            ));
            return Ok(());
        }
    };
    inv.group_mut(name);
    for (k, v) in pairs {
        let key = k.key_text();
        // A string in place of a mapping names one entry (`hosts: web1`).
        let one;
        let v = match (&v.kind, key.as_str()) {
            (Kind::Str(s), "vars" | "children" | "hosts") => {
                one = Node {
                    kind: Kind::Map(vec![(
                        Node {
                            kind: Kind::Str(s.clone()),
                            ..v.clone()
                        },
                        Node {
                            kind: Kind::Null,
                            ..v.clone()
                        },
                    )]),
                    ..v.clone()
                };
                &one
            }
            _ => v,
        };
        match (&v.kind, key.as_str()) {
            (Kind::Map(_) | Kind::Null, _) => {}
            (_, "vars" | "children" | "hosts") => {
                return Err(at(
                    v,
                    format!(
                        "Invalid \"{key}\" entry for \"{name}\" group, requires a dictionary, found \"{}\" instead.",
                        v.kind_name()
                    ),
                ))
            }
            _ => {
                inv.warnings.push(format!(
                    "line {}: skipping key ({key}) in group ({name}) as it is not a mapping, it is a {}",
                    k.line,
                    v.kind_name()
                ));
                continue;
            }
        }
        let Kind::Map(entries) = &v.kind else {
            continue;
        };
        match key.as_str() {
            "vars" => {
                for (var, value) in vars_of(v, inv) {
                    inv.set_group_var(name, &var, value).map_err(|m| {
                        let node = entries.iter().find(|(k, _)| k.key_text() == var);
                        node.map_or_else(|| at(v, m.clone()), |(_, n)| at(n, m.clone()))
                    })?;
                }
            }
            "children" => {
                for (c, cv) in entries {
                    let child = c.key_text();
                    group(&child, cv, inv)?;
                    if child != name {
                        inv.group_mut(name).children.insert(child);
                    }
                }
            }
            "hosts" => {
                for (h, hv) in entries {
                    let Kind::Str(pattern) = &h.kind else {
                        return Err(at(
                            h,
                            format!(
                                "Host pattern {} must be a string. Enclose integers/floats in quotation marks.",
                                h.key_text()
                            ),
                        ));
                    };
                    let hvars = match &hv.kind {
                        Kind::Null => Vars::default(),
                        Kind::Map(_) => vars_of(hv, inv),
                        _ => {
                            return Err(at(
                                hv,
                                format!(
                                    "Invalid data from file, expected dictionary and got: {}",
                                    hv.kind_name()
                                ),
                            ))
                        }
                    };
                    let (pattern, port) = address::split(pattern).map_err(|m| at(h, m))?;
                    let names = inv.expand(&pattern).map_err(|m| at(h, m))?;
                    for host in names {
                        inv.add_host(Some(name), &host, port, hvars.clone())
                            .map_err(|m| {
                                let bad = match &hv.kind {
                                    Kind::Map(p) => p.iter().find(|(k, _)| m.contains(&format!("{}=", k.key_text()))).map(|(_, n)| n),
                                    _ => None,
                                };
                                at(bad.unwrap_or(h), m)
                            })?;
                    }
                }
            }
            other => inv.warnings.push(format!(
                "line {}: skipping unexpected key ({other}) in group ({name}), only \"vars\", \"children\" and \"hosts\" are valid",
                k.line
            )),
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
            err.to_string().contains("Invalid \"hosts\" entry for \"all\" group, requires a dictionary, found \"list\" instead."),
            "{err}"
        );
        // Ansible warns about an unknown key and goes on.
        let inv = Inventory::parse("inv.yml", "all:\n  hostz:\n    a:\n", Format::Yaml).unwrap();
        assert_eq!(inv.warnings, ["line 2: skipping unexpected key (hostz) in group (all), only \"vars\", \"children\" and \"hosts\" are valid"]);
        let err = Inventory::parse("inv.yml", "all:\n  hosts: {a: 1\n", Format::Yaml).unwrap_err();
        let crate::Error::Source(d) = err else {
            panic!()
        };
        assert_eq!(d.labels.len(), 1);
    }
}
