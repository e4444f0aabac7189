//! Inventories: hosts, groups and variables, read from Ansible INI, Ansible YAML or the
//! native TOML form. Takes a file; gives an [`Inventory`] in file order.

mod ini;
pub mod pattern;
pub(crate) mod range;
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
        // Editors on Windows start files with a byte order mark; it is not part of the text.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut inv = Inventory {
            source: source.to_string(),
            ranges: range::Budget::from_env().map_err(Error::input)?,
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

    /// The host names `pattern` stands for, its ranges expanded within the inventory's bound.
    pub(crate) fn expand(&mut self, pattern: &str) -> Result<Vec<String>, String> {
        range::expand(pattern, &mut self.ranges)
    }

    /// Adds a host (to `group` too, if given) after checking its name and connection variables.
    pub(crate) fn add_host(
        &mut self,
        group: Option<&str>,
        name: &str,
        vars: IndexMap<String, String>,
    ) -> Result<(), String> {
        check_host_name(name)?;
        for (k, v) in &vars {
            check_var(k, v)?;
        }
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
        Ok(())
    }

    /// Puts hosts that are in no group but `all` into `ungrouped`, and only those (a host
    /// listed before any section and again under a group is not ungrouped), and makes every
    /// group a descendant of `all`, as Ansible does.
    fn finish(&mut self) {
        let grouped: IndexSet<String> = self
            .groups
            .values()
            .filter(|g| g.name != "all" && g.name != "ungrouped")
            .flat_map(|g| g.hosts.iter().cloned())
            .collect();
        let lonely: IndexSet<String> = self
            .hosts
            .keys()
            .filter(|h| !grouped.contains(*h))
            .cloned()
            .collect();
        if !lonely.is_empty() || self.groups.contains_key("ungrouped") {
            self.group_mut("ungrouped").hosts = lonely;
        }
        let all_hosts: IndexSet<String> = self.hosts.keys().cloned().collect();
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
    pub fn members(&self, group: &str) -> IndexSet<String> {
        self.members_of(&[group])
    }

    /// Every host of any of `groups`, through their children, in inventory order: one pass
    /// over the hosts however many groups there are.
    pub fn members_of(&self, groups: &[&str]) -> IndexSet<String> {
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

    /// Host variables for every host, merged as Ansible does: `all`, then the host's groups
    /// from the shallowest to the deepest (by name within a depth), then the host line.
    pub fn all_host_vars(&self) -> IndexMap<String, IndexMap<String, String>> {
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
            for h in &grp.hosts {
                if let Some(i) = self.hosts.get_index_of(h) {
                    direct[i].push(g);
                }
            }
        }
        let all = self.groups.get_index_of("all");
        let mut merged: std::collections::HashMap<Vec<usize>, IndexMap<String, String>> =
            std::collections::HashMap::new();
        let mut out = IndexMap::with_capacity(self.hosts.len());
        for ((name, host), groups) in self.hosts.iter().zip(direct) {
            let group_vars = merged.entry(groups).or_insert_with_key(|groups| {
                let mut seen = vec![false; n];
                let mut stack: Vec<usize> = groups.iter().copied().chain(all).collect();
                let mut up = Vec::new();
                while let Some(g) = stack.pop() {
                    if !std::mem::replace(&mut seen[g], true) {
                        up.push(g);
                        stack.extend(&parents[g]);
                    }
                }
                up.sort_by(|&a, &b| {
                    (depths[a], &self.groups[a].name).cmp(&(depths[b], &self.groups[b].name))
                });
                let mut vars = IndexMap::new();
                for g in up {
                    vars.extend(
                        self.groups[g]
                            .vars
                            .iter()
                            .map(|(k, v)| (k.clone(), v.clone())),
                    );
                }
                vars
            });
            let mut vars = group_vars.clone();
            vars.extend(host.vars.iter().map(|(k, v)| (k.clone(), v.clone())));
            out.insert(name.clone(), vars);
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
            } else if value.chars().any(char::is_whitespace) {
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
                1,
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
            .map_or(true, |g| g.hosts.is_empty()));
        assert_eq!(inv.direct_groups("w1"), ["web"]);
    }

    // A byte order mark made the first line of an inventory unreadable.
    #[test]
    fn bom_at_the_start_is_ignored() {
        let inv = Inventory::parse("inv", "\u{feff}[web]\nw1\n", Format::Ini).unwrap();
        assert_eq!(inv.direct_groups("w1"), ["web"]);
    }
}
