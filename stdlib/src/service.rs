//! `service::` — systemd services: restart, stop, start, is_active, main_pid.

use crate::host::Host;
use crate::quote::quote;
use crate::runtime_error;
use rhai::{EvalAltResult, FuncRegistration, Module, INT};

type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

pub fn action_command(action: &str, name: &str) -> String {
    format!("systemctl {action} {}", quote(name))
}

pub fn main_pid_command(name: &str) -> String {
    format!("systemctl show -p MainPID --value {}", quote(name))
}

fn register_action(m: &mut Module, action: &'static str) {
    FuncRegistration::new(action).set_into_module(
        m,
        move |h: Host, name: &str| -> RhaiResult<()> {
            h.run(&h.privileged(&action_command(action, name)))
                .map(|_| ())
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
        |h: Host, name: &str| -> RhaiResult<bool> {
            h.run_ok(&format!("systemctl is-active --quiet {}", quote(name)))
        },
    );
    FuncRegistration::new("main_pid").set_into_module(
        &mut m,
        |h: Host, name: &str| -> RhaiResult<INT> {
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
        },
    );
    m
}
