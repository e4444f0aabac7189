//! The one place that knows secret values. Everything that leaves the engine as text — the
//! plan in every format, saved plans, events, the journal, errors, status — goes through
//! [`Secrets::redact`], which replaces each known value by `<secret:NAME>`.
//!
//! Secrets come from: `secret_param(...)` values; inventory variables named like credentials
//! ([`is_secret_name`]); variables a runbook marks with `rb.secret_vars([...])` or an
//! inventory marks with `fleetbook_secret_vars`; and, since redaction works on values, any
//! fact set from one of those.

use std::borrow::Cow;
use std::sync::{Arc, RwLock};

/// The variable an inventory sets (in any group or host) to mark more variables as secret:
/// a comma-separated list of names, or a YAML list.
pub const INVENTORY_MARKER: &str = "fleetbook_secret_vars";

/// The shortest value redacted, in characters.
pub const MIN_LEN: usize = 4;

/// Secret values, shared by every clone. Values are kept longest first, so that a secret
/// that contains another is replaced whole.
#[derive(Clone, Default)]
pub struct Secrets {
    values: Arc<RwLock<Vec<(String, String)>>>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the values themselves.
        write!(f, "Secrets({} values)", self.len())
    }
}

/// Whether a variable's name says it holds a credential: Ansible's connection and become
/// passwords, and anything named like a password, secret, token or private key (but not a
/// path to a key file).
pub fn is_secret_name(name: &str) -> bool {
    let n = name.as_bytes();
    let ends = |suffix: &str| {
        n.len() >= suffix.len()
            && n[n.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
    };
    if ends("_file") || ends("_path") || name.eq_ignore_ascii_case(INVENTORY_MARKER) {
        return false;
    }
    // Every host's variables are checked while planning: no lowercase copy of each name.
    [
        "pass",
        "secret",
        "token",
        "credential",
        "private_key",
        "api_key",
        "apikey",
    ]
    .iter()
    .any(|w| {
        n.windows(w.len())
            .any(|part| part.eq_ignore_ascii_case(w.as_bytes()))
    })
}

impl Secrets {
    pub fn new() -> Secrets {
        Secrets::default()
    }

    /// Adds a secret value under a name (the name is what redacted text shows), with the
    /// forms it takes inside a command: single-quoted by `sh::quote` (`'` as `'\''`) and
    /// escaped in double quotes. Values shorter than [`MIN_LEN`] are not redacted: replacing
    /// every `s` of every command would make outputs unreadable and show the value anyway.
    pub fn add(&self, name: &str, value: &str) {
        if value.chars().count() < MIN_LEN {
            return;
        }
        let mut v = self.values.write().unwrap_or_else(|e| e.into_inner());
        let forms = [
            value.to_string(),
            value.replace('\'', "'\\''"),
            value
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('$', "\\$")
                .replace('`', "\\`"),
        ];
        for form in forms {
            if !v.iter().any(|(_, known)| *known == form) {
                v.push((name.to_string(), form));
            }
        }
        v.sort_by_key(|b| std::cmp::Reverse(b.1.len()));
    }

    pub fn len(&self) -> usize {
        self.values.read().map(|v| v.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The text with every secret value replaced by `<secret:NAME>`.
    pub fn redact<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let values = self.values.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Cow<'t, str> = Cow::Borrowed(text);
        for (name, value) in values.iter() {
            if out.contains(value.as_str()) {
                out = Cow::Owned(out.replace(value.as_str(), &format!("<secret:{name}>")));
            }
        }
        out
    }

    /// [`redact`](Self::redact) into an owned string.
    pub fn redacted(&self, text: &str) -> String {
        self.redact(text).into_owned()
    }

    /// The text with every secret value overwritten by `*` of the same byte length, for
    /// quoted sources where positions must not move.
    pub fn mask(&self, text: &str) -> String {
        let values = self.values.read().unwrap_or_else(|e| e.into_inner());
        let mut out = text.to_string();
        for (_, value) in values.iter() {
            if out.contains(value.as_str()) {
                out = out.replace(value.as_str(), &"*".repeat(value.len()));
            }
        }
        out
    }

    /// Undoes [`redact`](Self::redact): a fact recorded as `<secret:NAME>` gets its value
    /// back on resume (a resumed run has the same secrets, or it is refused). None when a
    /// marker names a secret this run does not know (a fact named like a credential, learned
    /// on a host: it is never kept in clear).
    pub fn reveal(&self, text: &str) -> Option<String> {
        let values = self.values.read().unwrap_or_else(|e| e.into_inner());
        let mut out = text.to_string();
        // A name's plain value is the shortest of its forms: shortest first, first per name.
        let mut seen: Vec<&str> = Vec::new();
        for (name, value) in values.iter().rev() {
            if seen.contains(&name.as_str()) {
                continue;
            }
            seen.push(name);
            let marker = format!("<secret:{name}>");
            if out.contains(&marker) {
                out = out.replace(&marker, value);
            }
        }
        (!out.contains("<secret:")).then_some(out)
    }

    /// Whether a fact or variable with this name holds a secret: named like a credential,
    /// or already known under that name.
    pub fn is_secret(&self, name: &str) -> bool {
        is_secret_name(name)
            || self
                .values
                .read()
                .map(|v| v.iter().any(|(n, _)| n == name))
                .unwrap_or(false)
    }

    /// Adds every variable of a host that is secret: named like a credential, or marked by
    /// the runbook (`marked`) or by the inventory ([`INVENTORY_MARKER`]).
    pub fn add_vars<'v>(
        &self,
        vars: impl IntoIterator<Item = (&'v String, &'v String)> + Clone,
        marked: &[String],
    ) {
        for (k, v) in secret_vars(vars, marked) {
            self.add(k, v);
        }
    }

    /// [`add_vars`](Self::add_vars) for a host whose variables also have their types
    /// (`values`): a secret list or map has every string, number and bool inside it secret
    /// too, since a runbook can take one part (`h.var("db").password`) and show it.
    pub fn add_typed_vars<'v>(
        &self,
        vars: impl IntoIterator<Item = (&'v String, &'v String)> + Clone,
        values: &crate::shared::NameMap<String, serde_json::Value>,
        marked: &[String],
    ) {
        for (k, v) in secret_vars(vars, marked) {
            self.add(k, v);
            if let Some(value) = values.get(k) {
                self.add_parts(k, value);
            }
        }
    }

    fn add_parts(&self, name: &str, value: &serde_json::Value) {
        use serde_json::Value;
        match value {
            Value::Array(items) => items.iter().for_each(|v| self.add_parts(name, v)),
            Value::Object(map) => map.values().for_each(|v| self.add_parts(name, v)),
            Value::Null => {}
            Value::String(s) => self.add(name, s),
            leaf => self.add(name, &leaf.to_string()),
        }
    }
}

/// The variables of a host that are secret: named like a credential, or marked by the
/// runbook (`marked`) or by the inventory ([`INVENTORY_MARKER`]).
fn secret_vars<'v, 'm>(
    vars: impl IntoIterator<Item = (&'v String, &'v String)> + Clone + 'm,
    marked: &'m [String],
) -> impl Iterator<Item = (&'v String, &'v String)> + 'm {
    let from_inventory: Vec<String> = vars
        .clone()
        .into_iter()
        .find(|(k, _)| k.as_str() == INVENTORY_MARKER)
        .map(|(_, v)| marker_names(v))
        .unwrap_or_default();
    vars.into_iter()
        .filter(move |(k, _)| is_secret_name(k) || marked.contains(k) || from_inventory.contains(k))
}

/// The names in a `fleetbook_secret_vars` value: `a,b`, `a b` or a JSON/YAML list.
fn marker_names(value: &str) -> Vec<String> {
    value
        .split(|c: char| c == ',' || c.is_whitespace() || "[]\"'".contains(c))
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_value_wins_and_reveal_undoes_redact() {
        let s = Secrets::new();
        s.add("short", "abcd");
        s.add("long", "abcdefg");
        s.add("tiny", "s");
        let r = s.redacted("x abcdefg y abcd s");
        assert_eq!(r, "x <secret:long> y <secret:short> s");
        assert_eq!(s.reveal(&r).as_deref(), Some("x abcdefg y abcd s"));
        assert_eq!(s.reveal("<secret:other>"), None);
        assert_eq!(format!("{s:?}"), "Secrets(2 values)");
    }

    #[test]
    fn quoted_forms_are_redacted_too() {
        let s = Secrets::new();
        s.add("tok", "it's-\"Pa$$\"");
        let quoted = "echo 'it'\\''s-\"Pa$$\"'; echo \"it's-\\\"Pa\\$\\$\\\"\"";
        assert_eq!(
            s.redacted(quoted),
            "echo '<secret:tok>'; echo \"<secret:tok>\""
        );
        assert_eq!(s.reveal("<secret:tok>").as_deref(), Some("it's-\"Pa$$\""));
    }

    #[test]
    fn credential_names_and_markers() {
        assert!(is_secret_name("ansible_become_password"));
        assert!(is_secret_name("ansible_ssh_pass"));
        assert!(is_secret_name("vault_token"));
        assert!(is_secret_name("db_private_key"));
        assert!(!is_secret_name("ansible_ssh_private_key_file"));
        assert!(!is_secret_name("replication_group"));
        assert!(!is_secret_name(INVENTORY_MARKER));
        // Any case, as when the names were lowercased first.
        assert!(is_secret_name("DB_PassWord"));
        assert!(is_secret_name("GITHUB_TOKEN"));
        assert!(!is_secret_name("SSH_PRIVATE_KEY_FILE"));
        assert!(!is_secret_name("Cert_Path"));
        assert!(!is_secret_name(&INVENTORY_MARKER.to_uppercase()));
        assert!(!is_secret_name("pas"));
        let s = Secrets::new();
        let vars: Vec<(String, String)> = vec![
            (INVENTORY_MARKER.into(), "[\"api_key\", 'other']".into()),
            ("api_key".into(), "k-123".into()),
            ("db".into(), "plain".into()),
            ("mine".into(), "m-456".into()),
        ];
        s.add_vars(vars.iter().map(|(k, v)| (k, v)), &["mine".to_string()]);
        assert_eq!(
            s.redacted("k-123 plain m-456"),
            "<secret:api_key> plain <secret:mine>"
        );
    }

    // Issue 17: a runbook reads a secret map's part (`h.var("db_creds").password`), which
    // the map's JSON text alone did not redact.
    #[test]
    fn every_part_of_a_secret_list_or_map_is_secret() {
        let values: crate::shared::NameMap<String, serde_json::Value> = [
            (
                "db_creds".to_string(),
                serde_json::json!({"user": "admin-42", "password": "pw-9876", "port": 54321}),
            ),
            (
                "tokens".to_string(),
                serde_json::json!(["tok-aaaa", "tok-bbbb"]),
            ),
            ("hosts".to_string(), serde_json::json!(["web-1111"])),
        ]
        .into_iter()
        .collect();
        let vars: crate::shared::NameMap<String, String> = values
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect();
        let s = Secrets::new();
        s.add_typed_vars(&vars, &values, &["db_creds".to_string()]);
        assert_eq!(
            s.redacted("admin-42 pw-9876 54321 tok-bbbb web-1111"),
            "<secret:db_creds> <secret:db_creds> <secret:db_creds> <secret:tokens> web-1111"
        );
    }
}
