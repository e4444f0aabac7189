//! The pages: the plan's HTML, `fleetbook status RUN --format html` and `fleetbook watch`,
//! opened in a real headless Chromium (tests/browser.rs), over runs on this machine
//! (`ansible_connection=local`) and over real sshd hosts on loopback.

use crate::browser::Browser;
use crate::sshd::Fleet;
use crate::support::{fleetbook, root};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const EVIL_HOST: &str = "<img src=x onerror=alert(1)>";
const EVIL_OUTPUT: &str = "</script><script>alert(2)</script>";

/// A child process killed (by its own id) when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `fleetbook watch ARGS`, and the URL it printed.
fn watch(state: &Path, extra: &[&str]) -> (Running, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fleetbook"))
        .arg("watch")
        .args(extra)
        .arg("--state")
        .arg(state)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("http://127.0.0.1:"), "{line:?}");
    assert!(line.contains("/?token="), "{line:?}");
    (Running(child), line.trim().to_string())
}

/// One raw HTTP request; the status code and the body.
fn http(method: &str, url: &str) -> (u16, String) {
    let rest = url.strip_prefix("http://").unwrap();
    let (addr, path) = rest.split_at(rest.find('/').unwrap());
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let code = text[9..12].parse().unwrap();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (code, body)
}

/// A run on this machine whose host name and command output are hostile, one host failing;
/// its state directory.
fn hostile_run(dir: &Path) -> PathBuf {
    std::fs::write(
        dir.join("hosts"),
        format!("[web]\nweb1 ansible_connection=local\nweb2 ansible_connection=local\n\"{EVIL_HOST}\" ansible_connection=local\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join("rb.rhai"),
        format!(
            "let rb = runbook(\"hostile\");\nlet token = secret_param(\"token\", \"\");\n\
             rb.step(\"greet\", |h| h.run(`echo '{EVIL_OUTPUT}'; echo using ${{token}}`));\n\
             rb.step(\"upgrade\", |h| if h.name == \"web2\" {{ h.run(\"echo broken >&2; exit 3\") }} else {{ h.run(\"true\") }});\nrb\n"
        ),
    )
    .unwrap();
    let state = dir.join("state");
    fleetbook(&[
        "run",
        "rb.rhai",
        "-i",
        "hosts",
        "--yes",
        "--param",
        "token=hunter2-hunter2",
        "--state",
    ])
    .arg(state.display().to_string())
    .in_dir(dir)
    .run();
    state
}

fn status_json(state: &Path) -> Value {
    let out = fleetbook(&["status", "--format", "json", "--state"])
        .arg(state.display().to_string())
        .code(0);
    serde_json::from_str(&out.stdout).unwrap()
}

/// Nothing the run's text holds ran as script or became markup: no dialog, no image, only
/// our own script, and the hostile texts are there as text.
fn assert_inert(b: &Browser, what: &str) {
    assert_eq!(b.dialog(), None, "{what}: a dialog opened");
    // Behind the escaping, a policy that runs our script only (it does run: other tests
    // click through it).
    let policy = b.eval(
        "return document.querySelector('meta[http-equiv=\"Content-Security-Policy\"]').content",
    );
    assert!(
        policy.as_str().unwrap().contains("script-src 'sha256-"),
        "{what}: {policy}"
    );
    assert_eq!(
        b.eval("return document.images.length"),
        0,
        "{what}: an injected image"
    );
    assert_eq!(
        b.eval("return document.scripts.length"),
        1,
        "{what}: an injected script"
    );
    let hosts = b.eval(
        "return Array.from(document.querySelectorAll('[data-host]')).map(e => e.dataset.host)",
    );
    assert!(
        hosts.as_array().unwrap().iter().any(|h| h == EVIL_HOST),
        "{what}: the hostile host is not shown as text: {hosts}"
    );
}

#[test]
fn a_report_shows_each_command_with_its_exit_status_output_and_the_next_command() {
    let dir = tempfile::tempdir().unwrap();
    let state = hostile_run(dir.path());
    let out = fleetbook(&["status", "--format", "html", "-o", "run.html", "--state"])
        .arg(state.display().to_string())
        .in_dir(dir.path())
        .code(0);
    assert!(out.stderr.contains("written to run.html"), "{}", out.stderr);
    let html = std::fs::read_to_string(dir.path().join("run.html")).unwrap();
    assert!(
        html.contains("$ echo broken &gt;&amp;2; exit 3"),
        "the command"
    );
    assert!(html.contains("exit 3 · "), "its exit status");
    assert!(
        html.contains("<pre class=\"out\">broken\n</pre>"),
        "its output"
    );
    assert!(
        html.contains("&lt;/script&gt;&lt;script&gt;alert(2)"),
        "escaped output"
    );
    assert!(
        !html.contains(EVIL_OUTPUT) && !html.contains(EVIL_HOST),
        "raw markup"
    );
    assert!(
        !html.contains("hunter2-hunter2"),
        "a secret reached the report"
    );
    assert!(
        html.contains("using &lt;secret:token&gt;"),
        "the secret is named instead"
    );
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no network"
    );
    // The recap groups the failure and ends with the next command.
    assert!(html.contains("data-failures=\"1\""));
    let next = html
        .rfind("data-next>fleetbook resume ")
        .expect("next command");
    assert!(next > html.rfind("data-cause").unwrap());
    // The whole output is on disk, redacted too.
    let logs = state.join("output");
    let run_dir = std::fs::read_dir(&logs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let web2 = std::fs::read_to_string(run_dir.join("web2.log")).unwrap();
    assert!(web2.contains("broken\n[exit 3"), "{web2}");
    let all: String = std::fs::read_dir(&run_dir)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert!(!all.contains("hunter2-hunter2"));
}

#[test]
fn nothing_a_run_holds_can_inject_markup_or_script_into_its_pages() {
    let dir = tempfile::tempdir().unwrap();
    let state = hostile_run(dir.path());
    let b = Browser::start();
    fleetbook(&["status", "--format", "html", "-o", "run.html", "--state"])
        .arg(state.display().to_string())
        .in_dir(dir.path())
        .code(0);
    b.goto(&format!("file://{}", dir.path().join("run.html").display()));
    assert_inert(&b, "the report");
    let outputs = b.eval(
        "return Array.from(document.querySelectorAll('pre.out')).map(e => e.textContent).join('')",
    );
    assert!(outputs.as_str().unwrap().contains(EVIL_OUTPUT), "{outputs}");
    b.screenshot("hostile-report");

    fleetbook(&[
        "plan",
        "rb.rhai",
        "-i",
        "hosts",
        "--format",
        "html",
        "-o",
        "plan.html",
    ])
    .in_dir(dir.path())
    .code(0);
    b.goto(&format!(
        "file://{}",
        dir.path().join("plan.html").display()
    ));
    assert_inert(&b, "the plan");

    // The live page inserts each update itself: the same must hold after one.
    let (_w, url) = watch(&state, &[]);
    b.goto(&url);
    assert!(
        b.wait_for("return document.body.dataset.ended === '1'", 30),
        "no update came"
    );
    assert_inert(&b, "the live page");
}

fn plan_json(runbook: &str, inventory: &str, dir: &Path) -> Value {
    let out = fleetbook(&["plan", runbook, "-i", inventory, "--format", "json"])
        .in_dir(dir)
        .code(0);
    serde_json::from_str(&out.stdout).unwrap()
}

#[test]
fn the_plan_page_of_a_shipped_runbook_has_its_roles_lanes_and_bars_and_shows_commands_on_click() {
    let dir = tempfile::tempdir().unwrap();
    let (rb, inv) = (
        "runbooks/maintenance-mode.rhai",
        "examples/inventories/stratos.toml",
    );
    let plan = plan_json(rb, inv, root());
    let page = dir.path().join("plan.html");
    fleetbook(&["plan", rb, "-i", inv, "--format", "html", "-o"])
        .arg(page.display().to_string())
        .code(0);
    let b = Browser::start();
    b.goto(&format!("file://{}", page.display()));
    let roles: Vec<&str> = plan["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    let lanes = b.eval("return Array.from(document.querySelectorAll('details.lane[data-role]')).map(e => e.dataset.role)");
    assert_eq!(
        lanes,
        serde_json::json!(roles),
        "one lane per role, in order"
    );
    let tasks = plan["tasks"].as_array().unwrap();
    let drawn: Vec<&Value> = tasks
        .iter()
        .filter(|t| !matches!(t["kind"].as_str(), Some("role_done" | "canary_done")))
        .collect();
    assert_eq!(
        b.eval("return document.querySelectorAll('rect.bar[data-task]').length"),
        drawn.len(),
        "a bar per task"
    );
    let host_rows = b.eval("return new Set(Array.from(document.querySelectorAll('g.hostrow[data-host]')).map(e => e.dataset.host)).size");
    let busy: std::collections::BTreeSet<&str> =
        tasks.iter().filter_map(|t| t["host"].as_str()).collect();
    assert_eq!(host_rows, busy.len(), "a row per host that has a step");

    let task = tasks
        .iter()
        .find(|t| t["host"].is_string() && !t["commands"].as_array().unwrap().is_empty())
        .unwrap();
    let id = task["id"].as_str().unwrap();
    assert_eq!(
        b.eval("return document.getElementById('detail').textContent"),
        ""
    );
    b.click(&format!("rect.bar[data-task=\"{id}\"]"));
    let shown = b.eval("return document.querySelector('#detail pre').textContent");
    let commands: Vec<&str> = task["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(shown, commands.join("\n"), "the clicked task's commands");
    b.screenshot("plan-maintenance-mode");
}

#[test]
fn a_plan_of_a_thousand_hosts_folds_big_lanes_and_unfolds_them_on_click() {
    let dir = tempfile::tempdir().unwrap();
    let mut inv = String::from("[web]\n");
    inv.push_str(
        "web[0001:0600] ansible_connection=local\n[db]\ndb[001:400] ansible_connection=local\n",
    );
    std::fs::write(dir.path().join("hosts"), inv).unwrap();
    std::fs::write(
        dir.path().join("rb.rhai"),
        "let rb = runbook(\"big\");\nrb.order([\"db\", \"web\"]);\nrb.limit(\"web\", 50);\nrb.limit(\"db\", 20);\nrb.step(\"a\", |h| h.run(\"true\"));\nrb.step(\"b\", |h| h.run(\"true\"));\nrb\n",
    )
    .unwrap();
    fleetbook(&[
        "plan",
        "rb.rhai",
        "-i",
        "hosts",
        "--format",
        "html",
        "-o",
        "plan.html",
    ])
    .in_dir(dir.path())
    .code(0);
    let b = Browser::start();
    b.goto(&format!(
        "file://{}",
        dir.path().join("plan.html").display()
    ));
    let open = "return Array.from(document.querySelectorAll('details.lane[data-role]')).map(e => [e.dataset.role, e.open, Number(e.dataset.hosts)])";
    assert_eq!(
        b.eval(open),
        serde_json::json!([["db", false, 400], ["web", false, 600]]),
        "big lanes start folded"
    );
    b.click("details.lane[data-role=\"web\"] > summary");
    assert_eq!(
        b.eval("return document.querySelector('details.lane[data-role=\"web\"]').open"),
        true
    );
    assert_eq!(
        b.eval(
            "return document.querySelectorAll('details.lane[data-role=\"web\"] rect.bar').length"
        ),
        1200
    );
    b.screenshot("plan-1000-hosts");
}

#[test]
fn watch_refuses_requests_without_the_token_and_is_read_only_without_control() {
    let dir = tempfile::tempdir().unwrap();
    let state = hostile_run(dir.path());
    let (_w, url) = watch(&state, &[]);
    let base = url.split("/?").next().unwrap();
    let token = url.split("token=").nth(1).unwrap();
    assert_eq!(http("GET", &format!("{base}/")).0, 401);
    assert_eq!(http("GET", &format!("{base}/?token=nope")).0, 401);
    assert_eq!(http("GET", &format!("{base}/events")).0, 401);
    assert_eq!(http("POST", &format!("{base}/abort")).0, 401);
    let (code, body) = http("GET", &url);
    assert_eq!(code, 200);
    assert!(body.contains("data-run-state="), "the page");
    let (code, body) = http("POST", &format!("{base}/abort?token={token}"));
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("--control"), "{body}");

    // Another address only with a token file, and a token that cannot be guessed.
    let out = fleetbook(&["watch", "--listen", "127.0.0.1:0", "--state"])
        .arg(state.display().to_string())
        .code(2);
    assert!(out.stderr.contains("--token-file"), "{}", out.stderr);
    std::fs::write(dir.path().join("short"), "abc\n").unwrap();
    let out = fleetbook(&[
        "watch",
        "--listen",
        "127.0.0.1:0",
        "--token-file",
        "short",
        "--state",
    ])
    .arg(state.display().to_string())
    .in_dir(dir.path())
    .code(2);
    assert!(
        out.stderr.contains("at least 16 characters"),
        "{}",
        out.stderr
    );
    let token = "a-token-from-a-file-0123456789";
    std::fs::write(dir.path().join("token"), format!("{token}\n")).unwrap();
    let file = dir.path().join("token").display().to_string();
    // A token others may read is no secret: refused, with the command that fixes it.
    use std::os::unix::fs::PermissionsExt;
    let perms = |mode| std::fs::Permissions::from_mode(mode);
    std::fs::set_permissions(&file, perms(0o644)).unwrap();
    let out = fleetbook(&["watch", "--listen", "127.0.0.1:0", "--token-file", &file])
        .arg("--state")
        .arg(state.display().to_string())
        .code(2);
    assert!(
        out.stderr.contains(&format!("chmod 600 {file}")),
        "{}",
        out.stderr
    );
    std::fs::set_permissions(&file, perms(0o600)).unwrap();
    let (_w, url) = watch(&state, &["--listen", "127.0.0.1:0", "--token-file", &file]);
    assert!(url.ends_with(&format!("/?token={token}")), "{url}");
    assert_eq!(http("GET", &url).0, 200);
}

/// `fleetbook run` in the background over the fleet, its state in `state`.
fn spawn_run(fleet: &Fleet, rb: &Path, inv: &Path, state: &Path) -> Running {
    Running(
        Command::new(env!("CARGO_BIN_EXE_fleetbook"))
            .arg("run")
            .arg(rb)
            .arg("-i")
            .arg(inv)
            .arg("--yes")
            .arg("--ssh-config")
            .arg(&fleet.ssh_config)
            .arg("--state")
            .arg(state)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn wait_exit(child: &mut Running, secs: u64) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            return s.code().unwrap_or(-1);
        }
        assert!(Instant::now() < deadline, "the run did not end");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn watch_follows_a_run_over_ssh_and_its_page_approves_the_gate() {
    let fleet = Fleet::start(&["web1", "web2", "db1"]);
    let inv = fleet.inventory(&[("web", &["web1", "web2"]), ("db", &["db1"])], "");
    let rb = fleet.file(
        "rb.rhai",
        "let rb = runbook(\"watched\");\nrb.order([\"web\", \"db\"]);\nrb.limit(\"web\", 1);\n\
         rb.step(\"stop\", |h| h.run(\"sleep 2\"));\n\
         rb.step(\"work\", |h| h.run(\"sleep 2; echo done on $(hostname)\"));\n\
         rb.approval(\"go-db\", \"web\");\nrb\n",
    );
    let state = fleet.dir.path().join("state");
    let b = Browser::start();
    let mut run = spawn_run(&fleet, &rb, &inv, &state);
    let deadline = Instant::now() + Duration::from_secs(30);
    let started = || {
        fleetbook(&["runs", "--format", "json", "--state"])
            .arg(state.display().to_string())
            .run()
            .stdout
            .contains("\"id\"")
    };
    while !started() {
        assert!(Instant::now() < deadline, "the run did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_w, url) = watch(&state, &["--control"]);
    b.goto(&url);
    // Every state web2 shows, as the page updates itself (a reload would lose `__seen`).
    b.eval(
        "window.__seen = [];
         const note = () => { const c = document.querySelector('section.grid [data-host=\"web2\"]');
                              const s = c && c.dataset.state; if (s && window.__seen[window.__seen.length - 1] !== s) window.__seen.push(s); };
         note(); new MutationObserver(note).observe(document.getElementById('live'), { childList: true, subtree: true });
         return 1",
    );
    let seen = "return window.__seen";
    assert!(
        b.wait_for(
            "return document.querySelector('button[data-action=\"approve\"]') !== null",
            60
        ),
        "the page never offered the approval; web2 went through {}",
        b.eval(seen)
    );
    let seen = b.eval(seen);
    let seen: Vec<&str> = seen
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        seen.len() >= 2 && seen.last() == Some(&"upgraded"),
        "web2 changed state on the page without a reload: {seen:?}"
    );
    assert!(
        b.eval("return Number(document.body.dataset.updates)")
            .as_u64()
            .unwrap()
            >= 2
    );
    assert_eq!(
        b.eval("return document.querySelectorAll('section.grid [data-state=\"upgraded\"]').length"),
        2
    );
    assert_eq!(
        b.eval("return document.querySelector('section.grid [data-host=\"db1\"]').dataset.state"),
        "pending",
        "db waits behind the approval"
    );
    let banner = b.eval("return document.querySelector('[data-banner]').textContent");
    assert!(banner.as_str().unwrap().contains("go-db"), "{banner}");
    b.screenshot("watch-waiting");
    b.click("button[data-action=\"approve\"]");
    assert_eq!(
        wait_exit(&mut run, 60),
        0,
        "the run went on after the page approved"
    );
    assert!(b.wait_for("return document.body.dataset.ended === '1'", 30));
    assert_eq!(
        b.eval("return document.querySelector('[data-run-state]').dataset.runState"),
        "succeeded"
    );
    // The page ends with what `status --format json` says, host by host.
    let st = status_json(&state);
    let want: std::collections::BTreeMap<String, String> = st["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["host"].as_str().unwrap().into(),
                h["state"].as_str().unwrap().into(),
            )
        })
        .collect();
    let shown = b.eval("return Object.fromEntries(Array.from(document.querySelectorAll('section.grid [data-host]')).map(e => [e.dataset.host, e.dataset.state]))");
    assert_eq!(shown, serde_json::json!(want));
    let actions = b.eval("return document.querySelector('ul.actions').textContent");
    let user = fleetbook_user();
    assert!(
        actions
            .as_str()
            .unwrap()
            .contains(&format!("approval go-db given by {user}")),
        "{actions}"
    );
    b.screenshot("watch-finished");
}

/// The user the journal records (as `fleetbook approve` does).
fn fleetbook_user() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn the_page_aborts_a_run_with_control_and_the_journal_names_who() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("hosts"),
        "[web]\nl1 ansible_connection=local\n[db]\nl2 ansible_connection=local\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("rb.rhai"),
        "let rb = runbook(\"held\");\nrb.order([\"web\", \"db\"]);\nrb.step(\"a\", |h| h.run(\"true\"));\nrb.approval(\"go\", \"web\");\nrb\n",
    )
    .unwrap();
    let state = dir.path().join("state");
    let mut run = Running(
        Command::new(env!("CARGO_BIN_EXE_fleetbook"))
            .args(["run", "rb.rhai", "-i", "hosts", "--yes", "--state"])
            .arg(&state)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while status_json_if_any(&state).is_none_or(|s| s["waiting_approval"] != "go") {
        assert!(
            Instant::now() < deadline,
            "the run never waited for its approval"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_w, url) = watch(&state, &["--control"]);
    let b = Browser::start();
    b.goto(&url);
    b.click("button[data-action=\"abort\"]");
    assert_eq!(
        b.eval("return document.querySelector('button[data-action=\"abort\"]').dataset.armed"),
        "1",
        "a first click only arms the button"
    );
    b.click("button[data-action=\"abort\"]");
    assert_eq!(wait_exit(&mut run, 60), 4, "the run ends aborted");
    assert!(b.wait_for("return document.body.dataset.ended === '1'", 30));
    let actions = b.eval("return document.querySelector('ul.actions').textContent");
    assert!(
        actions
            .as_str()
            .unwrap()
            .contains(&format!("abort requested by {}", fleetbook_user())),
        "{actions}"
    );
    assert_eq!(
        b.eval("return document.querySelector('[data-run-state]').dataset.runState"),
        "aborted"
    );
    assert_eq!(b.dialog(), None, "the page asks nothing in a dialog");
}

fn status_json_if_any(state: &Path) -> Option<Value> {
    let out = fleetbook(&["status", "--format", "json", "--state"])
        .arg(state.display().to_string())
        .run();
    (out.code == 0)
        .then(|| serde_json::from_str(&out.stdout).ok())
        .flatten()
}
