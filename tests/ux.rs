//! What a sysadmin meets in the first hour (issue 18): the confirmation's summary, colours,
//! man pages on a fresh machine, and the `--events jsonl` schema of docs/events.md.

use crate::journal::local;
use crate::support::{fleetbook, root};
use serde_json::Value;

const RUNBOOK: &str = r#"let rb = runbook("ux");
rb.order(["controller", "compute"]);
rb.limit("compute", 1);
rb.max_failures("compute", 1);
rb.once("pre", || host("ctl1").run("true"));
rb.before_role("compute", "drain", || host("ctl1").run("true"));
rb.step("work", |h| h.run(`[ ! -e ${h.var("dir")}/broken ]`)).retries(1).retry_delay("0s");
rb.step("optional", |h| h.run("true")).when(|h| h.name != "cmp2");
rb.gate_after("controller", "api-up", || true);
rb.approval("go", "controller");
rb.after_role("compute", "undrain", || host("ctl1").run("true"));
rb.finally("end", || host("ctl1").run("true"));
rb
"#;

// The confirmation showed one line ("runbook x on 3 hosts, ...; roles: ..."): not the limits,
// budgets or approvals it was asking the operator to accept; and "1 hosts".
#[test]
fn the_confirmation_shows_the_plans_summary() {
    let l = local(
        &[("controller", &["ctl1"]), ("compute", &["cmp1", "cmp2"])],
        RUNBOOK,
    );
    let out = l.cmd("run", &["--limit", "all:!cmp2"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    let summary: Vec<&str> = out
        .stderr
        .lines()
        .take_while(|l| !l.contains("×"))
        .collect();
    let text = summary.join("\n");
    assert!(text.starts_with("runbook ux on 2 hosts, "), "{text}");
    for want in [
        "  limit      all:!cmp2",
        "  roles      controller  1 host  no limit",
        "             compute     1 host  limit 1, max failures 1, after controller",
        "  approvals  go (",
    ] {
        assert!(
            summary.iter().any(|l| l.starts_with(want)),
            "no {want:?} in:\n{text}"
        );
    }
    assert!(
        summary.iter().any(|l| l.starts_with("  policy     ")),
        "{text}"
    );
    assert!(!text.contains("1 hosts"), "{text}");
}

fn schema() -> Value {
    let text = std::fs::read_to_string(root().join("docs/events.md")).unwrap();
    let block = text
        .split("```json\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .find(|b| b.contains("\"$schema\""))
        .expect("docs/events.md has a JSON Schema block");
    serde_json::from_str(block).expect("the schema in docs/events.md is JSON")
}

/// Checks `v` against the JSON Schema keywords docs/events.md uses (type, const, enum,
/// required, properties, additionalProperties, minimum, minLength), and fails on any other
/// keyword so that the schema cannot outgrow this check unnoticed. A hand check rather than
/// the `jsonschema` crate: that would bring some sixty crates to the build for these eight
/// keywords.
fn validate(schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    let s = schema.as_object().unwrap();
    for (k, want) in s {
        match k.as_str() {
            "$schema" | "$id" | "title" | "properties" => {}
            "type" => {
                let types: Vec<&str> = match want {
                    Value::String(t) => vec![t.as_str()],
                    Value::Array(ts) => ts.iter().map(|t| t.as_str().unwrap()).collect(),
                    _ => panic!("type {want}"),
                };
                let ok = types.iter().any(|t| match *t {
                    "string" => v.is_string(),
                    "number" => v.is_number(),
                    "integer" => v.is_u64() || v.is_i64(),
                    "null" => v.is_null(),
                    "object" => v.is_object(),
                    other => panic!("type {other}"),
                });
                if !ok {
                    return Err(format!("{at}: {v} is not {want}"));
                }
            }
            "const" if v != want => return Err(format!("{at}: {v} is not {want}")),
            "const" => {}
            "enum" if !want.as_array().unwrap().contains(v) => {
                return Err(format!("{at}: {v} is not one of {want}"))
            }
            "enum" => {}
            "minimum" if v.as_f64().unwrap_or(f64::MIN) < want.as_f64().unwrap() => {
                return Err(format!("{at}: {v} < {want}"))
            }
            "minimum" => {}
            "minLength"
                if v.as_str().unwrap_or("").chars().count() < want.as_u64().unwrap() as usize =>
            {
                return Err(format!("{at}: {v} is shorter than {want}"))
            }
            "minLength" => {}
            "required" => {
                for r in want.as_array().unwrap() {
                    if v.get(r.as_str().unwrap()).is_none() {
                        return Err(format!("{at}: no {r}"));
                    }
                }
            }
            "additionalProperties" => {
                assert_eq!(want, &Value::Bool(false));
                let props = s["properties"].as_object().unwrap();
                for key in v.as_object().unwrap().keys() {
                    if !props.contains_key(key) {
                        return Err(format!("{at}: undocumented field {key:?}"));
                    }
                }
            }
            other => panic!("the check does not know the keyword {other:?}"),
        }
    }
    if let (Some(props), Some(obj)) = (s.get("properties"), v.as_object()) {
        for (key, sub) in props.as_object().unwrap() {
            if let Some(val) = obj.get(key) {
                validate(sub, val, &format!("{at}.{key}"))?;
            }
        }
    }
    Ok(())
}

// The events had no documented schema and no version: a consumer could only guess.
#[test]
fn every_event_of_a_real_run_matches_the_documented_schema() {
    let schema = schema();
    // The check itself catches what it should.
    let good: Value = serde_json::from_str(
        r#"{"schema_version":1,"at":0.5,"task":"t","kind":"host","host":"a","step":"s","role":null,"state":"ok","attempt":1}"#,
    )
    .unwrap();
    assert_eq!(validate(&schema, &good, "good"), Ok(()));
    for (field, bad) in [
        ("state", Value::from("done")),
        ("attempt", Value::from(-1)),
        ("attempt", Value::from(1.5)),
        ("host", Value::from(3)),
        ("extra", Value::from(1)),
        ("schema_version", Value::from(2)),
    ] {
        let mut e = good.clone();
        e[field] = bad;
        assert!(validate(&schema, &e, "bad").is_err(), "{e} passed");
    }

    let l = local(
        &[("controller", &["ctl1"]), ("compute", &["cmp1", "cmp2"])],
        RUNBOOK,
    );
    std::fs::write(l.file("cmp1", "broken"), "").unwrap();
    let out = l.cmd("run", &["--yes", "--approve", "go", "--events", "jsonl"]);
    assert_eq!(out.code, 5, "{}", out.stderr);
    let events: Vec<Value> = out
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}")))
        .collect();
    for (i, e) in events.iter().enumerate() {
        if let Err(why) = validate(&schema, e, &format!("event {i}")) {
            panic!("{why}\n{e}");
        }
    }
    // The run went through the transitions a reader must handle.
    let seen = |field: &str| -> std::collections::BTreeSet<String> {
        events
            .iter()
            .map(|e| e[field].as_str().unwrap().to_string())
            .collect()
    };
    for state in ["running", "ok", "failed", "retrying", "skipped"] {
        assert!(
            seen("state").contains(state),
            "no {state} event: {:?}",
            seen("state")
        );
    }
    for kind in [
        "once",
        "before_role",
        "host",
        "after_role",
        "gate",
        "approval",
        "finally",
    ] {
        assert!(
            seen("kind").contains(kind),
            "no {kind} event: {:?}",
            seen("kind")
        );
    }
}

// `fleetbook man` printed one page that named fleetbook-run(1) and others that did not exist;
// and the README's install commands failed where ~/.local/share/man/man1 did not exist.
#[test]
fn man_o_writes_a_page_per_subcommand_into_a_new_directory() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("share/man/man1");
    let out = fleetbook(&["man", "-o"])
        .arg(target.display().to_string())
        .run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let run = std::fs::read_to_string(target.join("fleetbook-run.1")).unwrap();
    assert!(
        run.contains(".SH \"EXIT STATUS\"") || run.contains(".SH EXIT STATUS"),
        "{run}"
    );
    assert!(run.contains("FLEETBOOK_STATE"), "{run}");
    let top = std::fs::read_to_string(target.join("fleetbook.1")).unwrap();
    for name in ["run", "plan", "exec", "resume", "man"] {
        assert!(top.contains(&format!("fleetbook\\-{name}(1)")), "{top}");
        assert!(
            target.join(format!("fleetbook-{name}.1")).is_file(),
            "{name}"
        );
    }
}

// There was no way to turn colours off but NO_COLOR, nor to force them into a pager.
#[test]
fn color_flag_and_no_color() {
    let esc = |o: &crate::support::Outcome| o.stderr.contains('\u{1b}');
    let always = fleetbook(&["--color", "always", "plan", "nosuch.rhai", "-i", "x"]).run();
    assert_eq!(always.code, 2);
    assert!(esc(&always), "{}", always.stderr);
    let never = fleetbook(&["--color=never", "plan", "nosuch.rhai", "-i", "x"]).run();
    assert!(!esc(&never), "{}", never.stderr);
    let no_color = fleetbook(&["plan", "nosuch.rhai"])
        .env("NO_COLOR", "1")
        .run();
    assert!(!esc(&no_color), "{}", no_color.stderr);
    // An unknown subcommand is clap's own error: coloured by the same choice.
    let clap_err = fleetbook(&["--color", "always", "nosuch"]).run();
    assert_eq!(clap_err.code, 2);
    assert!(esc(&clap_err), "{}", clap_err.stderr);
    let bad = fleetbook(&["--color", "sometimes", "runs"]).run();
    assert_eq!(bad.code, 2, "{}", bad.stderr);
}

// `rolling::upgrade_to(h, ["nginx"], "1.24.0-2")` planned `install --only-upgrade -- nginx`:
// the version was only checked afterwards, so a run upgraded to whatever was newest.
#[test]
fn rolling_upgrade_to_installs_the_version_it_names() {
    let l = local(
        &[("web", &["w1"])],
        "import \"rolling\" as rolling;\nlet rb = runbook(\"u\");\nrb.step(\"up\", |h| rolling::upgrade_to(h, [\"nginx\"], \"1.24.0-2\"));\nrb.step(\"any\", |h| rolling::upgrade_to(h, [\"curl\"], \"\"));\nrb\n",
    );
    let out = fleetbook(&["plan"])
        .arg(l.rb.display().to_string())
        .arg("-i")
        .arg(l.inv.display().to_string())
        .arg("--format")
        .arg("json")
        .run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let plan: Value = serde_json::from_str(&out.stdout).unwrap();
    let commands = |id: &str| -> String {
        let task = plan["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == id)
            .unwrap();
        task["commands"].to_string()
    };
    let up = commands("host:w1:up");
    assert!(
        up.contains("install --allow-downgrades -- nginx=1.24.0-2"),
        "{up}"
    );
    assert!(!up.contains("--only-upgrade"), "{up}");
    let any = commands("host:w1:any");
    assert!(any.contains("--only-upgrade -- curl"), "{any}");
}

// `file::exists` is true in a plan, silently: a step that branched on it planned the branch
// where the file exists, and nothing said so.
#[test]
fn a_plan_warns_that_file_exists_was_assumed_true() {
    let l = local(
        &[("web", &["w1", "w2"])],
        "let rb = runbook(\"e\");\nrb.step(\"s\", |h| if file::exists(h, \"/etc/app.conf\") { h.run(\"true\") });\nrb\n",
    );
    let out = fleetbook(&["plan"])
        .arg(l.rb.display().to_string())
        .arg("-i")
        .arg(l.inv.display().to_string())
        .run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "warning: hosts w1, w2: in this plan file::exists(\"/etc/app.conf\") is true \
             (nothing is checked before the run); the run may take the other branch"
        ),
        "{}",
        out.stderr
    );
}

/// What fleetbook answers when a shell asks it to complete the last of `words` (the
/// protocol of `fleetbook completions bash`: `COMPLETE=bash fleetbook -- WORDS...`).
fn completions(dir: &std::path::Path, env: &[(&str, &str)], words: &[&str]) -> Vec<String> {
    let index = words.len().to_string();
    let mut cmd = fleetbook(&["--", "fleetbook"])
        .in_dir(dir)
        .env("COMPLETE", "bash")
        .env("_CLAP_COMPLETE_INDEX", &index)
        .env("_CLAP_IFS", "\n");
    for w in words {
        cmd = cmd.arg(*w);
    }
    for (k, v) in env {
        cmd = cmd.env(k, v);
    }
    let out = cmd.code(0);
    assert_eq!(out.stderr, "");
    out.stdout.lines().map(str::to_string).collect()
}

// Completions knew subcommands and options only: not the run ids, approval names and host
// patterns a user types most.
#[test]
fn completions_offer_run_ids_gate_names_and_inventory_groups() {
    let l = local(
        &[("controller", &["ctl1"]), ("compute", &["cmp1", "cmp2"])],
        RUNBOOK,
    );
    let out = l.cmd("run", &["--yes", "--approve", "go"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let id = l.run_id();
    let dir = l.dir.path();
    let state = l.state.to_str().unwrap();
    let (rb, inv) = (l.rb.to_str().unwrap(), l.inv.to_str().unwrap());
    let has = |got: &[String], want: &str| {
        assert!(got.iter().any(|g| g == want), "no {want:?} in {got:?}");
    };

    // Run ids from the store in force: --state on the line, or $FLEETBOOK_STATE.
    has(
        &completions(dir, &[], &["status", "--state", state, ""]),
        &id,
    );
    let env = [("FLEETBOOK_STATE", state)];
    has(&completions(dir, &env, &["resume", &id[..4]]), &id);
    // Approval names: the run's, and the runbook's for `run --approve`.
    has(
        &completions(dir, &env, &["approve", &id, "--gate", ""]),
        "go",
    );
    has(&completions(dir, &[], &["run", rb, "--approve", ""]), "go");
    // Host patterns from `-i` on the line: groups and hosts, after what is typed.
    let got = completions(dir, &[], &["plan", rb, "-i", inv, "--limit", "all:!c"]);
    for want in ["all:!controller", "all:!compute", "all:!cmp2"] {
        has(&got, want);
    }
    assert!(got.iter().all(|g| g.starts_with("all:!c")), "{got:?}");

    // In a project, without flags: the project file's inventory and state.
    std::fs::write(
        dir.join("fleetbook.toml"),
        "inventory = \"hosts\"\nstate = \"state\"\n",
    )
    .unwrap();
    has(&completions(dir, &[], &["exec", ""]), "compute");
    has(&completions(dir, &[], &["abort", ""]), &id);
    // The run's own hosts for `rollback --limit`.
    has(
        &completions(dir, &[], &["rollback", &id, "--limit", "cmp"]),
        "cmp1",
    );
}
