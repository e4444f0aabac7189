//! The recap at the end of a run: a table per role (hosts by how they ended, and how long
//! the role took), a line per host like Ansible's PLAY RECAP, and how the run ended.

use crate::board::{short, wrap};
use fleetbook_engine::exec::{HostRecap, RunOutcome};
use fleetbook_engine::plan::Plan;
use std::collections::HashMap;

/// How a host ended, for the recap's table: each host counts in one column.
fn host_end(h: &HostRecap) -> &'static str {
    if h.rolled_back {
        "undone"
    } else if h.failed + h.unreachable > 0 {
        "failed"
    } else if h.not_run > 0 || h.ok == 0 {
        "skipped"
    } else {
        "ok"
    }
}

const RECAP_COLUMNS: [&str; 4] = ["ok", "failed", "skipped", "undone"];

/// The recap table: per role, its hosts by how they ended (skipped: not run to the end, or
/// every step skipped) and the time from its first host's start to its last host's end.
fn role_table(
    outcome: &RunOutcome,
    plan: &Plan,
    spans: &HashMap<String, (f64, f64)>,
    width: usize,
) -> Vec<String> {
    let recaps: HashMap<&str, &HostRecap> =
        outcome.hosts.iter().map(|h| (h.name.as_str(), h)).collect();
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    for r in plan.roles.iter().filter(|r| r.hosts > 0) {
        let hosts: Vec<&str> = plan
            .hosts
            .iter()
            .filter(|h| h.roles.contains(&r.name))
            .filter(|h| recaps.contains_key(h.name.as_str()))
            .map(|h| h.name.as_str())
            .collect();
        if hosts.is_empty() {
            continue;
        }
        let mut cells = vec![hosts.len().to_string()];
        for col in RECAP_COLUMNS {
            let n = hosts.iter().filter(|h| host_end(recaps[*h]) == col).count();
            cells.push(n.to_string());
        }
        let (a, b) = hosts
            .iter()
            .filter_map(|h| spans.get(*h))
            .fold((f64::MAX, 0.0f64), |(a, b), s| (a.min(s.0), b.max(s.1)));
        cells.push(match b - a {
            d if d >= 60.0 => short(d as u64),
            d if d >= 0.0 => format!("{d:.1}s"),
            _ => "-".into(),
        });
        rows.push((r.name.clone(), cells));
    }
    let heads = ["hosts", "ok", "failed", "skipped", "undone", "duration"];
    let name_w = rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max(4);
    let col_w: Vec<usize> = heads
        .iter()
        .enumerate()
        .map(|(i, h)| {
            rows.iter()
                .map(|r| r.1[i].len())
                .max()
                .unwrap_or(0)
                .max(h.len())
        })
        .collect();
    let line = |name: &str, cells: &[String]| {
        let mut l = format!("{name:name_w$}");
        for (c, w) in cells.iter().zip(&col_w) {
            l.push_str(&format!("  {c:>w$}"));
        }
        l
    };
    let heads: Vec<String> = heads.iter().map(|h| h.to_string()).collect();
    let table: Vec<String> = std::iter::once(line("role", &heads))
        .chain(rows.iter().map(|(n, c)| line(n, c)))
        .collect();
    if table.iter().all(|l| l.chars().count() <= width) {
        return table;
    }
    // Too narrow for a table: a few lines per role, never a cut word.
    rows.iter()
        .flat_map(|(n, c)| {
            let mut parts = vec![format!("{n}:")];
            parts.extend(heads.iter().zip(c).map(|(h, v)| format!("{h} {v}")));
            wrap(&parts, width, "", "    ", "  ")
        })
        .collect()
}

/// The recap: a table per role, then a line per host like Ansible's PLAY RECAP, then how the
/// run ended. Lines are kept within `width` columns (a terminal's) when one is given.
pub fn recap(
    outcome: &RunOutcome,
    plan: &Plan,
    spans: &HashMap<String, (f64, f64)>,
    width: Option<usize>,
) -> String {
    let w = width.unwrap_or(usize::MAX).max(20);
    let mut o = String::from("\nRECAP ");
    o.push_str(&"*".repeat(w.saturating_sub(7).min(60)));
    o.push('\n');
    for l in role_table(outcome, plan, spans, w) {
        o.push_str(&l);
        o.push('\n');
    }
    o.push('\n');
    let name_w = outcome
        .hosts
        .iter()
        .map(|h| h.name.len())
        .max()
        .unwrap_or(4);
    for h in &outcome.hosts {
        let parts = vec![
            format!("{:name_w$} :", h.name),
            format!("ok={:<3}", h.ok),
            format!("failed={:<3}", h.failed),
            format!("skipped={:<3}", h.skipped),
            format!("unreachable={:<3}", h.unreachable),
            format!("not_run={:<3}", h.not_run),
            if h.rolled_back { "rolled_back" } else { "" }.to_string(),
        ];
        let parts: Vec<String> = parts.into_iter().filter(|p| !p.is_empty()).collect();
        for l in wrap(&parts, w, "", "    ", " ") {
            o.push_str(&l);
            o.push('\n');
        }
    }
    let status = outcome.status.as_str();
    let mut end = format!("run {status} in {:.1}s", outcome.elapsed.as_secs_f64());
    if let Some(r) = &outcome.reason {
        end.push_str(&format!(": {r}"));
    }
    o.push('\n');
    for l in wrap(&[end], w, "", "  ", " ") {
        o.push_str(&l);
        o.push('\n');
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleetbook_engine::exec::RunStatus;
    use fleetbook_engine::inventory::Format;
    use std::collections::BTreeMap;

    fn host(name: &str, ok: usize, failed: usize, not_run: usize, rolled_back: bool) -> HostRecap {
        HostRecap {
            name: name.into(),
            ok,
            failed,
            skipped: 0,
            unreachable: 0,
            not_run,
            rolled_back,
        }
    }

    #[test]
    fn the_recap_counts_each_host_once_per_role_by_how_it_ended() {
        let plan = fleetbook_engine::plan::plan_text(
            "let rb = runbook(\"r\");\nrb.step(\"a\", |h| h.run(\"true\"));\nrb.step(\"b\", |h| h.run(\"true\"));\nrb\n",
            "[web]\nw1\nw2\nw3\nw4\n\n[db]\nw4\n",
            Format::Ini,
            &BTreeMap::new(),
            None,
        )
        .unwrap()
        .plan;
        let outcome = RunOutcome {
            status: RunStatus::Halted,
            reason: None,
            hosts: vec![
                host("w1", 2, 0, 0, false),
                host("w2", 1, 1, 0, false),
                host("w3", 0, 0, 2, false),
                host("w4", 2, 0, 0, true),
            ],
            elapsed: std::time::Duration::from_secs(90),
        };
        let spans: HashMap<String, (f64, f64)> = [("w1", (1.0, 30.0)), ("w4", (2.0, 75.0))]
            .into_iter()
            .map(|(h, s)| (h.to_string(), s))
            .collect();
        let table = role_table(&outcome, &plan, &spans, 100);
        let rows: Vec<Vec<&str>> = table
            .iter()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            rows,
            [
                vec!["role", "hosts", "ok", "failed", "skipped", "undone", "duration"],
                vec!["web", "4", "1", "1", "1", "1", "1m14s"],
                vec!["db", "1", "0", "0", "0", "1", "1m13s"],
            ]
        );
        // Too narrow for the table: a few lines per role, none wider than asked.
        for l in role_table(&outcome, &plan, &spans, 30) {
            assert!(l.chars().count() <= 30, "{l:?}");
        }
    }
}
