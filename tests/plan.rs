//! `fleetbook plan` of every shipped runbook against its shipped inventory, in every format.

use crate::support::{fleetbook, redact_digests};
use serde_json::Value;

const SHIPPED: &[(&str, &str)] = &[
    ("jiocloud-rolling", "examples/inventories/jiocloud.ini"),
    ("swh-debian-upgrade", "examples/inventories/swh.ini"),
    ("starlingx-patch", "examples/inventories/starlingx.yml"),
    ("punch-patch", "examples/inventories/punch.ini"),
    ("maintenance-mode", "examples/inventories/stratos.toml"),
];

fn plan(runbook: &str, inventory: &str, extra: &[&str]) -> String {
    let path = format!("runbooks/{runbook}.rhai");
    let mut cmd = fleetbook(&["plan", &path, "-i", inventory]);
    for a in extra {
        cmd = cmd.arg(*a);
    }
    let out = cmd.code(0);
    out.stdout
}

fn json(runbook: &str, inventory: &str, extra: &[&str]) -> Value {
    let mut args = vec!["--format", "json"];
    args.extend_from_slice(extra);
    serde_json::from_str(&plan(runbook, inventory, &args)).expect("plan JSON parses")
}

#[test]
fn text_plans_of_shipped_runbooks() {
    for (rb, inv) in SHIPPED {
        insta::assert_snapshot!(format!("text-{rb}"), redact_digests(&plan(rb, inv, &[])));
    }
}

#[test]
fn dot_and_mermaid_of_shipped_runbooks() {
    for (rb, inv) in SHIPPED {
        insta::assert_snapshot!(format!("dot-{rb}"), plan(rb, inv, &["--format", "dot"]));
        insta::assert_snapshot!(
            format!("mermaid-{rb}"),
            plan(rb, inv, &["--format", "mermaid"])
        );
    }
}

#[test]
fn json_plan_holds_the_documented_fields() {
    let p = json("starlingx-patch", "examples/inventories/starlingx.yml", &[]);
    assert_eq!(p["schema_version"], 1);
    for key in [
        "runbook",
        "params",
        "limits",
        "inventory_digest",
        "runbook_digest",
        "hosts",
        "tasks",
        "duration",
    ] {
        assert!(!p[key].is_null(), "missing {key}");
    }
    assert!(p["runbook_digest"].as_str().unwrap().starts_with("sha256:"));
    let tasks = p["tasks"].as_array().unwrap();
    let once = tasks
        .iter()
        .find(|t| t["id"] == "once:alarm-precheck")
        .unwrap();
    assert!(once["host"].is_null());
    assert_eq!(
        once["commands"][0].as_str().unwrap().split(':').next(),
        Some("controller-0")
    );
    let install = tasks
        .iter()
        .find(|t| t["id"] == "host:worker-3:host-install")
        .unwrap();
    assert_eq!(install["host"], "worker-3");
    assert_eq!(install["role"], "worker");
    assert_eq!(
        install["commands"][0],
        "sudo -n -- sh -c 'sw-patch host-install-local'"
    );
    assert!(install["end"].as_u64() > install["start"].as_u64());
    let deps: Vec<&str> = install["depends_on"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    assert_eq!(deps, ["host:worker-3:lock"]);
    // Conditional steps whose condition is false at plan time are marked skipped.
    let lock = tasks
        .iter()
        .find(|t| t["id"] == "host:worker-3:lock")
        .unwrap();
    assert_eq!(lock["skipped"], true);
    // Every task id is unique and every dependency exists.
    let ids: std::collections::HashSet<&str> =
        tasks.iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), tasks.len());
    for t in tasks {
        for d in t["depends_on"].as_array().unwrap() {
            assert!(
                ids.contains(d.as_str().unwrap()),
                "{} depends on missing {d}",
                t["id"]
            );
        }
    }
}

#[test]
fn storage_in_parallel_is_one_per_replication_group() {
    let p = json(
        "starlingx-patch",
        "examples/inventories/starlingx.yml",
        &["--param", "storage_apply_type=parallel"],
    );
    let start = |h: &str| {
        p["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == h)
            .unwrap()["start"]
            .as_u64()
            .unwrap()
    };
    // storage-0 and storage-2 are in different replication groups: they start together.
    assert_eq!(start("storage-0"), start("storage-2"));
    assert!(start("storage-1") > start("storage-0"));
    assert_eq!(p["limits"]["limit_by"][0]["var"], "replication_group");
}

#[test]
fn limit_pattern_selects_hosts() {
    let p = json(
        "jiocloud-rolling",
        "examples/inventories/jiocloud.ini",
        &["--limit", "compute:!cmp01*:!cmp09.dc1"],
    );
    let names: Vec<&str> = p["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 7, "{names:?}");
    assert!(!names.contains(&"cmp09.dc1"));
    assert_eq!(p["limit_pattern"], "compute:!cmp01*:!cmp09.dc1");
}

#[test]
fn secrets_never_reach_the_plan() {
    let dir = tempfile::tempdir().unwrap();
    let rb = dir.path().join("secret.rhai");
    std::fs::write(&rb, "let rb = runbook(\"s\");\nlet t = secret_param(\"token\", \"\");\nrb.step(\"login\", |h| h.run(`login --token ${t}`));\nrb\n").unwrap();
    let inv = dir.path().join("hosts");
    std::fs::write(
        &inv,
        "[web]\nweb1 ansible_become_password=hunter2 api_token=abc123\n",
    )
    .unwrap();
    let out = fleetbook(&["plan"])
        .arg(rb.display().to_string())
        .arg("-i")
        .arg(inv.display().to_string())
        .arg("--param")
        .arg("token=s3cr3t-value")
        .arg("--format")
        .arg("json")
        .code(0);
    for secret in ["s3cr3t-value", "hunter2", "abc123"] {
        assert!(
            !out.stdout.contains(secret),
            "{secret} leaked into the plan"
        );
    }
    assert!(out.stdout.contains("login --token <secret:token>"));
}

#[test]
fn output_file_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plan.json");
    let out = fleetbook(&[
        "plan",
        "runbooks/punch-patch.rhai",
        "-i",
        "examples/inventories/punch.ini",
        "--format",
        "json",
        "-o",
    ])
    .arg(file.display().to_string())
    .code(0);
    assert_eq!(out.stdout, "");
    assert!(out.stderr.contains("written to"), "{}", out.stderr);
    let p: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(p["runbook"]["name"], "punch-patch");
    assert!(p["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| !t["undo_commands"].is_null()));
}
