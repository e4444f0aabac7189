//! `puppet::` — the Puppet agent: disable with a reason, enable, run once.
//!
//! `--disable` takes its message as an optional argument, which Ruby's OptionParser reads from
//! the next word only when that word does not start with `-`; `--disable=MESSAGE` always takes
//! MESSAGE, whatever it starts with. A manifest comes after `--`.

use crate::host::Host;
use crate::located;
use crate::quote::{command, quote};
use rhai::{EvalAltResult, FuncRegistration, Module, NativeCallContext};

type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

pub fn disable_command(reason: &str) -> String {
    command(&["puppet agent --disable="], &[reason], "")
}

pub const ENABLE: &str = "puppet agent --enable";
/// `--test` implies `--detailed-exitcodes`: 2 means "changes applied", which is success.
pub const RUN: &str = "puppet agent --test || [ $? -eq 2 ]";

/// Masterless: apply a manifest on the host; exit 2 ("changes applied") is success.
pub fn apply_command(manifest: &str) -> String {
    format!(
        "puppet apply --detailed-exitcodes -- {} || [ $? -eq 2 ]",
        quote(manifest)
    )
}

pub(crate) fn module() -> Module {
    let mut m = Module::new();
    FuncRegistration::new("disable").set_into_module(
        &mut m,
        |ctx: NativeCallContext, h: &mut Host, reason: &str| -> RhaiResult<()> {
            located(&ctx, || {
                h.run(&h.privileged("puppet::disable", &disable_command(reason)))
                    .map(|_| ())
            })
        },
    );
    FuncRegistration::new("enable").set_into_module(
        &mut m,
        |ctx: NativeCallContext, h: &mut Host| -> RhaiResult<()> {
            located(&ctx, || {
                h.run(&h.privileged("puppet::enable", ENABLE)).map(|_| ())
            })
        },
    );
    FuncRegistration::new("run").set_into_module(
        &mut m,
        |ctx: NativeCallContext, h: &mut Host| -> RhaiResult<()> {
            located(&ctx, || {
                h.run(&h.privileged("puppet::run", RUN)).map(|_| ())
            })
        },
    );
    FuncRegistration::new("apply").set_into_module(
        &mut m,
        |ctx: NativeCallContext, h: &mut Host, manifest: &str| -> RhaiResult<()> {
            located(&ctx, || {
                h.run(&h.privileged("puppet::apply", &apply_command(manifest)))
                    .map(|_| ())
            })
        },
    );
    FuncRegistration::new("is_disabled").set_into_module(
        &mut m,
        |ctx: NativeCallContext, h: &mut Host| -> RhaiResult<bool> {
            located(&ctx, || {
                h.run_ok("test -e \"$(puppet config print agent_disabled_lockfile)\"")
            })
        },
    );
    m
}
