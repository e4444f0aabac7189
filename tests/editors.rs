//! editors/vscode: the manifest is valid and starts `fleetbook lsp` for the `.rhai` files of a
//! fleetbook project; with Node.js installed, the extension is activated against stand-ins for
//! the two modules it loads (VS Code's API and vscode-languageclient, which cannot be
//! installed here) and must start the server that way.

use crate::support::root;
use serde_json::Value;

#[test]
fn vscode_manifest_starts_fleetbook_lsp_in_a_project() {
    let dir = root().join("editors/vscode");
    let text = std::fs::read_to_string(dir.join("package.json")).unwrap();
    let p: Value = serde_json::from_str(&text).expect("package.json is JSON");
    assert_eq!(p["name"], "fleetbook");
    assert!(p["engines"]["vscode"].is_string(), "{p}");
    let events: Vec<&str> = p["activationEvents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert!(
        events.contains(&"workspaceContains:fleetbook.toml")
            && events.contains(&"workspaceContains:**/fleetbook.toml"),
        "{events:?}"
    );
    let props = &p["contributes"]["configuration"]["properties"];
    let command = format!(
        "{} {}",
        props["fleetbook.server.path"]["default"].as_str().unwrap(),
        props["fleetbook.server.args"]["default"][0]
            .as_str()
            .unwrap()
    );
    assert_eq!(command, "fleetbook lsp");
    let rhai = &p["contributes"]["languages"][0];
    assert_eq!(rhai["id"], "rhai");
    assert_eq!(rhai["extensions"][0], ".rhai");
    for file in [
        p["main"].as_str().unwrap(),
        rhai["configuration"].as_str().unwrap(),
        "README.md",
    ] {
        assert!(dir.join(file).is_file(), "{file} is missing");
    }
    let lang: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("language-configuration.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(lang["comments"]["lineComment"], "//");
    assert!(
        p["dependencies"]["vscode-languageclient"].is_string(),
        "{p}"
    );
}

/// Stand-ins for `vscode` and `vscode-languageclient/node`: they record what the extension
/// asks for and print it as JSON.
const HARNESS: &str = r#"
const Module = require('module');
const seen = { clients: [] };
const project = process.argv[2];
const stubs = {
  vscode: {
    workspace: {
      findFiles: async (glob) => (glob === '**/fleetbook.toml' ? [{ fsPath: project + '/fleetbook.toml' }] : []),
      getConfiguration: () => ({ get: (_key, dflt) => dflt }),
      createFileSystemWatcher: (glob) => ({ glob }),
    },
    commands: { registerCommand: (name) => { seen.command = name; return {}; } },
    window: { showErrorMessage: (m) => { seen.error = m; } },
  },
  'vscode-languageclient/node': {
    TransportKind: { stdio: 0 },
    LanguageClient: class {
      constructor(id, name, server, client) { seen.clients.push({ id, server, selector: client.documentSelector }); }
      async start() { seen.started = true; }
      async stop() {}
    },
  },
};
const load = Module._load;
Module._load = function (request, ...rest) {
  return request in stubs ? stubs[request] : load.call(this, request, ...rest);
};
const ext = require(process.argv[3]);
const context = { subscriptions: [] };
ext.activate(context).then(() => console.log(JSON.stringify(seen)));
"#;

#[test]
fn vscode_extension_activates_fleetbook_lsp_for_the_projects_rhai_files() {
    let node = std::process::Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) {
        eprintln!("node is not installed: the extension's activation is not exercised");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let harness = dir.path().join("harness.js");
    std::fs::write(&harness, HARNESS).unwrap();
    let project = dir.path().join("project");
    let ext = root().join("editors/vscode/extension.js");
    let out = std::process::Command::new("node")
        .arg(&harness)
        .arg(&project)
        .arg(&ext)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seen["started"], true, "{seen}");
    assert_eq!(seen["command"], "fleetbook.restartServer");
    let client = &seen["clients"][0];
    assert_eq!(client["server"]["run"]["command"], "fleetbook");
    assert_eq!(client["server"]["run"]["args"], serde_json::json!(["lsp"]));
    assert_eq!(client["server"]["run"]["transport"], 0, "stdio");
    assert_eq!(
        client["selector"],
        serde_json::json!([{
            "scheme": "file",
            "language": "rhai",
            "pattern": format!("{}/**/*.rhai", project.display()),
        }])
    );
    assert!(seen.get("error").is_none(), "{seen}");
}
