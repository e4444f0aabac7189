//! Connect-ahead: while a wave of hosts works, the executor tells the transport which
//! waiting hosts are likely to start next (schedule order), so that they start on a ready
//! connection and only the first wave pays for handshakes; and when a host has no step left,
//! that its connection may close.
//!
//! Takes the plan (which hosts surely act on the host) and the waiting queue; gives calls to
//! [`Transport::connect_ahead`] and [`Transport::finished_with`]. A host is contacted ahead
//! only when one of its tasks surely runs a command there: a step without `.when` whose
//! dry run recorded a command. A host that may be skipped is left alone until it starts.

use crate::compile::TaskKind;
use crate::plan::Planned;
use crate::slots::WaitingHosts;
use fleetbook_stdlib::{Host, HostInfo, Transport};
use std::sync::Mutex;

/// At most this many hosts are connected ahead at once, whatever the window: with the
/// transport's own bound on handshakes in flight, a wide window cannot flood the hosts'
/// sshd (MaxStartups) or this machine.
pub const MAX_AHEAD: usize = 32;

pub struct Ahead {
    /// Per host: some task of it surely runs a command on it.
    eligible: Vec<bool>,
    /// Per host: already told to the transport (ahead, or finished).
    told: Mutex<Vec<bool>>,
}

impl Ahead {
    pub fn new(planned: &Planned) -> Ahead {
        let graph = &planned.graph;
        let steps = &planned.script.runbook.steps;
        let surely_runs = |t: usize| {
            let task = &graph.tasks[t];
            let recorded = planned
                .plan
                .tasks
                .get(t)
                .is_some_and(|p| !p.commands.is_empty() && !p.skipped);
            let unconditional = match task.kind {
                TaskKind::Host => task.step.is_some_and(|s| steps[s].when.is_none()),
                TaskKind::HostCheck => true,
                _ => false,
            };
            recorded && unconditional && !graph.held[t]
        };
        let eligible = graph
            .host_tasks
            .iter()
            .map(|ts| ts.iter().any(|&t| surely_runs(t)))
            .collect();
        Ahead {
            eligible,
            told: Mutex::new(vec![false; graph.hosts.len()]),
        }
    }

    /// Tells the transport the next [`MAX_AHEAD`] hosts in schedule order. Not only as many
    /// as the window holds: under load a handshake takes longer than a host's turn, so hosts
    /// told one window ahead still started on a connection being opened (measured at N=50,
    /// rolling 5; bench/README.md).
    pub fn connect(&self, waiting: &WaitingHosts, hosts: &[Host], transport: &dyn Transport) {
        let mut told = self.told.lock().unwrap_or_else(|e| e.into_inner());
        let next: Vec<&HostInfo> = waiting
            .upcoming()
            .filter(|&h| self.eligible[h])
            .take(MAX_AHEAD)
            .filter(|&h| !std::mem::replace(&mut told[h], true))
            .map(|h| &*hosts[h].info)
            .collect();
        if !next.is_empty() {
            transport.connect_ahead(&next);
        }
    }

    /// The host has no step left in this run.
    pub fn finished(&self, h: usize, hosts: &[Host], transport: &dyn Transport) {
        transport.finished_with(&hosts[h].info);
    }
}
