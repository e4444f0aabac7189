//! `fleetbook lsp` spoken to over stdio as an editor would: JSON-RPC messages with
//! Content-Length headers, answers checked for exact ranges and contents.

use crate::support::fleetbook;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

struct Client {
    child: Child,
    stdin: ChildStdin,
    messages: Receiver<Value>,
    next_id: i64,
}

impl Client {
    fn start(dir: &Path) -> Client {
        let argv = fleetbook(&["lsp"]).argv();
        let mut child = Command::new(&argv[0])
            .args(&argv[1..])
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("fleetbook lsp starts");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, messages) = channel();
        std::thread::spawn(move || loop {
            let mut len = 0;
            loop {
                let mut line = String::new();
                if stdout.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                if let Some(n) = line.strip_prefix("Content-Length: ") {
                    len = n.parse().unwrap();
                }
            }
            let mut body = vec![0; len];
            stdout.read_exact(&mut body).unwrap();
            if tx.send(serde_json::from_slice(&body).unwrap()).is_err() {
                return;
            }
        });
        let mut c = Client {
            child,
            stdin,
            messages,
            next_id: 1,
        };
        let caps = c.request(
            "initialize",
            json!({"processId": null, "rootUri": null, "capabilities": {}}),
        );
        assert_eq!(caps["capabilities"]["hoverProvider"], json!(true), "{caps}");
        c.notify("initialized", json!({}));
        c
    }

    fn send(&mut self, msg: Value) {
        let body = msg.to_string();
        write!(self.stdin, "Content-Length: {}\r\n\r\n{body}", body.len()).unwrap();
        self.stdin.flush().unwrap();
    }

    fn notify(&mut self, method: &str, params: Value) {
        self.send(json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    fn next(&self) -> Value {
        self.messages
            .recv_timeout(Duration::from_secs(60))
            .expect("the server answers within a minute")
    }

    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        loop {
            let m = self.next();
            if m["id"] == json!(id) {
                assert!(m.get("error").is_none(), "{m}");
                return m["result"].clone();
            }
        }
    }

    /// The next diagnostics published for `uri`.
    fn diagnostics(&self, uri: &str) -> Vec<Value> {
        loop {
            let m = self.next();
            if m["method"] == "textDocument/publishDiagnostics" && m["params"]["uri"] == uri {
                return m["params"]["diagnostics"].as_array().unwrap().clone();
            }
        }
    }

    fn open(&mut self, uri: &str, text: &str) {
        self.notify(
            "textDocument/didOpen",
            json!({"textDocument": {"uri": uri, "languageId": "rhai", "version": 1, "text": text}}),
        );
    }

    fn at(&mut self, method: &str, uri: &str, line: u32, character: u32) -> Value {
        self.request(
            method,
            json!({"textDocument": {"uri": uri}, "position": {"line": line, "character": character}}),
        )
    }

    fn stop(mut self) {
        self.request("shutdown", Value::Null);
        self.notify("exit", Value::Null);
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{status}");
    }
}

fn uri(path: &Path) -> String {
    format!("file://{}", path.display())
}

fn labels(items: &Value) -> Vec<String> {
    items
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["label"].as_str().unwrap().to_string())
        .collect()
}

fn range(l0: u32, c0: u32, l1: u32, c1: u32) -> Value {
    json!({"start": {"line": l0, "character": c0}, "end": {"line": l1, "character": c1}})
}

#[test]
fn lsp_reports_errors_at_their_range_and_clears_them_when_fixed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("up.rhai");
    let u = uri(&file);
    let mut c = Client::start(dir.path());
    c.open(&u, "let rb = runbook(\"x\");\nlet v = ;\nrb\n");
    let d = c.diagnostics(&u);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0]["range"], range(1, 8, 1, 9));
    assert_eq!(d[0]["message"], "Unexpected ';'");
    assert_eq!(d[0]["severity"], 1);

    // A role-order cycle: the first edge is the range, the other is related.
    let cycle =
        "let rb = runbook(\"x\");\nrb.order([\"a\", \"b\"]);\nrb.order([\"b\", \"a\"]);\nrb\n";
    c.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": u, "version": 2}, "contentChanges": [{"text": cycle}]}),
    );
    let d = c.diagnostics(&u);
    assert_eq!(d[0]["range"], range(1, 3, 1, 8));
    assert!(d[0]["message"]
        .as_str()
        .unwrap()
        .starts_with("role order has a cycle: a -> b -> a"));
    let related = &d[0]["relatedInformation"][0];
    assert_eq!(related["location"]["range"], range(2, 3, 2, 8));
    assert_eq!(related["message"], "b -> a declared here");

    c.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": u, "version": 3}, "contentChanges": [{"text": "let rb = runbook(\"x\");\nrb.step(\"a\", |h| h.run(\"true\"));\nrb\n"}]}),
    );
    assert_eq!(c.diagnostics(&u), Vec::<Value>::new());
    c.stop();
}

#[test]
fn lsp_hovers_completes_and_finds_definitions() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("mylib.rhai"),
        "// helpers\n\n/// Drains a host.\nfn drain(h) {\n    h.run(\"drain\")\n}\n",
    )
    .unwrap();
    let file = dir.path().join("up.rhai");
    let u = uri(&file);
    let text = "import \"mylib\" as mylib;\n\
                fn local_check(h) { h.run_ok(\"true\") }\n\
                let rb = runbook(\"x\");\n\
                rb.step(\"a\", |h| pkg::upgrade(h, [\"nginx\"]));\n\
                rb.step(\"b\", |h| { local_check(h); mylib::drain(h) });\n\
                rb\n";
    let mut c = Client::start(dir.path());
    c.open(&u, text);
    assert_eq!(c.diagnostics(&u), Vec::<Value>::new());

    let hover = c.at("textDocument/hover", &u, 3, 22);
    let md = hover["contents"]["value"].as_str().unwrap();
    assert!(
        md.starts_with("```rhai\npkg::upgrade(h, [names])\n```"),
        "{md}"
    );
    assert!(md.contains("install --only-upgrade"), "{md}");
    let hover = c.at("textDocument/hover", &u, 4, 39);
    assert_eq!(
        hover["contents"]["value"],
        "```rhai\nfn mylib::drain(h)\n```\n\nDrains a host."
    );

    // Completion after `h.`, `rb.` and `pkg::` (edits the document without a check between).
    let edited = format!("{text}h.\nrb.\npkg::\n");
    c.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": u, "version": 2}, "contentChanges": [{"text": edited}]}),
    );
    let host = labels(&c.at("textDocument/completion", &u, 6, 2));
    for m in [
        "run", "run_ok", "sudo", "var", "has_var", "fact", "reboot", "name",
    ] {
        assert!(host.contains(&m.to_string()), "{m} not in {host:?}");
    }
    let rb = labels(&c.at("textDocument/completion", &u, 7, 3));
    for m in ["order", "limit", "step", "timeout", "max_failures"] {
        assert!(rb.contains(&m.to_string()), "{m} not in {rb:?}");
    }
    let pkg = labels(&c.at("textDocument/completion", &u, 8, 5));
    assert_eq!(
        pkg,
        [
            "update_index",
            "upgrade",
            "dist_upgrade",
            "install",
            "restore",
            "remove",
            "version"
        ]
    );

    // Definitions: a local function, an imported one, the imported module.
    let def = c.at("textDocument/definition", &u, 4, 22);
    assert_eq!(def["uri"], u);
    assert_eq!(def["range"], range(1, 3, 1, 14));
    let def = c.at("textDocument/definition", &u, 4, 39);
    assert_eq!(def["uri"], uri(&dir.path().join("mylib.rhai")));
    assert_eq!(def["range"], range(3, 3, 3, 8));
    let def = c.at("textDocument/definition", &u, 0, 9);
    assert_eq!(def["uri"], uri(&dir.path().join("mylib.rhai")));
    c.stop();
}

#[test]
fn lsp_plans_against_the_projects_inventory_and_completes_its_roles() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("fleetbook.toml"),
        "inventory = \"hosts.ini\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("hosts.ini"),
        "[controller]\nctl1\n[compute]\ncmp1\n",
    )
    .unwrap();
    let file = dir.path().join("up.rhai");
    let u = uri(&file);
    let mut c = Client::start(dir.path());
    c.open(
        &u,
        "let rb = runbook(\"x\");\nrb.order([\"controller\", \"storage\"]);\nrb\n",
    );
    let d = c.diagnostics(&u);
    assert_eq!(d.len(), 1, "{d:?}");
    let msg = d[0]["message"].as_str().unwrap();
    assert!(msg.contains("storage"), "{msg}");

    let text =
        "let rb = runbook(\"x\");\nrb.order([\"controller\", \"\"]);\nrb.limit(\"co\", 1);\nrb\n";
    c.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": u, "version": 2}, "contentChanges": [{"text": text}]}),
    );
    let roles = labels(&c.at("textDocument/completion", &u, 1, 25));
    assert!(roles.contains(&"compute".to_string()), "{roles:?}");
    assert!(roles.contains(&"controller".to_string()), "{roles:?}");
    let roles = labels(&c.at("textDocument/completion", &u, 2, 12));
    assert!(roles.contains(&"compute".to_string()), "{roles:?}");
    c.stop();
}

/// Every function a runbook can call, as the engine lists it: (namespace or "", name, the
/// type of the first parameter).
fn registered() -> Vec<(String, String, String)> {
    let script = fleetbook_engine::script::compile(fleetbook_engine::script::ScriptInput {
        name: "x.rhai",
        text: "runbook(\"x\")",
        dir: None,
        lib_dirs: &[],
        libs: &Default::default(),
        params: &Default::default(),
        limits: Default::default(),
    })
    .unwrap();
    let mut out = Vec::new();
    for sig in script.engine().gen_fn_signatures(false) {
        let (path, rest) = sig.split_once('(').unwrap();
        let first = rest
            .split([',', ')'])
            .next()
            .unwrap()
            .split_once(": ")
            .map_or("", |(_, t)| t)
            .trim()
            .to_string();
        let (ns, name) = path.rsplit_once("::").unwrap_or(("", path));
        let name = name.strip_prefix("get$").unwrap_or(name);
        // Rhai calls these itself for `print(h)` and `${h}`.
        if ["to_string", "to_debug"].contains(&name) {
            continue;
        }
        let f = (ns.to_string(), name.to_string(), first);
        if !out.contains(&f) {
            out.push(f);
        }
    }
    for (lib, text) in fleetbook_stdlib::LIBRARIES {
        for line in text.lines() {
            if let Some(f) = line.strip_prefix("fn ") {
                let name = f.split('(').next().unwrap();
                out.push((lib.to_string(), name.to_string(), String::new()));
            }
        }
    }
    assert!(out.len() > 80, "{out:?}");
    out
}

// Every registered function (host operations, the runbook and step API, the host object,
// global functions) and every built-in library function has a signature and a doc on hover.
#[test]
fn lsp_hovers_every_registered_function() {
    let dir = tempfile::tempdir().unwrap();
    let u = uri(&dir.path().join("all.rhai"));
    let mut text = String::new();
    let mut places = Vec::new();
    for (line, (ns, name, first)) in registered().iter().enumerate() {
        let prefix = match (ns.as_str(), first.as_str()) {
            ("", t) if t.contains("Host") => "h.".to_string(),
            ("", t) if t.contains("Runbook") || t.contains("Step") => "rb.".to_string(),
            ("", _) => String::new(),
            (ns, _) => format!("{ns}::"),
        };
        text.push_str(&format!("{prefix}{name}();\n"));
        places.push((
            line as u32,
            prefix.len() as u32 + 1,
            format!("{prefix}{name}"),
        ));
    }
    let mut c = Client::start(dir.path());
    c.open(&u, &text);
    let mut missing = Vec::new();
    for (line, col, what) in places {
        let hover = c.at("textDocument/hover", &u, line, col);
        let md = hover["contents"]["value"].as_str().unwrap_or("");
        let name = what.rsplit(['.', ':']).next().unwrap();
        // A signature naming the function, then a doc.
        let ok = md.starts_with("```rhai\n")
            && md.split("```").nth(1).is_some_and(|sig| sig.contains(name))
            && md
                .split("```\n\n")
                .nth(1)
                .is_some_and(|doc| !doc.trim().is_empty());
        if !ok {
            missing.push(what);
        }
    }
    assert!(missing.is_empty(), "no hover for {missing:?}");
    c.stop();
}

// Completion after `ns::` offers exactly the namespace's functions, for every namespace the
// engine registers and every built-in library.
#[test]
fn lsp_completes_every_namespace_with_all_its_functions() {
    let mut by_ns: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    for (ns, name, _) in registered() {
        if !ns.is_empty() {
            by_ns.entry(ns).or_default().insert(name);
        }
    }
    assert!(
        by_ns.contains_key("pkg") && by_ns.contains_key("rolling"),
        "{by_ns:?}"
    );
    let dir = tempfile::tempdir().unwrap();
    let u = uri(&dir.path().join("ns.rhai"));
    let text: String = by_ns.keys().map(|ns| format!("{ns}::\n")).collect();
    let mut c = Client::start(dir.path());
    c.open(&u, &text);
    for (line, (ns, names)) in by_ns.iter().enumerate() {
        let got: std::collections::BTreeSet<String> = labels(&c.at(
            "textDocument/completion",
            &u,
            line as u32,
            ns.len() as u32 + 2,
        ))
        .into_iter()
        .collect();
        assert_eq!(&got, names, "{ns}::");
    }
    c.stop();
}

// The test of issue 16, in the order a user meets it: a syntax error at its line and column,
// fixed; hover over `pkg::upgrade`; completion after `pkg::`; go to the definition of a
// built-in library's function and of a project library's (fleetbook.toml's `lib`).
#[test]
fn lsp_session_of_an_author() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("fleetbook.toml"), "lib = [\"libs\"]\n").unwrap();
    std::fs::create_dir(dir.path().join("libs")).unwrap();
    let drain = "// Load-balancer helpers.\n\n/// Takes a host out of the pool.\nfn drain(h) {\n    h.run(\"drain\")\n}\n";
    std::fs::write(dir.path().join("libs/lb.rhai"), drain).unwrap();
    let u = uri(&dir.path().join("upgrade.rhai"));
    let mut c = Client::start(dir.path());

    let broken = "import \"rolling\" as rolling;\nimport \"lb\" as lb;\nlet rb = runbook(\"web\");\nrb.step(\"drain\", |h| lb::drain(h));\nrb.step(\"upgrade\", |h| rolling::upgrade_to(h, [\"nginx\"], \"\")\nrb\n";
    c.open(&u, broken);
    let d = c.diagnostics(&u);
    assert_eq!(d.len(), 1, "{d:?}");
    // Line 6 (0-based 5), where `rb` follows the unclosed call.
    assert_eq!(d[0]["range"], range(5, 0, 5, 2), "{d:?}");
    assert_eq!(d[0]["severity"], 1);
    assert_eq!(d[0]["code"], "syntax");

    let fixed = broken.replace("\"\")\n", "\"\"));\n");
    c.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": u, "version": 2}, "contentChanges": [{"text": fixed}]}),
    );
    assert_eq!(c.diagnostics(&u), Vec::<Value>::new());

    let with_pkg = format!("{fixed}pkg::upgrade(h, [\"x\"]);\npkg::\n");
    c.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": u, "version": 3}, "contentChanges": [{"text": with_pkg}]}),
    );
    let hover = c.at("textDocument/hover", &u, 6, 7);
    let md = hover["contents"]["value"].as_str().unwrap();
    assert!(
        md.starts_with("```rhai\npkg::upgrade(h, [names])\n```\n\n"),
        "{md}"
    );
    assert!(md.contains("dnf -y upgrade NAMES"), "{md}");
    let pkg = labels(&c.at("textDocument/completion", &u, 7, 5));
    assert_eq!(
        pkg,
        [
            "update_index",
            "upgrade",
            "dist_upgrade",
            "install",
            "restore",
            "remove",
            "version"
        ]
    );

    // A built-in library: its text, written out read-only, at the function's line.
    let def = c.at("textDocument/definition", &u, 4, 37);
    let file = def["uri"]
        .as_str()
        .unwrap()
        .strip_prefix("file://")
        .unwrap();
    assert!(file.ends_with("/rolling.rhai"), "{def}");
    let shown = std::fs::read_to_string(file).unwrap();
    let rolling = fleetbook_stdlib::LIBRARIES
        .iter()
        .find(|(n, _)| *n == "rolling")
        .unwrap()
        .1;
    assert_eq!(shown, rolling);
    let line = rolling
        .lines()
        .position(|l| l.starts_with("fn upgrade_to("))
        .unwrap();
    assert_eq!(def["range"], range(line as u32, 3, line as u32, 13));
    // A project library, found through fleetbook.toml's `lib`.
    let def = c.at("textDocument/definition", &u, 3, 24);
    assert_eq!(def["uri"], uri(&dir.path().join("libs/lb.rhai")));
    assert_eq!(def["range"], range(3, 3, 3, 8));
    c.stop();
}

// An error in an imported module (any error the engine places, in whichever file) is shown on
// the runbook's import of it, with the module's own file:line:col.
#[test]
fn lsp_shows_a_modules_error_on_its_import() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("lib.rhai"), "fn ok() { 1 }\nlet = 2;\n").unwrap();
    let u = uri(&dir.path().join("rb.rhai"));
    let mut c = Client::start(dir.path());
    c.open(&u, "let rb = runbook(\"x\");\nimport \"lib\" as lib;\nrb\n");
    let d = c.diagnostics(&u);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0]["range"], range(1, 8, 1, 11));
    let msg = d[0]["message"].as_str().unwrap();
    let lib = dir.path().join("lib.rhai").display().to_string();
    assert!(msg.starts_with(&format!("{lib}:2:5: ")), "{msg}");
    assert_eq!(d[0]["code"], "syntax");
    c.stop();
}

// Unknown functions in step closures show as you type, without an inventory to plan against.
#[test]
fn lsp_warns_of_an_unknown_function_in_a_step() {
    let dir = tempfile::tempdir().unwrap();
    let u = uri(&dir.path().join("rb.rhai"));
    let mut c = Client::start(dir.path());
    c.open(
        &u,
        "let rb = runbook(\"x\");\nrb.step(\"s\", |h| service::restrat(h, \"nginx\"));\nrb\n",
    );
    let d = c.diagnostics(&u);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0]["range"], range(1, 17, 1, 33));
    assert_eq!(d[0]["severity"], 2);
    assert_eq!(d[0]["code"], "unknown-function");
    c.stop();
}

// A library module and a `fleetbook test` file return no runbook, and need not: they showed
// a red "must return a runbook" on every line of every library. A test file's syntax errors
// still show.
#[test]
fn lsp_takes_libraries_and_test_files_for_what_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Client::start(dir.path());
    let lib = uri(&dir.path().join("text.rhai"));
    c.open(&lib, "/// Words.\nfn words(line) { line.split(\" \") }\n");
    let d = c.diagnostics(&lib);
    assert!(d.is_empty(), "{d:?}");
    let t = uri(&dir.path().join("rb_test.rhai"));
    c.open(
        &t,
        "fn test_one() {\n    let p = plan(\"rb.rhai\", #{ inventory: \"[web]\\nw1\\n\" });\n    assert_eq(p.hosts(\"web\"), [\"w1\"]);\n}\n",
    );
    let d = c.diagnostics(&t);
    assert!(d.is_empty(), "{d:?}");
    let bad = uri(&dir.path().join("bad_test.rhai"));
    c.open(&bad, "fn test_one() {\n    let = 1;\n}\n");
    let d = c.diagnostics(&bad);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0]["code"], "syntax");
    assert_eq!(d[0]["range"]["start"]["line"], 1);
    c.stop();
}
