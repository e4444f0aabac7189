//! The live display of a run on standard error: on a terminal a [`Board`] redrawn in place
//! (indicatif, so that log lines are drawn around it) that fits the terminal's width; on
//! anything else one line per task transition; `--events jsonl` on standard output; and the
//! recap at the end, a table per role and a line per host.

use crate::board::{Board, Flying, RoleRow};
use fleetbook_engine::exec::{Event, HostRecap, RunOutcome, State};
use fleetbook_engine::plan::Plan;
use fleetbook_engine::session::RunUi;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The live display in progress, if any: log lines are drawn around it.
static ACTIVE: Mutex<Option<MultiProgress>> = Mutex::new(None);

/// Runs `f` (which writes to standard error) with the live display hidden meanwhile.
pub fn suspend(f: impl FnOnce()) {
    let active = ACTIVE.lock().unwrap_or_else(|e| e.into_inner()).clone();
    match active {
        Some(m) => m.suspend(f),
        None => f(),
    }
}

/// The version of `--events jsonl` lines (docs/events.md): bumped when a field is removed,
/// renamed or changes meaning.
pub const EVENTS_SCHEMA_VERSION: u32 = 1;

#[derive(serde::Serialize)]
struct EventLine<'a> {
    schema_version: u32,
    #[serde(flatten)]
    event: &'a Event,
}

/// What the live display knows of each host.
struct HostView {
    /// Indices into `View::roles`: every role the host is in; the first is the one it runs
    /// with and is listed under.
    roles: Vec<usize>,
    /// Tasks left to end.
    left: usize,
    /// The step it is in and since when.
    current: Option<(String, Instant)>,
    failed: bool,
    /// (first start, last end), in seconds since the run started: the recap's durations.
    span: Option<(f64, f64)>,
}

struct RoleInfo {
    name: String,
    hosts: usize,
    limit: Option<usize>,
    max_failures: Option<usize>,
}

/// The run as the live display sees it, from the events.
struct View {
    title: String,
    started: Instant,
    roles: Vec<RoleInfo>,
    hosts: BTreeMap<String, HostView>,
    failures_allowed: Option<usize>,
    waiting: Option<String>,
}

impl View {
    fn new(plan: &Plan, run_id: &str) -> View {
        let mut left: HashMap<&str, usize> = HashMap::new();
        for t in &plan.tasks {
            if let Some(h) = &t.host {
                *left.entry(h).or_default() += 1;
            }
        }
        let roles: Vec<RoleInfo> = plan
            .roles
            .iter()
            .map(|r| RoleInfo {
                name: r.name.clone(),
                hosts: r.hosts,
                limit: r.limit,
                max_failures: r.max_failures,
            })
            .collect();
        let hosts = plan
            .hosts
            .iter()
            .map(|h| {
                let view = HostView {
                    roles: h
                        .roles
                        .iter()
                        .filter_map(|n| roles.iter().position(|r| &r.name == n))
                        .collect(),
                    left: left.get(h.name.as_str()).copied().unwrap_or(0),
                    current: None,
                    failed: false,
                    span: None,
                };
                (h.name.to_string(), view)
            })
            .collect();
        View {
            title: format!("run {run_id} {}", plan.runbook.name),
            started: Instant::now(),
            roles,
            hosts,
            failures_allowed: plan.limits.max_failures_total,
            waiting: None,
        }
    }

    fn event(&mut self, e: &Event) {
        let Some(h) = e.host.as_deref().and_then(|h| self.hosts.get_mut(h)) else {
            return;
        };
        let at = e.at.as_secs_f64();
        match e.state {
            State::Running | State::RollingBack => {
                h.current = e.step.clone().map(|s| (s, Instant::now()));
                h.span = Some(h.span.map_or((at, at), |(a, b)| (a, b.max(at))));
            }
            State::Ok | State::Skipped | State::NotRun | State::RolledBack => {
                h.left = h.left.saturating_sub(1);
                if h.left == 0 {
                    h.current = None;
                }
                if let Some(span) = &mut h.span {
                    span.1 = span.1.max(at);
                }
            }
            State::Failed | State::Unreachable | State::UndoFailed => {
                h.failed = true;
                h.current = None;
                if let Some(span) = &mut h.span {
                    span.1 = span.1.max(at);
                }
            }
            State::Retrying | State::WaitingApproval => {}
        }
    }

    fn board(&self) -> Board {
        let mut rows: Vec<RoleRow> = self
            .roles
            .iter()
            .map(|r| RoleRow {
                name: r.name.clone(),
                hosts: r.hosts,
                limit: r.limit,
                max_failures: r.max_failures,
                ..RoleRow::default()
            })
            .collect();
        let mut flying = Vec::new();
        let mut failed = 0;
        for (name, h) in &self.hosts {
            for &r in &h.roles {
                let row = &mut rows[r];
                if h.failed {
                    row.failed += 1;
                } else if h.current.is_some() {
                    row.in_flight += 1;
                } else if h.left == 0 && h.span.is_some() {
                    row.done += 1;
                }
            }
            failed += usize::from(h.failed);
            if let (Some((step, since)), Some(&r)) = (&h.current, h.roles.first()) {
                flying.push(Flying {
                    host: name.clone(),
                    role: self.roles[r].name.clone(),
                    step: step.clone(),
                    secs: since.elapsed().as_secs(),
                });
            }
        }
        Board {
            title: format!(
                "{}  {}",
                self.title,
                crate::board::short(self.started.elapsed().as_secs())
            ),
            roles: rows.into_iter().filter(|r| r.hosts > 0).collect(),
            flying,
            failed,
            failures_allowed: self.failures_allowed,
            notes: self.waiting.iter().cloned().collect(),
        }
    }

    /// Each host's (first start, last end) in seconds since the run started.
    fn spans(&self) -> HashMap<String, (f64, f64)> {
        self.hosts
            .iter()
            .filter_map(|(n, h)| h.span.map(|s| (n.clone(), s)))
            .collect()
    }
}

/// The terminal's (columns, rows) on standard error.
pub fn terminal_size() -> (usize, usize) {
    let (rows, cols) = console::Term::stderr().size();
    (cols as usize, rows as usize)
}

struct Live {
    view: Mutex<View>,
    bar: ProgressBar,
    stop: AtomicBool,
}

impl Live {
    fn draw(&self) {
        let (cols, rows) = terminal_size();
        let view = self.view.lock().unwrap_or_else(|e| e.into_inner());
        // One column spare: some terminals wrap a line that fills the last column.
        let lines = view
            .board()
            .render(cols.saturating_sub(1), rows.saturating_sub(2));
        self.bar.set_message(lines.join("\n"));
    }
}

pub struct Progress {
    view: Arc<Live>,
    _multi: Option<MultiProgress>,
    ticker: Mutex<Option<std::thread::JoinHandle<()>>>,
    jsonl: bool,
    plain: bool,
    /// Why the event stream on standard output broke, if it did.
    events_failed: Mutex<Option<String>>,
    /// Each host's (first start, last end), kept when the display ends.
    spans: Mutex<HashMap<String, (f64, f64)>>,
}

impl Progress {
    pub fn new(plan: &Plan, run_id: &str, tty: bool, jsonl: bool) -> Progress {
        let multi = tty.then(MultiProgress::new);
        *ACTIVE.lock().unwrap_or_else(|e| e.into_inner()) = multi.clone();
        let bar = match &multi {
            Some(m) => {
                let b = m.add(ProgressBar::new(0));
                b.set_style(
                    ProgressStyle::with_template("{msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                b
            }
            None => ProgressBar::hidden(),
        };
        let view = Arc::new(Live {
            view: Mutex::new(View::new(plan, run_id)),
            bar,
            stop: AtomicBool::new(false),
        });
        // Elapsed times move on between events: redraw twice a second.
        let ticker = tty.then(|| {
            let live = view.clone();
            std::thread::spawn(move || {
                while !live.stop.load(Ordering::SeqCst) {
                    live.draw();
                    std::thread::sleep(Duration::from_millis(500));
                }
            })
        });
        Progress {
            view,
            _multi: multi,
            ticker: Mutex::new(ticker),
            jsonl,
            plain: !tty,
            events_failed: Mutex::new(None),
            spans: Mutex::default(),
        }
    }

    pub fn event(&self, e: &Event) {
        if self.jsonl {
            let mut failed = self.events_failed.lock().unwrap_or_else(|e| e.into_inner());
            if failed.is_none() {
                if let Ok(line) = serde_json::to_string(&EventLine {
                    schema_version: EVENTS_SCHEMA_VERSION,
                    event: e,
                }) {
                    let mut out = std::io::stdout().lock();
                    if let Err(err) = writeln!(out, "{line}").and_then(|_| out.flush()) {
                        *failed = Some(err.to_string());
                    }
                }
            }
        }
        if self.plain && !self.jsonl {
            eprintln!("{}", transition(e));
        }
        self.view
            .view
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .event(e);
        if !self.plain {
            self.view.draw();
        }
    }

    /// A message for the operator: above the live display on a terminal (fitted to its
    /// width), a plain line elsewhere.
    pub fn say(&self, line: &str) {
        if self.plain {
            eprintln!("{line}");
        } else {
            suspend(|| eprintln!("{}", crate::board::fit(line)));
        }
    }

    /// What the run waits for (an approval), shown on the live display until cleared.
    pub fn waiting(&self, why: Option<String>) {
        self.view
            .view
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .waiting = why;
        if !self.plain {
            self.view.draw();
        }
    }

    /// Each host's (first start, last end) for the recap, once the display ended.
    pub fn spans(&self) -> HashMap<String, (f64, f64)> {
        self.spans.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Why `--events` could not be written, once it could not: the run must stop, since
    /// whatever reads the events no longer sees them.
    pub fn events_failed(&self) -> Option<String> {
        self.events_failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Ends the live display; keeps each host's (first start, last end) for the recap.
    pub fn finish(&self) {
        *ACTIVE.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.view.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.ticker.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = t.join();
        }
        self.view.bar.finish_and_clear();
        let spans = self
            .view
            .view
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .spans();
        *self.spans.lock().unwrap_or_else(|e| e.into_inner()) = spans;
    }
}

/// The engine's run session reports here.
impl RunUi for Progress {
    fn event(&self, e: &Event) {
        Progress::event(self, e)
    }

    fn say(&self, line: &str) {
        Progress::say(self, line)
    }

    fn approval(&self, run: &str, gate: Option<&str>) {
        let Some(gate) = gate else {
            return self.waiting(None);
        };
        self.say(&format!(
            "run {run} waits for approval {gate:?}: fleetbook approve {run} --gate {gate}"
        ));
        self.waiting(Some(format!(
            "waiting for approval {gate:?}: fleetbook approve {run} --gate {gate}"
        )));
    }

    fn broken(&self) -> Option<String> {
        self.events_failed()
    }

    fn ended(&self) {
        self.finish()
    }
}

/// One line per task transition, for a standard error that is not a terminal.
fn transition(e: &Event) -> String {
    let what = e.host.as_deref().unwrap_or(e.task.as_str());
    let step = e.step.as_deref().unwrap_or("");
    let state = e.state.as_str();
    let msg = e
        .message
        .as_deref()
        .map(|m| format!(": {m}"))
        .unwrap_or_default();
    let attempt = if e.attempt > 1 {
        format!(" (attempt {})", e.attempt)
    } else {
        String::new()
    };
    let at = e.at.as_secs_f64();
    format!("[{at:>7.1}s] {what} {step} {state}{attempt}{msg}")
}

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
            d if d >= 60.0 => crate::board::short(d as u64),
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
            crate::board::wrap(&parts, width, "", "    ", "  ")
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
        for l in crate::board::wrap(&parts, w, "", "    ", " ") {
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
    for l in crate::board::wrap(&[end], w, "", "  ", " ") {
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
