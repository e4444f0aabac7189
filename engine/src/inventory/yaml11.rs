//! YAML as Ansible reads it (PyYAML, YAML 1.1): `on`/`yes` are booleans, `0644` is 420,
//! `1_000` is 1000, `<<: *base` merges, duplicate keys warn and the last wins, `!unsafe` is a
//! plain string and `!vault` is decrypted. Takes text; gives a tree of [`Node`]s that keep
//! their line and column.

use super::vault::VaultKeys;
use serde_json::{Map, Number, Value};
use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub kind: Kind,
    pub line: usize,
    pub col: usize,
    /// Decrypted from a `!vault` value (here or inside).
    pub secret: bool,
    /// The `!vault` envelope this string was decrypted from.
    pub envelope: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Debug)]
pub(crate) struct YamlError {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl Node {
    /// The value as JSON (Ansible's `--list` form).
    pub fn to_json(&self) -> Value {
        match &self.kind {
            Kind::Null => Value::Null,
            Kind::Bool(b) => Value::Bool(*b),
            Kind::Int(i) => Value::Number(Number::from(*i)),
            Kind::Float(f) => Number::from_f64(*f)
                .map(Value::Number)
                .unwrap_or_else(|| Value::String(f.to_string())),
            Kind::Str(s) => Value::String(s.clone()),
            Kind::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            Kind::Map(pairs) => {
                let mut m = Map::new();
                for (k, v) in pairs {
                    m.insert(k.key_text(), v.to_json());
                }
                Value::Object(m)
            }
        }
    }

    /// A mapping key as text (as Python's json writes a non-string key).
    pub fn key_text(&self) -> String {
        match &self.kind {
            Kind::Str(s) => s.clone(),
            Kind::Null => "null".into(),
            Kind::Bool(b) => b.to_string(),
            Kind::Int(i) => i.to_string(),
            Kind::Float(f) => format!("{f:?}"),
            _ => self.to_json().to_string(),
        }
    }

    pub fn is_secret(&self) -> bool {
        self.secret
            || match &self.kind {
                Kind::Seq(items) => items.iter().any(Node::is_secret),
                Kind::Map(pairs) => pairs.iter().any(|(_, v)| v.is_secret()),
                _ => false,
            }
    }

    /// Every (plain text, envelope) of `!vault` values in this node.
    pub fn envelopes(&self, out: &mut Vec<(String, String)>) {
        match &self.kind {
            Kind::Str(s) => {
                if let Some(e) = &self.envelope {
                    out.push((s.clone(), e.clone()));
                }
            }
            Kind::Seq(items) => items.iter().for_each(|n| n.envelopes(out)),
            Kind::Map(pairs) => pairs.iter().for_each(|(_, v)| v.envelopes(out)),
            _ => {}
        }
    }

    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            Kind::Null => "NoneType",
            Kind::Bool(_) => "bool",
            Kind::Int(_) => "int",
            Kind::Float(_) => "float",
            Kind::Str(_) => "str",
            Kind::Seq(_) => "list",
            Kind::Map(_) => "dict",
        }
    }
}

/// Parses the first document of `text`. Warnings (duplicate keys) are pushed to `warnings`.
pub(crate) fn parse(
    text: &str,
    vault: &VaultKeys,
    warnings: &mut Vec<String>,
) -> Result<Option<Node>, YamlError> {
    let mut b = Builder {
        stack: Vec::new(),
        anchors: HashMap::new(),
        doc: None,
        vault,
        error: None,
        warnings,
        done: false,
    };
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut b, false).map_err(|e| YamlError {
        line: e.marker().line(),
        col: e.marker().col() + 1,
        message: e.info().to_string(),
    })?;
    if let Some(e) = b.error {
        return Err(e);
    }
    Ok(b.doc)
}

enum Open {
    Seq(Vec<Node>, usize, Marker),
    Map(Vec<(Node, Node)>, Option<Node>, usize, Marker),
}

struct Builder<'a> {
    stack: Vec<Open>,
    anchors: HashMap<usize, Node>,
    doc: Option<Node>,
    vault: &'a VaultKeys,
    error: Option<YamlError>,
    warnings: &'a mut Vec<String>,
    done: bool,
}

impl Builder<'_> {
    fn node(kind: Kind, mark: Marker) -> Node {
        Node {
            kind,
            line: mark.line(),
            col: mark.col() + 1,
            secret: false,
            envelope: None,
        }
    }

    fn push(&mut self, node: Node) {
        match self.stack.last_mut() {
            None => {
                if self.doc.is_none() {
                    self.doc = Some(node);
                }
            }
            Some(Open::Seq(items, ..)) => items.push(node),
            Some(Open::Map(pairs, key, ..)) => match key.take() {
                None => *key = Some(node),
                Some(k) => {
                    if let Some(i) = pairs.iter().position(|(pk, _)| same_key(pk, &k)) {
                        self.warnings.push(format!(
                            "line {}, column {}: found a duplicate dict key ({}); using the last defined value only",
                            k.line,
                            k.col,
                            k.key_text()
                        ));
                        pairs.remove(i);
                    }
                    pairs.push((k, node));
                }
            },
        }
    }

    fn scalar(
        &self,
        text: String,
        style: TScalarStyle,
        tag: Option<Tag>,
        mark: Marker,
    ) -> Result<Node, YamlError> {
        let tag = tag.map(|t| format!("{}{}", t.handle, t.suffix));
        let kind = match tag.as_deref() {
            Some("!vault") => {
                let plain = self.vault.decrypt(&text).map_err(|m| YamlError {
                    line: mark.line(),
                    col: mark.col() + 1,
                    message: format!("cannot decrypt this !vault value: {m}"),
                })?;
                let mut n = Self::node(Kind::Str(plain), mark);
                n.secret = true;
                n.envelope = Some(text);
                return Ok(n);
            }
            Some("!unsafe" | "!" | "!!str" | "tag:yaml.org,2002:str") => Kind::Str(text),
            _ if style != TScalarStyle::Plain => Kind::Str(text),
            _ => resolve(&text),
        };
        Ok(Self::node(kind, mark))
    }
}

fn same_key(a: &Node, b: &Node) -> bool {
    a.to_json() == b.to_json() && a.kind_name() == b.kind_name()
}

/// YAML 1.1 plain-scalar resolution, as PyYAML's resolver does it.
fn resolve(t: &str) -> Kind {
    match t {
        "" | "~" | "null" | "Null" | "NULL" => return Kind::Null,
        "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return Kind::Bool(true)
        }
        "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Kind::Bool(false)
        }
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Kind::Float(f64::INFINITY)
        }
        "-.inf" | "-.Inf" | "-.INF" => return Kind::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Kind::Float(f64::NAN),
        _ => {}
    }
    let (neg, body) = match t.as_bytes()[0] {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t),
    };
    let sign = |v: i64| if neg { -v } else { v };
    let digits_ok =
        |s: &str, f: fn(char) -> bool| !s.is_empty() && s.chars().all(|c| f(c) || c == '_');
    if let Some(b) = body.strip_prefix("0b") {
        if digits_ok(b, |c| c == '0' || c == '1') {
            if let Ok(v) = i64::from_str_radix(&b.replace('_', ""), 2) {
                return Kind::Int(sign(v));
            }
        }
    } else if let Some(h) = body.strip_prefix("0x") {
        if digits_ok(h, |c| c.is_ascii_hexdigit()) {
            if let Ok(v) = i64::from_str_radix(&h.replace('_', ""), 16) {
                return Kind::Int(sign(v));
            }
        }
    } else if body.len() > 1
        && body.starts_with('0')
        && digits_ok(&body[1..], |c| ('0'..='7').contains(&c))
    {
        if let Ok(v) = i64::from_str_radix(&body[1..].replace('_', ""), 8) {
            return Kind::Int(sign(v));
        }
    } else if body == "0"
        || (body.starts_with(|c: char| ('1'..='9').contains(&c))
            && digits_ok(body, |c| c.is_ascii_digit()))
    {
        if let Ok(v) = body.replace('_', "").parse::<i64>() {
            return Kind::Int(sign(v));
        }
    } else if body.starts_with(|c: char| ('1'..='9').contains(&c))
        && body.contains(':')
        && !body.contains('.')
    {
        // Sexagesimal: 1:30 is 90.
        if let Some(v) = sexagesimal(body) {
            return Kind::Int(sign(v as i64));
        }
    }
    if let Some(f) = float(body) {
        return Kind::Float(if neg { -f } else { f });
    }
    Kind::Str(t.to_string())
}

fn sexagesimal(body: &str) -> Option<f64> {
    let mut parts = body.split(':');
    let first = parts.next()?.replace('_', "");
    if first.is_empty() || !first.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let mut v: f64 = first.parse().ok()?;
    let rest: Vec<&str> = parts.collect();
    for (i, p) in rest.iter().enumerate() {
        let last = i + 1 == rest.len();
        let (int, frac) = match (last, p.split_once('.')) {
            (true, Some((a, b))) => (a, Some(b)),
            _ => (*p, None),
        };
        if int.is_empty() || int.len() > 2 || !int.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let n: u32 = int.parse().ok()?;
        if n > 59 || (int.len() == 2 && int.starts_with(|c: char| c > '5')) {
            return None;
        }
        v = v * 60.0 + f64::from(n);
        if let Some(f) = frac {
            v += format!("0.{}", f.replace('_', "")).parse::<f64>().ok()?;
        }
    }
    Some(v)
}

/// PyYAML's float: digits, a '.', digits, and an exponent with a sign (`1.5e+3`); `1e3`
/// without a dot is a string.
fn float(body: &str) -> Option<f64> {
    let (mant, exp) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let (int, frac) = mant.split_once('.')?;
    let ok_int = int.is_empty()
        || (int.starts_with(|c: char| c.is_ascii_digit())
            && int.chars().all(|c| c.is_ascii_digit() || c == '_'));
    let ok_frac = frac.chars().all(|c| c.is_ascii_digit() || c == '_');
    if !ok_int || !ok_frac || (int.is_empty() && !frac.starts_with(|c: char| c.is_ascii_digit())) {
        return None;
    }
    if let Some(e) = exp {
        let digits = e.strip_prefix(['+', '-'])?;
        if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
    }
    let clean = format!(
        "{}.{}{}",
        if int.is_empty() { "0" } else { int },
        frac,
        exp.map(|e| format!("e{e}")).unwrap_or_default()
    )
    .replace('_', "");
    clean.parse().ok()
}

/// `<<: *base` and `<<: [*a, *b]`: keys of the merged mappings that the mapping does not set
/// itself, earlier merges winning over later ones.
fn merge(pairs: Vec<(Node, Node)>) -> Vec<(Node, Node)> {
    let is_merge = |k: &Node| matches!(&k.kind, Kind::Str(s) if s == "<<");
    if !pairs.iter().any(|(k, _)| is_merge(k)) {
        return pairs;
    }
    let mut merged: Vec<(Node, Node)> = Vec::new();
    let mut own: Vec<(Node, Node)> = Vec::new();
    for (k, v) in pairs {
        if is_merge(&k) {
            let sources = match v.kind {
                Kind::Seq(items) => items,
                _ => vec![v],
            };
            for src in sources {
                if let Kind::Map(sp) = src.kind {
                    for (sk, sv) in sp {
                        if !merged.iter().any(|(mk, _)| same_key(mk, &sk)) {
                            merged.push((sk, sv));
                        }
                    }
                }
            }
        } else {
            own.push((k, v));
        }
    }
    merged.retain(|(mk, _)| !own.iter().any(|(ok, _)| same_key(ok, mk)));
    merged.extend(own);
    merged
}

impl MarkedEventReceiver for Builder<'_> {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() || self.done {
            return;
        }
        match ev {
            Event::DocumentEnd if self.stack.is_empty() && self.doc.is_some() => {
                self.done = true;
            }
            Event::Scalar(text, style, anchor, tag) => match self.scalar(text, style, tag, mark) {
                Ok(n) => {
                    if anchor > 0 {
                        self.anchors.insert(anchor, n.clone());
                    }
                    self.push(n);
                }
                Err(e) => self.error = Some(e),
            },
            Event::Alias(id) => match self.anchors.get(&id).cloned() {
                Some(n) => self.push(n),
                None => {
                    self.error = Some(YamlError {
                        line: mark.line(),
                        col: mark.col() + 1,
                        message: "found undefined alias".into(),
                    })
                }
            },
            Event::SequenceStart(anchor, _) => self.stack.push(Open::Seq(Vec::new(), anchor, mark)),
            Event::MappingStart(anchor, _) => {
                self.stack.push(Open::Map(Vec::new(), None, anchor, mark))
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (kind, anchor, at) = match self.stack.pop() {
                    Some(Open::Seq(items, a, m)) => (Kind::Seq(items), a, m),
                    Some(Open::Map(pairs, _, a, m)) => (Kind::Map(merge(pairs)), a, m),
                    None => return,
                };
                let n = Self::node(kind, at);
                if anchor > 0 {
                    self.anchors.insert(anchor, n.clone());
                }
                self.push(n);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn load(text: &str) -> Value {
        let mut w = Vec::new();
        parse(text, &VaultKeys::default(), &mut w)
            .unwrap()
            .unwrap()
            .to_json()
    }

    #[test]
    fn yaml_1_1_scalars_as_pyyaml_reads_them() {
        let v = load(
            "a: 0644\nb: on\nc: 1_000\nd: '0644'\ne: 1e3\nf: 1.5e+3\ng: 0x1F\nh: 1:30\ni: ~\nj: !unsafe '{{ x }}'\nk: 08\nl: -7\nm: NO\n",
        );
        assert_eq!(
            v,
            json!({"a": 420, "b": true, "c": 1000, "d": "0644", "e": "1e3", "f": 1500.0,
                   "g": 31, "h": 90, "i": null, "j": "{{ x }}", "k": "08", "l": -7, "m": false})
        );
    }

    #[test]
    fn merge_keys_and_duplicates() {
        let mut w = Vec::new();
        let v = parse(
            "base: &b {x: 1, y: 2}\nm:\n  <<: *b\n  y: 3\nd: 1\nd: 2\n",
            &VaultKeys::default(),
            &mut w,
        )
        .unwrap()
        .unwrap()
        .to_json();
        assert_eq!(v["m"], json!({"x": 1, "y": 3}));
        assert_eq!(v["d"], json!(2));
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("line 6, column 1: found a duplicate dict key (d)"),
            "{w:?}"
        );
    }
}
