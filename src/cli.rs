//! Command-line arguments (clap derive) and their validation into typed settings.

use clap::{Parser, Subcommand, ValueEnum};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "fleetbook",
    version,
    about = "Run upgrade runbooks across fleets of servers",
    long_about = "fleetbook compiles a Rhai runbook against an inventory into a DAG of (host, step) \
tasks, shows it as a plan, and runs it over SSH under per-role limits.",
    after_help = "Examples:\n  fleetbook check runbooks/jiocloud-rolling.rhai\n  fleetbook plan runbooks/jiocloud-rolling.rhai -i examples/inventories/jiocloud.ini\n  fleetbook plan runbooks/starlingx-patch.rhai -i examples/inventories/starlingx.yml --format dot -o plan.dot"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Compile and validate a runbook (syntax, role order, parameters) without an inventory.
    #[command(
        after_help = "Examples:\n  fleetbook check runbooks/swh-debian-upgrade.rhai\n  fleetbook check upgrade.rhai --param version=2.0"
    )]
    Check {
        /// The runbook script (.rhai).
        runbook: PathBuf,
        #[command(flatten)]
        script: ScriptArgs,
    },
    /// Show what a runbook would do on an inventory: roles, limits, schedule, commands.
    #[command(
        after_help = "Examples:\n  fleetbook plan runbooks/jiocloud-rolling.rhai -i examples/inventories/jiocloud.ini\n  fleetbook plan upgrade.rhai -i hosts --limit 'compute:!cmp03' --param version=2.0\n  fleetbook plan upgrade.rhai -i hosts.yml --format json -o plan.json\n  fleetbook plan upgrade.rhai -i hosts --format dot | dot -Tsvg > plan.svg"
    )]
    Plan {
        /// The runbook script (.rhai).
        runbook: PathBuf,
        /// Inventory: Ansible INI (any name), Ansible YAML (.yml/.yaml) or TOML (.toml).
        #[arg(short, long, value_name = "INVENTORY")]
        inventory: PathBuf,
        #[command(flatten)]
        script: ScriptArgs,
        /// Only these hosts, as an Ansible pattern: group, host, glob, a:b, a:&b, a:!b.
        #[arg(short, long, value_name = "PATTERN")]
        limit: Option<String>,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Write the plan to this file instead of standard output.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

#[derive(clap::Args, Debug)]
pub struct ScriptArgs {
    /// Set a runbook parameter (repeatable): --param version=2.0
    #[arg(short = 'p', long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    /// Another directory that `import` may load modules from (repeatable).
    #[arg(long = "lib", value_name = "DIR")]
    pub lib_dirs: Vec<PathBuf>,
}

impl ScriptArgs {
    pub fn param_map(&self) -> Result<BTreeMap<String, String>, String> {
        let mut map = BTreeMap::new();
        for (k, v) in &self.params {
            if map.insert(k.clone(), v.clone()).is_some() {
                return Err(format!("--param {k} is given twice"));
            }
        }
        Ok(map)
    }
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    Dot,
    Mermaid,
}

fn parse_param(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, found {s:?}"))?;
    let k = k.trim();
    if k.is_empty()
        || !k
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
    {
        return Err(format!("invalid parameter name {k:?}"));
    }
    Ok((k.to_string(), v.to_string()))
}
