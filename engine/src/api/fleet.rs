//! `host(name)` and `hosts(role)`: the planned inventory, seen from inside steps and gates.

use super::*;

/// `host(name)` and `hosts(role)`, available once the runbook runs against an inventory.
pub(super) fn hosts(engine: &mut Engine, state: &ApiState) {
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
