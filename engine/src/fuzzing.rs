//! Entry points for the fuzz targets in `fuzz/`, one per target. The targets and the corpus
//! replay test (`engine/tests/fuzz_corpus.rs`) call the same functions, so a crash the fuzzer
//! found is replayed by a plain `cargo test`. Each takes raw bytes and must never panic, hang
//! or use huge memory; errors are the expected outcome for most inputs.

use crate::inventory::{pattern, range, Format, Inventory};
use std::collections::BTreeMap;

/// The inventory that `pattern` selects from and `plan` uses when its input has none.
const SMALL_INVENTORY: &str = "\
lonely
[controller]
ctl[1:3]
[compute]
cmp[01:04].dc1 ansible_port=2222
[storage]
st-[a:c]
[dc1]
ctl1
cmp01.dc1
[openstack:children]
controller
compute
[openstack:vars]
region=east
";

/// Separates a runbook from the inventory in `plan`'s input: `//%% inventory ini|yaml|toml`.
const INVENTORY_MARK: &str = "//%% inventory ";
/// An optional last line of `plan`'s input: `//%% limit PATTERN`.
const LIMIT_MARK: &str = "//%% limit ";

fn inventory(data: &[u8], format: Format) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(inv) = Inventory::parse("fuzz", text, format) {
        let vars = inv.all_host_vars();
        assert_eq!(vars.len(), inv.hosts.len());
        for h in inv.hosts.keys() {
            inv.direct_groups(h);
        }
        // Each call costs up to every host; a few groups cover the code without making the
        // target's run time hosts x groups.
        for g in inv.groups.keys().take(8) {
            inv.members(g);
            inv.is_gathering_group(g);
        }
    }
}

/// An Ansible INI inventory.
pub fn ini(data: &[u8]) {
    inventory(data, Format::Ini);
}

/// An Ansible YAML inventory.
pub fn yaml(data: &[u8]) {
    inventory(data, Format::Yaml);
}

/// A native TOML inventory.
pub fn toml(data: &[u8]) {
    inventory(data, Format::Toml);
}

/// A host pattern (`--limit`, exec's pattern) against a small fixed inventory.
pub fn pattern(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let inv = Inventory::parse("fuzz", SMALL_INVENTORY, Format::Ini).expect("fixed inventory");
    if let Ok(hosts) = pattern::select(&inv, text) {
        assert!(!hosts.is_empty(), "an empty selection must be an error");
        assert!(hosts.iter().all(|h| inv.hosts.contains_key(h)));
    }
}

/// A host range such as `web[01:20].dc1`.
pub fn range(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut budget = range::Budget::default();
    let _ = range::expand(text, &mut budget);
}

/// A runbook, optionally followed by `//%% inventory FORMAT` and an inventory, and by
/// `//%% limit PATTERN`, planned as `fleetbook plan` would.
pub fn plan(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (rest, limit) = match text.rfind(LIMIT_MARK) {
        Some(i) => (&text[..i], Some(text[i + LIMIT_MARK.len()..].trim_end())),
        None => (text, None),
    };
    let (runbook, inventory, format) = match rest.find(INVENTORY_MARK) {
        Some(i) => {
            let after = &rest[i + INVENTORY_MARK.len()..];
            let (kind, inv) = after.split_once('\n').unwrap_or((after, ""));
            let format = match kind.trim() {
                "yaml" => Format::Yaml,
                "toml" => Format::Toml,
                _ => Format::Ini,
            };
            (&rest[..i], inv, format)
        }
        None => (rest, SMALL_INVENTORY, Format::Ini),
    };
    let _ = crate::plan::plan_text(runbook, inventory, format, &BTreeMap::new(), limit);
}
