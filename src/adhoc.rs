//! `fleetbook exec`: the engine's `adhoc` over the ssh transport, with Ctrl-C, its output
//! on standard output and its exit status.

use crate::cli::SshArgs;
use crate::drive::{install_ctrl_c, transport};
use crate::exit;
use fleetbook_engine::adhoc;
use fleetbook_engine::exec::Control;
use fleetbook_engine::{Error, Result};
use fleetbook_stdlib::duration::parse_duration;
use std::sync::Arc;

pub fn adhoc(
    inventory: &std::path::Path,
    pat: &str,
    forks: usize,
    group: bool,
    timeout: Option<&str>,
    ssh: &SshArgs,
    command: &str,
) -> Result<i32> {
    let selected = adhoc::select(inventory, pat)?;
    let timeout = timeout
        .map(parse_duration)
        .transpose()
        .map_err(|e| Error::input(format!("--timeout: {e}")))?;
    let transport = transport(ssh)?;
    let control = Arc::new(Control::default());
    install_ctrl_c(control.clone());
    let c = adhoc::Command {
        command,
        forks,
        timeout,
    };
    let (out, all_ok) = adhoc::run(&selected, &*transport, &control, &c, group);
    exit::print(&out)?;
    Ok(if all_ok { exit::OK } else { exit::FAILURES })
}
