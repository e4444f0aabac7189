//! The live display of a run on standard error: on a terminal a [`Board`] redrawn in place
//! (indicatif, so that log lines are drawn around it) that fits the terminal's width; on
//! anything else one line per task transition; `--events jsonl` on standard output. It is
//! the session's `RunUi`; when the run ends it keeps each host's times for the recap.

use crate::board::{self, Board, Flying, RoleRow};
use fleetbook_engine::exec::{Event, State};
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
                board::short(self.started.elapsed().as_secs())
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
            suspend(|| eprintln!("{}", board::fit(line)));
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
