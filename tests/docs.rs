//! Every example in the docs works: each ```rhai example in docs/runbook-language.md is a
//! complete runbook that plans against tests/fixtures/docs.ini, and every command of a shell
//! block (```sh, ```bash, ```shell, ```console) in README.md and docs/*.md runs for real, in a
//! sandbox, and exits as documented (0, or `# exits N` at its end). Commands on the demo fleet
//! (`demo-fleet`, `examples/fleet/fleet.sh`) run in tests/fleet.rs.

use crate::support::{fleetbook, root};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn every_documented_example_plans() {
    let text = std::fs::read_to_string(root().join("docs/runbook-language.md")).unwrap();
    let mut examples = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match (&mut current, line.trim_start()) {
            (None, l) if l.starts_with("```rhai") => current = Some(String::new()),
            (Some(_), l) if l.starts_with("```") => examples.push(current.take().unwrap()),
            (Some(buf), _) => {
                buf.push_str(line);
                buf.push('\n');
            }
            _ => {}
        }
    }
    assert!(examples.len() >= 10, "found {} examples", examples.len());
    let dir = tempfile::tempdir().unwrap();
    for (i, ex) in examples.iter().enumerate() {
        let path = dir.path().join(format!("example{i}.rhai"));
        std::fs::write(&path, ex).unwrap();
        let out = fleetbook(&["plan"])
            .arg(path.display().to_string())
            .arg("-i")
            .arg("tests/fixtures/docs.ini")
            .run();
        assert_eq!(out.code, 0, "example {i} failed:\n{ex}\n{}", out.stderr);
        assert!(
            out.stdout.contains("Schedule"),
            "example {i}: {}",
            out.stdout
        );
    }
}

// The README's own `plan ... --limit 'workers:!worker16*' -o plan.json` exited 2 unnoticed:
// no test ran the documented commands.
#[test]
fn every_documented_shell_command_runs() {
    let mut ran = 0;
    // FLEETBOOK_DOC=libraries.md runs one document's commands only (while writing it).
    let only = std::env::var("FLEETBOOK_DOC").ok();
    for doc in documents() {
        if only.as_deref().is_some_and(|o| !doc.ends_with(o)) {
            continue;
        }
        let commands: Vec<_> = doc_commands(&doc)
            .into_iter()
            .filter(|c| !c.needs_fleet())
            .collect();
        if commands.is_empty() {
            continue;
        }
        let sandbox = Sandbox::new();
        for cmd in &commands {
            let start = Instant::now();
            sandbox.run_documented(cmd);
            eprintln!(
                "{} {:.1}s: {}",
                cmd.at,
                start.elapsed().as_secs_f64(),
                cmd.text
            );
            ran += 1;
        }
    }
    assert!(
        ran >= 20 || only.is_some(),
        "only {ran} documented commands found"
    );
}

// The README's test command was `cargo test --workspace`, which silently skipped the SSH and
// fleet tests on a machine without sshd or Docker; now it is ./test.sh, which CI runs too.
#[test]
fn readme_test_command_is_test_sh_and_ci_runs_it() {
    let readme = doc_commands(&root().join("README.md"));
    assert!(
        readme.iter().any(|c| c.typed() == "./test.sh"),
        "README.md has no `./test.sh` command"
    );
    let ci = std::fs::read_to_string(root().join(".ci/run")).unwrap();
    let lines: Vec<&str> = ci.lines().map(str::trim).collect();
    assert!(
        lines.contains(&"./test.sh"),
        ".ci/run does not run ./test.sh"
    );
    assert!(
        !lines.iter().any(|l| l.starts_with("cargo test")),
        ".ci/run runs cargo test itself, not through ./test.sh"
    );
    let script = std::fs::read_to_string(root().join("test.sh")).unwrap();
    assert!(
        script
            .lines()
            .any(|l| l.trim() == "exec cargo test --workspace \"$@\""),
        "test.sh does not end in cargo test --workspace"
    );
    for package in [
        "openssh-server",
        "debootstrap",
        "dpkg-dev",
        "docker.io",
        "graphviz",
    ] {
        assert!(
            script.contains(package),
            "test.sh does not install {package}"
        );
    }
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(root().join("test.sh"))
            .unwrap()
            .permissions(),
    );
    assert!(mode & 0o111 != 0, "test.sh is not executable");
}

// A shell example in a bare ``` block was never run; sample output in a ```sh block would be.
#[test]
fn every_fenced_block_names_its_language() {
    for doc in documents() {
        let text = std::fs::read_to_string(&doc).unwrap();
        let mut open = false;
        for (i, line) in text.lines().enumerate() {
            if let Some(info) = line.trim_start().strip_prefix("```") {
                assert!(
                    open || !info.trim().is_empty(),
                    "{}:{}: a fenced block without a language: use ```sh for commands, ```text for output",
                    doc.display(),
                    i + 1
                );
                open = !open;
            }
        }
        assert!(!open, "{}: a fenced block is not closed", doc.display());
    }
}

// The extraction itself: continuations joined, comments dropped, console prompts, `# exits N`.
#[test]
fn shell_blocks_are_split_into_commands() {
    let md = "text\n```sh\n# a comment\nfleetbook plan a.rhai \\\n  -i hosts   # why\n\nfleetbook check x.rhai   # exits 2\n```\n```text\nnot run\n```\n```console\n$ fleetbook runs\n20261130 succeeded\n```\n```rhai\nrb\n```\n";
    let cmds = shell_commands("x.md", md);
    let got: Vec<_> = cmds
        .iter()
        .map(|c| (c.line, c.text.as_str(), c.expect))
        .collect();
    assert_eq!(
        got,
        [
            (4, "fleetbook plan a.rhai -i hosts   # why", 0),
            (7, "fleetbook check x.rhai   # exits 2", 2),
            (13, "fleetbook runs", 0),
        ]
    );
}

/// README.md and docs/*.md.
pub fn documents() -> Vec<PathBuf> {
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    docs.insert(0, root().join("README.md"));
    docs
}

/// One command of a shell block, continuations joined, as documented.
#[derive(Debug, Clone)]
pub struct DocCommand {
    pub at: String,
    pub line: usize,
    pub text: String,
    /// The exit status the docs promise: 0, or `# exits N` at the end of the command.
    pub expect: i32,
}

impl DocCommand {
    /// The command as run: `cargo run --release --` is the binary under test.
    pub fn typed(&self) -> String {
        self.text.replace("cargo run --release --", "fleetbook")
    }

    /// Runs on the demo fleet (Docker): tests/fleet.rs runs it.
    pub fn needs_fleet(&self) -> bool {
        self.text.contains("demo-fleet") || self.text.contains("examples/fleet/fleet.sh")
    }
}

pub fn doc_commands(doc: &Path) -> Vec<DocCommand> {
    let name = doc
        .strip_prefix(root())
        .unwrap_or(doc)
        .display()
        .to_string();
    shell_commands(&name, &std::fs::read_to_string(doc).unwrap())
}

const SHELLS: [&str; 4] = ["sh", "bash", "shell", "console"];

fn shell_commands(file: &str, text: &str) -> Vec<DocCommand> {
    let mut out = Vec::new();
    let mut lang: Option<String> = None;
    let mut pending: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        if let Some(info) = line.trim_start().strip_prefix("```") {
            assert!(
                pending.is_none(),
                "{file}:{}: a `\\` continuation runs into the end of its block",
                i + 1
            );
            lang = match lang {
                None => Some(info.split_whitespace().next().unwrap_or("").to_string()),
                Some(_) => None,
            };
            continue;
        }
        let Some(l) = lang.as_deref().filter(|l| SHELLS.contains(l)) else {
            continue;
        };
        let line = match (l, line.trim_start().strip_prefix("$ ")) {
            ("console", Some(cmd)) => cmd,
            ("console", None) if pending.is_none() => continue, // output
            _ => line,
        };
        let (start, mut buf) = pending.take().unwrap_or_else(|| (i + 1, String::new()));
        if buf.is_empty() && (line.trim().is_empty() || line.trim_start().starts_with('#')) {
            continue;
        }
        match line.trim_end().strip_suffix('\\') {
            Some(head) => {
                buf.push_str(head.trim_start());
                pending = Some((start, buf));
            }
            None => {
                buf.push_str(line.trim());
                out.push(DocCommand {
                    at: format!("{file}:{start}"),
                    line: start,
                    expect: expected_status(&buf),
                    text: buf,
                });
            }
        }
    }
    out
}

fn expected_status(cmd: &str) -> i32 {
    cmd.rsplit_once("# exits ")
        .and_then(|(_, n)| n.split_whitespace().next())
        .and_then(|n| n.trim_end_matches([':', ',', ';']).parse().ok())
        .unwrap_or(0)
}

/// A directory to run documented commands in, as a user in a clone would: runbooks/,
/// examples/, tests/ and docs/ from the repository; `hosts`, `upgrade.rhai` (the names the
/// docs give your own inventory and runbook: this machine as five local hosts) from
/// tests/fixtures/docs; `fleetbook` on PATH (the binary under test); HOME its own.
pub struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        let dir = tempfile::Builder::new().prefix("fbdocs").tempdir().unwrap();
        for name in ["runbooks", "examples", "tests", "docs"] {
            std::os::unix::fs::symlink(root().join(name), dir.path().join(name)).unwrap();
        }
        for f in std::fs::read_dir(root().join("tests/fixtures/docs")).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, dir.path().join(f.file_name().unwrap())).unwrap();
        }
        std::fs::create_dir(dir.path().join(".home")).unwrap();
        std::fs::create_dir(dir.path().join(".bin")).unwrap();
        std::os::unix::fs::symlink(
            env!("CARGO_BIN_EXE_fleetbook"),
            dir.path().join(".bin/fleetbook"),
        )
        .unwrap();
        Sandbox { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    fn home(&self) -> PathBuf {
        self.path().join(".home")
    }

    /// `cmd`'s environment: the sandbox's PATH and HOME; cargo keeps its own home and
    /// toolchain, installs under the sandbox's HOME and reuses the workspace's build (CI
    /// builds the release binary before the tests); docker keeps its configuration.
    fn env(&self, cmd: &mut Command) {
        let real_home = PathBuf::from(std::env::var_os("HOME").unwrap_or_default());
        let keep = |var: &str, default: PathBuf| {
            std::env::var_os(var).map(PathBuf::from).unwrap_or(default)
        };
        let exe = Path::new(env!("CARGO_BIN_EXE_fleetbook"));
        let target = exe.parent().and_then(Path::parent).unwrap();
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut paths = vec![self.path().join(".bin")];
        paths.extend(std::env::split_paths(&path));
        cmd.env("PATH", std::env::join_paths(paths).unwrap())
            .env("HOME", self.home())
            .env("CARGO_HOME", keep("CARGO_HOME", real_home.join(".cargo")))
            .env(
                "RUSTUP_HOME",
                keep("RUSTUP_HOME", real_home.join(".rustup")),
            )
            .env(
                "DOCKER_CONFIG",
                keep("DOCKER_CONFIG", real_home.join(".docker")),
            )
            .env("CARGO_INSTALL_ROOT", self.home().join(".cargo"))
            .env("CARGO_TARGET_DIR", target)
            .env("NO_COLOR", "1")
            .env("TERM", "dumb")
            .env_remove("CLICOLOR_FORCE")
            .env_remove("FLEETBOOK_STATE");
    }

    /// fleetbook itself, in the sandbox, to set the scene for a documented command.
    pub fn fleetbook(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_fleetbook"));
        c.args(args).current_dir(self.path()).stdin(Stdio::null());
        self.env(&mut c);
        c
    }

    /// Runs `text` with bash (pipefail) on a terminal, as typed by a user who answers `y` to
    /// a confirmation; `cargo` commands run in the repository. Returns the exit status and
    /// what the terminal showed.
    pub fn shell(&self, text: &str, extra_env: &[(&str, &str)]) -> (i32, String) {
        let cwd = if text.starts_with("cargo ") {
            root()
        } else {
            self.path()
        };
        let mut c = Command::new("script");
        // Reading what the command left of the typed `y` spares script(1) a 2 s wait.
        let typed = "bash -o pipefail -c \"$FLEETBOOK_DOC_CMD\"; s=$?; read -r -t 0.1 _; exit $s";
        c.args(["-qec", typed, "/dev/null"])
            .env("FLEETBOOK_DOC_CMD", text)
            .env("SHELL", "/bin/bash")
            .envs(extra_env.iter().copied())
            .current_dir(cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        self.env(&mut c);
        let mut child = c.spawn().expect("script(1) (util-linux) runs");
        let _ = child.stdin.take().unwrap().write_all(b"y\n");
        let mut stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = stdout.read_to_end(&mut s);
            s
        });
        // A fleet comes up in minutes; cargo install may build fleetbook first.
        let code = wait(&mut child, Duration::from_secs(900)).unwrap_or_else(|| {
            let _ = child.kill();
            let _ = child.wait();
            -1
        });
        let out = String::from_utf8_lossy(&reader.join().unwrap()).into_owned();
        (code, out)
    }

    /// Runs a documented command, setting the scene for it first: a run to stand for `RUN`
    /// (waiting at an approval for `abort` and `approve`, halted on a broken host for
    /// `resume`), and checks its exit status.
    fn run_documented(&self, cmd: &DocCommand) {
        let text = cmd.typed();
        if text.starts_with("cargo test") || text == "./test.sh" {
            // It is the test run itself: check that CI runs exactly it.
            let ci = std::fs::read_to_string(root().join(".ci/run")).unwrap();
            assert!(
                ci.lines().any(|l| l.trim() == text),
                "{}: `{text}` is not what .ci/run runs",
                cmd.at
            );
            return;
        }
        let mut background = None;
        let text = if text.split_whitespace().any(|w| w == "RUN") {
            let sub = text.split_whitespace().nth(1).unwrap_or("");
            let id = match sub {
                "abort" | "approve" => {
                    let (run, id) = self.run_waiting_for_approval();
                    background = Some((run, if sub == "abort" { 4 } else { 0 }));
                    id
                }
                "resume" => self.halted_run(),
                _ => self.newest_run(),
            };
            text.split(' ')
                .map(|w| if w == "RUN" { id.as_str() } else { w })
                .collect::<Vec<_>>()
                .join(" ")
        } else {
            text
        };
        let (code, out) = self.shell(&text, &[]);
        assert_eq!(
            code, cmd.expect,
            "{}: `{}` exited {code}, the docs say {}:\n{out}",
            cmd.at, cmd.text, cmd.expect
        );
        if let Some((mut run, expect)) = background {
            let code = wait(&mut run.0, Duration::from_secs(60));
            let mut err = String::new();
            let _ = run.0.stderr.take().unwrap().read_to_string(&mut err);
            assert_eq!(
                code,
                Some(expect),
                "{}: after `{text}`, the run it acted on:\n{err}",
                cmd.at
            );
        }
        if text.starts_with("cargo install") {
            assert!(
                self.home().join(".cargo/bin/fleetbook").exists(),
                "{}: `{text}` installed no ~/.cargo/bin/fleetbook",
                cmd.at
            );
        }
    }

    fn newest_run(&self) -> String {
        let out = self
            .fleetbook(&["runs", "--format", "json"])
            .output()
            .unwrap();
        let runs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        runs[0]["id"]
            .as_str()
            .expect("a run in the journal")
            .to_string()
    }

    /// gated.rhai, started in the background and waiting at its approval.
    fn run_waiting_for_approval(&self) -> (Background, String) {
        let run = Background(
            self.fleetbook(&["run", "gated.rhai", "-i", "hosts", "--yes"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = self
                .fleetbook(&["status", "--format", "json"])
                .output()
                .unwrap();
            let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            if status["run"]["runbook"] == "gated" && status["waiting_approval"].is_string() {
                return (run, status["run"]["id"].as_str().unwrap().to_string());
            }
            assert!(
                Instant::now() < deadline,
                "gated.rhai never waited: {status}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// upgrade.rhai halted on a broken host, which is then repaired: resumable.
    fn halted_run(&self) -> String {
        let broken = self.path().join("broken-cmp2");
        std::fs::write(&broken, "").unwrap();
        let out = self
            .fleetbook(&["run", "upgrade.rhai", "-i", "hosts", "--yes"])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(3),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::remove_file(broken).unwrap();
        self.newest_run()
    }
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

/// A process the test started, killed and reaped however the test ends.
struct Background(Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The child's exit status, or None if it is still running at the deadline.
fn wait(child: &mut Child, limit: Duration) -> Option<i32> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s.code().unwrap_or(-1));
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// docs/plan-schema.md's example was written by hand: it named a task that did not exist and
// a wrong line. Now it is `fleetbook plan upgrade.rhai -i hosts --format json` on the docs'
// fixtures, cut and redacted by `example_of`; `FLEETBOOK_BLESS=1` rewrites it.
#[test]
fn plan_schema_example_is_real_output() {
    let out = fleetbook(&["plan", "upgrade.rhai", "-i", "hosts", "--format", "json"])
        .in_dir(&root().join("tests/fixtures/docs"))
        .code(0);
    let want = example_of(serde_json::from_str(&out.stdout).unwrap());
    let path = root().join("docs/plan-schema.md");
    let mut text = std::fs::read_to_string(&path).unwrap();
    let start = text
        .find("```json\n")
        .expect("docs/plan-schema.md: a ```json block")
        + 8;
    let end = start + text[start..].find("```").unwrap();
    if std::env::var_os("FLEETBOOK_BLESS").is_some() {
        let mut block = String::new();
        want.layout(0, &mut block);
        text.replace_range(start..end, &format!("{block}\n"));
        std::fs::write(&path, &text).unwrap();
    }
    let end = start + text[start..].find("```").unwrap();
    let documented: Json = serde_json::from_str(&text[start..end])
        .unwrap_or_else(|e| panic!("docs/plan-schema.md: the example is not JSON: {e}"));
    let mut real = String::new();
    want.layout(0, &mut real);
    assert!(
        documented == want,
        "docs/plan-schema.md's example is not what fleetbook plans \
         (FLEETBOOK_BLESS=1 cargo test --test integration plan_schema rewrites it); it plans:\n{real}"
    );
}

/// The plan as the doc shows it: each list cut to one element (the first; for `tasks` the
/// first host task, the most telling), digests and the version redacted.
fn example_of(mut plan: Json) -> Json {
    let cut = |v: &mut Json, keep: &dyn Fn(&Json) -> bool| {
        let Json::List(list) = v else {
            panic!("not a list: {v:?}")
        };
        let first = list.iter().position(keep).expect("an element to keep");
        *list = vec![list.swap_remove(first)];
    };
    cut(plan.at(&["runbook", "steps"]), &|_| true);
    for list in ["params", "roles", "hosts"] {
        cut(plan.at(&[list]), &|_| true);
    }
    cut(
        plan.at(&["tasks"]),
        &|t| matches!(t, Json::Object(m) if m.contains(&("kind".into(), Json::Leaf("host".into())))),
    );
    for (field, redacted) in [
        ("runbook_digest", "sha256:…"),
        ("inventory_digest", "sha256:…"),
        ("fleetbook_version", "…"),
    ] {
        *plan.at(&[field]) = Json::Leaf(redacted.into());
    }
    plan
}

/// JSON that keeps the order of object members (serde_json's `Value` sorts them), to
/// compare and to write the example in the plan's own order.
#[derive(Debug, PartialEq)]
enum Json {
    Object(Vec<(String, Json)>),
    List(Vec<Json>),
    Leaf(serde_json::Value),
}

impl<'de> serde::Deserialize<'de> for Json {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Json, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Json;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("JSON")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Json, A::Error> {
                let mut m = Vec::new();
                while let Some(kv) = a.next_entry()? {
                    m.push(kv);
                }
                Ok(Json::Object(m))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Json, A::Error> {
                let mut l = Vec::new();
                while let Some(v) = a.next_element()? {
                    l.push(v);
                }
                Ok(Json::List(l))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
                Ok(Json::Leaf(v.into()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
                Ok(Json::Leaf(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
                Ok(Json::Leaf(v.into()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Json, E> {
                Ok(Json::Leaf(v.into()))
            }
            fn visit_str<E>(self, v: &str) -> Result<Json, E> {
                Ok(Json::Leaf(v.into()))
            }
            fn visit_unit<E>(self) -> Result<Json, E> {
                Ok(Json::Leaf(serde_json::Value::Null))
            }
        }
        d.deserialize_any(V)
    }
}

impl Json {
    /// The member at `path` (object keys), which must exist.
    fn at(&mut self, path: &[&str]) -> &mut Json {
        path.iter().fold(self, |v, key| match v {
            Json::Object(m) => {
                &mut m
                    .iter_mut()
                    .find(|(k, _)| k == key)
                    .unwrap_or_else(|| panic!("no {key:?} in the plan"))
                    .1
            }
            other => panic!("{key:?}: not an object: {other:?}"),
        })
    }

    /// As the docs write JSON: a value on one line when it fits in 96 columns, else one
    /// member per line.
    fn layout(&self, indent: usize, out: &mut String) {
        let one_line = self.inline();
        let (open, close, members): (&str, &str, Vec<(Option<&String>, &Json)>) = match self {
            Json::Object(m) if indent + one_line.len() > 96 => {
                ("{", "}", m.iter().map(|(k, v)| (Some(k), v)).collect())
            }
            Json::List(l) if indent + one_line.len() > 96 => {
                ("[", "]", l.iter().map(|v| (None, v)).collect())
            }
            _ => {
                out.push_str(&one_line);
                return;
            }
        };
        out.push_str(open);
        for (i, (key, value)) in members.iter().enumerate() {
            out.push('\n');
            out.push_str(&" ".repeat(indent + 2));
            if let Some(k) = key {
                out.push_str(&format!("{}: ", serde_json::Value::from(k.as_str())));
            }
            value.layout(indent + 2, out);
            if i + 1 < members.len() {
                out.push(',');
            }
        }
        out.push('\n');
        out.push_str(&" ".repeat(indent));
        out.push_str(close);
    }

    fn inline(&self) -> String {
        match self {
            Json::Object(m) if m.is_empty() => "{}".into(),
            Json::Object(m) => {
                let fields: Vec<String> = m
                    .iter()
                    .map(|(k, v)| {
                        format!("{}: {}", serde_json::Value::from(k.as_str()), v.inline())
                    })
                    .collect();
                format!("{{ {} }}", fields.join(", "))
            }
            Json::List(l) => {
                let items: Vec<String> = l.iter().map(Json::inline).collect();
                format!("[{}]", items.join(", "))
            }
            Json::Leaf(v) => v.to_string(),
        }
    }
}
