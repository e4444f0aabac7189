//! INI values as Ansible types them: Python's `ast.literal_eval`, and the raw text when that
//! fails. Takes one value's text; gives a JSON value (tuples and sets become lists; complex
//! numbers and `...` stay text, as Ansible turns them back into strings).

use serde_json::{Map, Number, Value};

/// The value Ansible's INI plugin gives for `text`.
pub(crate) fn ini_value(text: &str) -> Value {
    // literal_eval strips leading spaces and tabs only.
    let src = text.trim_start_matches([' ', '\t']);
    let mut p = Parser {
        s: src.as_bytes(),
        src,
        i: 0,
    };
    match p.expr().and_then(|v| {
        p.skip_ws();
        (p.i == p.s.len()).then_some(v)
    }) {
        Some(v) => v,
        None => Value::String(text.to_string()),
    }
}

struct Parser<'a> {
    s: &'a [u8],
    src: &'a str,
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    /// Spaces, tabs and `# comments` (Python source allows them between tokens).
    fn skip_ws(&mut self) {
        while let Some(c) = self.peek() {
            match c {
                b' ' | b'\t' | b'\x0c' => self.i += 1,
                b'#' => {
                    while self.peek().is_some_and(|c| c != b'\n') {
                        self.i += 1;
                    }
                }
                _ => break,
            }
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.skip_ws();
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expr(&mut self) -> Option<Value> {
        self.skip_ws();
        match self.peek()? {
            b'-' | b'+' => {
                let neg = self.peek() == Some(b'-');
                self.i += 1;
                self.skip_ws();
                match self.number()? {
                    Num::Int(n) => Some(Value::Number(Number::from(if neg { -n } else { n }))),
                    Num::Float(f) => float(if neg { -f } else { f }),
                    Num::Complex(t) => {
                        Some(Value::String(if neg { format!("(-0-{t})") } else { t }))
                    }
                }
            }
            b'[' => {
                self.i += 1;
                self.seq(b']').map(Value::Array)
            }
            b'(' => {
                self.i += 1;
                self.skip_ws();
                if self.eat(b')') {
                    return Some(Value::Array(vec![]));
                }
                let first = self.expr()?;
                if self.eat(b')') {
                    return Some(first);
                }
                if !self.eat(b',') {
                    return None;
                }
                let mut rest = self.seq(b')')?;
                rest.insert(0, first);
                Some(Value::Array(rest))
            }
            b'{' => {
                self.i += 1;
                self.brace()
            }
            b'0'..=b'9' | b'.' if self.s[self.i..].starts_with(b"...") => {
                self.i += 3;
                Some(Value::String("...".into()))
            }
            b'0'..=b'9' | b'.' => match self.number()? {
                Num::Int(n) => Some(Value::Number(Number::from(n))),
                Num::Float(f) => float(f),
                Num::Complex(t) => Some(Value::String(t)),
            },
            b'\'' | b'"' => self.strings(),
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = self.i;
                while self
                    .peek()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_')
                {
                    self.i += 1;
                }
                let word = &self.src[start..self.i];
                match word {
                    "True" => Some(Value::Bool(true)),
                    "False" => Some(Value::Bool(false)),
                    "None" => Some(Value::Null),
                    _ if matches!(self.peek(), Some(b'\'' | b'"'))
                        && [
                            "r", "u", "b", "br", "rb", "R", "U", "B", "Br", "bR", "BR", "rB", "Rb",
                            "RB",
                        ]
                        .contains(&word) =>
                    {
                        self.i = start;
                        self.strings()
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// Items up to `close`, with an optional trailing comma.
    fn seq(&mut self, close: u8) -> Option<Vec<Value>> {
        let mut out = Vec::new();
        loop {
            if self.eat(close) {
                return Some(out);
            }
            out.push(self.expr()?);
            if !self.eat(b',') {
                return self.eat(close).then_some(out);
            }
        }
    }

    fn brace(&mut self) -> Option<Value> {
        if self.eat(b'}') {
            return Some(Value::Object(Map::new()));
        }
        let first = self.expr()?;
        if self.eat(b':') {
            let mut map = Map::new();
            let v = self.expr()?;
            map.insert(key_text(&first)?, v);
            loop {
                if !self.eat(b',') {
                    return self.eat(b'}').then_some(Value::Object(map));
                }
                if self.eat(b'}') {
                    return Some(Value::Object(map));
                }
                let k = self.expr()?;
                if !self.eat(b':') {
                    return None;
                }
                let v = self.expr()?;
                map.insert(key_text(&k)?, v);
            }
        }
        // A set: no duplicates, and only hashable items.
        let mut items = vec![first];
        if self.eat(b',') {
            items.extend(self.seq(b'}')?);
        } else if !self.eat(b'}') {
            return None;
        }
        if items.iter().any(|v| v.is_array() || v.is_object()) {
            return None;
        }
        let mut set: Vec<Value> = Vec::new();
        for v in items {
            if !set.contains(&v) {
                set.push(v);
            }
        }
        Some(Value::Array(set))
    }

    /// Adjacent string literals, concatenated.
    fn strings(&mut self) -> Option<Value> {
        let mut out = String::new();
        let mut any = false;
        loop {
            self.skip_ws();
            let start = self.i;
            let mut raw = false;
            while let Some(c) = self.peek() {
                match c {
                    b'r' | b'R' => raw = true,
                    b'b' | b'B' | b'u' | b'U' => {}
                    _ => break,
                }
                self.i += 1;
            }
            let Some(q @ (b'\'' | b'"')) = self.peek() else {
                self.i = start;
                break;
            };
            let triple = self.s[self.i..].starts_with(&[q, q, q]);
            self.i += if triple { 3 } else { 1 };
            loop {
                let c = self.peek()?;
                if c == q {
                    if !triple {
                        self.i += 1;
                        break;
                    }
                    if self.s[self.i..].starts_with(&[q, q, q]) {
                        self.i += 3;
                        break;
                    }
                }
                if c == b'\n' && !triple {
                    return None;
                }
                if c == b'\\' {
                    let next = self.src[self.i + 1..].chars().next()?;
                    self.i += 1 + next.len_utf8();
                    if raw {
                        out.push('\\');
                        out.push(next);
                        continue;
                    }
                    match next {
                        '\n' => {}
                        '\\' | '\'' | '"' => out.push(next),
                        'n' => out.push('\n'),
                        't' => out.push('\t'),
                        'r' => out.push('\r'),
                        'a' => out.push('\x07'),
                        'b' => out.push('\x08'),
                        'f' => out.push('\x0c'),
                        'v' => out.push('\x0b'),
                        '0'..='7' => {
                            let mut n = next.to_digit(8)?;
                            for _ in 0..2 {
                                match self.peek() {
                                    Some(d @ b'0'..=b'7') => {
                                        n = n * 8 + u32::from(d - b'0');
                                        self.i += 1;
                                    }
                                    _ => break,
                                }
                            }
                            out.push(char::from_u32(n)?);
                        }
                        'x' | 'u' | 'U' => {
                            let len = match next {
                                'x' => 2,
                                'u' => 4,
                                _ => 8,
                            };
                            let hex = self.src.get(self.i..self.i + len)?;
                            out.push(char::from_u32(u32::from_str_radix(hex, 16).ok()?)?);
                            self.i += len;
                        }
                        other => {
                            out.push('\\');
                            out.push(other);
                        }
                    }
                    continue;
                }
                let ch = self.src[self.i..].chars().next()?;
                out.push(ch);
                self.i += ch.len_utf8();
            }
            any = true;
        }
        any.then_some(Value::String(out))
    }

    fn number(&mut self) -> Option<Num> {
        let start = self.i;
        let rest = &self.src[start..];
        let lower = rest.to_ascii_lowercase();
        for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] {
            if lower.starts_with(prefix) {
                let digits: String = rest[2..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                self.i += 2 + digits.len();
                return i64::from_str_radix(&clean(&digits)?, radix)
                    .ok()
                    .map(Num::Int);
            }
        }
        let mut end = 0;
        let b = rest.as_bytes();
        let digits = |end: &mut usize| {
            while *end < b.len() && (b[*end].is_ascii_digit() || b[*end] == b'_') {
                *end += 1;
            }
        };
        digits(&mut end);
        let int_part = &rest[..end];
        let mut is_float = false;
        if end < b.len() && b[end] == b'.' {
            is_float = true;
            end += 1;
            digits(&mut end);
        }
        if end < b.len() && (b[end] == b'e' || b[end] == b'E') {
            let mut e = end + 1;
            if e < b.len() && (b[e] == b'+' || b[e] == b'-') {
                e += 1;
            }
            if e < b.len() && b[e].is_ascii_digit() {
                is_float = true;
                end = e;
                digits(&mut end);
            }
        }
        let text = &rest[..end];
        if text.is_empty() || text == "." {
            return None;
        }
        self.i += end;
        if matches!(self.peek(), Some(b'j' | b'J')) {
            self.i += 1;
            let f: f64 = clean(text)?.parse().ok()?;
            return Some(Num::Complex(format!("{}j", py_float(f))));
        }
        if self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_')
        {
            return None;
        }
        if is_float {
            return clean(text)?.parse().ok().map(Num::Float);
        }
        let int_part = clean(int_part)?;
        // Python refuses leading zeros in a decimal integer (other than all zeros).
        if int_part.len() > 1 && int_part.starts_with('0') && int_part.bytes().any(|c| c != b'0') {
            return None;
        }
        int_part.parse().ok().map(Num::Int)
    }
}

enum Num {
    Int(i64),
    Float(f64),
    Complex(String),
}

/// Digits without Python's `_` separators, which may only stand between digits.
fn clean(digits: &str) -> Option<String> {
    if digits.starts_with('_') || digits.ends_with('_') || digits.contains("__") {
        return None;
    }
    Some(digits.replace('_', ""))
}

fn float(f: f64) -> Option<Value> {
    Some(match Number::from_f64(f) {
        Some(n) => Value::Number(n),
        None => Value::String(py_float(f)),
    })
}

fn py_float(f: f64) -> String {
    if f.is_infinite() {
        if f > 0.0 { "inf" } else { "-inf" }.into()
    } else if f == f.trunc() && f.abs() < 1e16 {
        format!("{f:.0}")
    } else {
        f.to_string()
    }
}

/// A dict key as JSON writes it.
fn key_text(k: &Value) -> Option<String> {
    match k {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => Some("null".into()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::ini_value;
    use serde_json::json;

    #[test]
    fn python_literals_and_raw_text() {
        for (text, want) in [
            ("8080", json!(8080)),
            ("8080  # http", json!(8080)),
            ("hello # not a literal", json!("hello # not a literal")),
            ("True", json!(true)),
            ("None", json!(null)),
            ("['/dev/sda']", json!(["/dev/sda"])),
            ("{'a': 1, 'b': [1, 2.5]}", json!({"a": 1, "b": [1, 2.5]})),
            ("(1, 2)", json!([1, 2])),
            ("-3", json!(-3)),
            ("0x1F", json!(31)),
            ("1_000", json!(1000)),
            ("010", json!("010")),
            ("1e3", json!(1000.0)),
            ("'a' \"b\"", json!("ab")),
            ("'tab\\there'", json!("tab\there")),
            ("r'\\d'", json!("\\d")),
            ("yes", json!("yes")),
            ("", json!("")),
            ("1j", json!("1j")),
            ("1.2.3.4", json!("1.2.3.4")),
            ("C:\\Program Files", json!("C:\\Program Files")),
        ] {
            assert_eq!(ini_value(text), want, "{text:?}");
        }
    }
}
