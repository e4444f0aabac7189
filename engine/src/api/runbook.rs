//! `runbook(name)`, `param`/`secret_param`, and the settings of a whole runbook (`rb.order`, `rb.limit`, ...).

use super::*;

/// `runbook(name)`: every runbook the script makes is recorded, so a script that makes two is refused later.
pub(super) fn constructor(engine: &mut Engine, state: &ApiState) {
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
}

/// `param(name, default)` and `secret_param(...)`: the value given on the command line, converted to the default's type.
pub(super) fn params(engine: &mut Engine, state: &ApiState) {
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
}

/// Runbook-level settings: order, limits, canaries, budgets, deadlines, rollback, become.
pub(super) fn settings(engine: &mut Engine, state: &ApiState) {
    order(engine, state);
    limits(engine, state);
    failures(engine, state);
    run_settings(engine, state);
}

/// `describe`, `order`, `after`.
fn order(engine: &mut Engine, state: &ApiState) {
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
}

/// `limit`, `limit_total`, `limit_by`, `batches`, `canary`.
fn limits(engine: &mut Engine, state: &ApiState) {
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
}

/// `max_failures`, `max_failures_total`, `rollback_on_failure`, `rollback_scope`.
fn failures(engine: &mut Engine, state: &ApiState) {
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
}

/// `secret_vars`, `deadline`, `become`.
fn run_settings(engine: &mut Engine, state: &ApiState) {
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
}
