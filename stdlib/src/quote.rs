//! POSIX shell quoting. Every argument that a host operation puts into a remote command goes
//! through [`quote`], so a value with spaces, quotes, `;`, `$()` or newlines arrives as one
//! literal word.

/// Quotes `s` as one word for a POSIX shell. Plain words (letters, digits and `-_./:=@%+,`)
/// stay as they are so that recorded commands remain readable.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    quote_into(&mut out, s);
    out
}

/// [`quote`], appended to `out`: what a command builder uses, so that a quoted word costs
/// no allocation of its own.
pub fn quote_into(out: &mut String, s: &str) {
    if is_plain(s) && !s.starts_with('-') && !s.starts_with('=') {
        out.push_str(s);
        return;
    }
    out.push('\'');
    let mut parts = s.split('\'');
    if let Some(first) = parts.next() {
        out.push_str(first);
    }
    for part in parts {
        out.push_str("'\\''");
        out.push_str(part);
    }
    out.push('\'');
}

/// The bytes a shell reads unchanged outside quotes: letters, digits and `-_./:=@%+,`.
const PLAIN: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'_' | b'.' | b'/' | b':' | b'=' | b'@' | b'%' | b'+' | b','
            );
        b += 1;
    }
    t
};

/// Whether a shell reads `s` unchanged without quotes: not empty, and only letters, digits
/// and `-_./:=@%+,`. (As an operand it may still need quoting: a leading `-` or `=`.)
pub fn is_plain(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| PLAIN[b as usize])
}

/// Quotes every word and joins them with spaces.
pub fn join<I, S>(words: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut out = String::new();
    join_into(&mut out, words);
    out
}

/// `head`, then `words` quoted and joined by spaces, then `tail`, in one allocation: what a
/// host operation's command is built with (every host runs it, and a `format!` of a long
/// head cost more than the copy).
pub fn command<S: AsRef<str>>(head: &[&str], words: &[S], tail: &str) -> String {
    let len = head.iter().map(|p| p.len()).sum::<usize>()
        + words.iter().map(|w| w.as_ref().len() + 3).sum::<usize>()
        + tail.len();
    let mut out = String::with_capacity(len);
    head.iter().for_each(|p| out.push_str(p));
    join_into(&mut out, words);
    out.push_str(tail);
    out
}

/// [`join`], appended to `out`.
pub fn join_into<I, S>(out: &mut String, words: I)
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    for (i, w) in words.into_iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        quote_into(out, w.as_ref());
    }
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
        assert_eq!(quote("'a''b'"), r#"''\''a'\'''\''b'\'''"#);
        assert_eq!(quote("é"), "'é'");
        assert_eq!(join(["a b", "c", "=d"]), "'a b' c '=d'");
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
