//! Runs whose state lives in etcd (`--state etcd://...`), against real etcd processes this
//! test starts (`Etcd`, shared with the engine's conformance tests), on hosts of this machine
//! (`ansible_connection=local`). What the hosts did is read from what their commands wrote,
//! with the hosts' own timestamps.

use crate::journal::{finish_within, kill9, local, wait_for, Local};
use crate::sshd::{intervals, max_overlap, Fleet};
use crate::support::fleetbook;
use fleetbook_engine::store::etcd::harness::Etcd;
use fleetbook_engine::store::etcd::EtcdStore;
use fleetbook_engine::store::{EtcdAccess, RunStore};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The lease TTL of these tests' controllers, in seconds.
const TTL: f64 = 3.0;

/// A step body that logs `start HOST T`, sleeps `secs`, then logs `end HOST T`, in the
/// shared log.
fn work(secs: f64) -> String {
    format!(
        "h.run(`l=${{h.var(\"dir\")}}/../log; echo \"start ${{h.name}} $(date +%s.%N)\" >> $l; sleep {secs}; echo \"end ${{h.name}} $(date +%s.%N)\" >> $l`)"
    )
}

/// (host, start, end) of each step the hosts ran to its end, from the hosts' own clocks.
fn ran(l: &Local) -> Vec<(String, f64, f64)> {
    let text = std::fs::read_to_string(l.dir.path().join("log")).unwrap_or_default();
    let at = |kind: &str, host: &str| {
        text.lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|w| w[0] == kind && w[1] == host)
            .map(|w| w[2].parse::<f64>().unwrap())
    };
    let mut hosts: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    hosts.sort();
    hosts.dedup();
    hosts
        .into_iter()
        .filter_map(|h| Some((h.to_string(), at("start", h)?, at("end", h)?)))
        .collect()
}

/// Hosts whose step started, by the hosts' own log.
fn starts(l: &Local) -> Vec<(String, f64)> {
    std::fs::read_to_string(l.dir.path().join("log"))
        .unwrap_or_default()
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|w| w[0] == "start")
        .map(|w| (w[1].to_string(), w[2].parse().unwrap()))
        .collect()
}

fn hosts_done(l: &Local) -> Vec<String> {
    let mut h: Vec<String> = ran(l).into_iter().map(|(h, _, _)| h).collect();
    h.sort();
    h.dedup();
    h
}

fn now() -> f64 {
    fleetbook_engine::clock::At::now().unix()
}

/// `fleetbook CMD` on `l`'s inventory with its state in `etcd` under `prefix`, run in
/// `l`'s directory with its own user state directory (`xdg/`), where output logs go.
fn command(l: &Local, cmd: &str, extra: &[&str]) -> Command {
    let mut c = l.command(cmd, extra);
    c.env("FLEETBOOK_ETCD_TTL", format!("{TTL}s"))
        .env("XDG_STATE_HOME", l.dir.path().join("xdg"))
        .current_dir(l.dir.path());
    c
}

/// Entries of `dir` named like an etcd URL: where output logs went when the URL was
/// taken for a directory.
fn url_named(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("etcd:"))
        .collect()
}

fn spawn(l: &Local, cmd: &str, extra: &[&str]) -> Child {
    spawned(command(l, cmd, extra))
}

fn spawned(mut c: Command) -> Child {
    c.stdout(Stdio::null())
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
    let mut l = local(&[("web", &names)], &one_at_a_time(2.0));
    on_etcd(&mut l, &etcd);
    let child = spawn(&l, "run", &["--yes"]);
    // The second host in flight: its end cannot be recorded.
    wait_for(|| starts(&l).len() == 2, "a second host started");
    etcd.pause(0);
    let paused = now();
    let (code, stderr) = finish_within(child, 60, "the controller that lost its lease");
    etcd.resume(0);
    assert_eq!(code, 7, "{stderr}");
    assert!(stderr.contains("the fleet lock was lost"), "{stderr}");
    assert!(
        stderr.contains("tasks whose outcome the journal lacks: host:w02:work"),
        "the unknown task is named: {stderr}"
    );
    let late: Vec<_> = starts(&l)
        .into_iter()
        .filter(|(_, start)| *start > paused + TTL)
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
    // Output logs go under the user's state directory, never under a directory named
    // after the URL in the working directory.
    let logs = l.dir.path().join("xdg/fleetbook/output").join(&id);
    let log = std::fs::read_to_string(logs.join("w01.log")).unwrap_or_default();
    assert!(log.contains("start w01"), "{}: {log:?}", logs.display());
    assert_eq!(url_named(l.dir.path()), Vec::<String>::new());
}

/// The sshd fleet of the two-controller tests: controllers `c01..c06` (limit 2) before
/// workers `w07..w30` (limit 3), at most 4 hosts at once in all. Each host logs the start
/// and end of its one step in its own directory.
fn shared_fleet() -> (Fleet, PathBuf, PathBuf) {
    let names: Vec<String> = (1..=30)
        .map(|i| format!("{}{i:02}", if i <= 6 { "c" } else { "w" }))
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let fleet = Fleet::start(&names);
    let inv = fleet.inventory(&[("ctl", &names[..6]), ("web", &names[6..])], "");
    let rb = fleet.file(
        "rb.rhai",
        "let rb = runbook(\"t\");\nrb.order([\"ctl\", \"web\"]);\nrb.limit(\"ctl\", 2);\nrb.limit(\"web\", 3);\nrb.limit_total(4);\n\
         rb.step(\"upgrade\", |h| h.run(`d=${h.var(\"dir\")}; while [ ! -e $d/../go ]; do sleep 0.1; done; [ -e $d/upgraded ] && exit 0; echo \"$(date +%s.%N) start\" >> $d/log; sleep 1; touch $d/upgraded; echo \"$(date +%s.%N) end\" >> $d/log`)).idempotent(true);\nrb\n",
    );
    (fleet, inv, rb)
}

/// A controller, and its standard error as read so far (read as it comes, so that a
/// test can wait for a line and the pipe never fills).
fn controller(fleet: &Fleet, state: &str, args: &[&str]) -> (Child, Arc<Mutex<String>>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fleetbook"))
        .args(args)
        .args(["--yes", "--events", "jsonl", "--ssh-config"])
        .arg(&fleet.ssh_config)
        .args(["--state", state])
        .env("FLEETBOOK_ETCD_TTL", format!("{TTL}s"))
        .env("XDG_STATE_HOME", fleet.dir.path().join("xdg"))
        .current_dir(fleet.dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = Arc::new(Mutex::new(String::new()));
    let (mut pipe, sink) = (child.stderr.take().unwrap(), err.clone());
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = std::io::Read::read(&mut pipe, &mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    (child, err)
}

/// Lets the hosts' steps go on once `joined` says the controller joined run `id`.
fn go_when_joined(fleet: &Fleet, joined: &Mutex<String>, id: &str) {
    let line = format!("run {id} (journal");
    wait_for(
        || joined.lock().unwrap().contains(&line),
        "the second controller to join",
    );
    std::fs::write(fleet.dir.path().join("go"), "").unwrap();
}

/// The run id, once `controller` has recorded its run; its standard error if it ended first.
fn run_id_of(state: &str, controller: &mut Child, err: &Mutex<String>) -> String {
    // As long as `wait_for` waits.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(Some(status)) = controller.try_wait() {
            panic!("the controller ended ({status}): {}", err.lock().unwrap());
        }
        let id = recorded_run(state);
        if !id.is_empty() {
            return id;
        }
        assert!(
            Instant::now() < deadline,
            "the controller recorded no run in 120 s; its standard error so far: {}",
            err.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The id of the run `state` records first, or "".
fn recorded_run(state: &str) -> String {
    let out = fleetbook(&["runs", "--format", "json", "--state", state]).run();
    let runs: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_default();
    runs[0]["id"].as_str().unwrap_or_default().to_string()
}

/// The run id, once the run is recorded.
fn run_id(state: &str) -> String {
    let mut id = String::new();
    wait_for(
        || {
            id = recorded_run(state);
            !id.is_empty()
        },
        "the run to be recorded",
    );
    id
}

/// Hosts whose step started, by the hosts' own logs.
fn started(fleet: &Fleet) -> usize {
    fleet
        .hosts
        .iter()
        .filter(|h| h.dir.join("log").exists())
        .count()
}

/// Every host ran its step exactly once (start and end counted from its log); no limit
/// was exceeded across controllers; no worker started before every controller host ended.
fn check_hosts(fleet: &Fleet) {
    let mut all = Vec::new();
    let (mut ctl, mut web) = (Vec::new(), Vec::new());
    for h in &fleet.hosts {
        let text = std::fs::read_to_string(h.dir.join("log")).unwrap_or_default();
        let starts = text.matches(" start").count();
        let ends = text.matches(" end").count();
        assert_eq!((starts, ends), (1, 1), "{}: {text}", h.name);
        let span = intervals(&h.dir.join("log"))[0];
        all.push(span);
        if h.name.starts_with('c') {
            &mut ctl
        } else {
            &mut web
        }
        .push(span);
    }
    assert!(max_overlap(&ctl) <= 2, "ctl limit 2 exceeded: {ctl:?}");
    assert!(max_overlap(&web) <= 3, "web limit 3 exceeded: {web:?}");
    assert!(max_overlap(&all) <= 4, "total limit 4 exceeded");
    let last_ctl = ctl.iter().map(|s| s.1).fold(0.0, f64::max);
    let first_web = web.iter().map(|s| s.0).fold(f64::MAX, f64::min);
    assert!(
        last_ctl <= first_web,
        "a web host started before the ctl hosts ended"
    );
}

/// Hosts a controller ran, from its event stream.
fn hosts_run_by(stdout: &[u8]) -> Vec<String> {
    let mut hosts: Vec<String> = String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["state"] == "running")
        .filter_map(|e| e["host"].as_str().map(str::to_string))
        .collect();
    hosts.sort();
    hosts.dedup();
    hosts
}

/// Two controllers on one run: the second joins with `run --join`; together they upgrade
/// every host once, within the limits and in order.
#[test]
fn two_controllers_share_one_run_within_its_limits() {
    let etcd = Etcd::single();
    let (fleet, inv, rb) = shared_fleet();
    let state = etcd.url("fleetbook");
    let (rb, inv) = (rb.display().to_string(), inv.display().to_string());
    let (a, a_err) = controller(&fleet, &state, &["run", &rb, "-i", &inv]);
    let id = run_id(&state);
    let (b, b_err) = controller(&fleet, &state, &["run", "--join", &id]);
    go_when_joined(&fleet, &b_err, &id);
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let (a_err, b_err) = (a_err.lock().unwrap().clone(), b_err.lock().unwrap().clone());
    assert_eq!(a.status.code(), Some(0), "{a_err}");
    assert_eq!(b.status.code(), Some(0), "{b_err}");
    check_hosts(&fleet);
    let (by_a, by_b) = (hosts_run_by(&a.stdout), hosts_run_by(&b.stdout));
    assert_eq!(by_a.len() + by_b.len(), 30, "{by_a:?} {by_b:?}");
    assert!(
        by_a.iter().all(|h| !by_b.contains(h)),
        "a host ran on both controllers: {by_a:?} {by_b:?}"
    );
    // A controller that frees a slot leaves it to the others a moment, and a waiting one
    // hears of it at once: the joined controller gets hosts too.
    assert!(
        !by_a.is_empty() && !by_b.is_empty(),
        "one controller ran every host: {by_a:?} {by_b:?}"
    );
    let status = fleetbook(&["status", &id, "--format", "json", "--state", &state]).run();
    assert!(status.stdout.contains("\"succeeded\""), "{}", status.stdout);
}

/// kill -9 of one of two controllers mid-run: its hosts come back when its lease expires,
/// the other controller takes them, and every host is upgraded exactly once.
#[test]
fn when_one_of_two_controllers_dies_the_other_finishes_the_run() {
    let etcd = Etcd::single();
    let (fleet, inv, rb) = shared_fleet();
    let state = etcd.url("fleetbook");
    let (rb, inv) = (rb.display().to_string(), inv.display().to_string());
    let (mut a, a_err) = controller(&fleet, &state, &["run", &rb, "-i", &inv]);
    let id = run_id_of(&state, &mut a, &a_err);
    // `resume` of a run that is running joins it. The step is idempotent (it checks on the
    // host whether it is done), so one the dead controller left running is run again.
    let (b, b_err) = controller(&fleet, &state, &["resume", &id]);
    go_when_joined(&fleet, &b_err, &id);
    wait_for(|| started(&fleet) >= 10, "ten hosts started");
    kill9(&mut a);
    // Once the dead controller's lease expires, the one left takes the fleet lock over:
    // no other rollout may start on the fleet while it finishes the run.
    let store = EtcdStore::open(&state, &EtcdAccess::default()).unwrap();
    let b_pid = b.id() as i64;
    wait_for(
        || {
            let locks = store.locks().unwrap();
            locks.iter().any(|l| l.run_id == id && l.pid == b_pid)
        },
        "the joined controller to take the fleet lock over",
    );
    let other = fleetbook(&["run", &rb, "-i", &inv, "--yes", "--state", &state])
        .env("FLEETBOOK_ETCD_TTL", &format!("{TTL}s"))
        .run();
    assert_eq!(other.code, 6, "a second rollout started: {}", other.stderr);
    assert!(other.stderr.contains("locked"), "{}", other.stderr);
    let b = b.wait_with_output().unwrap();
    let err = b_err.lock().unwrap().clone();
    assert_eq!(b.status.code(), Some(0), "{err}");
    check_hosts(&fleet);
    let status = fleetbook(&["status", &id, "--format", "json", "--state", &state]).run();
    assert!(status.stdout.contains("\"succeeded\""), "{}", status.stdout);
}

/// A 3-member cluster loses one member mid-run: the others keep a quorum, the client
/// retries on them, and the run goes on to its end.
#[test]
fn a_run_goes_on_when_one_of_three_members_is_lost() {
    let mut etcd = Etcd::cluster(3);
    let names = hosts(6);
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut l = local(&[("web", &names)], &one_at_a_time(1.0));
    on_etcd(&mut l, &etcd);
    // The default TTL (10s), not these tests' 3s: this test is about a lost member, not the
    // TTL. Once, in a full run beside a profiler, the 3s lease was not renewed in time while
    // three members on two loaded cores lost one (the controller then stopped, as it must).
    let mut run = command(&l, "run", &["--yes"]);
    run.env_remove("FLEETBOOK_ETCD_TTL");
    let child = spawned(run);
    wait_for(|| starts(&l).len() == 2, "a second host started");
    etcd.kill(0);
    let (code, stderr) = finish_within(child, 120, "the run on two members");
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(hosts_done(&l), names);
    assert_eq!(starts(&l).len(), names.len(), "each host ran once");
}

/// Two of three members stop (no quorum): the controller starts no task after one TTL and
/// exits with the lock-lost status; nothing recorded is lost, and once the members are back
/// a resume finishes the run.
#[test]
fn without_a_quorum_the_controller_stops_within_one_ttl_and_nothing_is_lost() {
    let etcd = Etcd::cluster(3);
    let names = hosts(6);
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut l = local(&[("web", &names)], &one_at_a_time(1.0));
    on_etcd(&mut l, &etcd);
    let child = spawn(&l, "run", &["--yes"]);
    wait_for(|| starts(&l).len() == 2, "a second host started");
    etcd.pause(1);
    etcd.pause(2);
    let paused = now();
    let (code, stderr) = finish_within(child, 120, "the run without a quorum");
    etcd.resume(1);
    etcd.resume(2);
    assert_eq!(code, 7, "{stderr}");
    assert!(stderr.contains("the fleet lock was lost"), "{stderr}");
    let late: Vec<_> = starts(&l)
        .into_iter()
        .filter(|(_, start)| *start > paused + TTL)
        .collect();
    assert!(late.is_empty(), "tasks started after one TTL: {late:?}");
    // Nothing lost: every host that ended its step is recorded ok, or named unknown.
    let id = l.run_id();
    let status = l.cmd("status", &[&id, "--format", "json"]);
    let st: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    for (host, _, _) in ran(&l) {
        let task = format!("host:{host}:work");
        let recorded = st["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["host"] == host.as_str() && h["state"] != "pending");
        assert!(
            recorded || stderr.contains(&task),
            "{host} ran but is neither recorded nor named unknown: {stderr}\n{}",
            status.stdout
        );
    }
    let out = command(&l, "resume", &[&id, "--yes", "--retry-unknown"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(hosts_done(&l), names);
}

/// Scale: 1,000 hosts over the local transport, three controllers (one starts the run, two
/// join) on a 3-member cluster, at most 20 hosts at once: every host's step runs exactly
/// once, and the hosts' own clocks show no more than 20 at a time.
#[test]
fn three_controllers_run_a_thousand_hosts_each_once_within_the_limit() {
    let etcd = Etcd::cluster(3);
    let names = hosts(1000)
        .into_iter()
        .map(|h| h.replace('w', "n"))
        .collect::<Vec<_>>();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut l = local(
        &[("web", &names)],
        "let rb = runbook(\"t\");\nrb.limit(\"web\", 20);\n\
         rb.step(\"mark\", |h| h.run(`l=${h.var(\"dir\")}/log; echo \"$(date +%s.%N) start\" >> $l; echo \"$(date +%s.%N) end\" >> $l`));\nrb\n",
    );
    on_etcd(&mut l, &etcd);
    let state = l.state.display().to_string();
    // Each controller's recap lists 1,000 hosts: to a file, not a pipe nobody reads yet.
    let controller = |name: &str, args: &[&str]| {
        let err = std::fs::File::create(l.dir.path().join(name)).unwrap();
        let mut c = command(&l, "run", args);
        if args.contains(&"--join") {
            c = Command::new(env!("CARGO_BIN_EXE_fleetbook"));
            c.arg("run").args(args).args(["--state", &state]);
            c.env("FLEETBOOK_ETCD_TTL", format!("{TTL}s"))
                .stdin(Stdio::null());
        }
        c.stdout(Stdio::null()).stderr(err).spawn().unwrap()
    };
    let mut all = vec![controller("a.err", &["--yes"])];
    let id = run_id(&state);
    all.push(controller("b.err", &["--join", &id, "--yes"]));
    all.push(controller("c.err", &["--join", &id, "--yes"]));
    for (c, name) in all.into_iter().zip(["a.err", "b.err", "c.err"]) {
        let (code, _) = finish_within(c, 900, "a controller");
        let stderr = std::fs::read_to_string(l.dir.path().join(name)).unwrap_or_default();
        assert_eq!(code, 0, "{name}: {stderr}");
    }
    let mut spans = Vec::new();
    for h in &names {
        let log = l.dir.path().join(h).join("log");
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert_eq!(
            (text.matches(" start").count(), text.matches(" end").count()),
            (1, 1),
            "{h}: {text}"
        );
        spans.extend(intervals(&log));
    }
    assert!(max_overlap(&spans) <= 20, "more than 20 hosts at once");
}

/// A command that waits for the file `go` beside the hosts.
fn gate() -> &'static str {
    "h.run(`while [ ! -e ${h.var(\"dir\")}/../go ]; do sleep 0.1; done`)"
}

/// A step body that waits for `go`, then logs and sleeps like [`work`].
fn gated_work(secs: f64) -> String {
    format!("{{ {}; {} }}", gate(), work(secs))
}

/// A controller of `l`'s run (`run` with the runbook, or `run --join ID`), its events on
/// standard output and its standard error in the file `name` of `l`'s directory.
fn local_controller(l: &Local, name: &str, extra: &[&str]) -> Child {
    let err = std::fs::File::create(l.dir.path().join(name)).unwrap();
    let mut args = vec!["--yes", "--events", "jsonl"];
    args.extend(extra);
    let joining = extra.contains(&"--join");
    let mut c = command(l, "run", &args);
    if joining {
        // `Local::command` adds the runbook and inventory to `run`: a joiner has its own.
        c = Command::new(env!("CARGO_BIN_EXE_fleetbook"));
        c.arg("run").args(&args).arg("--state").arg(&l.state);
        c.env("FLEETBOOK_ETCD_TTL", format!("{TTL}s"))
            .env("XDG_STATE_HOME", l.dir.path().join("xdg"))
            .current_dir(l.dir.path())
            .stdin(Stdio::null());
    }
    c.stdout(Stdio::piped()).stderr(err).spawn().unwrap()
}

/// Runs `l`'s run with two controllers (the second joins, then the gate opens), both ending
/// well, every one of the `hosts` run once: each host's span by its own clock, and what each
/// controller printed.
fn two_controllers_run(
    l: &Local,
    hosts: usize,
) -> (Vec<(f64, f64)>, std::process::Output, std::process::Output) {
    let state = l.state.display().to_string();
    let a = local_controller(l, "a.err", &[]);
    let id = run_id(&state);
    let b = local_controller(l, "b.err", &["--join", &id]);
    let line = format!("run {id} (journal");
    wait_for(
        || stderr_of(l, "b.err").contains(&line),
        "the second controller to join",
    );
    std::fs::write(l.dir.path().join("go"), "").unwrap();
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let both = format!("{}\n{}", stderr_of(l, "a.err"), stderr_of(l, "b.err"));
    assert_eq!(a.status.code(), Some(0), "{both}");
    assert_eq!(b.status.code(), Some(0), "{both}");
    let spans: Vec<(f64, f64)> = ran(l).into_iter().map(|(_, s, e)| (s, e)).collect();
    assert_eq!(spans.len(), hosts, "every host once");
    assert_eq!(starts(l).len(), hosts, "no host twice");
    (spans, a, b)
}

fn stderr_of(l: &Local, name: &str) -> String {
    std::fs::read_to_string(l.dir.path().join(name)).unwrap_or_default()
}

/// A throttled step (`.throttle(2)`) holds fleet-wide: two controllers on one run never
/// have more than two hosts in it together, by the hosts' own clocks.
#[test]
fn a_step_throttle_holds_across_two_controllers() {
    let etcd = Etcd::single();
    let names = hosts(8);
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    // Four hosts in flight at once, two of them in the throttled step: a controller that
    // kept the throttle for its own hosts only would let its two in beside the other's.
    let rb = format!(
        "let rb = runbook(\"t\");\nrb.limit(\"web\", 4);\nrb.step(\"wait\", |h| {});\nrb.step(\"work\", |h| {}).throttle(2);\nrb\n",
        gate(),
        work(0.5)
    );
    let mut l = local(&[("web", &names)], &rb);
    on_etcd(&mut l, &etcd);
    let (spans, a, b) = two_controllers_run(&l, names.len());
    assert!(
        max_overlap(&spans) <= 2,
        "more than 2 hosts in the step: {spans:?}"
    );
    let (by_a, by_b) = (hosts_run_by(&a.stdout), hosts_run_by(&b.stdout));
    assert_eq!(by_a.len() + by_b.len(), names.len(), "{by_a:?} {by_b:?}");
}

/// `rb.batches(true)` holds fleet-wide: two controllers share a batched run, and by the
/// hosts' own clocks the role's hosts go in lock-step (no host starts while one of another
/// batch is in flight), never more than the limit at once, every host once.
#[test]
fn two_controllers_keep_batches_in_lock_step() {
    let etcd = Etcd::single();
    let names = hosts(8);
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let rb = format!(
        "let rb = runbook(\"t\");\nrb.limit(\"web\", 2);\nrb.batches(true);\nrb.step(\"work\", |h| {});\nrb\n",
        gated_work(0.5)
    );
    let mut l = local(&[("web", &names)], &rb);
    on_etcd(&mut l, &etcd);
    let (spans, a, b) = two_controllers_run(&l, names.len());
    assert!(
        max_overlap(&spans) <= 2,
        "more than 2 hosts at once: {spans:?}"
    );
    assert_lock_step(&spans, 2);
    let (by_a, by_b) = (hosts_run_by(&a.stdout), hosts_run_by(&b.stdout));
    assert_eq!(by_a.len() + by_b.len(), names.len(), "{by_a:?} {by_b:?}");
}

/// The (start, end) spans of one role's hosts form batches of at most `limit`: a host that
/// starts while another is in flight belongs to its batch, and so started before any host
/// of that batch ended.
fn assert_lock_step(spans: &[(f64, f64)], limit: usize) {
    let mut sorted = spans.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut batch: Vec<(f64, f64)> = Vec::new();
    for s in sorted {
        let in_flight = batch.iter().any(|b| b.1 > s.0);
        if !in_flight {
            batch.clear();
        }
        let ended = batch.iter().map(|b| b.1).fold(f64::INFINITY, f64::min);
        assert!(
            s.0 < ended,
            "a host started at {} after one of its batch ended at {ended} while another was in flight: {spans:?}",
            s.0
        );
        batch.push(s);
        assert!(batch.len() <= limit, "a batch over {limit}: {batch:?}");
    }
}

/// `rb.deadline(...)` is kept by one controller, counted from its own start: a second
/// controller could not keep it together with the first, so joining such a run is refused,
/// and the first controller finishes alone.
#[test]
fn joining_a_run_with_a_deadline_is_refused() {
    let etcd = Etcd::single();
    let names = hosts(4);
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let rb = format!(
        "let rb = runbook(\"t\");\nrb.limit(\"web\", 2);\nrb.deadline(\"1h\");\nrb.step(\"work\", |h| {});\nrb\n",
        gated_work(0.1)
    );
    let mut l = local(&[("web", &names)], &rb);
    on_etcd(&mut l, &etcd);
    let state = l.state.display().to_string();
    let a = local_controller(&l, "a.err", &[]);
    let id = run_id(&state);
    let b = local_controller(&l, "b.err", &["--join", &id]);
    let (code, _) = finish_within(b, 120, "the refused controller");
    let err = stderr_of(&l, "b.err");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("refusing to join run"), "{err}");
    assert!(err.contains("rb.deadline(...)"), "{err}");
    assert!(err.contains("run --join"), "{err}");
    std::fs::write(l.dir.path().join("go"), "").unwrap();
    let a = a.wait_with_output().unwrap();
    assert_eq!(a.status.code(), Some(0), "{}", stderr_of(&l, "a.err"));
    assert_eq!(hosts_done(&l), names);
    assert_eq!(hosts_run_by(&a.stdout).len(), names.len());
}
