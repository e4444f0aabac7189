//! Hover: the signature and doc of the function under the cursor: fleetbook's own (host
//! operations, the runbook API, the host object, the built-in libraries) or one the runbook
//! or an imported module defines.

use super::docs::{self, Owner};
use super::symbols;
use super::{text, Document, Settings};

pub fn markdown(doc: &Document, settings: &Settings, offset: usize) -> Option<String> {
    let (start, tok) = text::token_at(&doc.text, offset)?;
    if let Some((ns, name)) = tok.rsplit_once("::") {
        if let Some(f) = doc.imported(settings, ns, name) {
            return Some(script_fn(ns, &f));
        }
        return docs::find(&Owner::Namespace(ns.to_string()), name).map(docs::Entry::markdown);
    }
    let before = doc.text[..start].trim_end();
    if let Some(dot) = before.strip_suffix('.') {
        let receiver = text::ident_before(dot, dot.len()).map(|(_, r)| r);
        let order = if receiver == Some("h") {
            [Owner::Host, Owner::Runbook]
        } else {
            [Owner::Runbook, Owner::Host]
        };
        return order
            .iter()
            .find_map(|o| docs::find(o, tok))
            .map(docs::Entry::markdown);
    }
    if let Some(f) = symbols::functions(&doc.text)
        .into_iter()
        .find(|f| f.name == tok)
    {
        return Some(script_fn("", &f));
    }
    docs::find(&Owner::Global, tok).map(docs::Entry::markdown)
}

fn script_fn(ns: &str, f: &symbols::Function) -> String {
    let path = if ns.is_empty() {
        String::new()
    } else {
        format!("{ns}::")
    };
    format!("```rhai\nfn {path}{}\n```\n\n{}", f.signature, f.doc)
}
