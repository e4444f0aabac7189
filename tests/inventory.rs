//! Inventories and host patterns as the user meets them: what `--limit` and exec's pattern
//! select, and the errors for inventories and files fleetbook cannot use.

use crate::support::{flat, fleetbook, Outcome};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const RUNBOOK: &str = "let rb = runbook(\"t\");\nrb.step(\"s\", |h| h.run(\"true\"));\nrb\n";

/// Writes `files` into a fresh directory.
fn files(files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, data) in files {
        std::fs::write(dir.path().join(name), data).unwrap();
    }
    dir
}

/// `fleetbook ARGS` run in `dir`, so paths in messages are short.
fn run_in(dir: &Path, args: &[&str]) -> Outcome {
    fleetbook(args).in_dir(dir).run()
}

/// `fleetbook plan rb.rhai -i INV ARGS` in `dir`.
fn plan_in(dir: &Path, inv: &str, args: &[&str]) -> Outcome {
    let mut all = vec!["plan", "rb.rhai", "-i", inv];
    all.extend_from_slice(args);
    run_in(dir, &all)
}

/// The `× message` of a diagnostic with miette's wrapping undone, for exact comparison.
fn headline(stderr: &str) -> String {
    flat(stderr)
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("× "))
        .unwrap_or_else(|| panic!("no diagnostic in {stderr:?}"))
        .to_string()
}

// `--limit ""` and `--limit ":"` selected the whole fleet, and a run upgraded every host.
#[test]
fn empty_or_separator_only_limit_selects_nothing() {
    for limit in ["", ":", ",", " : ", "::,"] {
        let out = fleetbook(&[
            "plan",
            "runbooks/jiocloud-rolling.rhai",
            "-i",
            "examples/inventories/jiocloud.ini",
            "--limit",
            limit,
        ])
        .code(2);
        assert_eq!(out.stdout, "");
        assert_eq!(
            headline(&out.stderr),
            format!("--limit {limit:?} names no host or group"),
        );
        assert!(
            out.stderr
                .contains("to act on every host, give --limit all"),
            "{}",
            out.stderr
        );
    }
    // `run` plans first, so it stops there too: nothing is contacted, no journal is written.
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().join("state");
    let out = fleetbook(&[
        "run",
        "runbooks/jiocloud-rolling.rhai",
        "-i",
        "examples/inventories/jiocloud.ini",
        "--yes",
        "--limit",
        ":",
        "--state",
    ])
    .arg(state_dir.display().to_string())
    .code(2);
    assert_eq!(
        headline(&out.stderr),
        "--limit \":\" names no host or group"
    );
    assert!(!state_dir.join("journal.sqlite").exists());
    for (limit, sep) in [("&", '&'), (":!", '!'), ("compute:&", '&')] {
        let out = fleetbook(&[
            "plan",
            "runbooks/jiocloud-rolling.rhai",
            "-i",
            "examples/inventories/jiocloud.ini",
            "--limit",
            limit,
        ])
        .code(2);
        assert_eq!(
            headline(&out.stderr),
            format!("--limit {limit:?}: '{sep}' must be followed by a group or host"),
        );
    }
}

// exec's positional pattern went the same way; it must fail before any connection, and call
// itself "pattern" (there is no --limit on exec).
#[test]
fn exec_with_empty_pattern_fails_before_connecting() {
    for pattern in ["", ":", ",!"] {
        let started = Instant::now();
        // A host that would hang a connection attempt: a blackhole address and a long timeout.
        let dir = files(&[(
            "hosts",
            b"[web]\nw1 ansible_host=10.255.255.1 ansible_port=2222\n",
        )]);
        let out = run_in(
            dir.path(),
            &["exec", "-i", "hosts", pattern, "--", "touch", "/tmp/x"],
        );
        assert_eq!(out.code, 2, "{}", out.stderr);
        let expected = if pattern == ",!" {
            format!("pattern {pattern:?}: '!' must be followed by a group or host")
        } else {
            format!("pattern {pattern:?} names no host or group")
        };
        assert_eq!(headline(&out.stderr), expected);
        assert_eq!(out.stdout, "");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "it tried to connect"
        );
    }
}

// `--limit web[0:1]` was split at the ':' inside the brackets and reported as "web[0".
#[test]
fn limit_subscript_selects_by_position() {
    let dir = files(&[
        ("rb.rhai", RUNBOOK.as_bytes()),
        ("hosts", b"[web]\nweb[1:4]\n[db]\ndb1\n"),
    ]);
    let out = plan_in(
        dir.path(),
        "hosts",
        &["--limit", "web[1:2]", "--format", "json"],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let plan: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let names: Vec<&str> = plan["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web2", "web3"]);
    let out = plan_in(dir.path(), "hosts", &["--limit", "app[0:1]"]);
    assert_eq!(out.code, 2);
    assert_eq!(
        headline(&out.stderr),
        "--limit \"app[0:1]\": \"app[0:1]\" matches no host or group"
    );
}

// `ansible_port=abc` fell back to port 22 silently; it is an error at load, with file:line.
#[test]
fn invalid_port_fails_at_load_with_file_and_line() {
    let dir = files(&[
        ("rb.rhai", RUNBOOK.as_bytes()),
        ("hosts", b"[web]\nw1\nw2 ansible_port=abc\n"),
    ]);
    let out = plan_in(dir.path(), "hosts", &[]);
    assert_eq!(out.code, 2);
    assert_eq!(
        headline(&out.stderr),
        "malformed inventory: ansible_port=\"abc\" is not a port (expected a number from 1 to 65535)"
    );
    assert!(out.stderr.contains("╭─[hosts:3:1]"), "{}", out.stderr);
}

// web[0:999999] took 123 s and 2.1 GB; ranges are bounded in total before anything is
// allocated, and FLEETBOOK_MAX_HOSTS moves the bound.
#[test]
fn huge_host_range_fails_fast_within_256_mib() {
    let dir = files(&[
        ("rb.rhai", RUNBOOK.as_bytes()),
        ("hosts", b"[web]\nweb[0:999999]\n"),
        ("small", b"[web]\nw[1:6]\n"),
    ]);
    let bin = env!("CARGO_BIN_EXE_fleetbook");
    let started = Instant::now();
    // `ulimit -v` makes any allocation beyond 256 MiB fail, which would abort the process.
    let out = Command::new("sh")
        .args(["-c", "ulimit -v 262144 && exec \"$0\" \"$@\""])
        .args([bin, "plan", "rb.rhai", "-i", "hosts"])
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .env_remove("FLEETBOOK_MAX_HOSTS")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(
        headline(&stderr),
        "malformed inventory: host ranges give more than 100000 hosts (\"web[0:999999]\" alone \
         gives 1000000); set FLEETBOOK_MAX_HOSTS to raise the limit"
    );
    assert!(stderr.contains("╭─[hosts:2:1]"), "{stderr}");
    let out = Command::new(bin)
        .args(["plan", "rb.rhai", "-i", "small"])
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .env("FLEETBOOK_MAX_HOSTS", "5")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        headline(&stderr),
        "malformed inventory: host ranges give more than 5 hosts (\"w[1:6]\" alone gives 6); set \
         FLEETBOOK_MAX_HOSTS to raise the limit"
    );
}

// A byte that is not UTF-8 gave "stream did not contain valid UTF-8" with no line.
#[test]
fn invalid_utf8_names_line_and_byte() {
    let dir = files(&[
        ("rb.rhai", b"let rb = runbook(\"t\");\n// caf\xE9\nrb\n"),
        ("hosts", b"[web]\nw1\n"),
    ]);
    let out = plan_in(dir.path(), "hosts", &[]);
    assert_eq!(out.code, 2);
    assert_eq!(
        headline(&out.stderr),
        "rb.rhai:2:7: invalid UTF-8 (byte 0xE9 at offset 29); runbooks and inventories must be \
         UTF-8 text"
    );
    std::fs::write(dir.path().join("rb.rhai"), RUNBOOK).unwrap();
    std::fs::write(dir.path().join("hosts"), b"[web]\nw1 note=\xFF\n").unwrap();
    let out = plan_in(dir.path(), "hosts", &[]);
    assert_eq!(
        headline(&out.stderr),
        "hosts:2:9: invalid UTF-8 (byte 0xFF at offset 14); runbooks and inventories must be \
         UTF-8 text"
    );
}

// A UTF-8 byte order mark (Windows editors add one) broke the first line of a runbook or
// an inventory; it is dropped.
#[test]
fn byte_order_mark_is_accepted() {
    let bom = |t: &[u8]| [b"\xEF\xBB\xBF".as_slice(), t].concat();
    let dir = files(&[
        ("rb.rhai", &bom(RUNBOOK.as_bytes())),
        ("hosts", &bom(b"[web]\nw1\n")),
        ("hosts.yml", &bom(b"web:\n  hosts:\n    w1:\n")),
        ("hosts.toml", &bom(b"[groups.web]\nhosts = [\"w1\"]\n")),
    ]);
    for inv in ["hosts", "hosts.yml", "hosts.toml"] {
        let out = plan_in(dir.path(), inv, &["--format", "json"]);
        assert_eq!(out.code, 0, "{inv}: {}", out.stderr);
        let plan: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(plan["hosts"][0]["name"], "w1", "{inv}");
        assert_eq!(plan["hosts"][0]["roles"][0], "web", "{inv}");
    }
}

// "bad port" was reported for the multi-range host name web[1:2]-[a:b].
#[test]
fn multi_range_host_names_expand() {
    let dir = files(&[
        ("rb.rhai", RUNBOOK.as_bytes()),
        ("hosts", b"[web]\nweb[1:2]-[a:b]\n"),
    ]);
    let out = plan_in(dir.path(), "hosts", &["--format", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let plan: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let names: Vec<&str> = plan["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web1-a", "web1-b", "web2-a", "web2-b"]);
}

// An imported module that is not UTF-8 said only "stream did not contain valid UTF-8"; it
// gets the runbook's message, and a BOM in it is dropped.
#[test]
fn invalid_utf8_in_an_import_names_line_and_byte() {
    let runbook = format!("import \"lib\" as lib;\n{RUNBOOK}");
    let dir = files(&[
        ("rb.rhai", runbook.as_bytes()),
        ("lib.rhai", b"fn f() {\n  \"\xFF\"\n}\n"),
    ]);
    let out = run_in(dir.path(), &["check", "rb.rhai"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        flat(&out.stderr).contains(
            "lib.rhai:2:4: invalid UTF-8 (byte 0xFF at offset 12); runbooks and inventories must \
             be UTF-8 text"
        ),
        "{}",
        out.stderr
    );
    std::fs::write(dir.path().join("lib.rhai"), b"\xEF\xBB\xBFfn f() { 1 }\n").unwrap();
    let out = run_in(dir.path(), &["check", "rb.rhai"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

// Issue 17: every variable reached runbooks as a string (`port` was "8080", `flag` "True",
// a list its Python text), so `h.var("flag", false)` was never a bool.
#[test]
fn variables_reach_runbooks_with_their_ansible_types() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("hosts"),
        format!(
            "[web]\nl1 ansible_connection=local dir={} port=8080 flag=True disks=\"['a','b']\" word=yes\n",
            d.display()
        ),
    )
    .unwrap();
    std::fs::create_dir(d.join("group_vars")).unwrap();
    std::fs::write(
        d.join("group_vars/web.yml"),
        "db:\n  host: db1\n  port: 5432\n  tls: on\nratio: 0.5\n",
    )
    .unwrap();
    std::fs::write(
        d.join("rb.rhai"),
        r#"let rb = runbook("types");
rb.step("see", |h| {
    let seen = "";
    for n in ["port", "flag", "disks", "db", "ratio", "word", "unset"] {
        seen += `${n}=${type_of(h.var(n))} `;
    }
    seen += `next=${h.var("port", 80) + 1} disk=${h.var("disks", [])[1]} `;
    seen += `db=${h.var("db").host}:${h.var("db").port}:${h.var("db").tls} `;
    seen += `default=${h.var("unset", 7)}`;
    h.run(`echo ${sh::quote(seen)} > ${h.var("dir")}/seen`);
}).when(|h| h.var("flag", false));
rb
"#,
    )
    .unwrap();
    let out = run_in(d, &["run", "rb.rhai", "-i", "hosts", "--yes"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        std::fs::read_to_string(d.join("seen")).unwrap(),
        "port=i64 flag=bool disks=array db=map ratio=f64 word=string unset=() \
         next=8081 disk=b db=db1:5432:true default=7\n"
    );
}
