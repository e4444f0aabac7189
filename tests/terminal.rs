//! The live display in a real terminal: `fleetbook run` inside tmux panes of 60 and of 160
//! columns over loopback sshd hosts, and `fleetbook status --watch` beside it. The screen is
//! read with `tmux capture-pane -J`, which joins the lines the terminal wrapped: a joined line
//! wider than the pane is a line the display let the terminal cut.

use crate::sshd::Fleet;
use crate::support::fleetbook;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A tmux server of its own (its own socket), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new(name: &str) -> Tmux {
        assert!(
            Command::new("tmux").arg("-V").output().is_ok(),
            "the terminal tests need tmux: run ./test.sh as root (it installs it), or `apt-get install tmux`"
        );
        Tmux {
            socket: format!("fleetbook-{name}-{}", std::process::id()),
        }
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("tmux runs");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A detached session `name` of `cols` x 40 running `argv` (then waiting, so that the
    /// screen stays readable after it ends).
    fn start(&self, name: &str, cols: usize, argv: &[String]) {
        let quoted: Vec<String> = argv
            .iter()
            .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
            .collect();
        let cmd = format!(
            "env -u NO_COLOR TERM=xterm {}; echo EXIT=$?; sleep 600",
            quoted.join(" ")
        );
        self.run(&[
            "new-session",
            "-d",
            "-s",
            name,
            "-x",
            &cols.to_string(),
            "-y",
            "40",
            &cmd,
        ]);
    }

    /// The screen and its history, wrapped lines joined.
    fn screen(&self, name: &str) -> String {
        self.run(&["capture-pane", "-p", "-J", "-S", "-", "-t", name])
    }

    /// Waits for `ready` to hold of the screen; the screen when it does.
    fn wait(&self, name: &str, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let s = self.screen(name);
            if ready(&s) {
                return s;
            }
            assert!(Instant::now() < deadline, "{what}; the screen:\n{s}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .arg("kill-server")
            .output();
    }
}

fn fits(screen: &str, cols: usize) {
    for l in screen.lines() {
        assert!(
            l.trim_end().chars().count() <= cols,
            "a line wider than {cols} columns was cut by the terminal: {l:?}\n{screen}"
        );
    }
}

/// Hosts whose step has started on the host side.
fn started(fleet: &Fleet, names: &[&str]) -> Vec<String> {
    names
        .iter()
        .filter(|n| fleet.host(n).dir.join("in").exists())
        .map(|n| n.to_string())
        .collect()
}

const HOSTS: [&str; 5] = [
    "database-primary-01",
    "frontend-web-server-01",
    "frontend-web-server-02",
    "frontend-web-server-03",
    "frontend-web-server-04",
];

fn runbook(fleet: &Fleet, go: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let inv = fleet.inventory(
        &[("db", &HOSTS[..1]), ("web", &HOSTS[1..])],
        &format!("[all:vars]\ngo={}\n", go.display()),
    );
    let rb = fleet.file(
        "rb.rhai",
        "let rb = runbook(\"terminal\");\nrb.limit(\"web\", 3);\nrb.max_failures(\"web\", 1);\n\
         rb.step(\"wait-for-the-signal\", |h| h.run(`touch ${h.var(\"dir\")}/in; while [ ! -e ${h.var(\"go\")} ]; do sleep 0.1; done`));\n\
         rb.step(\"finish\", |h| h.run(\"true\"));\nrb\n",
    );
    (rb, inv)
}

#[test]
fn live_display_fits_60_and_160_columns_and_shows_every_host_in_flight() {
    for cols in [60usize, 160] {
        let fleet = Fleet::start(&HOSTS);
        let go = fleet.dir.path().join("go");
        let (rb, inv) = runbook(&fleet, &go);
        let state = fleet.dir.path().join("state");
        let tmux = Tmux::new(&format!("live{cols}"));
        let run = fleetbook(&["run"])
            .arg(rb.display().to_string())
            .arg("-i")
            .arg(inv.display().to_string())
            .arg("--yes")
            .arg("--state")
            .arg(state.display().to_string())
            .arg("--ssh-config")
            .arg(fleet.ssh_config.display().to_string());
        tmux.start("run", cols, &run.argv());
        // The database host and three web hosts (the web limit) wait for the signal.
        let deadline = Instant::now() + Duration::from_secs(90);
        while started(&fleet, &HOSTS).len() < 4 {
            assert!(
                Instant::now() < deadline,
                "hosts did not start: {:?}\n{}",
                started(&fleet, &HOSTS),
                tmux.screen("run")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let flying = started(&fleet, &HOSTS);
        let screen = tmux.wait("run", "every host in flight is shown", |s| {
            flying.iter().all(|h| {
                s.lines()
                    .any(|l| l.contains(&format!("{h} wait-for-the-signal")))
            })
        });
        fits(&screen, cols);
        assert!(screen.contains("in flight 3/3"), "{screen}");
        assert!(screen.contains("failed 0/1"), "{screen}");

        // From another terminal, the same board from the journal.
        let watch = fleetbook(&["status", "--watch", "--state"]).arg(state.display().to_string());
        tmux.start("watch", cols, &watch.argv());
        let shown = tmux.wait("watch", "status --watch shows the hosts in flight", |s| {
            flying.iter().all(|h| {
                s.lines()
                    .any(|l| l.contains(&format!("{h} wait-for-the-signal")))
            })
        });
        fits(&shown, cols);
        assert!(shown.contains("in flight 3/3"), "{shown}");

        std::fs::write(&go, "").unwrap();
        let end = tmux.wait("run", "the run ends", |s| s.contains("EXIT="));
        assert!(end.contains("EXIT=0"), "{end}");
        fits(&end, cols);
        let table = end
            .lines()
            .find(|l| l.starts_with("role "))
            .unwrap_or_else(|| panic!("a recap table per role: {end}"));
        for col in ["hosts", "ok", "failed", "skipped", "undone", "duration"] {
            assert!(table.contains(col), "{table}");
        }
        assert!(
            end.lines()
                .any(|l| l.starts_with("web ") && l.split_whitespace().nth(1) == Some("4")),
            "{end}"
        );
        // `status --watch` ends with the run, and prints where the run stands.
        let after = tmux.wait("watch", "status --watch ends with the run", |s| {
            s.contains("EXIT=")
        });
        assert!(after.contains("EXIT=0"), "{after}");
        assert!(after.contains("succeeded"), "{after}");
    }
}

/// On a standard output that is not a terminal `status --watch` prints a line per host whose
/// state changes, and ends when the run ends.
#[test]
fn status_watch_without_a_terminal_prints_transitions_and_ends_with_the_run() {
    let fleet = Fleet::start(&HOSTS);
    let go = fleet.dir.path().join("go");
    let (rb, inv) = runbook(&fleet, &go);
    let state = fleet.dir.path().join("state");
    let run = fleetbook(&["run"])
        .arg(rb.display().to_string())
        .arg("-i")
        .arg(inv.display().to_string())
        .arg("--yes")
        .arg("--state")
        .arg(state.display().to_string())
        .arg("--ssh-config")
        .arg(fleet.ssh_config.display().to_string())
        .argv();
    let mut runner = Command::new(&run[0])
        .args(&run[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    while started(&fleet, &HOSTS).len() < 4 {
        assert!(Instant::now() < deadline, "hosts did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let watch = fleetbook(&["status", "--watch", "--state"])
        .arg(state.display().to_string())
        .argv();
    let mut watcher = Command::new(&watch[0])
        .args(&watch[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let seen = seen.clone();
        let mut out = watcher.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = std::io::Read::read(&mut out, &mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };
    let flying = started(&fleet, &HOSTS);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !flying.iter().all(|h| {
        seen.lock()
            .unwrap()
            .contains(&format!("{h} upgrading wait-for-the-signal"))
    }) {
        assert!(
            Instant::now() < deadline,
            "status --watch shows the hosts in flight: {}",
            seen.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::write(&go, "").unwrap();
    let ran = runner.wait().unwrap();
    assert!(ran.success());
    // The run has ended: the watcher must end too (killed, and the test fails, if not).
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = watcher.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = watcher.kill();
            panic!(
                "status --watch did not end with the run: {}",
                seen.lock().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    reader.join().unwrap();
    let stdout = seen.lock().unwrap().clone();
    assert!(status.success(), "{stdout}");
    for h in &flying {
        assert!(
            stdout.contains(&format!("{h} upgrading wait-for-the-signal")),
            "{h}: {stdout}"
        );
    }
    for h in HOSTS {
        assert!(stdout.contains(&format!("{h} upgraded")), "{h}: {stdout}");
    }
    assert!(stdout.contains("succeeded"), "{stdout}");
}
