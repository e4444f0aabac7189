//! `fleetbook exec`: one ad-hoc command on the hosts a pattern selects, in parallel, with the
//! output grouped per host (or per identical output, as clush's `-b` does).
//!
//! Takes an inventory, a host pattern, a [`Transport`] and the command; gives each host's
//! answer as text with the inventory's secrets redacted, and whether every host succeeded.

use crate::exec::Control;
use crate::inventory::pattern::{self, Origin};
use crate::inventory::Inventory;
use crate::secrets::Secrets;
use crate::Result;
use fleetbook_stdlib::{HostInfo, Output, Transport, TransportError};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// One host's answer to an ad-hoc command (`None`: not run, the operator stopped first).
type Answer = Option<std::result::Result<Output, TransportError>>;

/// The hosts a pattern selects, with what a command may see of them, and the inventory's
/// secrets, to keep out of the output.
pub struct Selected {
    hosts: Vec<HostInfo>,
    secrets: Secrets,
}

/// The hosts of `inventory` that `pattern` selects.
pub fn select(inventory: &Path, pat: &str) -> Result<Selected> {
    let inv = Inventory::load(inventory)?;
    let selected = pattern::select_as(&inv, pat, Origin::Exec)?;
    let values = inv.all_host_values();
    let vars: HashMap<&String, _> = values.iter().map(|(h, v)| (h, inv.text_vars(v))).collect();
    // Credentials in the inventory never reach the output, even if a command echoes them
    // (or one part of a secret list or map).
    let secrets = Secrets::new();
    for (h, v) in &vars {
        secrets.add_typed_vars(v, &values[*h], &[]);
    }
    let hosts = selected
        .iter()
        .map(|h| HostInfo {
            name: h.clone(),
            roles: inv.direct_groups(h),
            vars: vars
                .get(h)
                .map(|v| v.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
            ..HostInfo::default()
        })
        .collect();
    Ok(Selected { hosts, secrets })
}

/// What one ad-hoc command does.
pub struct Command<'a> {
    pub command: &'a str,
    /// Hosts at once.
    pub forks: usize,
    pub timeout: Option<Duration>,
}

/// Runs the command on every selected host, `forks` at a time, until done or `control`
/// stops it (a kill also kills what runs); gives the output, grouped, and whether every
/// host exited 0.
pub fn run(
    selected: &Selected,
    transport: &dyn Transport,
    control: &Control,
    c: &Command,
    group: bool,
) -> (String, bool) {
    let answers = fan_out(&selected.hosts, transport, control, c);
    transport.shutdown();
    report(selected, &answers, group)
}

fn fan_out(
    hosts: &[HostInfo],
    transport: &dyn Transport,
    control: &Control,
    c: &Command,
) -> Vec<Answer> {
    let next = AtomicUsize::new(0);
    let answers: Mutex<Vec<Answer>> = Mutex::new(vec![None; hosts.len()]);
    let forks = c.forks;
    std::thread::scope(|scope| {
        for _ in 0..forks.clamp(1, hosts.len().max(1)) {
            scope.spawn(|| loop {
                if control.stop.load(Ordering::SeqCst) {
                    break;
                }
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(h) = hosts.get(i) else { break };
                let a = transport.exec(h, c.command, c.timeout);
                answers.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(a);
            });
        }
        // Watches for a second Ctrl-C (a kill) while the commands run.
        scope.spawn(|| {
            while next.load(Ordering::SeqCst) < hosts.len() + forks
                && !control.kill.load(Ordering::SeqCst)
            {
                std::thread::sleep(Duration::from_millis(100));
                if answers
                    .lock()
                    .map(|a| a.iter().all(Option::is_some))
                    .unwrap_or(true)
                {
                    return;
                }
            }
            if control.kill.load(Ordering::SeqCst) {
                transport.kill_all();
            }
        });
    });
    answers.into_inner().unwrap_or_else(|e| e.into_inner())
}

/// Each host's answer (or each group of hosts with the same answer) under a header naming
/// them; secrets redacted.
fn report(selected: &Selected, answers: &[Answer], group: bool) -> (String, bool) {
    let render = |a: &Answer| -> (String, bool) {
        match a {
            None => ("(not run)\n".into(), false),
            Some(Ok(o)) => {
                let mut text = format!("rc={}\n{}", o.code, o.stdout);
                if !o.stderr.is_empty() {
                    text.push_str(&o.stderr);
                }
                (text, o.code == 0)
            }
            Some(Err(e)) => (format!("{e}\n"), false),
        }
    };
    let mut groups: Vec<(Vec<&str>, String)> = Vec::new();
    let mut all_ok = true;
    for (h, a) in selected.hosts.iter().zip(answers) {
        let (text, ok) = render(a);
        let text = selected.secrets.redacted(&text);
        all_ok &= ok;
        match groups.iter_mut().find(|(_, t)| group && *t == text) {
            Some((names, _)) => names.push(&h.name),
            None => groups.push((vec![&h.name], text)),
        }
    }
    let mut out = String::new();
    for (names, text) in groups {
        let header = names.join(",");
        out.push_str(&format!(
            "{}\n{header}\n{}\n{}\n",
            "-".repeat(header.len().min(78)),
            "-".repeat(header.len().min(78)),
            text.trim_end()
        ));
    }
    (out, all_ok)
}
