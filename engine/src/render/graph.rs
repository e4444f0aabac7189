//! The role/step graph of a plan as DOT and Mermaid. Hosts are collapsed by role: a fleet of
//! 80,000 hosts draws as a handful of role boxes with counts.

use crate::plan::Plan;
use std::collections::{HashMap, HashSet};
use std::fmt::Write;

/// One box per role with its steps, plus the runbook-level nodes.
struct Picture {
    title: String,
    onces: Vec<String>,
    roles: Vec<RoleBox>,
    /// `finally` steps: after everything, whatever happened.
    finals: Vec<String>,
    /// (before role, after role)
    edges: Vec<(usize, usize)>,
}

struct RoleBox {
    label: String,
    /// The role this one is drawn inside of (a nested inventory group).
    within: Option<usize>,
    before: Vec<String>,
    /// `canary: web-1 first`: the hosts that run before the rest of the role.
    canary: Option<String>,
    /// `before_each_host` checks every host of the role runs first.
    checks: Vec<String>,
    steps: Vec<String>,
    /// (kind, name): after_role, gate, approval
    after: Vec<(String, String)>,
    /// `php-1, php-2, php-3`: for a box that draws no step of its own.
    hosts: String,
}

const MAX_NAMES: usize = 4;

/// `a, b, c` or `a, b, c, d … +3 more`.
fn names(hosts: &[&crate::plan::HostInfo]) -> String {
    let mut s: Vec<&str> = hosts
        .iter()
        .take(MAX_NAMES)
        .map(|h| h.name.as_str())
        .collect();
    let more = hosts.len().saturating_sub(MAX_NAMES);
    let more = format!("… +{more} more");
    if hosts.len() > MAX_NAMES {
        s.push(&more);
    }
    s.join(", ")
}

/// The label of a role box: name and hosts, limit, failure budget, canary, the notes.
fn role_label(plan: &Plan, i: usize) -> String {
    let r = &plan.roles[i];
    let mut label = format!("{} ({})", r.name, super::summary::count(r.hosts, "host"));
    if r.limit.is_some() {
        let _ = write!(label, "\n{}", super::describe::role_limit(r));
    }
    if let Some(m) = r.max_failures {
        let _ = write!(label, "\nmax failures {m}");
    }
    for n in super::describe::role_notes(plan, i) {
        if !n.starts_with("within ") {
            let _ = write!(label, "\n{n}");
        }
    }
    label
}

/// The (role, step) pairs drawn: a step in each role it names, and a step of every host in
/// the roles of the hosts that run it, but never again inside a role already drawing it.
fn drawn_steps<'a>(plan: &'a Plan, within: &[Option<usize>]) -> HashSet<(usize, &'a str)> {
    let index: HashMap<&str, usize> = plan
        .roles
        .iter()
        .enumerate()
        .map(|(i, r)| (r.name.as_str(), i))
        .collect();
    let host_roles: HashMap<&str, &Vec<String>> = plan
        .hosts
        .iter()
        .map(|h| (h.name.as_str(), &h.roles))
        .collect();
    let mut runs: HashSet<(usize, &str)> = HashSet::new();
    for t in &plan.tasks {
        if let (Some(h), Some(st)) = (t.host.as_deref(), t.step.as_deref()) {
            for r in host_roles.get(h).into_iter().flat_map(|v| v.iter()) {
                if let Some(&i) = index.get(r.as_str()) {
                    runs.insert((i, st));
                }
            }
        }
    }
    let named: HashMap<&str, &Vec<String>> = plan
        .runbook
        .steps
        .iter()
        .filter_map(|s| s.roles.as_ref().map(|r| (s.name.as_str(), r)))
        .collect();
    runs.iter()
        .copied()
        .filter(|&(i, st)| match named.get(st) {
            Some(rs) => rs.contains(&plan.roles[i].name),
            None => !super::describe::ancestors(within, i)
                .iter()
                .any(|&a| runs.contains(&(a, st))),
        })
        .collect()
}

fn picture(plan: &Plan) -> Picture {
    let steps = &plan.runbook.steps;
    let within = super::describe::enclosing(plan);
    let drawn = drawn_steps(plan, &within);
    let members = super::describe::role_members(plan);
    let roles = plan
        .roles
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let for_role = |kind: &str| -> Vec<String> {
                steps
                    .iter()
                    .filter(|s| {
                        s.kind == kind && s.roles.as_ref().is_some_and(|rs| rs.contains(&r.name))
                    })
                    .map(|s| s.name.clone())
                    .collect()
            };
            let drawn = &drawn;
            let of_kind = |kind: &'static str| {
                steps
                    .iter()
                    .filter(move |s| s.kind == kind && drawn.contains(&(i, s.name.as_str())))
            };
            RoleBox {
                label: role_label(plan, i),
                within: within[i],
                before: for_role("before_role"),
                canary: r.canary.map(|n| {
                    let first: Vec<&crate::plan::HostInfo> =
                        members[i].iter().copied().take(n).collect();
                    format!(
                        "canary: {} first\nthe other {} after it",
                        names(&first),
                        r.hosts.saturating_sub(n)
                    )
                }),
                checks: of_kind("before_each_host")
                    .map(|s| s.name.clone())
                    .collect(),
                steps: of_kind("host").map(step_label).collect(),
                after: steps
                    .iter()
                    .filter(|s| {
                        matches!(s.kind.as_str(), "after_role" | "gate" | "approval")
                            && s.roles.as_ref().is_some_and(|rs| rs.contains(&r.name))
                    })
                    .map(|s| (s.kind.clone(), s.name.clone()))
                    .collect(),
                hosts: names(&members[i]),
            }
        })
        .collect();
    let index = |n: &str| plan.roles.iter().position(|r| r.name == n);
    let edges = plan
        .roles
        .iter()
        .enumerate()
        .flat_map(|(i, r)| r.after.iter().filter_map(move |a| index(a).map(|p| (p, i))))
        .collect();
    Picture {
        title: plan.runbook.name.clone(),
        onces: steps
            .iter()
            .filter(|s| s.kind == "once")
            .map(|s| s.name.clone())
            .collect(),
        roles,
        edges,
        finals: steps
            .iter()
            .filter(|s| s.kind == "finally")
            .map(|s| s.name.clone())
            .collect(),
    }
}

fn step_label(s: &crate::plan::StepInfo) -> String {
    let mut l = s.name.clone();
    if let Some(t) = s.throttle {
        let _ = write!(l, " (throttle {t})");
    }
    if s.conditional {
        l.push_str(" (when)");
    }
    if let Some(t) = s.soak {
        let _ = write!(l, " (soak {})", super::describe::dur(t));
    }
    if s.always {
        l.push_str(" (always)");
    }
    l
}

impl Picture {
    /// Top-level roles no other role waits for: where the `finally` steps hang.
    fn last_roles(&self) -> Vec<usize> {
        (0..self.roles.len())
            .filter(|&i| self.roles[i].within.is_none())
            .filter(|&i| !self.edges.iter().any(|&(b, _)| b == i))
            .collect()
    }

    /// Top-level roles that wait for no other: where the `once` steps lead.
    fn first_roles(&self) -> Vec<usize> {
        (0..self.roles.len())
            .filter(|&i| self.roles[i].within.is_none())
            .filter(|&i| !self.edges.iter().any(|&(_, a)| a == i))
            .collect()
    }

    /// Roles drawn directly inside `parent` (None: at the top).
    fn inside(&self, parent: Option<usize>) -> Vec<usize> {
        (0..self.roles.len())
            .filter(|&i| self.roles[i].within == parent)
            .collect()
    }
}

/// A DOT string literal: backslashes, quotes and newlines escaped (petgraph's Dot does not).
fn dq(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The nodes of a role box in order: (id, label, shape).
fn role_nodes(i: usize, r: &RoleBox) -> Vec<(String, String, &'static str)> {
    let mut v = Vec::new();
    for (j, b) in r.before.iter().enumerate() {
        v.push((format!("r{i}b{j}"), format!("before\n{b}"), "ellipse"));
    }
    if let Some(c) = &r.canary {
        v.push((format!("r{i}k"), c.clone(), "note"));
    }
    for (j, c) in r.checks.iter().enumerate() {
        v.push((
            format!("r{i}c{j}"),
            format!("check each host\n{c}"),
            "octagon",
        ));
    }
    for (j, s) in r.steps.iter().enumerate() {
        v.push((format!("r{i}s{j}"), s.clone(), "box"));
    }
    for (j, (kind, a)) in r.after.iter().enumerate() {
        let (shape, note) = match kind.as_str() {
            "gate" if r.canary.is_some() => ("octagon", "\n(after the canary\nand after the role)"),
            "gate" => ("octagon", ""),
            "approval" => ("hexagon", "\n(fleetbook approve)"),
            _ => ("ellipse", ""),
        };
        v.push((
            format!("r{i}a{j}"),
            format!("{}\n{a}{note}", kind.replace('_', " ")),
            shape,
        ));
    }
    if v.is_empty() {
        // A nested group runs the steps drawn in the box around it.
        let what = if r.within.is_some() {
            r.hosts.clone()
        } else {
            format!("no step of its own\n{}", r.hosts)
        };
        v.push((format!("r{i}h"), what, "plaintext"));
    }
    v
}

/// The first node of each role box: edges between roles are drawn from and to it, clipped
/// at the boxes' borders, so that boxes line up on their left edge.
fn first_nodes(nodes: &[Vec<(String, String, &str)>]) -> Vec<String> {
    nodes.iter().map(|n| n[0].0.clone()).collect()
}

pub fn dot(plan: &Plan) -> String {
    let p = picture(plan);
    let mut o = String::new();
    let _ = writeln!(o, "digraph {} {{", dq(&p.title));
    // Roles top to bottom, each role's steps left to right on one rank: a long runbook grows
    // downwards a role at a time instead of into one very wide line.
    let _ = writeln!(
        o,
        "  rankdir=TB; compound=true; newrank=true; node [shape=box, fontname=\"Helvetica\"];"
    );
    let _ = writeln!(
        o,
        "  label={}; labelloc=t;",
        dq(&format!("runbook {}", p.title))
    );
    let mut prev: Option<String> = None;
    for (k, name) in p.onces.iter().enumerate() {
        let id = format!("once{k}");
        let _ = writeln!(
            o,
            "  {id} [label={}, shape=ellipse];",
            dq(&format!("once\n{name}"))
        );
        if let Some(pr) = &prev {
            let _ = writeln!(o, "  {pr} -> {id};");
        }
        prev = Some(id);
    }
    let nodes: Vec<Vec<(String, String, &str)>> = p
        .roles
        .iter()
        .enumerate()
        .map(|(i, r)| role_nodes(i, r))
        .collect();
    let first = first_nodes(&nodes);
    for i in p.inside(None) {
        dot_cluster(&mut o, &p, &nodes, i, 1);
    }
    if let Some(last_once) = &prev {
        for i in p.first_roles() {
            let _ = writeln!(o, "  {last_once} -> {} [lhead=cluster_r{i}];", first[i]);
        }
    }
    for &(b, a) in &p.edges {
        let _ = writeln!(
            o,
            "  {} -> {} [ltail=cluster_r{b}, lhead=cluster_r{a}, style=bold];",
            first[b], first[a]
        );
    }
    let mut prev_final: Option<String> = None;
    for (k, name) in p.finals.iter().enumerate() {
        let id = format!("finally{k}");
        let _ = writeln!(
            o,
            "  {id} [label={}, shape=ellipse, style=dashed];",
            dq(&format!("finally\n{name}\n(whatever happened)"))
        );
        match &prev_final {
            Some(pr) => {
                let _ = writeln!(o, "  {pr} -> {id};");
            }
            None => {
                for i in p.last_roles() {
                    let _ = writeln!(
                        o,
                        "  {} -> {id} [ltail=cluster_r{i}, style=dashed];",
                        first[i]
                    );
                }
            }
        }
        prev_final = Some(id);
    }
    o.push_str("}\n");
    o
}

/// A role's box with its chain of nodes on one rank, and the boxes of the roles nested in it
/// below the chain.
fn dot_cluster(
    o: &mut String,
    p: &Picture,
    nodes: &[Vec<(String, String, &str)>],
    i: usize,
    depth: usize,
) {
    let pad = "  ".repeat(depth);
    let r = &p.roles[i];
    let _ = writeln!(o, "{pad}subgraph cluster_r{i} {{");
    let _ = writeln!(o, "{pad}  label={}; style=rounded;", dq(&r.label));
    for (id, label, shape) in &nodes[i] {
        let _ = writeln!(o, "{pad}  {id} [label={}, shape={shape}];", dq(label));
    }
    for w in nodes[i].windows(2) {
        let _ = writeln!(o, "{pad}  {} -> {};", w[0].0, w[1].0);
    }
    if nodes[i].len() > 1 {
        let ids: Vec<&str> = nodes[i].iter().map(|n| n.0.as_str()).collect();
        let _ = writeln!(o, "{pad}  {{ rank=same; {}; }}", ids.join("; "));
    }
    for c in p.inside(Some(i)) {
        dot_cluster(o, p, nodes, c, depth + 1);
        let _ = writeln!(
            o,
            "{pad}  {} -> {} [style=invis];",
            nodes[i][0].0, nodes[c][0].0
        );
    }
    let _ = writeln!(o, "{pad}}}");
}

/// A Mermaid label: quoted, with the characters Mermaid treats specially as entities.
fn mq(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("#quot;"),
            '<' => out.push_str("#lt;"),
            '>' => out.push_str("#gt;"),
            '#' => out.push_str("#35;"),
            '\n' => out.push_str("<br/>"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub fn mermaid(plan: &Plan) -> String {
    let p = picture(plan);
    let mut o = String::from("flowchart TB\n");
    let mut prev: Option<String> = None;
    for (k, name) in p.onces.iter().enumerate() {
        let id = format!("once{k}");
        let _ = writeln!(o, "  {id}([{}])", mq(&format!("once\n{name}")));
        if let Some(pr) = &prev {
            let _ = writeln!(o, "  {pr} --> {id}");
        }
        prev = Some(id);
    }
    for i in p.inside(None) {
        mermaid_subgraph(&mut o, &p, i, 1);
    }
    if let Some(last_once) = &prev {
        for i in p.first_roles() {
            let _ = writeln!(o, "  {last_once} --> r{i}");
        }
    }
    for &(b, a) in &p.edges {
        let _ = writeln!(o, "  r{b} ==> r{a}");
    }
    let mut prev_final: Option<String> = None;
    for (k, name) in p.finals.iter().enumerate() {
        let id = format!("finally{k}");
        let _ = writeln!(
            o,
            "  {id}([{}])",
            mq(&format!("finally\n{name}\n(whatever happened)"))
        );
        match &prev_final {
            Some(pr) => {
                let _ = writeln!(o, "  {pr} --> {id}");
            }
            None => {
                for i in p.last_roles() {
                    let _ = writeln!(o, "  r{i} -.-> {id}");
                }
            }
        }
        prev_final = Some(id);
    }
    o
}

/// A role's subgraph, its steps left to right, the subgraphs of the roles nested in it.
fn mermaid_subgraph(o: &mut String, p: &Picture, i: usize, depth: usize) {
    let pad = "  ".repeat(depth);
    let r = &p.roles[i];
    let nodes = role_nodes(i, r);
    let _ = writeln!(o, "{pad}subgraph r{i}[{}]", mq(&r.label));
    let _ = writeln!(o, "{pad}  direction LR");
    for (id, label, shape) in &nodes {
        let l = mq(label);
        let _ = match *shape {
            "octagon" => writeln!(o, "{pad}  {id}{{{{{l}}}}}"),
            "hexagon" => writeln!(o, "{pad}  {id}[[{l}]]"),
            "ellipse" => writeln!(o, "{pad}  {id}([{l}])"),
            "note" => writeln!(o, "{pad}  {id}>{l}]"),
            _ => writeln!(o, "{pad}  {id}[{l}]"),
        };
    }
    for w in nodes.windows(2) {
        let _ = writeln!(o, "{pad}  {} --> {}", w[0].0, w[1].0);
    }
    for c in p.inside(Some(i)) {
        mermaid_subgraph(o, p, c, depth + 1);
    }
    let _ = writeln!(o, "{pad}end");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_strings_are_escaped() {
        assert_eq!(dq("a \"b\" \\ c\nd"), "\"a \\\"b\\\" \\\\ c\\nd\"");
    }

    #[test]
    fn mermaid_labels_are_escaped() {
        assert_eq!(
            mq("say \"hi\" <b> #1"),
            "\"say #quot;hi#quot; #lt;b#gt; #35;1\""
        );
    }
}
