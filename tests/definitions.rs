//! `fleetbook definitions -o DIR`: every file follows Rhai's definition syntax, every
//! declaration compiles as a Rhai function, and together they name every function the
//! engine has registered (its own list) and every exported function of the script libraries.

use crate::support::fleetbook;
use std::collections::BTreeSet;
use std::path::Path;

/// A declaration: module (empty for the global one), name, number of parameters.
type Decl = (String, String, usize);

/// Checks one definition file line by line against the definition syntax (Rhai's
/// `Engine::definitions` and rhai-lsp's): a `module NAME;` header, `///` and `//` comments,
/// `fn`/`op` declarations ending in `;`, `const`/`let NAME: TYPE;`, nested `module NAME { }`.
/// Each `fn` is also compiled by a plain Rhai engine as `fn name(a, b) {}` (a name Rhai
/// reserves, such as `print`, as `fn keyword(a, b) {}`).
fn parse(file: &str, text: &str) -> Vec<Decl> {
    let engine = rhai::Engine::new_raw();
    let mut lines = text.lines().enumerate();
    let (_, header) = lines.next().expect("not empty");
    let module = header
        .strip_prefix("module ")
        .and_then(|m| m.strip_suffix(';'))
        .unwrap_or_else(|| panic!("{file}:1: no `module NAME;` header: {header:?}"));
    let module = if module == "static" { "" } else { module };
    let mut out = Vec::new();
    let mut nested = 0;
    for (i, line) in lines {
        let at = format!("{file}:{}", i + 1);
        let line = line.trim();
        if line.is_empty() || line.starts_with("//") {
            continue;
        }
        if let Some(m) = line.strip_prefix("module ") {
            assert!(m.ends_with(" {"), "{at}: {line}");
            nested += 1;
            continue;
        }
        if line == "}" {
            assert!(nested > 0, "{at}: unbalanced }}");
            nested -= 1;
            continue;
        }
        if line.starts_with("const ") || line.starts_with("let ") {
            assert!(line.contains(": ") && line.ends_with(';'), "{at}: {line}");
            continue;
        }
        let (kind, rest) = line
            .split_once(' ')
            .unwrap_or_else(|| panic!("{at}: {line}"));
        assert!(
            kind == "fn" || kind == "op",
            "{at}: not a declaration: {line}"
        );
        assert!(line.ends_with(';'), "{at}: no `;`: {line}");
        let (head, rest) = rest
            .split_once('(')
            .unwrap_or_else(|| panic!("{at}: {line}"));
        let (params, ret) = rest
            .rsplit_once(')')
            .unwrap_or_else(|| panic!("{at}: {line}"));
        let ret = ret.trim().trim_end_matches(';').trim();
        assert!(
            ret.is_empty() || (ret.starts_with("-> ") && ret.len() > 3),
            "{at}: return type {ret:?}"
        );
        let params: Vec<&str> = params.split(", ").filter(|p| !p.is_empty()).collect();
        let name = head
            .strip_prefix("get ")
            .map(|n| format!("get${n}"))
            .or_else(|| head.strip_prefix("set ").map(|n| format!("set${n}")))
            .unwrap_or_else(|| head.to_string());
        if kind == "fn" && !name.contains('$') {
            let names: Vec<String> = params
                .iter()
                .enumerate()
                .map(|(k, p)| {
                    let (n, t) = p.split_once(": ").unwrap_or_else(|| panic!("{at}: {p}"));
                    // `...args`: the rest of the arguments, in the definition syntax only.
                    let n = n.strip_prefix("...").unwrap_or(n);
                    assert!(!t.is_empty(), "{at}: parameter without a type: {p}");
                    if n == "_" {
                        format!("p{k}")
                    } else {
                        n.to_string()
                    }
                })
                .collect();
            // Rhai's own `print`, `debug`, `type_of`... are keywords a script cannot define.
            let keyword = engine.compile(format!("fn {name}() {{}}")).is_err()
                && engine.compile(format!("{name}()")).is_ok();
            let fn_name = if keyword { "keyword" } else { &name };
            let stub = format!("fn {fn_name}({}) {{}}", names.join(", "));
            engine
                .compile(&stub)
                .unwrap_or_else(|e| panic!("{at}: {line} does not compile as {stub}: {e}"));
        }
        if nested == 0 {
            out.push((module.to_string(), name, params.len()));
        }
    }
    assert_eq!(nested, 0, "{file}: unclosed module");
    out
}

fn definitions(dir: &Path, extra: &[&str]) -> Vec<(String, String)> {
    let cmd = fleetbook(&["definitions", "-o", &dir.display().to_string()]);
    let out = extra.iter().fold(cmd, |c, a| c.arg(*a)).code(0);
    assert!(
        out.stderr.contains("definition files written to"),
        "{}",
        out.stderr
    );
    let mut files: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    files.sort();
    files
}

#[test]
fn definitions_follow_the_syntax_and_name_every_registered_function() {
    let dir = tempfile::tempdir().unwrap();
    let files = definitions(dir.path(), &[]);
    for (name, _) in &files {
        assert!(name.ends_with(".d.rhai"), "{name}");
    }
    let decls: BTreeSet<Decl> = files.iter().flat_map(|(f, t)| parse(f, t)).collect();

    // The engine's own list: every function a runbook can call, namespaced ones as `ns::f`.
    let script = fleetbook_engine::script::compile(fleetbook_engine::script::ScriptInput {
        name: "x.rhai",
        text: "runbook(\"x\")",
        dir: None,
        lib_dirs: &[],
        libs: &Default::default(),
        params: &Default::default(),
        limits: Default::default(),
    })
    .unwrap();
    let registered = script.engine().gen_fn_signatures(false);
    assert!(registered.len() > 80, "{registered:?}");
    let mut missing = Vec::new();
    for sig in &registered {
        let (path, rest) = sig.split_once('(').unwrap();
        let params = rest.rsplit_once(')').unwrap().0;
        let arity = params.split(", ").filter(|p| !p.is_empty()).count();
        let (module, name) = path.rsplit_once("::").unwrap_or(("", path));
        if !decls.contains(&(module.to_string(), name.to_string(), arity)) {
            missing.push(sig.clone());
        }
    }
    assert!(missing.is_empty(), "not in the definitions: {missing:?}");

    // Registered functions carry the reference's doc; library functions their `///`.
    let pkg = &files.iter().find(|(f, _)| f == "pkg.d.rhai").unwrap().1;
    assert!(
        pkg.contains("install --only-upgrade -- NAMES` / `dnf -y upgrade NAMES`\nfn upgrade(h: ?, names: ?) -> ?;"),
        "{pkg}"
    );
    let stat = &files
        .iter()
        .find(|(f, _)| f == "__static__.d.rhai")
        .unwrap()
        .1;
    assert!(
        stat.contains("\nfn run(h: Host, cmd: string) -> ?;"),
        "{stat}"
    );
    for (lib, text) in fleetbook_stdlib::LIBRARIES {
        let def = &files
            .iter()
            .find(|(f, _)| *f == format!("{lib}.d.rhai"))
            .unwrap_or_else(|| panic!("no {lib}.d.rhai"))
            .1;
        for line in text.lines() {
            if let Some(f) = line.strip_prefix("fn ") {
                let name = f.split('(').next().unwrap();
                assert!(
                    def.contains(&format!("\nfn {name}(")),
                    "{lib}::{name} in {def}"
                );
            }
        }
    }
    let rolling = &files.iter().find(|(f, _)| f == "rolling.d.rhai").unwrap().1;
    // Its `///` doc (summary first, then the example) comes right before it.
    let at = rolling
        .find("\nfn restart_and_wait(h: ?, name: ?, timeout: ?) -> ?;")
        .unwrap_or_else(|| panic!("{rolling}"));
    let doc = &rolling[..at];
    let doc = &doc[doc.rfind("\n\n").map_or(0, |i| i + 2)..];
    assert!(
        doc.starts_with("/// Restart a service and wait until systemd reports it active again."),
        "{doc}"
    );
    assert!(
        doc.contains("/// rolling::restart_and_wait(h, \"nginx\", \"1m\")")
            || doc.contains("rolling::restart_and_wait(h"),
        "{doc}"
    );
}

#[test]
fn definitions_cover_the_library_directories() {
    let dir = tempfile::tempdir().unwrap();
    let libs = dir.path().join("libs");
    std::fs::create_dir(&libs).unwrap();
    std::fs::write(
        libs.join("drain.rhai"),
        "/// Takes a host out of the pool.\n/// Waits for its sessions.\nfn drain(h, timeout) {\n    h.run(\"drain\")\n}\n\nprivate fn helper() { 1 }\n\nfn undrain(h) { h.run(\"undrain\") }\n",
    )
    .unwrap();
    let out = dir.path().join("defs");
    let files = definitions(&out, &["--lib", &libs.display().to_string()]);
    let drain = &files
        .iter()
        .find(|(f, _)| f == "drain.d.rhai")
        .unwrap_or_else(|| panic!("{files:?}"))
        .1;
    assert_eq!(
        drain,
        "module drain;\n\n/// Takes a host out of the pool.\n/// Waits for its sessions.\nfn drain(h: ?, timeout: ?) -> ?;\n\nfn undrain(h: ?) -> ?;\n"
    );
    let decls = parse("drain.d.rhai", drain);
    assert_eq!(decls.len(), 2);

    // A library that does not parse is named.
    std::fs::write(libs.join("broken.rhai"), "fn x( {").unwrap();
    let err = fleetbook(&["definitions", "-o", &out.display().to_string()])
        .arg("--lib")
        .arg(libs.display().to_string())
        .code(2);
    assert!(err.stderr.contains("library broken"), "{}", err.stderr);
}

/// The shipped runbooks' own library reads as the runbook engine reads it: `h.var(...)`
/// (`var` is reserved in plain Rhai) was refused.
#[test]
fn definitions_read_the_shipped_runbook_library() {
    let dir = tempfile::tempdir().unwrap();
    let lib = crate::support::root().join("runbooks/lib");
    let files = definitions(dir.path(), &["--lib", &lib.display().to_string()]);
    for name in ["text.d.rhai", "consul.d.rhai"] {
        let (_, text) = files
            .iter()
            .find(|(f, _)| f == name)
            .unwrap_or_else(|| panic!("no {name}"));
        assert!(text.contains("\nfn "), "{text}");
    }
}
