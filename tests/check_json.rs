//! `fleetbook check --format json` on the adversarial inputs of the trust issue (issue 10) and
//! tests/fixtures/bad: every error comes with its file, a range of 1-based lines and columns,
//! a severity, a code and the message; the exit status is the text format's.

use crate::support::{fleetbook, root};
use serde_json::Value;
use std::path::Path;

/// Runs `check --format json ARGS...`, expects `code`, and returns the diagnostics.
fn diagnostics(args: &[&str], code: i32) -> Vec<Value> {
    let cmd = args
        .iter()
        .fold(fleetbook(&["check", "--format", "json"]), |c, a| c.arg(*a));
    let out = cmd.code(code);
    assert_eq!(out.stderr, "", "everything is in the JSON");
    let v: Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout));
    let list = v["diagnostics"]
        .as_array()
        .expect("a diagnostics list")
        .clone();
    for d in &list {
        for key in ["file", "severity", "code", "message"] {
            assert!(
                d[key].as_str().is_some_and(|s| !s.is_empty()),
                "{key} in {d}"
            );
        }
        for end in ["start", "end"] {
            for k in ["line", "col"] {
                assert!(d["range"][end][k].as_u64().is_some_and(|n| n >= 1), "{d}");
            }
        }
    }
    list
}

/// The one error of a failed check: file, start line:col, code.
fn error(args: &[&str]) -> (String, String, Value) {
    let list = diagnostics(args, 2);
    assert_eq!(list.len(), 1, "{list:?}");
    let d = list.into_iter().next().unwrap();
    assert_eq!(d["severity"], "error");
    let start = &d["range"]["start"];
    let at = format!(
        "{}:{}:{}",
        d["file"].as_str().unwrap(),
        start["line"],
        start["col"]
    );
    (at, d["code"].as_str().unwrap().to_string(), d)
}

fn bad(name: &str) -> String {
    format!("tests/fixtures/bad/{name}")
}

#[test]
fn every_bad_fixture_has_a_place_and_a_code() {
    let cases: &[(&[&str], &str, &str)] = &[
        (
            &[&bad("syntax.rhai")],
            "tests/fixtures/bad/syntax.rhai:3:1",
            "syntax",
        ),
        (
            &[&bad("cycle.rhai")],
            "tests/fixtures/bad/cycle.rhai:4:4",
            "cycle",
        ),
        (
            &[&bad("escape.rhai")],
            "tests/fixtures/bad/escape.rhai:1:8",
            "import",
        ),
        (
            &[&bad("loop.rhai")],
            "tests/fixtures/bad/loop.rhai:3:19",
            "script-limit",
        ),
        (
            &[&bad("unknown-role.rhai"), "-i", "tests/fixtures/small.ini"],
            "tests/fixtures/bad/unknown-role.rhai:2:4",
            "unknown-role",
        ),
        (
            &[
                "runbooks/jiocloud-rolling.rhai",
                "-i",
                &bad("inventory.ini"),
            ],
            "tests/fixtures/bad/inventory.ini:3:1",
            "inventory",
        ),
        (
            &[
                "runbooks/jiocloud-rolling.rhai",
                "-i",
                &bad("inventory.yml"),
            ],
            "tests/fixtures/bad/inventory.yml:4:14",
            "inventory",
        ),
        (
            &[
                "runbooks/jiocloud-rolling.rhai",
                "-i",
                &bad("inventory.toml"),
            ],
            "tests/fixtures/bad/inventory.toml:3:15",
            "inventory",
        ),
        (
            &[
                "runbooks/jiocloud-rolling.rhai",
                "--param",
                "verison=2025.1",
            ],
            "runbooks/jiocloud-rolling.rhai:1:1",
            "parameter",
        ),
        (&["no/such.rhai"], "no/such.rhai:1:1", "read"),
    ];
    for (args, at, code) in cases {
        let (got_at, got_code, d) = error(args);
        assert_eq!(
            (got_at.as_str(), got_code.as_str()),
            (*at, *code),
            "{args:?}: {d}"
        );
    }
    // The cycle's other edges are related places.
    let (_, _, d) = error(&[&bad("cycle.rhai")]);
    let lines: Vec<u64> = d["related"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["range"]["start"]["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [2, 3], "{d}");
    assert_eq!(d["range"]["end"]["col"], 9, "the whole `after`: {d}");
    assert_eq!(d["help"], "remove one of these order edges");
}

/// A runbook (and more files) in a fresh directory.
fn case(files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

fn at(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

#[test]
fn the_trust_issues_bad_runbooks_have_a_place_and_a_code() {
    let rb = |body: &str| format!("let rb = runbook(\"x\");\n{body}\nrb\n");
    // Files, where the error is (file, line, column), its code.
    type Case<'a> = (Vec<(&'a str, Vec<u8>)>, (&'a str, usize, usize), &'a str);
    let cases: Vec<Case> = vec![
        // An import cycle.
        (
            vec![
                (
                    "rb.rhai",
                    b"import \"a\" as a;\nlet rb = runbook(\"x\");\nrb\n".to_vec(),
                ),
                ("a.rhai", b"import \"b\" as b;\nfn x() { 1 }\n".to_vec()),
                ("b.rhai", b"// b\nimport \"a\" as a;\n".to_vec()),
            ],
            ("b.rhai", 2, 8),
            "import",
        ),
        // An import that resolves nowhere.
        (
            vec![(
                "rb.rhai",
                b"import \"nowhere\" as n;\nlet rb = runbook(\"x\");\nrb\n".to_vec(),
            )],
            ("rb.rhai", 1, 8),
            "import",
        ),
        // `.timeout("0s")`.
        (
            vec![(
                "rb.rhai",
                rb("rb.step(\"s\", |h| h.run(\"x\")).timeout(\"0s\");").into_bytes(),
            )],
            ("rb.rhai", 2, 30),
            "script",
        ),
        // A closure that uses the runbook variable (Rhai gives it no position).
        (
            vec![(
                "rb.rhai",
                rb("rb.step(\"s\", |h| { rb.limit(\"*\", 1); h.run(\"x\") });").into_bytes(),
            )],
            ("rb.rhai", 1, 1),
            "script",
        ),
        // Not UTF-8: the first bad byte.
        (
            vec![("rb.rhai", b"let rb = runbook(\"\xff\");\n".to_vec())],
            ("rb.rhai", 1, 19),
            "read",
        ),
        // Unknown module, function, variable at the top level.
        (
            vec![("rb.rhai", rb("nosuch::f(1);").into_bytes())],
            ("rb.rhai", 2, 1),
            "unknown-module",
        ),
        (
            vec![("rb.rhai", rb("nosuch(1);").into_bytes())],
            ("rb.rhai", 2, 1),
            "unknown-function",
        ),
        (
            vec![("rb.rhai", rb("let y = x + 1;").into_bytes())],
            ("rb.rhai", 2, 9),
            "unknown-variable",
        ),
        // No runbook returned.
        (
            vec![("rb.rhai", b"let rb = runbook(\"x\");\n".to_vec())],
            ("rb.rhai", 1, 1),
            "no-runbook",
        ),
    ];
    for (files, (file, line, col), code) in cases {
        let files: Vec<(&str, &[u8])> = files.iter().map(|(n, t)| (*n, t.as_slice())).collect();
        let dir = case(&files);
        let (got, got_code, d) = error(&[&at(dir.path(), "rb.rhai")]);
        assert_eq!(
            (got, got_code.as_str()),
            (format!("{}:{line}:{col}", at(dir.path(), file)), code),
            "{d}"
        );
    }
}

#[test]
fn an_error_in_an_imported_module_is_at_its_place_there() {
    let dir = case(&[
        (
            "rb.rhai",
            b"import \"lib\" as lib;\nlet rb = runbook(\"x\");\nrb\n",
        ),
        ("lib.rhai", b"fn ok() { 1 }\nlet = 2;\n"),
    ]);
    let (got, code, _) = error(&[&at(dir.path(), "rb.rhai")]);
    assert_eq!(got, format!("{}:2:5", at(dir.path(), "lib.rhai")));
    assert_eq!(code, "syntax");
}

#[test]
fn a_good_runbook_gives_an_empty_list_and_warnings_are_warnings() {
    let list = diagnostics(&["runbooks/jiocloud-rolling.rhai"], 0);
    assert_eq!(list, Vec::<Value>::new());
    let dir = case(&[
        (
            "rb.rhai",
            b"let rb = runbook(\"x\");\nrb.limit(\"db\", 1);\nrb.step(\"s\", |h| h.run(\"x\"));\nrb\n",
        ),
        ("hosts", b"[web]\nw1\n[db]\n"),
    ]);
    let list = diagnostics(
        &[&at(dir.path(), "rb.rhai"), "-i", &at(dir.path(), "hosts")],
        0,
    );
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["severity"], "warning");
    assert!(
        list[0]["message"].as_str().unwrap().contains("role \"db\""),
        "{list:?}"
    );
    // The text format is unchanged: the summary on stdout, warnings on stderr.
    let out = fleetbook(&["check"])
        .arg(at(dir.path(), "rb.rhai"))
        .arg("-i")
        .arg(at(dir.path(), "hosts"))
        .code(0);
    assert!(
        out.stdout.starts_with("ok: runbook \"x\""),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.starts_with("warning: role \"db\""),
        "{}",
        out.stderr
    );
    assert!(root().join("runbooks").is_dir());
}

// A typo in a step's closure ran into no check: the closure runs only when planned. It is a
// warning at its place now, in `check` and its JSON alike.
#[test]
fn an_unknown_function_in_a_step_is_a_warning_at_its_place() {
    let dir = case(&[(
        "rb.rhai",
        b"let rb = runbook(\"x\");\nrb.step(\"s\", |h| pkg::upgarde(h, [\"nginx\"]));\nrb\n",
    )]);
    let list = diagnostics(&[&at(dir.path(), "rb.rhai")], 0);
    assert_eq!(list.len(), 1, "{list:?}");
    let d = &list[0];
    assert_eq!(d["severity"], "warning");
    assert_eq!(d["code"], "unknown-function");
    assert_eq!(
        d["range"],
        serde_json::json!({"start": {"line": 2, "col": 18}, "end": {"line": 2, "col": 30}})
    );
    assert!(
        d["message"]
            .as_str()
            .unwrap()
            .starts_with("unknown function pkg::upgarde: pkg:: has dist_upgrade, install"),
        "{d}"
    );
    let out = fleetbook(&["check"]).arg(at(dir.path(), "rb.rhai")).code(0);
    assert!(
        out.stderr.starts_with(&format!(
            "warning: {}:2:18: unknown function pkg::upgarde",
            at(dir.path(), "rb.rhai")
        )),
        "{}",
        out.stderr
    );
}
