//! The JSON documents stored under the keys of [`super::keys`]. Field names are part of
//! the documented layout (docs/etcd.md): add fields, never rename them.

use crate::clock::At;
use crate::exec::{Event, State};
use crate::journal::{LockInfo, RunRecord, TaskRow};
use crate::store::{RunState, TaskState};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `runs/RUN`. Secret parameters are stored as `<secret>` (as in the plan); their salted
/// digests only let a resume check that the same secret was given again.
#[derive(Serialize, Deserialize, Clone)]
pub struct RunDoc {
    pub id: String,
    pub runbook: String,
    pub runbook_path: String,
    pub runbook_digest: String,
    pub inventory_path: String,
    pub inventory_digest: String,
    pub params: BTreeMap<String, String>,
    pub limit_pattern: Option<String>,
    pub user: String,
    pub controller: String,
    pub pid: i64,
    pub started_at: At,
    pub ended_at: Option<At>,
    pub state: String,
    pub reason: Option<String>,
    pub lib_digest: Option<String>,
    #[serde(default)]
    pub secret_digests: BTreeMap<String, String>,
    #[serde(default)]
    pub pre_approved: Vec<String>,
}

impl From<&RunRecord> for RunDoc {
    fn from(r: &RunRecord) -> RunDoc {
        RunDoc {
            id: r.id.clone(),
            runbook: r.runbook.clone(),
            runbook_path: r.runbook_path.clone(),
            runbook_digest: r.runbook_digest.clone(),
            inventory_path: r.inventory_path.clone(),
            inventory_digest: r.inventory_digest.clone(),
            params: r.params.clone(),
            limit_pattern: r.limit_pattern.clone(),
            user: r.user.clone(),
            controller: r.controller.clone(),
            pid: r.pid,
            started_at: r.started_at,
            ended_at: r.ended_at,
            state: RunState::Running.as_str().into(),
            reason: r.reason.clone(),
            lib_digest: r.lib_digest.clone(),
            secret_digests: r.secret_digests.clone(),
            pre_approved: r.pre_approved.clone(),
        }
    }
}

impl RunDoc {
    /// An unknown state name reads as `store_failed`: never as running, never resumed blind.
    pub fn record(self) -> RunRecord {
        RunRecord {
            state: RunState::parse(&self.state).unwrap_or(RunState::StoreFailed),
            id: self.id,
            runbook: self.runbook,
            runbook_path: self.runbook_path,
            runbook_digest: self.runbook_digest,
            inventory_path: self.inventory_path,
            inventory_digest: self.inventory_digest,
            params: self.params,
            limit_pattern: self.limit_pattern,
            user: self.user,
            controller: self.controller,
            pid: self.pid,
            started_at: self.started_at,
            ended_at: self.ended_at,
            reason: self.reason,
            lib_digest: self.lib_digest,
            secret_digests: self.secret_digests,
            pre_approved: self.pre_approved,
        }
    }

    /// The inputs a replanned resume goes on with.
    pub fn replanned(&mut self, new: &RunDoc) {
        self.runbook_digest = new.runbook_digest.clone();
        self.inventory_digest = new.inventory_digest.clone();
        self.params = new.params.clone();
        self.lib_digest = new.lib_digest.clone();
        self.secret_digests = new.secret_digests.clone();
        self.pre_approved = new.pre_approved.clone();
    }
}

/// `tasks/RUN/TASK`. `seq` keeps the plan's order.
#[derive(Serialize, Deserialize, Clone)]
pub struct TaskDoc {
    pub seq: u64,
    pub task_id: String,
    pub kind: String,
    pub host: Option<String>,
    pub step: Option<String>,
    pub role: Option<String>,
    /// An unknown name does not parse: a corrupt document, reported with the name.
    pub state: TaskState,
    pub attempt: i64,
    pub started_at: Option<At>,
    pub ended_at: Option<At>,
    pub message: Option<String>,
}

impl TaskDoc {
    pub fn new(seq: u64, t: &TaskRow) -> TaskDoc {
        TaskDoc {
            seq,
            task_id: t.task_id.clone(),
            kind: t.kind.clone(),
            host: t.host.clone(),
            step: t.step.clone(),
            role: t.role.clone(),
            state: t.state,
            attempt: t.attempt,
            started_at: t.started_at,
            ended_at: t.ended_at,
            message: t.message.clone(),
        }
    }

    pub fn row(self) -> TaskRow {
        TaskRow {
            task_id: self.task_id,
            kind: self.kind,
            host: self.host,
            step: self.step,
            role: self.role,
            state: self.state,
            attempt: self.attempt,
            started_at: self.started_at,
            ended_at: self.ended_at,
            message: self.message,
        }
    }

    /// One transition at `at`, as the SQLite journal records it.
    pub fn apply(&mut self, e: &Event, at: At) {
        self.state = e.state.into();
        self.message = e.message.clone();
        match e.state {
            State::Running => {
                self.attempt = e.attempt.into();
                self.started_at = Some(at);
                self.ended_at = None;
            }
            State::Retrying | State::WaitingApproval | State::RollingBack => {
                self.attempt = e.attempt.into();
            }
            _ => {
                self.attempt = self.attempt.max(e.attempt.into());
                self.ended_at = Some(at);
            }
        }
    }
}

/// `hosts/RUN/HOST`: the host's roles, and where it stands — its last task's state, which
/// controller ran it, and the version it runs (the `version` fact a step set).
#[derive(Serialize, Deserialize, Clone)]
pub struct HostDoc {
    pub roles: Vec<String>,
    /// `pending` until a task of the host starts; then the state of its latest task.
    #[serde(default = "pending")]
    pub state: TaskState,
    #[serde(default)]
    pub task: Option<String>,
    /// `user@machine pid N` of the controller that ran the latest task.
    #[serde(default)]
    pub controller: Option<String>,
    #[serde(default)]
    pub at: Option<At>,
    /// The last value of the host's `version` fact.
    #[serde(default)]
    pub version: Option<String>,
}

/// The fact that says which version a host runs (`h.set_fact("version", ...)`).
pub const VERSION_FACT: &str = "version";

fn pending() -> TaskState {
    TaskState::Pending
}

impl HostDoc {
    pub fn new(roles: &[String]) -> HostDoc {
        HostDoc {
            roles: roles.to_vec(),
            state: pending(),
            task: None,
            controller: None,
            at: None,
            version: None,
        }
    }

    pub fn apply(&mut self, e: &Event, at: At) {
        self.state = e.state.into();
        self.task = Some(e.task.clone());
        self.controller = Some(controller_name());
        self.at = Some(at);
    }
}

/// How a controller is named in the store and in `status`.
pub fn controller_name() -> String {
    format!(
        "{}@{} pid {}",
        crate::journal::user(),
        crate::journal::controller(),
        std::process::id()
    )
}

/// `locks/FLEET` and `controllers/RUN/LEASE`.
#[derive(Serialize, Deserialize, Clone)]
pub struct LockDoc {
    pub run_id: String,
    pub pid: i64,
    pub user: String,
    pub controller: String,
    pub since: At,
    /// The lease the key lives under (hex in `controllers/` keys).
    pub lease: i64,
}

impl LockDoc {
    pub fn info(&self, fleet: &str) -> LockInfo {
        LockInfo {
            fleet: fleet.to_string(),
            run_id: self.run_id.clone(),
            pid: self.pid,
            user: self.user.clone(),
            controller: self.controller.clone(),
            since: self.since,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records as fleetbook wrote them before times were typed (Unix seconds, a float or a
    /// whole number) read as they are, and are written back the same.
    #[test]
    fn records_of_older_versions_read_and_write_the_same() {
        let run = r#"{"id":"r1","runbook":"rb","runbook_path":"rb.rhai","runbook_digest":"d","inventory_path":"hosts","inventory_digest":"d","params":{},"limit_pattern":null,"user":"ops","controller":"c","pid":7,"started_at":1795302516.25,"ended_at":1795302600,"state":"succeeded","reason":null,"lib_digest":null}"#;
        let doc: RunDoc = serde_json::from_str(run).unwrap();
        assert_eq!(doc.started_at.to_string(), "2026-11-21 23:08:36Z");
        assert_eq!(doc.ended_at.map(At::unix), Some(1_795_302_600.0));
        let back = serde_json::to_value(&doc).unwrap();
        assert_eq!(back["started_at"], serde_json::json!(1_795_302_516.25));
        let task = r#"{"seq":0,"task_id":"host:w1:s","kind":"host","host":"w1","step":"s","role":"web","state":"ok","attempt":1,"started_at":101.5,"ended_at":null,"message":null}"#;
        let doc: TaskDoc = serde_json::from_str(task).unwrap();
        assert_eq!(doc.started_at.map(At::unix), Some(101.5));
        let lock = r#"{"run_id":"r1","pid":7,"user":"ops","controller":"c","since":100,"lease":1}"#;
        let doc: LockDoc = serde_json::from_str(lock).unwrap();
        assert_eq!(doc.info("f").since.unix(), 100.0);
        let host = r#"{"roles":["web"],"state":"ok","at":102.0}"#;
        let doc: HostDoc = serde_json::from_str(host).unwrap();
        assert_eq!(doc.at.map(At::unix), Some(102.0));
    }

    /// A task state fleetbook never wrote does not read: the error names it.
    #[test]
    fn an_unknown_task_state_is_refused_by_name() {
        let task = r#"{"seq":0,"task_id":"t","kind":"host","host":"w1","step":"s","role":"web","state":"exploded","attempt":1,"started_at":null,"ended_at":null,"message":null}"#;
        let e = serde_json::from_str::<TaskDoc>(task)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("exploded"), "{e}");
        let host = r#"{"roles":["web"],"state":"exploded"}"#;
        let e = serde_json::from_str::<HostDoc>(host)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("exploded"), "{e}");
    }
}
