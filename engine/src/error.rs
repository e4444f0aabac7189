//! Errors of the engine. Input errors (a bad runbook, inventory, parameter or pattern) are
//! what the user must fix and carry a source position where there is one; everything else is
//! internal. The binary maps them to exit codes in one place.

use miette::{Diagnostic, LabeledSpan, NamedSource, SourceSpan};
use std::sync::Arc;

/// A message about a place in a source file, drawn by miette with a caret.
#[derive(Debug, thiserror::Error, Diagnostic)]
#[error("{message}")]
pub struct SourceDiag {
    pub message: String,
    #[source_code]
    pub src: NamedSource<Arc<str>>,
    #[label(collection)]
    pub labels: Vec<LabeledSpan>,
    #[help]
    pub help: Option<String>,
    /// What kind of error this is (`syntax`, `cycle`, `inventory`, ...), for tools that read
    /// diagnostics (`check --format json`, the language server); not drawn by miette.
    pub code: Option<&'static str>,
}

/// A position in a source: 1-based line and column, as Rhai reports them.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct Pos {
    pub source: String,
    pub line: usize,
    pub col: usize,
}

impl std::fmt::Display for Pos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.source, self.line, self.col)
    }
}

/// Byte offset of a 1-based line and column in `text` (clamped to the text).
pub fn offset_of(text: &str, line: usize, col: usize) -> usize {
    let mut offset = 0;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            let in_line = l
                .char_indices()
                .nth(col.saturating_sub(1))
                .map(|(b, _)| b)
                .unwrap_or(l.trim_end_matches('\n').len());
            return offset + in_line;
        }
        offset += l.len();
    }
    text.len()
}

/// Length of the token at `offset` (an identifier or one character), for the caret's width.
fn token_len(text: &str, offset: usize) -> usize {
    let rest = &text[offset.min(text.len())..];
    let ident = rest
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    if ident > 0 {
        ident
    } else {
        rest.chars().next().map_or(0, |c| c.len_utf8())
    }
}

impl SourceDiag {
    pub fn new(name: &str, text: Arc<str>, message: impl Into<String>) -> Self {
        SourceDiag {
            message: message.into(),
            src: NamedSource::new(name, text),
            labels: Vec::new(),
            help: None,
            code: None,
        }
    }

    /// Names the kind of error (see [`SourceDiag::code`]).
    pub fn code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// Adds a label under the token at `line:col`.
    pub fn label_at(mut self, line: usize, col: usize, label: impl Into<String>) -> Self {
        let text = self.src.inner().clone();
        let off = offset_of(&text, line, col);
        let span = SourceSpan::new(off.into(), token_len(&text, off));
        self.labels
            .push(LabeledSpan::new_with_span(Some(label.into()), span));
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

/// Every error the engine returns.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A problem in a runbook or inventory file, shown with its source.
    #[error("{0}")]
    Source(Box<SourceDiag>),

    /// Bad input that has no source position (a parameter, a pattern, a file that is missing).
    #[error("{message}")]
    Input {
        message: String,
        help: Option<String>,
    },

    /// The fleet is locked by another run.
    #[error("{message}")]
    Locked { message: String, help: String },

    /// The journal cannot be used (corrupted, foreign, newer schema); it is left untouched.
    #[error("{message}")]
    Journal { message: String },

    /// The run store did not answer this time (an SQLite journal another process holds
    /// busy, an etcd cluster unreachable or too slow): trying again later may work. The
    /// store boundary reports it as recoverable ([`crate::store::StoreError`]).
    #[error("{message}")]
    Unavailable { message: String },

    /// A bug or an environment failure, not the user's input.
    #[error("{0}")]
    Internal(String),
}

impl Diagnostic for Error {
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        match self {
            Error::Source(d) => d.source_code(),
            _ => None,
        }
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        match self {
            Error::Source(d) => d.labels(),
            _ => None,
        }
    }

    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        match self {
            Error::Source(d) => Diagnostic::help(&**d),
            Error::Input { help: Some(h), .. } => Some(Box::new(h)),
            Error::Locked { help, .. } => Some(Box::new(help)),
            _ => None,
        }
    }
}

impl From<SourceDiag> for Error {
    fn from(d: SourceDiag) -> Self {
        Error::Source(Box::new(d))
    }
}

impl Error {
    pub fn input(message: impl Into<String>) -> Self {
        Error::Input {
            message: message.into(),
            help: None,
        }
    }

    pub fn input_with_help(message: impl Into<String>, help: impl Into<String>) -> Self {
        Error::Input {
            message: message.into(),
            help: Some(help.into()),
        }
    }

    /// The same error with every secret value replaced (messages, help, labels) or masked
    /// (the quoted source, with `*` of the same length so that carets stay in place).
    pub fn redact(self, secrets: &crate::secrets::Secrets) -> Error {
        if secrets.is_empty() {
            return self;
        }
        let r = |s: String| secrets.redacted(&s);
        match self {
            Error::Source(d) => {
                let d = *d;
                let text = secrets.mask(d.src.inner());
                let labels = d
                    .labels
                    .into_iter()
                    .map(|l| {
                        let label = l.label().map(|s| secrets.redacted(s));
                        LabeledSpan::new_with_span(label, *l.inner())
                    })
                    .collect();
                Error::Source(Box::new(SourceDiag {
                    message: r(d.message),
                    src: NamedSource::new(d.src.name(), Arc::from(text)),
                    labels,
                    help: d.help.map(r),
                    code: d.code,
                }))
            }
            Error::Input { message, help } => Error::Input {
                message: r(message),
                help: help.map(r),
            },
            Error::Locked { message, help } => Error::Locked {
                message: r(message),
                help: r(help),
            },
            Error::Journal { message } => Error::Journal {
                message: r(message),
            },
            Error::Unavailable { message } => Error::Unavailable {
                message: r(message),
            },
            Error::Internal(m) => Error::Internal(r(m)),
        }
    }

    /// True when the user's input is at fault (exit code 2), false for internal failures.
    pub fn is_input(&self) -> bool {
        !matches!(
            self,
            Error::Internal(_)
                | Error::Journal { .. }
                | Error::Unavailable { .. }
                | Error::Locked { .. }
        )
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Reads a text file with the path in the error. A byte order mark at the start is dropped;
/// bytes that are not UTF-8 are an error naming the line, column and byte offset.
pub fn read_file(path: &std::path::Path) -> Result<String> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error::input(format!("cannot read {}: {e}", path.display())))?;
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok(text.to_string()),
        Err(e) => Err(Error::input(not_utf8(path, bytes, e.valid_up_to()))),
    }
}

/// "FILE:LINE:COL: invalid UTF-8 (byte 0xFF at offset N)"; the column counts characters.
fn not_utf8(path: &std::path::Path, bytes: &[u8], at: usize) -> String {
    let before = &bytes[..at];
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    // Everything before `at` is valid UTF-8, so the column is a character count.
    let col = std::str::from_utf8(&before[line_start..]).map_or(0, |s| s.chars().count()) + 1;
    format!(
        "{}:{line}:{col}: invalid UTF-8 (byte 0x{:02X} at offset {at}); runbooks and \
         inventories must be UTF-8 text",
        path.display(),
        bytes[at]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_follow_lines_and_columns() {
        let t = "ab\ncdef\ng";
        assert_eq!(offset_of(t, 1, 1), 0);
        assert_eq!(offset_of(t, 2, 3), 5);
        assert_eq!(offset_of(t, 3, 1), 8);
        assert_eq!(offset_of(t, 9, 1), t.len());
    }

    fn read(bytes: &[u8]) -> Result<String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inv.ini");
        std::fs::write(&path, bytes).unwrap();
        read_file(&path).map_err(|e| {
            Error::input(
                e.to_string()
                    .replace(&dir.path().display().to_string(), "DIR"),
            )
        })
    }

    // A file with a byte that is not UTF-8 said only "stream did not contain valid UTF-8".
    #[test]
    fn invalid_utf8_names_line_column_and_offset() {
        let err = read(b"[web]\nw\xC3\xA91 x=\xFF\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "DIR/inv.ini:2:7: invalid UTF-8 (byte 0xFF at offset 13); runbooks and inventories \
             must be UTF-8 text"
        );
    }

    // A byte order mark was kept as part of the first line.
    #[test]
    fn byte_order_mark_is_dropped() {
        assert_eq!(read(b"\xEF\xBB\xBF[web]\n").unwrap(), "[web]\n");
    }
}
