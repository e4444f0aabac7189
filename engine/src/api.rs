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
    pub hosts: indexmap::IndexMap<String, Host>,
    /// Every group with its hosts (through child groups), in inventory order.
    pub groups: indexmap::IndexMap<String, Vec<String>>,
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

    let s = state.clone();
    engine.register_fn(
        "runbook",
        move |ctx: NativeCallContext, name: &str| -> RhaiResult<RunbookHandle> {
            if name.trim().is_empty() {
                return Err(runtime_error("runbook(name): the name must not be empty"));
            }
            let rb = RunbookHandle(Arc::new(Mutex::new(Runbook {
                name: name.to_string(),
                pos: s.pos(&ctx),
                ..Default::default()
            })));
            s.runbooks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(rb.clone());
            Ok(rb)
        },
    );

    for secret in [false, true] {
        let s = state.clone();
        let fname = if secret { "secret_param" } else { "param" };
        engine.register_fn(
            fname,
            move |ctx: NativeCallContext, name: &str, default: Dynamic| -> RhaiResult<Dynamic> {
                let pos = s.pos(&ctx);
                let mut p = s.params.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(prev) = p.declared.iter().find(|d| d.name == name) {
                    return Err(runtime_error(format!(
                        "parameter {name:?} is already declared at line {}",
                        prev.pos.line
                    )));
                }
                let soft = format!("{name}{}", crate::script::SOFT);
                let value = match p.given.get(name).or_else(|| p.given.get(&soft)) {
                    Some(g) => convert_param(name, g, &default)?,
                    None => default.clone(),
                };
                if secret {
                    s.secrets.add(name, &value.to_string());
                    s.secrets.add(name, &default.to_string());
                }
                p.declared.push(Param {
                    name: name.to_string(),
                    default: default.to_string(),
                    value: value.to_string(),
                    secret,
                    pos,
                });
                Ok(value)
            },
        );
    }

    // Runbook-level settings.
    engine.register_fn("describe", |rb: &mut RunbookHandle, text: &str| {
        lock(&rb.0).description = text.to_string();
        rb.clone()
    });
    let s = state.clone();
    engine.register_fn("order", move |ctx: NativeCallContext, rb: &mut RunbookHandle, roles: Array| -> RhaiResult<RunbookHandle> {
        let roles = strings(&roles, "order(...)")?;
        if roles.len() < 2 {
            return Err(runtime_error("order([...]) needs at least two roles, e.g. order([\"controller\", \"compute\"])"));
        }
        let pos = s.pos(&ctx);
        let mut m = lock(&rb.0);
        for w in roles.windows(2) {
            m.order.push(OrderEdge { before: w[0].clone(), after: w[1].clone(), pos: pos.clone() });
        }
        Ok(rb.clone())
    });
    let s = state.clone();
    engine.register_fn(
        "after",
        move |ctx: NativeCallContext,
              rb: &mut RunbookHandle,
              role: &str,
              before: Array|
              -> RhaiResult<RunbookHandle> {
            let before = strings(&before, "after(role, [...])")?;
            let pos = s.pos(&ctx);
            let mut m = lock(&rb.0);
            for b in before {
                m.order.push(OrderEdge {
                    before: b,
                    after: role.to_string(),
                    pos: pos.clone(),
                });
            }
            Ok(rb.clone())
        },
    );
    let s = state.clone();
    engine.register_fn(
        "limit",
        move |ctx: NativeCallContext,
              rb: &mut RunbookHandle,
              role: &str,
              n: Dynamic|
              -> RhaiResult<RunbookHandle> {
            // A limit of 0 holds the role: none of its hosts start (jiocloud's rolling rules).
            let amount = match amount(&n, "limit")? {
                Amount::Percent(0.0) => Amount::Count(0),
                a => a,
            };
            let pos = s.pos(&ctx);
            let mut m = lock(&rb.0);
            m.limits.retain(|l| l.role != role);
            m.limits.push(RoleAmount {
                role: role.to_string(),
                amount,
                pos,
            });
            Ok(rb.clone())
        },
    );
    let s = state.clone();
    engine.register_fn(
        "limit_total",
        move |ctx: NativeCallContext,
              rb: &mut RunbookHandle,
              n: Dynamic|
              -> RhaiResult<RunbookHandle> {
            let amount = amount(&n, "limit_total")?;
            if amount == Amount::Count(0) {
                return Err(runtime_error("limit_total must be at least 1"));
            }
            lock(&rb.0).limit_total = Some((amount, s.pos(&ctx)));
            Ok(rb.clone())
        },
    );
    let s = state.clone();
    engine.register_fn(
        "limit_by",
        move |ctx: NativeCallContext,
              rb: &mut RunbookHandle,
              var: &str,
              n: INT|
              -> RhaiResult<RunbookHandle> {
            let max = positive(n, "limit_by")?;
            let pos = s.pos(&ctx);
            let mut m = lock(&rb.0);
            m.limit_by.retain(|l| l.var != var);
            m.limit_by.push(LimitBy {
                var: var.to_string(),
                max,
                pos,
            });
            Ok(rb.clone())
        },
    );
    engine.register_fn("batches", |rb: &mut RunbookHandle, on: bool| {
        lock(&rb.0).batches = on;
        rb.clone()
    });
    let s = state.clone();
    engine.register_fn(
        "canary",
        move |ctx: NativeCallContext,
              rb: &mut RunbookHandle,
              role: &str,
              n: INT|
              -> RhaiResult<RunbookHandle> {
            let count = positive(n, "canary")?;
            let pos = s.pos(&ctx);
            let mut m = lock(&rb.0);
            m.canaries.retain(|c| c.role != role);
            m.canaries.push(Canary {
                role: role.to_string(),
                count,
                pos,
            });
            Ok(rb.clone())
        },
    );
    let s = state.clone();
    engine.register_fn(
        "max_failures",
        move |ctx: NativeCallContext,
              rb: &mut RunbookHandle,
              role: &str,
              n: Dynamic|
              -> RhaiResult<RunbookHandle> {
            let amount = amount(&n, "max_failures")?;
            let pos = s.pos(&ctx);
            let mut m = lock(&rb.0);
            m.max_failures.retain(|l| l.role != role);
            m.max_failures.push(RoleAmount {
                role: role.to_string(),
                amount,
                pos,
            });
            Ok(rb.clone())
        },
    );
    let s = state.clone();
    engine.register_fn(
        "max_failures_total",
        move |ctx: NativeCallContext,
              rb: &mut RunbookHandle,
              n: Dynamic|
              -> RhaiResult<RunbookHandle> {
            let amount = amount(&n, "max_failures_total")?;
            lock(&rb.0).max_failures_total = Some((amount, s.pos(&ctx)));
            Ok(rb.clone())
        },
    );
    engine.register_fn(
        "secret_vars",
        |rb: &mut RunbookHandle, names: Array| -> RhaiResult<RunbookHandle> {
            let names = strings(&names, "secret_vars")?;
            let mut m = lock(&rb.0);
            for n in names {
                if !m.secret_vars.contains(&n) {
                    m.secret_vars.push(n);
                }
            }
            Ok(rb.clone())
        },
    );
    engine.register_fn("rollback_on_failure", |rb: &mut RunbookHandle, on: bool| {
        lock(&rb.0).rollback_on_failure = on;
        rb.clone()
    });
    engine.register_fn(
        "rollback_scope",
        |rb: &mut RunbookHandle, scope: &str| -> RhaiResult<RunbookHandle> {
            let scope = RollbackScope::parse(scope).map_err(runtime_error)?;
            lock(&rb.0).rollback_scope = scope;
            Ok(rb.clone())
        },
    );
    let s = state.clone();
    engine.register_fn(
        "deadline",
        move |ctx: NativeCallContext, rb: &mut RunbookHandle, d: Dynamic| -> RhaiResult<RunbookHandle> {
            let d = duration(d, "deadline")?;
            if d.is_zero() {
                return Err(runtime_error(
                    "deadline must be longer than 0s: no host could start (leave it out for no deadline)",
                ));
            }
            lock(&rb.0).deadline = Some((d, s.pos(&ctx)));
            Ok(rb.clone())
        },
    );
    engine.register_fn("become", |rb: &mut RunbookHandle, on: bool| {
        lock(&rb.0).become_default = on;
        rb.clone()
    });

    // Steps and hooks.
    let s = state.clone();
    engine.register_fn(
        "step",
        move |ctx: NativeCallContext, rb: &mut RunbookHandle, name: &str, f: FnPtr| {
            let step = Step::new(
                name.to_string(),
                Scope::Host { roles: None },
                Some(f),
                s.pos(&ctx),
            );
            add_step(rb, step)
        },
    );
    let s = state.clone();
    engine.register_fn(
        "once",
        move |ctx: NativeCallContext, rb: &mut RunbookHandle, name: &str, f: FnPtr| {
            let step = Step::new(name.to_string(), Scope::Once, Some(f), s.pos(&ctx));
            add_step(rb, step)
        },
    );
    let s = state.clone();
    engine.register_fn(
        "before_each_host",
        move |ctx: NativeCallContext, rb: &mut RunbookHandle, name: &str, f: FnPtr| {
            let step = Step::new(name.to_string(), Scope::HostCheck, Some(f), s.pos(&ctx));
            add_step(rb, step)
        },
    );
    let s = state.clone();
    engine.register_fn(
        "finally",
        move |ctx: NativeCallContext, rb: &mut RunbookHandle, name: &str, f: FnPtr| {
            let step = Step::new(name.to_string(), Scope::Finally, Some(f), s.pos(&ctx));
            add_step(rb, step)
        },
    );
    let s = state.clone();
    engine.register_fn(
        "finally",
        move |ctx: NativeCallContext, rb: &mut RunbookHandle, f: FnPtr| {
            let step = Step::new("finally".into(), Scope::Finally, Some(f), s.pos(&ctx));
            add_step(rb, step)
        },
    );
    type ScopeOf = fn(String) -> Scope;
    let role_hooks: [(&str, ScopeOf); 3] = [
        ("before_role", Scope::BeforeRole),
        ("after_role", Scope::AfterRole),
        ("gate_after", Scope::Gate),
    ];
    for (fname, scope) in role_hooks {
        let s = state.clone();
        engine.register_fn(
            fname,
            move |ctx: NativeCallContext,
                  rb: &mut RunbookHandle,
                  role: &str,
                  name: &str,
                  f: FnPtr| {
                let step = Step::new(
                    name.to_string(),
                    scope(role.to_string()),
                    Some(f),
                    s.pos(&ctx),
                );
                add_step(rb, step)
            },
        );
    }
    let s = state.clone();
    engine.register_fn(
        "approval",
        move |ctx: NativeCallContext, rb: &mut RunbookHandle, name: &str, after_role: &str| {
            let step = Step::new(
                name.to_string(),
                Scope::Approval(after_role.to_string()),
                None,
                s.pos(&ctx),
            );
            add_step(rb, step)
        },
    );

    // Step options.
    engine.register_fn(
        "roles",
        |st: &mut StepHandle, roles: Array| -> RhaiResult<StepHandle> {
            let roles = strings(&roles, ".roles(...)")?;
            if roles.is_empty() {
                return Err(runtime_error(
                    ".roles([]) selects no host; leave it out to run on every host",
                ));
            }
            st.host_only("roles", |s| {
                s.scope = Scope::Host { roles: Some(roles) };
                Ok(())
            })
        },
    );
    engine.register_fn(
        "timeout",
        |st: &mut StepHandle, d: Dynamic| -> RhaiResult<StepHandle> {
            let d = duration(d, ".timeout")?;
            if d.is_zero() {
                return Err(runtime_error(
                    ".timeout must be longer than 0s: a step with no time cannot run (leave .timeout out for no limit)",
                ));
            }
            st.with(|s| {
                s.timeout = Some(d);
                Ok(())
            })
        },
    );
    engine.register_fn(
        "retries",
        |st: &mut StepHandle, n: INT| -> RhaiResult<StepHandle> {
            if !(0..=1000).contains(&n) {
                return Err(runtime_error(format!(
                    ".retries must be between 0 and 1000, found {n}"
                )));
            }
            st.with(|s| {
                s.retries = n as u32;
                Ok(())
            })
        },
    );
    engine.register_fn(
        "retry_delay",
        |st: &mut StepHandle, d: Dynamic| -> RhaiResult<StepHandle> {
            let d = duration(d, ".retry_delay")?;
            st.with(|s| {
                s.retry_delay = d;
                Ok(())
            })
        },
    );
    engine.register_fn(
        "estimate",
        |st: &mut StepHandle, d: Dynamic| -> RhaiResult<StepHandle> {
            let d = duration(d, ".estimate")?;
            st.with(|s| {
                s.estimate = Some(d);
                Ok(())
            })
        },
    );
    engine.register_fn(
        "idempotent",
        |st: &mut StepHandle, on: bool| -> RhaiResult<StepHandle> {
            st.with(|s| {
                s.idempotent = on;
                Ok(())
            })
        },
    );
    engine.register_fn("always", |st: &mut StepHandle| -> RhaiResult<StepHandle> {
        st.host_only("always", |s| {
            s.always = true;
            Ok(())
        })
    });
    engine.register_fn(
        "soak",
        |st: &mut StepHandle, d: Dynamic| -> RhaiResult<StepHandle> {
            let d = duration(d, ".soak")?;
            st.host_only("soak", |s| {
                s.soak = Some(d);
                Ok(())
            })
        },
    );
    engine.register_fn(
        "undo",
        |st: &mut StepHandle, f: FnPtr| -> RhaiResult<StepHandle> {
            st.host_only("undo", |s| {
                s.undo = Some(f);
                Ok(())
            })
        },
    );
    let s = state.clone();
    engine.register_fn(
        "when",
        move |ctx: NativeCallContext, st: &mut StepHandle, f: FnPtr| -> RhaiResult<StepHandle> {
            let pos = s.pos(&ctx);
            st.host_only("when", |step| {
                step.when = Some(f);
                step.when_pos = Some(pos);
                Ok(())
            })
        },
    );
    engine.register_fn(
        "throttle",
        |st: &mut StepHandle, n: INT| -> RhaiResult<StepHandle> {
            let n = positive(n, ".throttle")?;
            st.host_only("throttle", |s| {
                s.throttle = Some(n);
                Ok(())
            })
        },
    );
    // Hosts for `once` and gate closures.
    let s = state.clone();
    engine.register_fn("host", move |name: &str| -> RhaiResult<Host> {
        let fleet = s.fleet.read().unwrap_or_else(|e| e.into_inner());
        let fleet = fleet
            .as_ref()
            .ok_or_else(|| runtime_error("host(name) is only available inside steps, once the runbook runs against an inventory"))?;
        fleet.hosts.get(name).cloned().ok_or_else(|| {
            runtime_error(format!("host({name:?}): no such host in the planned inventory"))
        })
    });
    let s = state.clone();
    engine.register_fn("hosts", move |role: &str| -> RhaiResult<Array> {
        let fleet = s.fleet.read().unwrap_or_else(|e| e.into_inner());
        let fleet = fleet
            .as_ref()
            .ok_or_else(|| runtime_error("hosts(role) is only available inside steps, once the runbook runs against an inventory"))?;
        let pick = |name: &String| fleet.hosts.get(name).map(|h| Dynamic::from(h.clone()));
        if role == "all" {
            return Ok(fleet.hosts.keys().filter_map(pick).collect());
        }
        match fleet.groups.get(role) {
            Some(members) => Ok(members.iter().filter_map(pick).collect()),
            None => Err(runtime_error(format!(
                "hosts({role:?}): the inventory has no such group (groups: {})",
                fleet.groups.keys().map(String::as_str).collect::<Vec<_>>().join(", ")
            ))),
        }
    });
}
