//! The native TOML inventory:
//!
//! ```toml
//! [vars]                      # variables of `all`
//! ansible_user = "root"
//!
//! [groups.controller]
//! hosts = ["ctl[1:3]"]
//! vars = { pkg_manager = "apt" }
//!
//! [groups.openstack]
//! children = ["controller"]
//!
//! [hosts.ctl1]                # optional per-host settings
//! address = "10.0.0.11"       # ansible_host
//! port = 22                   # ansible_port
//! user = "admin"              # ansible_user
//! key = "~/.ssh/fleet"        # ansible_ssh_private_key_file
//! vars = { rack = "r1" }
//! ```

use super::{check_var, text_of, Inventory, ParseError, Vars};
use crate::shared::NameMap;
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    vars: NameMap<String, toml::Value>,
    #[serde(default)]
    groups: NameMap<String, GroupDef>,
    #[serde(default)]
    hosts: NameMap<String, HostDef>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupDef {
    #[serde(default)]
    hosts: Vec<String>,
    #[serde(default)]
    children: Vec<String>,
    #[serde(default)]
    vars: NameMap<String, toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HostDef {
    address: Option<String>,
    port: Option<u16>,
    user: Option<String>,
    key: Option<String>,
    #[serde(default)]
    vars: NameMap<String, toml::Value>,
}

fn typed(m: &NameMap<String, toml::Value>) -> Vars {
    m.iter()
        .map(|(k, v)| {
            let v = serde_json::to_value(v).unwrap_or_else(|_| Value::String(v.to_string()));
            (k.clone(), v)
        })
        .collect()
}

pub(crate) fn parse(text: &str, inv: &mut Inventory) -> Result<(), ParseError> {
    let file: File = toml::from_str(text).map_err(|e| {
        let (line, col) = e
            .span()
            .map(|s| {
                let before = &text[..s.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                (line, col)
            })
            .unwrap_or((1, 1));
        ParseError {
            line,
            col,
            message: e.message().to_string(),
        }
    })?;
    let line_of = |needle: &str| {
        text.lines()
            .position(|l| l.contains(needle))
            .map_or(1, |i| i + 1)
    };
    // The header line of table `[kind.name]`, quoted or not.
    let header_line = |header: &str| {
        let (kind, name) = header.split_once('.').unwrap_or((header, ""));
        let quoted = format!("{kind}.\"{name}\"");
        text.lines()
            .position(|l| {
                let l = l.trim_start();
                l.starts_with(header) || (!name.is_empty() && l.starts_with(&quoted))
            })
            .map_or(1, |i| i + 1)
    };
    // The line of `key` in the table that starts with `header` (or the header's own line).
    let line_in = |header: &str, key: &str| {
        let start = header_line(header);
        text.lines()
            .enumerate()
            .skip(start)
            .take_while(|(_, l)| !l.trim_start().starts_with('['))
            .find(|(_, l)| l.contains(key))
            .map_or(start, |(i, _)| i + 1)
    };
    let checked = |m: &NameMap<String, toml::Value>, header: &str| {
        let vars = typed(m);
        for (k, v) in &vars {
            check_var(k, &text_of(v)).map_err(|e| ParseError::at(line_in(header, k), e))?;
        }
        Ok::<_, ParseError>(vars)
    };
    let all_vars = checked(&file.vars, "[vars]")?;
    inv.group_mut("all").vars.extend(all_vars);
    for (name, g) in &file.groups {
        let gv = checked(&g.vars, &format!("[groups.{name}"))?;
        inv.group_mut(name).vars.extend(gv);
        for pattern in &g.hosts {
            let at = |m| ParseError::at(line_of(pattern), m);
            for host in inv.expand(pattern).map_err(at)? {
                inv.add_host(Some(name), &host, None, Vars::default())
                    .map_err(at)?;
            }
        }
        for child in &g.children {
            inv.group_mut(child);
            inv.group_mut(name).children.insert(child.clone());
        }
    }
    for (pattern, h) in &file.hosts {
        let header = format!("[hosts.{pattern}");
        let mut vars = checked(&h.vars, &header)?;
        let fixed = [
            ("ansible_host", "address", h.address.clone()),
            ("ansible_port", "port", h.port.map(|p| p.to_string())),
            ("ansible_user", "user", h.user.clone()),
            ("ansible_ssh_private_key_file", "key", h.key.clone()),
        ];
        for (k, field, v) in fixed {
            if let Some(v) = v {
                check_var(k, &v).map_err(|e| {
                    let e = e.replacen(k, field, 1);
                    ParseError::at(line_in(&header, field), e)
                })?;
                let v = match (k, h.port) {
                    ("ansible_port", Some(p)) => Value::from(p),
                    _ => Value::String(v),
                };
                vars.insert(k.to_string(), v);
            }
        }
        let at = |m| ParseError::at(header_line(&header), m);
        for host in inv.expand(pattern).map_err(at)? {
            inv.add_host(None, &host, None, vars.clone()).map_err(at)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {

    /// Groups keep the order they are written in (roles without an order run in it).
    #[test]
    fn groups_keep_the_order_written() {
        let inv = crate::inventory::Inventory::parse(
            "inv.toml",
            "[groups.zeta]\nhosts = [\"z1\"]\n[groups.alpha]\nhosts = [\"a1\"]\n[groups.mid]\nhosts = [\"m1\"]\n",
            crate::inventory::Format::Toml,
        )
        .unwrap();
        let names: Vec<&str> = inv
            .groups
            .keys()
            .map(String::as_str)
            .filter(|g| !matches!(*g, "all" | "ungrouped"))
            .collect();
        assert_eq!(names, ["zeta", "alpha", "mid"]);
    }

    use crate::inventory::{Format, Inventory};

    #[test]
    fn reads_groups_hosts_and_connection_settings() {
        let text = r#"
vars = { ansible_user = "root" }
[groups.controller]
hosts = ["ctl[1:2]"]
[groups.compute]
hosts = ["cmp1"]
vars = { cores = 8 }
[groups.openstack]
children = ["controller", "compute"]
[hosts.ctl1]
address = "10.0.0.11"
port = 2222
"#;
        let inv = Inventory::parse("inv.toml", text, Format::Toml).unwrap();
        let vars = inv.all_host_vars();
        assert_eq!(vars["ctl1"]["ansible_host"], "10.0.0.11");
        assert_eq!(vars["ctl1"]["ansible_port"], "2222");
        assert_eq!(vars["cmp1"]["cores"], "8");
        assert_eq!(vars["cmp1"]["ansible_user"], "root");
        assert_eq!(inv.members("openstack").len(), 3);
    }

    #[test]
    fn unknown_fields_and_syntax_errors_have_lines() {
        let err = Inventory::parse("i.toml", "[groups.a]\nhostz = []\n", Format::Toml).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("unknown field `hostz`"), "{msg}");
        let crate::Error::Source(d) = err else {
            panic!()
        };
        assert_eq!(d.labels.len(), 1);
        assert!(Inventory::parse("i.toml", "[groups.a\n", Format::Toml).is_err());
    }
}
