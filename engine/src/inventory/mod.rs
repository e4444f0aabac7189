//! Inventories: hosts, groups and variables, read from Ansible INI, Ansible YAML or the
//! native TOML form. Takes a file; gives an [`Inventory`] in file order.

mod ini;
pub mod pattern;
mod range;
mod toml_inv;
mod yaml;

use crate::error::{read_file, Error, Result, SourceDiag};
use indexmap::{IndexMap, IndexSet};
use std::path::Path;
use std::sync::Arc;

/// One host as the inventory declares it (its own variables only).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InvHost {
    pub name: String,
    pub vars: IndexMap<String, String>,
}

/// One group: hosts listed directly, child groups, and group variables.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Group {
    pub name: String,
    pub hosts: IndexSet<String>,
    pub children: IndexSet<String>,
    pub vars: IndexMap<String, String>,
}

#[derive(Debug, Clone, Default)]
pub struct Inventory {
    /// Where it came from, for messages.
    pub source: String,
    pub hosts: IndexMap<String, InvHost>,
    /// Every group, `all` and `ungrouped` included.
    pub groups: IndexMap<String, Group>,
}

/// The formats an inventory can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Ini,
    Yaml,
    Toml,
}

impl Format {
    /// From the extension; files without one are INI, as Ansible's `hosts` file is.
    pub fn of(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some("yml" | "yaml") => Format::Yaml,
            Some("toml") => Format::Toml,
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
    /// Reads an inventory file in the format its extension says.
    pub fn load(path: &Path) -> Result<Inventory> {
        let text = read_file(path)?;
        Inventory::parse(&path.display().to_string(), &text, Format::of(path))
    }

    pub fn parse(source: &str, text: &str, format: Format) -> Result<Inventory> {
        let mut inv = Inventory {
            source: source.to_string(),
            ..Default::default()
        };
        inv.group_mut("all");
        let parsed = match format {
            Format::Ini => ini::parse(text, &mut inv),
            Format::Yaml => yaml::parse(text, &mut inv),
            Format::Toml => toml_inv::parse(text, &mut inv),
        };
        parsed.map_err(|e| {
            Error::from(
                SourceDiag::new(
                    source,
                    Arc::from(text),
                    format!("malformed inventory: {}", e.message),
                )
                .label_at(e.line, e.col, "here"),
            )
        })?;
        inv.finish();
        inv.check_children_cycles()?;
        Ok(inv)
    }

    pub(crate) fn group_mut(&mut self, name: &str) -> &mut Group {
        self.groups
            .entry(name.to_string())
            .or_insert_with(|| Group {
                name: name.to_string(),
                ..Default::default()
            })
    }

    pub(crate) fn add_host(
        &mut self,
        group: Option<&str>,
        name: &str,
        vars: IndexMap<String, String>,
    ) {
        let host = self
            .hosts
            .entry(name.to_string())
            .or_insert_with(|| InvHost {
                name: name.to_string(),
                vars: IndexMap::new(),
            });
        host.vars.extend(vars);
        if let Some(g) = group {
            self.group_mut(g).hosts.insert(name.to_string());
        }
    }

    /// Puts hosts that are in no group but `all` into `ungrouped`, and makes every group a
    /// descendant of `all`, as Ansible does.
    fn finish(&mut self) {
        let grouped: IndexSet<String> = self
            .groups
            .values()
            .filter(|g| g.name != "all" && g.name != "ungrouped")
            .flat_map(|g| g.hosts.iter().cloned())
            .collect();
        let lonely: Vec<String> = self
            .hosts
            .keys()
            .filter(|h| !grouped.contains(*h))
            .cloned()
            .collect();
        if !lonely.is_empty() {
            let ungrouped = self.group_mut("ungrouped");
            ungrouped.hosts.extend(lonely);
        }
        let all_hosts: IndexSet<String> = self.hosts.keys().cloned().collect();
        self.group_mut("all").hosts = all_hosts;
    }

    fn check_children_cycles(&self) -> Result<()> {
        // Depth-first with an explicit stack: inventories are small but may be hostile.
        for start in self.groups.keys() {
            let mut stack = vec![(start.as_str(), vec![start.as_str()])];
            while let Some((g, path)) = stack.pop() {
                for c in &self.groups[g].children {
                    if c == start {
                        let mut cycle = path.clone();
                        cycle.push(c);
                        return Err(Error::input(format!(
                            "{}: group children form a cycle: {}",
                            self.source,
                            cycle.join(" -> ")
                        )));
                    }
                    if !path.contains(&c.as_str()) && path.len() < 64 {
                        let mut p = path.clone();
                        p.push(c);
                        stack.push((c, p));
                    }
                }
            }
        }
        Ok(())
    }

    /// Every host of `group`, through its children, in inventory order.
    pub fn members(&self, group: &str) -> IndexSet<String> {
        let mut seen = IndexSet::new();
        let mut out = IndexSet::new();
        let mut stack = vec![group];
        while let Some(g) = stack.pop() {
            if !seen.insert(g.to_string()) {
                continue;
            }
            if let Some(grp) = self.groups.get(g) {
                out.extend(grp.hosts.iter().cloned());
                stack.extend(grp.children.iter().map(String::as_str));
            }
        }
        // Inventory order, not discovery order.
        let mut ordered: Vec<String> = out.into_iter().collect();
        ordered.sort_by_key(|h| self.hosts.get_index_of(h).unwrap_or(usize::MAX));
        ordered.into_iter().collect()
    }

    /// Groups that list the host directly (`all` and `ungrouped` excluded).
    pub fn direct_groups(&self, host: &str) -> Vec<String> {
        self.groups
            .values()
            .filter(|g| g.name != "all" && g.name != "ungrouped" && g.hosts.contains(host))
            .map(|g| g.name.clone())
            .collect()
    }

    /// Depth of each group below `all` (longest path), for variable precedence.
    fn depths(&self) -> IndexMap<String, usize> {
        let mut depth: IndexMap<String, usize> =
            self.groups.keys().map(|g| (g.clone(), 1)).collect();
        depth.insert("all".into(), 0);
        // Relax along child edges; cycles were rejected, so this settles in |groups| rounds.
        for _ in 0..self.groups.len() {
            let mut changed = false;
            for g in self.groups.values() {
                let d = depth[&g.name];
                for c in &g.children {
                    if depth[c] < d + 1 {
                        depth.insert(c.clone(), d + 1);
                        changed = true;
                    }
                }
            }
            if !changed {
                break;
            }
        }
        depth
    }

    /// Host variables for every host, merged as Ansible does: `all`, then the host's groups
    /// from the shallowest to the deepest (by name within a depth), then the host line.
    pub fn all_host_vars(&self) -> IndexMap<String, IndexMap<String, String>> {
        let depths = self.depths();
        let mut order: Vec<&Group> = self.groups.values().collect();
        order.sort_by(|a, b| (depths[&a.name], &a.name).cmp(&(depths[&b.name], &b.name)));
        let mut out: IndexMap<String, IndexMap<String, String>> = self
            .hosts
            .keys()
            .map(|h| (h.clone(), IndexMap::new()))
            .collect();
        for g in order {
            if g.vars.is_empty() {
                continue;
            }
            for h in self.members(&g.name) {
                if let Some(v) = out.get_mut(&h) {
                    v.extend(g.vars.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
            }
        }
        for (name, h) in &self.hosts {
            out[name].extend(h.vars.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        out
    }

    /// Groups that hold other groups and no host directly: not roles unless a runbook names them.
    pub fn is_gathering_group(&self, name: &str) -> bool {
        self.groups
            .get(name)
            .is_some_and(|g| g.hosts.is_empty() && !g.children.is_empty())
    }
}

/// Names that look like credentials; their values never leave the inventory.
pub fn is_secret_var(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    if n.ends_with("_file") || n.ends_with("_path") {
        return false;
    }
    [
        "pass",
        "secret",
        "token",
        "credential",
        "private_key",
        "api_key",
        "apikey",
    ]
    .iter()
    .any(|s| n.contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names_are_recognised() {
        assert!(is_secret_var("ansible_become_password"));
        assert!(is_secret_var("ansible_ssh_pass"));
        assert!(is_secret_var("vault_token"));
        assert!(!is_secret_var("ansible_ssh_private_key_file"));
        assert!(!is_secret_var("replication_group"));
    }
}
