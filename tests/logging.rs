//! The structured log (`tracing`): the binary chooses where it goes. By default standard
//! error shows only what runbooks print; `-v` every task transition; `--log-file` JSON Lines
//! with the run, host and task of every line; never a secret.

use crate::journal::local;

#[test]
fn the_log_file_has_run_host_and_task_spans_and_no_secret() {
    let rb = "let rb = runbook(\"t\");\nlet token = secret_param(\"token\", \"\");\n\
              rb.once(\"hello\", || print(`hello ${token}`));\n\
              rb.step(\"work\", |h| h.run(`echo ${token} > /dev/null`));\nrb\n";
    let l = local(&[("web", &["w1", "w2"])], rb);
    let log = l.dir.path().join("log.jsonl");
    let secret = "s3cr3t-t0ken-value";
    let token = format!("token={secret}");
    let out = l.cmd(
        "run",
        &[
            "--yes",
            "-p",
            &token,
            "--log-file",
            log.to_str().unwrap(),
            "-vv",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains(secret), "a secret reached the log file");
    assert!(
        !out.stderr.contains(secret),
        "a secret reached standard error"
    );
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object a line"))
        .collect();
    let id = l.run_id();
    // A command of w2's task, inside the run, host and task spans.
    let command = lines
        .iter()
        .find(|v| v["fields"]["message"] == "command starts" && v["fields"]["host"] == "w2")
        .expect("a command start for w2");
    let spans: Vec<&str> = command["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(spans, ["run", "host", "task"], "{command}");
    assert_eq!(command["spans"][0]["run"], id.as_str());
    assert_eq!(command["spans"][1]["host"], "w2");
    assert_eq!(command["spans"][2]["task"], "host:w2:work");
    assert!(lines
        .iter()
        .any(|v| v["fields"]["state"] == "ok" && v["fields"]["task"] == "host:w1:work"));
    // The runbook's print, with where in the runbook it was called (line 3, column 21).
    let print = lines
        .iter()
        .find(|v| v["fields"]["message"] == "runbook: hello <secret:token>")
        .expect("the runbook's print");
    let at = print["fields"]["script"].as_str().unwrap();
    assert!(at.ends_with(".rhai:3:21"), "{print}");
    // -vv on standard error too; the runbook's print, redacted.
    assert!(
        out.stderr.contains("runbook: hello <secret:token>"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("task ok"), "{}", out.stderr);
}

#[test]
fn without_v_only_runbook_output_reaches_standard_error() {
    let rb = "let rb = runbook(\"t\");\nrb.once(\"hello\", || print(\"hello\"));\nrb.step(\"work\", |h| h.run(\"true\"));\nrb\n";
    let l = local(&[("web", &["w1"])], rb);
    let out = l.cmd("run", &["--yes"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("runbook: hello\n"), "{}", out.stderr);
    assert!(!out.stderr.contains("task ok"), "{}", out.stderr);
    assert!(!out.stderr.contains("INFO"), "{}", out.stderr);
    let bad = l
        .command("runs", &[])
        .env("FLEETBOOK_LOG", "fleetbook=[")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("FLEETBOOK_LOG"));
}

#[test]
fn planning_logs_what_it_read_and_built_to_the_log_file() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("plan.jsonl");
    let out = crate::support::fleetbook(&[
        "-v",
        "plan",
        "runbooks/jiocloud-rolling.rhai",
        "-i",
        "examples/inventories/jiocloud.ini",
        "--log-file",
        log.to_str().unwrap(),
    ])
    .code(0);
    assert!(out.stderr.contains("plan built"), "{}", out.stderr);
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object a line"))
        .collect();
    let event = |m: &str| {
        lines
            .iter()
            .find(|v| v["fields"]["message"] == m)
            .unwrap_or_else(|| panic!("no {m:?} in {lines:?}"))
            .clone()
    };
    assert_eq!(event("runbook compiled")["fields"]["steps"], 3);
    assert_eq!(event("inventory loaded")["fields"]["hosts"], 12);
    let built = event("plan built");
    assert_eq!(built["fields"]["hosts"], 12);
    assert!(built["fields"]["tasks"].as_u64().unwrap() > 12, "{built}");
    assert_eq!(
        built["span"]["runbook"], "runbooks/jiocloud-rolling.rhai",
        "{built}"
    );
}
