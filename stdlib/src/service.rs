//! `service::` — systemd services: restart, stop, start, is_active, main_pid.
//!
//! The unit name comes after `--`, so systemctl never reads it as an option (`--user`), and a
//! name with a glob character is refused: systemctl would act on every unit it matches.

use crate::host::Host;
use crate::quote::{command, quote};
use crate::{located, refused, runtime_error};
use rhai::{EvalAltResult, FuncRegistration, Module, NativeCallContext, INT};

type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

pub fn action_command(action: &str, name: &str) -> String {
    command(&["systemctl ", action, " -- "], &[name], "")
}

pub fn is_active_command(name: &str) -> String {
    format!("systemctl is-active --quiet -- {}", quote(name))
}

pub fn main_pid_command(name: &str) -> String {
    format!("systemctl show -p MainPID --value -- {}", quote(name))
}

/// One unit: systemctl expands `*`, `?` and `[...]` against every loaded unit.
pub fn check_name(op: &str, name: &str) -> RhaiResult<()> {
    if name.is_empty() || name.contains(['*', '?', '[', ']']) {
        return Err(refused(
            op,
            "service name",
            name,
            "name one unit: systemctl would act on every unit a glob (*?[]) matches",
        ));
    }
    Ok(())
}

fn register_action(m: &mut Module, action: &'static str) {
    // The operation's name, made once here rather than on every call.
    let op = format!("service::{action}");
    FuncRegistration::new(action).set_into_module(
        m,
        move |ctx: NativeCallContext, h: &mut Host, name: &str| -> RhaiResult<()> {
            located(&ctx, || {
                check_name(&op, name)?;
                h.run(&h.privileged(&op, &action_command(action, name)))
                    .map(|_| ())
            })
        },
    );
}

pub(crate) fn module() -> Module {
    let mut m = Module::new();
    for action in ["restart", "stop", "start", "reload"] {
        register_action(&mut m, action);
    }
    FuncRegistration::new("is_active").set_into_module(
        &mut m,
        |ctx: NativeCallContext, h: &mut Host, name: &str| -> RhaiResult<bool> {
            located(&ctx, || {
                check_name("service::is_active", name)?;
                h.run_ok(&is_active_command(name))
            })
        },
    );
    FuncRegistration::new("main_pid").set_into_module(
        &mut m,
        |ctx: NativeCallContext, h: &mut Host, name: &str| -> RhaiResult<INT> {
            located(&ctx, || {
                check_name("service::main_pid", name)?;
                let out = h.run(&main_pid_command(name))?;
                let text = out.stdout.trim();
                if text.is_empty() && h.is_dry_run() {
                    return Ok(0);
                }
                text.parse::<INT>().map_err(|_| {
                    runtime_error(format!(
                        "host {}: unexpected MainPID {text:?} for service {name}",
                        h.info.name
                    ))
                })
            })
        },
    );
    m
}
