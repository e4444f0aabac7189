//! Diagnostics: the document compiled as `fleetbook check` compiles a runbook (and, when the
//! project names an inventory, planned against it as `fleetbook plan` does), its errors and
//! warnings turned into LSP diagnostics at the ranges the engine's labels give.

use super::text;
use super::Settings;
use fleetbook_engine::error::SourceDiag;
use fleetbook_engine::script::{self, Limits, ScriptInput};
use fleetbook_engine::{compile, plan, Error};
use lsp_types::{
    Diagnostic, DiagnosticRelatedInformation, DiagnosticSeverity, Location, Range, Uri,
};
use std::path::Path;

pub fn check(uri: &Uri, path: &Path, doc: &str, settings: &Settings) -> Vec<Diagnostic> {
    let name = path.display().to_string();
    let at = Place {
        uri,
        name: &name,
        doc,
    };
    let compiled = script::compile(ScriptInput {
        name: &name,
        text: doc,
        dir: path.parent(),
        lib_dirs: &settings.lib_dirs,
        libs: &settings.libs,
        params: &settings.params,
        limits: Limits::default(),
    });
    let script = match compiled {
        Ok(s) => s,
        Err(e) => return vec![at.error(e)],
    };
    let warnings = match &settings.inventory {
        None => compile::validate(&script),
        Some(inv_path) => match fleetbook_engine::inventory::Inventory::load(inv_path) {
            Err(e) => {
                let mut d = at.error(e);
                d.severity = Some(DiagnosticSeverity::WARNING);
                d.message = format!("inventory {}: {}", inv_path.display(), d.message);
                return vec![d];
            }
            Ok(inv) => plan::plan_loaded(script, String::new(), &inv, String::new(), None)
                .map(|p| p.plan.warnings),
        },
    };
    match warnings {
        Err(e) => vec![at.error(e)],
        Ok(ws) => {
            let mut seen = Vec::new();
            ws.into_iter()
                .filter(|w| {
                    let new = !seen.contains(w);
                    seen.push(w.clone());
                    new
                })
                .map(|w| Diagnostic {
                    range: text::line_range(doc, 0),
                    severity: Some(DiagnosticSeverity::WARNING),
                    source: Some("fleetbook".into()),
                    message: w,
                    ..Diagnostic::default()
                })
                .collect()
        }
    }
}

/// The document a diagnostic is about.
struct Place<'a> {
    uri: &'a Uri,
    /// Its name in the engine's messages.
    name: &'a str,
    doc: &'a str,
}

impl Place<'_> {
    fn error(&self, e: Error) -> Diagnostic {
        let mut d = Diagnostic {
            range: text::line_range(self.doc, 0),
            severity: Some(DiagnosticSeverity::ERROR),
            source: Some("fleetbook".into()),
            ..Diagnostic::default()
        };
        match e {
            Error::Source(s) if s.src.name() == self.name => {
                d.message = with_help(&s.message, s.help.as_deref());
                let mut labels = s.labels.iter();
                if let Some(first) = labels.next() {
                    d.range = text::range(self.doc, first.offset(), first.len());
                }
                let related: Vec<_> = labels
                    .map(|l| DiagnosticRelatedInformation {
                        location: Location::new(
                            self.uri.clone(),
                            text::range(self.doc, l.offset(), l.len()),
                        ),
                        message: l.label().unwrap_or("here").to_string(),
                    })
                    .collect();
                if !related.is_empty() {
                    d.related_information = Some(related);
                }
            }
            Error::Source(s) => {
                // In an imported module: shown on the import, with the module's place.
                d.range = self.import_of(s.src.name()).unwrap_or(d.range);
                d.message = with_help(
                    &format!("{}: {}", where_in(&s), s.message),
                    s.help.as_deref(),
                );
            }
            Error::Input { message, help } => d.message = with_help(&message, help.as_deref()),
            other => d.message = other.to_string(),
        }
        d
    }

    /// The range of the `import "path"` whose module is `module` (a file name).
    fn import_of(&self, module: &str) -> Option<Range> {
        let stem = Path::new(module).file_stem()?.to_str()?;
        super::symbols::imports(self.doc)
            .into_iter()
            .find(|i| Path::new(&i.path).file_stem().and_then(|s| s.to_str()) == Some(stem))
            .map(|i| text::range(self.doc, i.path_offset, i.path.len()))
    }
}

fn where_in(s: &SourceDiag) -> String {
    let name = s.src.name();
    match s.labels.first() {
        Some(l) => {
            let p = text::position(s.src.inner(), l.offset());
            format!("{name}:{}:{}", p.line + 1, p.character + 1)
        }
        None => name.to_string(),
    }
}

fn with_help(message: &str, help: Option<&str>) -> String {
    match help {
        Some(h) => format!("{message}\nhelp: {h}"),
        None => message.to_string(),
    }
}
