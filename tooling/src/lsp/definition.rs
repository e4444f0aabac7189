//! Go to definition: a function the runbook defines, a function of an imported module
//! (a file beside the runbook, in a library directory, or a built-in library), and the
//! module an `import` names.

use super::symbols;
use super::{text, Document, Settings};
use lsp_types::{Location, Position, Range};

pub fn location(doc: &Document, settings: &Settings, offset: usize) -> Option<Location> {
    for i in symbols::imports(&doc.text) {
        if (i.path_offset..=i.path_offset + i.path.len()).contains(&offset) {
            let file = doc.module(settings, &i.path)?.file()?;
            let start = Range::new(Position::new(0, 0), Position::new(0, 0));
            return Some(Location::new(text::uri_of(&file)?, start));
        }
    }
    let (_, tok) = text::token_at(&doc.text, offset)?;
    if let Some((ns, name)) = tok.rsplit_once("::") {
        let import = symbols::imports(&doc.text)
            .into_iter()
            .find(|i| i.alias == ns)?;
        let module = doc.module(settings, &import.path)?;
        let module_text = module.text()?;
        let f = symbols::functions(&module_text)
            .into_iter()
            .find(|f| f.name == name)?;
        let file = module.file()?;
        return Some(Location::new(
            text::uri_of(&file)?,
            text::range(&module_text, f.offset, f.name.len()),
        ));
    }
    let f = symbols::functions(&doc.text)
        .into_iter()
        .find(|f| f.name == tok)?;
    Some(Location::new(
        doc.uri.clone(),
        text::range(&doc.text, f.offset, f.name.len()),
    ))
}
