//! Durations as runbooks write them: `"90s"`, `"15m"`, `"1h30m"`, `"500ms"`, `"2d"`.

use std::time::Duration;

/// The longest duration a runbook may write: a year. Anything longer is a typo, and a wait
/// of "99999999999999d" would never end.
pub const MAX: Duration = Duration::from_secs(366 * 86400);

/// Parses a duration such as `"1h30m"`. A bare number is seconds. At most [`MAX`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = parse_any(text)?;
    if d > MAX {
        return Err(format!(
            "duration {text:?} is longer than the longest allowed, 366d"
        ));
    }
    Ok(d)
}

fn parse_any(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration (write e.g. \"90s\", \"15m\", \"1h30m\")".into());
    }
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    // humantime reads "1h30m", "1h 30m", "500ms", "2d" (and "15min", "1week") and refuses an
    // overflow itself; a value past MAX is refused by the caller.
    humantime::parse_duration(s).map_err(|e| match e {
        humantime::DurationError::NumberOverflow => {
            format!("duration {text:?} is longer than the longest allowed, 366d")
        }
        e => format!("invalid duration {text:?}: {e} (write e.g. \"90s\", \"15m\", \"1h30m\")"),
    })
}

/// Formats a duration compactly: `1h02m`, `5m30s`, `45s`.
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    let (h, m, sec) = (s / 3600, (s % 3600) / 60, s % 60);
    if h > 0 {
        format!("{h}h{m:02}m")
    } else if m > 0 {
        if sec > 0 {
            format!("{m}m{sec:02}s")
        } else {
            format!("{m}m")
        }
    } else if s == 0 && d.subsec_millis() > 0 {
        format!("{}ms", d.subsec_millis())
    } else {
        format!("{sec}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_compounds() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("").is_err());
    }

    // "99999999999999d" overflowed (a panic) or meant a wait that never ends.
    #[test]
    fn absurd_durations_are_refused() {
        assert_eq!(parse_duration("366d"), Ok(MAX));
        for bad in ["367d", "99999999999999d", "18446744073709551615h", "9000h"] {
            let e = parse_duration(bad).unwrap_err();
            assert!(
                e.contains("longer than the longest allowed, 366d"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn formats_compactly() {
        assert_eq!(format_duration(Duration::from_secs(45)), "45s");
        assert_eq!(format_duration(Duration::from_secs(330)), "5m30s");
        assert_eq!(format_duration(Duration::from_secs(3720)), "1h02m");
    }
}
