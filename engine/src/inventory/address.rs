//! A host pattern's name and port, as Ansible's `parse_address` splits them: `web1:2222`,
//! `[fe80::1]:2222`, `10.0.0.[1:9]:22`; `fe80::1` is an IPv6 address, not `fe80:` with a
//! port. A pattern that is not a host name, an IPv4 or an IPv6 address keeps its whole text
//! as the name and has no port, as in Ansible.

/// The name (ranges not yet expanded) and the port.
pub(crate) fn split(pattern: &str) -> Result<(String, Option<u16>), String> {
    let mut address = pattern.to_string();
    let mut port = None;
    if let Some((inner, p)) = bracketed_hostport(&address) {
        port = Some(p);
        address = inner;
    }
    if let Some((inner, p)) = hostport(&address) {
        port = Some(p);
        address = inner;
    }
    if !(ipv4(&address) || ipv6(&address) || hostname(&address)) {
        // Ansible keeps such a pattern whole, as a name; one that ends in `:something`
        // would be a host named with a colon that no ssh can reach: a bad port, refused.
        if let Some((_, tail)) = pattern.rsplit_once(':') {
            let head = pattern.rsplit_once(':').map_or("", |p| p.0);
            let port_like = !tail.is_empty() && tail.chars().all(|c| c.is_ascii_alphanumeric());
            if port_like && !ipv6(pattern) && (hostname(head) || ipv4(head)) {
                return Err(format!("bad port in {pattern:?}"));
            }
        }
        return Ok((pattern.to_string(), None));
    }
    match port {
        Some(p) => {
            let p = u16::try_from(p).ok().filter(|p| *p > 0).ok_or_else(|| {
                format!("ansible_port=\"{p}\" is not a port (expected a number from 1 to 65535)")
            })?;
            Ok((address, Some(p)))
        }
        None => Ok((address, None)),
    }
}

fn digits_port(p: &str) -> Option<u64> {
    (!p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())).then(|| p.parse().unwrap_or(u64::MAX))
}

/// `[anything]:port`.
fn bracketed_hostport(a: &str) -> Option<(String, u64)> {
    let rest = a.strip_prefix('[')?;
    let close = rest.rfind("]:")?;
    let inner = &rest[..close];
    if inner.is_empty() {
        return None;
    }
    Some((inner.to_string(), digits_port(&rest[close + 2..])?))
}

/// `name:port` where the name has no ':' outside complete brackets.
fn hostport(a: &str) -> Option<(String, u64)> {
    let colon = a.rfind(':')?;
    let port = digits_port(&a[colon + 1..])?;
    let name = &a[..colon];
    let mut depth = false;
    for c in name.chars() {
        match c {
            '[' if !depth => depth = true,
            ']' if depth => depth = false,
            '[' | ']' => return None,
            ':' if !depth => return None,
            _ => {}
        }
    }
    (!depth).then(|| (name.to_string(), port))
}

/// A range `[a:b]` or `[a:b:s]` at the start of `s`: its length.
fn range_at(s: &str, hex: bool, alpha: bool) -> Option<usize> {
    let body = s.strip_prefix('[')?;
    let end = body.find(']')?;
    let parts: Vec<&str> = body[..end].split(':').collect();
    if !(2..=3).contains(&parts.len()) {
        return None;
    }
    let num = |p: &str, hex: bool| {
        !p.is_empty()
            && p.chars().all(|c| {
                if hex {
                    c.is_ascii_hexdigit()
                } else {
                    c.is_ascii_digit()
                }
            })
    };
    let ends_ok = (num(parts[0], hex) && num(parts[1], hex))
        || (alpha
            && [parts[0], parts[1]]
                .iter()
                .all(|p| p.len() == 1 && p.chars().all(|c| c.is_ascii_alphabetic())));
    let step_ok = parts.len() == 2 || num(parts[2], false);
    (ends_ok && step_ok).then_some(end + 2)
}

fn ipv4(a: &str) -> bool {
    let parts: Vec<&str> = a.split('.').collect();
    parts.len() == 4
        && parts.iter().all(|p| {
            range_at(p, false, false) == Some(p.len())
                || (!p.is_empty()
                    && p.len() <= 3
                    && p.bytes().all(|b| b.is_ascii_digit())
                    && (p.len() < 3 || p.parse::<u16>().is_ok_and(|n| n <= 255)))
        })
}

fn ipv6(a: &str) -> bool {
    // Ranges stand in for one group each.
    let mut plain = String::new();
    let mut rest = a;
    while !rest.is_empty() {
        if let Some(n) = range_at(rest, true, false) {
            plain.push('0');
            rest = &rest[n..];
        } else {
            let c = rest.chars().next().unwrap_or_default();
            plain.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    plain.contains(':') && plain.parse::<std::net::Ipv6Addr>().is_ok()
}

/// Labels of word characters, `-` and ranges, not ending in `-` or `_`, joined by dots.
fn hostname(a: &str) -> bool {
    !a.is_empty()
        && a.split('.').all(|label| {
            let mut rest = label;
            let mut first = true;
            let mut last = ' ';
            while !rest.is_empty() {
                if let Some(n) = range_at(rest, false, true) {
                    rest = &rest[n..];
                    last = ']';
                } else {
                    let c = rest.chars().next().unwrap_or_default();
                    let ok = c.is_alphanumeric() || c == '_' || (!first && c == '-');
                    if !ok {
                        return false;
                    }
                    last = c;
                    rest = &rest[c.len_utf8()..];
                }
                first = false;
            }
            !label.is_empty() && last != '-' && last != '_'
        })
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn names_and_ports_as_ansible_splits_them() {
        for (pattern, name, port) in [
            ("web1:2222", "web1", Some(2222)),
            ("fe80::1", "fe80::1", None),
            ("[fe80::1]:2222", "fe80::1", Some(2222)),
            ("10.0.0.1:22", "10.0.0.1", Some(22)),
            ("web[01:10].dc1:22", "web[01:10].dc1", Some(22)),
            ("web@dc1:22", "web@dc1:22", None),
            ("two words", "two words", None),
            ("db-", "db-", None),
        ] {
            assert_eq!(
                split(pattern).unwrap(),
                (name.to_string(), port),
                "{pattern}"
            );
        }
        assert!(split("web1:99999").unwrap_err().contains("is not a port"));
        assert_eq!(
            split("web[1:2]:x").unwrap_err(),
            "bad port in \"web[1:2]:x\""
        );
    }
}
