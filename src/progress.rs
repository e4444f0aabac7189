//! The live display of a run on standard error: per role, hosts done / in flight / pending /
//! failed and the step each in-flight host is in (indicatif on a terminal, plain lines
//! otherwise), and `--events jsonl` on standard output.

use fleetbook_engine::exec::{Event, RunOutcome, State};
use fleetbook_engine::plan::Plan;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

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

struct RoleView {
    bar: Option<ProgressBar>,
    hosts: usize,
    done: usize,
    failed: usize,
}

struct Inner {
    roles: Vec<(String, RoleView)>,
    /// host -> (its roles, tasks left, step it is in)
    hosts: HashMap<String, (Vec<String>, usize, Option<String>)>,
}

pub struct Progress {
    inner: Mutex<Inner>,
    _multi: Option<MultiProgress>,
    jsonl: bool,
    plain: bool,
    /// Why the event stream on standard output broke, if it did.
    events_failed: Mutex<Option<String>>,
}

impl Progress {
    pub fn new(plan: &Plan, tty: bool, jsonl: bool) -> Progress {
        let multi = tty.then(MultiProgress::new);
        *ACTIVE.lock().unwrap_or_else(|e| e.into_inner()) = multi.clone();
        let style = ProgressStyle::with_template(
            "{prefix:>14} [{bar:24}] {pos}/{len} {elapsed_precise} {wide_msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        let roles = plan
            .roles
            .iter()
            .filter(|r| r.hosts > 0)
            .map(|r| {
                let bar = multi.as_ref().map(|m| {
                    let b = m.add(ProgressBar::new(r.hosts as u64));
                    b.set_style(style.clone());
                    b.set_prefix(r.name.clone());
                    b.enable_steady_tick(Duration::from_millis(250));
                    b
                });
                (
                    r.name.clone(),
                    RoleView {
                        bar,
                        hosts: r.hosts,
                        done: 0,
                        failed: 0,
                    },
                )
            })
            .collect();
        let mut left: HashMap<&str, usize> = HashMap::new();
        for t in &plan.tasks {
            if let Some(h) = &t.host {
                *left.entry(h).or_default() += 1;
            }
        }
        let hosts = plan
            .hosts
            .iter()
            .map(|h| {
                (
                    h.name.clone(),
                    (
                        h.roles.clone(),
                        left.get(h.name.as_str()).copied().unwrap_or(0),
                        None,
                    ),
                )
            })
            .collect();
        Progress {
            inner: Mutex::new(Inner { roles, hosts }),
            _multi: multi,
            jsonl,
            plain: !tty,
            events_failed: Mutex::new(None),
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
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if self.plain && !self.jsonl {
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
            eprintln!("[{:>7.1}s] {what} {step} {state}{attempt}{msg}", e.at);
        }
        let Some(host) = e.host.clone() else { return };
        let Some((roles, left, current)) = inner.hosts.get_mut(&host) else {
            return;
        };
        let roles = roles.clone();
        let (mut finished, mut failed) = (false, false);
        match e.state {
            State::Running => *current = e.step.clone(),
            State::Ok | State::Skipped | State::NotRun => {
                *left = left.saturating_sub(1);
                finished = *left == 0;
            }
            State::Failed | State::Unreachable => {
                failed = true;
                *current = None;
            }
            _ => {}
        }
        if finished {
            *current = None;
        }
        let in_flight: BTreeMap<String, Vec<String>> = {
            let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for (name, (rs, _, cur)) in &inner.hosts {
                if let Some(step) = cur {
                    for r in rs {
                        m.entry(r.clone())
                            .or_default()
                            .push(format!("{name}:{step}"));
                    }
                }
            }
            m
        };
        for (name, view) in inner.roles.iter_mut() {
            if !roles.contains(name) {
                continue;
            }
            if failed {
                view.failed += 1;
            } else if finished {
                view.done += 1;
            }
            if let Some(bar) = &view.bar {
                bar.set_position((view.done + view.failed) as u64);
                let flying = in_flight.get(name).cloned().unwrap_or_default();
                let pending = view
                    .hosts
                    .saturating_sub(view.done + view.failed + flying.len());
                let mut shown: Vec<String> = flying.iter().take(4).cloned().collect();
                if flying.len() > 4 {
                    shown.push(format!("+{}", flying.len() - 4));
                }
                bar.set_message(format!(
                    "in flight {} pending {} failed {}  {}",
                    flying.len(),
                    pending,
                    view.failed,
                    shown.join(" ")
                ));
            }
        }
    }

    /// Why `--events` could not be written, once it could not: the run must stop, since
    /// whatever reads the events no longer sees them.
    pub fn events_failed(&self) -> Option<String> {
        self.events_failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn finish(&self) {
        *ACTIVE.lock().unwrap_or_else(|e| e.into_inner()) = None;
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        for (_, v) in &inner.roles {
            if let Some(b) = &v.bar {
                b.finish();
            }
        }
    }
}

/// The recap, like Ansible's PLAY RECAP.
pub fn recap(outcome: &RunOutcome) -> String {
    let mut o = String::from("\nRECAP ");
    o.push_str(&"*".repeat(60));
    o.push('\n');
    let width = outcome
        .hosts
        .iter()
        .map(|h| h.name.len())
        .max()
        .unwrap_or(4);
    for h in &outcome.hosts {
        o.push_str(&format!(
            "{:width$} : ok={:<3} failed={:<3} skipped={:<3} unreachable={:<3} not_run={:<3}{}\n",
            h.name,
            h.ok,
            h.failed,
            h.skipped,
            h.unreachable,
            h.not_run,
            if h.rolled_back { " rolled_back" } else { "" }
        ));
    }
    let status = outcome.status.as_str();
    o.push_str(&format!("\nrun {status} in {:.1}s", outcome.elapsed));
    if let Some(r) = &outcome.reason {
        o.push_str(&format!(": {r}"));
    }
    o.push('\n');
    o
}
