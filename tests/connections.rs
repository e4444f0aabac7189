//! How fleetbook opens and closes SSH connections, checked from the hosts' side (each
//! sshd's own log): connect-ahead in rolling runs, one connection per host, and the key
//! exchange a user chose. No timing is asserted.

use crate::sshd::Fleet;
use crate::support::fleetbook;
use std::path::Path;

fn sshd_log(fleet: &Fleet, host: &str) -> String {
    std::fs::read_to_string(fleet.host(host).dir.join("sshd.log")).unwrap_or_default()
}

/// The hosts named in the run's JSON log lines that carry `message`.
fn logged_hosts(log: &Path, message: &str) -> Vec<String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut hosts: Vec<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.to_string().contains(message))
        .filter_map(|v| {
            v.pointer("/fields/host")
                .or_else(|| v.get("host"))
                .and_then(|h| h.as_str())
                .map(str::to_string)
        })
        .collect();
    hosts.sort();
    hosts
}

#[test]
fn rolling_runs_connect_ahead_to_the_next_hosts_but_never_to_a_skipped_one() {
    let fleet = Fleet::start_logging(&["h1", "h2", "h3", "h4"], "VERBOSE");
    let inv = fleet.inventory(&[("web", &["h1", "h2", "h3"]), ("other", &["h4"])], "");
    // h4's only step has a condition that is false for it: it must never be contacted.
    let rb = fleet.file(
        "rb.rhai",
        "let rb = runbook(\"t\");\nrb.limit(\"web\", 1);\n\
         rb.step(\"a\", |h| h.run(\"sleep 0.2\")).roles([\"web\"]);\n\
         rb.step(\"b\", |h| h.run(\"true\")).when(|h| h.name != \"h4\");\nrb\n",
    );
    let log = fleet.dir.path().join("run.jsonl");
    fleetbook(&["run"])
        .arg(rb.display().to_string())
        .arg("-i")
        .arg(inv.display().to_string())
        .arg("--yes")
        .arg("-vv")
        .arg("--ssh-config")
        .arg(fleet.ssh_config.display().to_string())
        .arg("--log-file")
        .arg(log.display().to_string())
        .code(0);
    // h1 starts first (no one to connect ahead of it); h2 and h3 are connected while the
    // host before them works.
    assert_eq!(logged_hosts(&log, "ssh connected ahead"), ["h2", "h3"]);
    for h in ["h1", "h2", "h3"] {
        let sshd = sshd_log(&fleet, h);
        assert_eq!(
            sshd.matches("Accepted publickey").count(),
            1,
            "{h}: one connection for both steps:\n{sshd}"
        );
    }
    // The one connection h4 saw is the fleet's own check that its sshd was up.
    let h4 = sshd_log(&fleet, "h4");
    assert_eq!(
        h4.matches("Connection from").count(),
        1,
        "h4 was contacted:\n{h4}"
    );
    assert!(!h4.contains("Accepted"), "h4 was contacted:\n{h4}");
}

/// `fleetbook exec` of `true` on every host, with `extra` arguments.
fn exec(inv: &Path, config: &Path, extra: &[&str]) -> crate::support::Outcome {
    let mut cmd = fleetbook(&["exec", "-i"])
        .arg(inv.display().to_string())
        .arg("--ssh-config")
        .arg(config.display().to_string());
    for a in extra {
        cmd = cmd.arg(*a);
    }
    cmd.arg("all").arg("--").arg("true").run()
}

/// The key exchanges each sshd negotiated, in order.
fn kexes(fleet: &Fleet, host: &str) -> Vec<String> {
    sshd_log(fleet, host)
        .lines()
        .filter_map(|l| {
            l.split_once("kex: algorithm: ")
                .and_then(|(_, k)| k.split_whitespace().next())
                .map(str::to_string)
        })
        .collect()
}

#[test]
fn the_key_exchange_is_the_ssh_configs_unless_the_user_chooses_one() {
    let fleet = Fleet::start_logging(&["k1", "k2"], "DEBUG1");
    // The user's config as it is by default: no KexAlgorithms (the test fleet's sets one).
    let plain = fleet.file(
        "ssh_config_plain",
        &std::fs::read_to_string(&fleet.ssh_config)
            .unwrap()
            .lines()
            .filter(|l| !l.contains("KexAlgorithms"))
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
    );
    let inv = fleet.inventory(&[("web", &["k1"])], "");
    // By default, OpenSSH's own choice: never weaker than the user's config.
    let out = exec(&inv, &plain, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    // Chosen on the command line.
    let out = exec(&inv, &plain, &["--ssh-kex", "curve25519-sha256"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let seen = kexes(&fleet, "k1");
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_ne!(seen[0], "curve25519-sha256", "{seen:?}");
    assert_eq!(seen[1], "curve25519-sha256", "{seen:?}");
    // Chosen by a host variable, for that host only.
    let inv = fleet.inventory(
        &[("web", &["k1", "k2"])],
        "[web:vars]\nfleetbook_ssh_kex=curve25519-sha256\n",
    );
    let out = exec(&inv, &plain, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(kexes(&fleet, "k2"), ["curve25519-sha256"]);
    // Anything that is not a list of algorithms is refused before connecting.
    let out = exec(
        &inv,
        &plain,
        &["--ssh-kex", "curve25519-sha256\nProxyCommand x"],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("--ssh-kex"), "{}", out.stderr);
}

/// The ssh processes (not zombies) whose command line mentions `needle`.
fn live_ssh(needle: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            cmd.starts_with("ssh") && cmd.contains(needle) && !stat.contains(") Z ")
        })
        .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
        .collect()
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

#[test]
fn a_second_command_reuses_the_connection_the_first_kept() {
    let fleet = Fleet::start_logging(&["p1"], "VERBOSE");
    let inv = fleet.inventory(&[("web", &["p1"])], "");
    let config = fleet.ssh_config.display().to_string();
    for persist in ["30", "30", "0"] {
        let out = exec(&inv, &fleet.ssh_config, &["--persist", persist]);
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    let masters = live_ssh(&config);
    for &pid in &masters {
        // SAFETY: kill(2) on the ssh master this test's commands left; no memory involved.
        unsafe { libc_kill(pid, 15) };
    }
    assert_eq!(masters.len(), 1, "one master kept: {masters:?}");
    let sshd = sshd_log(&fleet, "p1");
    assert_eq!(
        sshd.matches("Accepted publickey").count(),
        1,
        "three commands, one connection:\n{sshd}"
    );
}

#[test]
fn persist_0_leaves_no_master_behind() {
    let fleet = Fleet::start(&["q1"]);
    let inv = fleet.inventory(&[("web", &["q1"])], "");
    let out = exec(&inv, &fleet.ssh_config, &["--persist", "0"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let left = live_ssh(&fleet.ssh_config.display().to_string());
    assert!(left.is_empty(), "ssh left behind: {left:?}");
}

/// A kept master serves only the ssh config it was opened with: once the file changes (a
/// fixed HostName or Port, say), the next command connects again.
#[test]
fn a_changed_ssh_config_is_not_served_by_a_kept_connection() {
    kept_until_edited("c1", |config| {
        let mut text = std::fs::read_to_string(config).unwrap();
        text.push_str("\n# edited in place\n");
        std::fs::write(config, text).unwrap();
    });
}

/// Nor by a master opened before a file the config `Include`s changed.
#[test]
fn a_changed_included_ssh_config_is_not_served_by_a_kept_connection() {
    kept_until_edited("c2", |config| {
        let extra = config.with_file_name("extra.conf");
        std::fs::write(&extra, "# edited: a User or HostName could change here\n").unwrap();
    });
}

/// `exec` twice with `--persist 30` (the second on the first's master), `edit` the ssh
/// config's files, `exec` once more: that one connects again. The config includes
/// `extra.conf` beside it.
fn kept_until_edited(host: &str, edit: impl FnOnce(&Path)) {
    let fleet = Fleet::start_logging(&[host], "VERBOSE");
    let inv = fleet.inventory(&[("web", &[host])], "");
    let config = fleet.ssh_config.display().to_string();
    let extra = fleet.ssh_config.with_file_name("extra.conf");
    std::fs::write(&extra, "# nothing yet\n").unwrap();
    let text = std::fs::read_to_string(&fleet.ssh_config).unwrap();
    std::fs::write(
        &fleet.ssh_config,
        format!("Include \"{}\"\n{text}", extra.display()),
    )
    .unwrap();
    for persist in ["30", "30"] {
        let out = exec(&inv, &fleet.ssh_config, &["--persist", persist]);
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    edit(&fleet.ssh_config);
    let out = exec(&inv, &fleet.ssh_config, &["--persist", "0"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for pid in live_ssh(&config) {
        // SAFETY: kill(2) on the ssh master this test's first commands left; no memory involved.
        unsafe { libc_kill(pid, 15) };
    }
    let sshd = sshd_log(&fleet, host);
    assert_eq!(
        sshd.matches("Accepted publickey").count(),
        2,
        "the same files reuse the master, edited ones connect again:\n{sshd}"
    );
}

/// This user's login shell, from its /etc/passwd entry (sshd runs each command in it).
fn login_shell() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "root".into());
    std::fs::read_to_string("/etc/passwd")
        .unwrap_or_default()
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() == 7 && f[0] == user)
        .map(|f| f[6].rsplit('/').next().unwrap_or("").to_string())
        .unwrap_or_default()
}

/// A run on a kept master starts where the run that kept it left off: its first command
/// takes the lease in the login shell, without the probe's `sh` (the shells the first run
/// found are kept beside the master's socket), and the lease is still taken.
#[test]
fn a_run_on_a_kept_master_takes_its_lease_without_probing_the_shells_again() {
    let fleet = Fleet::start(&["s1"]);
    let inv = fleet.inventory(&[("web", &["s1"])], "");
    let config = fleet.ssh_config.display().to_string();
    let seen = fleet.dir.path().join("parents");
    // What the first command's wrapper runs in: the shell that started `setsid`.
    let rb = fleet.file(
        "rb.rhai",
        &format!(
            "let rb = runbook(\"t\");\n\
             rb.step(\"a\", |h| h.run(\"cat /proc/$PPID/comm >> {}\"));\nrb\n",
            seen.display()
        ),
    );
    let run = |persist: &str| {
        fleetbook(&["run"])
            .arg(rb.display().to_string())
            .arg("-i")
            .arg(inv.display().to_string())
            .arg("--yes")
            .arg("--state")
            .arg(fleet.dir.path().join("state").display().to_string())
            .arg("--ssh-config")
            .arg(config.clone())
            .arg("--persist")
            .arg(persist)
            .code(0)
    };
    run("30");
    let lease = fleet.host("s1").dir.join("fleetbook.lease");
    let kept: Vec<_> = live_ssh(&config);
    assert_eq!(kept.len(), 1, "one master kept: {kept:?}");
    // The next run reuses it (and leaves it, with --persist 0, to its own idle window).
    run("0");
    for pid in live_ssh(&config) {
        // SAFETY: kill(2) on the ssh master this test's first run left; no memory involved.
        unsafe { libc_kill(pid, 15) };
    }
    let parents = std::fs::read_to_string(&seen).unwrap();
    let parents: Vec<&str> = parents.lines().collect();
    assert_eq!(parents.len(), 2, "{parents:?}");
    // The first run's first command ran its wrapper in the probe's `sh`.
    assert_eq!(parents[0], "sh", "{parents:?}");
    // The second's ran it in the login shell itself when that is POSIX (bash here).
    let login = login_shell();
    if matches!(login.as_str(), "bash" | "dash") {
        assert_eq!(parents[1], login, "{parents:?}");
    }
    // Each run released its lease at the end.
    assert!(!lease.exists(), "the lease was left behind");
}
