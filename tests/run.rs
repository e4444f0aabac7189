//! `fleetbook run` and `fleetbook exec` against real sshd hosts on loopback. The runbooks log
//! step start and end times on the host side; the tests check those facts, not fleetbook's
//! own report.

use crate::sshd::{intervals, max_overlap, Fleet};
use crate::support::{fleetbook, Outcome};
use std::path::Path;

/// A step that logs its start and end on the host and takes `secs`.
fn timed(name: &str, secs: f64) -> String {
    format!(
        "rb.step(\"{name}\", |h| h.run(`echo \"$(date +%s.%N) start {name}\" >> ${{h.var(\"dir\")}}/log; sleep {secs}; echo \"$(date +%s.%N) end {name}\" >> ${{h.var(\"dir\")}}/log`))"
    )
}

fn run(fleet: &Fleet, runbook: &Path, inventory: &Path, extra: &[&str]) -> Outcome {
    let mut cmd = fleetbook(&["run"])
        .arg(runbook.display().to_string())
        .arg("-i")
        .arg(inventory.display().to_string())
        .arg("--yes")
        .arg("--ssh-config")
        .arg(fleet.ssh_config.display().to_string());
    for a in extra {
        cmd = cmd.arg(*a);
    }
    cmd.run()
}

/// The span (first start, last end) of each named host.
fn spans(fleet: &Fleet, names: &[&str]) -> Vec<(f64, f64)> {
    names
        .iter()
        .filter_map(|n| {
            let iv = intervals(&fleet.host(n).dir.join("log"));
            Some((
                iv.iter().map(|i| i.0).fold(f64::MAX, f64::min),
                iv.iter().map(|i| i.1).fold(0.0, f64::max),
            ))
            .filter(|_| !iv.is_empty())
        })
        .collect()
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("{prefix}{i}")).collect()
}

#[test]
fn role_limits_and_order_hold_on_the_hosts() {
    let ctl = names("ctl", 2);
    let cmp = names("cmp", 6);
    let all: Vec<&str> = ctl.iter().chain(&cmp).map(String::as_str).collect();
    let fleet = Fleet::start(&all);
    let ctl: Vec<&str> = ctl.iter().map(String::as_str).collect();
    let cmp: Vec<&str> = cmp.iter().map(String::as_str).collect();
    let inv = fleet.inventory(&[("controller", &ctl), ("compute", &cmp)], "");
    let rb = fleet.file(
        "rb.rhai",
        &format!(
            "let rb = runbook(\"limits\");\nrb.order([\"controller\", \"compute\"]);\nrb.limit(\"*\", 1);\nrb.limit(\"compute\", 3);\n{};\n{};\nrb\n",
            timed("a", 0.4),
            timed("b", 0.2)
        ),
    );
    let out = run(&fleet, &rb, &inv, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let c = spans(&fleet, &ctl);
    let k = spans(&fleet, &cmp);
    assert_eq!((c.len(), k.len()), (2, 6), "every host ran");
    assert_eq!(max_overlap(&c), 1, "controllers one at a time: {c:?}");
    assert_eq!(
        max_overlap(&k),
        3,
        "computes three at a time, and the limit is reached: {k:?}"
    );
    let last_ctl = c.iter().map(|s| s.1).fold(0.0, f64::max);
    let first_cmp = k.iter().map(|s| s.0).fold(f64::MAX, f64::min);
    assert!(
        first_cmp >= last_ctl,
        "a compute started at {first_cmp} before the last controller ended at {last_ctl}"
    );
    assert!(out.stderr.contains("RECAP"), "{}", out.stderr);
}

#[test]
fn limit_total_limit_by_and_throttle_hold_on_the_hosts() {
    let web = names("w", 6);
    let fleet = Fleet::start(&web.iter().map(String::as_str).collect::<Vec<_>>());
    let web: Vec<&str> = web.iter().map(String::as_str).collect();
    let mut inv_text = String::from("[web]\n");
    for (i, n) in web.iter().enumerate() {
        let h = fleet.host(n);
        inv_text.push_str(&format!(
            "{n} ansible_host={} ansible_port=22022 dir={} fleetbook_lease_dir={} rack=r{}\n",
            h.addr,
            h.dir.display(),
            h.dir.display(),
            i % 2
        ));
    }
    let inv = fleet.file("hosts", &inv_text);
    let rb = fleet.file(
        "rb.rhai",
        &format!(
            "let rb = runbook(\"t\");\nrb.limit_total(4);\nrb.limit_by(\"rack\", 2);\n{};\n{}.throttle(1);\nrb\n",
            timed("a", 0.3),
            timed("b", 0.3)
        ),
    );
    let out = run(&fleet, &rb, &inv, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let all = spans(&fleet, &web);
    assert_eq!(all.len(), 6);
    assert!(max_overlap(&all) <= 4, "limit_total: {all:?}");
    for rack in [0, 2] {
        let rack_hosts: Vec<&str> = web
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 2 == rack / 2)
            .map(|(_, n)| *n)
            .collect();
        assert!(
            max_overlap(&spans(&fleet, &rack_hosts)) <= 2,
            "limit_by rack"
        );
    }
    let b: Vec<(f64, f64)> = web
        .iter()
        .flat_map(|n| {
            intervals(&fleet.host(n).dir.join("log"))
                .into_iter()
                .skip(1)
        })
        .collect();
    assert_eq!(b.len(), 6);
    assert_eq!(max_overlap(&b), 1, "throttle(1) on step b: {b:?}");
}

#[test]
fn canary_then_batches_hold_on_the_hosts() {
    let web = names("w", 5);
    let fleet = Fleet::start(&web.iter().map(String::as_str).collect::<Vec<_>>());
    let web: Vec<&str> = web.iter().map(String::as_str).collect();
    let inv = fleet.inventory(&[("web", &web)], "");
    let rb = fleet.file(
        "rb.rhai",
        &format!("let rb = runbook(\"t\");\nrb.canary(\"web\", 1);\nrb.limit(\"web\", 2);\nrb.batches(true);\n{};\nrb\n", timed("a", 0.3)),
    );
    let out = run(&fleet, &rb, &inv, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let s = spans(&fleet, &web);
    let canary_end = s[0].1;
    assert!(
        s[1..].iter().all(|x| x.0 >= canary_end),
        "canary first: {s:?}"
    );
    // Lock-step: w2,w3 together, then w4,w5 only after both ended.
    assert!(
        s[3].0 >= s[1].1.max(s[2].1) && s[4].0 >= s[1].1.max(s[2].1),
        "batches: {s:?}"
    );
    assert_eq!(max_overlap(&s), 2);
}

fn failure_fleet(max_failures: u32) -> (Fleet, Outcome) {
    let web = names("w", 6);
    let fleet = Fleet::start(&web.iter().map(String::as_str).collect::<Vec<_>>());
    let web: Vec<&str> = web.iter().map(String::as_str).collect();
    let inv = fleet.inventory(&[("web", &web)], "");
    let rb = fleet.file(
        "rb.rhai",
        &format!(
            "let rb = runbook(\"t\");\nrb.limit(\"web\", 2);\nrb.max_failures(\"web\", {max_failures});\n\
             rb.step(\"work\", |h| h.run(`echo \"$(date +%s.%N) start work\" >> ${{h.var(\"dir\")}}/log; if [ {} = w3 ]; then sleep 0.2; exit 7; fi; sleep 1; echo \"$(date +%s.%N) end work\" >> ${{h.var(\"dir\")}}/log`));\n\
             {};\nrb\n",
            "${h.name}",
            timed("after", 0.1)
        ),
    );
    let out = run(&fleet, &rb, &inv, &[]);
    (fleet, out)
}

#[test]
fn a_failure_past_max_failures_halts_the_run() {
    let (fleet, out) = failure_fleet(0);
    assert_eq!(out.code, 3, "exit code says halted: {}", out.stderr);
    assert!(out.stderr.contains("run halted"), "{}", out.stderr);
    // w5 and w6 had not started: untouched.
    for n in ["w5", "w6"] {
        assert!(!fleet.host(n).dir.join("log").exists(), "{n} was touched");
    }
    // w4 was in flight with w3: it finished its step, then stopped.
    let w4 = std::fs::read_to_string(fleet.host("w4").dir.join("log")).unwrap();
    assert!(w4.contains("end work"), "{w4}");
    assert!(!w4.contains("start after"), "{w4}");
    assert!(
        out.stderr.contains("command exited with code 7"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_tolerated_failure_lets_the_run_go_on() {
    let (fleet, out) = failure_fleet(1);
    assert_eq!(out.code, 5, "{}", out.stderr);
    for n in ["w1", "w2", "w4", "w5", "w6"] {
        let log = std::fs::read_to_string(fleet.host(n).dir.join("log")).unwrap();
        assert!(log.contains("end after"), "{n}: {log}");
    }
}

#[test]
fn an_unreachable_host_counts_as_a_failure() {
    let web = names("w", 3);
    let mut fleet = Fleet::start(&web.iter().map(String::as_str).collect::<Vec<_>>());
    let web: Vec<&str> = web.iter().map(String::as_str).collect();
    let inv = fleet.inventory(&[("web", &web)], "");
    fleet.stop_host(1);
    let rb = fleet.file(
        "rb.rhai",
        &format!(
            "let rb = runbook(\"t\");\nrb.max_failures(\"web\", 1);\n{};\nrb\n",
            timed("a", 0.1)
        ),
    );
    let out = run(&fleet, &rb, &inv, &["--connect-timeout", "3s"]);
    assert_eq!(out.code, 5, "{}", out.stderr);
    assert!(
        out.stderr
            .lines()
            .any(|l| l.starts_with("w2") && l.contains("unreachable=1")),
        "{}",
        out.stderr
    );
    assert!(fleet.host("w3").dir.join("log").exists());
    // Without tolerance the same run halts.
    let rb = fleet.file(
        "rb0.rhai",
        &format!(
            "let rb = runbook(\"t\");\nrb.limit(\"web\", 1);\n{};\nrb\n",
            timed("a", 0.1)
        ),
    );
    let out = run(&fleet, &rb, &inv, &["--connect-timeout", "3s"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
}

#[test]
fn a_hanging_command_is_killed_on_the_host_at_its_timeout() {
    let fleet = Fleet::start(&["h1"]);
    let inv = fleet.inventory(&[("web", &["h1"])], "");
    let rb = fleet.file(
        "rb.rhai",
        "let rb = runbook(\"t\");\nrb.step(\"hang\", |h| h.run(`echo $$ > ${h.var(\"dir\")}/pid; exec sleep 300`)).timeout(\"2s\");\nrb\n",
    );
    let started = std::time::Instant::now();
    let out = run(&fleet, &rb, &inv, &[]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "the run waited for the command"
    );
    assert!(out.stderr.contains("timed out"), "{}", out.stderr);
    let pid = std::fs::read_to_string(fleet.host("h1").dir.join("pid")).unwrap();
    let pid = pid.trim();
    // The remote command is gone (a zombie waiting for its reaper counts as gone).
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(
        state.is_empty() || state.contains(") Z "),
        "sleep {pid} still runs: {state}"
    );
}

#[test]
fn retries_retry_and_undo_runs_on_rollback() {
    let fleet = Fleet::start(&["h1"]);
    let inv = fleet.inventory(&[("web", &["h1"])], "");
    let rb = fleet.file(
        "rb.rhai",
        "let rb = runbook(\"t\");\nrb.rollback_on_failure(true);\n\
         rb.step(\"flaky\", |h| h.run(`d=${h.var(\"dir\")}; echo x >> $d/tries; [ $(wc -l < $d/tries) -ge 3 ]`)).retries(3).retry_delay(\"100ms\");\n\
         rb.step(\"install\", |h| h.run(`touch ${h.var(\"dir\")}/installed`)).undo(|h| h.run(`rm ${h.var(\"dir\")}/installed; touch ${h.var(\"dir\")}/undone`));\n\
         rb.step(\"break\", |h| h.run(\"exit 1\"));\nrb\n",
    );
    let out = run(&fleet, &rb, &inv, &[]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    let dir = &fleet.host("h1").dir;
    assert_eq!(
        std::fs::read_to_string(dir.join("tries"))
            .unwrap()
            .lines()
            .count(),
        3,
        "two retries, then success"
    );
    assert!(dir.join("undone").exists(), "undo ran");
    assert!(!dir.join("installed").exists(), "undo removed the install");
    assert!(out.stderr.contains("rolled_back"), "{}", out.stderr);
}

#[test]
fn a_hostile_parameter_reaches_the_host_as_one_literal_argument() {
    let fleet = Fleet::start(&["h1"]);
    let inv = fleet.inventory(&[("web", &["h1"])], "");
    let rb = fleet.file(
        "rb.rhai",
        "let rb = runbook(\"t\");\nlet v = param(\"v\", \"\");\nrb.step(\"write\", |h| h.run(`printf %s ${sh::quote(v)} > ${h.var(\"dir\")}/arg`));\nrb\n",
    );
    let nasty = "it's \"quoted\" ; echo pwned $(touch /tmp/fleetbook-pwned) `id`\nsecond line";
    let out = run(&fleet, &rb, &inv, &["--param", &format!("v={nasty}")]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        std::fs::read_to_string(fleet.host("h1").dir.join("arg")).unwrap(),
        nasty
    );
    assert!(!Path::new("/tmp/fleetbook-pwned").exists());
}

// Issue 10 #15: a fact set from `.stdout` kept the command's trailing newline, and a command
// built from the fact split in two on the host.
#[test]
fn a_fact_from_stdout_kept_its_newline_and_split_the_next_command() {
    let fleet = Fleet::start(&["h1"]);
    let inv = fleet.inventory(&[("web", &["h1"])], "");
    let rb = fleet.file(
        "rb.rhai",
        "let rb = runbook(\"t\");\n\
         rb.step(\"learn\", |h| h.set_fact(\"kernel\", h.run(\"echo 6.1.0\").stdout));\n\
         rb.step(\"use\", |h| h.run(`printf '[%s]' ${h.fact(\"kernel\")} k-${h.fact(\"kernel\")}.img > ${h.var(\"dir\")}/out`));\n\
         rb.step(\"raw\", |h| h.run(`printf %s ${sh::quote(h.run(\"echo 6.1.0\").stdout_raw)} > ${h.var(\"dir\")}/raw`));\n\
         rb\n",
    );
    let out = run(&fleet, &rb, &inv, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let dir = &fleet.host("h1").dir;
    assert_eq!(
        std::fs::read_to_string(dir.join("out")).unwrap(),
        "[6.1.0][k-6.1.0.img]"
    );
    assert_eq!(std::fs::read_to_string(dir.join("raw")).unwrap(), "6.1.0\n");
}

#[test]
fn unknown_host_keys_are_refused_by_default() {
    let fleet = Fleet::start(&["h1"]);
    let inv = fleet.inventory(&[("web", &["h1"])], "");
    std::fs::write(fleet.dir.path().join("known_hosts"), "").unwrap();
    let rb = fleet.file(
        "rb.rhai",
        "let rb = runbook(\"t\");\nrb.step(\"a\", |h| h.run(\"true\"));\nrb\n",
    );
    let out = run(&fleet, &rb, &inv, &[]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(out.stderr.contains("unreachable"), "{}", out.stderr);
}

#[test]
fn events_stream_one_json_object_per_transition() {
    let fleet = Fleet::start(&["h1", "h2"]);
    let inv = fleet.inventory(&[("web", &["h1", "h2"])], "");
    let rb = fleet.file("rb.rhai", "let rb = runbook(\"t\");\nrb.step(\"a\", |h| h.run(\"true\"));\nrb.step(\"b\", |h| h.run(\"true\"));\nrb\n");
    let out = run(&fleet, &rb, &inv, &["--events", "jsonl"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let events: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(events.len(), 8, "running and ok for 2 hosts x 2 steps");
    assert!(events
        .iter()
        .all(|e| e["task"].is_string() && e["at"].is_number()));
    assert_eq!(events.iter().filter(|e| e["state"] == "ok").count(), 4);
}

#[test]
fn exec_groups_identical_output() {
    let fleet = Fleet::start(&["k1", "k2", "k3"]);
    let inv = fleet.inventory(&[("kafka_servers", &["k1", "k2", "k3"])], "");
    let out = fleetbook(&["exec", "-i"])
        .arg(inv.display().to_string())
        .arg("kafka_servers:!k3")
        .arg("-b")
        .arg("--ssh-config")
        .arg(fleet.ssh_config.display().to_string())
        .arg("--")
        .arg("echo")
        .arg("same")
        .code(0);
    assert!(out.stdout.contains("k1,k2\n"), "{}", out.stdout);
    assert!(out.stdout.contains("rc=0\nsame"), "{}", out.stdout);
    assert!(!out.stdout.contains("k3"));
}

#[test]
fn run_refuses_without_yes_when_not_on_a_terminal() {
    let out = fleetbook(&[
        "run",
        "runbooks/jiocloud-rolling.rhai",
        "-i",
        "examples/inventories/jiocloud.ini",
    ])
    .code(2);
    assert!(
        out.stderr.contains("standard input is not a terminal"),
        "{}",
        out.stderr
    );
}

/// SSH processes whose command line mentions `needle` and that are not zombies.
fn live_ssh(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let p = e.path();
        let cmd = std::fs::read(p.join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        let stat = std::fs::read_to_string(p.join("stat")).unwrap_or_default();
        if cmd.starts_with("ssh") && cmd.contains(needle) && !stat.contains(") Z ") {
            found.push(cmd);
        }
    }
    found
}

#[test]
fn ctrl_c_stops_cleanly_and_leaves_no_ssh_behind() {
    let fleet = Fleet::start(&["h1", "h2", "h3"]);
    let inv = fleet.inventory(&[("web", &["h1", "h2", "h3"])], "");
    let rb = fleet.file(
        "rb.rhai",
        &format!(
            "let rb = runbook(\"t\");\nrb.limit(\"web\", 1);\n{};\n{};\nrb\n",
            timed("a", 1.5),
            timed("b", 0.1)
        ),
    );
    let child = spawn_run(&fleet, &rb, &inv);
    std::thread::sleep(std::time::Duration::from_millis(800));
    // SAFETY: sending SIGINT to the child we just spawned.
    unsafe {
        libc_kill(child.id() as i32, 2);
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("run aborted"), "{stderr}");
    // h1 finished the step it was in; h2 and h3 never started.
    let h1 = std::fs::read_to_string(fleet.host("h1").dir.join("log")).unwrap();
    assert!(h1.contains("end a"), "{h1}");
    assert!(!fleet.host("h2").dir.join("log").exists());
    std::thread::sleep(std::time::Duration::from_millis(300));
    let left = live_ssh(&fleet.ssh_config.display().to_string());
    assert!(left.is_empty(), "ssh processes left behind: {left:?}");
}

/// A second Ctrl-C kills the steps in flight, on the hosts too, and the run ends at once.
#[test]
fn ctrl_c_twice_kills_the_steps_in_flight() {
    let fleet = Fleet::start(&["h1", "h2"]);
    let inv = fleet.inventory(&[("web", &["h1", "h2"])], "");
    let rb = fleet.file(
        "rb.rhai",
        &format!(
            "let rb = runbook(\"t\");\n{};\n{};\nrb\n",
            timed("a", 37.25),
            timed("b", 0.1)
        ),
    );
    let started = std::time::Instant::now();
    let mut child = spawn_run(&fleet, &rb, &inv);
    // Both hosts are in their long step.
    let in_step = || {
        ["h1", "h2"].iter().all(|h| {
            std::fs::read_to_string(fleet.host(h).dir.join("log"))
                .is_ok_and(|l| l.contains("start a"))
        })
    };
    while !in_step() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "the hosts never started their step"
        );
        if let Ok(Some(status)) = child.try_wait() {
            panic!("fleetbook ended early: {status}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    for _ in 0..2 {
        // SAFETY: sending SIGINT to the child we spawned.
        unsafe {
            libc_kill(child.id() as i32, 2);
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("killing the steps in flight"), "{stderr}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "the run waited for its steps: {:?}",
        started.elapsed()
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    for h in ["h1", "h2"] {
        let log = std::fs::read_to_string(fleet.host(h).dir.join("log")).unwrap();
        assert!(
            !log.contains("end a") && !log.contains("start b"),
            "{h}: {log}"
        );
    }
    // The hosts are loopback sshd processes: their commands are this machine's processes.
    // Each kill's watcher (whose command line holds the step's) looks once a second whether
    // the step's group is gone before it ends too.
    let sleeping = || {
        let out = std::process::Command::new("pgrep")
            .args(["-af", "sleep 37.25"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let until = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while !sleeping().is_empty() && std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let left = sleeping();
    assert!(
        left.is_empty(),
        "the killed step still runs on a host: {left}"
    );
    let left = live_ssh(&fleet.ssh_config.display().to_string());
    assert!(left.is_empty(), "ssh processes left behind: {left:?}");
}

/// `fleetbook run RB -i INV --yes` in the background, its standard error captured.
fn spawn_run(fleet: &Fleet, rb: &Path, inv: &Path) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_fleetbook"))
        .arg("run")
        .arg(rb)
        .arg("-i")
        .arg(inv)
        .arg("--yes")
        .arg("--ssh-config")
        .arg(&fleet.ssh_config)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

#[test]
fn local_connection_runs_on_this_machine() {
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("hosts");
    std::fs::write(
        &inv,
        format!(
            "[web]\nl[1:3] ansible_connection=local dir={}\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let rb = dir.path().join("rb.rhai");
    std::fs::write(
        &rb,
        "let rb = runbook(\"t\");\nrb.limit(\"web\", 1);\nrb.step(\"a\", |h| h.run(`echo ${h.name} >> ${h.var(\"dir\")}/order`));\nrb\n",
    )
    .unwrap();
    let out = fleetbook(&["run"])
        .arg(rb.display().to_string())
        .arg("-i")
        .arg(inv.display().to_string())
        .arg("--yes")
        .code(0);
    assert!(out.stderr.contains("run succeeded"), "{}", out.stderr);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("order")).unwrap(),
        "l1\nl2\nl3\n"
    );
}

/// A runbook and an inventory of one host run on this machine, and a state directory with one
/// finished run in it.
fn local_state() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("hosts");
    std::fs::write(&inv, "[web]\nl1 ansible_connection=local\n").unwrap();
    let rb = dir.path().join("rb.rhai");
    std::fs::write(
        &rb,
        "let rb = runbook(\"t\");\nrb.step(\"a\", |h| h.run(\"true\"));\nrb\n",
    )
    .unwrap();
    (dir, rb, inv)
}

fn with_stdout(args: &[&str], stdout: std::process::Stdio) -> Outcome {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fleetbook"))
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .stdout(stdout)
        .output()
        .unwrap();
    Outcome {
        code: out.status.code().unwrap_or(-1),
        stdout: String::new(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `check`, `status` and `runs` panicked (exit 101) on a closed pipe (`| head -1`).
#[test]
fn a_closed_stdout_ends_reports_quietly() {
    let (dir, rb, inv) = local_state();
    let state = dir.path().join("state");
    let (rb, inv, state) = (
        rb.display().to_string(),
        inv.display().to_string(),
        state.display().to_string(),
    );
    fleetbook(&["run", &rb, "-i", &inv, "--yes", "--state", &state]).code(0);
    for args in [
        vec!["check", rb.as_str()],
        vec!["status", "--state", &state],
        vec!["runs", "--state", &state],
        vec!["runs", "--state", &state, "--format", "json"],
        vec!["--help"],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = with_stdout(&args, writer.into());
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
        assert_eq!(out.stderr, "", "{args:?}");
    }
}

/// Output to a full disk was lost without an error: `--events jsonl` exited 0 with every event
/// lost, `--help` and the reports panicked or said nothing.
#[test]
fn a_full_stdout_is_an_error() {
    let (dir, rb, inv) = local_state();
    let state = dir.path().join("state");
    let (rb, inv, state) = (
        rb.display().to_string(),
        inv.display().to_string(),
        state.display().to_string(),
    );
    let full = || {
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap()
    };
    let out = with_stdout(
        &[
            "run", &rb, "-i", &inv, "--yes", "--state", &state, "--events", "jsonl",
        ],
        full().into(),
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("cannot write to standard output")
            && out.stderr.contains("No space left on device"),
        "{}",
        out.stderr
    );
    for args in [
        vec!["check", rb.as_str()],
        vec!["status", "--state", &state],
        vec!["runs", "--state", &state],
        vec!["--help"],
        vec!["plan", &rb, "-i", &inv],
    ] {
        let out = with_stdout(&args, full().into());
        assert_eq!(out.code, 1, "{args:?}: {}", out.stderr);
        assert!(
            out.stderr
                .contains("cannot write to standard output: No space left on device"),
            "{args:?}: {}",
            out.stderr
        );
    }
}

/// `plan -o FILE` overwrote FILE when it was the runbook or the inventory.
#[test]
fn plan_output_over_its_own_input_is_refused() {
    let (dir, rb, inv) = local_state();
    let before = (std::fs::read(&rb).unwrap(), std::fs::read(&inv).unwrap());
    let link = dir.path().join("link.rhai");
    std::os::unix::fs::symlink(&rb, &link).unwrap();
    for (out, what) in [(&rb, "runbook"), (&inv, "inventory"), (&link, "runbook")] {
        let o = fleetbook(&["plan"])
            .arg(rb.display().to_string())
            .arg("-i")
            .arg(inv.display().to_string())
            .arg("-o")
            .arg(out.display().to_string())
            .code(2);
        assert!(
            o.stderr.contains(&format!(
                "refusing to write the plan to {}: it is the {what}",
                out.display()
            )),
            "{}",
            o.stderr
        );
    }
    assert_eq!(
        (std::fs::read(&rb).unwrap(), std::fs::read(&inv).unwrap()),
        before
    );
}
