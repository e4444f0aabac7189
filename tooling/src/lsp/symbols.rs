//! What a script defines and imports, read from its text: the functions (with their `///`
//! docs and where they are) and the `import "path" as alias;` statements, and where an
//! import's module lives. A scan rather than Rhai's parser, so a document with a syntax
//! error still has its definitions.

pub use fleetbook_engine::libdoc::{functions, Function};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Import {
    pub path: String,
    pub alias: String,
    /// Byte range of the quoted path, quotes excluded.
    pub path_offset: usize,
}

pub fn imports(text: &str) -> Vec<Import> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = text[from..].find("import") {
        let at = from + i;
        from = at + 6;
        let word_start =
            at == 0 || !text[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_');
        let Some(rest) = text[from..].strip_prefix(|c: char| c.is_whitespace()) else {
            continue;
        };
        let rest = rest.trim_start();
        let Some(quoted) = rest.strip_prefix('"') else {
            continue;
        };
        let Some(end) = quoted.find('"') else {
            continue;
        };
        let path = &quoted[..end];
        let after = quoted[end + 1..].trim_start();
        let Some(alias_part) = after.strip_prefix("as") else {
            continue;
        };
        let alias: String = alias_part
            .trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if word_start && !alias.is_empty() {
            let path_offset = text.len() - quoted.len();
            out.push(Import {
                path: path.to_string(),
                alias,
                path_offset,
            });
        }
    }
    out
}

/// Where an import's module is: a file beside the runbook or in a library directory, or a
/// built-in library (its text, with no file).
pub enum Module {
    File(PathBuf),
    Builtin(&'static str, &'static str),
}

pub fn resolve(path: &str, dir: Option<&Path>, lib_dirs: &[PathBuf]) -> Option<Module> {
    let file = if path.ends_with(".rhai") {
        path.to_string()
    } else {
        format!("{path}.rhai")
    };
    for d in dir.into_iter().chain(lib_dirs.iter().map(PathBuf::as_path)) {
        let candidate = d.join(&file);
        if candidate.is_file() {
            return Some(Module::File(candidate));
        }
    }
    fleetbook_stdlib::LIBRARIES
        .iter()
        .find(|(name, _)| *name == path)
        .map(|(name, text)| Module::Builtin(name, text))
}

impl Module {
    pub fn text(&self) -> Option<String> {
        match self {
            Module::File(p) => std::fs::read_to_string(p).ok(),
            Module::Builtin(_, t) => Some(t.to_string()),
        }
    }

    /// A file to show: a built-in library is written out under the user's own cache
    /// directory, so that "go to definition" has somewhere to land. Never a shared
    /// temporary directory: another user could plant a symlink or a fake library there.
    pub fn file(&self) -> Option<PathBuf> {
        match self {
            Module::File(p) => Some(p.clone()),
            Module::Builtin(name, text) => {
                let dir = builtin_dir()?;
                let p = dir.join(format!("{name}.rhai"));
                if std::fs::read_to_string(&p).ok().as_deref() != Some(*text) {
                    std::fs::write(&p, text).ok()?;
                }
                Some(p)
            }
        }
    }
}

/// `$XDG_CACHE_HOME/fleetbook/lsp-libraries` (else `~/.cache/...`), private to the user.
fn builtin_dir() -> Option<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    let dir = cache.join("fleetbook").join("lsp-libraries");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .ok()?;
    Some(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn functions_have_their_docs_and_places() {
        let text =
            "let x = 1;\n/// Says hi.\n/// Twice.\nfn greet(h, who) {\n}\nprivate fn helper() {}\n";
        let f = functions(text);
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].signature, "greet(h, who)");
        assert_eq!(f[0].doc, "Says hi.\nTwice.");
        assert_eq!(&text[f[0].offset..f[0].offset + 5], "greet");
        assert_eq!(&text[f[1].offset..f[1].offset + 6], "helper");
    }

    #[test]
    fn imports_name_path_and_alias() {
        let text = "import \"rolling\" as r;\n// import \"x\"\nimport \"lib/y\" as y;";
        let i = imports(text);
        assert_eq!(i.len(), 2);
        assert_eq!((i[0].path.as_str(), i[0].alias.as_str()), ("rolling", "r"));
        assert_eq!(&text[i[1].path_offset..i[1].path_offset + 5], "lib/y");
    }
}
