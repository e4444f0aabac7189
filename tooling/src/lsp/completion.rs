//! Completion: after `h.` the host object, after `rb.` (or a step's `)` ) the runbook and
//! step methods, after `ns::` a namespace's functions (an imported module's too), inside the
//! strings of `rb.order([...])`, `rb.limit("...")` and the like the inventory's groups, and
//! elsewhere the global functions, namespaces, import aliases and the script's functions.

use super::docs::{self, Entry, Owner};
use super::symbols;
use super::{text, Document, Settings};
use lsp_types::{CompletionItem, CompletionItemKind, Documentation, MarkupContent, MarkupKind};

/// Calls whose string arguments are roles.
const ROLE_CALLS: &[&str] = &[
    "order",
    "after",
    "limit",
    "max_failures",
    "canary",
    "roles",
    "before_role",
    "after_role",
    "gate_after",
    "approval",
    "hosts",
];

pub fn items(doc: &Document, settings: &Settings, offset: usize) -> Vec<CompletionItem> {
    let t = &doc.text;
    let offset = offset.min(t.len());
    if let Some(call) = role_call(t, offset) {
        if ROLE_CALLS.contains(&call) {
            return settings
                .roles()
                .into_iter()
                .map(|r| CompletionItem {
                    label: r,
                    kind: Some(CompletionItemKind::ENUM_MEMBER),
                    detail: Some("role (inventory group)".into()),
                    ..CompletionItem::default()
                })
                .collect();
        }
        return Vec::new();
    }
    let start = t[..offset]
        .char_indices()
        .rev()
        .take_while(|&(_, c)| c.is_alphanumeric() || c == '_')
        .last()
        .map_or(offset, |(i, _)| i);
    let before = &t[..start];
    if let Some(path) = before.strip_suffix("::") {
        let Some((_, ns)) = text::ident_before(path, path.len()) else {
            return Vec::new();
        };
        if let Some(fns) = doc.module_functions(settings, ns) {
            return fns.iter().map(script_item).collect();
        }
        return docs::of(&Owner::Namespace(ns.to_string()))
            .map(entry_item)
            .collect();
    }
    if let Some(dot) = before.trim_end().strip_suffix('.') {
        let receiver = text::ident_before(dot, dot.len()).map(|(_, r)| r);
        let chained = dot.trim_end().ends_with(')');
        let owners: &[Owner] = match receiver {
            Some("h") => &[Owner::Host],
            Some("rb") => &[Owner::Runbook],
            _ if chained => &[Owner::Runbook],
            _ => &[Owner::Host, Owner::Runbook],
        };
        return owners
            .iter()
            .flat_map(|o| docs::of(o).map(entry_item))
            .collect();
    }
    let mut items: Vec<CompletionItem> = docs::of(&Owner::Global).map(entry_item).collect();
    let imports = symbols::imports(t);
    for ns in docs::namespaces() {
        if !imports.iter().any(|i| i.alias == ns) && !is_library(&ns) {
            items.push(module_item(ns, "host operations"));
        }
    }
    for i in imports {
        items.push(module_item(i.alias, &format!("import \"{}\"", i.path)));
    }
    items.extend(symbols::functions(t).iter().map(script_item));
    items
}

fn is_library(ns: &str) -> bool {
    fleetbook_stdlib::LIBRARIES.iter().any(|(n, _)| *n == ns)
}

/// The name of the call whose string argument the cursor is in, if it is in one.
fn role_call(t: &str, offset: usize) -> Option<&str> {
    let before = &t[..offset];
    let mut depth = 0usize;
    let mut quotes = 0;
    for (i, c) in before.char_indices().rev() {
        match c {
            '"' => quotes += 1,
            ')' | ']' => depth += 1,
            '[' if depth > 0 => depth -= 1,
            '(' if depth > 0 => depth -= 1,
            '(' => {
                return if quotes % 2 == 1 {
                    text::ident_before(before, i).map(|(_, name)| name)
                } else {
                    None
                };
            }
            ';' | '{' | '}' => return None,
            _ => {}
        }
    }
    None
}

fn markdown(value: String) -> Documentation {
    Documentation::MarkupContent(MarkupContent {
        kind: MarkupKind::Markdown,
        value,
    })
}

fn entry_item(e: &Entry) -> CompletionItem {
    let property = !e.signatures.iter().any(|s| s.contains('('));
    CompletionItem {
        label: e.name.clone(),
        kind: Some(match (&e.owner, property) {
            (_, true) => CompletionItemKind::FIELD,
            (Owner::Host | Owner::Runbook, false) => CompletionItemKind::METHOD,
            _ => CompletionItemKind::FUNCTION,
        }),
        detail: e.signatures.first().cloned(),
        documentation: Some(markdown(e.doc.clone())),
        ..CompletionItem::default()
    }
}

fn script_item(f: &symbols::Function) -> CompletionItem {
    CompletionItem {
        label: f.name.clone(),
        kind: Some(CompletionItemKind::FUNCTION),
        detail: Some(format!("fn {}", f.signature)),
        documentation: (!f.doc.is_empty()).then(|| markdown(f.doc.clone())),
        ..CompletionItem::default()
    }
}

fn module_item(name: String, detail: &str) -> CompletionItem {
    CompletionItem {
        label: name,
        kind: Some(CompletionItemKind::MODULE),
        detail: Some(detail.to_string()),
        ..CompletionItem::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_calls_are_seen_inside_their_strings() {
        let t = "rb.order([\"controller\", \"co";
        assert_eq!(role_call(t, t.len()), Some("order"));
        let t = "rb.limit(\"";
        assert_eq!(role_call(t, t.len()), Some("limit"));
        let t = "rb.limit(\"web\", ";
        assert_eq!(role_call(t, t.len()), None);
        let t = "h.run(\"x\"); pkg::";
        assert_eq!(role_call(t, t.len()), None);
    }
}
