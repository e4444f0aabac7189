//! Steps, hooks around roles and hosts, and the options of a step (`.when`, `.retry`, `.undo`, ...).

use super::*;

/// `rb.step`, `rb.once`, gates, approvals, hooks and `finally`.
pub(super) fn steps_and_hooks(engine: &mut Engine, state: &ApiState) {
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
}

/// The options of a `Step` value.
pub(super) fn options(engine: &mut Engine, state: &ApiState) {
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
}
