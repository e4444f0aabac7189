//! `fleetbook exec`: one ad-hoc command on the hosts a pattern selects, in parallel, with the
//! output grouped per host (or per identical output with `-b`, as clush does).

use crate::cli::SshArgs;
use crate::drive::{install_ctrl_c, transport};
use crate::exit;
use fleetbook_engine::exec::Control;
use fleetbook_engine::inventory::{pattern, Inventory};
use fleetbook_engine::secrets::Secrets;
use fleetbook_engine::{Error, Result};
use fleetbook_stdlib::duration::parse_duration;
use fleetbook_stdlib::{HostInfo, Transport, TransportError};
use pattern::Origin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// One host's answer to an ad-hoc command.
type Answer = std::result::Result<fleetbook_stdlib::Output, TransportError>;

pub fn adhoc(
    inventory: &std::path::Path,
    pat: &str,
    forks: usize,
    group: bool,
    timeout: Option<&str>,
    ssh: &SshArgs,
    command: &str,
) -> Result<i32> {
    let inv = Inventory::load(inventory)?;
    let selected = pattern::select_as(&inv, pat, Origin::Exec)?;
    let timeout = timeout
        .map(parse_duration)
        .transpose()
        .map_err(|e| Error::input(format!("--timeout: {e}")))?;
    let values = inv.all_host_values();
    let vars: std::collections::HashMap<&String, _> =
        values.iter().map(|(h, v)| (h, inv.text_vars(v))).collect();
    // Credentials in the inventory never reach the output, even if a command echoes them
    // (or one part of a secret list or map).
    let secrets = Secrets::new();
    for (h, v) in &vars {
        secrets.add_typed_vars(v, &values[*h], &[]);
    }
    let hosts: Vec<HostInfo> = selected
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
    let transport = transport(ssh)?;
    let control = Arc::new(Control::default());
    install_ctrl_c(control.clone());
    let next = AtomicUsize::new(0);
    let answers: Mutex<Vec<Option<Answer>>> = Mutex::new(vec![None; hosts.len()]);
    std::thread::scope(|scope| {
        for _ in 0..forks.clamp(1, hosts.len().max(1)) {
            scope.spawn(|| loop {
                if control.stop.load(Ordering::SeqCst) {
                    break;
                }
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(h) = hosts.get(i) else { break };
                let a = transport.exec(h, command, timeout);
                answers.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(a);
            });
        }
        scope.spawn(|| {
            while next.load(Ordering::SeqCst) < hosts.len() + forks
                && !control.kill.load(Ordering::SeqCst)
            {
                std::thread::sleep(std::time::Duration::from_millis(100));
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
    transport.shutdown();
    let answers = answers.into_inner().unwrap_or_else(|e| e.into_inner());
    let render = |a: &Option<Answer>| -> (String, bool) {
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
    for (h, a) in hosts.iter().zip(&answers) {
        let (text, ok) = render(a);
        let text = secrets.redacted(&text);
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
    exit::print(&out)?;
    Ok(if all_ok { exit::OK } else { exit::FAILURES })
}
