//! Diagnostics: the document checked by the same producer as `fleetbook check` (tooling/src/check.rs),
//! planned against the project's inventory when it names one, each [`check::Diag`] turned
//! into an LSP diagnostic. One in another file (an imported module, the inventory) is shown
//! on the document too: on its `import` when there is one, else on the first line, with its
//! own file:line:col in the message.

use super::text;
use super::Settings;
use crate::check::{self, Depth, Diag, Subject};
use lsp_types::{
    Diagnostic, DiagnosticRelatedInformation, DiagnosticSeverity, Location, NumberOrString, Range,
    Uri,
};
use std::path::Path;

pub fn check(uri: &Uri, path: &Path, doc: &str, settings: &Settings) -> Vec<Diagnostic> {
    // A test file (`fleetbook test`) is no runbook: its syntax is what can be checked here.
    if path.to_string_lossy().ends_with("_test.rhai") {
        return syntax_only(doc);
    }
    let subject = Subject {
        path,
        text: Some(doc),
        lib_dirs: &settings.lib_dirs,
        libs: &settings.libs,
        params: &settings.params,
        inventory: settings.inventory.as_deref(),
        depth: Depth::Plan,
    };
    let outcome = check::run(&subject);
    let name = path.display().to_string();
    // A library module (no `runbook(...)` in it) returns no runbook, and need not.
    let library = !doc.contains("runbook(");
    check::diagnostics(&subject, &outcome)
        .into_iter()
        .filter(|d| !(library && d.code == "no-runbook"))
        .map(|d| to_lsp(&d, uri, &name, doc, settings))
        .collect()
}

/// Rhai's own syntax errors, at their line and column.
fn syntax_only(doc: &str) -> Vec<Diagnostic> {
    let mut engine = rhai::Engine::new_raw();
    #[allow(deprecated)]
    engine.on_parse_token(|token, _pos, _state| match token {
        rhai::Token::Reserved(s) if &**s == "var" => rhai::Token::Identifier(s),
        other => other,
    });
    let Err(e) = engine.compile(doc) else {
        return Vec::new();
    };
    let p = e.position();
    let line = p.line().unwrap_or(1).saturating_sub(1);
    let mut range = text::line_range(doc, line);
    if let Some(col) = p.position() {
        range.start.character = col.saturating_sub(1) as u32;
    }
    vec![Diagnostic {
        range,
        severity: Some(DiagnosticSeverity::ERROR),
        code: Some(NumberOrString::String("syntax".into())),
        source: Some("fleetbook".into()),
        message: e.0.to_string(),
        ..Diagnostic::default()
    }]
}

fn to_lsp(d: &Diag, uri: &Uri, name: &str, doc: &str, settings: &Settings) -> Diagnostic {
    let mut out = Diagnostic {
        range: text::line_range(doc, 0),
        severity: Some(match d.severity {
            check::Severity::Error => DiagnosticSeverity::ERROR,
            check::Severity::Warning => DiagnosticSeverity::WARNING,
        }),
        code: Some(NumberOrString::String(d.code.to_string())),
        source: Some("fleetbook".into()),
        message: with_help(&d.message, d.help.as_deref()),
        ..Diagnostic::default()
    };
    if d.file == name {
        out.range = span_range(doc, d.span);
        let related: Vec<_> = d
            .related
            .iter()
            .map(|r| DiagnosticRelatedInformation {
                location: Location::new(uri.clone(), span_range(doc, r.span)),
                message: r.message.clone(),
            })
            .collect();
        if !related.is_empty() {
            out.related_information = Some(related);
        }
        return out;
    }
    let at = check::line_col(&d.text, d.span.start);
    out.message = with_help(
        &format!("{}:{}:{}: {}", d.file, at.line, at.col, d.message),
        d.help.as_deref(),
    );
    if let Some(r) = import_of(doc, &d.file) {
        out.range = r;
    } else if settings.inventory.as_deref() == Some(Path::new(&d.file)) {
        // The project's inventory is broken: the runbook may be fine.
        out.severity = Some(DiagnosticSeverity::WARNING);
        out.message = format!("inventory {}", out.message);
    }
    out
}

fn span_range(doc: &str, s: check::Span) -> Range {
    text::range(doc, s.start, s.end.saturating_sub(s.start))
}

/// The range of the `import "path"` whose module is `module` (a file name).
fn import_of(doc: &str, module: &str) -> Option<Range> {
    let stem = Path::new(module).file_stem()?.to_str()?;
    super::symbols::imports(doc)
        .into_iter()
        .find(|i| Path::new(&i.path).file_stem().and_then(|s| s.to_str()) == Some(stem))
        .map(|i| text::range(doc, i.path_offset, i.path.len()))
}

fn with_help(message: &str, help: Option<&str>) -> String {
    match help {
        Some(h) => format!("{message}\nhelp: {h}"),
        None => message.to_string(),
    }
}
