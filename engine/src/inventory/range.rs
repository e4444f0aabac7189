//! Ansible host ranges: `web[01:20].dc1`, `db-[a:c]`, `node[0:10:2]`.

/// Expands every `[start:end(:stride)]` in `pattern`. A name without brackets is returned
/// as it is. Errors say what is wrong with the range.
pub fn expand(pattern: &str) -> Result<Vec<String>, String> {
    let Some(open) = pattern.find('[') else {
        return Ok(vec![pattern.to_string()]);
    };
    let close = pattern[open..]
        .find(']')
        .map(|i| i + open)
        .ok_or_else(|| format!("unclosed '[' in host range {pattern:?}"))?;
    let (head, body, tail) = (
        &pattern[..open],
        &pattern[open + 1..close],
        &pattern[close + 1..],
    );
    let parts: Vec<&str> = body.split(':').collect();
    if parts.len() < 2 || parts.len() > 3 {
        return Err(format!(
            "host range [{body}] in {pattern:?} must be [start:end] or [start:end:stride]"
        ));
    }
    let stride: usize = match parts.get(2) {
        Some(s) => s
            .parse()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("bad stride {s:?} in host range {pattern:?}"))?,
        None => 1,
    };
    let (start, end) = (parts[0], parts[1]);
    let mut items = Vec::new();
    if let (Ok(a), Ok(b)) = (start.parse::<u64>(), end.parse::<u64>()) {
        if a > b {
            return Err(format!("host range {pattern:?} runs backwards ({a} > {b})"));
        }
        if (b - a) / stride as u64 > 1_000_000 {
            return Err(format!("host range {pattern:?} is too large"));
        }
        // A leading zero fixes the width, as in Ansible: [01:20] gives 01..20.
        let width = if start.len() > 1 && start.starts_with('0') {
            start.len()
        } else {
            0
        };
        for n in (a..=b).step_by(stride) {
            items.push(format!("{n:0width$}"));
        }
    } else if start.len() == 1
        && end.len() == 1
        && start.chars().all(|c| c.is_ascii_alphabetic())
        && end.chars().all(|c| c.is_ascii_alphabetic())
    {
        let (a, b) = (start.as_bytes()[0], end.as_bytes()[0]);
        if a > b {
            return Err(format!("host range {pattern:?} runs backwards"));
        }
        for c in (a..=b).step_by(stride) {
            items.push((c as char).to_string());
        }
    } else {
        return Err(format!(
            "host range [{body}] in {pattern:?}: start and end must be numbers or single letters"
        ));
    }
    let mut out = Vec::new();
    for item in items {
        for rest in expand(tail)? {
            out.push(format!("{head}{item}{rest}"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_ranges_keep_leading_zeros() {
        let v = expand("web[01:20].dc1").unwrap();
        assert_eq!(v.len(), 20);
        assert_eq!(v[0], "web01.dc1");
        assert_eq!(v[19], "web20.dc1");
    }

    #[test]
    fn alpha_stride_and_nested_ranges() {
        assert_eq!(expand("db-[a:c]").unwrap(), ["db-a", "db-b", "db-c"]);
        assert_eq!(expand("n[0:4:2]").unwrap(), ["n0", "n2", "n4"]);
        assert_eq!(
            expand("r[1:2]c[1:2]").unwrap(),
            ["r1c1", "r1c2", "r2c1", "r2c2"]
        );
    }

    #[test]
    fn malformed_ranges_are_errors() {
        assert!(expand("web[1:").unwrap_err().contains("unclosed"));
        assert!(expand("web[5:1]").unwrap_err().contains("backwards"));
        assert!(expand("web[1-5]").is_err());
        assert!(expand("web[1:5:0]").is_err());
    }
}
