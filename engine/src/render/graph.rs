//! The role/step graph of a plan as DOT and Mermaid. Hosts are collapsed by role: a fleet of
//! 80,000 hosts draws as a handful of role boxes with counts.

use crate::plan::Plan;
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
    before: Vec<String>,
    /// `before_each_host` checks every host of the role runs first.
    checks: Vec<String>,
    steps: Vec<String>,
    /// (kind, name): after_role, gate, approval
    after: Vec<(String, String)>,
}

fn picture(plan: &Plan) -> Picture {
    let steps = &plan.runbook.steps;
    // (role, step) pairs that some host of the role runs: a step limited to `members` also
    // shows in the boxes of the groups its hosts come from.
    let host_roles: std::collections::HashMap<&str, &Vec<String>> = plan
        .hosts
        .iter()
        .map(|h| (h.name.as_str(), &h.roles))
        .collect();
    let mut runs: std::collections::HashSet<(&str, &str)> = std::collections::HashSet::new();
    for t in &plan.tasks {
        if let (Some(h), Some(st)) = (t.host.as_deref(), t.step.as_deref()) {
            for r in host_roles.get(h).into_iter().flat_map(|v| v.iter()) {
                runs.insert((r.as_str(), st));
            }
        }
    }
    let roles = plan
        .roles
        .iter()
        .map(|r| {
            let mut label = format!(
                "{} ({} host{})",
                r.name,
                r.hosts,
                if r.hosts == 1 { "" } else { "s" }
            );
            if r.limit == Some(0) {
                label.push_str("\nheld (limit 0)");
            } else if let Some(l) = r.limit {
                let _ = write!(label, "\nlimit {l}");
                if let Some(d) = r.limit_declared.as_ref().filter(|d| d.ends_with('%')) {
                    let _ = write!(label, " ({d})");
                }
            }
            if let Some(c) = r.canary {
                let _ = write!(label, "\ncanary {c}");
            }
            let for_role = |kind: &str| -> Vec<String> {
                steps
                    .iter()
                    .filter(|s| {
                        s.kind == kind && s.roles.as_ref().is_some_and(|rs| rs.contains(&r.name))
                    })
                    .map(|s| s.name.clone())
                    .collect()
            };
            RoleBox {
                label,
                before: for_role("before_role"),
                checks: steps
                    .iter()
                    .filter(|s| {
                        s.kind == "before_each_host"
                            && runs.contains(&(r.name.as_str(), s.name.as_str()))
                    })
                    .map(|s| s.name.clone())
                    .collect(),
                steps: steps
                    .iter()
                    .filter(|s| {
                        s.kind == "host" && runs.contains(&(r.name.as_str(), s.name.as_str()))
                    })
                    .map(|s| {
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
                    })
                    .collect(),
                after: steps
                    .iter()
                    .filter(|s| {
                        matches!(s.kind.as_str(), "after_role" | "gate" | "approval")
                            && s.roles.as_ref().is_some_and(|rs| rs.contains(&r.name))
                    })
                    .map(|s| (s.kind.clone(), s.name.clone()))
                    .collect(),
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

impl Picture {
    /// Roles no other role waits for: where the `finally` steps hang.
    fn last_roles(&self) -> Vec<usize> {
        (0..self.roles.len())
            .filter(|&i| !self.edges.iter().any(|&(b, _)| b == i))
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
        v.push((format!("r{i}b{j}"), format!("before: {b}"), "ellipse"));
    }
    for (j, c) in r.checks.iter().enumerate() {
        v.push((
            format!("r{i}c{j}"),
            format!("check each host: {c}"),
            "diamond",
        ));
    }
    for (j, s) in r.steps.iter().enumerate() {
        v.push((format!("r{i}s{j}"), s.clone(), "box"));
    }
    for (j, (kind, a)) in r.after.iter().enumerate() {
        let shape = match kind.as_str() {
            "gate" => "diamond",
            "approval" => "hexagon",
            _ => "ellipse",
        };
        v.push((
            format!("r{i}a{j}"),
            format!("{}: {a}", kind.replace('_', " ")),
            shape,
        ));
    }
    if v.is_empty() {
        v.push((format!("r{i}empty"), "(no steps)".into(), "plaintext"));
    }
    v
}

pub fn dot(plan: &Plan) -> String {
    let p = picture(plan);
    let mut o = String::new();
    let _ = writeln!(o, "digraph {} {{", dq(&p.title));
    let _ = writeln!(
        o,
        "  rankdir=LR; compound=true; node [shape=box, fontname=\"Helvetica\"];"
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
            dq(&format!("once: {name}"))
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
    for (i, r) in p.roles.iter().enumerate() {
        let _ = writeln!(o, "  subgraph cluster_r{i} {{");
        let _ = writeln!(o, "    label={}; style=rounded;", dq(&r.label));
        for (id, label, shape) in &nodes[i] {
            let _ = writeln!(o, "    {id} [label={}, shape={shape}];", dq(label));
        }
        for w in nodes[i].windows(2) {
            let _ = writeln!(o, "    {} -> {};", w[0].0, w[1].0);
        }
        let _ = writeln!(o, "  }}");
    }
    let has_pred: Vec<bool> = (0..p.roles.len())
        .map(|i| p.edges.iter().any(|&(_, a)| a == i))
        .collect();
    if let Some(last_once) = &prev {
        for (i, n) in nodes.iter().enumerate() {
            if !has_pred[i] {
                let _ = writeln!(o, "  {last_once} -> {} [lhead=cluster_r{i}];", n[0].0);
            }
        }
    }
    for &(b, a) in &p.edges {
        let (from, to) = (
            &nodes[b].last().map(|n| n.0.clone()).unwrap_or_default(),
            &nodes[a][0].0,
        );
        let _ = writeln!(
            o,
            "  {from} -> {to} [ltail=cluster_r{b}, lhead=cluster_r{a}, style=bold];"
        );
    }
    let mut prev_final: Option<String> = None;
    for (k, name) in p.finals.iter().enumerate() {
        let id = format!("finally{k}");
        let _ = writeln!(
            o,
            "  {id} [label={}, shape=ellipse, style=dashed];",
            dq(&format!("finally: {name}\n(whatever happened)"))
        );
        match &prev_final {
            Some(pr) => {
                let _ = writeln!(o, "  {pr} -> {id};");
            }
            None => {
                for i in p.last_roles() {
                    let from = nodes[i].last().map(|n| n.0.clone()).unwrap_or_default();
                    let _ = writeln!(o, "  {from} -> {id} [ltail=cluster_r{i}, style=dashed];");
                }
            }
        }
        prev_final = Some(id);
    }
    o.push_str("}\n");
    o
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
    let mut o = String::from("flowchart LR\n");
    let mut prev: Option<String> = None;
    for (k, name) in p.onces.iter().enumerate() {
        let id = format!("once{k}");
        let _ = writeln!(o, "  {id}([{}])", mq(&format!("once: {name}")));
        if let Some(pr) = &prev {
            let _ = writeln!(o, "  {pr} --> {id}");
        }
        prev = Some(id);
    }
    for (i, r) in p.roles.iter().enumerate() {
        let nodes = role_nodes(i, r);
        let _ = writeln!(o, "  subgraph r{i}[{}]", mq(&r.label));
        for (id, label, shape) in &nodes {
            let l = mq(label);
            let _ = match *shape {
                "diamond" => writeln!(o, "    {id}{{{l}}}"),
                "hexagon" => writeln!(o, "    {id}{{{{{l}}}}}"),
                "ellipse" => writeln!(o, "    {id}([{l}])"),
                _ => writeln!(o, "    {id}[{l}]"),
            };
        }
        for w in nodes.windows(2) {
            let _ = writeln!(o, "    {} --> {}", w[0].0, w[1].0);
        }
        let _ = writeln!(o, "  end");
    }
    let has_pred: Vec<bool> = (0..p.roles.len())
        .map(|i| p.edges.iter().any(|&(_, a)| a == i))
        .collect();
    if let Some(last_once) = &prev {
        for (i, _) in p.roles.iter().enumerate().filter(|(i, _)| !has_pred[*i]) {
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
            mq(&format!("finally: {name}\n(whatever happened)"))
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
