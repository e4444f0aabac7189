//! `fleetbook definitions -o DIR`: Rhai definition files (`.d.rhai`) for editors with a Rhai
//! plugin but no fleetbook language server. It takes the engine a runbook is compiled with
//! and the script libraries (built in and `--lib`), and gives one file per module:
//! - the registered functions, from Rhai's `metadata` feature (`Engine::definitions`), each
//!   with the doc the language reference gives it (Rhai knows no docs for them);
//! - the script libraries' exported functions with their `///` docs, which Rhai does not
//!   write, from the modules parsed by Rhai.

use crate::lsp::docs::{self, Owner};
use fleetbook_engine::script::{self, Limits, ScriptInput};
use fleetbook_engine::{Error, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The definition files, by file name.
pub fn files(lib_dirs: &[PathBuf]) -> Result<Vec<(String, String)>> {
    let script = script::compile(ScriptInput {
        name: "definitions.rhai",
        text: "runbook(\"definitions\")",
        dir: None,
        lib_dirs: &[],
        libs: &Default::default(),
        params: &BTreeMap::new(),
        limits: Limits::default(),
    })?;
    let mut out: Vec<(String, String)> = script
        .engine()
        .definitions()
        .iter_files()
        .map(|(file, text)| {
            // Rhai's own builtins are whole as they are.
            if file.starts_with("__builtin") {
                return (file, text);
            }
            let owner = file
                .strip_suffix(".d.rhai")
                .filter(|m| !m.starts_with("__"))
                .map(|m| Owner::Namespace(m.to_string()));
            let text = with_docs(&text, owner.as_ref());
            (file, text)
        })
        .collect();
    for (name, text) in libraries(lib_dirs)? {
        let file = format!("{name}.d.rhai");
        if out.iter().any(|(f, _)| *f == file) {
            return Err(Error::input(format!(
                "library module {name:?} has the name of a built-in module: rename it"
            )));
        }
        out.push((file, library(&name, &text)?));
    }
    Ok(out)
}

/// Writes the files into `dir` (created if missing) and returns their paths.
pub fn write(dir: &Path, lib_dirs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let files = files(lib_dirs)?;
    let fail = |e: std::io::Error| Error::input(format!("cannot write to {}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(fail)?;
    let mut written = Vec::new();
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(fail)?;
        written.push(path);
    }
    Ok(written)
}

/// The script libraries: the built-in ones, then each `*.rhai` directly in a `--lib` directory
/// (as `import "name"` finds them), by module name.
fn libraries(lib_dirs: &[PathBuf]) -> Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = fleetbook_stdlib::LIBRARIES
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
    for dir in lib_dirs {
        let entries = std::fs::read_dir(dir)
            .map_err(|e| Error::input(format!("cannot read --lib {}: {e}", dir.display())))?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "rhai"))
            .collect();
        paths.sort();
        for p in paths {
            let Some(name) = p.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            // An earlier directory wins, as for `import`.
            if !out.iter().any(|(n, _)| n == name) {
                out.push((name.to_string(), fleetbook_engine::error::read_file(&p)?));
            }
        }
    }
    Ok(out)
}

/// One library's definitions: its public functions, parsed by Rhai, with their `///` docs.
fn library(name: &str, text: &str) -> Result<String> {
    // The runbook engine's own depth limit: a library it runs must parse here too.
    let depth = fleetbook_engine::script::Limits::default().max_expr_depth;
    let mut engine = rhai::Engine::new_raw();
    engine.set_max_expr_depths(depth, depth);
    // As the runbook engine reads it: `var` is an identifier (`h.var(name)`).
    #[allow(deprecated)]
    engine.on_parse_token(|token, _pos, _state| match token {
        rhai::Token::Reserved(s) if &**s == "var" => rhai::Token::Identifier(s),
        other => other,
    });
    let ast = engine
        .compile(text)
        .map_err(|e| Error::input(format!("library {name}: {e}")))?;
    let mut out = format!("module {name};\n");
    let mut fns: Vec<_> = ast
        .iter_functions()
        // Closures are compiled to functions named `anon$...`: not callable by name.
        .filter(|f| f.access != rhai::FnAccess::Private && !f.name.contains('$'))
        .collect();
    fns.sort_by_key(|f| (f.name, f.params.len()));
    for f in fns {
        out.push('\n');
        for c in &f.comments {
            // Rhai keeps `/** */` blocks too; the definition syntax has only line comments.
            for line in c.lines() {
                let line = line.trim();
                let doc = line.strip_prefix("///").unwrap_or(line);
                out.push_str(&format!("///{doc}\n"));
            }
        }
        let params: Vec<String> = f.params.iter().map(|p| format!("{p}: ?")).collect();
        out.push_str(&format!("fn {}({}) -> ?;\n", f.name, params.join(", ")));
    }
    Ok(out)
}

/// Rhai's definitions made whole: above every function without a doc, the doc the language
/// reference gives it, and its parameters named as the reference names them; a return type
/// Rhai could not name (`Result<T, Box<EvalAltResult>>` comes out as `EvalAltResult>>`, no
/// type as nothing) becomes `?`. A function of the global module is a host method when its
/// first parameter is a `Host`, a runbook method when it is a `Runbook` or a `Step`, else a
/// plain function.
fn with_docs(text: &str, module: Option<&Owner>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut documented = false;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        let Some(decl) = Decl::parse(trimmed) else {
            documented = trimmed.starts_with("///");
            out.push_str(line);
            continue;
        };
        let entry = decl.entry(module);
        if let (false, Some(e)) = (documented, entry) {
            for d in e.doc.lines() {
                out.push_str(&format!("/// {d}\n").replace("/// \n", "///\n"));
            }
        }
        documented = false;
        out.push_str(&line[..line.len() - trimmed.len()]);
        out.push_str(&decl.render(entry));
        out.push('\n');
    }
    out
}

/// `fn [get |set ]name(p: T, ...) -> R;` as Rhai writes it.
struct Decl<'a> {
    /// `get `, `set ` or nothing.
    accessor: &'a str,
    name: &'a str,
    params: Vec<(&'a str, &'a str)>,
    ret: &'a str,
}

impl<'a> Decl<'a> {
    fn parse(line: &'a str) -> Option<Decl<'a>> {
        let rest = line.strip_prefix("fn ")?.trim_end();
        let (head, rest) = rest.split_once('(')?;
        let (accessor, name) = match head.split_once(' ') {
            Some((a, n)) => (&head[..a.len() + 1], n),
            None => ("", head),
        };
        let close = rest.rfind(')')?;
        let params = rest[..close]
            .split(", ")
            .filter(|p| !p.is_empty())
            .map(|p| p.split_once(": ").unwrap_or((p, "?")))
            .collect();
        let ret = rest[close + 1..]
            .trim()
            .strip_prefix("->")
            .unwrap_or("")
            .trim()
            .trim_end_matches(';')
            .trim();
        Some(Decl {
            accessor,
            name,
            params,
            ret,
        })
    }

    fn entry(&self, module: Option<&Owner>) -> Option<&'static docs::Entry> {
        let owner = match (module, self.params.first().map(|p| p.1)) {
            (Some(m), _) => m.clone(),
            (None, Some("Host")) => Owner::Host,
            (None, Some("Runbook" | "Step")) => Owner::Runbook,
            (None, _) => Owner::Global,
        };
        docs::find(&owner, self.name).filter(|e| !e.doc.is_empty())
    }

    fn render(&self, entry: Option<&docs::Entry>) -> String {
        let receiver = match (entry.map(|e| &e.owner), self.params.first().map(|p| p.1)) {
            (Some(Owner::Host), _) => Some("h"),
            (Some(Owner::Runbook), Some("Step")) => Some("step"),
            (Some(Owner::Runbook), _) => Some("rb"),
            _ => None,
        };
        let names = entry.and_then(|e| param_names(e, receiver, self.params.len()));
        let params: Vec<String> = self
            .params
            .iter()
            .enumerate()
            .map(|(i, (n, t))| {
                let n = match (&names, *n) {
                    (Some(names), "_") => names[i].as_str(),
                    _ => n,
                };
                format!("{n}: {t}")
            })
            .collect();
        let ret = if is_type(self.ret) { self.ret } else { "?" };
        format!(
            "fn {}{}({}) -> {ret};",
            self.accessor,
            self.name,
            params.join(", ")
        )
    }
}

/// The parameter names of the reference's form with `arity` parameters (a method's receiver
/// counted, named after its type), when every one is a plain name.
fn param_names(e: &docs::Entry, receiver: Option<&str>, arity: usize) -> Option<Vec<String>> {
    e.signatures.iter().find_map(|sig| {
        let args = sig.split_once('(')?.1.rsplit_once(')')?.0;
        let mut names: Vec<String> = receiver.map(String::from).into_iter().collect();
        for a in args.split(',').map(str::trim).filter(|a| !a.is_empty()) {
            let a = a.trim_matches(|c: char| "[]\"'. ".contains(c));
            let a = a.split(['=', ' ']).next().unwrap_or("");
            // An example value (`true`, `"2h"`) is no name.
            let plain = a.starts_with(|c: char| c.is_alphabetic() || c == '_')
                && a.chars().all(|c| c.is_alphanumeric() || c == '_')
                && !["true", "false"].contains(&a);
            if !plain {
                return None;
            }
            // A word Rhai reserves (`default`) is no parameter name.
            let valid = rhai::Engine::new_raw()
                .compile(format!("fn f({a}) {{}}"))
                .is_ok();
            names.push(if valid {
                a.to_string()
            } else {
                format!("{a}_")
            });
        }
        (names.len() == arity).then_some(names)
    })
}

/// Whether Rhai wrote a whole type (`int`, `Array`, `Iterator<int>`), not a broken one.
fn is_type(t: &str) -> bool {
    let mut depth = 0i32;
    for c in t.chars() {
        match c {
            '<' => depth += 1,
            '>' => depth -= 1,
            _ => {}
        }
        if depth < 0 {
            return false;
        }
    }
    depth == 0 && !t.is_empty() && !t.contains("EvalAltResult")
}
