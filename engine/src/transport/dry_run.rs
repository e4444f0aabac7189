//! Dry-run: evaluates every task's closure with a recording transport. Every host operation
//! records the exact command it would run and gets success with empty output back, so
//! `h.run_ok(...)` is true, `pkg::version(...)` is "", and `wait_until` returns at once.
//! Takes the script and the graph; gives the recorded commands per task.

use crate::compile::{Graph, TaskKind};
use crate::error::{Error, Result};
use crate::script::Script;
use fleetbook_stdlib::{Host, HostInfo, Output, Transport, TransportError};
use indexmap::IndexMap;
use rayon::prelude::*;
use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

thread_local! {
    static RECORD: RefCell<Vec<(String, String)>> = const { RefCell::new(Vec::new()) };
}

/// The recording transport.
pub struct Recorder;

impl Transport for Recorder {
    fn exec(
        &self,
        host: &HostInfo,
        command: &str,
        _timeout: Option<Duration>,
    ) -> Result<Output, TransportError> {
        RECORD.with(|r| {
            r.borrow_mut()
                .push((host.name.clone(), command.to_string()))
        });
        Ok(Output::default())
    }

    fn is_dry_run(&self) -> bool {
        true
    }
}

/// What one task would run.
#[derive(Debug, Clone, Default)]
pub struct TaskRecord {
    pub commands: Vec<String>,
    pub undo: Vec<String>,
    /// Its `.when(...)` said no (as far as the plan can tell).
    pub skipped: bool,
}

/// Commands recorded since the last call, as plain commands when they ran on `own` and as
/// `host: command` otherwise.
fn take_record(own: Option<&str>, secrets: &[(String, String)]) -> Vec<String> {
    RECORD.with(|r| {
        r.borrow_mut()
            .drain(..)
            .map(|(h, c)| {
                let c = redact(&c, secrets);
                if Some(h.as_str()) == own {
                    c
                } else {
                    format!("{h}: {c}")
                }
            })
            .collect()
    })
}

/// Secret parameter values never reach a plan: they are replaced by `<secret:NAME>`.
pub fn redact(text: &str, secrets: &[(String, String)]) -> String {
    let mut out = text.to_string();
    for (name, value) in secrets {
        if !value.is_empty() && out.contains(value.as_str()) {
            out = out.replace(value.as_str(), &format!("<secret:{name}>"));
        }
    }
    out
}

/// The `Host` values the runbook's closures receive, one per planned host.
pub fn hosts(graph: &Graph, transport: Arc<dyn Transport>) -> IndexMap<String, Host> {
    graph
        .hosts
        .iter()
        .map(|h| {
            let info = HostInfo {
                name: h.name.clone(),
                roles: h
                    .roles
                    .iter()
                    .map(|&r| graph.roles[r].name.clone())
                    .collect(),
                vars: h.vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            };
            (h.name.clone(), Host::new(Arc::new(info), transport.clone()))
        })
        .collect()
}

fn truthy(v: &rhai::Dynamic) -> bool {
    v.as_bool().unwrap_or(!v.is_unit())
}

/// Records what every task would run.
pub fn record(script: &Script, graph: &Graph) -> Result<Vec<TaskRecord>> {
    let secrets = script.secrets();
    let hosts = hosts(graph, Arc::new(Recorder));
    script.bind_fleet(hosts.clone());
    let rb = &script.runbook;
    let mut records = vec![TaskRecord::default(); graph.tasks.len()];

    for (t, task) in graph.tasks.iter().enumerate() {
        if task.kind == TaskKind::Host {
            continue;
        }
        let Some(step) = task.step.map(|s| &rb.steps[s]) else {
            continue;
        };
        let Some(action) = &step.action else { continue };
        take_record(None, &secrets);
        let _ = script.call(action).map_err(|e| {
            script.error(
                &e,
                &format!("{} {:?} (dry-run)", step.scope.kind(), step.name),
            )
        })?;
        records[t].commands = take_record(None, &secrets);
    }

    let per_host: Vec<Result<Vec<(usize, TaskRecord)>>> = graph
        .host_tasks
        .par_iter()
        .enumerate()
        .map(|(h, tasks)| {
            let host = &hosts[h];
            let own = Some(host.info.name.as_str());
            let mut out = Vec::with_capacity(tasks.len());
            take_record(own, &secrets);
            for &t in tasks {
                let step = &rb.steps[graph.tasks[t].step.unwrap_or(0)];
                let fail = |e: Box<rhai::EvalAltResult>, what: &str| -> Error {
                    script.error(
                        &e,
                        &format!(
                            "host {}, step {:?}{what} (dry-run)",
                            host.info.name, step.name
                        ),
                    )
                };
                let mut rec = TaskRecord::default();
                let h = host.with_timeout(step.timeout);
                if let Some(when) = &step.when {
                    let go = script
                        .call_host(when, h.clone())
                        .map_err(|e| fail(e, ", when"))?;
                    // Probes inside the condition would run for real, so they are shown too.
                    rec.commands.extend(take_record(own, &secrets));
                    rec.skipped = !truthy(&go);
                }
                if !rec.skipped {
                    if let Some(action) = &step.action {
                        let _ = script
                            .call_host(action, h.clone())
                            .map_err(|e| fail(e, ""))?;
                        rec.commands.extend(take_record(own, &secrets));
                    }
                }
                if let Some(undo) = &step.undo {
                    let _ = script
                        .call_host(undo, h.clone())
                        .map_err(|e| fail(e, ", undo"))?;
                    rec.undo = take_record(own, &secrets);
                }
                out.push((t, rec));
            }
            Ok(out)
        })
        .collect();
    for res in per_host {
        for (t, rec) in res? {
            records[t] = rec;
        }
    }
    Ok(records)
}
