//! Runs under faults, against real sshd hosts on loopback: a frozen host (SIGSTOP on its sshd
//! and everything under it, as `docker pause` freezes a container), a command that fails
//! with its reason on stdout, two controllers on one host, a host whose key changed.

use crate::sshd::Fleet;
use crate::support::{fleetbook, Outcome};
use serde_json::Value;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn run_args(fleet: &Fleet, rb: &Path, inv: &Path, state: &Path) -> Vec<String> {
    vec![
        "run".into(),
        rb.display().to_string(),
        "-i".into(),
        inv.display().to_string(),
        "--yes".into(),
        "--ssh-config".into(),
        fleet.ssh_config.display().to_string(),
        "--state".into(),
        state.display().to_string(),
    ]
}

fn run(fleet: &Fleet, rb: &Path, inv: &Path, state: &Path, extra: &[&str]) -> Outcome {
    let mut cmd = fleetbook(&[]);
    for a in run_args(fleet, rb, inv, state) {
        cmd = cmd.arg(a);
    }
    for a in extra {
        cmd = cmd.arg(*a);
    }
    cmd.run()
}

fn spawn(fleet: &Fleet, rb: &Path, inv: &Path, state: &Path, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_fleetbook"))
        .args(run_args(fleet, rb, inv, state))
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("fleetbook starts")
}

fn wait_for(mut cond: impl FnMut() -> bool, what: &str) {
    // Generous: a loaded 2-core CI machine can take long to start a run.
    let deadline = Instant::now() + Duration::from_secs(120);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn events(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object a line"))
        .collect()
}

/// The run id from "run ID (journal PATH)" on standard error.
fn run_id(stderr: &str) -> String {
    stderr
        .lines()
        .find_map(|l| {
            l.strip_prefix("run ")?
                .split_once(" (journal ")
                .map(|x| x.0)
        })
        .unwrap_or_else(|| panic!("no run id in {stderr}"))
        .to_string()
}

/// Every process under `pid` (by parent), `pid` first.
fn tree(pid: i32) -> Vec<i32> {
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        let parent = all[i];
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(p) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            // "pid (comm) state ppid ...": comm may hold spaces, so split after the ')'.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<i32>().ok());
            if ppid == Some(parent) && !all.contains(&p) {
                all.push(p);
            }
        }
        i += 1;
    }
    all
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}
const SIGCONT: i32 = 18;
const SIGSTOP: i32 = 19;

/// A host frozen (its sshd and everything under it stopped) until dropped.
struct Frozen(Vec<i32>);

impl Frozen {
    fn host(fleet: &Fleet, name: &str) -> Frozen {
        let pid: i32 = std::fs::read_to_string(fleet.host(name).dir.join("sshd.pid"))
            .expect("sshd.pid")
            .trim()
            .parse()
            .expect("a pid");
        let pids = tree(pid);
        for &p in &pids {
            // SAFETY: kill(2) on processes this test's sshd started; no memory involved.
            unsafe { libc_kill(p, SIGSTOP) };
        }
        Frozen(pids)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        for &p in &self.0 {
            // SAFETY: as above.
            unsafe { libc_kill(p, SIGCONT) };
        }
    }
}

// The step's timeout was not honoured over a dead link: a frozen host failed its step after
// timeout + 15 s, the run kept starting hosts meanwhile, and the message claimed a kill on
// the host that nobody could have seen.
#[test]
fn a_frozen_host_fails_its_step_at_its_timeout_and_says_the_kill_is_unconfirmed() {
    let fleet = Fleet::start(&["f1", "f2"]);
    let inv = fleet.inventory(&[("web", &["f1", "f2"])], "");
    let rb = fleet.file(
        "rb.rhai",
        "let rb = runbook(\"t\");\nrb.limit(\"web\", 1);\n\
         rb.step(\"hang\", |h| h.run(`touch ${h.var(\"dir\")}/started; sleep 30`)).timeout(\"3s\");\nrb\n",
    );
    let state = fleet.dir.path().join("state");
    let child = spawn(&fleet, &rb, &inv, &state, &["--events", "jsonl"]);
    let marker = fleet.host("f1").dir.join("started");
    wait_for(|| marker.exists(), "the step to start on f1");
    let frozen = Frozen::host(&fleet, "f1");
    let out = child.wait_with_output().unwrap();
    drop(frozen);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "halted: {stderr}");
    let ev = events(&String::from_utf8_lossy(&out.stdout));
    let at = |state: &str| {
        ev.iter()
            .find(|e| e["host"] == "f1" && e["state"] == state)
            .unwrap_or_else(|| panic!("no {state} event for f1: {ev:?}"))["at"]
            .as_f64()
            .unwrap()
    };
    let took = at("failed") - at("running");
    assert!(
        took < 10.0,
        "the step failed {took:.1}s after it started, not at its 3s timeout"
    );
    let failed = ev
        .iter()
        .find(|e| e["host"] == "f1" && e["state"] == "failed")
        .unwrap();
    let msg = failed["message"].as_str().unwrap();
    assert!(msg.contains("timed out after 3s"), "{msg}");
    assert!(msg.contains("unconfirmed"), "{msg}");
    assert!(!msg.contains("killed on the host"), "{msg}");
    assert!(
        !fleet.host("f2").dir.join("started").exists(),
        "the halted run started f2"
    );
}

// A failed command's reason was lost: only stderr was kept, and dpkg says "No space left
// on device" on stdout.
#[test]
fn a_failed_commands_stdout_and_stderr_reach_events_status_and_journal() {
    let fleet = Fleet::start(&["d1"]);
    let inv = fleet.inventory(&[("web", &["d1"])], "");
    let rb = fleet.file(
        "rb.rhai",
        "let rb = runbook(\"t\");\n\
         rb.step(\"upgrade\", |h| h.run(\"sh -c 'printf \\\"No space left on %s\\\\n\\\" device; printf \\\"E: dpkg %s\\\\n\\\" error >&2; exit 2'\"));\nrb\n",
    );
    let state = fleet.dir.path().join("state");
    let out = run(&fleet, &rb, &inv, &state, &["--events", "jsonl"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    // The command's text does not hold the lines it prints: only its output can bring them.
    let both = |text: &str, what: &str| {
        assert!(text.contains("No space left on device"), "{what}: {text}");
        assert!(text.contains("E: dpkg error"), "{what}: {text}");
    };
    let ev = events(&out.stdout);
    let failed = ev
        .iter()
        .find(|e| e["state"] == "failed")
        .expect("a failed event");
    both(failed["message"].as_str().unwrap(), "events");
    let id = run_id(&out.stderr);
    let status = fleetbook(&["status", &id, "--state"])
        .arg(state.display().to_string())
        .code(0);
    both(&status.stdout, "status");
    let journal: Vec<u8> = std::fs::read_dir(&state)
        .unwrap()
        .flatten()
        .flat_map(|f| std::fs::read(f.path()).unwrap_or_default())
        .collect();
    both(&String::from_utf8_lossy(&journal), "journal");
}

// The lock covered one state directory: a second run with another --state acted on a host
// while the first run held its lock.
#[test]
fn a_second_controller_is_refused_a_host_another_run_holds() {
    let fleet = Fleet::start(&["l1"]);
    let inv = fleet.inventory(&[("web", &["l1"])], "");
    let rb = fleet.file(
        "rb.rhai",
        "let rb = runbook(\"t\");\n\
         rb.step(\"work\", |h| h.run(`echo x >> ${h.var(\"dir\")}/work; sleep 3`));\nrb\n",
    );
    let lease = fleet.host("l1").dir.join("fleetbook.lease");
    let first = spawn(&fleet, &rb, &inv, &fleet.dir.path().join("state-a"), &[]);
    let work = fleet.host("l1").dir.join("work");
    wait_for(|| work.exists(), "the first run to act on l1");
    let second = run(&fleet, &rb, &inv, &fleet.dir.path().join("state-b"), &[]);
    let out = first.wait_with_output().unwrap();
    let first_err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{first_err}");
    let first_id = run_id(&first_err);
    assert_eq!(second.code, 3, "the second run halts: {}", second.stderr);
    assert!(
        second.stderr.contains(&format!(
            "host l1 is held by run {first_id} from controller "
        )) && second.stderr.contains(" until "),
        "{}",
        second.stderr
    );
    assert_eq!(
        std::fs::read_to_string(&work).unwrap(),
        "x\n",
        "only the first run acted on l1"
    );
    assert!(!lease.exists(), "the first run released its lease");
    // Free again: a new run takes the host.
    let third = run(&fleet, &rb, &inv, &fleet.dir.path().join("state-b"), &[]);
    assert_eq!(third.code, 0, "{}", third.stderr);
    assert!(!lease.exists());
}

/// `ssh-keygen -l` of a public key file: its SHA256 fingerprint.
fn fingerprint(pubkey: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .arg("-l")
        .arg("-f")
        .arg(pubkey)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string()
}

// A changed host key (a possible man in the middle) counted as an ordinary unreachable host,
// tolerated by the failure budget, and the run went on to the next hosts.
#[test]
fn a_changed_host_key_halts_the_run_whatever_the_failure_budget() {
    let mut fleet = Fleet::start(&["k1", "k2", "k3"]);
    let inv = fleet.inventory(&[("web", &["k1", "k2", "k3"])], "");
    let dir = fleet.host("k2").dir.clone();
    let expected = fingerprint(&dir.join("host_key.pub"));
    fleet.stop_host(1);
    std::fs::remove_file(dir.join("host_key")).unwrap();
    std::fs::remove_file(dir.join("host_key.pub")).unwrap();
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(dir.join("host_key"))
        .status()
        .unwrap();
    assert!(made.success());
    let offered = fingerprint(&dir.join("host_key.pub"));
    fleet.start_host(1);
    let rb = fleet.file(
        "rb.rhai",
        "let rb = runbook(\"t\");\nrb.limit(\"web\", 1);\nrb.max_failures(\"web\", 2);\n\
         rb.step(\"a\", |h| h.run(`touch ${h.var(\"dir\")}/ran`));\nrb\n",
    );
    let out = run(&fleet, &rb, &inv, &fleet.dir.path().join("state"), &[]);
    assert_eq!(out.code, 3, "halted: {}", out.stderr);
    assert!(
        out.stderr
            .contains("host k2 offered a host key that differs from known_hosts"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&expected),
        "expected key: {}",
        out.stderr
    );
    assert!(out.stderr.contains(&offered), "offered key: {}", out.stderr);
    assert!(fleet.host("k1").dir.join("ran").exists());
    assert!(
        !fleet.host("k3").dir.join("ran").exists(),
        "a host started after the changed key"
    );
}

// A resumed run must take over its own lease, even one that names a controller elsewhere,
// while any other run is refused it.
#[test]
fn resume_takes_over_its_own_lease_and_other_runs_are_refused_it() {
    let fleet = Fleet::start(&["r1"]);
    let inv = fleet.inventory(&[("web", &["r1"])], "");
    let dir = fleet.host("r1").dir.clone();
    let rb = fleet.file(
        "rb.rhai",
        "let rb = runbook(\"t\");\n\
         rb.step(\"a\", |h| h.run(`test -e ${h.var(\"dir\")}/fixed`));\nrb\n",
    );
    let state = fleet.dir.path().join("state");
    let out = run(&fleet, &rb, &inv, &state, &[]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    let id = run_id(&out.stderr);
    let lease = dir.join("fleetbook.lease");
    assert!(!lease.exists(), "released at the end of the run");
    std::fs::write(dir.join("fixed"), "").unwrap();
    // The run's lease, as a controller on another machine would have left it.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    std::fs::write(&lease, format!("{id}\nother-machine:1\n{}\n", now + 3600)).unwrap();
    let other = run(&fleet, &rb, &inv, &fleet.dir.path().join("other"), &[]);
    assert_eq!(other.code, 3, "{}", other.stderr);
    assert!(
        other.stderr.contains(&format!(
            "host r1 is held by run {id} from controller other-machine:1"
        )),
        "{}",
        other.stderr
    );
    let resumed = fleetbook(&["resume", &id, "--yes", "--state"])
        .arg(state.display().to_string())
        .arg("--ssh-config")
        .arg(fleet.ssh_config.display().to_string())
        .run();
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    assert!(!lease.exists(), "released at the end of the resumed run");
}

// A lease must outlive its 60 s expiry while its run still acts on the host: the run renews
// it (every 20 s), so a long step does not let another controller in.
#[test]
fn a_run_renews_its_lease_while_it_acts_on_the_host() {
    let fleet = Fleet::start(&["n1"]);
    let inv = fleet.inventory(&[("web", &["n1"])], "");
    let dir = fleet.host("n1").dir.clone();
    let rb = fleet.file(
        "rb.rhai",
        "let rb = runbook(\"t\");\n\
         rb.step(\"long\", |h| h.run(`touch ${h.var(\"dir\")}/started; sleep 23`));\nrb\n",
    );
    let mut child = spawn(&fleet, &rb, &inv, &fleet.dir.path().join("state"), &[]);
    wait_for(|| dir.join("started").exists(), "the step to start");
    let lease = dir.join("fleetbook.lease");
    let expiry = || -> u64 {
        std::fs::read_to_string(&lease)
            .ok()
            .and_then(|t| t.lines().nth(2)?.parse().ok())
            .unwrap_or(0)
    };
    let first = expiry();
    assert!(first > 0, "the lease was taken before the step");
    let mut renewed = false;
    while child.try_wait().unwrap().is_none() {
        renewed |= expiry() > first;
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(renewed, "the lease was not renewed during the 23 s step");
    assert!(child.wait().unwrap().success());
    assert!(!lease.exists(), "released at the end");
}
