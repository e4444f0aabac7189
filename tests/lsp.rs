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
