//! Ansible INI inventories, read as Ansible's `ini` plugin reads them: host lines split by
//! shell rules, values typed by Python's literal rules, sections that name groups defined
//! later, and Ansible's refusals (an undefined child or vars-only group).

use super::{address, literal, Inventory, ParseError, Vars};
use crate::shared::NameMap;

#[derive(Clone, Copy, PartialEq)]
enum State {
    Hosts,
    Children,
    Vars,
}

/// A group named before it is defined: by `[g:vars]`, or as a child.
struct Pending {
    line: usize,
    state: State,
    parents: Vec<String>,
}

pub(crate) fn parse(text: &str, inv: &mut Inventory) -> Result<(), ParseError> {
    let mut group = "ungrouped".to_string();
    let mut state = State::Hosts;
    let mut pending: NameMap<String, Pending> = NameMap::default();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some((name, kind)) = section(line) {
            state = match kind {
                None | Some("hosts") => State::Hosts,
                Some("children") => State::Children,
                Some("vars") => State::Vars,
                Some(other) => {
                    return Err(ParseError::at(
                        n,
                        format!("Section [{name}:{other}] has unknown type: {other}"),
                    ))
                }
            };
            group = name.to_string();
            if !inv.groups.contains_key(&group) {
                if state == State::Vars && !pending.contains_key(&group) {
                    pending.insert(
                        group.clone(),
                        Pending {
                            line: n,
                            state,
                            parents: vec![],
                        },
                    );
                }
                inv.group_mut(&group);
            }
            if state != State::Vars {
                if let Some(p) = pending.get(&group) {
                    if p.state == State::Children {
                        add_pending_children(inv, &group, &mut pending);
                    } else {
                        pending.shift_remove(&group);
                    }
                }
            }
            continue;
        }
        if line.starts_with('[') && !line.ends_with(']') && !line.contains(']') {
            // Ansible would read this as a host named like the header; it is a typo.
            return Err(ParseError::at(
                n,
                format!("section header {line:?} must end with ']' (fleetbook refuses a host name starting with '[')"),
            ));
        }
        if line.starts_with('[') && line.ends_with(']') {
            return Err(ParseError::at(
                n,
                format!(
                    "Invalid section entry: '{line}'. Please make sure that there are no spaces in the section entry, and that there are no other invalid characters"
                ),
            ));
        }
        match state {
            State::Hosts => {
                let words = split_words(line).map_err(|m| {
                    ParseError::at(n, format!("Error parsing host definition '{line}': {m}"))
                })?;
                let Some((pattern, rest)) = words.split_first() else {
                    continue;
                };
                let mut vars = Vars::default();
                for w in rest {
                    let (k, v) = w.split_once('=').ok_or_else(|| {
                        ParseError::at(
                            n,
                            format!("Expected key=value host variable assignment, got: {w}"),
                        )
                    })?;
                    vars.insert(k.to_string(), literal::ini_value(v));
                }
                let (name, port) = address::split(pattern).map_err(|m| ParseError::at(n, m))?;
                if pattern.trim().ends_with(':') && port.is_none() {
                    return Err(ParseError::at(
                        n,
                        format!("Invalid host pattern '{pattern}' supplied, ending in ':' is not allowed, this character is reserved to provide a port."),
                    ));
                }
                let hosts = inv.expand(&name).map_err(|m| ParseError::at(n, m))?;
                if hosts.iter().any(|h| h.trim() == "---") {
                    return Err(ParseError::at(
                        n,
                        format!("Invalid host pattern '{pattern}' supplied, '---' is normally a sign this is a YAML file."),
                    ));
                }
                for host in hosts {
                    inv.add_host(Some(&group), &host, port, vars.clone())
                        .map_err(|m| ParseError::at(n, m))?;
                }
            }
            State::Vars => {
                let (k, v) = line
                    .split_once('=')
                    .ok_or_else(|| ParseError::at(n, format!("Expected key=value, got: {line}")))?;
                let (key, value) = (k.trim(), literal::ini_value(v.trim()));
                inv.set_group_var(&group, key, value)
                    .map_err(|m| ParseError::at(n, m))?;
            }
            State::Children => {
                let child = group_name(line).ok_or_else(|| {
                    ParseError::at(n, format!("Expected group name, got: {line}"))
                })?;
                if inv.groups.contains_key(child) {
                    inv.group_mut(&group).children.insert(child.to_string());
                } else {
                    pending
                        .entry(child.to_string())
                        .or_insert(Pending {
                            line: n,
                            state: State::Children,
                            parents: vec![],
                        })
                        .parents
                        .push(group.clone());
                }
            }
        }
    }
    if let Some((name, p)) = pending.first() {
        return Err(ParseError::at(
            p.line,
            match p.state {
                State::Vars => {
                    format!("Section [{name}:vars] not valid for undefined group '{name}'.")
                }
                _ => format!(
                    "Section [{}:children] includes undefined group '{name}'.",
                    p.parents.last().map_or("", String::as_str)
                ),
            },
        ));
    }
    Ok(())
}

fn add_pending_children(inv: &mut Inventory, group: &str, pending: &mut NameMap<String, Pending>) {
    let parents = pending
        .get(group)
        .map(|p| p.parents.clone())
        .unwrap_or_default();
    for parent in parents {
        inv.group_mut(&parent).children.insert(group.to_string());
        if pending
            .get(&parent)
            .is_some_and(|p| p.state == State::Children)
        {
            add_pending_children(inv, &parent, pending);
        }
    }
    pending.shift_remove(group);
}

/// `[name]` or `[name:kind]`, with an optional trailing comment; names hold no ':', ']' or
/// whitespace (other punctuation is allowed, as Ansible allows it with a warning).
fn section(line: &str) -> Option<(&str, Option<&str>)> {
    let inner = line.strip_prefix('[')?;
    let close = inner.find(']')?;
    let after = inner[close + 1..].trim_start();
    if !(after.is_empty() || after.starts_with('#')) {
        return None;
    }
    let inner = &inner[..close];
    let (name, kind) = match inner.split_once(':') {
        Some((n, k)) => (n, Some(k)),
        None => (inner, None),
    };
    let name_ok =
        !name.is_empty() && !name.contains(|c: char| c == ':' || c == ']' || c.is_whitespace());
    let kind_ok =
        kind.is_none_or(|k| !k.is_empty() && k.chars().all(|c| c.is_alphanumeric() || c == '_'));
    (name_ok && kind_ok).then_some((name, kind))
}

/// A `[g:children]` line: one group name, then an optional comment.
fn group_name(line: &str) -> Option<&str> {
    let end = line
        .find(|c: char| c == ':' || c == ']' || c.is_whitespace())
        .unwrap_or(line.len());
    let (name, rest) = line.split_at(end);
    let rest = rest.trim_start();
    (!name.is_empty() && (rest.is_empty() || rest.starts_with('#'))).then_some(name)
}

/// Splits a host line as Python's `shlex.split(line, comments=True)` does.
fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(x) => cur.push(x),
                        None => return Err("No closing quotation".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(e @ ('"' | '\\')) => cur.push(e),
                            Some(e) => {
                                cur.push('\\');
                                cur.push(e);
                            }
                            None => return Err("No closing quotation".into()),
                        },
                        Some(x) => cur.push(x),
                        None => return Err("No closing quotation".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(e) => cur.push(e),
                    None => return Err("No escaped character".into()),
                }
            }
            '#' => break,
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use crate::inventory::{Format, Inventory};

    const SAMPLE: &str = r#"
lonely.example
[controller]
ctl[1:3] ansible_user=admin
[compute]
cmp[01:04].dc1 ansible_host=10.0.0.1 note="two words"
db1:2222
[compute:vars]
pkg_manager=apt
[openstack:children]
controller
compute
[openstack:vars]
region = "east 1"
"#;

    #[test]
    fn groups_children_vars_and_ranges() {
        let inv = Inventory::parse("hosts", SAMPLE, Format::Ini).unwrap();
        assert_eq!(inv.hosts.len(), 9);
        assert_eq!(inv.members("openstack").len(), 8);
        assert!(inv.is_gathering_group("openstack"));
        assert_eq!(inv.direct_groups("cmp02.dc1"), ["compute"]);
        let vars = inv.all_host_vars();
        let v = &vars["cmp02.dc1"];
        assert_eq!(v["pkg_manager"], "apt");
        assert_eq!(v["note"], "two words");
        assert_eq!(v["region"], "east 1");
        assert_eq!(vars["db1"]["ansible_port"], "2222");
        assert_eq!(vars["ctl2"]["ansible_user"], "admin");
        assert!(inv.groups["ungrouped"].hosts.contains("lonely.example"));
    }

    #[test]
    fn malformed_lines_name_the_line() {
        for (text, needle) in [
            ("[web\nh1", "must end with ']'"),
            (
                "[web]\nh1 novalue",
                "Expected key=value host variable assignment, got: novalue",
            ),
            (
                "[web:kids]\nh1",
                "Section [web:kids] has unknown type: kids",
            ),
            (
                "[web:vars]\njustaword",
                "Expected key=value, got: justaword",
            ),
            ("[web]\nh[1:", "ending in ':' is not allowed"),
            ("[web]\nh1 a=\"open", "No closing quotation"),
            (
                "[usa:children]\nsouth\n",
                "Section [usa:children] includes undefined group 'south'.",
            ),
            (
                "[db:vars]\nx=1\n",
                "Section [db:vars] not valid for undefined group 'db'.",
            ),
            ("[web]\nweb[01:100]\n", "equal-length"),
        ] {
            let err = Inventory::parse("inv.ini", text, Format::Ini).unwrap_err();
            let msg = format!("{err}");
            assert!(msg.contains(needle), "{text:?}: {msg}");
            let crate::Error::Source(d) = err else {
                panic!("no source for {text:?}")
            };
            assert_eq!(d.labels.len(), 1);
        }
    }

    #[test]
    fn child_group_cycles_are_rejected() {
        let err =
            Inventory::parse("i", "[a:children]\nb\n[b:children]\na\n", Format::Ini).unwrap_err();
        assert!(err.to_string().contains("a -> b -> a"), "{err}");
    }
}
