//! What host operations a module's code calls, found in its syntax tree before it runs.
//!
//! Every call is checked, wherever it is written (top level, functions, closures), by the
//! name it calls, so aliasing a host value does not hide it: `let x = h; x.run(..)` is a
//! call of `run` all the same. What a name cannot be known for — a function pointer made
//! from a computed name, `Fn(name)` — is refused in a confined library. An imported
//! module counts with what it may do (a library: its `uses`; another module: what its own
//! code calls, found the same way), so importing does not widen a library's reach either.
//!
//! Limits: closures a runbook hands to a library run with the runbook's rights (they are
//! the runbook's code), and host values can only reach host operations through the
//! functions listed here: a new host operation must be added to [`namespace_of`].

use rhai::{Expr, Position, Stmt, AST};

/// The namespaces a library may declare in `uses`.
pub const NAMESPACES: &[&str] = &["file", "http", "pkg", "puppet", "reboot", "run", "service"];

/// One call of a host operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub namespace: String,
    /// As written: `h.run`, `pkg::upgrade`, `Fn(...)`.
    pub call: String,
    pub pos: Position,
}

/// The namespace a call belongs to: `ns::f` by its module, a host method by its name.
/// None for everything that is no host operation (`h.var`, `sh::quote`, arithmetic...).
pub fn namespace_of(namespace: &str, name: &str) -> Option<&'static str> {
    if !namespace.is_empty() {
        return NAMESPACES
            .iter()
            .find(|n| **n == namespace && !matches!(**n, "run" | "reboot"))
            .copied();
    }
    match name {
        "run" | "run_ok" | "sudo" | "sudo_ok" => Some("run"),
        "reboot" | "wait_reachable" => Some("reboot"),
        _ => None,
    }
}

fn call_of(namespace: &str, name: &str, args: &[Expr], method: bool, pos: Position) -> Vec<Call> {
    let mut out = Vec::new();
    let shown = match (namespace.is_empty(), method) {
        (false, _) => format!("{namespace}::{name}"),
        (true, true) => format!("h.{name}"),
        (true, false) => name.to_string(),
    };
    if let Some(ns) = namespace_of(namespace, name) {
        out.push(Call {
            namespace: ns.into(),
            call: shown,
            pos,
        });
    } else if namespace.is_empty() && name == "Fn" {
        // A pointer to a named function: the name must be literal, and counts as a call.
        let literal = args
            .first()
            .and_then(|a| a.get_literal_value(None))
            .and_then(|v| v.into_string().ok());
        match literal {
            Some(target) => {
                let (ns, f) = target.rsplit_once("::").unwrap_or(("", &target));
                if let Some(n) = namespace_of(ns, f) {
                    out.push(Call {
                        namespace: n.into(),
                        call: format!("Fn({target:?})"),
                        pos,
                    });
                }
            }
            None => out.push(Call {
                namespace: "computed".into(),
                call: "Fn(...) with a computed name".into(),
                pos,
            }),
        }
    }
    out
}

fn root(ns: &rhai::Namespace) -> &str {
    if ns.is_empty() {
        ""
    } else {
        ns.root()
    }
}

/// Every host-operation call in a module.
pub fn calls(ast: &AST) -> Vec<Call> {
    let mut out = Vec::new();
    ast.walk(&mut |path| {
        match path.last() {
            Some(rhai::ASTNode::Expr(Expr::FnCall(x, pos))) => {
                out.extend(call_of(root(&x.namespace), &x.name, &x.args, false, *pos))
            }
            Some(rhai::ASTNode::Expr(Expr::MethodCall(x, pos))) => {
                out.extend(call_of("", &x.name, &x.args, true, *pos))
            }
            Some(rhai::ASTNode::Stmt(Stmt::FnCall(x, pos))) => {
                out.extend(call_of(root(&x.namespace), &x.name, &x.args, false, *pos))
            }
            // A constant the parser folded: a function pointer, or one inside an array or a
            // map literal (`#{ r: Fn("sudo") }`).
            Some(rhai::ASTNode::Expr(Expr::DynamicConstant(v, pos))) => {
                let mut targets = Vec::new();
                fn_pointers(v, &mut targets);
                for target in targets {
                    let (ns, name) = target.rsplit_once("::").unwrap_or(("", &target));
                    if let Some(n) = namespace_of(ns, name) {
                        out.push(Call {
                            namespace: n.into(),
                            call: format!("Fn({target:?})"),
                            pos: *pos,
                        });
                    }
                }
            }
            _ => {}
        }
        true
    });
    out
}

/// The names of the function pointers in a constant, however deep in arrays and maps.
fn fn_pointers(v: &rhai::Dynamic, out: &mut Vec<String>) {
    if let Some(f) = v.read_lock::<rhai::FnPtr>() {
        out.push(f.fn_name().to_string());
    } else if let Some(a) = v.read_lock::<rhai::Array>() {
        a.iter().for_each(|x| fn_pointers(x, out));
    } else if let Some(m) = v.read_lock::<rhai::Map>() {
        m.values().for_each(|x| fn_pointers(x, out));
    }
}

/// The import statements whose path is not a literal string, with their positions.
pub fn computed_imports(ast: &AST) -> Vec<Position> {
    let mut out = Vec::new();
    ast.walk(&mut |path| {
        if let Some(rhai::ASTNode::Stmt(Stmt::Import(x, pos))) = path.last() {
            if x.0.get_literal_value(None).is_none() {
                out.push(*pos);
            }
        }
        true
    });
    out
}

/// The literal import paths of a module.
pub fn literal_imports(ast: &AST) -> Vec<String> {
    let mut out = Vec::new();
    ast.walk(&mut |path| {
        if let Some(rhai::ASTNode::Stmt(Stmt::Import(x, _))) = path.last() {
            if let Some(s) =
                x.0.get_literal_value(None)
                    .and_then(|v| v.into_string().ok())
            {
                out.push(s);
            }
        }
        true
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str) -> Vec<(String, String)> {
        let engine = rhai::Engine::new_raw();
        let ast = engine.compile(text).unwrap();
        calls(&ast)
            .into_iter()
            .map(|c| (c.namespace, c.call))
            .collect()
    }

    #[test]
    fn host_operations_are_found_however_they_are_written() {
        let text = r#"
            fn f(h) { let x = h; x.run("true") }
            fn g(h) { service::restart(h, "nginx") }
            let k = |h| sudo(h, "id");
            let p = Fn("run_ok");
            sh::quote("x");
        "#;
        let got = found(text);
        for want in [
            ("run", "h.run"),
            ("service", "service::restart"),
            ("run", "sudo"),
            ("run", "Fn(\"run_ok\")"),
        ] {
            assert!(
                got.iter().any(|(n, c)| n == want.0 && c == want.1),
                "{want:?} not in {got:?}"
            );
        }
        assert!(!got.iter().any(|(_, c)| c.contains("quote")), "{got:?}");
        // Inside array and map literals too (folded to constants by the parser).
        for text in [
            "fn f(h) { let m = #{ r: Fn(\"sudo\") }; m.r.call(h, \"id\"); }",
            "fn f(h) { for f in [Fn(\"run\")] { f.call(h, \"id\") } }",
            "fn f(h) { let a = [[Fn(\"run\")]]; a[0][0].call(h, \"id\") }",
        ] {
            let got = found(text);
            assert!(got.iter().any(|(n, _)| n == "run"), "{text}: {got:?}");
        }
        let got = found("let n = \"ru\" + \"n\"; let p = Fn(n);");
        assert_eq!(got[0].0, "computed", "{got:?}");
    }
}
