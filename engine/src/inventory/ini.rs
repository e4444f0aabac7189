//! Ansible INI inventories, read as Ansible reads them.

use super::{Inventory, ParseError};
use indexmap::IndexMap;

enum Section {
    Hosts(String),
    Children(String),
    Vars(String),
}

pub(crate) fn parse(text: &str, inv: &mut Inventory) -> Result<(), ParseError> {
    let mut section = Section::Hosts("ungrouped".into());
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            section = header(line).map_err(|m| ParseError::at(n, m))?;
            match &section {
                Section::Hosts(g) | Section::Children(g) | Section::Vars(g) => {
                    inv.group_mut(g);
                }
            }
            continue;
        }
        match &section {
            Section::Hosts(g) => {
                let words = split_words(line).map_err(|m| ParseError::at(n, m))?;
                let (pattern, rest) = words.split_first().expect("line is not empty");
                let mut vars = IndexMap::new();
                for w in rest {
                    let (k, v) = w.split_once('=').ok_or_else(|| {
                        ParseError::at(
                            n,
                            format!("expected key=value after the host name, found {w:?}"),
                        )
                    })?;
                    if k.is_empty() {
                        return Err(ParseError::at(n, format!("empty variable name in {w:?}")));
                    }
                    vars.insert(k.to_string(), v.to_string());
                }
                // `host:port` is Ansible shorthand for ansible_port; a ':' inside a range's
                // brackets is not one.
                let (pattern, port) = match port_colon(pattern) {
                    Some(i) => {
                        let p = &pattern[i + 1..];
                        if !p.chars().all(|c| c.is_ascii_digit()) || p.is_empty() {
                            return Err(ParseError::at(n, format!("bad port in {pattern:?}")));
                        }
                        (pattern[..i].to_string(), Some(p.to_string()))
                    }
                    None => (pattern.clone(), None),
                };
                if let Some(p) = port {
                    vars.entry("ansible_port".into()).or_insert(p);
                }
                let group = g.clone();
                let target = (group != "ungrouped").then_some(group.as_str());
                for host in inv.expand(&pattern).map_err(|m| ParseError::at(n, m))? {
                    inv.add_host(target, &host, vars.clone())
                        .map_err(|m| ParseError::at(n, m))?;
                }
            }
            Section::Children(g) => {
                let child = line.split_whitespace().next().unwrap_or_default();
                if line.split_whitespace().count() != 1 || !valid_group_name(child) {
                    return Err(ParseError::at(
                        n,
                        format!("expected one group name in [{g}:children], found {line:?}"),
                    ));
                }
                inv.group_mut(child);
                let g = g.clone();
                inv.group_mut(&g).children.insert(child.to_string());
            }
            Section::Vars(g) => {
                let (k, v) = line.split_once('=').ok_or_else(|| {
                    ParseError::at(
                        n,
                        format!("expected key=value in [{g}:vars], found {line:?}"),
                    )
                })?;
                let key = k.trim();
                if key.is_empty() || key.contains(char::is_whitespace) {
                    return Err(ParseError::at(n, format!("bad variable name {key:?}")));
                }
                let value = unquote(v.trim()).map_err(|m| ParseError::at(n, m))?;
                super::check_var(key, &value).map_err(|m| ParseError::at(n, m))?;
                let g = g.clone();
                inv.group_mut(&g).vars.insert(key.to_string(), value);
            }
        }
    }
    Ok(())
}

/// The byte index of the last ':' outside brackets, which starts a `host:port` port.
fn port_colon(pattern: &str) -> Option<usize> {
    let mut depth = 0i32;
    let mut found = None;
    for (i, b) in pattern.bytes().enumerate() {
        match b {
            b'[' => depth += 1,
            b']' => depth -= 1,
            b':' if depth == 0 => found = Some(i),
            _ => {}
        }
    }
    found
}

fn valid_group_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-' || c == '.')
}

fn header(line: &str) -> Result<Section, String> {
    let inner = line
        .strip_prefix('[')
        .and_then(|l| l.strip_suffix(']'))
        .ok_or_else(|| format!("section header {line:?} must end with ']'"))?;
    let (name, kind) = match inner.split_once(':') {
        Some((n, k)) => (n, Some(k)),
        None => (inner, None),
    };
    if !valid_group_name(name) {
        return Err(format!("bad group name {name:?} in {line:?}"));
    }
    let name = name.to_string();
    match kind {
        None => Ok(Section::Hosts(name)),
        Some("children") => Ok(Section::Children(name)),
        Some("vars") => Ok(Section::Vars(name)),
        Some(other) => Err(format!(
            "unknown section kind {other:?} in {line:?} (expected :children or :vars)"
        )),
    }
}

/// Splits a host line into words, honouring single and double quotes (shlex-like).
fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some(q) if q == c => break,
                        Some('\\') if c == '"' => {
                            if let Some(e) = chars.next() {
                                cur.push(e)
                            }
                        }
                        Some(x) => cur.push(x),
                        None => return Err(format!("unclosed {c} quote")),
                    }
                }
            }
            '#' if !in_word => break,
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

fn unquote(v: &str) -> Result<String, String> {
    if v.is_empty() {
        return Ok(String::new());
    }
    let words = split_words(v)?;
    if words.len() == 1 && (v.starts_with('"') || v.starts_with('\'')) {
        Ok(words.into_iter().next().unwrap_or_default())
    } else {
        Ok(v.to_string())
    }
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
            ("[web]\nh1 novalue", "expected key=value"),
            ("[web:kids]\nh1", "unknown section kind"),
            ("[web:vars]\njustaword", "expected key=value"),
            ("[web]\nh[1:", "unclosed"),
            ("[web]\nh1 a=\"open", "unclosed"),
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
