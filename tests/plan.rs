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

/// `fleetbook plan` of a runbook and an inventory given as text (written to a temporary
/// directory), with `args`; it must exit 0.
fn plan_texts(runbook: &str, inventory: &str, args: &[&str]) -> crate::support::Outcome {
    let dir = tempfile::tempdir().unwrap();
    let rb = dir.path().join("rb.rhai");
    std::fs::write(&rb, runbook).unwrap();
    let inv = dir.path().join("hosts");
    std::fs::write(&inv, inventory).unwrap();
    let mut cmd = fleetbook(&["plan"])
        .arg(rb.display().to_string())
        .arg("-i")
        .arg(inv.display().to_string());
    for a in args {
        cmd = cmd.arg(*a);
    }
    cmd.code(0)
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
    let once = tasks.iter().find(|t| t["id"] == "once:precheck").unwrap();
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
    // Installed from the active controller, as the seed does, then checked there: delegated,
    // so one task of the host it is for.
    assert_eq!(
        install["commands"][0],
        "[on controller-0] sudo -n -- sh -c 'sw-patch host-install worker-3'"
    );
    assert!(install["end"].as_u64() > install["start"].as_u64());
    let deps: Vec<&str> = install["depends_on"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    assert_eq!(deps, ["host:worker-3:lock"]);
    // Lock and unlock only when the patch is reboot-required: the plan shows them skipped
    // unless `--param reboot_required=true` says it is.
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
    for (format, shown) in [
        ("json", "login --token <secret:token>"),
        ("html", "login --token &lt;secret:token&gt;"),
    ] {
        let out = plan_texts(
            "let rb = runbook(\"s\");\nlet t = secret_param(\"token\", \"\");\nrb.step(\"login\", |h| h.run(`login --token ${t}`));\nrb\n",
            "[web]\nweb1 ansible_become_password=hunter2 api_token=abc123\n",
            &["--param", "token=s3cr3t-value", "--format", format],
        );
        for secret in ["s3cr3t-value", "hunter2", "abc123"] {
            assert!(
                !out.stdout.contains(secret),
                "{secret} leaked into the {format} plan"
            );
        }
        assert!(out.stdout.contains(shown), "{format}");
    }
}

/// `(role, max in flight, limit)` of each in-flight lane of an HTML plan.
fn html_lanes(html: &str) -> Vec<(String, usize, Option<usize>)> {
    html.split("<g class=\"lane\" ")
        .skip(1)
        .map(|g| {
            let attr = |name: &str| {
                let start = g.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
                g[start..start + g[start..].find('"').unwrap()].to_string()
            };
            (
                attr("data-role"),
                attr("data-max").parse().unwrap(),
                attr("data-limit").parse().ok(),
            )
        })
        .collect()
}

#[test]
fn html_plans_are_self_contained_pictures_within_the_limits() {
    for (rb, inv) in SHIPPED {
        let html = plan(rb, inv, &["--format", "html"]);
        assert!(html.starts_with("<!DOCTYPE html>"), "{rb}");
        assert!(html.trim_end().ends_with("</html>"), "{rb}");
        for external in ["<script src", " src=", "<link", "@import", "url("] {
            assert!(!html.contains(external), "{rb}: {external}");
        }
        // Its one script is its own, inline (a click on a bar shows the commands).
        assert_eq!(html.matches("<script").count(), 1, "{rb}");
        let p = json(rb, inv, &[]);
        for step in p["runbook"]["steps"].as_array().unwrap() {
            assert!(
                html.contains(step["name"].as_str().unwrap()),
                "{rb}: {step}"
            );
        }
        let lanes = html_lanes(&html);
        let roles = p["roles"].as_array().unwrap();
        assert_eq!(lanes.len(), roles.len(), "{rb}: a lane per role");
        for ((name, max, limit), role) in lanes.iter().zip(roles) {
            assert_eq!(name, role["name"].as_str().unwrap());
            assert_eq!(*limit, role["limit"].as_u64().map(|l| l as usize), "{rb}");
            if let Some(l) = limit {
                assert!(
                    max <= l,
                    "{rb}: {name} draws {max} in flight over its limit {l}"
                );
            }
        }
    }
    // The jiocloud computes: limit 3 of 6, reached.
    let html = plan(
        "jiocloud-rolling",
        "examples/inventories/jiocloud.ini",
        &["--format", "html"],
    );
    let lanes = html_lanes(&html);
    let compute = lanes.iter().find(|l| l.0 == "compute").unwrap();
    assert_eq!(compute.1, compute.2.unwrap(), "{lanes:?}");
}

#[test]
fn html_plans_escape_what_they_show_and_stay_small_on_big_fleets() {
    let out = plan_texts(
        "let rb = runbook(\"big\");\nlet note = param(\"note\", \"\");\nrb.limit(\"web\", 10);\n\
         rb.step(\"say\", |h| h.run(`echo ${sh::quote(note)}`));\nrb\n",
        "[web]\nweb[001:500]\n",
        &[
            "--param",
            "note=<img src=x onerror=alert(1)>",
            "--format",
            "html",
        ],
    );
    assert!(
        !out.stdout.contains("<img"),
        "markup from a parameter is escaped"
    );
    assert!(out.stdout.contains("&lt;img src=x onerror=alert(1)&gt;"));
    // Every host has its row, in a lane that starts folded (a click unfolds it).
    assert_eq!(out.stdout.matches("class=\"row\"").count(), 500);
    assert!(out.stdout.contains(
        "<details class=\"lane\" data-role=\"web\" data-hosts=\"500\" data-bars=\"500\"><summary>"
    ));
    assert_eq!(
        html_lanes(&out.stdout),
        vec![("web".to_string(), 10, Some(10))]
    );
    assert!(out.stdout.len() < 350_000, "{} bytes", out.stdout.len());
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

/// pkg::restore puts back the recorded version, or removes a package the run installed.
#[test]
fn pkg_restore_installs_the_previous_version_or_removes() {
    let out = plan_texts(
        "let rb = runbook(\"r\");\n\
         rb.step(\"back\", |h| {\n\
           h.set_fact(\"previous_version:old\", \"1.0-1\");\n\
           h.set_fact(\"previous_version:new\", \"\");\n\
           pkg::restore(h, \"old\");\n\
           pkg::restore(h, \"new\");\n\
         });\nrb\n",
        "[web]\nweb1 pkg_manager=apt\n",
        &["--format", "json"],
    );
    let p: Value = serde_json::from_str(&out.stdout).unwrap();
    let task = p["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == "host:web1:back")
        .unwrap();
    let commands: Vec<&str> = task["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(commands.len(), 2, "{commands:?}");
    assert!(
        commands[0].ends_with("install --allow-downgrades -- old=1.0-1"),
        "{commands:?}"
    );
    assert!(commands[1].ends_with(" remove -- new"), "{commands:?}");
}

/// The shipped runbooks with parameters that take each of their branches.
const SHIPPED_CASES: &[(&str, &str, &[&str])] = &[
    ("jiocloud-rolling", "examples/inventories/jiocloud.ini", &[]),
    (
        "jiocloud-rolling",
        "examples/inventories/jiocloud.ini",
        &["-p", "converge=apply", "-p", "rolling_compute=0"],
    ),
    ("swh-debian-upgrade", "examples/inventories/swh.ini", &[]),
    (
        "swh-debian-upgrade",
        "examples/inventories/swh.ini",
        &["-p", "migration=swh-migrate", "-p", "config_change=true"],
    ),
    ("starlingx-patch", "examples/inventories/starlingx.yml", &[]),
    (
        "starlingx-patch",
        "examples/inventories/starlingx.yml",
        &[
            "-p",
            "action=remove",
            "-p",
            "storage_apply_type=parallel",
            "-p",
            "worker_apply_type=parallel",
            "-p",
            "reboot_required=true",
            "-p",
            "alarm_restrictions=relaxed",
            "-p",
            "controller_apply_type=ignore",
        ],
    ),
    (
        "starlingx-patch",
        "examples/inventories/starlingx.yml",
        &[
            "-p",
            "patch_source=patch/punch-command-app-6.4.5-jar-with-dependencies.jar",
            "-p",
            "controller_apply_type=ignore",
            "-p",
            "storage_apply_type=ignore",
        ],
    ),
    ("punch-patch", "examples/inventories/punch.ini", &[]),
    (
        "punch-patch",
        "examples/inventories/punch.ini",
        &["-p", "group=kafka_servers"],
    ),
    ("maintenance-mode", "examples/inventories/stratos.toml", &[]),
    (
        "maintenance-mode",
        "examples/inventories/stratos.toml",
        &["-p", "compatible=false", "-p", "mode=replace"],
    ),
];

// The shipped runbooks were rewritten on the stdlib patterns (issue 13) with their plans kept
// command for command: every task of every host, its commands, undo, schedule and
// dependencies, and the steps' options, stay as they were (the snapshots were made before).
#[test]
fn shipped_runbook_plans_stay_command_for_command() {
    for (i, (rb, inv, extra)) in SHIPPED_CASES.iter().enumerate() {
        let mut p = json(rb, inv, extra);
        let steps: Vec<Value> = p["runbook"]["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let mut s = s.clone();
                s.as_object_mut().unwrap().remove("line");
                s
            })
            .collect();
        let tasks = p["tasks"].take();
        insta::assert_json_snapshot!(
            format!("commands-{}-{rb}", i + 1),
            serde_json::json!({ "steps": steps, "tasks": tasks })
        );
    }
}
/// A canary, a gate and an approval after the role, lock-step batches, and a host in two
/// roles: every one of them is marked in the pictures.
const MARKED_RUNBOOK: &str = "let rb = runbook(\"marked\");\n\
rb.order([\"db\", \"web\"]);\n\
rb.limit(\"web\", 2);\n\
rb.batches(true);\n\
rb.canary(\"web\", 1);\n\
rb.max_failures(\"web\", 1);\n\
rb.before_each_host(\"no-alarms\", |h| true);\n\
rb.step(\"upgrade\", |h| h.run(\"apt-get upgrade\"));\n\
rb.gate_after(\"web\", \"healthy\", || true);\n\
rb.approval(\"go-live\", \"web\");\n\
rb\n";
const MARKED_INVENTORY: &str = "[db]\ndb1\nshared1\n\n[web]\nweb[1:5]\nshared1\n";

#[test]
fn canaries_batches_gates_and_approvals_are_marked_in_dot_and_mermaid() {
    for format in ["dot", "mermaid"] {
        let out = plan_texts(MARKED_RUNBOOK, MARKED_INVENTORY, &["--format", format]);
        insta::assert_snapshot!(format!("{format}-marked"), out.stdout);
    }
}

/// Regression: with nested groups (php_cluster and tomcat_cluster are children of members)
/// the step chain was drawn three times, the nested groups hung off the `once` step as if
/// they were first, and `limit_by` showed nowhere in the picture.
#[test]
fn nested_groups_are_drawn_inside_their_role_with_the_steps_once() {
    let dot = plan(
        "maintenance-mode",
        "examples/inventories/stratos.toml",
        &["--format", "dot"],
    );
    assert_eq!(dot.matches("label=\"update\"").count(), 1, "{dot}");
    let members = dot.find("subgraph cluster_r1 {").unwrap();
    let php = dot.find("label=\"php_cluster (3 hosts)").unwrap();
    let close = members + dot[members..].find("\n  }\n").unwrap();
    assert!(
        php > members && php < close,
        "php_cluster inside members: {dot}"
    );
    assert!(
        dot.contains("at most 1 per cluster: php 3, tomcat 4"),
        "{dot}"
    );
    assert!(!dot.contains("once0 -> r2"), "{dot}");
    let mermaid = plan(
        "maintenance-mode",
        "examples/inventories/stratos.toml",
        &["--format", "mermaid"],
    );
    assert_eq!(mermaid.matches("[\"update\"]").count(), 1, "{mermaid}");
    // The JSON plan says which role a nested group is within.
    let p = json("maintenance-mode", "examples/inventories/stratos.toml", &[]);
    let within: Vec<&Value> = p["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["within"])
        .collect();
    assert_eq!(
        within,
        [
            &Value::Null,
            &Value::Null,
            &"members".into(),
            &"members".into()
        ]
    );
    // Commands of the first host of each innermost role: php-1 and tomcat-1, not php-2.
    let text = plan("maintenance-mode", "examples/inventories/stratos.toml", &[]);
    let shown: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("Commands"))
        .filter(|l| l.starts_with("  ") && !l.starts_with("   ") && l.contains(" ("))
        .collect();
    assert_eq!(
        shown,
        [
            "  php-1 (members, php_cluster)",
            "  tomcat-1 (members, tomcat_cluster)"
        ]
    );
}

/// The StarlingX runbook's graph stays readable: roles stacked top to bottom, each role's
/// steps on one rank, so it is never one very wide line.
#[test]
fn starlingx_dot_is_laid_out_role_by_role() {
    let dot = plan(
        "starlingx-patch",
        "examples/inventories/starlingx.yml",
        &["--format", "dot"],
    );
    assert!(dot.contains("rankdir=TB"), "{dot}");
    assert_eq!(dot.matches("{ rank=same;").count(), 3, "{dot}");
    let out = std::process::Command::new("dot")
        .args(["-Tplain"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(dot.as_bytes())?;
            c.wait_with_output()
        })
        .expect("Graphviz's dot runs (apt-get install graphviz; ./test.sh does)");
    // `graph SCALE WIDTH HEIGHT` in inches: taller than a strip, no wider than a screen.
    let head: Vec<f64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap()
        .split(' ')
        .skip(2)
        .map(|x| x.parse().unwrap())
        .collect();
    assert!(head[0] < 20.0 && head[1] > 5.0, "{head:?} inches");
}
