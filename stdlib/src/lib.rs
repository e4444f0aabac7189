//! Host operations exposed to Rhai runbooks as namespaced modules (`pkg::`, `puppet::`,
//! `service::`, `file::`, `http::`, `sh::`) plus the `Host` type, and the shared `.rhai`
//! libraries that runbooks can `import`. Every operation builds one exact shell command with
//! every argument quoted and every value the runbook gives as one operand, never an option
//! (after `--`, or refused where the program has none), and runs it through a [`Transport`].

pub mod duration;
mod files;
pub mod host;
pub mod pkg;
pub mod puppet;
pub mod quote;
pub mod reboot;
pub mod service;
pub mod transport;

#[cfg(test)]
mod operand_tests;

pub use host::Host;
pub use transport::{HostInfo, Output, Put, Transport, TransportError, Upload};

use rhai::{Engine, EvalAltResult, FuncRegistration, Module, NativeCallContext};

/// The shared `.rhai` libraries, importable by name (`import "rolling" as rolling;`).
pub const LIBRARIES: &[(&str, &str)] = &[
    ("rolling", include_str!("../rhai/rolling.rhai")),
    ("checks", include_str!("../rhai/checks.rhai")),
    ("versions", include_str!("../rhai/versions.rhai")),
    ("apt", include_str!("../rhai/apt.rhai")),
    ("maintenance", include_str!("../rhai/maintenance.rhai")),
];

/// A script error with a message and no position (Rhai adds the call site).
pub fn runtime_error(msg: impl Into<String>) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorRuntime(
        msg.into().into(),
        rhai::Position::NONE,
    ))
}

/// Runs the body of a namespaced function (`pkg::install`) and gives its error the call's
/// position: Rhai (1.27) leaves errors from qualified native calls without one, so they would
/// show no script line, host or step.
pub(crate) fn located<T>(
    ctx: &NativeCallContext,
    body: impl FnOnce() -> Result<T, Box<EvalAltResult>>,
) -> Result<T, Box<EvalAltResult>> {
    body().map_err(|mut e| {
        if e.position().is_none() {
            e.set_position(ctx.call_position());
        }
        e
    })
}

/// A host operation refusing a value it was given: names the operation, the value (escaped,
/// so a newline or a control character shows) and why.
pub fn refused(op: &str, what: &str, value: &str, why: &str) -> Box<EvalAltResult> {
    runtime_error(format!("{op}: refused {what} {value:?}: {why}"))
}

/// Registers the `Host` type and every host-operation module on `engine`.
pub fn register(engine: &mut Engine) {
    host::register(engine);
    engine.register_static_module("pkg", pkg::module().into());
    engine.register_static_module("puppet", puppet::module().into());
    engine.register_static_module("service", service::module().into());
    engine.register_static_module("file", files::file_module().into());
    engine.register_static_module("http", files::http_module().into());
    engine.register_static_module("sh", sh_module().into());
}

fn sh_module() -> Module {
    let mut sh = Module::new();
    FuncRegistration::new("quote").set_into_module(&mut sh, |s: &str| quote::quote(s));
    sh
}
