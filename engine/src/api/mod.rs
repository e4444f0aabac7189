//! The runbook-building API a script sees: `runbook(name)`, `param(...)`, and the methods
//! of the `Runbook` and `Step` values. Every declaration records its script position so
//! that later errors (a cycle, an unknown role) point back at the line that caused them.

use crate::error::Pos;
use crate::model::{
    Amount, Canary, LimitBy, OrderEdge, Param, RoleAmount, RollbackScope, Runbook, Scope, Step,
};
use fleetbook_stdlib::{duration::parse_duration, runtime_error, Host};
use rhai::{Array, Dynamic, Engine, EvalAltResult, FnPtr, NativeCallContext, INT};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

mod fleet;
mod runbook;
mod step;

type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

/// The `Runbook` value in a script. Clones share one model, so `rb.step(...)` in any
/// variable that holds it changes the same runbook.
#[derive(Clone)]
pub struct RunbookHandle(pub Arc<Mutex<Runbook>>);

/// The value `rb.step(...)` returns; its methods set options on that step.
#[derive(Clone)]
pub struct StepHandle {
    rb: Arc<Mutex<Runbook>>,
    index: usize,
}

/// Parameters given on the command line and those the script declared.
#[derive(Default)]
pub struct ParamState {
    pub given: BTreeMap<String, String>,
    pub declared: Vec<Param>,
}

/// Hosts a `once`/gate closure can reach with `host(name)` and `hosts(role)`, bound when
/// the runbook is planned against an inventory.
pub type FleetBinding = Arc<RwLock<Option<Arc<Fleet>>>>;

/// The whole inventory, whatever `--limit` selected: `--limit` restricts which hosts the
/// run acts on, not what the runbook can read (as Ansible's `groups[...]`).
#[derive(Default)]
pub struct Fleet {
    pub hosts: crate::shared::NameMap<String, Host>,
    /// Every group with its hosts (through child groups), in inventory order.
    pub groups: crate::shared::NameMap<String, Vec<String>>,
}

/// Everything the API closures share.
#[derive(Clone)]
pub struct ApiState {
    pub main_source: Arc<str>,
    pub params: Arc<Mutex<ParamState>>,
    pub runbooks: Arc<Mutex<Vec<RunbookHandle>>>,
    pub fleet: FleetBinding,
    /// Known as soon as `secret_param` returns, so that even `print` redacts them.
    pub secrets: crate::secrets::Secrets,
}

impl ApiState {
    fn pos(&self, ctx: &NativeCallContext) -> Pos {
        let p = ctx.call_position();
        Pos {
            source: ctx
                .call_source()
                .filter(|s| !s.is_empty())
                .unwrap_or(&self.main_source)
                .to_string(),
            line: p.line().unwrap_or(0),
            col: p.position().unwrap_or(0),
        }
    }
}

fn lock(rb: &Arc<Mutex<Runbook>>) -> std::sync::MutexGuard<'_, Runbook> {
    // A panic while holding the lock cannot leave the model half-written in a way that
    // matters: the run is over by then.
    rb.lock().unwrap_or_else(|e| e.into_inner())
}

fn strings(list: &Array, what: &str) -> RhaiResult<Vec<String>> {
    list.iter()
        .map(|v| {
            v.clone().into_string().map_err(|t| {
                runtime_error(format!(
                    "{what} must be a list of role names (strings), found {t}"
                ))
            })
        })
        .collect()
}

fn amount(v: &Dynamic, what: &str) -> RhaiResult<Amount> {
    if let Some(n) = v.clone().try_cast::<INT>() {
        if n < 0 {
            return Err(runtime_error(format!(
                "{what} must not be negative, found {n}"
            )));
        }
        return Ok(Amount::Count(n.min(u32::MAX as INT) as u32));
    }
    match v.clone().into_string() {
        Ok(s) => Amount::parse(&s).map_err(|e| runtime_error(format!("{what}: {e}"))),
        Err(t) => Err(runtime_error(format!(
            "{what} must be a count or a percentage like \"25%\", found {t}"
        ))),
    }
}

fn positive(v: INT, what: &str) -> RhaiResult<u32> {
    if v < 1 {
        return Err(runtime_error(format!(
            "{what} must be at least 1, found {v}"
        )));
    }
    Ok(v.min(u32::MAX as INT) as u32)
}

/// A duration argument: `"90s"`, `"1h30m"`, or a bare number of seconds (`90`).
fn duration(value: Dynamic, what: &str) -> RhaiResult<std::time::Duration> {
    if let Some(n) = value.clone().try_cast::<INT>() {
        return u64::try_from(n)
            .map(std::time::Duration::from_secs)
            .map_err(|_| runtime_error(format!("{what} must not be negative, found {n}")));
    }
    match value.into_string() {
        Ok(text) => parse_duration(&text).map_err(|e| runtime_error(format!("{what}: {e}"))),
        Err(t) => Err(runtime_error(format!(
            "{what} must be a duration like \"90s\" or \"15m\", or a number of seconds, found {t}"
        ))),
    }
}

/// Converts a `--param` string to the type of the script's default.
fn convert_param(name: &str, given: &str, default: &Dynamic) -> RhaiResult<Dynamic> {
    let bad = |t: &str| {
        runtime_error(format!(
            "--param {name}={given:?}: expected {t}, like the default {default}"
        ))
    };
    if default.is_int() {
        given
            .trim()
            .parse::<INT>()
            .map(Dynamic::from)
            .map_err(|_| bad("an integer"))
    } else if default.is_bool() {
        match given.trim() {
            "true" | "yes" | "1" => Ok(true.into()),
            "false" | "no" | "0" => Ok(false.into()),
            _ => Err(bad("true or false")),
        }
    } else if default.is_float() {
        given
            .trim()
            .parse::<f64>()
            .map(Dynamic::from)
            .map_err(|_| bad("a number"))
    } else {
        Ok(given.to_string().into())
    }
}

impl StepHandle {
    pub(crate) fn runbook(&self) -> RunbookHandle {
        RunbookHandle(self.rb.clone())
    }

    fn with(&mut self, f: impl FnOnce(&mut Step) -> RhaiResult<()>) -> RhaiResult<StepHandle> {
        {
            let mut rb = lock(&self.rb);
            f(&mut rb.steps[self.index])?;
        }
        Ok(self.clone())
    }

    fn host_only(
        &mut self,
        option: &str,
        f: impl FnOnce(&mut Step) -> RhaiResult<()>,
    ) -> RhaiResult<StepHandle> {
        let option = option.to_string();
        self.with(|s| match s.scope {
            Scope::Host { .. } => f(s),
            ref other => Err(runtime_error(format!(
                ".{option}(...) applies to per-host steps; {:?} is a {} step",
                s.name,
                other.kind()
            ))),
        })
    }
}

fn add_step(rb: &RunbookHandle, step: Step) -> RhaiResult<StepHandle> {
    let mut m = lock(&rb.0);
    if let Some(prev) = m
        .steps
        .iter()
        .find(|s| s.name == step.name && s.scope == step.scope)
    {
        return Err(runtime_error(format!(
            "a step named {:?} is already declared at line {}",
            step.name, prev.pos.line
        )));
    }
    m.steps.push(step);
    Ok(StepHandle {
        rb: rb.0.clone(),
        index: m.steps.len() - 1,
    })
}

pub fn register(engine: &mut Engine, state: &ApiState) {
    engine.register_type_with_name::<RunbookHandle>("Runbook");
    engine.register_type_with_name::<StepHandle>("Step");
    runbook::constructor(engine, state);
    runbook::params(engine, state);
    runbook::settings(engine, state);
    step::steps_and_hooks(engine, state);
    step::options(engine, state);
    fleet::hosts(engine, state);
}
