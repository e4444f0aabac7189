//! The Rhai engine, hardened, and the evaluation of a runbook script into a [`Script`]: the
//! runbook model plus what is needed to call its closures later. Errors become diagnostics
//! with file:line:column and a caret.

use crate::api::{self, ApiState, Fleet, FleetBinding, ParamState, RunbookHandle, StepHandle};
use crate::error::{Error, Pos, Result, SourceDiag};
use crate::libs::resolver::{ImportFailed, ModuleCache, Resolver, Used};
use crate::libs::Libraries;
use crate::model::{Param, Runbook};
use crate::secrets::Secrets;
use crate::shared::NameMap;
use fleetbook_stdlib::Host;
use rhai::{Dynamic, Engine, EvalAltResult, FnPtr, Module, Scope, Shared, AST};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Limits that stop a runaway or hostile script.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_operations: u64,
    pub max_call_levels: usize,
    pub max_string_size: usize,
    pub max_array_size: usize,
    pub max_map_size: usize,
    pub max_expr_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_operations: 5_000_000,
            max_call_levels: 64,
            max_string_size: 1 << 20,
            max_array_size: 100_000,
            max_map_size: 100_000,
            max_expr_depth: 128,
        }
    }
}

/// Sources seen while compiling (the runbook and every imported module), by name, so that a
/// diagnostic can quote the right file.
pub type Sources = Arc<Mutex<NameMap<String, Arc<str>>>>;

/// What to compile.
pub struct ScriptInput<'a> {
    /// The name shown in messages (usually the path as the user gave it).
    pub name: &'a str,
    pub text: &'a str,
    /// The runbook's directory: imports are resolved inside it.
    pub dir: Option<&'a Path>,
    /// Further library directories (`--lib`, `FLEETBOOK_PATH`).
    pub lib_dirs: &'a [PathBuf],
    /// The project's dependencies, resolved and checked against the lock.
    pub libs: &'a Libraries,
    pub params: &'a BTreeMap<String, String>,
    pub limits: Limits,
}

/// A compiled and evaluated runbook.
pub struct Script {
    /// The secret parameters, and later every secret of the run ([`crate::plan::secrets_of`]).
    pub secrets: Secrets,
    engine: Engine,
    ast: AST,
    pub name: String,
    pub runbook: Runbook,
    pub params: Vec<Param>,
    pub sources: Sources,
    fleet: FleetBinding,
    max_operations: u64,
    /// The library files and imports the script used (plan, `check -v`).
    pub used: Arc<Mutex<Used>>,
}

fn build_engine(
    input: &ScriptInput,
    state: &ApiState,
    sources: &Sources,
    cache: &ModuleCache,
) -> Result<(Engine, Hooks)> {
    let mut engine = Engine::new();
    let l = &input.limits;
    engine
        .set_max_operations(l.max_operations)
        .set_max_call_levels(l.max_call_levels)
        .set_max_string_size(l.max_string_size)
        .set_max_array_size(l.max_array_size)
        .set_max_map_size(l.max_map_size)
        .set_max_expr_depths(l.max_expr_depth, l.max_expr_depth)
        .set_strict_variables(true)
        .disable_symbol("eval");
    // `var` is reserved in Rhai but is the natural name of `h.var(name)`: let it through as
    // an identifier (it still cannot declare variables; `let` does that).
    #[allow(deprecated)]
    engine.on_parse_token(|token, _pos, _state| match token {
        rhai::Token::Reserved(s) if &**s == "var" => rhai::Token::Identifier(s),
        other => other,
    });
    // Script output must not mix with machine output on stdout, nor show secrets; it is
    // part of the structured log (target `fleetbook::script`): the binary shows `print` by
    // default and `debug` with -v.
    crate::script_output::route(&mut engine, state.secrets.clone(), input.name, "runbook");
    let lib_dirs = crate::libs::from_dirs(input.lib_dirs)?;
    let resolver = Resolver::new(
        input.name,
        input.dir,
        lib_dirs,
        input.libs,
        sources.clone(),
        cache.clone(),
    );
    let hooks = Hooks {
        top: resolver.top.clone(),
        literal: resolver.literal_imports(),
        used: resolver.used.clone(),
    };
    engine.set_module_resolver(resolver);
    fleetbook_stdlib::register(&mut engine);
    api::register(&mut engine, state);
    Ok((engine, hooks))
}

/// What compile() keeps of the resolver once the engine owns it.
struct Hooks {
    top: Arc<Mutex<HashMap<String, Shared<Module>>>>,
    literal: Arc<Mutex<HashMap<String, std::collections::HashSet<String>>>>,
    used: Arc<Mutex<Used>>,
}

/// Marks a parameter value given as a soft default (`version?`): it applies when the
/// runbook declares the parameter, and is ignored otherwise.
pub const SOFT: &str = "?";

/// Compiles and evaluates a runbook script.
pub fn compile(input: ScriptInput) -> Result<Script> {
    let sources: Sources = Arc::default();
    let text: Arc<str> = Arc::from(input.text);
    sources
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(input.name.to_string(), text.clone());
    let state = ApiState {
        main_source: Arc::from(input.name),
        params: Arc::new(Mutex::new(ParamState {
            given: input.params.clone(),
            declared: Vec::new(),
        })),
        runbooks: Arc::default(),
        fleet: Arc::default(),
        secrets: Secrets::new(),
    };
    let cache: ModuleCache = Arc::default();
    let (mut engine, hooks) = build_engine(&input, &state, &sources, &cache)?;
    // An error raised while the script runs may quote a secret parameter's value.
    let diag = |e: &EvalAltResult| {
        script_error(e, input.name, &sources, input.limits.max_operations).redact(&state.secrets)
    };

    let mut ast = engine.compile(input.text).map_err(|e| diag(&e.into()))?;
    ast.set_source(input.name);
    hooks
        .literal
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(
            input.name.to_string(),
            crate::libs::confine::literal_imports(&ast)
                .into_iter()
                .collect(),
        );
    let result: Dynamic = engine
        .eval_ast_with_scope(&mut Scope::new(), &ast)
        .map_err(|e| diag(&e))?;

    // Imports live in the evaluation's state, which is gone when closures are called later;
    // register each top-level `import "path" as alias` as a static module instead.
    for stmt in ast.statements() {
        if let rhai::Stmt::Import(x, _) = stmt {
            let (expr, alias) = &**x;
            let path = expr
                .get_literal_value(None)
                .and_then(|v| v.into_string().ok());
            let module = path.and_then(|p| hooks.top.lock().ok()?.get(&p).cloned());
            if let (Some(m), false) = (module, alias.name.is_empty()) {
                engine.register_static_module(alias.name.as_str(), m);
            }
        }
    }
    // A closure made inside a library function (`rb.step("x", |h| ...)` in a stdlib pattern)
    // is called later by its name, which Rhai looks up in the runbook's own functions and in
    // global modules only (the closure does not carry its module with it): without this,
    // such a step fails with "wrong number of arguments". So the modules the runbook loaded
    // are global modules too, after the runbook's own functions. (A known limit: a runbook
    // can then call an imported library's function without its alias.)
    let loaded: Vec<Shared<Module>> = cache
        .lock()
        .map(|c| c.values().cloned().collect())
        .unwrap_or_default();
    for m in loaded {
        engine.register_global_module(m);
    }
    // The script is parsed and run; what is left is calling its closures, from the dry
    // run's threads at once. Rhai's string interner is a write lock that evaluation takes
    // (for names and property keys), which those threads queued on; without it the strings
    // are allocated instead (planning 10,000 hosts: 0.21 -> 0.195 s wall, the same CPU).
    engine.set_max_strings_interned(0);

    let handle = if let Some(rb) = result.clone().try_cast::<RunbookHandle>() {
        rb
    } else if let Some(st) = result.clone().try_cast::<StepHandle>() {
        st.runbook()
    } else {
        let last = input.text.trim_end().lines().count().max(1);
        let made = state.runbooks.lock().map(|r| r.len()).unwrap_or(0);
        let help = if made > 0 {
            "end the script with the runbook variable, e.g. a last line `rb`"
        } else {
            "create one with `let rb = runbook(\"name\");` and end the script with `rb`"
        };
        return Err(SourceDiag::new(
            input.name,
            text,
            format!(
                "the script must return a runbook, but it returned {}",
                result.type_name()
            ),
        )
        .label_at(last, 1, "the last expression is the script's value")
        .help(help)
        .code("no-runbook")
        .into());
    };
    let runbook = handle.0.lock().unwrap_or_else(|e| e.into_inner()).clone();

    let params = std::mem::take(
        &mut state
            .params
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .declared,
    );
    // `NAME?` keys are soft defaults (a project file's): ignored where not declared.
    let unknown: Vec<&String> = input
        .params
        .keys()
        .filter(|k| !k.ends_with(SOFT) && !params.iter().any(|p| &p.name == *k))
        .collect();
    if !unknown.is_empty() {
        let declared: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
        return Err(Error::input_with_help(
            format!(
                "unknown parameter{} {} for runbook {}",
                if unknown.len() > 1 { "s" } else { "" },
                unknown
                    .iter()
                    .map(|u| format!("--param {u}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                input.name
            ),
            if declared.is_empty() {
                "this runbook declares no parameters".to_string()
            } else {
                format!("it declares: {}", declared.join(", "))
            },
        ));
    }

    Ok(Script {
        secrets: state.secrets.clone(),
        engine,
        ast,
        name: input.name.to_string(),
        runbook,
        params,
        sources,
        fleet: state.fleet,
        max_operations: input.limits.max_operations,
        used: hooks.used,
    })
}

impl Script {
    /// Makes `host(name)` and `hosts(role)` answer with these hosts and groups.
    pub fn bind_fleet(&self, hosts: NameMap<String, Host>, groups: NameMap<String, Vec<String>>) {
        *self.fleet.write().unwrap_or_else(|e| e.into_inner()) =
            Some(Arc::new(Fleet { hosts, groups }));
    }

    /// Forgets the bound hosts (the dry run's, once recorded: the executor binds its own).
    pub fn unbind_fleet(&self) {
        *self.fleet.write().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Calls a host closure (`|h| ...`).
    pub fn call_host(&self, f: &FnPtr, host: Host) -> Result<Dynamic, Box<EvalAltResult>> {
        f.call::<Dynamic>(&self.engine, &self.ast, (host,))
    }

    /// Calls a closure without arguments (`|| ...`).
    pub fn call(&self, f: &FnPtr) -> Result<Dynamic, Box<EvalAltResult>> {
        f.call::<Dynamic>(&self.engine, &self.ast, ())
    }

    /// A diagnostic for an error raised while running one of the script's closures, with
    /// `context` (host, step) in front. An error Rhai gives no position (too many
    /// operations, a data race) points at `fallback`: the step's declaration.
    pub fn error(&self, e: &EvalAltResult, context: &str, fallback: &Pos) -> Error {
        let mut err = script_error(e, &self.name, &self.sources, self.max_operations);
        match &mut err {
            Error::Source(d) => d.message = format!("{context}: {}", d.message),
            Error::Input { message, .. } => {
                let text = self
                    .source_text(&fallback.source)
                    .unwrap_or_else(|| Arc::from(""));
                let inner = message
                    .strip_prefix(&format!("{}: ", fallback.source))
                    .unwrap_or(message);
                return SourceDiag::new(&fallback.source, text, format!("{context}: {inner}"))
                    .label_at(fallback.line, fallback.col, "in this step")
                    .into();
            }
            _ => {}
        }
        err
    }

    /// One line for a run-time failure: the innermost message and where in the script.
    pub fn describe(&self, e: &EvalAltResult) -> String {
        let mut cur = e;
        let mut source = self.name.clone();
        loop {
            match cur {
                EvalAltResult::ErrorInFunctionCall(_, src, inner, _) => {
                    if !src.is_empty() {
                        source = src.clone();
                    }
                    cur = inner;
                }
                EvalAltResult::ErrorInModule(name, inner, _) => {
                    source = name.clone();
                    cur = inner;
                }
                _ => break,
            }
        }
        let msg = error_message(cur, self.max_operations);
        match cur.position().line() {
            Some(line) => format!("{msg} ({source}:{line})"),
            None => msg,
        }
    }

    /// [`describe`](Self::describe), pointing at the step's declaration when Rhai gives the
    /// error no position (too many operations, too deep a recursion).
    pub fn describe_step(&self, e: &EvalAltResult, step: &crate::model::Step) -> String {
        let d = self.describe(e);
        if d.ends_with(')') && d.contains(" (") {
            return d;
        }
        format!(
            "{d} (step {:?} at {}:{})",
            step.name, step.pos.source, step.pos.line
        )
    }

    /// Whether the error came from a host that could not be reached.
    pub fn is_unreachable(e: &EvalAltResult) -> bool {
        matches!(
            Self::transport_error(e),
            Some(fleetbook_stdlib::TransportError::Unreachable(_))
        )
    }

    /// The transport's typed error, when a host operation failed to reach its host.
    pub fn transport_error(e: &EvalAltResult) -> Option<fleetbook_stdlib::TransportError> {
        let mut cur = e;
        loop {
            match cur {
                EvalAltResult::ErrorInFunctionCall(_, _, inner, _)
                | EvalAltResult::ErrorInModule(_, inner, _) => cur = inner,
                EvalAltResult::ErrorRuntime(v, _) => {
                    return v
                        .read_lock::<rhai::Map>()?
                        .get("error")?
                        .clone()
                        .try_cast::<fleetbook_stdlib::TransportError>()
                }
                _ => return None,
            }
        }
    }

    /// The engine with everything a runbook can call registered, for tools that list it
    /// (`fleetbook definitions`, the language server's tests).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The runbook as Rhai parsed it, for tools that read its calls.
    pub fn ast(&self) -> &AST {
        &self.ast
    }

    pub fn source_text(&self, name: &str) -> Option<Arc<str>> {
        self.sources.lock().ok()?.get(name).cloned()
    }
}

/// The human message of a script error, without Rhai's position suffix.
pub fn error_message(e: &EvalAltResult, max_operations: u64) -> String {
    match e {
        EvalAltResult::ErrorRuntime(v, _) => {
            if let Some(f) = v.read_lock::<ImportFailed>() {
                return f.0.clone();
            }
            if let Some(m) = v.read_lock::<rhai::Map>() {
                if let Some(msg) = m.get("message") {
                    return msg.to_string();
                }
            }
            v.to_string()
        }
        EvalAltResult::ErrorTooManyOperations(_) => format!(
            "the script was stopped after {max_operations} operations: an endless loop?"
        ),
        EvalAltResult::ErrorDataRace(what, _) if what.contains("wait_until") => {
            "h.wait_until(|| ...) cannot use `h` inside the closure (Rhai locks `h` during the call): write h.wait_until(|h| ..., timeout), or wait_until(h, || ..., timeout)".into()
        }
        EvalAltResult::ErrorDataRace(what, _) => format!(
            "a closure uses a variable that is in use by the same call ({what}): most often a step closure that uses the runbook variable (`rb`). Closures run on the hosts later and cannot change the runbook: call rb.limit/rb.order/rb.step at the top level of the script, and inside closures use only `h`, params and values computed before"
        ),
        EvalAltResult::ErrorStackOverflow(_) => "the script recursed too deeply and was stopped".into(),
        EvalAltResult::ErrorDataTooLarge(what, _) => format!("{what} grew past fleetbook's limit and the script was stopped"),
        EvalAltResult::ErrorParsing(rhai::ParseErrorType::VariableUndefined(v), _) => {
            format!("variable {v:?} is not defined (fleetbook scripts use strict variables: declare it with `let`)")
        }
        EvalAltResult::ErrorParsing(p, _) => p.to_string(),
        EvalAltResult::ErrorVariableNotFound(v, _) => format!("variable {v:?} is not defined (fleetbook scripts use strict variables: declare it with `let`)"),
        EvalAltResult::ErrorFunctionNotFound(sig, _) if sig.contains("anon$") || sig.starts_with("anon") => format!(
            "a closure was called with the wrong number of arguments ({sig}): host steps take one (`|h| ...`), once/before_role/after_role/gate closures take none (`|| ...`)"
        ),
        other => {
            let s = other.to_string();
            match s.rfind(" (line ") {
                Some(i) if s.ends_with(')') => s[..i].to_string(),
                _ => s,
            }
        }
    }
}

/// The kind of a script error, for [`SourceDiag::code`].
fn code_of(e: &EvalAltResult) -> &'static str {
    match e {
        EvalAltResult::ErrorParsing(rhai::ParseErrorType::ModuleUndefined(_), _) => {
            "unknown-module"
        }
        EvalAltResult::ErrorParsing(rhai::ParseErrorType::VariableUndefined(_), _) => {
            "unknown-variable"
        }
        EvalAltResult::ErrorParsing(..) => "syntax",
        EvalAltResult::ErrorRuntime(v, _) if v.is::<ImportFailed>() => "import",
        EvalAltResult::ErrorModuleNotFound(..) => "unknown-module",
        EvalAltResult::ErrorFunctionNotFound(..) => "unknown-function",
        EvalAltResult::ErrorVariableNotFound(..) => "unknown-variable",
        EvalAltResult::ErrorDataRace(..) => "closure",
        EvalAltResult::ErrorTooManyOperations(_)
        | EvalAltResult::ErrorStackOverflow(_)
        | EvalAltResult::ErrorDataTooLarge(..) => "script-limit",
        _ => "script",
    }
}

/// Turns a Rhai error into a diagnostic that points at the innermost position, in the source
/// (runbook or module) where it happened.
pub fn script_error(
    e: &EvalAltResult,
    main: &str,
    sources: &Sources,
    max_operations: u64,
) -> Error {
    let mut source = main.to_string();
    let mut cur = e;
    let mut trail = Vec::new();
    loop {
        match cur {
            EvalAltResult::ErrorInFunctionCall(name, src, inner, pos) => {
                if !pos.is_none() && !name.starts_with("anon$") {
                    trail.push(format!(
                        "in call to {name} at {source}:{}",
                        pos.line().unwrap_or(0)
                    ));
                }
                if !src.is_empty() {
                    source = src.clone();
                }
                cur = inner;
            }
            EvalAltResult::ErrorInModule(name, inner, _) => {
                trail.push(format!("in module {name}"));
                let known = sources
                    .lock()
                    .map(|s| s.contains_key(name))
                    .unwrap_or(false);
                if known {
                    source = name.clone();
                } else if let Some(k) = sources.lock().ok().and_then(|s| {
                    s.keys()
                        .find(|k| {
                            k.ends_with(&format!("{name}.rhai")) || k.ends_with(name.as_str())
                        })
                        .cloned()
                }) {
                    source = k;
                }
                cur = inner;
            }
            _ => break,
        }
    }
    let message = error_message(cur, max_operations);
    let pos = cur.position();
    let text = sources.lock().ok().and_then(|s| s.get(&source).cloned());
    match (text, pos.line()) {
        (Some(text), Some(line)) => {
            let mut d = SourceDiag::new(&source, text, message)
                .label_at(line, pos.position().unwrap_or(1), "here")
                .code(code_of(cur));
            if !trail.is_empty() {
                d = d.help(trail.join("; "));
            }
            d.into()
        }
        _ => Error::input(format!("{source}: {message}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile_in(dir: Option<&Path>, text: &str, params: &[(&str, &str)]) -> Result<Script> {
        let params: BTreeMap<String, String> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        compile(ScriptInput {
            name: "rb.rhai",
            text,
            dir,
            lib_dirs: &[],
            libs: &Libraries::default(),
            params: &params,
            limits: Limits {
                max_operations: 100_000,
                ..Limits::default()
            },
        })
    }

    fn err(text: &str) -> String {
        match compile_in(None, text, &[]) {
            Ok(_) => panic!("expected an error for {text:?}"),
            Err(e) => {
                let short = e.to_string();
                format!("{short} | {:?}", miette::Report::new(e))
            }
        }
    }

    #[test]
    fn runaway_loops_are_stopped() {
        let e = err("let rb = runbook(\"x\");\nloop { }\nrb");
        assert!(e.contains("stopped after 100000 operations"), "{e}");
    }

    #[test]
    fn eval_is_disabled_and_variables_are_strict() {
        assert!(err("eval(\"1\")").contains("eval"));
        let e = err("let rb = runbook(\"x\");\nrb.limit(\"*\", nope);\nrb");
        assert!(e.contains("\"nope\" is not defined"), "{e}");
    }

    #[test]
    fn script_errors_point_at_line_and_column() {
        let e = compile_in(
            None,
            "let rb = runbook(\"x\");\nrb.limit(\"web\", \"lots\");\nrb",
            &[],
        )
        .err()
        .unwrap();
        let Error::Source(d) = e else {
            panic!("no source")
        };
        assert!(
            d.message.contains("expected a count or a percentage"),
            "{}",
            d.message
        );
        let span = d.labels[0].inner();
        let text = "let rb = runbook(\"x\");\nrb.limit(\"web\", \"lots\");\nrb";
        assert_eq!(&text[span.offset()..span.offset() + span.len()], "limit");
    }

    #[test]
    fn imports_cannot_escape() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("lib.rhai"), "fn greet() { \"hi\" }").unwrap();
        for bad in ["../x", "/etc/passwd", "sub/../../x"] {
            let text = format!("import \"{bad}\" as m;\nlet rb = runbook(\"x\");\nrb");
            let e = compile_in(Some(dir.path()), &text, &[])
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.contains("is not allowed"), "{bad}: {e}");
        }
        let ok = "import \"lib\" as m;\nlet rb = runbook(m::greet());\nrb";
        assert_eq!(
            compile_in(Some(dir.path()), ok, &[]).unwrap().runbook.name,
            "hi"
        );
        let builtin = "import \"rolling\" as r;\nlet rb = runbook(\"x\");\nrb";
        assert!(compile_in(None, builtin, &[]).is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn imports_cannot_escape_through_a_symlink() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("evil.rhai"), "fn x() { 1 }").unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("evil.rhai"),
            dir.path().join("evil.rhai"),
        )
        .unwrap();
        let e = compile_in(
            Some(dir.path()),
            "import \"evil\" as m;\nlet rb = runbook(\"x\");\nrb",
            &[],
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("through a symlink"), "{e}");
    }

    #[test]
    fn params_take_the_default_type_and_unknown_ones_are_errors() {
        let text = "let n = param(\"n\", 2);\nlet rb = runbook(`x${n + 1}`);\nrb";
        assert_eq!(
            compile_in(None, text, &[("n", "40")]).unwrap().runbook.name,
            "x41"
        );
        let e = compile_in(None, text, &[("n", "forty")])
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("expected an integer"), "{e}");
        let e = compile_in(None, text, &[("m", "1")]).err().unwrap();
        assert!(e.to_string().contains("unknown parameter --param m"), "{e}");
    }

    #[test]
    fn the_script_must_return_a_runbook() {
        let e = err("let rb = runbook(\"x\");\n42");
        assert!(e.contains("must return a runbook"), "{e}");
    }

    #[test]
    fn step_options_are_recorded() {
        let text = "let rb = runbook(\"x\");\nrb.step(\"a\", |h| h.run(\"true\")).roles([\"web\"]).timeout(\"15m\").retries(2).retry_delay(\"10s\").throttle(3).idempotent(true);\nrb";
        let s = compile_in(None, text, &[]).unwrap();
        let st = &s.runbook.steps[0];
        assert_eq!(
            st.scope,
            crate::model::Scope::Host {
                roles: Some(vec!["web".into()])
            }
        );
        assert_eq!(st.timeout, Some(std::time::Duration::from_secs(900)));
        assert_eq!((st.retries, st.throttle, st.idempotent), (2, Some(3), true));
        assert_eq!(st.pos.line, 2);
        let e = err("let rb = runbook(\"x\");\nrb.once(\"a\", || 1).throttle(2);\nrb");
        assert!(e.contains("applies to per-host steps"), "{e}");
    }

    /// Every `name(args)` call form in a text: (name with its `ns::`, arity counting a method
    /// call's receiver). `h.name` without parentheses counts as the property `get$name`.
    fn call_forms(text: &str) -> std::collections::BTreeSet<(String, usize)> {
        let mut out = std::collections::BTreeSet::new();
        let b = text.as_bytes();
        let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
        let mut i = 0;
        while i < b.len() {
            if !ident(b[i]) || (i > 0 && (ident(b[i - 1]) || b[i - 1] == b':')) {
                i += 1;
                continue;
            }
            let start = i;
            while i < b.len() && (ident(b[i]) || (b[i] == b':' && b.get(i + 1) == Some(&b':'))) {
                i += if b[i] == b':' { 2 } else { 1 };
            }
            let name = &text[start..i];
            let method = start > 0 && b[start - 1] == b'.';
            if b.get(i) != Some(&b'(') {
                if method {
                    out.insert((format!("get${name}"), 1));
                }
                continue;
            }
            // Count the arguments at depth 0 up to the matching ')'.
            let (mut depth, mut args, mut j, mut empty) = (0, 0, i + 1, true);
            while j < b.len() {
                match b[j] {
                    b'(' | b'[' | b'{' => depth += 1,
                    b')' | b']' | b'}' if depth == 0 => break,
                    b')' | b']' | b'}' => depth -= 1,
                    b',' if depth == 0 => args += 1,
                    b'|' if depth == 0 => {
                        // A closure's parameters: |h| or |a, b|.
                        if let Some(end) = text[j + 1..].find('|') {
                            j += end + 1;
                        }
                    }
                    c if !c.is_ascii_whitespace() => {}
                    _ => {}
                }
                if !b[j].is_ascii_whitespace() {
                    empty = false;
                }
                j += 1;
            }
            let arity = if empty { 0 } else { args + 1 } + usize::from(method);
            out.insert((name.to_string(), arity));
        }
        out
    }

    // 5 registered functions were in no doc (`pkg::install(h, name)`, `rolling::puppet_off`,
    // `checks::http_healthy`, ...): every function a runbook can call is documented now, with
    // its every arity, in docs/runbook-language.md.
    #[test]
    fn every_registered_function_is_documented() {
        let doc_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/runbook-language.md");
        let doc = std::fs::read_to_string(&doc_path).unwrap();
        let mut documented = std::collections::BTreeSet::new();
        for (i, span) in doc.split('`').enumerate() {
            if i % 2 == 1 {
                documented.extend(call_forms(&span.replace("\\|", "|")));
            }
        }
        let script = compile_in(None, "let rb = runbook(\"x\"); rb", &[]).unwrap();
        let mut registered: Vec<(String, usize)> = script
            .engine
            .gen_fn_signatures(false)
            .iter()
            .map(|sig| {
                let (name, rest) = sig.split_once('(').unwrap();
                let params = rest.split(") ->").next().unwrap().trim_end_matches(')');
                let arity = if params.trim().is_empty() {
                    0
                } else {
                    params.split(", ").count()
                };
                (name.to_string(), arity)
            })
            .collect();
        for (lib, text) in fleetbook_stdlib::LIBRARIES {
            for line in text.lines() {
                if let Some(def) = line.trim_start().strip_prefix("fn ") {
                    let (name, rest) = def.split_once('(').unwrap();
                    let params = rest.split(')').next().unwrap();
                    let arity = params.split(',').filter(|p| !p.trim().is_empty()).count();
                    registered.push((format!("{lib}::{name}"), arity));
                }
            }
        }
        // Rhai calls these itself for `print(h)`, `debug(h)` and `${h}`.
        let implicit = ["to_string", "to_debug"];
        let missing: Vec<String> = registered
            .iter()
            .filter(|(n, _)| !implicit.contains(&n.as_str()))
            .filter(|f| !documented.contains(*f))
            .map(|(n, a)| format!("{n}/{a}"))
            .collect();
        assert!(
            registered.len() > 80,
            "only {} functions listed",
            registered.len()
        );
        assert!(
            missing.is_empty(),
            "registered but not documented in docs/runbook-language.md (name/arity, a method \
             counting its receiver): {missing:?}"
        );
    }
}
