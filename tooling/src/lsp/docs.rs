//! What hover and completion know about fleetbook's own functions: read from the language
//! reference (docs/runbook-language.md, whose tables a test in the engine keeps complete for
//! every registered function) and from the `///` comments of the built-in libraries. Built
//! into the binary, so the server says what the reference says.

use std::sync::OnceLock;

const REFERENCE: &str = include_str!("../../../docs/runbook-language.md");

/// Who a documented name belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// A plain function: `runbook(name)`, `param(...)`, `host(name)`.
    Global,
    /// A method of the runbook or of a step: `.order([...])`, `.timeout("15m")`.
    Runbook,
    /// A member of the host object: `h.run(cmd)`, `h.name`.
    Host,
    /// A namespaced function: `pkg::upgrade(h, [names])`.
    Namespace(String),
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub owner: Owner,
    pub name: String,
    /// Every form the reference shows (`pkg::install(h, name)`, `pkg::install(h, name, version)`).
    pub signatures: Vec<String>,
    pub doc: String,
}

impl Entry {
    pub fn markdown(&self) -> String {
        format!(
            "```rhai\n{}\n```\n\n{}",
            self.signatures.join("\n"),
            self.doc
        )
    }
}

pub fn all() -> &'static [Entry] {
    static ALL: OnceLock<Vec<Entry>> = OnceLock::new();
    ALL.get_or_init(|| {
        let mut entries = Vec::new();
        parse_reference(REFERENCE, &mut entries);
        parse_prose(REFERENCE, &mut entries);
        for (lib, text) in fleetbook_stdlib::LIBRARIES {
            for f in fleetbook_engine::libdoc::exported(text) {
                add(
                    &mut entries,
                    Owner::Namespace(lib.to_string()),
                    &f.name,
                    format!("{lib}::{}", f.signature),
                    &f.doc,
                );
            }
        }
        entries
    })
}

pub fn find(owner: &Owner, name: &str) -> Option<&'static Entry> {
    all().iter().find(|e| &e.owner == owner && e.name == name)
}

pub fn of(owner: &Owner) -> impl Iterator<Item = &'static Entry> + '_ {
    all().iter().filter(move |e| &e.owner == owner)
}

/// The namespaces with documented functions (`pkg`, `service`, ..., `rolling`, `checks`).
pub fn namespaces() -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for e in all() {
        if let Owner::Namespace(ns) = &e.owner {
            if !out.contains(ns) {
                out.push(ns.clone());
            }
        }
    }
    out
}

fn add(entries: &mut Vec<Entry>, owner: Owner, name: &str, signature: String, doc: &str) {
    if let Some(e) = entries
        .iter_mut()
        .find(|e| e.owner == owner && e.name == name)
    {
        if !e.signatures.contains(&signature) {
            e.signatures.push(signature);
        }
        return;
    }
    entries.push(Entry {
        owner,
        name: name.to_string(),
        signatures: vec![signature],
        doc: doc.to_string(),
    });
}

/// The code spans of a piece of markdown (`` `a` ``), with `\|` unescaped.
fn code_spans(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(|s| s.replace("\\|", "|"))
        .collect()
}

/// Who a code span like `h.run(cmd)`, `.order([r1])` or `pkg::upgrade(h, [names])` names.
fn classify(code: &str) -> Option<(Owner, String)> {
    let head = code.split('(').next()?.trim();
    let (owner, name) = if let Some(m) = head.strip_prefix("h.") {
        (Owner::Host, m)
    } else if let Some(m) = head.strip_prefix("rb.") {
        (Owner::Runbook, m)
    } else if let Some(m) = head.strip_prefix('.') {
        (Owner::Runbook, m)
    } else if let Some((ns, f)) = head.split_once("::") {
        (Owner::Namespace(ns.to_string()), f)
    } else {
        (Owner::Global, head)
    };
    let ok = !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_');
    ok.then(|| (owner, name.to_string()))
}

fn parse_reference(text: &str, entries: &mut Vec<Entry>) {
    for line in text.lines() {
        // Table rows: | `call`, `call` | meaning |
        if let Some(row) = line.strip_prefix("| `") {
            let row = format!("`{row}");
            let cells = split_row(&row);
            let [first, meaning, ..] = cells.as_slice() else {
                continue;
            };
            let doc = meaning.replace("\\|", "|");
            for code in code_spans(first) {
                if let Some((owner, name)) = classify(&code) {
                    add(entries, owner, &name, code.clone(), &doc);
                }
            }
            // `h.has_var(name)` is documented inside `h.var`'s row.
            for code in code_spans(meaning) {
                if let Some((Owner::Host, name)) = classify(&code) {
                    if code.starts_with("h.")
                        && !entries
                            .iter()
                            .any(|e| e.owner == Owner::Host && e.name == name)
                    {
                        add(entries, Owner::Host, &name, code.clone(), &doc);
                    }
                }
            }
        } else if let Some(item) = line.strip_prefix("- `") {
            // Library lists: - `rolling::upgrade_to(h, [names], version)`: what it does.
            let item = format!("`{item}");
            if let Some((calls, doc)) = item.split_once("`: ") {
                for code in code_spans(&format!("{calls}`")) {
                    if let Some((owner @ Owner::Namespace(_), name)) = classify(&code) {
                        add(entries, owner, &name, code.clone(), doc);
                    }
                }
            }
        }
    }
}

/// Calls the reference documents in prose (`.step(name, |h| ...)`, `host(name)`): the line
/// that shows one is its doc, unless a table or list documented it.
fn parse_prose(text: &str, entries: &mut Vec<Entry>) {
    for line in text.lines() {
        if line.starts_with("| `") || line.starts_with("```") {
            continue;
        }
        let doc = line.trim_start_matches(['-', '|', ' ']).replace("\\|", "|");
        for code in code_spans(line) {
            if !code.ends_with(')') {
                continue;
            }
            if let Some((owner, name)) = classify(&code) {
                if !entries.iter().any(|e| e.owner == owner && e.name == name) {
                    add(entries, owner, &name, code.clone(), &doc);
                }
            }
        }
    }
}

/// The cells of a markdown table row, split on `|` but not on `\|`.
fn split_row(row: &str) -> Vec<String> {
    let mut cells = Vec::new();
    let mut cur = String::new();
    let mut chars = row.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                cur.push_str("\\|");
                chars.next();
            }
            '|' => cells.push(std::mem::take(&mut cur).trim().to_string()),
            _ => cur.push(c),
        }
    }
    cells
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_documents_host_operations_and_the_api() {
        let up = find(&Owner::Namespace("pkg".into()), "upgrade").unwrap();
        assert_eq!(up.signatures, ["pkg::upgrade(h, [names])"]);
        assert!(up.doc.contains("--only-upgrade"), "{}", up.doc);
        let install = find(&Owner::Namespace("pkg".into()), "install").unwrap();
        assert_eq!(install.signatures.len(), 2);
        assert!(find(&Owner::Host, "run").is_some());
        assert!(find(&Owner::Host, "has_var").is_some());
        assert!(find(&Owner::Runbook, "order").is_some());
        assert!(find(&Owner::Runbook, "timeout").is_some());
        assert!(find(&Owner::Global, "runbook").is_some());
        assert!(find(&Owner::Global, "hosts").is_some());
        assert!(find(&Owner::Runbook, "step").is_some());
        assert!(find(&Owner::Runbook, "become").is_some());
        assert!(find(&Owner::Namespace("service".into()), "stop").is_some());
        assert!(find(&Owner::Namespace("sh".into()), "quote").is_some());
        let upgrade_to = find(&Owner::Namespace("rolling".into()), "upgrade_to").unwrap();
        assert!(upgrade_to.doc.contains("version"), "{}", upgrade_to.doc);
        let count = find(&Owner::Namespace("checks".into()), "count").unwrap();
        assert!(count.doc.contains("fail"), "{}", count.doc);
        // The stdlib patterns hover too; a library's private helpers do not.
        let around = find(&Owner::Namespace("rolling".into()), "puppet_off_around").unwrap();
        assert!(around.doc.contains("puppet off around"), "{}", around.doc);
        assert!(find(&Owner::Namespace("versions".into()), "verify_package").is_some());
        assert!(find(&Owner::Namespace("rolling".into()), "hosts_of").is_none());
    }

    #[test]
    fn every_namespace_is_known() {
        let ns = namespaces();
        for n in [
            "pkg", "service", "puppet", "file", "http", "sh", "rolling", "checks",
        ] {
            assert!(ns.iter().any(|x| x == n), "{n} missing from {ns:?}");
        }
    }
}
