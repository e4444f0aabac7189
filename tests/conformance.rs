//! fleetbook reads inventories exactly as Ansible does: `fleetbook inventory --list` against
//! the real `ansible-inventory --list` (ansible-core from PyPI, in a venv this harness makes
//! under target/ and reuses), on the shared corpus of real inventories and on our own tricky
//! ones, comparing hosts, groups and every variable with its type.

use crate::support::{fleetbook, root};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The ansible-core the corpus was measured with.
const ANSIBLE_CORE: &str = "2.19.14";

/// The venv's bin directory, made once (python3 -m venv + pip install) and kept in target/.
/// No venv is a failure, never a skip: CI installs python3-venv (.ci/run).
fn ansible_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let venv = root().join("target/ansible-venv");
        let bin = venv.join("bin");
        let ok = |bin: &Path| {
            Command::new(bin.join("ansible-inventory"))
                .arg("--version")
                .output()
                .is_ok_and(|o| {
                    o.status.success()
                        && String::from_utf8_lossy(&o.stdout).contains(ANSIBLE_CORE)
                })
        };
        if !ok(&bin) {
            let made = Command::new("python3")
                .args(["-m", "venv", "--clear"])
                .arg(&venv)
                .status();
            assert!(
                made.is_ok_and(|s| s.success()),
                "the conformance test needs a Python venv: `python3 -m venv {}` failed \
                 (install python3 and python3-venv; .ci/run does)",
                venv.display()
            );
            let pip = Command::new(bin.join("pip"))
                .args(["install", "-q", "--disable-pip-version-check"])
                .arg(format!("ansible-core=={ANSIBLE_CORE}"))
                .status();
            assert!(
                pip.is_ok_and(|s| s.success()) && ok(&bin),
                "the conformance test needs ansible-core {ANSIBLE_CORE} from PyPI: pip install into {} failed",
                venv.display()
            );
        }
        bin
    })
}

/// `../shared/inventory-conformance/corpus` beside the clone (CI), or above a worktree.
fn corpus() -> PathBuf {
    let candidates = [
        std::env::var("FLEETBOOK_CONFORMANCE_CORPUS")
            .map(PathBuf::from)
            .unwrap_or_default(),
        root().join("../shared/inventory-conformance/corpus"),
        root().join("../../shared/inventory-conformance/corpus"),
    ];
    candidates
        .into_iter()
        .find(|c| c.join("manifest.json").is_file())
        .unwrap_or_else(|| {
            panic!(
                "the inventory conformance corpus is missing: expected \
                 ../shared/inventory-conformance/corpus/manifest.json beside the clone \
                 (or FLEETBOOK_CONFORMANCE_CORPUS)"
            )
        })
}

struct Read {
    ok: bool,
    json: Option<Value>,
    stderr: String,
}

fn ansible(dir: &Path, file: &str, extra: &[String]) -> Read {
    let out = Command::new(ansible_bin().join("ansible-inventory"))
        .args(["--list", "-i", file])
        .args(extra)
        .current_dir(dir)
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_LOCAL_TEMP", std::env::temp_dir())
        .output()
        .expect("run ansible-inventory");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    // Ansible says so, and exits 0, when no plugin could read the file; what it lists then
    // is whatever a failed plugin left behind.
    let ok = out.status.success() && !stderr.contains("as an inventory source");
    Read {
        ok,
        json: serde_json::from_slice(&out.stdout).ok(),
        stderr,
    }
}

fn ours(dir: &Path, file: &str, extra: &[String]) -> Read {
    let mut f = fleetbook(&["inventory", "--list", "-i", file])
        .in_dir(dir)
        .env("ANSIBLE_VAULT_PASSWORD_FILE", "");
    for a in extra {
        f = f.arg(a.clone());
    }
    let out = f.run();
    Read {
        ok: out.code == 0,
        json: serde_json::from_str(&out.stdout).ok(),
        stderr: out.stderr,
    }
}

/// `fleetbook inventory --list -i -` with `input` on standard input.
fn ours_from_stdin(input: &str) -> (Option<Value>, String) {
    use std::io::Write;
    let argv = fleetbook(&["inventory", "--list", "-i", "-"]).argv();
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("fleetbook runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        serde_json::from_slice(&out.stdout).ok(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Empty when both agree: the same JSON (types included), or both refuse the file.
fn compare(name: &str, dir: &Path, file: &str, extra: &[String]) -> Option<String> {
    let a = ansible(dir, file, extra);
    let f = ours(dir, file, extra);
    match (a.ok, f.ok) {
        (true, true) if a.json == f.json => None,
        (true, true) => Some(format!(
            "{name}: differs\n  ansible:   {}\n  fleetbook: {}",
            a.json.map(|j| j.to_string()).unwrap_or_default(),
            f.json.map(|j| j.to_string()).unwrap_or_default()
        )),
        (false, false) => None,
        (true, false) => Some(format!(
            "{name}: Ansible reads it, fleetbook refuses:\n{}",
            f.stderr
        )),
        (false, true) => Some(format!(
            "{name}: Ansible refuses it, fleetbook reads it:\n{}",
            a.stderr
        )),
    }
}

fn has_hosts(v: &Option<Value>) -> bool {
    v.as_ref().and_then(Value::as_object).is_some_and(|o| {
        o.iter().any(|(k, g)| {
            k != "_meta" && g.get("hosts").is_some_and(|h| h != &Value::Array(vec![]))
        })
    })
}

#[test]
fn corpus_reads_as_ansible_reads_it() {
    let corpus = corpus();
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(corpus.join("manifest.json")).unwrap())
            .unwrap();
    let (mut with_hosts, mut identical, mut refused_by_both, mut empty) = (0, 0, 0, 0);
    let mut failures = Vec::new();
    for e in manifest.as_array().unwrap() {
        if e["kind"] != "static" {
            continue;
        }
        let id = e["id"].as_str().unwrap();
        let dir = corpus.join(id);
        let file = e["file"].as_str().unwrap();
        let extra: Vec<String> = e["ansible_args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
        let a = ansible(&dir, file, &extra);
        if a.ok && has_hosts(&a.json) {
            with_hosts += 1;
        }
        match compare(id, &dir, file, &extra) {
            Some(f) => failures.push(f),
            None if !a.ok => refused_by_both += 1,
            None if has_hosts(&a.json) => identical += 1,
            None => empty += 1,
        }
        // ansible-inventory's own output, given back as a dynamic inventory, reads the same.
        if a.ok {
            let listed = a.json.clone().unwrap();
            let (back, stderr) = ours_from_stdin(&listed.to_string());
            if back.as_ref() != Some(&listed) {
                failures.push(format!(
                    "{id}: its --list JSON read back differs:\n{stderr}"
                ));
            }
        }
    }
    eprintln!(
        "inventory conformance: {identical} of {with_hosts} inventories with hosts identical \
         (types included); {empty} without hosts identical; {refused_by_both} refused by both"
    );
    assert!(
        with_hosts >= 120,
        "only {with_hosts} inventories with hosts found"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

// Each a divergence of issue 17, from our own inventories: IPv6 hosts, comments after
// values and headers, backslashes, punctuation in group names, Python literals in INI,
// YAML 1.1 values, merge keys, `hosts:` as a string, YAML with no extension, group_vars and
// host_vars precedence with ansible_group_priority.
#[test]
fn tricky_inventories_read_as_ansible_reads_them() {
    let dir = root().join("tests/fixtures/conformance");
    let mut failures = Vec::new();
    for (sub, file) in [
        ("divergences", "hosts"),
        ("divergences", "hosts.yml"),
        ("divergences", "noext"),
        ("precedence", "hosts"),
    ] {
        if let Some(f) = compare(&format!("{sub}/{file}"), &dir.join(sub), file, &[]) {
            failures.push(f);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Runs ansible-vault (the real one) in `dir`.
fn ansible_vault(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(ansible_bin().join("ansible-vault"))
        .args(args)
        .current_dir(dir)
        .env("ANSIBLE_NOCOLOR", "1")
        .output()
        .expect("run ansible-vault");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn vault_round_trips_with_ansible_vault() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::write(d.join("pw"), "correct horse\n").unwrap();
    std::fs::write(d.join("other"), "battery staple\n").unwrap();
    std::fs::create_dir_all(d.join("group_vars")).unwrap();
    std::fs::create_dir_all(d.join("host_vars")).unwrap();
    // A whole vaulted inventory, a !vault value (vault id "prod") and a vaulted host_vars file.
    std::fs::write(
        d.join("hosts"),
        "[db]\ndb1 ansible_port=2222 role=primary\n",
    )
    .unwrap();
    ansible_vault(d, &["encrypt", "--vault-password-file", "pw", "hosts"]);
    let value = ansible_vault(
        d,
        &[
            "encrypt_string",
            "--vault-id",
            "prod@other",
            "s3cr3t-db-pass",
            "--name",
            "db_pass",
        ],
    );
    std::fs::write(d.join("group_vars/db.yml"), format!("plain: 1\n{value}")).unwrap();
    std::fs::write(d.join("host_vars/db1.yml"), "api_token: tok-123456\n").unwrap();
    ansible_vault(
        d,
        &[
            "encrypt",
            "--vault-password-file",
            "pw",
            "host_vars/db1.yml",
        ],
    );

    let args: Vec<String> = ["--vault-id", "default@pw", "--vault-id", "prod@other"]
        .map(String::from)
        .to_vec();
    assert_eq!(compare("vaulted", d, "hosts", &args), None);
    let f = ours(d, "hosts", &args).json.unwrap();
    // A !vault value is listed as its envelope, as ansible-inventory lists it.
    assert!(f["_meta"]["hostvars"]["db1"]["db_pass"]["__ansible_vault"]
        .as_str()
        .unwrap()
        .starts_with("$ANSIBLE_VAULT;1.2;AES256;prod"));
    assert_eq!(f["_meta"]["hostvars"]["db1"]["api_token"], "tok-123456");
    assert_eq!(f["_meta"]["hostvars"]["db1"]["ansible_port"], 2222);

    // Without a password: refused, naming the file (never read as INI of ciphertext).
    let out = fleetbook(&["inventory", "--list", "-i", "hosts"])
        .in_dir(d)
        .env("ANSIBLE_VAULT_PASSWORD_FILE", "")
        .run();
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("hosts: cannot decrypt this vaulted inventory: no vault password was given"),
        "{}",
        out.stderr
    );
    // The password file from the environment, as Ansible reads it; the wrong one fails.
    let out = fleetbook(&[
        "inventory",
        "--host",
        "db1",
        "-i",
        "hosts",
        "--vault-id",
        "prod@other",
    ])
    .in_dir(d)
    .env("ANSIBLE_VAULT_PASSWORD_FILE", "pw")
    .run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = fleetbook(&["inventory", "--list", "-i", "hosts"])
        .in_dir(d)
        .env("ANSIBLE_VAULT_PASSWORD_FILE", "other")
        .run();
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("HMAC mismatch"), "{}", out.stderr);
}
