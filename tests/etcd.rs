//! Runs whose state lives in etcd (`--state etcd://...`), against real etcd processes this
//! test starts (`Etcd`, shared with the engine's conformance tests), on hosts of this machine
//! (`ansible_connection=local`). What the hosts did is read from what their commands wrote,
//! with the hosts' own timestamps.

use crate::journal::{finish_within, local, wait_for, Local};
use fleetbook_engine::store::etcd::harness::Etcd;
use std::process::{Child, Command, Stdio};

/// The lease TTL of these tests' controllers, in seconds.
const TTL: f64 = 3.0;

/// A step body that appends `WHAT HOST START END` to the shared log around `sleep SECS`.
fn work(secs: f64) -> String {
    format!(
        "h.run(`s=$(date +%s.%N); sleep {secs}; echo \"work ${{h.name}} $s $(date +%s.%N)\" >> ${{h.var(\"dir\")}}/../log`)"
    )
}

/// (host, start, end) of each step the hosts ran, from the hosts' own clocks.
fn ran(l: &Local) -> Vec<(String, f64, f64)> {
    std::fs::read_to_string(l.dir.path().join("log"))
        .unwrap_or_default()
        .lines()
        .map(|line| {
            let w: Vec<&str> = line.split_whitespace().collect();
            (
                w[1].to_string(),
                w[2].parse().unwrap(),
                w[3].parse().unwrap(),
            )
        })
        .collect()
}

fn hosts_done(l: &Local) -> Vec<String> {
    let mut h: Vec<String> = ran(l).into_iter().map(|(h, _, _)| h).collect();
    h.sort();
    h.dedup();
    h
}

fn now() -> f64 {
    fleetbook_engine::journal::now()
}

/// `fleetbook CMD` on `l`'s inventory with its state in `etcd` under `prefix`.
fn command(l: &Local, cmd: &str, extra: &[&str]) -> Command {
    let mut c = l.command(cmd, extra);
    c.env("FLEETBOOK_ETCD_TTL", format!("{TTL}s"));
    c
}

fn spawn(l: &Local, cmd: &str, extra: &[&str]) -> Child {
    command(l, cmd, extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn on_etcd(l: &mut Local, etcd: &Etcd) {
    l.state = etcd.url("fleetbook").into();
}

fn hosts(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("w{i:02}")).collect()
}

fn one_at_a_time(secs: f64) -> String {
    format!(
        "let rb = runbook(\"t\");\nrb.limit(\"web\", 1);\nrb.step(\"work\", |h| {});\nrb\n",
        work(secs)
    )
}

/// SIGSTOP of the single etcd node: the controller cannot renew its lease, starts no task
/// after one TTL, and exits with the lock-lost status naming the tasks whose outcome it
/// could not record; after SIGCONT, a resume from another controller finishes the run.
#[test]
fn a_controller_that_loses_its_lease_stops_and_another_finishes_the_run() {
    let etcd = Etcd::single();
    let names = hosts(4);
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut l = local(&[("web", &names)], &one_at_a_time(1.5));
    on_etcd(&mut l, &etcd);
    let child = spawn(&l, "run", &["--yes"]);
    wait_for(|| !ran(&l).is_empty(), "a first host done");
    etcd.pause(0);
    let paused = now();
    let (code, stderr) = finish_within(child, 60, "the controller that lost its lease");
    etcd.resume(0);
    assert_eq!(code, 7, "{stderr}");
    assert!(stderr.contains("the fleet lock was lost"), "{stderr}");
    assert!(
        stderr.contains("tasks whose outcome the journal lacks: host:"),
        "the unknown tasks are named: {stderr}"
    );
    let late: Vec<_> = ran(&l)
        .into_iter()
        .filter(|(_, start, _)| *start > paused + TTL)
        .collect();
    assert!(late.is_empty(), "tasks started after one TTL: {late:?}");
    assert!(hosts_done(&l).len() < names.len(), "{stderr}");

    let id = l.run_id();
    let out = command(&l, "resume", &[&id, "--yes", "--retry-unknown"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(hosts_done(&l), names);
    let status = l.cmd("status", &[&id, "--format", "json"]);
    assert!(status.stdout.contains("\"succeeded\""), "{}", status.stdout);
}
