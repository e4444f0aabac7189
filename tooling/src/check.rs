//! What is wrong with a runbook, for `fleetbook check` and the language server alike: the
//! runbook compiled as `check` compiles it (and, with an inventory, compiled or planned
//! against it), its error and warnings turned into [`Diag`]s at the places the engine's
//! labels give. `check` prints them (text or `--format json`); the language server
//! publishes them. One producer, so an editor and CI never disagree.

use fleetbook_engine::error::{offset_of, SourceDiag};
use fleetbook_engine::inventory::Inventory;
use fleetbook_engine::libs::Libraries;
use fleetbook_engine::script::{self, Limits, Script, ScriptInput};
use fleetbook_engine::{compile, plan, Error};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One runbook to check and what surrounds it.
pub struct Subject<'a> {
    pub path: &'a Path,
    /// The text as an editor holds it; `None` reads the file.
    pub text: Option<&'a str>,
    pub lib_dirs: &'a [PathBuf],
    /// The project's libraries, as locked.
    pub libs: &'a Libraries,
    pub params: &'a BTreeMap<String, String>,
    pub inventory: Option<&'a Path>,
    pub depth: Depth,
}

/// How far to go with an inventory.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// Roles and limits against the inventory, as `fleetbook check -i` does.
    Compile,
    /// A dry run as well, as `fleetbook plan` does: predicates and plan-time errors show.
    Plan,
}

/// The stage that failed: a diagnostic without a place of its own is put on that stage's file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Read,
    Script,
    Inventory,
}

/// A runbook that compiled, with its warnings.
pub struct Compiled {
    /// The compiled script (given to the planner, and so gone, at [`Depth::Plan`]).
    pub script: Option<Script>,
    pub warnings: Vec<String>,
    /// Calls nothing defines (warnings with a place).
    pub unknown_calls: Vec<crate::calls::Unknown>,
}

/// A runbook that did not.
pub struct Failed {
    pub error: Error,
    pub stage: Stage,
}

/// Compiles (and maybe plans) the subject, stopping at the first error as the engine does.
pub fn run(s: &Subject) -> Result<Compiled, Failed> {
    let fail = |stage| move |error| Failed { error, stage };
    let name = s.path.display().to_string();
    let text = match s.text {
        Some(t) => t.to_string(),
        None => fleetbook_engine::error::read_file(s.path).map_err(fail(Stage::Read))?,
    };
    let dir = fleetbook_engine::plan::script_dir(s.path);
    let script = script::compile(ScriptInput {
        name: &name,
        text: &text,
        dir,
        lib_dirs: s.lib_dirs,
        libs: s.libs,
        params: s.params,
        limits: Limits::default(),
    })
    .map_err(fail(Stage::Script))?;
    let unknown_calls = crate::calls::unknown(&script);
    let mut warnings = compile::validate(&script).map_err(fail(Stage::Script))?;
    let Some(inv_path) = s.inventory else {
        return Ok(Compiled {
            script: Some(script),
            warnings,
            unknown_calls,
        });
    };
    let inv = Inventory::load(inv_path).map_err(fail(Stage::Inventory))?;
    match s.depth {
        Depth::Compile => {
            let graph = compile::compile(&script, &inv, None).map_err(fail(Stage::Script))?;
            warnings.extend(graph.warnings);
            Ok(Compiled {
                script: Some(script),
                warnings,
                unknown_calls,
            })
        }
        Depth::Plan => {
            // The planner validates again and repeats those warnings.
            let planned = plan::plan_loaded(script, String::new(), inv, String::new(), None)
                .map_err(fail(Stage::Script))?;
            Ok(Compiled {
                script: None,
                warnings: planned.plan.warnings,
                unknown_calls,
            })
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// A byte range in a file's text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

/// Another place a diagnostic names (the other edges of a cycle).
#[derive(Clone, Debug)]
pub struct Related {
    pub span: Span,
    pub message: String,
}

/// One diagnostic, at a place in a file.
#[derive(Clone, Debug)]
pub struct Diag {
    /// The file as the engine names it (the path as given).
    pub file: String,
    /// Its text, to turn byte offsets into lines and columns.
    pub text: Arc<str>,
    pub span: Span,
    pub severity: Severity,
    /// What kind: `syntax`, `unknown-function`, `unknown-module`, `import`, `cycle`,
    /// `unknown-role`, `predicate`, `inventory`, `parameter`, ... (docs/editor.md).
    pub code: &'static str,
    pub message: String,
    pub help: Option<String>,
    /// Further places in the same file.
    pub related: Vec<Related>,
}

/// Everything to report about a subject: its error, or its warnings.
pub fn diagnostics(s: &Subject, outcome: &Result<Compiled, Failed>) -> Vec<Diag> {
    let runbook = s.path.display().to_string();
    let runbook_text = || -> Arc<str> {
        match s.text {
            Some(t) => Arc::from(t),
            None => Arc::from(read_lossy(s.path).as_str()),
        }
    };
    match outcome {
        Ok(c) => {
            let text = runbook_text();
            let calls = c.unknown_calls.iter().map(|u| {
                let start = offset_of(&text, u.line, u.col);
                Diag {
                    file: runbook.clone(),
                    span: Span {
                        start,
                        end: start + u.name.len(),
                    },
                    text: text.clone(),
                    severity: Severity::Warning,
                    code: "unknown-function",
                    message: u.message.clone(),
                    help: None,
                    related: Vec::new(),
                }
            });
            let mut seen: Vec<&String> = Vec::new();
            let mut out: Vec<Diag> = calls.collect();
            out.extend(
                c.warnings
                    .iter()
                    .filter(|w| {
                        let new = !seen.contains(w);
                        seen.push(w);
                        new
                    })
                    .map(|w| Diag {
                        file: runbook.clone(),
                        span: first_line(&text),
                        text: text.clone(),
                        severity: Severity::Warning,
                        code: "warning",
                        message: w.clone(),
                        help: None,
                        related: Vec::new(),
                    }),
            );
            out
        }
        Err(f) => {
            let (file, text) = match (f.stage, s.inventory) {
                (Stage::Inventory, Some(inv)) => (
                    inv.display().to_string(),
                    Arc::from(read_lossy(inv).as_str()),
                ),
                _ => (runbook, runbook_text()),
            };
            let mut d = of_error(&f.error, f.stage, file, text, s.params);
            d.file = locate(s, d.file);
            vec![d]
        }
    }
}

/// The path of a file the engine names: a module is named as imported (`lib.rhai`), relative
/// to the runbook's directory or a library directory; a built-in library keeps its name.
fn locate(s: &Subject, file: String) -> String {
    if file == s.path.display().to_string() || Path::new(&file).is_absolute() {
        return file;
    }
    // `acme/ops.rhai`: module ops.rhai of the project's library acme.
    if let Some(f) = file.split_once('/').and_then(|(lib, rest)| {
        let dir = s.libs.get(lib)?.dir.as_ref()?;
        Some(dir.join(rest)).filter(|p| p.is_file())
    }) {
        return f.display().to_string();
    }
    let dir = s.path.parent().unwrap_or(Path::new(""));
    std::iter::once(dir)
        .chain(s.lib_dirs.iter().map(PathBuf::as_path))
        .map(|d| d.join(&file))
        .find(|p| p.is_file())
        .map_or(file, |p| p.display().to_string())
}

/// The diagnostic of an engine error: at its label when it has one (in whichever file), else
/// on the file of the stage that failed.
fn of_error(
    e: &Error,
    stage: Stage,
    file: String,
    text: Arc<str>,
    params: &BTreeMap<String, String>,
) -> Diag {
    if let Error::Source(d) = e {
        return of_source(d, stage);
    }
    let (message, help) = match e {
        Error::Input { message, help } => (message.clone(), help.clone()),
        other => (other.to_string(), None),
    };
    let mut span = first_line(&text);
    let code = match stage {
        Stage::Read => {
            // Not UTF-8: point at the first bad byte, as the message does.
            if let Some(at) = bad_utf8_offset(Path::new(&file)) {
                span = Span { start: at, end: at };
            }
            "read"
        }
        Stage::Inventory => "inventory",
        // Parameters come from the command line or the project file, not from the script.
        Stage::Script
            if params
                .keys()
                .any(|k| message.contains(&format!("--param {k}"))) =>
        {
            "parameter"
        }
        Stage::Script => "script",
    };
    Diag {
        file,
        text,
        span,
        severity: Severity::Error,
        code,
        message,
        help,
        related: Vec::new(),
    }
}

fn of_source(d: &SourceDiag, stage: Stage) -> Diag {
    let text = d.src.inner().clone();
    let mut labels = d.labels.iter();
    let span = labels
        .next()
        .map(|l| Span {
            start: l.offset(),
            end: l.offset() + l.len(),
        })
        .unwrap_or_else(|| first_line(&text));
    let related = labels
        .map(|l| Related {
            span: Span {
                start: l.offset(),
                end: l.offset() + l.len(),
            },
            message: l.label().unwrap_or("here").to_string(),
        })
        .collect();
    Diag {
        file: d.src.name().to_string(),
        text,
        span,
        severity: Severity::Error,
        code: d.code.unwrap_or(match stage {
            Stage::Inventory => "inventory",
            _ => "script",
        }),
        message: d.message.clone(),
        help: d.help.clone(),
        related,
    }
}

fn first_line(text: &str) -> Span {
    Span {
        start: 0,
        end: text.find('\n').unwrap_or(text.len()),
    }
}

/// The text of a file, with bytes that are not UTF-8 replaced (offsets before the first bad
/// byte stay exact).
fn read_lossy(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    String::from_utf8_lossy(bytes).into_owned()
}

fn bad_utf8_offset(path: &Path) -> Option<usize> {
    let bytes = std::fs::read(path).ok()?;
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    std::str::from_utf8(bytes).err().map(|e| e.valid_up_to())
}

/// A 1-based line and column (in characters), as fleetbook's messages count them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LineCol {
    pub line: usize,
    pub col: usize,
}

pub fn line_col(text: &str, offset: usize) -> LineCol {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    LineCol {
        line: before.matches('\n').count() + 1,
        col: text[line_start..offset].chars().count() + 1,
    }
}

/// The JSON form of diagnostics (`check --format json`): 1-based lines and columns, the end
/// exclusive.
pub fn to_json(diags: &[Diag]) -> String {
    #[derive(serde::Serialize)]
    struct Report<'a> {
        diagnostics: Vec<JsonDiag<'a>>,
    }
    #[derive(serde::Serialize)]
    struct JsonDiag<'a> {
        file: &'a str,
        range: JsonRange,
        severity: Severity,
        code: &'a str,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        help: Option<&'a str>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        related: Vec<JsonRelated<'a>>,
    }
    #[derive(serde::Serialize)]
    struct JsonRelated<'a> {
        file: &'a str,
        range: JsonRange,
        message: &'a str,
    }
    #[derive(serde::Serialize)]
    struct JsonRange {
        start: LineCol,
        end: LineCol,
    }
    let range = |text: &str, s: Span| JsonRange {
        start: line_col(text, s.start),
        end: line_col(text, s.end),
    };
    let report = Report {
        diagnostics: diags
            .iter()
            .map(|d| JsonDiag {
                file: &d.file,
                range: range(&d.text, d.span),
                severity: d.severity,
                code: d.code,
                message: &d.message,
                help: d.help.as_deref(),
                related: d
                    .related
                    .iter()
                    .map(|r| JsonRelated {
                        file: &d.file,
                        range: range(&d.text, r.span),
                        message: &r.message,
                    })
                    .collect(),
            })
            .collect(),
    };
    let mut text = serde_json::to_string_pretty(&report).unwrap_or_default();
    text.push('\n');
    text
}

/// `fleetbook check`'s text answer for a runbook that compiled.
pub struct Human {
    /// For standard error: the warnings, then (with `-v`) where each import bound.
    pub notes: String,
    /// For standard output: [`summary`].
    pub summary: String,
}

/// What `fleetbook check` prints, without `--format json`, for a runbook that compiled.
pub fn human(runbook: &Path, compiled: Compiled, verbose: bool) -> Result<Human, Error> {
    let mut notes = String::new();
    for u in &compiled.unknown_calls {
        let at = format!("{}:{}:{}", runbook.display(), u.line, u.col);
        notes.push_str(&format!("warning: {at}: {}\n", u.message));
    }
    for w in &compiled.warnings {
        notes.push_str(&format!("warning: {w}\n"));
    }
    let Some(script) = compiled.script else {
        return Err(Error::Internal("check lost its script".into()));
    };
    if verbose {
        notes.push_str(&imports_of(&script));
    }
    let summary = summary(runbook, &script);
    Ok(Human { notes, summary })
}

/// `fleetbook check`'s line for a runbook that compiled: its name, steps, parameters, roles.
pub fn summary(runbook: &Path, script: &Script) -> String {
    let rb = &script.runbook;
    let roles: Vec<String> = rb.named_roles().into_iter().map(|(r, _)| r).collect();
    format!(
        "ok: runbook {:?} ({}): {} step{}, {} parameter{}{}\n",
        rb.name,
        runbook.display(),
        rb.steps.len(),
        if rb.steps.len() == 1 { "" } else { "s" },
        script.params.len(),
        if script.params.len() == 1 { "" } else { "s" },
        if roles.is_empty() {
            String::new()
        } else {
            format!(", roles {}", roles.join(", "))
        }
    )
}

/// `fleetbook check -v`: which file each import bound to, and from which library.
pub fn imports_of(script: &Script) -> String {
    let used = script.used.lock().unwrap_or_else(|e| e.into_inner());
    used.imports
        .iter()
        .map(|i| {
            format!(
                "import {:?} in {}: {} (library {})\n",
                i.path, i.importer, i.file, i.library
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(path: &Path) -> Subject<'_> {
        static NO_PARAMS: BTreeMap<String, String> = BTreeMap::new();
        static NO_LIBS: Libraries = Libraries {
            all: Vec::new(),
            direct: Vec::new(),
        };
        Subject {
            path,
            text: None,
            lib_dirs: &[],
            libs: &NO_LIBS,
            params: &NO_PARAMS,
            inventory: None,
            depth: Depth::Compile,
        }
    }

    // Any error the engine reports with a place becomes a diagnostic there, whatever its
    // kind, including kinds added later (a library's namespace violation): no list to extend.
    #[test]
    fn any_placed_error_is_a_diagnostic_at_its_place() {
        let text: Arc<str> = Arc::from("let rb = runbook(\"x\");\nlet y = lib::z();\nrb\n");
        let err: Error = SourceDiag::new("rb.rhai", text.clone(), "lib may not use z")
            .label_at(2, 9, "here")
            .label_at(1, 5, "declared")
            .help("add it to uses")
            .code("namespace")
            .into();
        let path = Path::new("rb.rhai");
        let outcome = Err(Failed {
            error: err,
            stage: Stage::Script,
        });
        let d = diagnostics(&subject(path), &outcome).remove(0);
        assert_eq!((d.file.as_str(), d.code), ("rb.rhai", "namespace"));
        assert_eq!(line_col(&d.text, d.span.start), LineCol { line: 2, col: 9 });
        assert_eq!(line_col(&d.text, d.span.end), LineCol { line: 2, col: 12 });
        assert_eq!(d.related[0].message, "declared");
        assert_eq!(d.help.as_deref(), Some("add it to uses"));

        // Without a code: a script error, still at its place.
        let err: Error = SourceDiag::new("rb.rhai", text, "something new")
            .label_at(3, 1, "here")
            .into();
        let outcome = Err(Failed {
            error: err,
            stage: Stage::Script,
        });
        let d = diagnostics(&subject(path), &outcome).remove(0);
        assert_eq!(d.code, "script");
        assert_eq!(line_col(&d.text, d.span.start), LineCol { line: 3, col: 1 });
        let json = to_json(&[d]);
        assert!(
            json.contains("\"start\": {\n          \"line\": 3,\n          \"col\": 1\n        }"),
            "{json}"
        );
    }

    #[test]
    fn columns_count_characters() {
        let text = "ab\né€x\n";
        assert_eq!(
            line_col(text, text.find('x').unwrap()),
            LineCol { line: 2, col: 3 }
        );
        assert_eq!(line_col(text, 0), LineCol { line: 1, col: 1 });
    }
}
