//! Runbook tests without a fleet (`fleetbook test`): `*_test.rhai` files plan a runbook
//! against an inline inventory and assert on the dry-run plan. Takes test files, gives one
//! outcome per test (`fn test_*()`, or the whole file when it has none), with the failing
//! assertion's file:line:col. Paths in a test file resolve relative to it and stay inside the
//! test root, as imports stay inside their directories.

use crate::error::{read_file, Error, Result};
use crate::inventory::{Format, Inventory};
use crate::plan::{self, Plan, TaskInfo};
use crate::script::{self, Limits, ScriptInput};
use rhai::{Array, CallFnOptions, Dynamic, Engine, EvalAltResult, Map, NativeCallContext, Scope};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

type RhaiResult<T> = std::result::Result<T, Box<EvalAltResult>>;

/// One test's result.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub file: PathBuf,
    /// `test_rolls_one_host_at_a_time`, or `""` for a file without test functions.
    pub name: String,
    /// `None` when it passed; else `file:line:col: message`.
    pub failure: Option<String>,
}

/// The `*_test.rhai` files under `path` (itself when it is a file), sorted; hidden
/// directories and `target/` are skipped.
pub fn discover(path: &Path) -> Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    if !path.is_dir() {
        return Err(Error::input(format!(
            "{}: no such file or directory",
            path.display()
        )));
    }
    let mut found = Vec::new();
    walk(path, &mut found)?;
    found.sort();
    Ok(found)
}

fn walk(dir: &Path, found: &mut Vec<PathBuf>) -> Result<()> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| Error::input(format!("{}: {e}", dir.display())))?;
    for entry in entries.flatten() {
        let p = entry.path();
        let name = entry.file_name().to_string_lossy().to_string();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            if !name.starts_with('.') && name != "target" {
                walk(&p, found)?;
            }
        } else if name.ends_with("_test.rhai") {
            found.push(p);
        }
    }
    Ok(())
}

/// Runs one test file. `root`: the directory its paths must stay inside.
/// `libs`: the project's dependencies, so a test plans a runbook as `fleetbook plan` would.
pub fn run_file(
    file: &Path,
    root: &Path,
    lib_dirs: &[PathBuf],
    libs: &crate::libs::Libraries,
) -> Vec<Outcome> {
    let shown = file.display().to_string();
    let fail = |name: &str, msg: String| Outcome {
        file: file.to_path_buf(),
        name: name.to_string(),
        failure: Some(msg),
    };
    let text = match read_file(file) {
        Ok(t) => t,
        Err(e) => return vec![fail("", e.to_string())],
    };
    let dir = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let ctx = Arc::new(Context {
        dir: dir.to_path_buf(),
        root: root.canonicalize().unwrap_or_else(|_| root.to_path_buf()),
        lib_dirs: lib_dirs.to_vec(),
        libs: libs.clone(),
    });
    let engine = test_engine(&ctx, &shown);
    let mut ast = match engine.compile(&text) {
        Ok(a) => a,
        Err(e) => {
            let p = e.position();
            return vec![fail(
                "",
                format!(
                    "{shown}:{}:{}: {}",
                    p.line().unwrap_or(0),
                    p.position().unwrap_or(0),
                    e.err_type()
                ),
            )];
        }
    };
    ast.set_source(shown.as_str());
    let mut scope = Scope::new();
    if let Err(e) = engine.run_ast_with_scope(&mut scope, &ast) {
        return vec![fail("", located(&shown, &e))];
    }
    // In the order written (Rhai lists functions in no particular order).
    let tests: Vec<String> = crate::libdoc::functions(&text)
        .into_iter()
        .filter(|f| f.name.starts_with("test_") && f.params.is_empty())
        .filter(|f| {
            ast.iter_functions()
                .any(|a| a.name == f.name && a.params.is_empty())
        })
        .map(|f| f.name)
        .collect();
    if tests.is_empty() {
        return vec![Outcome {
            file: file.to_path_buf(),
            name: String::new(),
            failure: None,
        }];
    }
    tests
        .iter()
        .map(|name| {
            let options = CallFnOptions::new().eval_ast(false).rewind_scope(true);
            let r = engine.call_fn_with_options::<Dynamic>(options, &mut scope, &ast, name, ());
            Outcome {
                file: file.to_path_buf(),
                name: name.clone(),
                failure: r.err().map(|e| located(&shown, &e)),
            }
        })
        .collect()
}

/// `file:line:col: message` of the innermost error: the assertion, not the test's call.
fn located(file: &str, e: &EvalAltResult) -> String {
    let mut inner = e;
    while let EvalAltResult::ErrorInFunctionCall(_, _, next, _)
    | EvalAltResult::ErrorInModule(_, next, _) = inner
    {
        inner = next;
    }
    let p = inner.position();
    let msg = match inner {
        EvalAltResult::ErrorRuntime(v, _) => v.to_string(),
        other => other.to_string(),
    };
    // Rhai's own messages end with their position; the prefix says it already.
    let msg = msg
        .strip_suffix(&format!(" ({p})"))
        .unwrap_or(&msg)
        .to_string();
    format!(
        "{file}:{}:{}: {msg}",
        p.line().unwrap_or(0),
        p.position().unwrap_or(0)
    )
}

/// Where a test file's paths resolve.
struct Context {
    dir: PathBuf,
    root: PathBuf,
    lib_dirs: Vec<PathBuf>,
    libs: crate::libs::Libraries,
}

fn error_at(ctx: &NativeCallContext, msg: impl Into<String>) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorRuntime(
        msg.into().into(),
        ctx.call_position(),
    ))
}

impl Context {
    /// A runbook path of a test file: relative to it, never absolute, and inside the root
    /// after `..` and symlinks.
    fn resolve(&self, rel: &str) -> std::result::Result<PathBuf, String> {
        let p = Path::new(rel);
        if p.is_absolute() {
            return Err(format!(
                "{rel:?}: paths in a test are relative to the test file, not absolute"
            ));
        }
        let joined = self.dir.join(p);
        let real = joined
            .canonicalize()
            .map_err(|e| format!("{}: {e}", joined.display()))?;
        if !real.starts_with(&self.root) {
            return Err(format!(
                "{rel:?} leads outside {} (the directory the tests run in)",
                self.root.display()
            ));
        }
        Ok(joined)
    }

    /// The plan of a runbook (a file, or `text` named `name`), against `opts`.
    fn plan(&self, runbook: Runbook, opts: &Map) -> std::result::Result<plan::Planned, String> {
        let inventory = match opts.get("inventory") {
            Some(v) => v
                .clone()
                .into_string()
                .map_err(|t| format!("inventory must be the inventory's text, found {t}"))?,
            None => return Err("opts.inventory (the inventory's text) is missing".into()),
        };
        let format = match opts.get("format").map(|v| v.to_string()).as_deref() {
            None | Some("ini") => Format::Ini,
            Some("yaml") | Some("yml") => Format::Yaml,
            Some("toml") => Format::Toml,
            Some("json") => Format::Json,
            Some(other) => {
                return Err(format!(
                    "format must be ini, yaml, toml or json, not {other:?}"
                ))
            }
        };
        let mut params = BTreeMap::new();
        if let Some(p) = opts.get("params") {
            let map = p
                .clone()
                .try_cast::<Map>()
                .ok_or("params must be a map: #{ version: \"2.0\" }")?;
            for (k, v) in map {
                params.insert(k.to_string(), v.to_string());
            }
        }
        let limit = opts.get("limit").map(|v| v.to_string());
        for key in opts.keys() {
            if !["inventory", "format", "params", "limit"].contains(&key.as_str()) {
                return Err(format!(
                    "unknown option {key:?}: inventory, format, params and limit are known"
                ));
            }
        }
        let (script, digest) = match runbook {
            Runbook::File(path) => plan::load_script(&path, &params, &self.lib_dirs, &self.libs),
            Runbook::Text(text) => script::compile(ScriptInput {
                name: "<inline runbook>",
                text: &text,
                dir: Some(&self.dir),
                lib_dirs: &self.lib_dirs,
                libs: &self.libs,
                params: &params,
                limits: Limits::default(),
            })
            .map(|s| (s, plan::digest(text.as_bytes()))),
        }
        .map_err(|e| describe(&e))?;
        let inv =
            Inventory::parse("<inline inventory>", &inventory, format).map_err(|e| describe(&e))?;
        let inv_digest = plan::digest(inventory.as_bytes());
        plan::plan_loaded(script, digest, inv, inv_digest, limit.as_deref())
            .map_err(|e| describe(&e))
    }
}

enum Runbook {
    File(PathBuf),
    Text(String),
}

/// An engine error as one message, with the position of a script error when it has one.
fn describe(e: &Error) -> String {
    use miette::Diagnostic;
    let mut msg = e.to_string();
    if let Some(labels) = e.labels() {
        if let (Some(l), Some(src)) = (labels.into_iter().next(), e.source_code()) {
            if let Ok(span) = src.read_span(l.inner(), 0, 0) {
                if let Some(name) = span.name() {
                    msg = format!("{msg} ({name}:{}:{})", span.line() + 1, span.column() + 1);
                }
            }
        }
    }
    msg
}

/// The plan a test asserts on: `Plan` in scripts.
#[derive(Clone)]
pub struct PlanView(Arc<Plan>);

impl PlanView {
    fn task(&self, reference: &str) -> Option<&TaskInfo> {
        let p = &self.0;
        if let Some(t) = p.tasks.iter().find(|t| t.id == reference) {
            return Some(t);
        }
        let (host, step) = reference.split_once('/')?;
        let id = format!("host:{host}:{step}");
        p.tasks.iter().find(|t| t.id == id)
    }

    /// Start and end of a task (`host/step`, a task id) or of a host (`web1`).
    fn span(&self, reference: &str) -> Option<(u64, u64)> {
        if let Some(t) = self.task(reference) {
            return Some((t.start, t.end));
        }
        let h = self.0.hosts.iter().find(|h| h.name == reference)?;
        Some((h.start, h.end))
    }

    fn host_tasks(&self, host: &str) -> Vec<&TaskInfo> {
        let mut tasks: Vec<&TaskInfo> = self
            .0
            .tasks
            .iter()
            .filter(|t| t.host.as_deref() == Some(host))
            .collect();
        tasks.sort_by_key(|t| t.start);
        tasks
    }
}

fn strings(list: impl IntoIterator<Item = impl Into<String>>) -> Array {
    list.into_iter().map(|s| Dynamic::from(s.into())).collect()
}

fn unknown(ctx: &NativeCallContext, p: &PlanView, what: &str) -> Box<EvalAltResult> {
    let hosts: Vec<&str> = p.0.hosts.iter().map(|h| h.name.as_str()).collect();
    error_at(
        ctx,
        format!(
            "the plan has no {what:?} (a host, host/step, or a task id such as once:NAME); hosts: {}",
            hosts.join(", ")
        ),
    )
}

fn test_engine(ctx: &Arc<Context>, name: &str) -> Engine {
    let mut engine = Engine::new();
    let l = Limits::default();
    engine
        .set_max_operations(l.max_operations)
        .set_max_call_levels(l.max_call_levels)
        .set_max_string_size(l.max_string_size)
        .set_max_array_size(l.max_array_size)
        .set_max_map_size(l.max_map_size)
        .set_strict_variables(true)
        .disable_symbol("eval");
    crate::script_output::route(&mut engine, crate::secrets::Secrets::new(), name, "test");
    register_planning(&mut engine, ctx);
    register_plan_view(&mut engine);
    register_asserts(&mut engine);
    engine
}

fn register_planning(engine: &mut Engine, ctx: &Arc<Context>) {
    let c = ctx.clone();
    let file_plan = move |nc: &NativeCallContext, path: &str, opts: &Map| -> RhaiResult<PlanView> {
        let path = c.resolve(path).map_err(|m| error_at(nc, m))?;
        c.plan(Runbook::File(path), opts)
            .map(|p| PlanView(Arc::new(p.plan)))
            .map_err(|m| error_at(nc, format!("plan failed: {m}")))
    };
    let f = file_plan.clone();
    engine.register_fn(
        "plan",
        move |nc: NativeCallContext, path: &str, opts: Map| f(&nc, path, &opts),
    );
    let c = ctx.clone();
    engine.register_fn(
        "plan_script",
        move |nc: NativeCallContext, text: &str, opts: Map| -> RhaiResult<PlanView> {
            c.plan(Runbook::Text(text.to_string()), &opts)
                .map(|p| PlanView(Arc::new(p.plan)))
                .map_err(|m| error_at(&nc, format!("plan failed: {m}")))
        },
    );
    // The error a plan fails with, for tests of what a runbook refuses.
    let c = ctx.clone();
    engine.register_fn(
        "plan_error",
        move |nc: NativeCallContext, path: &str, opts: Map| -> RhaiResult<String> {
            let path = c.resolve(path).map_err(|m| error_at(&nc, m))?;
            match c.plan(Runbook::File(path.clone()), &opts) {
                Ok(_) => Err(error_at(
                    &nc,
                    format!(
                        "expected the plan of {} to fail, but it planned",
                        path.display()
                    ),
                )),
                Err(m) => Ok(m),
            }
        },
    );
    let c = ctx.clone();
    engine.register_fn(
        "plan_script_error",
        move |nc: NativeCallContext, text: &str, opts: Map| -> RhaiResult<String> {
            match c.plan(Runbook::Text(text.to_string()), &opts) {
                Ok(_) => Err(error_at(&nc, "expected the plan to fail, but it planned")),
                Err(m) => Ok(m),
            }
        },
    );
}

fn register_plan_view(engine: &mut Engine) {
    engine.register_type_with_name::<PlanView>("Plan");
    engine.register_fn("hosts", |p: &mut PlanView| {
        strings(p.0.hosts.iter().map(|h| h.name.clone()))
    });
    engine.register_fn("hosts", |p: &mut PlanView, role: &str| {
        strings(
            p.0.hosts
                .iter()
                .filter(|h| h.roles.iter().any(|r| r == role))
                .map(|h| h.name.clone()),
        )
    });
    engine.register_fn("roles", |p: &mut PlanView| {
        strings(p.0.roles.iter().map(|r| r.name.clone()))
    });
    engine.register_fn("steps", |p: &mut PlanView| {
        strings(p.0.runbook.steps.iter().map(|s| s.name.clone()))
    });
    engine.register_fn("tasks", |p: &mut PlanView| {
        strings(p.0.tasks.iter().map(|t| t.id.clone()))
    });
    engine.register_fn("warnings", |p: &mut PlanView| strings(p.0.warnings.clone()));
    engine.register_get("duration", |p: &mut PlanView| p.0.duration as rhai::INT);
    engine.register_fn(
        "commands",
        |nc: NativeCallContext, p: &mut PlanView, what: &str| -> RhaiResult<Array> {
            if let Some(t) = p.0.tasks.iter().find(|t| t.id == what) {
                return Ok(strings(t.commands.iter().cloned()));
            }
            if p.0.hosts.iter().any(|h| h.name == what) {
                return Ok(strings(
                    p.host_tasks(what)
                        .into_iter()
                        .flat_map(|t| t.commands.iter().cloned()),
                ));
            }
            Err(unknown(&nc, p, what))
        },
    );
    engine.register_fn(
        "commands",
        |nc: NativeCallContext, p: &mut PlanView, host: &str, step: &str| -> RhaiResult<Array> {
            let reference = format!("{host}/{step}");
            match p.task(&reference) {
                Some(t) => Ok(strings(t.commands.iter().cloned())),
                None => Err(unknown(&nc, p, &reference)),
            }
        },
    );
    engine.register_fn(
        "undo_commands",
        |nc: NativeCallContext, p: &mut PlanView, host: &str, step: &str| -> RhaiResult<Array> {
            let reference = format!("{host}/{step}");
            match p.task(&reference) {
                Some(t) => Ok(strings(t.undo_commands.iter().cloned())),
                None => Err(unknown(&nc, p, &reference)),
            }
        },
    );
    // Whether a host runs a step: planned, not skipped by `.when`, not held.
    engine.register_fn("runs", |p: &mut PlanView, host: &str, step: &str| {
        p.task(&format!("{host}/{step}"))
            .is_some_and(|t| !t.skipped && !t.held)
    });
    engine.register_fn("held", |p: &mut PlanView| {
        let mut held: Vec<String> = Vec::new();
        for t in p.0.tasks.iter().filter(|t| t.held) {
            if let Some(h) = &t.host {
                if !held.iter().any(|x| x == h) {
                    held.push(h.to_string());
                }
            }
        }
        strings(held)
    });
    engine.register_fn(
        "before",
        |nc: NativeCallContext, p: &mut PlanView, a: &str, b: &str| -> RhaiResult<bool> {
            let sa = p.span(a).ok_or_else(|| unknown(&nc, p, a))?;
            let sb = p.span(b).ok_or_else(|| unknown(&nc, p, b))?;
            Ok(sa.1 <= sb.0)
        },
    );
    engine.register_fn(
        "max_in_flight",
        |nc: NativeCallContext, p: &mut PlanView, role: &str| -> RhaiResult<rhai::INT> {
            if !p.0.roles.iter().any(|r| r.name == role) {
                let roles: Vec<&str> = p.0.roles.iter().map(|r| r.name.as_str()).collect();
                return Err(error_at(
                    &nc,
                    format!("the plan has no role {role:?}; roles: {}", roles.join(", ")),
                ));
            }
            Ok(max_in_flight(&p.0, role) as rhai::INT)
        },
    );
    engine.register_fn("limit", |p: &mut PlanView, role: &str| -> Dynamic {
        p.0.roles
            .iter()
            .find(|r| r.name == role)
            .and_then(|r| r.limit)
            .map_or(Dynamic::UNIT, |n| Dynamic::from(n as rhai::INT))
    });
    engine.register_fn("to_string", |p: &mut PlanView| {
        format!("Plan({} on {} hosts)", p.0.runbook.name, p.0.hosts.len())
    });
}

/// The most hosts of `role` in flight at once in the simulated schedule (a host runs from
/// its first task's start to its last task's end; hosts that run nothing are not counted).
fn max_in_flight(p: &Plan, role: &str) -> usize {
    let mut edges: Vec<(u64, i32)> = Vec::new();
    for h in p.hosts.iter().filter(|h| h.roles.iter().any(|r| r == role)) {
        let runs = p
            .tasks
            .iter()
            .any(|t| t.host.as_deref() == Some(&h.name) && !t.skipped && !t.held);
        if runs && h.end > h.start {
            edges.push((h.start, 1));
            edges.push((h.end, -1));
        }
    }
    // Ends before starts at the same time: a slot freed at t is taken at t.
    edges.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        most = most.max(now);
    }
    most as usize
}

fn same(a: &Dynamic, b: &Dynamic) -> bool {
    a.type_name() == b.type_name() && format!("{a:?}") == format!("{b:?}")
}

fn register_asserts(engine: &mut Engine) {
    fn check(nc: &NativeCallContext, ok: bool, msg: String) -> RhaiResult<()> {
        if ok {
            Ok(())
        } else {
            Err(error_at(nc, msg))
        }
    }
    engine.register_fn("assert", |nc: NativeCallContext, ok: bool| {
        check(&nc, ok, "assertion failed".into())
    });
    engine.register_fn("assert", |nc: NativeCallContext, ok: bool, msg: &str| {
        check(&nc, ok, format!("assertion failed: {msg}"))
    });
    let eq = |a: &Dynamic, b: &Dynamic, what: &str| {
        format!("assertion failed: {what}\n  left: {a:?}\n right: {b:?}")
    };
    engine.register_fn(
        "assert_eq",
        move |nc: NativeCallContext, a: Dynamic, b: Dynamic| {
            check(&nc, same(&a, &b), eq(&a, &b, "left == right"))
        },
    );
    engine.register_fn(
        "assert_eq",
        move |nc: NativeCallContext, a: Dynamic, b: Dynamic, msg: &str| {
            check(&nc, same(&a, &b), eq(&a, &b, msg))
        },
    );
    engine.register_fn(
        "assert_ne",
        move |nc: NativeCallContext, a: Dynamic, b: Dynamic| {
            check(&nc, !same(&a, &b), eq(&a, &b, "left != right"))
        },
    );
    engine.register_fn(
        "assert_ne",
        move |nc: NativeCallContext, a: Dynamic, b: Dynamic, msg: &str| {
            check(&nc, !same(&a, &b), eq(&a, &b, msg))
        },
    );
}
