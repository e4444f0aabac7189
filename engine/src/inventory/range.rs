//! Ansible host ranges: `web[01:20].dc1`, `db-[a:c]`, `node[0:10:2]`, `r[1:2]-[a:b]`.

/// The environment variable that raises the bound on hosts produced by ranges.
pub const MAX_HOSTS_VAR: &str = "FLEETBOOK_MAX_HOSTS";
/// Hosts that ranges may produce in one inventory unless [`MAX_HOSTS_VAR`] says otherwise.
pub const DEFAULT_MAX_HOSTS: usize = 100_000;

/// How many host names ranges have produced so far in one inventory, and how many they may.
/// The bound is checked before a range is expanded, so a hostile range costs no memory.
#[derive(Debug, Clone)]
pub struct Budget {
    pub used: usize,
    pub max: usize,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            used: 0,
            max: DEFAULT_MAX_HOSTS,
        }
    }
}

impl Budget {
    /// The default bound, or the one [`MAX_HOSTS_VAR`] sets.
    pub fn from_env() -> Result<Budget, String> {
        let max = match std::env::var(MAX_HOSTS_VAR) {
            Err(_) => DEFAULT_MAX_HOSTS,
            Ok(v) => v.trim().parse().ok().filter(|&n| n > 0).ok_or_else(|| {
                format!("{MAX_HOSTS_VAR}={v:?}: expected a positive number of hosts")
            })?,
        };
        Ok(Budget { used: 0, max })
    }
}

/// The longest host name a range may produce (a DNS name has at most 253 characters).
pub const MAX_NAME: usize = 255;

/// One `[start:end(:stride)]`.
enum Range {
    Numeric {
        start: u64,
        stride: u64,
        count: u64,
        width: usize,
    },
    Alpha {
        start: u8,
        stride: u8,
        count: u64,
    },
}

impl Range {
    fn count(&self) -> u64 {
        match self {
            Range::Numeric { count, .. } | Range::Alpha { count, .. } => *count,
        }
    }

    /// The length of the longest item.
    fn width(&self) -> usize {
        match *self {
            Range::Numeric {
                start,
                stride,
                count,
                width,
            } => (start + (count - 1) * stride).to_string().len().max(width),
            Range::Alpha { .. } => 1,
        }
    }

    fn item(&self, i: u64) -> String {
        match *self {
            Range::Numeric {
                start,
                stride,
                width,
                ..
            } => format!("{:0width$}", start + i * stride),
            Range::Alpha { start, stride, .. } => ((start + i as u8 * stride) as char).to_string(),
        }
    }
}

enum Segment<'a> {
    Text(&'a str),
    Range(Range),
}

fn parse_range(body: &str, pattern: &str) -> Result<Range, String> {
    let parts: Vec<&str> = body.split(':').collect();
    if parts.len() < 2 || parts.len() > 3 {
        return Err(format!(
            "host range [{body}] in {pattern:?} must be [start:end] or [start:end:stride]"
        ));
    }
    let stride: u64 = match parts.get(2) {
        Some(s) => s
            .parse()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("bad stride {s:?} in host range {pattern:?}"))?,
        None => 1,
    };
    let (start, end) = (parts[0], parts[1]);
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if digits(start) && digits(end) {
        let (a, b) = match (start.parse::<u64>(), end.parse::<u64>()) {
            (Ok(a), Ok(b)) => (a, b),
            _ => return Err(format!("host range {pattern:?}: number too large")),
        };
        if a > b {
            return Err(format!("host range {pattern:?} runs backwards ({a} > {b})"));
        }
        // A leading zero fixes the width, as in Ansible: [01:20] gives 01..20.
        let width = if start.len() > 1 && start.starts_with('0') {
            if start.len() != end.len() {
                return Err(format!(
                    "host range {pattern:?}: host range must specify equal-length begin and end formats"
                ));
            }
            start.len()
        } else {
            0
        };
        return Ok(Range::Numeric {
            start: a,
            stride,
            count: ((b - a) / stride).saturating_add(1),
            width,
        });
    }
    let letter = |s: &str| s.len() == 1 && s.bytes().all(|b| b.is_ascii_alphabetic());
    if letter(start) && letter(end) {
        let (a, b) = (start.as_bytes()[0], end.as_bytes()[0]);
        if a.is_ascii_lowercase() != b.is_ascii_lowercase() {
            return Err(format!(
                "host range [{body}] in {pattern:?}: start and end must be letters of one case"
            ));
        }
        if a > b {
            return Err(format!("host range {pattern:?} runs backwards"));
        }
        let stride = u8::try_from(stride).unwrap_or(u8::MAX);
        return Ok(Range::Alpha {
            start: a,
            stride,
            count: u64::from((b - a) / stride) + 1,
        });
    }
    Err(format!(
        "host range [{body}] in {pattern:?}: start and end must be numbers or single letters"
    ))
}

/// Expands every `[start:end(:stride)]` in `pattern`, charging the names to `budget`. A name
/// without brackets is returned as it is and costs nothing. Errors say what is wrong.
pub fn expand(pattern: &str, budget: &mut Budget) -> Result<Vec<String>, String> {
    let mut segments = Vec::new();
    let mut rest = pattern;
    while let Some(open) = rest.find('[') {
        let close = rest[open..]
            .find(']')
            .map(|i| i + open)
            .ok_or_else(|| format!("unclosed '[' in host range {pattern:?}"))?;
        segments.push(Segment::Text(&rest[..open]));
        segments.push(Segment::Range(parse_range(
            &rest[open + 1..close],
            pattern,
        )?));
        rest = &rest[close + 1..];
    }
    segments.push(Segment::Text(rest));
    let ranges: Vec<&Range> = segments
        .iter()
        .filter_map(|s| match s {
            Segment::Range(r) => Some(r),
            Segment::Text(_) => None,
        })
        .collect();
    if ranges.is_empty() {
        return Ok(vec![pattern.to_string()]);
    }
    let longest: usize = segments
        .iter()
        .map(|s| match s {
            Segment::Text(t) => t.len(),
            Segment::Range(r) => r.width(),
        })
        .sum();
    if longest > MAX_NAME {
        return Err(format!(
            "host range {pattern:?} gives names of {longest} characters (at most {MAX_NAME})"
        ));
    }
    // Count before allocating anything: `web[0:999999]` must fail at once.
    let count = ranges
        .iter()
        .try_fold(1u64, |acc, r| acc.checked_mul(r.count()));
    let n = match count.and_then(|n| usize::try_from(n).ok()) {
        Some(n) if budget.used.checked_add(n).is_some_and(|t| t <= budget.max) => n,
        _ => {
            let this = count.map_or_else(|| "more than 2^64".to_string(), |n| n.to_string());
            return Err(format!(
                "host ranges give more than {} hosts ({pattern:?} alone gives {this}); \
                 set {MAX_HOSTS_VAR} to raise the limit",
                budget.max
            ));
        }
    };
    budget.used += n;
    let mut out = Vec::with_capacity(n);
    let mut index = vec![0u64; ranges.len()];
    loop {
        let mut name = String::new();
        let mut r = 0;
        for s in &segments {
            match s {
                Segment::Text(t) => name.push_str(t),
                Segment::Range(range) => {
                    name.push_str(&range.item(index[r]));
                    r += 1;
                }
            }
        }
        out.push(name);
        // Odometer: the last range turns fastest, as nested expansion would.
        let mut k = ranges.len();
        loop {
            if k == 0 {
                return Ok(out);
            }
            k -= 1;
            index[k] += 1;
            if index[k] < ranges[k].count() {
                break;
            }
            index[k] = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(p: &str) -> Result<Vec<String>, String> {
        super::expand(p, &mut Budget::default())
    }

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
        assert_eq!(expand("n[a:e:2]").unwrap(), ["na", "nc", "ne"]);
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
        assert!(expand("web[+1:5]").is_err());
    }

    // web[0:999999] took 123 s and 2.1 GB before failing nowhere; now it fails before
    // allocating, naming the bound and the variable that raises it.
    #[test]
    fn huge_range_fails_before_allocating() {
        let t = std::time::Instant::now();
        let err = expand("web[0:999999]").unwrap_err();
        assert_eq!(
            err,
            "host ranges give more than 100000 hosts (\"web[0:999999]\" alone gives 1000000); \
             set FLEETBOOK_MAX_HOSTS to raise the limit"
        );
        let err = expand("a[0:99999999999][0:99999999999][0:99999999999]").unwrap_err();
        assert!(err.contains("more than 2^64"), "{err}");
        assert!(t.elapsed().as_millis() < 100);
    }

    // Found by fuzzing: [0:18446744073709551615] overflowed the count (a panic), and a wide
    // zero-padded start could make 100,000 names of kilobytes each.
    #[test]
    fn extreme_ranges_are_errors_not_panics() {
        assert!(expand("h[0:18446744073709551615]")
            .unwrap_err()
            .contains("more than 100000 hosts"));
        let wide = format!("h[{}1:{}9]", "0".repeat(300), "0".repeat(300));
        assert_eq!(
            expand(&wide).unwrap_err(),
            format!("host range {wide:?} gives names of 302 characters (at most 255)")
        );
    }

    // The bound is on the whole inventory, not on each range.
    #[test]
    fn range_budget_is_shared_across_ranges() {
        let mut b = Budget { used: 0, max: 10 };
        assert_eq!(super::expand("a[1:6]", &mut b).unwrap().len(), 6);
        assert_eq!(b.used, 6);
        assert!(super::expand("b[1:5]", &mut b).is_err());
        assert_eq!(super::expand("c[1:4]", &mut b).unwrap().len(), 4);
    }
}
