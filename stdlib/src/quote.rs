//! POSIX shell quoting. Every argument that a host operation puts into a remote command goes
//! through [`quote`], so a value with spaces, quotes, `;`, `$()` or newlines arrives as one
//! literal word.

/// Quotes `s` as one word for a POSIX shell. Plain words (letters, digits and `-_./:=@%+,`)
/// stay as they are so that recorded commands remain readable.
pub fn quote(s: &str) -> String {
    if is_plain(s) && !s.starts_with('-') && !s.starts_with('=') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// Whether a shell reads `s` unchanged without quotes: not empty, and only letters, digits
/// and `-_./:=@%+,`. (As an operand it may still need quoting: a leading `-` or `=`.)
pub fn is_plain(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@%+,".contains(&b))
}

/// Quotes every word and joins them with spaces.
pub fn join<I, S>(words: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    words
        .into_iter()
        .map(|w| quote(w.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_words_stay_readable() {
        assert_eq!(quote("nginx"), "nginx");
        assert_eq!(quote("/etc/nginx/nginx.conf"), "/etc/nginx/nginx.conf");
        assert_eq!(quote("pkg=1.2-3"), "pkg=1.2-3");
    }

    #[test]
    fn hostile_words_are_single_quoted() {
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(quote("$(rm -rf /)"), "'$(rm -rf /)'");
        assert_eq!(quote("a;b\nc"), "'a;b\nc'");
        assert_eq!(quote("-rf"), "'-rf'");
    }

    #[test]
    fn quoted_words_round_trip_through_sh() {
        let nasty = "sp ace 'single' \"double\" ; $(echo pwned) `id` \\ \n newline *";
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf %s {}", quote(nasty)))
            .output()
            .expect("sh runs");
        assert_eq!(String::from_utf8(out.stdout).unwrap(), nasty);
    }
}
