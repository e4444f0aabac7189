//! Ansible host patterns for `--limit`: `group`, `host`, globs (`web*`), unions (`a:b`,
//! `a,b`), intersections (`a:&b`) and exclusions (`a:!b`).

use super::Inventory;
use crate::error::{Error, Result};
use indexmap::IndexSet;

/// Simple glob: `*` any run of characters, `?` one character.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Hosts that one term names: a group's members, a host, or every host or group a glob matches.
fn term_hosts(inv: &Inventory, term: &str) -> IndexSet<String> {
    if term == "all" || term == "*" {
        return inv.hosts.keys().cloned().collect();
    }
    if term.contains('*') || term.contains('?') {
        let mut out: IndexSet<String> = inv
            .hosts
            .keys()
            .filter(|h| glob_match(term, h))
            .cloned()
            .collect();
        for g in inv.groups.keys().filter(|g| glob_match(term, g)) {
            out.extend(inv.members(g));
        }
        return out;
    }
    if inv.groups.contains_key(term) {
        return inv.members(term);
    }
    if inv.hosts.contains_key(term) {
        return IndexSet::from([term.to_string()]);
    }
    IndexSet::new()
}

/// The hosts `pattern` selects, in inventory order. An empty selection is an error, and so is
/// a term that names nothing (a typo would otherwise silently shrink the run).
pub fn select(inv: &Inventory, pattern: &str) -> Result<IndexSet<String>> {
    let mut union: IndexSet<String> = IndexSet::new();
    let mut intersect: Vec<IndexSet<String>> = Vec::new();
    let mut exclude: IndexSet<String> = IndexSet::new();
    let mut any_positive = false;
    for raw in pattern
        .split([':', ','])
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        let (kind, term) = match raw.as_bytes()[0] {
            b'&' => ('&', &raw[1..]),
            b'!' => ('!', &raw[1..]),
            _ => ('+', raw),
        };
        if term.starts_with('~') {
            return Err(Error::input(format!(
                "--limit {pattern:?}: regular-expression terms (~) are not supported; use globs"
            )));
        }
        let hosts = term_hosts(inv, term);
        if hosts.is_empty() {
            let known: Vec<&str> = inv
                .groups
                .keys()
                .map(String::as_str)
                .filter(|g| *g != "ungrouped")
                .collect();
            return Err(Error::input_with_help(
                format!("--limit {pattern:?}: {term:?} matches no host or group"),
                format!("groups in {}: {}", inv.source, known.join(", ")),
            ));
        }
        match kind {
            '&' => intersect.push(hosts),
            '!' => exclude.extend(hosts),
            _ => {
                any_positive = true;
                union.extend(hosts)
            }
        }
    }
    if !any_positive {
        union = inv.hosts.keys().cloned().collect();
    }
    let mut out: IndexSet<String> = union
        .into_iter()
        .filter(|h| intersect.iter().all(|s| s.contains(h)) && !exclude.contains(h))
        .collect();
    out.sort_by_key(|h| inv.hosts.get_index_of(h));
    if out.is_empty() {
        return Err(Error::input(format!(
            "--limit {pattern:?} matches no host of {}",
            inv.source
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::Format;

    fn inv() -> Inventory {
        let text = "[controller]\nctl[1:3]\n[compute]\ncmp[1:4]\n[dc1]\nctl1\ncmp1\ncmp2\n";
        Inventory::parse("inv", text, Format::Ini).unwrap()
    }

    fn names(p: &str) -> Vec<String> {
        select(&inv(), p).unwrap().into_iter().collect()
    }

    #[test]
    fn ansible_pattern_forms() {
        assert_eq!(names("controller").len(), 3);
        assert_eq!(names("ctl2"), ["ctl2"]);
        assert_eq!(names("cmp*").len(), 4);
        assert_eq!(names("controller:compute").len(), 7);
        assert_eq!(names("controller,cmp1"), ["ctl1", "ctl2", "ctl3", "cmp1"]);
        assert_eq!(names("compute:&dc1"), ["cmp1", "cmp2"]);
        assert_eq!(names("all:!dc1"), ["ctl2", "ctl3", "cmp3", "cmp4"]);
        assert_eq!(names("!controller").len(), 4);
    }

    #[test]
    fn nothing_matched_is_an_error() {
        assert!(select(&inv(), "nosuch")
            .unwrap_err()
            .to_string()
            .contains("matches no host"));
        assert!(select(&inv(), "controller:&compute").is_err());
    }

    #[test]
    fn globs() {
        assert!(glob_match("web*.dc1", "web01.dc1"));
        assert!(glob_match("w?b", "wab"));
        assert!(!glob_match("web*", "db1"));
    }
}
