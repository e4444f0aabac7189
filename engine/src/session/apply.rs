//! `fleetbook apply PLAN`: a saved plan runs only if planning it again now gives the same
//! plan — same schema and fleetbook, same runbook, inventory and libraries, same tasks and
//! commands; secret parameters are given again, others may only repeat the plan's.

use super::resume::Inputs;
use crate::error::{Error, Result};
use crate::plan::{self, Plan, Planned};
use crate::shared::{Shared, SharedList};
use std::collections::BTreeMap;
use std::path::Path;

/// The saved plan at `path` planned again and checked against what was saved.
pub fn apply(path: &Path, inputs: &Inputs) -> Result<Planned> {
    let refuse = |why: String| {
        Error::input_with_help(
            format!("refusing to apply {}: {why}", path.display()),
            "make a new plan with `fleetbook plan ... -o plan.json`, review it, and apply that",
        )
    };
    let saved = load(path, &refuse)?;
    let params = params(&saved, inputs.params, &refuse)?;
    let planned = plan::plan(&plan::PlanRequest {
        runbook: Path::new(&saved.runbook.path),
        inventory: Path::new(&saved.inventory),
        params: &params,
        limit: saved.limit_pattern.as_deref(),
        lib_dirs: inputs.lib_dirs,
        libs: inputs.libs,
        vault: None,
    })?;
    if let Some(why) = differences(&saved, &planned.plan) {
        return Err(refuse(why));
    }
    Ok(planned)
}

/// The saved plan, refused for its schema or fleetbook version before the fields it lacks.
fn load(path: &Path, refuse: &dyn Fn(String) -> Error) -> Result<Plan> {
    let text = crate::error::read_file(path)?;
    let not_a_plan = |e: serde_json::Error| {
        Error::input(format!("{} is not a fleetbook plan: {e}", path.display()))
    };
    let value: serde_json::Value = serde_json::from_str(&text).map_err(not_a_plan)?;
    let schema = value["schema_version"].as_u64();
    if schema != Some(u64::from(plan::SCHEMA_VERSION)) {
        return Err(refuse(format!(
            "it has plan schema {}, this fleetbook reads {}",
            schema.map_or("(none)".to_string(), |v| v.to_string()),
            plan::SCHEMA_VERSION
        )));
    }
    let version = value["fleetbook_version"].as_str().unwrap_or("(none)");
    if version != env!("CARGO_PKG_VERSION") {
        return Err(refuse(format!(
            "it was made by fleetbook {version}, this is {}",
            env!("CARGO_PKG_VERSION")
        )));
    }
    serde_json::from_value(value).map_err(not_a_plan)
}

/// The plan's parameters: secret ones as given now (they are not in the plan), others as
/// the plan has them (given again only with the same value).
fn params(
    saved: &Plan,
    given: &[(String, String)],
    refuse: &dyn Fn(String) -> Error,
) -> Result<BTreeMap<String, String>> {
    let given: BTreeMap<&str, &str> = given
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut params = BTreeMap::new();
    for p in &saved.params {
        let v = match (p.secret, given.get(p.name.as_str())) {
            (true, Some(v)) => v.to_string(),
            (true, None) => {
                return Err(Error::input_with_help(
                    format!(
                        "secret parameter {} is not in the plan: give it again",
                        p.name
                    ),
                    format!("--param {}=...", p.name),
                ))
            }
            (false, Some(v)) if *v != p.value => {
                return Err(refuse(format!(
                    "--param {}={v} differs from the plan's {}",
                    p.name, p.value
                )))
            }
            (false, _) => p.value.clone(),
        };
        params.insert(p.name.clone(), v);
    }
    Ok(params)
}

/// Why the plan made now is not the saved one, if it is not.
fn differences(saved: &Plan, now: &Plan) -> Option<String> {
    if now.runbook_digest != saved.runbook_digest {
        return Some(format!(
            "the runbook {} changed since the plan was made",
            saved.runbook.path
        ));
    }
    if now.inventory_digest != saved.inventory_digest {
        return Some(format!(
            "the inventory {} changed since the plan was made",
            saved.inventory
        ));
    }
    if let Some(why) = plan::library_changes(&saved.libraries, &now.libraries) {
        return Some(why);
    }
    let commands = |p: &Plan| -> Vec<(Shared, SharedList)> {
        p.tasks
            .iter()
            .map(|t| (t.id.clone(), t.commands.clone()))
            .collect()
    };
    (commands(now) != commands(saved))
        .then(|| "the plan computed now differs from the saved one (tasks or commands)".to_string())
}
