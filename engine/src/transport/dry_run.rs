//! Dry-run: evaluates every task's closure with a recording transport. Every host operation
//! records the exact command it would run and gets success with empty output back, so
//! `h.run_ok(...)` is true, `pkg::version(...)` is "", and `wait_until` returns at once.
//! Takes the script and the graph; gives the recorded commands per task.

use crate::compile::{Graph, PlanHost, TaskKind};
use crate::error::{Error, Result, SourceDiag};
use crate::predicate;
use crate::script::Script;
use crate::secrets::Secrets;
use crate::shared::NameMap;
use crate::shared::{Interner, LocalInterner, Shared, SharedList};
use fleetbook_stdlib::{Host, HostInfo, Output, Put, Transport, TransportError, Upload};
use rayon::prelude::*;
use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

thread_local! {
    static RECORD: RefCell<RecordedLines> = const { RefCell::new(RecordedLines::new()) };
    /// Bytes recorded for the host (or once step) being evaluated on this thread.
    static HOST_BYTES: Cell<usize> = const { Cell::new(0) };
}

/// The commands recorded on this thread since the last [`take_record`]: host and command of
/// each, in one reused buffer (a dry run records a few commands per host and step).
struct RecordedLines {
    text: String,
    /// Where each line's host and command end in `text`.
    ends: Vec<(usize, usize)>,
}

impl RecordedLines {
    const fn new() -> RecordedLines {
        RecordedLines {
            text: String::new(),
            ends: Vec::new(),
        }
    }

    fn push(&mut self, host: &str, command: &[&str]) {
        self.text.push_str(host);
        let host_end = self.text.len();
        command.iter().for_each(|part| self.text.push_str(part));
        self.ends.push((host_end, self.text.len()));
    }

    /// Host and command of each line, in the order recorded.
    fn lines(&self) -> impl Iterator<Item = (&str, &str)> {
        let starts = std::iter::once(0).chain(self.ends.iter().map(|&(_, end)| end));
        starts.zip(&self.ends).map(|(start, &(host_end, end))| {
            (&self.text[start..host_end], &self.text[host_end..end])
        })
    }

    fn clear(&mut self) {
        self.text.clear();
        self.ends.clear();
    }
}

/// How much a plan may record: a runbook within every script limit can still loop out
/// hundreds of megabytes of commands per host.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub per_host: usize,
    pub per_plan: usize,
}

/// The environment variables that raise [`Bounds`].
pub const MAX_HOST_BYTES_ENV: &str = "FLEETBOOK_MAX_PLAN_BYTES_PER_HOST";
pub const MAX_PLAN_BYTES_ENV: &str = "FLEETBOOK_MAX_PLAN_BYTES";

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            per_host: 1 << 20,
            per_plan: 64 << 20,
        }
    }
}

impl Bounds {
    /// The defaults, raised or lowered by the environment.
    pub fn from_env() -> Result<Bounds> {
        let read = |name: &str, default: usize| -> Result<usize> {
            match std::env::var(name) {
                Ok(v) => v
                    .trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| {
                        Error::input(format!("{name}={v:?}: expected a number of bytes above 0"))
                    }),
                Err(_) => Ok(default),
            }
        };
        let d = Bounds::default();
        Ok(Bounds {
            per_host: read(MAX_HOST_BYTES_ENV, d.per_host)?,
            per_plan: read(MAX_PLAN_BYTES_ENV, d.per_plan)?,
        })
    }
}

/// The recording transport. Past a bound it refuses to record, and the refusal sticks
/// (`over`): a runbook that catches the error cannot get a truncated plan through.
pub struct Recorder {
    bounds: Bounds,
    total: AtomicUsize,
    over: std::sync::Mutex<Option<String>>,
    tripped: AtomicBool,
    /// Root operations recorded on hosts that do not become root: by operation, the first
    /// command and every host.
    without_root: std::sync::Mutex<NameMap<String, (String, Vec<String>)>>,
    /// Answers a plan assumes (`file::exists(...) is true`) and the hosts they were assumed on.
    assumed: std::sync::Mutex<NameMap<String, Vec<String>>>,
    /// A file whose bytes hold a secret is shown without its digest: a short secret could
    /// be found again from its SHA-256.
    secrets: Secrets,
}

/// How many host names a warning lists before it says how many more there are.
const HOSTS_SHOWN: usize = 5;

impl Recorder {
    pub fn new(bounds: Bounds) -> Recorder {
        Recorder::with_secrets(bounds, Secrets::new())
    }

    pub fn with_secrets(bounds: Bounds, secrets: Secrets) -> Recorder {
        Recorder {
            secrets,
            bounds,
            total: AtomicUsize::new(0),
            over: std::sync::Mutex::new(None),
            tripped: AtomicBool::new(false),
            without_root: Default::default(),
            assumed: Default::default(),
        }
    }

    /// One warning per root operation run without root, naming its hosts in `order`.
    fn root_warnings(&self, order: &NameMap<String, Host>) -> Vec<String> {
        let seen = self.without_root.lock().unwrap_or_else(|e| e.into_inner());
        seen.iter()
            .map(|(op, (command, hosts))| {
                let mut hosts = hosts.clone();
                hosts.sort_by_key(|h| order.get_index_of(h).unwrap_or(usize::MAX));
                hosts.dedup();
                format!(
                    "{}: {op} runs {command:?} without root; set rb.become(true) or ansible_become=true",
                    host_list(&hosts)
                )
            })
            .collect()
    }

    /// One warning per assumed answer, naming its hosts in `order`.
    fn assumed_warnings(&self, order: &NameMap<String, Host>) -> Vec<String> {
        let seen = self.assumed.lock().unwrap_or_else(|e| e.into_inner());
        seen.iter()
            .map(|(assumption, hosts)| {
                let mut hosts = hosts.clone();
                hosts.sort_by_key(|h| order.get_index_of(h).unwrap_or(usize::MAX));
                hosts.dedup();
                format!(
                    "{}: in this plan {assumption} (nothing is checked before the run); \
                     the run may take the other branch",
                    host_list(&hosts)
                )
            })
            .collect()
    }

    fn refuse(&self, message: String) -> TransportError {
        self.tripped.store(true, Ordering::SeqCst);
        let mut over = self.over.lock().unwrap_or_else(|e| e.into_inner());
        over.get_or_insert(message.clone());
        TransportError::Other(message)
    }

    /// The bound that was hit, if any.
    fn exceeded(&self) -> Option<String> {
        if !self.tripped.load(Ordering::SeqCst) {
            return None;
        }
        self.over.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Transport for Recorder {
    fn exec(
        &self,
        host: &HostInfo,
        command: &str,
        _timeout: Option<Duration>,
    ) -> Result<Output, TransportError> {
        self.record_line(host, command)?;
        Ok(Output::default())
    }

    /// A file is shown by what it is and its digest, never its bytes (they may be secret).
    fn put(
        &self,
        host: &HostInfo,
        upload: &Upload,
        _timeout: Option<Duration>,
    ) -> Result<Put, TransportError> {
        let text = String::from_utf8_lossy(&upload.content);
        if self.secrets.redact(&text) != text {
            let shown = match upload.shown.find(" (") {
                Some(i) => format!("{} (holds a secret: digest not shown)", &upload.shown[..i]),
                None => "a file that holds a secret".to_string(),
            };
            self.record_line(host, &shown)?;
        } else {
            self.record_line(host, &upload.shown)?;
        }
        Ok(Put::Written(Output::default()))
    }

    fn without_root(&self, host: &HostInfo, op: &str, command: &str) {
        let mut seen = self.without_root.lock().unwrap_or_else(|e| e.into_inner());
        // Looked up by `&str` first: every host after the first adds only its name.
        match seen.get_mut(op) {
            Some((_, hosts)) => hosts.push(host.name.clone()),
            None => {
                seen.insert(
                    op.to_string(),
                    (command.to_string(), vec![host.name.clone()]),
                );
            }
        }
    }

    fn assumed(&self, host: &HostInfo, _op: &str, assumption: &str) {
        let mut seen = self.assumed.lock().unwrap_or_else(|e| e.into_inner());
        match seen.get_mut(assumption) {
            Some(hosts) => hosts.push(host.name.clone()),
            None => {
                seen.insert(assumption.to_string(), vec![host.name.clone()]);
            }
        }
    }

    fn is_dry_run(&self) -> bool {
        true
    }
}

impl Recorder {
    /// Records one line for `host`, within the bounds. A delegated host's line goes under the
    /// task of the host it is for, as `[on OTHER] command`.
    fn record_line(&self, host: &HostInfo, command: &str) -> Result<(), TransportError> {
        if self.tripped.load(Ordering::SeqCst) {
            return Err(self.refuse(String::new()));
        }
        let len = command.len() + host.name.len();
        let mine = HOST_BYTES.with(|b| {
            b.set(b.get() + len);
            b.get()
        });
        if mine > self.bounds.per_host {
            return Err(self.refuse(format!(
                "the plan records more than {} bytes of commands for host {}: is a loop building commands without end? ({MAX_HOST_BYTES_ENV} raises the limit)",
                self.bounds.per_host, host.name
            )));
        }
        let total = self.total.fetch_add(len, Ordering::SeqCst) + len;
        if total > self.bounds.per_plan {
            return Err(self.refuse(format!(
                "the plan records more than {} bytes of commands in all ({MAX_PLAN_BYTES_ENV} raises the limit; --limit plans fewer hosts)",
                self.bounds.per_plan
            )));
        }
        RECORD.with(|r| {
            let mut r = r.borrow_mut();
            match &host.delegate_for {
                Some(owner) => r.push(owner, &["[on ", &host.name, "] ", command]),
                None => r.push(&host.name, &[command]),
            }
        });
        Ok(())
    }
}

/// `host web1`, or `hosts web1, web2 and 3 more`.
fn host_list(hosts: &[String]) -> String {
    match hosts {
        [one] => format!("host {one}"),
        _ if hosts.len() <= HOSTS_SHOWN => format!("hosts {}", hosts.join(", ")),
        _ => format!(
            "hosts {} and {} more",
            hosts[..HOSTS_SHOWN].join(", "),
            hosts.len() - HOSTS_SHOWN
        ),
    }
}

/// What one task would run, as the plan keeps it (no copy, no spare capacity, and one
/// command without an allocation of its own), in an array of a task per host and step.
#[derive(Debug, Clone, Default)]
pub struct TaskRecord {
    pub commands: SharedList,
    pub undo: SharedList,
    /// Its `.when(...)` said no (as far as the plan can tell).
    pub skipped: bool,
}

/// Commands recorded since the last call, as plain commands when they ran on `own` and as
/// `host: command` otherwise; a command that many hosts run is kept once (`interner`). One
/// that names its own host (`nova-manage service disable web1`) is that host's alone: it is
/// not looked up, and does not grow the interner's table (a few per host in a large fleet).
fn take_record(own: Option<&str>, secrets: &Secrets, interner: &mut LocalInterner) -> SharedList {
    RECORD.with(|r| {
        let mut r = r.borrow_mut();
        let list = r
            .lines()
            .map(|(h, c)| {
                let c = secrets.redact(c);
                match own {
                    Some(own) if h == own && c.contains(own) => Shared::from(&*c),
                    Some(own) if h == own => interner.get(&c),
                    _ => interner.shared().take(format!("{h}: {c}")),
                }
            })
            .collect();
        r.clear();
        list
    })
}

/// `first` then `then`, without a copy when one is empty (a step without `.when`).
fn joined(first: SharedList, then: SharedList) -> SharedList {
    if first.is_empty() {
        then
    } else if then.is_empty() {
        first
    } else {
        first.iter().chain(then.iter()).cloned().collect()
    }
}

/// The records of each host's tasks as one slice per host, in host order: `compile` makes a
/// host's tasks one after another, so each host's thread can fill its own in place (no
/// per-host copy to merge). None if the tasks are laid out otherwise.
fn host_slices<'a>(
    records: &'a mut [TaskRecord],
    host_tasks: &[Vec<usize>],
) -> Option<Vec<(usize, &'a mut [TaskRecord])>> {
    let mut out = Vec::with_capacity(host_tasks.len());
    let (mut rest, mut at) = (records, 0usize);
    for (h, tasks) in host_tasks.iter().enumerate() {
        let Some(&first) = tasks.first() else {
            out.push((h, Default::default()));
            continue;
        };
        let contiguous = tasks.iter().enumerate().all(|(i, &t)| t == first + i);
        if !contiguous || first < at || first + tasks.len() > at + rest.len() {
            return None;
        }
        let (_, from_first) = std::mem::take(&mut rest).split_at_mut(first - at);
        let (mine, after) = from_first.split_at_mut(tasks.len());
        out.push((h, mine));
        rest = after;
        at = first + tasks.len();
    }
    Some(out)
}

/// The `Host` values the runbook's closures receive: one per planned host, in plan order
/// (so that index `h` of the result is host `h` of the graph), then the hosts `--limit`
/// left out, which the runbook can read but the run does not act on.
pub fn hosts(graph: &Graph, transport: Arc<dyn Transport>) -> NameMap<String, Host> {
    let info = |h: &PlanHost, roles: Vec<String>| HostInfo {
        name: h.name.clone(),
        roles,
        vars: h.vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        values: h
            .values
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        // `rb.become(true)`: the default where the inventory does not say.
        become_default: graph.become_default,
        ..HostInfo::default()
    };
    // One runbook directory for every host, set by `bind` (the script knows it).
    let dir = Arc::default();
    let planned = graph.hosts.iter().map(|h| {
        let roles = h
            .roles
            .iter()
            .map(|&r| graph.roles[r].name.clone())
            .collect();
        info(h, roles)
    });
    let outside = graph.outside.iter().map(|h| {
        let roles = graph
            .groups
            .iter()
            .filter(|(_, members)| members.contains(&h.name))
            .map(|(g, _)| g.clone())
            .collect();
        info(h, roles)
    });
    planned
        .chain(outside)
        .map(|i| {
            let host = Host::sharing_dir(Arc::new(i), transport.clone(), Arc::clone(&dir));
            (host.info.name.clone(), host)
        })
        .collect()
}

/// Binds the runbook's `host(name)`/`hosts(role)` to these hosts and the graph's groups,
/// and tells the hosts the runbook's directory (for `file::copy`'s relative paths).
pub fn bind(script: &Script, graph: &Graph, hosts: &NameMap<String, Host>) {
    if let Some(h) = hosts.values().next() {
        h.set_runbook_dir(runbook_dir(&script.name));
    }
    script.bind_fleet(hosts.clone(), graph.groups.clone());
}

/// The directory of the runbook at `path` (its name is the path it was loaded from).
fn runbook_dir(path: &str) -> PathBuf {
    match Path::new(path).parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A predicate's value as a bool, or the plan-time error naming the runbook line, the step,
/// the host and what it returned.
fn predicate_at(
    script: &Script,
    step: &crate::model::Step,
    what: &str,
    host: Option<&str>,
    value: &rhai::Dynamic,
) -> Result<bool> {
    predicate::decide(value).map_err(|returned| {
        let pos = step
            .when_pos
            .as_ref()
            .filter(|_| what == ".when(...)")
            .unwrap_or(&step.pos);
        let who = host.map(|h| format!(" for host {h}")).unwrap_or_default();
        let message = format!(
            "step {:?}: {}",
            step.name,
            predicate::not_a_bool(&format!("{what}{who}"), &returned)
        );
        let text = script
            .source_text(&pos.source)
            .unwrap_or_else(|| Arc::from(""));
        SourceDiag::new(&pos.source, text, message)
            .label_at(pos.line, pos.col, "this predicate")
            .help(predicate::HELP)
            .code("predicate")
            .into()
    })
}

/// What every task would run, and the plan's warnings about it.
pub struct Recorded {
    pub tasks: Vec<TaskRecord>,
    /// Root operations that would run without root, one per operation.
    pub warnings: Vec<String>,
}

/// Records what every task would run.
pub fn record(
    script: &Script,
    graph: &Graph,
    secrets: &Secrets,
    interner: &Interner,
) -> Result<Recorded> {
    let recorder = Arc::new(Recorder::with_secrets(Bounds::from_env()?, secrets.clone()));
    let hosts = hosts(graph, recorder.clone());
    let result = record_with(script, graph, (secrets, interner), &hosts);
    // The recording hosts copy every host's variables; what comes after the dry run (the
    // plan's tasks) needs that memory more, and the executor binds hosts of its own.
    script.unbind_fleet();
    // A bound that was hit is the error, whatever the script made of the refusal.
    if let Some(over) = recorder.exceeded() {
        return Err(Error::input(over));
    }
    Ok(Recorded {
        tasks: result?,
        warnings: {
            let mut w = recorder.root_warnings(&hosts);
            w.extend(recorder.assumed_warnings(&hosts));
            w
        },
    })
}

fn record_with(
    script: &Script,
    graph: &Graph,
    (secrets, interner): (&Secrets, &Interner),
    hosts: &NameMap<String, Host>,
) -> Result<Vec<TaskRecord>> {
    bind(script, graph, hosts);
    let rb = &script.runbook;
    let mut records = vec![TaskRecord::default(); graph.tasks.len()];
    let redact_err = |e: Error| e.redact(secrets);

    let mut once = LocalInterner::new(interner);
    for (t, task) in graph.tasks.iter().enumerate() {
        if task.kind.is_host() {
            continue;
        }
        let Some(step) = task.step.map(|s| &rb.steps[s]) else {
            continue;
        };
        let Some(action) = &step.action else { continue };
        take_record(None, secrets, &mut once);
        HOST_BYTES.with(|b| b.set(0));
        let value = script.call(action).map_err(|e| {
            redact_err(script.error(
                &e,
                &format!("{} {:?} (dry-run)", step.scope.kind(), step.name),
                &step.pos,
            ))
        })?;
        if matches!(task.kind, TaskKind::Gate | TaskKind::CanaryGate) {
            predicate_at(script, step, "the gate", None, &value).map_err(redact_err)?;
        }
        records[t].commands = take_record(None, secrets, &mut once);
    }

    // Records one host's tasks into `out` (its tasks' records, in its step order).
    let fill = |interner: &mut LocalInterner, h: usize, out: &mut [TaskRecord]| -> Result<()> {
        let host = &hosts[h];
        let own = Some(host.info.name.as_str());
        take_record(own, secrets, interner);
        HOST_BYTES.with(|b| b.set(0));
        for (&t, slot) in graph.host_tasks[h].iter().zip(out) {
            let step = &rb.steps[graph.tasks[t].step.unwrap_or(0)];
            let fail = |e: Box<rhai::EvalAltResult>, what: &str| -> Error {
                redact_err(script.error(
                    &e,
                    &format!(
                        "host {}, step {:?}{what} (dry-run)",
                        host.info.name, step.name
                    ),
                    &step.pos,
                ))
            };
            let mut rec = TaskRecord::default();
            let h = host.with_timeout(step.timeout);
            if let Some(when) = &step.when {
                let go = script
                    .call_host(when, h.clone())
                    .map_err(|e| fail(e, ", when"))?;
                // Probes inside the condition would run for real, so they are shown too.
                rec.commands = take_record(own, secrets, interner);
                let go = predicate_at(script, step, ".when(...)", own, &go).map_err(redact_err)?;
                rec.skipped = !go;
            }
            if !rec.skipped {
                if let Some(action) = &step.action {
                    let value = script
                        .call_host(action, h.clone())
                        .map_err(|e| fail(e, ""))?;
                    rec.commands = joined(rec.commands, take_record(own, secrets, interner));
                    if graph.tasks[t].kind == TaskKind::HostCheck {
                        predicate_at(script, step, "the check", own, &value).map_err(redact_err)?;
                    }
                }
            }
            if let Some(undo) = &step.undo {
                let _ = script
                    .call_host(undo, h.clone())
                    .map_err(|e| fail(e, ", undo"))?;
                rec.undo = take_record(own, secrets, interner);
            }
            *slot = rec;
        }
        Ok(())
    };
    // Every host's result, so that the error shown is the first host's (in plan order).
    let results: Vec<Result<()>> = match host_slices(&mut records, &graph.host_tasks) {
        Some(slices) => slices
            .into_par_iter()
            .with_min_len(64)
            .map_init(
                || LocalInterner::new(interner),
                |i, (h, out)| fill(i, h, out),
            )
            .collect(),
        None => {
            let per_host: Vec<Result<Vec<TaskRecord>>> = (0..graph.host_tasks.len())
                .into_par_iter()
                .map_init(
                    || LocalInterner::new(interner),
                    |i, h| {
                        let mut out = vec![TaskRecord::default(); graph.host_tasks[h].len()];
                        fill(i, h, &mut out).map(|()| out)
                    },
                )
                .collect();
            per_host
                .into_iter()
                .enumerate()
                .map(|(h, res)| {
                    for (&t, rec) in graph.host_tasks[h].iter().zip(res?) {
                        records[t] = rec;
                    }
                    Ok(())
                })
                .collect()
        }
    };
    results.into_iter().collect::<Result<()>>()?;
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marked(n: usize) -> Vec<TaskRecord> {
        (0..n)
            .map(|t| TaskRecord {
                commands: SharedList::One(Shared::from(t.to_string())),
                ..TaskRecord::default()
            })
            .collect()
    }

    fn firsts(slices: &[(usize, &mut [TaskRecord])]) -> Vec<(usize, Vec<String>)> {
        slices
            .iter()
            .map(|(h, s)| (*h, s.iter().map(|r| r.commands[0].to_string()).collect()))
            .collect()
    }

    #[test]
    fn recorded_lines_come_back_in_order_with_their_hosts_until_cleared() {
        let mut r = RecordedLines::new();
        r.push("web1", &["apt-get update"]);
        r.push("web1", &["[on ", "lb1", "] ", "drain web1"]);
        r.push("", &[""]);
        r.push("db1", &["true"]);
        let lines: Vec<(&str, &str)> = r.lines().collect();
        assert_eq!(
            lines,
            [
                ("web1", "apt-get update"),
                ("web1", "[on lb1] drain web1"),
                ("", ""),
                ("db1", "true")
            ]
        );
        r.clear();
        assert_eq!(r.lines().count(), 0);
        r.push("x", &["y"]);
        assert_eq!(r.lines().collect::<Vec<_>>(), [("x", "y")]);
    }

    #[test]
    fn each_host_gets_the_slice_of_its_own_tasks_or_none_if_they_are_not_together() {
        // Task 0 is a role's barrier, host 1 has no task, task 5 the role's exit.
        let mut records = marked(6);
        let host_tasks = vec![vec![1, 2], vec![], vec![3, 4]];
        let slices = host_slices(&mut records, &host_tasks).unwrap();
        assert_eq!(
            firsts(&slices),
            [
                (0, vec!["1".to_string(), "2".to_string()]),
                (1, vec![]),
                (2, vec!["3".to_string(), "4".to_string()])
            ]
        );
        assert!(host_slices(&mut records, &[vec![1, 3], vec![2]]).is_none());
        assert!(host_slices(&mut records, &[vec![3], vec![1]]).is_none());
        assert!(host_slices(&mut records, &[vec![5, 6]]).is_none());
    }
}
