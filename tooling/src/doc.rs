//! `fleetbook doc [LIB]`: a library's exported functions with their `///` docs, parameters
//! and examples, as text or Markdown. The docs are read with the language server's parser
//! (`fleetbook_engine::libdoc`).

use fleetbook_engine::libdoc::{self, Function};
use fleetbook_engine::{Error, Result};
use std::path::{Path, PathBuf};

/// One library module: the name it is imported by, and its text.
struct Module {
    name: String,
    /// Where it comes from, for the heading: `built-in`, or its file.
    origin: String,
    text: String,
}

/// How `fleetbook doc` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocFormat {
    Text,
    Md,
}

/// The docs of `lib` (a built-in library, a `.rhai` file or a library directory; `None`:
/// every built-in library) in `format`.
pub fn render(lib: Option<&str>, format: DocFormat) -> Result<String> {
    let modules = match lib {
        None => builtin(None),
        Some(name) => match builtin(Some(name)) {
            found if !found.is_empty() => found,
            _ => from_path(name)?,
        },
    };
    let text = match format {
        DocFormat::Text => modules.iter().map(text).collect::<Vec<_>>().join("\n"),
        DocFormat::Md => modules.iter().map(markdown).collect::<Vec<_>>().join("\n"),
    };
    Ok(text)
}

fn builtin(only: Option<&str>) -> Vec<Module> {
    fleetbook_stdlib::LIBRARIES
        .iter()
        .filter(|(n, _)| only.is_none_or(|o| o == *n))
        .map(|(n, t)| Module {
            name: n.to_string(),
            origin: "built-in".into(),
            text: t.to_string(),
        })
        .collect()
}

fn from_path(lib: &str) -> Result<Vec<Module>> {
    let path = Path::new(lib);
    let read = |p: &Path, name: String| -> Result<Module> {
        Ok(Module {
            name,
            origin: p.display().to_string(),
            text: fleetbook_engine::error::read_file(p)?,
        })
    };
    if path.is_file() {
        let stem = path.file_stem().unwrap_or_default().to_string_lossy();
        return Ok(vec![read(path, stem.to_string())?]);
    }
    if path.is_dir() {
        let mut files = Vec::new();
        rhai_files(path, &mut files);
        files.sort();
        if files.is_empty() {
            return Err(Error::input(format!("{lib}: no .rhai file in it")));
        }
        return files
            .iter()
            .map(|f| {
                let rel = f.strip_prefix(path).unwrap_or(f).with_extension("");
                read(f, rel.display().to_string())
            })
            .collect();
    }
    let names: Vec<&str> = fleetbook_stdlib::LIBRARIES
        .iter()
        .map(|(n, _)| *n)
        .collect();
    Err(Error::input(format!(
        "{lib:?} is neither a built-in library ({}) nor a .rhai file or library directory",
        names.join(", ")
    )))
}

fn rhai_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().to_string();
        if p.is_dir() && !name.starts_with('.') && name != "target" {
            rhai_files(&p, out);
        } else if name.ends_with(".rhai") && !name.ends_with("_test.rhai") {
            out.push(p);
        }
    }
}

/// The module's own description: its leading `//` comment lines (not `///`).
fn header(text: &str) -> String {
    text.lines()
        .take_while(|l| l.starts_with("//") && !l.starts_with("///"))
        .map(|l| l.trim_start_matches('/').trim())
        .collect::<Vec<_>>()
        .join(" ")
}

fn text(m: &Module) -> String {
    let mut out = format!("{} ({})\n", m.name, m.origin);
    let head = header(&m.text);
    if !head.is_empty() {
        out.push_str(&format!("  {head}\n"));
    }
    let functions = libdoc::exported(&m.text);
    if functions.is_empty() {
        out.push_str("  (no exported functions)\n");
    }
    for f in &functions {
        out.push_str(&format!("\n  {}::{}\n", short(&m.name), f.signature));
        for line in f.prose().lines() {
            out.push_str(&format!("      {line}\n").replace("      \n", "\n"));
        }
        for ex in f.examples() {
            out.push_str("\n      Example:\n");
            for line in ex.lines() {
                out.push_str(&format!("        {line}\n").replace("        \n", "\n"));
            }
        }
    }
    out
}

fn markdown(m: &Module) -> String {
    let mut out = format!("# `{}`\n\n", m.name);
    let head = header(&m.text);
    if !head.is_empty() {
        out.push_str(&format!("{head}\n\n"));
    }
    for f in libdoc::exported(&m.text) {
        out.push_str(&format!("## `{}::{}`\n\n", short(&m.name), f.signature));
        out.push_str(&params(&f));
        let prose = f.prose();
        if !prose.is_empty() {
            out.push_str(&format!("{prose}\n\n"));
        }
        for ex in f.examples() {
            out.push_str(&format!("```rhai\n{ex}```\n\n"));
        }
    }
    out
}

fn params(f: &Function) -> String {
    if f.params.is_empty() {
        return "Parameters: none.\n\n".into();
    }
    let list: Vec<String> = f.params.iter().map(|p| format!("`{p}`")).collect();
    format!("Parameters: {}.\n\n", list.join(", "))
}

/// The alias a module is usually imported as: its last path component.
fn short(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}
