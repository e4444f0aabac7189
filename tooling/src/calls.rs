//! Calls that nothing defines. Rhai finds an unknown function only when the call runs, and a
//! step's closure runs only when planned against hosts; this reads every call of a compiled
//! runbook (its top level and every closure and function) and checks it against what the
//! engine registers (rhai's `metadata` feature), the runbook's own functions and its imported
//! modules, so that `pkg::upgarde(h, ...)` in a step shows in `check` and in the editor.
//!
//! Lenient by design (it gives warnings): a method is known when any function of that name
//! is, and a call whose name is also a variable or parameter (a closure called by name) is
//! left alone.

use fleetbook_engine::script::Script;
use rhai::{ASTNode, Expr, FnCallExpr, Position, Stmt};
use std::collections::{BTreeMap, BTreeSet};

/// A call nothing defines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unknown {
    /// `pkg::upgarde` or `restrat`.
    pub name: String,
    pub args: usize,
    /// 1-based, in the runbook.
    pub line: usize,
    pub col: usize,
    pub message: String,
}

/// Functions Rhai's parser handles itself.
const KEYWORDS: &[&str] = &[
    "print",
    "debug",
    "type_of",
    "Fn",
    "call",
    "curry",
    "is_def_var",
    "is_def_fn",
    "is_shared",
    "eval",
];

/// What may be called: global names (any arity) and namespaced ones with their arities.
struct Known {
    global: BTreeSet<String>,
    namespaced: BTreeMap<String, BTreeMap<String, BTreeSet<usize>>>,
    /// Variables and parameters: a call of one of these names may be a closure's.
    variables: BTreeSet<String>,
    /// The aliases of the runbook's imports (`import "rolling" as rolling;`).
    aliases: BTreeSet<String>,
}

impl Known {
    fn of(script: &Script) -> Known {
        let mut known = Known {
            global: KEYWORDS.iter().map(|k| k.to_string()).collect(),
            namespaced: BTreeMap::new(),
            variables: BTreeSet::new(),
            aliases: BTreeSet::new(),
        };
        for sig in script.engine().gen_fn_signatures(true) {
            let Some((path, rest)) = sig.split_once('(') else {
                continue;
            };
            let params = rest.rsplit_once(')').map_or("", |(p, _)| p);
            let arity = params.split(", ").filter(|p| !p.is_empty()).count();
            match path.rsplit_once("::") {
                Some((ns, name)) => {
                    known
                        .namespaced
                        .entry(ns.to_string())
                        .or_default()
                        .entry(name.to_string())
                        .or_default()
                        .insert(arity);
                }
                None => {
                    known.global.insert(path.to_string());
                }
            }
        }
        // Import aliases: namespaces the runbook brings in itself.
        script.ast().walk(&mut |path| {
            if let Some(rhai::ASTNode::Stmt(rhai::Stmt::Import(x, _))) = path.last() {
                known.aliases.insert(x.1.name.to_string());
            }
            true
        });
        for f in script.ast().iter_functions() {
            known.global.insert(f.name.to_string());
            known
                .variables
                .extend(f.params.iter().map(|p| p.to_string()));
        }
        known
    }
}

/// Every call in the runbook that nothing defines, in the order written.
pub fn unknown(script: &Script) -> Vec<Unknown> {
    let mut known = Known::of(script);
    let ast = script.ast();
    ast.walk(&mut |path: &[ASTNode]| {
        if let Some(ASTNode::Stmt(Stmt::Var(x, ..))) = path.last() {
            known.variables.insert(x.0.name.to_string());
        }
        true
    });
    let mut out = Vec::new();
    ast.walk(&mut |path: &[ASTNode]| {
        let call = match path.last() {
            Some(ASTNode::Stmt(Stmt::FnCall(x, pos)))
            | Some(ASTNode::Expr(Expr::FnCall(x, pos))) => Some((x, *pos, false)),
            Some(ASTNode::Expr(Expr::MethodCall(x, pos))) => Some((x, *pos, true)),
            _ => None,
        };
        if let Some((x, pos, method)) = call {
            if let Some(u) = check(&known, x, pos, method) {
                if !out.contains(&u) {
                    out.push(u);
                }
            }
        }
        true
    });
    out.sort_by_key(|u| (u.line, u.col));
    out
}

fn check(known: &Known, x: &FnCallExpr, pos: Position, method: bool) -> Option<Unknown> {
    let name = x.name.as_str();
    let is_ident = name.starts_with(|c: char| c.is_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_alphanumeric() || c == '_');
    if x.op_token.is_some() || !is_ident {
        return None;
    }
    // A method's receiver is one more argument.
    let args = x.args.len() + usize::from(method);
    let (shown, message) = if x.namespace.is_empty() {
        if known.global.contains(name) || known.variables.contains(name) {
            return None;
        }
        let what = if method { "method" } else { "function" };
        (
            name.to_string(),
            format!("unknown {what} {name}: fleetbook registers none by that name, and the runbook defines none"),
        )
    } else {
        let ns = x.namespace.root();
        // A namespace nothing registers and no import names (`pkgg::upgrade` in a step, which
        // Rhai finds only when the step runs); an imported module's functions are left to Rhai.
        let Some(fns) = known.namespaced.get(ns) else {
            if known.aliases.contains(ns) || x.namespace.path.len() > 1 {
                return None;
            }
            let modules: BTreeSet<&str> = known
                .namespaced
                .keys()
                .chain(&known.aliases)
                .map(String::as_str)
                .collect();
            let modules: Vec<&str> = modules.into_iter().collect();
            return Some(Unknown {
                name: format!("{ns}::{name}"),
                args,
                line: x.namespace.position().line()?,
                col: x.namespace.position().position().unwrap_or(1),
                message: format!(
                    "unknown module {ns}: fleetbook has no {ns}:: and the runbook imports none by that name (known: {})",
                    modules.join(", ")
                ),
            });
        };
        let shown = format!("{ns}::{name}");
        match fns.get(name) {
            Some(arities) if arities.contains(&args) => return None,
            Some(arities) => {
                let takes: Vec<String> = arities.iter().map(usize::to_string).collect();
                (
                    shown.clone(),
                    format!(
                        "{shown} takes {} argument{}, not {args}",
                        takes.join(" or "),
                        if arities.len() == 1 && arities.contains(&1) {
                            ""
                        } else {
                            "s"
                        }
                    ),
                )
            }
            None => {
                // Closures compile to `anon$...` functions: not callable by name.
                let names: Vec<&str> = fns
                    .keys()
                    .map(String::as_str)
                    .filter(|n| !n.contains('$'))
                    .collect();
                (
                    shown.clone(),
                    format!("unknown function {shown}: {ns}:: has {}", names.join(", ")),
                )
            }
        }
    };
    let at = if x.namespace.is_empty() {
        pos
    } else {
        x.namespace.position()
    };
    Some(Unknown {
        name: shown,
        args,
        line: at.line()?,
        col: at.position().unwrap_or(1),
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetbook_engine::script::{compile, Limits, ScriptInput};

    fn unknown_in(text: &str) -> Vec<(String, usize, usize, String)> {
        let script = compile(ScriptInput {
            name: "rb.rhai",
            text,
            dir: None,
            lib_dirs: &[],
            libs: &Default::default(),
            params: &Default::default(),
            limits: Limits::default(),
        })
        .unwrap();
        unknown(&script)
            .into_iter()
            .map(|u| (u.name, u.line, u.col, u.message))
            .collect()
    }

    #[test]
    fn typos_in_closures_are_found_and_the_rest_is_not() {
        let text = "import \"rolling\" as rolling;\nlet rb = runbook(\"x\");\nfn mine(h) { h.run(\"x\") }\nlet f = |x| x + 1;\n\
                    rb.step(\"a\", |h| {\n  pkg::upgarde(h, [\"x\"]);\n  pkg::install(h);\n  restrat(h);\n  h.rnu(\"x\");\n\
                    mine(h); f(1); rolling::upgrade_to(h, [], \"\"); \"abc\".len(); [1].push(2); print(h.name); h.var(\"a\", 1);\n});\nrb\n";
        let got = unknown_in(text);
        let places: Vec<(&str, usize, usize)> = got
            .iter()
            .map(|(n, l, c, _)| (n.as_str(), *l, *c))
            .collect();
        assert_eq!(
            places,
            [
                ("pkg::upgarde", 6, 3),
                ("pkg::install", 7, 3),
                ("restrat", 8, 3),
                ("rnu", 9, 5)
            ]
        );
        assert_eq!(
            got[0].3,
            "unknown function pkg::upgarde: pkg:: has dist_upgrade, install, remove, restore, update_index, upgrade, version"
        );
        assert_eq!(got[1].3, "pkg::install takes 2 or 3 arguments, not 1");
    }

    // `pkgg::upgrade` in a step: Rhai finds the unknown module only when the step runs.
    #[test]
    fn an_unknown_module_in_a_closure_is_found_and_an_imported_one_is_not() {
        let got = unknown_in(
            "import \"rolling\" as rolling;\nlet rb = runbook(\"x\");\n\
             rb.step(\"a\", |h| pkgg::upgrade(h, [\"a\"]));\n\
             rb.step(\"b\", |h| rolling::restart_and_wait(h, \"nginx\", \"1m\"));\nrb\n",
        );
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(
            (got[0].0.as_str(), got[0].1, got[0].2),
            ("pkgg::upgrade", 3, 18)
        );
        assert!(got[0].3.starts_with("unknown module pkgg:"), "{}", got[0].3);
    }

    #[test]
    fn every_shipped_runbook_calls_only_what_exists() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../runbooks");
        let mut seen = 0;
        for entry in std::fs::read_dir(&root).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "rhai") {
                let (script, _) = fleetbook_engine::plan::load_script(
                    &path,
                    &Default::default(),
                    &[],
                    &Default::default(),
                )
                .unwrap();
                assert_eq!(unknown(&script), Vec::new(), "{}", path.display());
                seen += 1;
            }
        }
        assert!(seen >= 5, "{seen}");
    }
}
