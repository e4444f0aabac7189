//! `fleetbook inventory`: what the engine read from an inventory, printed in
//! ansible-inventory's forms (JSON with sorted keys and four-space indents, or the graph).

use crate::cli::VaultArgs;
use crate::exit;
use fleetbook_engine::inventory::{export, Inventory, LoadOptions};
use fleetbook_engine::Result;
use std::path::{Path, PathBuf};

pub fn run(
    path: &Path,
    limit: Option<&str>,
    graph: Option<String>,
    host: Option<String>,
    vault: &VaultArgs,
    playbook_dir: Option<PathBuf>,
) -> Result<i32> {
    let opts = LoadOptions {
        vault: vault.keys()?,
        playbook_dir,
    };
    let inv = Inventory::load_with(path, &opts)?;
    for w in &inv.warnings {
        eprintln!("warning: {}: {w}", inv.source);
    }
    let text = match (graph, host) {
        (Some(group), _) => export::graph(&inv, &group, limit)?,
        (None, Some(h)) => json(&export::host(&inv, &h)?),
        (None, None) => json(&export::list(&inv, limit)?),
    };
    exit::print(&text)?;
    Ok(0)
}

/// The passwords of the command line, then of the environment.
fn json(v: &serde_json::Value) -> String {
    use serde::Serialize;
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    // Serializing a Value into memory cannot fail.
    let _ = v.serialize(&mut ser);
    String::from_utf8_lossy(&out).into_owned() + "\n"
}
