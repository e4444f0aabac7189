//! End-to-end tests on a real fleet: Debian containers from examples/fleet (systemd, sshd,
//! puppet-agent, a demo service packaged in 1.0 and 2.0). They check the hosts themselves:
//! dpkg-query, the running service's version and PID, puppet's lock file, cron.
//!
//! Without Docker, debootstrap or dpkg-dev they fail, saying what to install (`./test.sh`
//! installs them).

use crate::support::root;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Every fleet scenario, one after another in this one test. A fleet takes the machine's
/// two cores, so fleets come up one at a time; as tests of their own, those waiting for
/// their turn held libtest's other thread idle, where the rest of the suite now runs beside
/// them. `FLEETBOOK_FLEET=NAME ./test.sh -- fleet` runs the scenarios whose name holds NAME.
/// (The test is `a_fleet_scenarios_one_at_a_time` in lib.rs.)
pub fn scenarios_one_at_a_time() {
    macro_rules! scenarios {
        ($($f:ident),* $(,)?) => { [$((stringify!($f), $f as fn())),*] };
    }
    let all = scenarios![
        swh_debian_upgrade_runs_for_real,
        faults_mid_rollout,
        controller_killed_then_resumed,
        network_cut_fails_the_host_at_its_step_timeout,
        jiocloud_rolling_converges_with_masterless_puppet,
        punch_patch_deploys_verifies_and_rolls_back,
        demo_upgrade_limits_hold_on_the_hosts,
        starlingx_patch_waits_for_alarms_then_patches_in_order,
        maintenance_mode_keeps_each_cluster_in_service,
        sudo_without_a_password_or_a_clear_hint,
        reboot_brings_a_container_host_back_and_the_step_goes_on,
        documented_fleet_commands_run,
    ];
    let only = std::env::var("FLEETBOOK_FLEET").ok();
    let chosen: Vec<_> = all
        .into_iter()
        .filter(|(name, _)| only.as_deref().is_none_or(|o| name.contains(o)))
        .collect();
    // Each scenario takes one fleet, but the last, which brings its own up as the docs say.
    let own = |name: &str| name == "documented_fleet_commands_run";
    WANTED.store(
        chosen.iter().filter(|(name, _)| !own(name)).count(),
        Ordering::SeqCst,
    );
    assert!(
        !chosen.is_empty(),
        "FLEETBOOK_FLEET={only:?} names no fleet scenario"
    );
    let mut failed = Vec::new();
    for (name, scenario) in chosen {
        let start = std::time::Instant::now();
        // A failed scenario's panic is printed where it happened; the others still run.
        let ok = std::panic::catch_unwind(scenario).is_ok();
        eprintln!(
            "fleet scenario {name}: {} in {:.0} s",
            if ok { "ok" } else { "FAILED" },
            start.elapsed().as_secs_f64()
        );
        if !ok {
            failed.push(name);
        }
    }
    // A fleet brought up for a scenario that failed before it took it.
    if let Some(left) = NEXT.lock().unwrap_or_else(|e| e.into_inner()).take() {
        drop(left.join());
    }
    assert!(failed.is_empty(), "fleet scenarios failed: {failed:?}");
}

/// Building the image is shared; one scenario runs at a time (two cores).
static SERIAL: Mutex<()> = Mutex::new(());

/// Fails the test, saying what to install, when Docker, debootstrap or dpkg-dev is missing:
/// a test that cannot run must not pass as if it had (`./test.sh` installs them).
fn require_fleet_tools() {
    let docker = Command::new("docker")
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let missing: Vec<&str> = [
        ("debootstrap", "debootstrap"),
        ("dpkg-scanpackages", "dpkg-dev"),
    ]
    .into_iter()
    .filter(|(tool, _)| !on_path(tool))
    .map(|(_, package)| package)
    .collect();
    assert!(
        docker && missing.is_empty(),
        "the fleet tests need {}{}{}: run ./test.sh as root (it installs them), or \
         `apt-get install {}` and start Docker",
        if docker {
            ""
        } else {
            "a usable Docker (`docker info` failed)"
        },
        if docker || missing.is_empty() {
            ""
        } else {
            " and "
        },
        missing.join(", "),
        if missing.is_empty() {
            "docker.io".to_string()
        } else {
            missing.join(" ")
        },
    );
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

/// A fresh fleet, one test at a time.
fn fleet() -> (std::sync::MutexGuard<'static, ()>, DemoFleet) {
    // Counted before anything can fail, so that no fleet comes up for a scenario that will
    // not take it.
    let more = WANTED
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok_and(|n| n > 1);
    crate::support::keep_no_connections();
    let one = fleet_turn();
    let ready = NEXT.lock().unwrap_or_else(|e| e.into_inner()).take();
    // One that failed to come up in the background is brought up here, where its error
    // fails this scenario.
    let fleet = ready
        .and_then(|r| r.join().ok())
        .unwrap_or_else(DemoFleet::up);
    if more {
        *NEXT.lock().unwrap_or_else(|e| e.into_inner()) = Some(std::thread::spawn(DemoFleet::up));
    }
    (one, fleet)
}

/// The next scenario's fleet, coming up while this one runs: about 17 s of container and
/// systemd start-up each, which is mostly waiting, off the suite's longest path.
static NEXT: Mutex<Option<std::thread::JoinHandle<DemoFleet>>> = Mutex::new(None);
/// How many scenarios still take a fleet (`scenarios_one_at_a_time` sets it).
static WANTED: AtomicUsize = AtomicUsize::new(0);

/// This test's turn to bring a fleet up.
fn fleet_turn() -> std::sync::MutexGuard<'static, ()> {
    require_fleet_tools();
    let one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Fleets that a killed test run left behind (their owner process is gone).
    static PRUNE: std::sync::Once = std::sync::Once::new();
    PRUNE.call_once(|| {
        let _ = Command::new(fleet_sh()).arg("prune").status();
    });
    one
}

fn fleet_sh() -> PathBuf {
    root().join("examples/fleet/fleet.sh")
}

/// A fleet that goes down when dropped, whatever happened.
struct DemoFleet {
    dir: tempfile::TempDir,
}

impl DemoFleet {
    fn up() -> DemoFleet {
        let dir = tempfile::Builder::new()
            .prefix("fbfleet")
            .tempdir()
            .unwrap();
        let out = Command::new(fleet_sh())
            .arg("up")
            .arg(dir.path())
            .env("FLEETBOOK_FLEET_OWNER", std::process::id().to_string())
            .output()
            .unwrap();
        let fleet = DemoFleet { dir };
        assert!(
            out.status.success(),
            "fleet up failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        fleet
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn container(&self, host: &str) -> String {
        format!(
            "{}-{host}",
            std::fs::read_to_string(self.path("fleet-id"))
                .unwrap()
                .trim()
        )
    }

    /// Runs a command on a host through docker (the test's own view, not fleetbook's).
    fn sh(&self, host: &str, cmd: &str) -> String {
        let out = Command::new("docker")
            .args(["exec", &self.container(host), "sh", "-c", cmd])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Takes `host` off the fleet's network (`docker network disconnect`): the link is cut,
    /// the host runs on.
    fn cut_off(&self, host: &str) {
        let net = format!(
            "{}-net",
            std::fs::read_to_string(self.path("fleet-id"))
                .unwrap()
                .trim()
        );
        succeeds(Command::new("docker").args([
            "network",
            "disconnect",
            &net,
            &self.container(host),
        ]));
    }

    fn installed(&self, host: &str) -> String {
        self.sh(host, "dpkg-query -W -f='${Version}' fleetbook-demo")
    }

    /// "VERSION PID" of the running service, and systemd's MainPID.
    fn running(&self, host: &str) -> (String, String) {
        (
            self.sh(host, "cat /run/fleetbook-demo/running"),
            self.sh(host, "systemctl show -p MainPID --value fleetbook-demo"),
        )
    }

    /// `fleetbook ARGS... --state STATE [--ssh-config CONFIG]`.
    fn fleetbook(&self, args: &[&dyn AsRef<std::ffi::OsStr>]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_fleetbook"));
        for a in args {
            c.arg(a);
        }
        c.arg("--state")
            .arg(self.path("state"))
            .current_dir(root())
            .stdin(Stdio::null());
        if matches!(args[0].as_ref().to_str(), Some("run" | "resume")) {
            c.arg("--ssh-config").arg(self.path("ssh_config"));
        }
        c
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl DemoFleet {
    /// ssh processes (masters) still using this fleet's ssh config.
    fn ssh_left(&self) -> String {
        let out = Command::new("pgrep")
            .args(["-a", "-f"])
            .arg(self.path("ssh_config"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for DemoFleet {
    fn drop(&mut self) {
        take_down(self.dir.path());
    }
}

fn take_down(dir: &std::path::Path) {
    // A killed fleetbook leaves its SSH masters behind (until ControlPersist ends them):
    // a test must not, whatever happened in it.
    let _ = Command::new("pkill")
        .arg("-f")
        .arg(dir.join("ssh_config"))
        .output();
    let _ = Command::new(fleet_sh()).arg("down").arg(dir).output();
}

const HOSTS: [&str; 12] = [
    "ctl1", "ctl2", "ctl3", "cmp1", "cmp2", "cmp3", "cmp4", "cmp5", "cmp6", "st1", "st2", "st3",
];

/// Runs `cmd` and fails the test with its stderr unless it succeeds.
fn succeeds(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn run(cmd: &mut Command) -> (i32, String) {
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every host of `later` (re)started the demo service after every host of `first`, by the
/// hosts' own monotonic clocks (one kernel).
fn assert_started_after(f: &DemoFleet, first: &[&str], later: &[&str], what: &str) {
    let started = |h: &str| {
        f.sh(
            h,
            "systemctl show -p ActiveEnterTimestampMonotonic --value fleetbook-demo",
        )
        .parse::<u64>()
        .unwrap()
    };
    let last = first.iter().map(|h| started(h)).max().unwrap();
    assert!(later.iter().all(|h| started(h) > last), "{what}");
}

/// The most spans (start, end) that are open at once.
fn overlap(spans: &[(f64, f64)]) -> i32 {
    let mut ev: Vec<(f64, i32)> = spans.iter().flat_map(|&(a, b)| [(a, 1), (b, -1)]).collect();
    // At equal times an end comes before a start: touching spans do not overlap.
    ev.sort_by(|a, b| a.partial_cmp(b).unwrap());
    ev.iter()
        .scan(0, |c, e| {
            *c += e.1;
            Some(*c)
        })
        .max()
        .unwrap_or(0)
}

/// A host-side event log ("MICROSECONDS WORDS..." per line) as (seconds, words).
fn event_log(f: &DemoFleet, host: &str, path: &str) -> Vec<(f64, String)> {
    f.sh(host, &format!("cat {path}"))
        .lines()
        .map(|l| {
            let (t, rest) = l.split_once(' ').unwrap();
            (t.parse::<f64>().unwrap() / 1e6, rest.to_string())
        })
        .collect()
}

/// The time of the first event that is exactly `what`.
fn at(log: &[(f64, String)], what: &str) -> f64 {
    log.iter()
        .find(|e| e.1 == what)
        .unwrap_or_else(|| panic!("no event {what:?} in {log:?}"))
        .0
}

fn assert_upgraded(f: &DemoFleet, host: &str, version: &str) {
    assert_eq!(f.installed(host), version, "{host}: installed version");
    let (running, pid) = f.running(host);
    assert_eq!(
        running,
        format!("{version} {pid}"),
        "{host}: the running service is the new binary"
    );
}

/// runbooks/swh-debian-upgrade.rhai with a long-standing migration, on one fleet:
/// 1. cmp2's and cmp3's services cannot restart (a unit drop-in): with one worker at a time
///    and one worker failure tolerated, the run halts at cmp3: cmp1 is done, cmp2 and cmp3
///    failed, cmp4..cmp6 never started. Cron and puppet were off on every worker; no worker is
///    left with them off: the failed workers' `.always()` release step ran after their failure,
///    the `finally` covered the rest.
/// 2. fixed, resumed: cron and puppet are off again on a worker while it upgrades, and every
///    host ends on 2.0 with them back on.
fn swh_debian_upgrade_runs_for_real() {
    let (_one, f) = fleet();
    let workers = &HOSTS[3..9];
    let puppet_and_cron = |h: &str| {
        (
            f.sh(h, "test -e /var/cache/puppet/state/agent_disabled.lock && echo disabled || echo enabled"),
            f.sh(h, "systemctl is-active cron"),
        )
    };
    // The swh runbook's groups on the fleet's hosts, with the demo service as their service.
    let inv = f.path("swh.ini");
    let broken = ["cmp2", "cmp3"];
    for h in broken {
        f.sh(h, "mkdir -p /etc/systemd/system/fleetbook-demo.service.d && printf '[Service]\\nExecStartPost=/bin/false\\n' > /etc/systemd/system/fleetbook-demo.service.d/fail.conf && systemctl daemon-reload");
    }
    let out = f
        .fleetbook(&[
            &"run",
            &"runbooks/swh-debian-upgrade.rhai",
            &"-i",
            &inv,
            &"--yes",
            &"--param",
            &"migration=touch /root/migrated",
            &"--param",
            &"settle=2s",
            &"--events",
            &"jsonl",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let events = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "cmp3 halts the run:\n{stderr}");
    let state = |task: &str, state: &str| {
        events.lines().any(|l| {
            l.contains(&format!("\"task\":\"{task}\""))
                && l.contains(&format!("\"state\":\"{state}\""))
        })
    };
    for h in broken {
        assert!(
            state(&format!("host:{h}:restart-services"), "failed"),
            "{events}"
        );
        assert!(
            state(&format!("host:{h}:puppet-and-cron-on"), "ok"),
            "the release step ran on the failed worker {h}:\n{events}"
        );
    }
    assert!(state("finally:puppet-and-cron-back", "ok"), "{events}");
    for h in &workers[3..] {
        assert!(
            !state(&format!("host:{h}:update-index"), "running"),
            "{h} never started:\n{events}"
        );
        assert_eq!(f.installed(h), "1.0", "{h} never started");
    }
    for h in workers {
        assert_eq!(
            puppet_and_cron(h),
            ("enabled".to_string(), "active".to_string()),
            "{h}: a halted run leaves puppet enabled and cron running"
        );
    }

    // Fixed, resumed: while it runs, puppet must be off on the workers (its real lock file)
    // and cron stopped.
    for h in broken {
        f.sh(
            h,
            "rm -r /etc/systemd/system/fleetbook-demo.service.d && systemctl daemon-reload",
        );
    }
    let mut child = f
        .fleetbook(&[&"resume", &run_id(&f), &"--yes", &"--events", &"jsonl"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut saw_disabled = false;
    let events = BufReader::new(child.stdout.take().unwrap());
    for line in events.lines().map_while(Result::ok) {
        if !saw_disabled
            && line.contains("\"host:cmp6:update-index\"")
            && line.contains("\"running\"")
        {
            saw_disabled = puppet_and_cron("cmp6").0 == "disabled"
                && f.sh("cmp6", "systemctl is-active cron") != "active";
        }
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        saw_disabled,
        "puppet was disabled and cron stopped on cmp6 during its upgrade"
    );
    for h in HOSTS {
        assert_upgraded(&f, h, "2.0");
    }
    for h in workers {
        assert_eq!(
            puppet_and_cron(h),
            ("enabled".to_string(), "active".to_string()),
            "{h}: puppet and cron back"
        );
    }
    assert_eq!(
        f.sh("ctl1", "test -e /root/migrated && echo yes"),
        "yes",
        "the migration ran on the first rpc host"
    );
    // Role order, from the hosts' own clocks: every worker restarted its service after every rpc host.
    assert_started_after(
        &f,
        &HOSTS[0..3],
        workers,
        "a worker restarted before the rpc hosts were done",
    );
}

fn faults_mid_rollout() {
    let (_one, f) = fleet();
    let inv = f.path("hosts.ini");
    // A failing postinst on cmp4 (2.0 only): its upgrade fails and rollback restores 1.0.
    f.sh(
        "cmp4",
        "mkdir -p /etc/fleetbook-demo && echo 2.0 > /etc/fleetbook-demo/fail-postinst",
    );
    // cmp2 is killed while it upgrades: with max_failures 1 on compute, the run goes on...
    // but two failed computes exceed it, so the run halts; both faults are counted.
    let mut child = f
        .fleetbook(&[
            &"run",
            &"examples/fleet/demo-upgrade.rhai",
            &"-i",
            &inv,
            &"--yes",
            &"--events",
            &"jsonl",
            &"--connect-timeout",
            &"3s",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let events = BufReader::new(child.stdout.take().unwrap());
    let mut killed = false;
    let mut seen = Vec::new();
    for line in events.lines().map_while(Result::ok) {
        if !killed && line.contains("\"host:cmp2:upgrade\"") && line.contains("\"running\"") {
            let _ = Command::new("docker")
                .args(["kill", &f.container("cmp2")])
                .output();
            killed = true;
        }
        seen.push(line);
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(killed, "cmp2 reached its upgrade step");
    assert_eq!(
        out.status.code(),
        Some(3),
        "two failed computes halt the run:\n{stderr}"
    );
    let failed: Vec<&String> = seen
        .iter()
        .filter(|l| l.contains("\"failed\"") || l.contains("\"unreachable\""))
        .collect();
    assert!(
        failed.iter().any(|l| l.contains("cmp2")),
        "the killed host counts as failed: {failed:?}"
    );
    assert!(
        failed.iter().any(|l| l.contains("cmp4")),
        "the failing postinst fails cmp4: {failed:?}"
    );
    assert_upgraded(&f, "ctl1", "2.0");
    // cmp4 was rolled back to 1.0 by the runbook's undo, and runs it.
    assert_eq!(f.installed("cmp4"), "1.0", "cmp4 rolled back");
    assert!(
        seen.iter()
            .any(|l| l.contains("host:cmp4:upgrade") && l.contains("rolled_back")),
        "undo ran on cmp4"
    );

    // Fix both, resume: every host ends on 2.0 and nothing that finished runs twice.
    f.sh("cmp4", "rm -f /etc/fleetbook-demo/fail-postinst");
    let _ = Command::new("docker")
        .args(["start", &f.container("cmp2")])
        .output();
    for _ in 0..100 {
        if f.sh("cmp2", "systemctl is-active ssh") == "active" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let id = run_id(&f);
    let upgrades_before: Vec<String> = HOSTS
        .iter()
        .map(|h| {
            f.sh(
                h,
                "grep -c ' upgrade fleetbook-demo:all 1.0 2.0' /var/log/dpkg.log || true",
            )
        })
        .collect();
    let (code, stderr) = run(f
        .fleetbook(&[&"resume", &id, &"--yes"])
        .stderr(Stdio::piped()));
    assert_eq!(code, 0, "{stderr}");
    for (i, h) in HOSTS.iter().enumerate() {
        assert_upgraded(&f, h, "2.0");
        let after = f.sh(
            h,
            "grep -c ' upgrade fleetbook-demo:all 1.0 2.0' /var/log/dpkg.log || true",
        );
        if upgrades_before[i] == "1" && !["cmp2", "cmp4"].contains(h) {
            assert_eq!(after, "1", "{h} was upgraded before the halt and not again");
        }
    }
}

fn controller_killed_then_resumed() {
    let (_one, f) = fleet();
    let inv = f.path("hosts.ini");
    let mut child = f
        .fleetbook(&[
            &"run",
            &"examples/fleet/demo-upgrade.rhai",
            &"-i",
            &inv,
            &"--yes",
            &"--events",
            &"jsonl",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let events = BufReader::new(child.stdout.take().unwrap());
    for line in events.lines().map_while(Result::ok) {
        // Kill -9 while computes are mid-step.
        if line.contains("\"host:cmp2:upgrade\"") && line.contains("\"running\"") {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let runs = f
        .fleetbook(&[&"runs", &"--format", &"json"])
        .output()
        .unwrap();
    let runs: serde_json::Value = serde_json::from_slice(&runs.stdout).unwrap();
    assert_eq!(runs[0]["state"], "crashed");
    let id = runs[0]["id"].as_str().unwrap().to_string();
    // Every step of demo-upgrade is idempotent: the unknown ones are simply run again.
    let (code, stderr) = run(f
        .fleetbook(&[&"resume", &id, &"--yes"])
        .stderr(Stdio::piped()));
    assert_eq!(code, 0, "{stderr}");
    for h in HOSTS {
        assert_upgraded(&f, h, "2.0");
        assert_eq!(
            f.sh(
                h,
                "grep -c ' upgrade fleetbook-demo:all 1.0 2.0' /var/log/dpkg.log"
            ),
            "1",
            "{h} upgraded exactly once"
        );
        assert_eq!(f.sh(h, "test -e /var/cache/puppet/state/agent_disabled.lock && echo disabled || echo enabled"), "enabled");
    }
}

fn network_cut_fails_the_host_at_its_step_timeout() {
    let (_one, f) = fleet();
    let rb = f.write(
        "cut.rhai",
        "let rb = runbook(\"cut\");\nrb.limit(\"compute\", 3);\nrb.max_failures(\"compute\", 1);\n\
         rb.step(\"slow\", |h| h.run(`if [ ${h.name} = cmp2 ]; then sleep 30; else sleep 2; fi; touch /root/slow-done`)).roles([\"compute\"]).timeout(\"6s\");\nrb\n",
    );
    let started = std::time::Instant::now();
    let mut child = f
        .fleetbook(&[
            &"run",
            &rb,
            &"-i",
            &f.path("hosts.ini"),
            &"--yes",
            &"--events",
            &"jsonl",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let events = BufReader::new(child.stdout.take().unwrap());
    let mut seen = Vec::new();
    let mut cut = false;
    for line in events.lines().map_while(Result::ok) {
        if !cut && line.contains("\"host:cmp2:slow\"") && line.contains("\"running\"") {
            // Cut once the command runs on the host.
            for _ in 0..100 {
                if f.sh("cmp2", "ps -eo args | grep -cx 'sleep 30' || true") == "1" {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            f.cut_off("cmp2");
            cut = true;
        }
        seen.push(line);
    }
    let out = child.wait_with_output().unwrap();
    let elapsed = started.elapsed();
    assert_eq!(
        out.status.code(),
        Some(5),
        "one tolerated failure:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cmp2 = seen
        .iter()
        .find(|l| {
            l.contains("\"host:cmp2:slow\"")
                && (l.contains("\"failed\"") || l.contains("\"unreachable\""))
        })
        .expect("cmp2 failed");
    assert!(cmp2.contains("timed out"), "{cmp2}");
    assert!(
        elapsed < std::time::Duration::from_secs(60),
        "the cut host held the run for {elapsed:?}"
    );
    // The others finished; on the cut host the command was stopped by its timeout there.
    for h in ["cmp1", "cmp3", "cmp4", "cmp5", "cmp6"] {
        assert_eq!(f.sh(h, "test -e /root/slow-done && echo yes"), "yes", "{h}");
    }
    // timeout(1) on the host stopped the command at 6 s, cut off or not.
    assert_eq!(
        f.sh("cmp2", "ps -eo args | grep -cx 'sleep 30' || true"),
        "0",
        "the command still runs on cmp2"
    );
    assert_eq!(
        f.sh("cmp2", "test -e /root/slow-done && echo yes || echo no"),
        "no"
    );
}

/// Also the regression test for masters that ControlPersist ended while their host waited
/// for its turn (the computes sit idle for over a minute behind the controllers).
/// cmp6 already runs 2.0: it is skipped (its service is not restarted) but recorded; every
/// host's running version is recorded in jiocloud's keys (/running/versions/<host>/<version>).
fn jiocloud_rolling_converges_with_masterless_puppet() {
    let (_one, f) = fleet();
    f.sh("cmp6", "DEBIAN_FRONTEND=noninteractive apt-get install -y -q fleetbook-demo=2.0 >/dev/null && systemctl restart fleetbook-demo");
    let cmp6_pid = f.running("cmp6").1;
    let out = f
        .fleetbook(&[
            &"run",
            &"runbooks/jiocloud-rolling.rhai",
            &"-i",
            &f.path("hosts.ini"),
            &"--yes",
            &"--param",
            &"converge=/etc/puppet/code/fleet.pp",
            &"--param",
            &"health_url=file:///run/fleetbook-demo/running",
            &"--param",
            &"compute_service=fleetbook-demo",
            &"--param",
            &"version_cmd=cut -d' ' -f1 /run/fleetbook-demo/running",
            &"--param",
            &"version=2.0",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("cmp6 upgrading skipped"),
        "cmp6 already runs 2.0:\n{stderr}"
    );
    assert_eq!(f.running("cmp6").1, cmp6_pid, "cmp6 was left alone");
    assert_eq!(f.sh("ctl1", "consul kv get current_version"), "2.0");
    for h in HOSTS {
        // Puppet itself upgraded the package and restarted the service.
        assert_upgraded(&f, h, "2.0");
        assert_eq!(f.sh(h, "test -e /var/cache/puppet/state/agent_disabled.lock && echo disabled || echo enabled"), "enabled", "{h}");
        assert_eq!(
            f.sh("ctl1", &format!("consul kv get running/versions/{h}/2.0")),
            "2.0",
            "{h}'s running version is recorded"
        );
    }
    assert_eq!(
        f.sh("ctl1", "consul kv get config_state/enable_puppet/global"),
        "false",
        "global_disable_puppet: hosts are enabled one by one"
    );
    // compute after controller, from the hosts' own clocks.
    assert_started_after(
        &f,
        &HOSTS[0..3],
        &HOSTS[3..8],
        "a compute converged before every controller was done",
    );
}

/// runbooks/punch-patch.rhai on the shiva cluster (its default group): the jar is copied from
/// this machine (file::copy); cmp1 and cmp2 get the patch and their services say "using patch
/// : .." in the service log; cmp3's service loads no patch (a unit drop-in), so its check fails
/// and the run halts; the rollback covers the group (seed step 4): on every host of it the
/// patch directory is removed before the restart, so each runs again without the patch.
fn punch_patch_deploys_verifies_and_rolls_back() {
    let (_one, f) = fleet();
    let group = ["cmp1", "cmp2", "cmp3"];
    let inv = f.path("punch.ini");
    let jar = f.write(
        "punch-command-app-6.4.5-jar-with-dependencies.jar",
        "patched\n",
    );
    let patch = "/data/opt/punch-binaries-6.4.5/patch";
    let log = "/var/log/punchplatform/shiva/shiva-runner.log";
    f.sh("cmp3", "mkdir -p /etc/systemd/system/shiva-runner.service.d && printf '[Service]\\nEnvironment=SHIVA_IGNORE_PATCH=1\\n' > /etc/systemd/system/shiva-runner.service.d/ignore.conf && systemctl daemon-reload");
    let pid_before: Vec<String> = group
        .iter()
        .map(|h| f.sh(h, "systemctl show -p MainPID --value shiva-runner"))
        .collect();
    let (code, stderr) = run(f
        .fleetbook(&[
            &"run",
            &"runbooks/punch-patch.rhai",
            &"-i",
            &inv,
            &"--yes",
            &"--param",
            &format!("patch_jar={}", jar.display()),
            &"--param",
            &"restart_timeout=5s",
        ])
        .stderr(Stdio::piped()));
    assert_eq!(code, 3, "cmp3's check fails and halts the run:\n{stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("cmp3 check-patch-used failed") && l.contains("not met within 5s")),
        "{stderr}"
    );
    let pid = |h: &str| f.sh(h, "systemctl show -p MainPID --value shiva-runner");
    let using = |h: &str, pid: &str| {
        f.sh(
            h,
            &format!("grep -c 'pid={pid} using patch : {patch}/punch-command-app-6.4.5-jar-with-dependencies.jar' {log} || true"),
        )
    };
    for (i, h) in group.iter().enumerate() {
        // What ran before the rollback: on cmp1 and cmp2 a process that used the copied jar.
        let used: Vec<String> = f
            .sh(
                h,
                &format!("grep -o 'pid=[0-9]* using patch' {log} || true"),
            )
            .lines()
            .map(String::from)
            .collect();
        assert_eq!(
            used.len(),
            usize::from(i < 2),
            "{h}: the patched process said it uses the patch: {used:?}"
        );
        // Now, on every host of the group: no patch directory, a process started after the
        // removal that runs 6.4.5 and loads no patch.
        assert_eq!(
            f.sh(
                h,
                &format!("test -e {patch} && echo present || echo removed")
            ),
            "removed",
            "{h} rolled back"
        );
        let now = pid(h);
        assert_ne!(now, "0", "{h}: shiva-runner runs");
        assert_ne!(now, pid_before[i], "{h} restarted");
        assert!(
            used.iter().all(|u| u != &format!("pid={now} using patch")),
            "{h}: the process that runs now is not the patched one"
        );
        assert!(
            f.sh(h, &format!("ps -o args= -p {now}"))
                .contains("punch-binaries-6.4.5"),
            "{h} runs 6.4.5"
        );
        assert_eq!(using(h, &now), "0", "{h} runs without the patch");
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with(h) && l.contains("rolled_back")),
            "{h} rolled back:\n{stderr}"
        );
    }
    assert_eq!(
        f.sh(
            "st1",
            &format!("test -e {patch} && echo present || echo absent")
        ),
        "absent",
        "other groups untouched"
    );
}

fn demo_upgrade_limits_hold_on_the_hosts() {
    let (_one, f) = fleet();
    let out = f
        .fleetbook(&[
            &"run",
            &"examples/fleet/demo-upgrade.rhai",
            &"-i",
            &f.path("hosts.ini"),
            &"--yes",
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Each host's slot, from its own clock (containers share the kernel's).
    let span = |h: &str| -> (f64, f64) {
        let t = |f_: &str| {
            f.sh(h, &format!("cat /var/log/fleetbook-demo-upgrade.{f_}"))
                .parse::<f64>()
                .unwrap()
        };
        (t("start"), t("end"))
    };
    let spans = |hs: &[&str]| hs.iter().map(|h| span(h)).collect::<Vec<_>>();
    let (ctl, cmp) = (spans(&HOSTS[0..3]), spans(&HOSTS[3..9]));
    assert_eq!(overlap(&ctl), 1, "controllers one at a time: {ctl:?}");
    assert_eq!(
        overlap(&cmp),
        3,
        "three computes at a time, and the limit is reached: {cmp:?}"
    );
    assert!(
        overlap(&spans(&["st1", "st2"])) <= 1,
        "one host per replication group"
    );
    let ctl_done = ctl.iter().map(|s| s.1).fold(0.0, f64::max);
    assert!(
        cmp.iter()
            .chain(&spans(&HOSTS[9..12]))
            .all(|s| s.0 >= ctl_done),
        "compute and storage after every controller"
    );
    for h in HOSTS {
        assert_upgraded(&f, h, "2.0");
    }
}

fn run_id(f: &DemoFleet) -> String {
    let runs = f
        .fleetbook(&[&"runs", &"--format", &"json"])
        .output()
        .unwrap();
    let runs: serde_json::Value = serde_json::from_slice(&runs.stdout).unwrap();
    runs[0]["id"].as_str().unwrap().to_string()
}

/// runbooks/starlingx-patch.rhai against the fleet's StarlingX CLIs (sw-patch, fm, system over
/// the shared /opt/platform, a patch agent on every host), on one fleet:
/// 1. an alarm raised before the run: refused by the pre-check, nothing copied or uploaded;
/// 2. cleared, resumed; the patch is copied from this machine to the active controller
///    (file::copy); an alarm raised while ctl2 installs: the before-each-host check halts the
///    run before ctl3, which installs nothing, nor does any storage or worker host;
/// 3. cleared, resumed: the in-service patch is uploaded and applied once, installed host by
///    host from the active controller in the strategy's order and limits (from the patching
///    system's own log), Applied, every host runs 2.0;
/// 4. a reboot-required patch (storage and workers): each host locked, installed, unlocked,
///    and the next host of its lane starts only once the previous one is back from its reboot.
fn starlingx_patch_waits_for_alarms_then_patches_in_order() {
    let (_one, f) = fleet();
    let alarm = "/opt/platform/alarms/4b1d6c8e-6a52-4c53-9d0e-0a3b1f1c0d01";
    let raise = format!("echo '100.101|Platform CPU threshold exceeded|host=ctl2|major' > {alarm}");
    f.sh("ctl1", &raise);
    // The patches on this machine (from the image), copied by the runbook to /root/uploads.
    for id in ["FB_PATCH_0001", "FB_PATCH_0002"] {
        succeeds(
            Command::new("docker")
                .args([
                    "cp",
                    &format!("{}:/root/patches/{id}.patch", f.container("ctl1")),
                ])
                .arg(f.path(&format!("{id}.patch"))),
        );
    }
    let sha256 = |path: &std::path::Path| {
        let out = Command::new("sha256sum").arg(path).output().unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split(' ')
            .next()
            .unwrap()
            .to_string()
    };
    let patch_args = |id: &str| -> Vec<String> {
        [
            "run",
            "runbooks/starlingx-patch.rhai",
            "-i",
            f.path("starlingx.ini").to_str().unwrap(),
            "--yes",
            "--param",
            &format!("patch_id={id}"),
            "--param",
            &format!("patch_file=/root/uploads/{id}.patch"),
            "--param",
            &format!("patch_source={}", f.path(&format!("{id}.patch")).display()),
            "--param",
            "storage_apply_type=parallel",
            "--param",
            "worker_apply_type=parallel",
            "--param",
            "max_parallel_worker_hosts=3",
        ]
        .map(String::from)
        .to_vec()
    };
    let args = patch_args("FB_PATCH_0001");
    let args: Vec<&dyn AsRef<std::ffi::OsStr>> = args.iter().map(|a| a as _).collect();
    let (code, stderr) = run(f.fleetbook(&args).stderr(Stdio::piped()));
    assert_eq!(code, 3, "strict alarm restrictions halt the run:\n{stderr}");
    assert!(
        stderr.contains("1 alarm(s) raised before the strategy"),
        "{stderr}"
    );
    assert_eq!(
        f.sh("ctl1", "sw-patch query | tail -n +3"),
        "",
        "nothing was uploaded"
    );
    assert_eq!(
        f.sh("ctl1", "ls /root/uploads 2>/dev/null || true"),
        "",
        "nothing was copied"
    );
    for h in HOSTS {
        assert_eq!(f.installed(h), "1.0", "{h} untouched");
    }

    // Resumed; an alarm comes up while the controllers install.
    f.sh("ctl1", &format!("rm {alarm}"));
    let mut child = f
        .fleetbook(&[&"resume", &run_id(&f), &"--yes", &"--events", &"jsonl"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    for line in BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
    {
        if line.contains("\"host:ctl2:host-install\"") && line.contains("\"running\"") {
            f.sh("ctl1", &raise);
        }
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(3),
        "halted by the before-each-host check:\n{stderr}"
    );
    assert!(stderr.contains("1 alarm(s) raised before ctl3"), "{stderr}");
    assert_eq!(
        f.sh(
            "ctl1",
            "sha256sum /root/uploads/FB_PATCH_0001.patch | cut -d' ' -f1"
        ),
        sha256(&f.path("FB_PATCH_0001.patch")),
        "the patch was copied to the active controller"
    );
    assert_eq!(f.installed("ctl2"), "2.0", "ctl2 finished its install");
    for h in std::iter::once(&"ctl3").chain(&HOSTS[3..12]) {
        assert_eq!(
            f.installed(h),
            "1.0",
            "{h}: no host started after the alarm"
        );
    }
    assert!(
        event_log(&f, "ctl1", "/opt/platform/events.log")
            .iter()
            .all(|e| !e.1.starts_with("ctl3 install-begin")),
        "ctl3 installed nothing"
    );

    f.sh("ctl1", &format!("rm {alarm}"));
    let (code, stderr) = run(f
        .fleetbook(&[&"resume", &run_id(&f), &"--yes"])
        .stderr(Stdio::piped()));
    assert_eq!(code, 0, "{stderr}");
    for h in HOSTS {
        assert_upgraded(&f, h, "2.0");
    }
    assert!(
        f.sh("ctl1", "sw-patch query")
            .contains("FB_PATCH_0001        N   19.09    Applied"),
        "the patch is applied everywhere"
    );
    assert_eq!(
        f.sh(
            "ctl1",
            "sw-patch query-hosts | tail -n +3 | awk '{ print $3 }' | sort -u"
        ),
        "Yes",
        "every host is patch current"
    );

    let log = event_log(&f, "ctl1", "/opt/platform/events.log");
    let count = |what: &str| log.iter().filter(|e| e.1.ends_with(what)).count();
    assert_eq!(count("upload FB_PATCH_0001"), 1, "uploaded once: {log:?}");
    assert_eq!(count("apply FB_PATCH_0001"), 1, "applied once: {log:?}");
    assert_eq!(
        count("install-begin FB_PATCH_0001"),
        12,
        "installed once per host, by the host's own agent"
    );
    let span = |h: &str, id: &str| {
        (
            at(&log, &format!("{h} install-begin {id}")),
            at(&log, &format!("{h} install-end {id}")),
        )
    };
    let spans = |hs: &[&str]| {
        hs.iter()
            .map(|h| span(h, "FB_PATCH_0001"))
            .collect::<Vec<_>>()
    };
    let (ctl, st, wk) = (
        spans(&HOSTS[0..3]),
        spans(&HOSTS[9..12]),
        spans(&HOSTS[3..9]),
    );
    assert!(
        at(&log, "ctl1 apply FB_PATCH_0001") < ctl[0].0,
        "applied before any install"
    );
    assert_eq!(overlap(&ctl), 1, "controllers serial: {ctl:?}");
    assert!(
        overlap(&spans(&["st1", "st2"])) <= 1,
        "one storage host per replication group: {st:?}"
    );
    assert_eq!(overlap(&wk), 3, "three workers at a time, reached: {wk:?}");
    let last = |s: &[(f64, f64)]| s.iter().map(|x| x.1).fold(0.0, f64::max);
    let first = |s: &[(f64, f64)]| s.iter().map(|x| x.0).fold(f64::MAX, f64::min);
    assert!(last(&ctl) < first(&st), "storage after every controller");
    assert!(last(&st) < first(&wk), "workers after every storage host");
    assert_eq!(
        log.iter().filter(|e| e.1.contains(" host-lock ")).count(),
        0,
        "an in-service patch locks no host"
    );

    // 4. A reboot-required patch, for storage and workers; storage serial this time.
    let mut args = patch_args("FB_PATCH_0002");
    let i = args
        .iter()
        .position(|a| a == "storage_apply_type=parallel")
        .unwrap();
    args[i] = "storage_apply_type=serial".into();
    let args: Vec<&dyn AsRef<std::ffi::OsStr>> = args.iter().map(|a| a as _).collect();
    let (code, stderr) = run(f.fleetbook(&args).stderr(Stdio::piped()));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        f.sh("ctl1", "sw-patch query")
            .contains("FB_PATCH_0002        Y   19.09    Applied"),
        "{}",
        f.sh("ctl1", "sw-patch query")
    );
    let log = event_log(&f, "ctl1", "/opt/platform/events.log");
    let rr = &HOSTS[3..12];
    for h in rr {
        let (begin, end) = (
            at(&log, &format!("{h} install-begin FB_PATCH_0002")),
            at(&log, &format!("{h} install-end FB_PATCH_0002")),
        );
        let lock = at(&log, &format!("ctl1 host-lock {h}"));
        let unlock = at(&log, &format!("ctl1 host-unlock {h}"));
        let back = at(&log, &format!("{h} reboot-end"));
        assert!(
            lock < begin && end < unlock && unlock < back,
            "{h}: locked, installed, unlocked, rebooted: {log:?}"
        );
    }
    for pair in [["st1", "st2"], ["st2", "st3"]] {
        assert!(
            at(&log, &format!("{} reboot-end", pair[0]))
                < at(&log, &format!("ctl1 host-lock {}", pair[1])),
            "{} waited until {} was back from its reboot: {log:?}",
            pair[1],
            pair[0]
        );
    }
    let reboots: Vec<(f64, f64)> = rr
        .iter()
        .map(|h| {
            (
                at(&log, &format!("ctl1 host-lock {h}")),
                at(&log, &format!("{h} reboot-end")),
            )
        })
        .collect();
    assert_eq!(
        overlap(&reboots[0..6]),
        3,
        "three workers at a time, each until it is back"
    );
    assert!(
        log.iter().all(|e| !e.1.starts_with("ctl1 host-lock ctl")),
        "no controller was locked: the patch is not for them"
    );
    assert!(
        !f.sh("ctl1", ". /etc/platform/openrc && system host-list")
            .contains("| locked"),
        "every host is unlocked again"
    );
}

/// runbooks/maintenance-mode.rhai against the Stratos manager's REST API on ctl1 and the demo
/// service on the computes: autoscaling and autohealing off around the whole update, each
/// member updated to 2.0 and restarted inside its maintenance window (maintenance-restart, then
/// the cartridge agent's resume event), never two members of a cluster at once (from the
/// manager's own event log and the services' start times). cmp5 comes back on the wrong port: its health check fails at
/// the timeout, it stays in maintenance, the run goes on (one failure tolerated); once fixed,
/// `resume` takes it out of maintenance. Then a run in replace mode (refused by the manager:
/// no IaaS) halts, and its `finally` leaves autoscaling and autohealing on.
fn maintenance_mode_keeps_each_cluster_in_service() {
    let (_one, f) = fleet();
    let members = &HOSTS[3..9];
    f.sh("cmp5", "mkdir -p /etc/systemd/system/fleetbook-demo.service.d && printf '[Service]\\nEnvironment=FLEETBOOK_DEMO_PORT=9999\\n' > /etc/systemd/system/fleetbook-demo.service.d/port.conf && systemctl daemon-reload");
    let pids: Vec<String> = members.iter().map(|h| f.running(h).1).collect();
    let (code, stderr) = run(f
        .fleetbook(&[
            &"run",
            &"runbooks/maintenance-mode.rhai",
            &"-i",
            &f.path("stratos.ini"),
            &"--yes",
            &"--param",
            &"health_timeout=8s",
        ])
        .stderr(Stdio::piped()));
    assert_eq!(code, 5, "one tolerated member failure:\n{stderr}");
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("cmp5 health failed") && l.contains("not met within 8s")),
        "{stderr}"
    );
    let in_maintenance = || {
        f.sh(
            "ctl1",
            "grep -l '^maintenance=restart' /var/lib/stratos/state/* | xargs -rn1 basename",
        )
    };
    assert_eq!(
        in_maintenance(),
        "webapp%tomcat%cmp5",
        "the failed member stays in maintenance, the others are out"
    );

    let log = event_log(&f, "ctl1", "/var/log/stratos/events.log");
    let off = at(&log, "webapp operationalState=autohealing-off");
    let on = at(&log, "webapp operationalState=autoscaling-on");
    assert!(at(&log, "webapp operationalState=autoscaling-off") < off);
    assert!(on < at(&log, "webapp operationalState=autohealing-on"));
    let level = |h: &str| {
        format!(
            "webapp/{}/{h}",
            if ["cmp1", "cmp2", "cmp3"].contains(&h) {
                "php"
            } else {
                "tomcat"
            }
        )
    };
    let window = |h: &str| {
        (
            at(
                &log,
                &format!("{} operationalState=maintenance-restart", level(h)),
            ),
            at(&log, &format!("{} event=resume", level(h))),
        )
    };
    let done: Vec<&str> = members.iter().copied().filter(|h| *h != "cmp5").collect();
    for (i, h) in members.iter().enumerate() {
        if *h == "cmp5" {
            continue;
        }
        let (start, end) = window(h);
        let started = f
            .sh(h, "cat /run/fleetbook-demo/started")
            .parse::<f64>()
            .unwrap()
            / 1e6;
        assert!(
            off < start && start < started && started < end && end < on,
            "{h} restarted inside its maintenance window, autoscaling off around it: {log:?}"
        );
        assert_ne!(f.running(h).1, pids[i], "{h} was restarted");
        assert_upgraded(&f, h, "2.0");
    }
    let spans = |hs: &[&str]| hs.iter().map(|h| window(h)).collect::<Vec<_>>();
    assert_eq!(
        overlap(&spans(&done)),
        2,
        "one member per cluster at a time, both clusters at once"
    );
    assert_eq!(overlap(&spans(&["cmp1", "cmp2", "cmp3"])), 1, "php");
    assert!(
        at(
            &log,
            "webapp/tomcat/cmp5 operationalState=maintenance-restart"
        ) < at(
            &log,
            "webapp/tomcat/cmp6 operationalState=maintenance-restart"
        ),
        "cmp6 waited for cmp5's slot"
    );

    // Fix cmp5 (its unit, then restart it by hand) and resume: only its remaining steps run.
    f.sh("cmp5", "rm -r /etc/systemd/system/fleetbook-demo.service.d && systemctl daemon-reload && systemctl restart fleetbook-demo");
    let (code, stderr) = run(f
        .fleetbook(&[&"resume", &run_id(&f), &"--yes"])
        .stderr(Stdio::piped()));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(in_maintenance(), "");
    assert_eq!(f.ssh_left(), "", "fleetbook closed its SSH connections");
    let log = event_log(&f, "ctl1", "/var/log/stratos/events.log");
    assert_eq!(
        log.iter()
            .filter(|e| e.1.ends_with("operationalState=maintenance-restart"))
            .count(),
        6,
        "no member went through maintenance twice: {log:?}"
    );
    for h in members {
        assert_eq!(
            f.sh(h, "curl -fsS http://localhost:8080/health"),
            f.sh(h, "cat /run/fleetbook-demo/running"),
            "{h} serves"
        );
    }

    // A halted run: replace mode needs an IaaS, which this fleet has not (the manager answers
    // 409), so the first member of each cluster fails and the second failure halts the run.
    // Its `finally` turns autoscaling and autohealing back on.
    let (code, stderr) = run(f
        .fleetbook(&[
            &"run",
            &"runbooks/maintenance-mode.rhai",
            &"-i",
            &f.path("stratos.ini"),
            &"--yes",
            &"--param",
            &"mode=replace",
        ])
        .stderr(Stdio::piped()));
    assert_eq!(code, 3, "two failed members halt the run:\n{stderr}");
    assert!(stderr.contains("409"), "{stderr}");
    let state = f.sh(
        "ctl1",
        "curl -fsS 'http://localhost:9763/api/operationalState?application=webapp'",
    );
    assert!(
        state.contains("autoscaling=on") && state.contains("autohealing=on"),
        "a halted run leaves autoscaling and autohealing on: {state}"
    );
    let log = event_log(&f, "ctl1", "/var/log/stratos/events.log");
    let last = |what: &str| {
        log.iter()
            .rev()
            .find(|e| e.1 == what)
            .unwrap_or_else(|| panic!("no {what}: {log:?}"))
            .0
    };
    for k in ["autoscaling", "autohealing"] {
        assert!(
            last(&format!("webapp operationalState={k}-off"))
                < last(&format!("webapp operationalState={k}-on")),
            "{k} turned off, then on again at the end of the halted run: {log:?}"
        );
    }
    assert_eq!(
        log.iter()
            .filter(|e| e.1.ends_with("operationalState=autoscaling-off"))
            .count(),
        2,
        "the halted run did turn autoscaling off: {log:?}"
    );
}

/// `h.sudo` on hosts reached as an ordinary user: with passwordless sudo it runs as root; where
/// sudo wants a password it fails at once (never prompts) and says why.
fn sudo_without_a_password_or_a_clear_hint() {
    let (_one, f) = fleet();
    for (host, user, rule) in [
        ("cmp1", "ops", "ops ALL=(ALL) ALL"),
        ("cmp2", "ops", "ops ALL=(ALL) NOPASSWD: ALL"),
    ] {
        f.sh(
            host,
            &format!(
                "useradd -m {user} && echo '{user}:not-used-by-fleetbook' | chpasswd && \
                 echo '{rule}' > /etc/sudoers.d/{user} && chmod 440 /etc/sudoers.d/{user} && \
                 install -d -o {user} -m 700 /home/{user}/.ssh && \
                 install -o {user} -m 600 /root/.ssh/authorized_keys /home/{user}/.ssh/"
            ),
        );
    }
    let hosts = std::fs::read_to_string(f.path("hosts.ini")).unwrap();
    let line = |h: &str| {
        hosts
            .lines()
            .find(|l| l.starts_with(&format!("{h} ")))
            .unwrap()
            .to_string()
    };
    let inv = f.write(
        "ops.ini",
        &format!(
            "[compute]\n{} ansible_user=ops\n{} ansible_user=ops\n",
            line("cmp1"),
            line("cmp2")
        ),
    );
    let rb = f.write(
        "whoami.rhai",
        "let rb = runbook(\"whoami\");\nrb.step(\"as-root\", |h| h.sudo(\"id -u > /tmp/whoami\"));\nrb\n",
    );
    let (code, stderr) = run(f
        .fleetbook(&[&"run", &rb, &"-i", &inv, &"--yes"])
        .stderr(Stdio::piped()));
    assert_eq!(code, 3, "cmp1 fails, and max_failures is 0:\n{stderr}");
    assert!(
        stderr.contains("hint: sudo needs a password on this host"),
        "{stderr}"
    );
    assert_eq!(f.sh("cmp2", "cat /tmp/whoami"), "0", "cmp2 ran it as root");
    assert_eq!(
        f.sh("cmp1", "test -e /tmp/whoami && echo ran || echo not-run"),
        "not-run"
    );
    become_step_that_ignores_term_is_killed(&f, &line("cmp2"));
    become_step_past_its_timeout_is_killed(&f, &line("cmp2"));
}

/// Ctrl-C twice kills a `become` step that ignores TERM: the kill's watcher runs as the
/// login user (ops), who cannot KILL root's processes, so it signals through sudo. HUP is
/// ignored too, so that nothing but the KILL can be what stops it.
fn become_step_that_ignores_term_is_killed(f: &DemoFleet, host_line: &str) {
    let child = start_stubborn_root_step(f, host_line, 307, "");
    for _ in 0..2 {
        // SAFETY: a signal to the child this test started.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        root_sleeps_end(f, "cmp2", 307, std::time::Duration::from_secs(10)),
        "root's step outlived the kill:\n{stderr}"
    );
}

// Stop 28's note: a `become` step's `timeout(1)` runs as the login user, outside sudo, so its
// KILL reached sudo but not the root command that ignored the TERM. On a live link the kill
// watcher (through sudo) stops such a command anyway; on a cut one, only the host acts.
/// A `become` step past its timeout is stopped on the host, TERM and HUP ignored, even when
/// the link to the host is cut.
fn become_step_past_its_timeout_is_killed(f: &DemoFleet, host_line: &str) {
    let child = start_stubborn_root_step(f, host_line, 308, ".timeout(\"5s\")");
    f.cut_off("cmp2");
    // Docker takes the host's own name out of its /etc/hosts with the network, and sudo then
    // waits on DNS for it; a Debian host keeps it there (127.0.1.1).
    f.sh("cmp2", "echo '127.0.1.1 cmp2' >> /etc/hosts");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "the step times out:\n{stderr}");
    // No answer to the kill request: the link was cut before it, so the host acted alone.
    assert!(
        stderr.contains("timed out after 5s; the host did not answer"),
        "{stderr}"
    );
    // On the host: `timeout -k 5 5` TERMs at 5 s and KILLs sudo at 10 s; the wrapper then
    // sends the rest of the group TERM, and KILL up to 5 s later.
    assert!(
        root_sleeps_end(f, "cmp2", 308, std::time::Duration::from_secs(20)),
        "root's step outlived its timeout on the cut-off host:\n{stderr}"
    );
}

/// Starts `fleetbook run` of one step on cmp2 as user ops, `h.sudo` of a `sleep SECS` that
/// ignores TERM and HUP (`options` after the step: `.timeout("3s")`), and waits until root's
/// `sleep SECS` runs there.
fn start_stubborn_root_step(
    f: &DemoFleet,
    host_line: &str,
    secs: u32,
    options: &str,
) -> std::process::Child {
    let inv = f.write(
        &format!("ops-cmp2-{secs}.ini"),
        &format!("[compute]\n{host_line} ansible_user=ops\n"),
    );
    let rb = f.write(
        &format!("stubborn-{secs}.rhai"),
        &format!(
            "let rb = runbook(\"stubborn\");\n\
             rb.step(\"hold\", |h| h.sudo(\"trap '' TERM HUP; sleep {secs}\")){options};\nrb\n"
        ),
    );
    let child = f
        .fleetbook(&[&"run", &rb, &"-i", &inv, &"--yes"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while root_sleeps(f, "cmp2", secs) != "1" {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "the step never started as root"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    child
}

/// Root's processes on `host` whose command line is `sleep SECS`, counted.
fn root_sleeps(f: &DemoFleet, host: &str, secs: u32) -> String {
    f.sh(
        host,
        &format!("ps -o user=,args= -C sleep | grep -c '^root .*sleep {secs}$' || true"),
    )
}

/// Waits up to `limit` for `host` to have no root `sleep SECS` left, and says whether it has
/// none.
fn root_sleeps_end(f: &DemoFleet, host: &str, secs: u32, limit: std::time::Duration) -> bool {
    let start = std::time::Instant::now();
    while root_sleeps(f, host, secs) != "0" && start.elapsed() < limit {
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    root_sleeps(f, host, secs) == "0"
}

// The README's fleet commands were never run: a documented example could rot unseen.
/// Every documented command on the demo fleet (README.md, docs/*.md), as typed, in the docs
/// sandbox (tests/docs.rs): `fleet.sh up demo-fleet` brings the fleet up, the commands after
/// it run on it, and each document's fleet goes down at its end, whatever happened.
// Issue 19: `h.reboot` on a container host (systemd as PID 1, `--restart unless-stopped`):
// the host goes down, comes back at the same address, and the step goes on after it on a
// fresh connection.
fn reboot_brings_a_container_host_back_and_the_step_goes_on() {
    let (_one, f) = fleet();
    let rb = f.write(
        "reboot.rhai",
        r#"let rb = runbook("reboot");
rb.step("reboot", |h| {
    h.run("sed 's/^.*) //' /proc/1/stat | cut -d' ' -f20 > /root/pid1-before");
    h.reboot("3m");
    h.run("sed 's/^.*) //' /proc/1/stat | cut -d' ' -f20 > /root/pid1-after");
}).roles(["controller"]);
rb
"#,
    );
    let (code, stderr) = run(&mut f.fleetbook(&[
        &"run",
        &rb,
        &"-i",
        &f.path("hosts.ini"),
        &"--limit",
        &"ctl1",
        &"--yes",
    ]));
    assert_eq!(code, 0, "{stderr}");
    let restarts = Command::new("docker")
        .args(["inspect", "-f", "{{.RestartCount}}", &f.container("ctl1")])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&restarts.stdout).trim(),
        "1",
        "ctl1 rebooted once"
    );
    let (before, after) = (
        f.sh("ctl1", "cat /root/pid1-before"),
        f.sh("ctl1", "cat /root/pid1-after"),
    );
    assert!(!before.is_empty() && !after.is_empty(), "{stderr}");
    assert_ne!(
        before, after,
        "the command after the reboot ran in the new boot"
    );
    assert_eq!(
        f.sh("ctl2", "test -e /root/pid1-before && echo yes"),
        "",
        "only ctl1"
    );
}

fn documented_fleet_commands_run() {
    let _one = fleet_turn();
    let owner = std::process::id().to_string();
    let mut ran = 0;
    for doc in crate::docs::documents() {
        let commands: Vec<_> = crate::docs::doc_commands(&doc)
            .into_iter()
            .filter(|c| c.needs_fleet())
            .collect();
        if commands.is_empty() {
            continue;
        }
        let sandbox = crate::docs::Sandbox::new();
        let _down = TakeDown(sandbox.path().join("demo-fleet"));
        for cmd in &commands {
            let (code, out) = sandbox.shell(&cmd.typed(), &[("FLEETBOOK_FLEET_OWNER", &owner)]);
            assert_eq!(
                code, cmd.expect,
                "{}: `{}` exited {code}, the docs say {}:\n{out}",
                cmd.at, cmd.text, cmd.expect
            );
            ran += 1;
        }
    }
    assert!(ran >= 5, "only {ran} documented fleet commands found");
}

struct TakeDown(PathBuf);

impl Drop for TakeDown {
    fn drop(&mut self) {
        take_down(&self.0);
    }
}
