//! Ansible host patterns for `--limit`: `group`, `host`, globs (`web*`, `web0[2-8]*`), unions (`a:b`,
//! `a,b`), intersections (`a:&b`) and exclusions (`a:!b`).

use super::Inventory;
use crate::error::{Error, Result};
use crate::shared::NameSet;

/// Ansible's glob (Python's `fnmatch`): `*` any run of characters, `?` one character,
/// `[seq]` one character of `seq` (ranges `a-z` allowed), `[!seq]` one character not in it.
/// A `[` without its `]` is an ordinary character, as in `fnmatch`.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    // Where the last `*` was, and the text position it has consumed up to.
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        let step = match p.get(pi) {
            Some('*') => {
                star = Some(pi);
                mark = ti;
                pi += 1;
                continue;
            }
            Some('?') => Some(1),
            Some('[') => match class(&p[pi..], t[ti]) {
                Some((true, len)) => Some(len),
                Some((false, _)) => None,
                None => (t[ti] == '[').then_some(1),
            },
            Some(&c) => (c == t[ti]).then_some(1),
            None => None,
        };
        match (step, star) {
            (Some(len), _) => {
                pi += len;
                ti += 1;
            }
            (None, Some(s)) => {
                pi = s + 1;
                mark += 1;
                ti = mark;
            }
            (None, None) => return false,
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// A bracket expression at the start of `p` (`p[0] == '['`) against `c`: whether it matches
/// and how many pattern characters it spans, or `None` if the `]` is missing. As in `fnmatch`,
/// a `]` right after `[` or `[!` is a member, not the end.
fn class(p: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = p.get(i) == Some(&'!');
    if negate {
        i += 1;
    }
    let first = i;
    let mut hit = false;
    while let Some(&lo) = p.get(i) {
        if lo == ']' && i > first {
            return Some((hit != negate, i + 1));
        }
        if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|&hi| hi != ']') {
            hit |= lo <= c && c <= p[i + 2];
            i += 3;
        } else {
            hit |= lo == c;
            i += 1;
        }
    }
    None
}

/// Whether a term is a glob over host and group names rather than one name.
fn is_glob(term: &str) -> bool {
    term.contains(['*', '?', '['])
}

/// Hosts that one term names: a group's members, a host, or every host or group a glob matches.
fn term_hosts(inv: &Inventory, term: &str) -> NameSet<String> {
    if term == "all" || term == "*" {
        return inv.hosts.keys().cloned().collect();
    }
    if is_glob(term) {
        let groups: Vec<&str> = inv
            .groups
            .keys()
            .map(String::as_str)
            .filter(|g| glob_match(term, g))
            .collect();
        let in_groups = inv.members_of(&groups);
        return inv
            .hosts
            .keys()
            .filter(|h| in_groups.contains(*h) || glob_match(term, h))
            .cloned()
            .collect();
    }
    if inv.groups.contains_key(term) {
        return inv.members(term);
    }
    if inv.hosts.contains_key(term) {
        return NameSet::from_iter([term.to_string()]);
    }
    NameSet::default()
}

/// Where a pattern came from, to name it in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// `--limit` of plan, run, apply and check.
    Limit,
    /// The positional pattern of `exec`.
    Exec,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Origin::Limit => "--limit",
            Origin::Exec => "pattern",
        })
    }
}

/// Splits a pattern into terms at `,` and at `:` outside brackets, so the subscript in
/// `web[0:1]` stays whole.
fn terms(pattern: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, b) in pattern.bytes().enumerate() {
        match b {
            b'[' => depth += 1,
            b']' => depth -= 1,
            b',' => {}
            b':' if depth <= 0 => {}
            _ => continue,
        }
        if b == b',' || b == b':' {
            out.push(&pattern[start..i]);
            start = i + 1;
        }
    }
    out.push(&pattern[start..]);
    out.into_iter().map(str::trim).collect()
}

/// Ansible's subscript on a term: `web[0]`, `web[-1]`, `web[1:3]` (end included), `web[1:]`,
/// `web[:2]`. Gives the term without it and the first and last index (`None` for the end).
fn subscript(term: &str) -> Option<(&str, i64, Option<i64>)> {
    let inner = term.strip_suffix(']')?;
    let open = inner.rfind('[')?;
    let (name, sub) = (&inner[..open], &inner[open + 1..]);
    if name.is_empty() {
        return None;
    }
    let num = |s: &str| -> Option<i64> {
        let s = s.trim();
        let digits = s.strip_prefix('-').unwrap_or(s);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    match sub.split_once(':') {
        None => Some((name, num(sub)?, Some(num(sub)?))),
        Some((a, b)) => {
            let a = if a.trim().is_empty() { 0 } else { num(a)? };
            let b = if b.trim().is_empty() {
                None
            } else {
                Some(num(b)?)
            };
            (a >= 0 && b.unwrap_or(0) >= 0).then_some((name, a, b))
        }
    }
}

/// The hosts `pattern` selects, in inventory order. An empty pattern, one of separators only,
/// an empty selection and a term that names nothing are errors (a typo would otherwise
/// silently shrink the run, or an empty limit widen it to the whole fleet).
pub fn select(inv: &Inventory, pattern: &str) -> Result<NameSet<String>> {
    select_as(inv, pattern, Origin::Limit)
}

/// [`select`] for a pattern that did not come from `--limit`, named as `origin` in errors.
pub fn select_as(inv: &Inventory, pattern: &str, origin: Origin) -> Result<NameSet<String>> {
    let known = || {
        let groups: Vec<&str> = inv
            .groups
            .keys()
            .map(String::as_str)
            .filter(|g| *g != "ungrouped")
            .collect();
        format!("groups in {}: {}", inv.source, groups.join(", "))
    };
    let mut union: NameSet<String> = NameSet::default();
    let mut intersect: Vec<NameSet<String>> = Vec::new();
    let mut exclude: NameSet<String> = NameSet::default();
    let mut any_positive = false;
    let mut any_term = false;
    for raw in terms(pattern).into_iter().filter(|t| !t.is_empty()) {
        let (kind, term) = match raw.as_bytes()[0] {
            b'&' => ('&', raw[1..].trim()),
            b'!' => ('!', raw[1..].trim()),
            _ => ('+', raw),
        };
        if term.is_empty() {
            return Err(Error::input_with_help(
                format!("{origin} {pattern:?}: '{kind}' must be followed by a group or host"),
                known(),
            ));
        }
        any_term = true;
        if term.starts_with('~') {
            return Err(Error::input(format!(
                "{origin} {pattern:?}: regular-expression terms (~) are not supported; use globs"
            )));
        }
        let hosts = match subscript(term) {
            Some((name, first, last)) if !term_hosts(inv, name).is_empty() => {
                let all: Vec<String> = term_hosts(inv, name).into_iter().collect();
                let len = all.len() as i64;
                let first = if first < 0 { len + first } else { first };
                let last = match last {
                    Some(l) if l < 0 => len + l,
                    Some(l) => l,
                    None => len - 1,
                };
                if first < 0 || first >= len || last < first {
                    return Err(Error::input(format!(
                        "{origin} {pattern:?}: subscript in {term:?} selects nothing: \
                         {name:?} has {len} hosts, numbered from 0"
                    )));
                }
                let last = last.min(len - 1);
                all[first as usize..=last as usize]
                    .iter()
                    .cloned()
                    .collect()
            }
            _ => term_hosts(inv, term),
        };
        if hosts.is_empty() {
            return Err(Error::input_with_help(
                format!("{origin} {pattern:?}: {term:?} matches no host or group"),
                known(),
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
    if !any_term {
        return Err(Error::input_with_help(
            format!("{origin} {pattern:?} names no host or group"),
            format!(
                "to act on every host, give {origin} all (or leave it out); {}",
                known()
            ),
        ));
    }
    if !any_positive {
        union = inv.hosts.keys().cloned().collect();
    }
    let mut out: NameSet<String> = union
        .into_iter()
        .filter(|h| intersect.iter().all(|s| s.contains(h)) && !exclude.contains(h))
        .collect();
    out.sort_by_key(|h| inv.hosts.get_index_of(h));
    if out.is_empty() {
        return Err(Error::input(format!(
            "{origin} {pattern:?} matches no host of {}",
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

    // `--limit 'web0[2-8]*'` matched nothing: brackets were not a glob, as they are in
    // Ansible (Python's fnmatch).
    #[test]
    fn bracket_globs_match_as_ansible() {
        assert!(glob_match("web0[2-8]*", "web02.dc1"));
        assert!(glob_match("web0[2-8]*", "web08"));
        assert!(!glob_match("web0[2-8]*", "web01"));
        assert!(!glob_match("web0[2-8]*", "web09.dc1"));
        assert!(glob_match("web[!0-1]", "web2"));
        assert!(!glob_match("web[!0-1]", "web1"));
        assert!(glob_match("db[13]", "db3"));
        assert!(!glob_match("db[13]", "db2"));
        assert!(glob_match("x[]]", "x]"));
        assert!(glob_match("x[a-]", "x-"));
        // An unclosed bracket is an ordinary character.
        assert!(glob_match("web[1", "web[1"));
        assert!(!glob_match("web[1", "web1"));
        assert!(glob_match("*[0-9]", "cmp4"));

        let text = "[web]\nweb[01:09]\n[dbs]\ndb1\n[db_east]\ndb2\n";
        let inv = Inventory::parse("inv", text, Format::Ini).unwrap();
        let got = |p: &str| -> Vec<String> { select(&inv, p).unwrap().into_iter().collect() };
        assert_eq!(
            got("web0[2-8]*"),
            ["web02", "web03", "web04", "web05", "web06", "web07", "web08"]
        );
        assert_eq!(got("web0[2-3]:!web03"), ["web02"]);
        // Groups match too, as in Ansible: every host of a matching group.
        assert_eq!(got("db[s_]*"), ["db1", "db2"]);
        // A numeric subscript is still a subscript, not a class.
        assert_eq!(got("web[1]"), ["web02"]);
        assert_eq!(got("web[0:1]"), ["web01", "web02"]);
        assert!(select(&inv, "web1[0-9]")
            .unwrap_err()
            .to_string()
            .contains("matches no host or group"));
    }

    fn err(p: &str, origin: Origin) -> String {
        select_as(&inv(), p, origin).unwrap_err().to_string()
    }

    // `--limit ""` and `--limit ":"` selected the whole fleet (a run upgraded every host).
    #[test]
    fn empty_or_separator_only_limit_is_an_error() {
        for p in ["", " ", ":", ",", "::", ", :"] {
            assert_eq!(
                err(p, Origin::Limit),
                format!("--limit {p:?} names no host or group"),
            );
        }
        assert_eq!(
            err("&", Origin::Limit),
            "--limit \"&\": '&' must be followed by a group or host"
        );
        assert_eq!(
            err(":!", Origin::Exec),
            "pattern \":!\": '!' must be followed by a group or host"
        );
        assert_eq!(err("", Origin::Exec), "pattern \"\" names no host or group");
        assert_eq!(
            err("controller:&compute", Origin::Exec),
            "pattern \"controller:&compute\" matches no host of inv"
        );
    }

    // `--limit web[0:1]` was split at the ':' inside the brackets and reported as "web[0".
    #[test]
    fn subscripts_select_by_position() {
        assert_eq!(names("controller[0:1]"), ["ctl1", "ctl2"]);
        assert_eq!(names("controller[1]"), ["ctl2"]);
        assert_eq!(names("controller[-1]"), ["ctl3"]);
        assert_eq!(names("compute[2:]"), ["cmp3", "cmp4"]);
        assert_eq!(names("compute[:1],controller[0]"), ["ctl1", "cmp1", "cmp2"]);
        assert_eq!(names("compute[0:9]:!cmp2"), ["cmp1", "cmp3", "cmp4"]);
        assert_eq!(
            err("controller[5:6]", Origin::Limit),
            "--limit \"controller[5:6]\": subscript in \"controller[5:6]\" selects nothing: \
             \"controller\" has 3 hosts, numbered from 0"
        );
        assert_eq!(
            err("web[0:1]", Origin::Limit),
            "--limit \"web[0:1]\": \"web[0:1]\" matches no host or group"
        );
    }
}
