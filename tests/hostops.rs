//! Host operations against real sshd hosts on loopback: files sent over the host's own
//! connection, pipelines that fail closed, delegation, waiting for a host to come back, and
//! the plan's warnings for root operations without become.

use crate::sshd::Fleet;
use crate::support::{fleetbook, Outcome};
use std::path::Path;
use std::time::{Duration, Instant};

fn run(fleet: &Fleet, runbook: &Path, inventory: &Path) -> Outcome {
    fleetbook(&["run"])
        .arg(runbook.display().to_string())
        .arg("-i")
        .arg(inventory.display().to_string())
        .arg("--yes")
        .arg("--ssh-config")
        .arg(fleet.ssh_config.display().to_string())
        .run()
}

fn plan(runbook: &Path, inventory: &Path) -> Outcome {
    fleetbook(&["plan"])
        .arg(runbook.display().to_string())
        .arg("-i")
        .arg(inventory.display().to_string())
        .code(0)
}

/// The SHA-256 of a file, as `sha256sum` prints it.
fn sha256(path: &Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)[..64].to_string()
}

#[test]
fn file_copy_sends_once_by_digest_and_put_never_shows_its_text() {
    let fleet = Fleet::start(&["h1"]);
    let inv = fleet.inventory(&[("web", &["h1"])], "");
    // A binary file beside the runbook, named relative to it.
    std::fs::create_dir(fleet.dir.path().join("files")).unwrap();
    let bytes: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(fleet.dir.path().join("files/app.bin"), &bytes).unwrap();
    let rb = fleet.file(
        "rb.rhai",
        "let rb = runbook(\"t\");\n\
         rb.step(\"send\", |h| {\n\
           let d = h.var(\"dir\");\n\
           let a = file::copy(h, \"files/app.bin\", `${d}/app.bin`, \"0750\");\n\
           let b = file::copy(h, \"files/app.bin\", `${d}/app.bin`, \"0750\");\n\
           let c = file::put(h, `${d}/secret`, \"s3cr3t-token\\n\");\n\
           h.run(`echo ${a} ${b} ${c} > ${d}/changed`);\n\
         });\nrb\n",
    );
    let planned = plan(&rb, &inv).stdout;
    let digest = sha256(&fleet.dir.path().join("files/app.bin"));
    assert!(
        planned.contains(&format!(
            "copy files/app.bin -> {}/app.bin mode 0750 (sha256:{digest})",
            fleet.host("h1").dir.display()
        )),
        "{planned}"
    );
    assert!(planned.contains("(13 bytes, sha256:"), "{planned}");
    assert!(
        !planned.contains("s3cr3t"),
        "put's text is not in the plan: {planned}"
    );

    let out = run(&fleet, &rb, &inv);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let dir = &fleet.host("h1").dir;
    assert_eq!(std::fs::read(dir.join("app.bin")).unwrap(), bytes);
    assert_eq!(
        std::fs::read_to_string(dir.join("changed")).unwrap(),
        "true false true\n",
        "the second copy found the digest and skipped"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("secret")).unwrap(),
        "s3cr3t-token\n"
    );
    assert!(!out.stderr.contains("s3cr3t"));
    // A file changed on the host is sent again.
    std::fs::write(dir.join("app.bin"), b"changed").unwrap();
    let out = run(&fleet, &rb, &inv);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(std::fs::read(dir.join("app.bin")).unwrap(), bytes);
    assert_eq!(
        std::fs::read_to_string(dir.join("changed")).unwrap(),
        "true false false\n"
    );
}

#[test]
fn a_pipeline_whose_first_command_fails_fails_the_check() {
    let fleet = Fleet::start(&["h1"]);
    let inv = fleet.inventory(&[("web", &["h1"])], "");
    let rb = fleet.file(
        "rb.rhai",
        "import \"checks\" as checks;\nlet rb = runbook(\"t\");\n\
         rb.step(\"count\", |h| {\n\
           let n = checks::count(h, \"printf 'a\\\\nb\\\\n' | wc -l\");\n\
           h.run(`echo ${n} > ${h.var(\"dir\")}/n`);\n\
           checks::count(h, \"no-such-cli alarm-list | wc -l\");\n\
           h.run(`touch ${h.var(\"dir\")}/passed`);\n\
         });\nrb\n",
    );
    let out = run(&fleet, &rb, &inv);
    assert_ne!(out.code, 0, "the gate failed closed: {}", out.stderr);
    let dir = &fleet.host("h1").dir;
    assert_eq!(std::fs::read_to_string(dir.join("n")).unwrap(), "2\n");
    assert!(!dir.join("passed").exists(), "{}", out.stderr);
    assert!(
        out.stderr.contains("no-such-cli alarm-list | wc -l"),
        "{}",
        out.stderr
    );
}

#[test]
fn delegated_commands_run_on_the_other_host_under_this_hosts_task() {
    let fleet = Fleet::start(&["web1", "ctl1"]);
    let inv = fleet.inventory(&[("web", &["web1"]), ("controller", &["ctl1"])], "");
    let rb = fleet.file(
        "rb.rhai",
        "let rb = runbook(\"t\");\n\
         rb.step(\"install\", |h| {\n\
           let c = h.delegate_to(\"ctl1\");\n\
           c.run(`echo ${h.name} >> ${c.var(\"dir\")}/installed-from-here`);\n\
         }).roles([\"web\"]);\nrb\n",
    );
    let planned = plan(&rb, &inv).stdout;
    let ctl = fleet.host("ctl1").dir.display().to_string();
    assert!(
        planned.contains(&format!("[on ctl1] echo web1 >> {ctl}/installed-from-here")),
        "{planned}"
    );
    let out = run(&fleet, &rb, &inv);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        std::fs::read_to_string(fleet.host("ctl1").dir.join("installed-from-here")).unwrap(),
        "web1\n"
    );
    assert!(!fleet.host("web1").dir.join("installed-from-here").exists());
}

#[test]
fn wait_reachable_waits_for_the_host_to_come_back_and_fails_when_it_does_not() {
    let mut fleet = Fleet::start(&["h1"]);
    let inv = fleet.inventory(&[("web", &["h1"])], "");
    let rb = fleet.file(
        "rb.rhai",
        "let rb = runbook(\"t\");\nlet t = param(\"t\", \"30s\");\n\
         rb.step(\"wait\", |h| { h.wait_reachable(t); h.run(`touch ${h.var(\"dir\")}/after`); });\nrb\n",
    );
    let ssh_config = fleet.ssh_config.clone();
    let argv = |t: &str| {
        fleetbook(&["run"])
            .arg(rb.display().to_string())
            .arg("-i")
            .arg(inv.display().to_string())
            .arg("--yes")
            .arg("--ssh-config")
            .arg(ssh_config.display().to_string())
            .arg("--param")
            .arg(format!("t={t}"))
            .argv()
    };
    // Down for good: the wait gives up at its timeout and says so.
    fleet.stop_host(0);
    let start = Instant::now();
    let out = std::process::Command::new(&argv("3s")[0])
        .args(&argv("3s")[1..])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("host h1 did not come back within 3s"),
        "{stderr}"
    );
    assert!(start.elapsed() >= Duration::from_secs(2), "it waited");
    // Down at the start and back after 3 s: the wait sees it on a fresh connection.
    let child = std::process::Command::new(&argv("60s")[0])
        .args(&argv("60s")[1..])
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !fleet.host("h1").dir.join("after").exists(),
        "nothing ran while the host was down"
    );
    fleet.start_host(0);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(fleet.host("h1").dir.join("after").exists(), "{stderr}");
}

#[test]
fn root_operations_without_become_warn_once_per_operation() {
    let dir = tempfile::tempdir().unwrap();
    let rb = dir.path().join("rb.rhai");
    std::fs::write(
        &rb,
        "let rb = runbook(\"t\");\n\
         rb.step(\"restart\", |h| { service::restart(h, \"nginx\"); puppet::enable(h); });\nrb\n",
    )
    .unwrap();
    let inv = dir.path().join("hosts");
    let mut text = String::from("[web]\n");
    for i in 1..=40 {
        text.push_str(&format!("web{i}\n"));
    }
    text.push_str("[db]\ndb1 ansible_become=true\ndb2 ansible_user=root\n");
    std::fs::write(&inv, text).unwrap();
    let out = plan(&rb, &inv);
    let warnings: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.contains("without root"))
        .collect();
    assert_eq!(
        warnings,
        [
            "warning: hosts web1, web2, web3, web4, web5 and 35 more: service::restart runs \"systemctl restart -- nginx\" without root; set rb.become(true) or ansible_become=true",
            "warning: hosts web1, web2, web3, web4, web5 and 35 more: puppet::enable runs \"puppet agent --enable\" without root; set rb.become(true) or ansible_become=true",
        ],
        "db1 becomes and db2 logs in as root: neither is named\n{}",
        out.stdout
    );
}
