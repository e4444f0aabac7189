//! Inventories: hosts, groups and variables, read as Ansible reads them — INI, YAML (1.1, as
//! PyYAML), `ansible-inventory --list` JSON, Ansible Vault, `group_vars/` and `host_vars/` —
//! or from the native TOML form. Takes a file (or its text); gives an [`Inventory`] in file
//! order whose variables keep their types ([`Inventory::all_host_values`]).

mod address;
pub mod export;
mod ini;
mod json_inv;
mod literal;
mod load;
pub mod pattern;
pub(crate) mod range;
mod toml_inv;
mod vars_dirs;
pub mod vault;
mod yaml;
mod yaml11;

pub use load::LoadOptions;
pub use vault::VaultKeys;

use crate::error::{Error, Result, SourceDiag};
use crate::shared::{NameMap, NameSet};
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;

/// Variables with their types, as Ansible gives them.
pub type Vars = NameMap<String, Value>;

/// One host as the inventory declares it (its own variables only).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InvHost {
    pub name: String,
    /// From the inventory file.
    pub vars: Vars,
    /// From `host_vars/` (above the inventory's own, as in Ansible).
    pub file_vars: Vars,
}

/// One group: hosts listed directly, child groups, and group variables.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Group {
    pub name: String,
    pub hosts: NameSet<String>,
    pub children: NameSet<String>,
    /// From the inventory file.
    pub vars: Vars,
    /// From `group_vars/`.
    pub file_vars: Vars,
    /// `ansible_group_priority`: orders groups of one depth before their names do.
    pub priority: i64,
}

#[derive(Debug, Clone, Default)]
pub struct Inventory {
    /// Where it came from, for messages.
    pub source: String,
    pub hosts: NameMap<String, InvHost>,
    /// Every group, `all` and `ungrouped` included.
    pub groups: NameMap<String, Group>,
    /// What Ansible would warn about and go on (duplicate YAML keys, skipped entries).
    pub warnings: Vec<String>,
    /// Variables that held vaulted values: every value they take is a secret.
    pub secret_vars: NameSet<String>,
    /// Decrypted `!vault` values and their envelopes: listings show the envelope, as
    /// `ansible-inventory` does, never the plain text.
    pub vault_envelopes: NameMap<String, String>,
    /// sha256 of every file read (inventory, vars files), set by [`Inventory::load_with`].
    pub digest: String,
    /// Hosts put in `ungrouped` by the file itself (INI lines before any section).
    explicit_ungrouped: NameSet<String>,
    /// Hosts that ranges may still produce while the inventory is read.
    ranges: range::Budget,
    /// For each host (by index), the groups that list it directly, `all` excluded; built
    /// once the inventory is read, so asking for every host's groups is not hosts x groups.
    direct: Vec<Vec<usize>>,
}

/// The formats an inventory can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Ini,
    Yaml,
    Toml,
    /// `ansible-inventory --list` output, or a dynamic inventory script's.
    Json,
    /// Decided by content, as Ansible's plugins do: `--list` JSON, else YAML, else INI.
    Auto,
}

impl Format {
    /// From the extension, as Ansible chooses plugins: `.toml` is TOML; files with no
    /// extension, `.yml`, `.yaml` and `.json` are tried as YAML then INI (by content);
    /// anything else is INI.
    pub fn of(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some("toml") => Format::Toml,
            None | Some("yml" | "yaml" | "json") => Format::Auto,
            _ => Format::Ini,
        }
    }
}

/// Where a parse error is: 1-based line and column.
#[derive(Debug)]
pub(crate) struct ParseError {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl ParseError {
    pub fn at(line: usize, message: impl Into<String>) -> Self {
        ParseError {
            line,
            col: 1,
            message: message.into(),
        }
    }
}

impl Inventory {
    /// Reads an inventory file, its `group_vars/` and `host_vars/`, with the vault
    /// passwords of the environment (`ANSIBLE_VAULT_PASSWORD_FILE`).
    pub fn load(path: &Path) -> Result<Inventory> {
        Inventory::load_with(path, &LoadOptions::from_env()?)
    }

    /// The text alone (no `group_vars/`), with the vault passwords of the environment.
    pub fn parse(source: &str, text: &str, format: Format) -> Result<Inventory> {
        let keys = VaultKeys::from_env().map_err(Error::input)?;
        let mut inv = Inventory::empty(source)?;
        if vault::is_vaulted(text) {
            // Never read ciphertext as host names.
            let plain = keys.decrypt(text).map_err(|m| {
                Error::input(format!(
                    "{source}: cannot decrypt this vaulted inventory: {m}"
                ))
            })?;
            inv.read_text(source, &plain, format, &keys)?;
            inv.mark_all_secret();
        } else {
            inv.read_text(source, text, format, &keys)?;
        }
        inv.finish()?;
        Ok(inv)
    }

    /// Every variable of the inventory file is a secret (the file was vaulted).
    pub(crate) fn mark_all_secret(&mut self) {
        let names: Vec<String> = self
            .hosts
            .values()
            .flat_map(|h| h.vars.keys())
            .chain(self.groups.values().flat_map(|g| g.vars.keys()))
            .cloned()
            .collect();
        self.secret_vars.extend(names);
    }

    fn empty(source: &str) -> Result<Inventory> {
        let mut inv = Inventory {
            source: source.to_string(),
            ranges: range::Budget::from_env().map_err(Error::input)?,
            ..Default::default()
        };
        inv.group_mut("all");
        Ok(inv)
    }

    /// Adds what `text` declares, in `format`.
    fn read_text(
        &mut self,
        source: &str,
        text: &str,
        format: Format,
        vault: &VaultKeys,
    ) -> Result<()> {
        // Editors on Windows start files with a byte order mark; it is not part of the text.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let diag = |e: ParseError| {
            Error::from(
                SourceDiag::new(
                    source,
                    Arc::from(text),
                    format!("malformed inventory: {}", e.message),
                )
                .label_at(e.line, e.col, "here")
                .code("inventory"),
            )
        };
        let parsed = match format {
            Format::Ini => ini::parse(text, self),
            Format::Yaml => yaml::parse(text, self, vault),
            Format::Toml => toml_inv::parse(text, self),
            Format::Json => json_inv::parse(text, self),
            Format::Auto => {
                if json_inv::is_list_output(text) {
                    json_inv::parse(text, self)
                } else {
                    // Ansible tries YAML first and, when the file is not a YAML inventory,
                    // INI; a YAML inventory that is broken inside is an error, not INI.
                    let before = self.clone();
                    match yaml::parse(text, self, vault) {
                        Ok(()) => Ok(()),
                        Err(e) if e.message.starts_with(yaml::NOT_YAML_INVENTORY) => {
                            *self = before;
                            // Both failed: a file named as YAML gets the YAML reason.
                            let yaml_named = [".yml", ".yaml", ".json"]
                                .iter()
                                .any(|x| source.ends_with(x));
                            ini::parse(text, self).map_err(|ini_err| {
                                if yaml_named {
                                    ParseError {
                                        message: e
                                            .message
                                            .trim_start_matches(yaml::NOT_YAML_INVENTORY)
                                            .to_string(),
                                        ..e
                                    }
                                } else {
                                    ini_err
                                }
                            })
                        }
                        Err(e) => Err(e),
                    }
                }
            }
        };
        parsed.map_err(diag)
    }

    pub(crate) fn group_mut(&mut self, name: &str) -> &mut Group {
        self.groups
            .entry(name.to_string())
            .or_insert_with(|| Group {
                name: name.to_string(),
                ..Default::default()
            })
    }

    /// The host names `pattern` stands for, its ranges expanded within the inventory's bound.
    pub(crate) fn expand(&mut self, pattern: &str) -> Result<Vec<String>, String> {
        range::expand(pattern, &mut self.ranges)
    }

    /// Adds a host (to `group` too, if given) after checking its name and connection
    /// variables. A port (`host:2222`) counts only where the host is first declared.
    pub(crate) fn add_host(
        &mut self,
        group: Option<&str>,
        name: &str,
        port: Option<u16>,
        vars: Vars,
    ) -> Result<(), String> {
        check_host_name(name)?;
        for (k, v) in &vars {
            match v {
                // Checked as it is: no copy of every host's every string.
                Value::String(s) => check_var(k, s)?,
                other => check_var(k, &text_of(other))?,
            }
        }
        let new = !self.hosts.contains_key(name);
        let host = self
            .hosts
            .entry(name.to_string())
            .or_insert_with(|| InvHost {
                name: name.to_string(),
                ..Default::default()
            });
        if let (true, Some(p)) = (new, port) {
            host.vars.insert("ansible_port".into(), Value::from(p));
        }
        host.vars.extend(vars);
        match group {
            Some("ungrouped") => {
                self.explicit_ungrouped.insert(name.to_string());
                self.group_mut("ungrouped").hosts.insert(name.to_string());
            }
            Some(g) => {
                self.group_mut(g).hosts.insert(name.to_string());
            }
            None => {}
        }
        Ok(())
    }

    /// Sets a group variable; `ansible_group_priority` also orders the group.
    pub(crate) fn set_group_var(
        &mut self,
        group: &str,
        key: &str,
        value: Value,
    ) -> Result<(), String> {
        check_var(key, &text_of(&value))?;
        let g = self.group_mut(group);
        if key == "ansible_group_priority" {
            g.priority = match &value {
                Value::Number(n) => n.as_i64().unwrap_or(0),
                Value::String(s) => s
                    .trim()
                    .parse()
                    .map_err(|_| format!("ansible_group_priority={s:?} is not an integer"))?,
                Value::Bool(b) => i64::from(*b),
                _ => g.priority,
            };
            // Ansible keeps it as the group's priority, not as a variable.
            return Ok(());
        }
        g.vars.insert(key.to_string(), value);
        Ok(())
    }

    /// After reading: refuses cycles; puts hosts that are in no group but `all` into
    /// `ungrouped`, and takes out of it hosts that another group lists, as Ansible does;
    /// `all` lists every host.
    fn finish(&mut self) -> Result<()> {
        self.check_children_cycles()?;
        let grouped: NameSet<String> = self
            .groups
            .values()
            .filter(|g| g.name != "all" && g.name != "ungrouped")
            .flat_map(|g| g.hosts.iter().cloned())
            .collect();
        let mut ungrouped: NameSet<String> = self
            .explicit_ungrouped
            .iter()
            .filter(|h| !grouped.contains(*h))
            .cloned()
            .collect();
        ungrouped.extend(self.hosts.keys().filter(|h| !grouped.contains(*h)).cloned());
        if !ungrouped.is_empty() || self.groups.contains_key("ungrouped") {
            self.group_mut("ungrouped").hosts = ungrouped;
        }
        let all_hosts: NameSet<String> = self.hosts.keys().cloned().collect();
        self.group_mut("all").hosts = all_hosts;
        let mut direct = vec![Vec::new(); self.hosts.len()];
        for (g, grp) in self.groups.values().enumerate() {
            if grp.name != "all" {
                for h in &grp.hosts {
                    if let Some(i) = self.hosts.get_index_of(h) {
                        direct[i].push(g);
                    }
                }
            }
        }
        self.direct = direct;
        Ok(())
    }

    fn check_children_cycles(&self) -> Result<()> {
        // Depth-first with an explicit stack and colours, so a hostile inventory (deep, or
        // with many paths to one group) costs time linear in its size.
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            OnPath,
            Done,
        }
        let mut mark = vec![Mark::New; self.groups.len()];
        for root in 0..self.groups.len() {
            if mark[root] != Mark::New {
                continue;
            }
            let mut path: Vec<(usize, usize)> = vec![(root, 0)];
            mark[root] = Mark::OnPath;
            while let Some(top) = path.last_mut() {
                let (g, next) = *top;
                top.1 += 1;
                let child = self.groups[g]
                    .children
                    .get_index(next)
                    .and_then(|c| self.groups.get_index_of(c));
                match child {
                    None if next >= self.groups[g].children.len() => {
                        mark[g] = Mark::Done;
                        path.pop();
                    }
                    None => {}
                    Some(c) if mark[c] == Mark::OnPath => {
                        let from = path.iter().position(|&(p, _)| p == c).unwrap_or(0);
                        let mut cycle: Vec<&str> = path[from..]
                            .iter()
                            .map(|&(p, _)| self.groups[p].name.as_str())
                            .collect();
                        cycle.push(self.groups[c].name.as_str());
                        return Err(Error::input(format!(
                            "{}: group children form a cycle: {}",
                            self.source,
                            cycle.join(" -> ")
                        )));
                    }
                    Some(c) if mark[c] == Mark::New => {
                        mark[c] = Mark::OnPath;
                        path.push((c, 0));
                    }
                    Some(_) => {}
                }
            }
        }
        Ok(())
    }

    /// Every host of `group`, through its children, in inventory order.
    pub fn members(&self, group: &str) -> NameSet<String> {
        self.members_of(&[group])
    }

    /// Every host of any of `groups`, through their children, in inventory order: one pass
    /// over the hosts however many groups there are.
    pub fn members_of(&self, groups: &[&str]) -> NameSet<String> {
        let mut seen = vec![false; self.groups.len()];
        let mut member = vec![false; self.hosts.len()];
        let mut stack: Vec<usize> = groups
            .iter()
            .filter_map(|g| self.groups.get_index_of(*g))
            .collect();
        while let Some(g) = stack.pop() {
            if std::mem::replace(&mut seen[g], true) {
                continue;
            }
            let grp = &self.groups[g];
            for h in &grp.hosts {
                if let Some(i) = self.hosts.get_index_of(h) {
                    member[i] = true;
                }
            }
            stack.extend(
                grp.children
                    .iter()
                    .filter_map(|c| self.groups.get_index_of(c)),
            );
        }
        // Inventory order, not discovery order.
        self.hosts
            .keys()
            .zip(member)
            .filter(|(_, m)| *m)
            .map(|(h, _)| h.clone())
            .collect()
    }

    /// Groups that list the host directly, `all` excluded. A host in no other group is in
    /// `ungrouped`, so every host has at least one.
    pub fn direct_groups(&self, host: &str) -> Vec<String> {
        match self.hosts.get_index_of(host) {
            Some(i) if self.direct.len() == self.hosts.len() => self.direct[i]
                .iter()
                .map(|&g| self.groups[g].name.clone())
                .collect(),
            _ => self
                .groups
                .values()
                .filter(|g| g.name != "all" && g.hosts.contains(host))
                .map(|g| g.name.clone())
                .collect(),
        }
    }

    /// Depth of each group below `all` (longest path), for variable precedence: parents
    /// before children (Kahn's order; cycles were rejected), so linear in the graph's size.
    fn depths(&self) -> Vec<usize> {
        let n = self.groups.len();
        let mut depth: Vec<usize> = self
            .groups
            .keys()
            .map(|g| usize::from(g != "all"))
            .collect();
        let children: Vec<Vec<usize>> = self
            .groups
            .values()
            .map(|g| {
                g.children
                    .iter()
                    .filter_map(|c| self.groups.get_index_of(c))
                    .collect()
            })
            .collect();
        let mut parents = vec![0usize; n];
        for c in children.iter().flatten() {
            parents[*c] += 1;
        }
        let mut ready: Vec<usize> = (0..n).filter(|&g| parents[g] == 0).collect();
        while let Some(g) = ready.pop() {
            for &c in &children[g] {
                depth[c] = depth[c].max(depth[g] + 1);
                parents[c] -= 1;
                if parents[c] == 0 {
                    ready.push(c);
                }
            }
        }
        depth
    }

    /// Host variables for every host with their types, merged as Ansible merges them: the
    /// inventory's `all` vars, its other groups' vars (by depth, `ansible_group_priority`,
    /// name), `group_vars/all`, `group_vars/<group>` (same order), the host's own vars, then
    /// `host_vars/<host>`. Each layer replaces whole values (Ansible's `hash_behaviour`).
    pub fn all_host_values(&self) -> NameMap<String, Vars> {
        let depths = self.depths();
        let n = self.groups.len();
        let mut parents: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (g, grp) in self.groups.values().enumerate() {
            for c in grp
                .children
                .iter()
                .filter_map(|c| self.groups.get_index_of(c))
            {
                parents[c].push(g);
            }
        }
        // Hosts listed in the same groups get the same group variables: merge once per set
        // of groups, so a range of many hosts costs one merge, not one per host.
        let mut direct: Vec<Vec<usize>> = vec![Vec::new(); self.hosts.len()];
        for (g, grp) in self.groups.values().enumerate() {
            if grp.name == "all" {
                continue;
            }
            for h in &grp.hosts {
                if let Some(i) = self.hosts.get_index_of(h) {
                    direct[i].push(g);
                }
            }
        }
        let all = self.groups.get_index_of("all");
        let mut merged: std::collections::HashMap<Vec<usize>, Vars> =
            std::collections::HashMap::new();
        let mut out = NameMap::with_capacity_and_hasher(self.hosts.len(), Default::default());
        for ((name, host), groups) in self.hosts.iter().zip(direct) {
            let group_vars = merged.entry(groups).or_insert_with_key(|groups| {
                let mut seen = vec![false; n];
                let mut stack: Vec<usize> = groups.clone();
                let mut up = Vec::new();
                while let Some(g) = stack.pop() {
                    if Some(g) != all && !std::mem::replace(&mut seen[g], true) {
                        up.push(g);
                        stack.extend(&parents[g]);
                    }
                }
                up.sort_by(|&a, &b| {
                    let (ga, gb) = (&self.groups[a], &self.groups[b]);
                    (depths[a], ga.priority, &ga.name).cmp(&(depths[b], gb.priority, &gb.name))
                });
                let mut vars = Vars::default();
                let all_group = all.map(|a| &self.groups[a]);
                let layers = all_group
                    .map(|g| &g.vars)
                    .into_iter()
                    .chain(up.iter().map(|&g| &self.groups[g].vars))
                    .chain(all_group.map(|g| &g.file_vars))
                    .chain(up.iter().map(|&g| &self.groups[g].file_vars));
                for layer in layers {
                    vars.extend(layer.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
                vars
            });
            let mut vars = group_vars.clone();
            vars.extend(host.vars.iter().map(|(k, v)| (k.clone(), v.clone())));
            vars.extend(host.file_vars.iter().map(|(k, v)| (k.clone(), v.clone())));
            out.insert(name.clone(), vars);
        }
        out
    }

    /// [`all_host_values`](Self::all_host_values) as text (strings as they are, other
    /// values as JSON), for what takes text: commands, limits by variable, secrets. A host
    /// with vaulted variables gets them named in `fleetbook_secret_vars`, so they are
    /// redacted wherever the plan and the run show them.
    pub fn all_host_vars(&self) -> NameMap<String, NameMap<String, String>> {
        self.all_host_values()
            .iter()
            .map(|(h, vars)| (h.clone(), self.text_vars(vars)))
            .collect()
    }

    /// One host's [`all_host_values`](Self::all_host_values) as text, as
    /// [`all_host_vars`](Self::all_host_vars) gives them.
    pub fn text_vars(&self, vars: &Vars) -> NameMap<String, String> {
        let mut text: NameMap<String, String> =
            vars.iter().map(|(k, v)| (k.clone(), text_of(v))).collect();
        let vaulted: Vec<&str> = vars
            .keys()
            .filter(|k| self.secret_vars.contains(*k))
            .map(String::as_str)
            .collect();
        if !vaulted.is_empty() {
            let marker = text
                .entry(crate::secrets::INVENTORY_MARKER.to_string())
                .or_default();
            let mut names = marker.clone();
            for v in vaulted {
                if !names.is_empty() {
                    names.push(',');
                }
                names.push_str(v);
            }
            *marker = names;
        }
        text
    }

    /// Groups that hold other groups and no host directly: not roles unless a runbook names them.
    pub fn is_gathering_group(&self, name: &str) -> bool {
        self.groups
            .get(name)
            .is_some_and(|g| g.hosts.is_empty() && !g.children.is_empty())
    }
}

/// A value as text: strings as they are, nothing as "", anything else as JSON.
pub fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A host name must be usable as an SSH destination and never read as an option.
fn check_host_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty host name".into());
    }
    if name.chars().any(char::is_control) {
        return Err(format!("host name {name:?} contains a control character"));
    }
    if name.starts_with('-') {
        return Err(format!(
            "host name {name:?} starts with '-' (ssh would read it as an option)"
        ));
    }
    if name.len() > range::MAX_NAME {
        return Err(format!(
            "host name {:?}... is longer than {} characters",
            name.chars().take(20).collect::<String>(),
            range::MAX_NAME
        ));
    }
    Ok(())
}

/// Checks the connection variables fleetbook uses itself; other variables are free text.
pub(crate) fn check_var(key: &str, value: &str) -> Result<(), String> {
    match key {
        "ansible_port" => {
            let ok = !value.is_empty()
                && value.bytes().all(|b| b.is_ascii_digit())
                && value.parse::<u16>().is_ok_and(|p| p > 0);
            if !ok {
                return Err(format!(
                    "{key}={value:?} is not a port (expected a number from 1 to 65535)"
                ));
            }
        }
        "ansible_host" => {
            let bad = if value.is_empty() {
                Some("is empty")
            } else if value.chars().any(char::is_control) {
                Some("contains a control character")
            } else if value.chars().any(char::is_whitespace) && !value.contains("{{") {
                // A Jinja template (`{{ ... }}`) is Ansible's to evaluate: kept as text.
                Some("contains whitespace")
            } else if value.starts_with('-') {
                Some("starts with '-' (ssh would read it as an option)")
            } else {
                None
            };
            if let Some(why) = bad {
                return Err(format!("{key}={value:?} {why}"));
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The message and the 1-based line of an inventory error.
    fn load_err(text: &str, format: Format) -> (String, usize) {
        let err = Inventory::parse("inv", text, format).unwrap_err();
        let Error::Source(d) = err else {
            panic!("no position in {err}")
        };
        let at = d.labels[0].offset();
        (d.message.clone(), text[..at].matches('\n').count() + 1)
    }

    // `ansible_port=abc` or `99999` used to fall back to port 22 silently.
    #[test]
    fn invalid_port_is_an_error_at_load() {
        let bad = "malformed inventory: ansible_port=\"abc\" is not a port (expected a number from 1 to 65535)";
        let ini = "[web]\nw1\nw2 ansible_port=abc\n";
        assert_eq!(load_err(ini, Format::Ini), (bad.to_string(), 3));
        let ini = "[web]\nw1\n[web:vars]\nansible_port=99999\n";
        assert_eq!(
            load_err(ini, Format::Ini),
            (bad.replace("\"abc\"", "\"99999\""), 4)
        );
        let ini = "[web]\nw1:0\n";
        assert_eq!(load_err(ini, Format::Ini), (bad.replace("abc", "0"), 2));
        let yaml = "all:\n  hosts:\n    w1:\n    w2:\n      ansible_port: abc\n";
        assert_eq!(load_err(yaml, Format::Yaml), (bad.to_string(), 5));
        let yaml = "web:\n  hosts:\n    w1: { ansible_port: 99999 }\n";
        assert_eq!(
            load_err(yaml, Format::Yaml),
            (bad.replace("\"abc\"", "\"99999\""), 3)
        );
        let toml = "[groups.web]\nhosts = [\"w1\"]\n[hosts.w1]\nuser = \"u\"\nport = 0\n";
        assert_eq!(
            load_err(toml, Format::Toml),
            (
                "malformed inventory: port=\"0\" is not a port (expected a number from 1 to 65535)"
                    .to_string(),
                5
            )
        );
        let toml = "[groups.web]\nhosts = [\"w1\"]\nvars = { ansible_port = \"abc\" }\n";
        assert_eq!(load_err(toml, Format::Toml), (bad.to_string(), 3));
    }

    // Host names and ansible_host values that ssh would read as options, or that hold control
    // characters, were accepted.
    #[test]
    fn invalid_host_names_and_addresses_are_errors_at_load() {
        let cases: [(&str, Format, &str, usize); 8] = [
            (
                "[web]\n-oProxyCommand=x\n",
                Format::Ini,
                "host name \"-oProxyCommand=x\" starts with '-' (ssh would read it as an option)",
                2,
            ),
            (
                "[web]\nw1 ansible_host=-oProxyCommand=x\n",
                Format::Ini,
                "ansible_host=\"-oProxyCommand=x\" starts with '-' (ssh would read it as an option)",
                2,
            ),
            (
                "[web]\nw1 ansible_host=\"\"\n",
                Format::Ini,
                "ansible_host=\"\" is empty",
                2,
            ),
            (
                "[web]\nw1 \"ansible_host=a b\"\n",
                Format::Ini,
                "ansible_host=\"a b\" contains whitespace",
                2,
            ),
            (
                "all:\n  hosts:\n    \"w\\u0007\":\n",
                Format::Yaml,
                "host name \"w\\u{7}\" contains a control character",
                3,
            ),
            (
                "all:\n  hosts:\n    \"\":\n",
                Format::Yaml,
                "empty host name",
                3,
            ),
            (
                "all:\n  hosts:\n    w1:\n      ansible_host: \"10.0.0.1\\n\"\n",
                Format::Yaml,
                "ansible_host=\"10.0.0.1\\n\" contains a control character",
                4,
            ),
            (
                "[hosts.w1]\naddress = \"-x\"\n",
                Format::Toml,
                "address=\"-x\" starts with '-' (ssh would read it as an option)",
                2,
            ),
        ];
        for (text, format, msg, line) in cases {
            assert_eq!(
                load_err(text, format),
                (format!("malformed inventory: {msg}"), line),
                "{text:?}"
            );
        }
    }

    // `web[1:2]-[a:b]` was read as host `web[1:2]-[a` with port `b]` ("bad port").
    #[test]
    fn multi_range_host_names_expand_not_bad_port() {
        let inv = Inventory::parse("inv", "[web]\nweb[1:2]-[a:b]:2222\n", Format::Ini).unwrap();
        let names: Vec<&String> = inv.hosts.keys().collect();
        assert_eq!(names, ["web1-a", "web1-b", "web2-a", "web2-b"]);
        assert_eq!(inv.all_host_vars()["web2-b"]["ansible_port"], "2222");
        assert_eq!(
            load_err("[web]\nweb[1:2]-[a:b]:x\n", Format::Ini),
            (
                "malformed inventory: bad port in \"web[1:2]-[a:b]:x\"".to_string(),
                2
            )
        );
    }

    // web[0:999999] took 123 s and 2.1 GB; the bound covers all ranges of the inventory.
    #[test]
    fn ranges_beyond_the_host_bound_fail_with_file_line() {
        let text = "[a]\nx[1:60000]\n[b]\ny[1:60000]\n";
        assert_eq!(
            load_err(text, Format::Ini),
            (
                "malformed inventory: host ranges give more than 100000 hosts (\"y[1:60000]\" \
                 alone gives 60000); set FLEETBOOK_MAX_HOSTS to raise the limit"
                    .to_string(),
                4
            )
        );
        let text = "[groups.a]\nhosts = [\"w[0:999999]\"]\n";
        assert_eq!(load_err(text, Format::Toml).1, 2);
    }

    // Many paths to one group made the cycle check exponential (layers of diamonds).
    #[test]
    fn cycle_check_is_linear_in_diamond_layers() {
        let mut text = String::new();
        for i in 0..60 {
            text += &format!(
                "[l{i}a:children]\nl{n}a\nl{n}b\n[l{i}b:children]\nl{n}a\nl{n}b\n",
                n = i + 1
            );
        }
        // Ansible refuses children that no section defines.
        text += "[l60a]\n[l60b]\n";
        let t = std::time::Instant::now();
        Inventory::parse("inv", &text, Format::Ini).unwrap();
        assert!(t.elapsed().as_secs() < 2, "{:?}", t.elapsed());
    }

    // Hosts under `[all]` only (or YAML `all: hosts:`) had no group at all, so `*` limits and
    // roles missed them; they are in `ungrouped`, as in Ansible.
    #[test]
    fn hosts_in_no_group_are_ungrouped() {
        for (text, format) in [
            ("[all]\nh1\nh2\n[web]\nw1\n", Format::Ini),
            ("h1\nh2\n[web]\nw1\n", Format::Ini),
            ("all:\n  hosts:\n    h1:\n    h2:\n  children:\n    web:\n      hosts:\n        w1:\n", Format::Yaml),
            ("[hosts.h1]\n[hosts.h2]\n[groups.web]\nhosts = [\"w1\"]\n", Format::Toml),
        ] {
            let inv = Inventory::parse("inv", text, format).unwrap();
            let ungrouped: Vec<&String> = inv.groups["ungrouped"].hosts.iter().collect();
            assert_eq!(ungrouped, ["h1", "h2"], "{text:?}");
            assert_eq!(inv.direct_groups("h1"), ["ungrouped"], "{text:?}");
            assert_eq!(inv.direct_groups("w1"), ["web"], "{text:?}");
        }
        // A host listed before any section and again in a group is not ungrouped.
        let inv = Inventory::parse("inv", "w1\n[web]\nw1\n", Format::Ini).unwrap();
        assert!(inv
            .groups
            .get("ungrouped")
            .is_none_or(|g| g.hosts.is_empty()));
        assert_eq!(inv.direct_groups("w1"), ["web"]);
    }

    // A vaulted value must reach the plan's redaction: all_host_vars names it in the
    // inventory marker, which Secrets::add_vars reads.
    #[test]
    fn vaulted_values_are_marked_secret() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "secret\n").unwrap();
        let envelope = "$ANSIBLE_VAULT;1.1;AES256
          34623462323132643965393762333632396435653836366537633661313764336533646236643333
          6566633035366664393366616464633764353930636465340a376339633263373264376466363230
          34303563616364636166376534663036656538396330633131366365303836303361656538333332
          6165333034613739620a303230306231663539343332636537663438613534313233666637616564
          3735";
        let inv_path = dir.path().join("hosts.yml");
        std::fs::write(
            &inv_path,
            format!("db:\n  hosts:\n    db1:\n      dbpw: !vault |\n          {envelope}\n      other: x\n"),
        )
        .unwrap();
        let mut opts = LoadOptions::default();
        opts.vault
            .add_file("default", &dir.path().join("pw"))
            .unwrap();
        let inv = Inventory::load_with(&inv_path, &opts).unwrap();
        let vars = inv.all_host_vars();
        assert_eq!(vars["db1"]["dbpw"], "hunter2-value");
        assert_eq!(vars["db1"][crate::secrets::INVENTORY_MARKER], "dbpw");
        let secrets = crate::secrets::Secrets::new();
        secrets.add_vars(&vars["db1"], &[]);
        assert_eq!(
            secrets.redacted("echo hunter2-value x"),
            "echo <secret:dbpw> x"
        );
        // Without a password: an error at the value, naming the file.
        let err = Inventory::load_with(&inv_path, &LoadOptions::default()).unwrap_err();
        assert!(
            err.to_string()
                .contains("cannot decrypt this !vault value: no vault password"),
            "{err}"
        );
    }

    // A byte order mark made the first line of an inventory unreadable.
    #[test]
    fn bom_at_the_start_is_ignored() {
        let inv = Inventory::parse("inv", "\u{feff}[web]\nw1\n", Format::Ini).unwrap();
        assert_eq!(inv.direct_groups("w1"), ["web"]);
    }
}
