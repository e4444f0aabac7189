//! `fleetbook test` (runbook tests without a fleet) and `fleetbook doc` (library docs).

use crate::support::{fleetbook, root};

fn count(stdout: &str, what: &str) -> usize {
    stdout.lines().filter(|l| l.ends_with(what)).count()
}

#[test]
fn the_shipped_tests_pass() {
    let out = fleetbook(&["test", "runbooks/tests", "--color", "never"]).code(0);
    assert_eq!(count(&out.stdout, " ... FAILED"), 0, "{}", out.stdout);
    assert!(count(&out.stdout, " ... ok") >= 13, "{}", out.stdout);
    for rb in [
        "jiocloud-rolling",
        "maintenance-mode",
        "punch-patch",
        "starlingx-patch",
        "swh-debian-upgrade",
    ] {
        assert!(
            out.stdout
                .contains(&format!("runbooks/tests/{rb}_test.rhai::test_")),
            "no test of {rb}: {}",
            out.stdout
        );
    }
    let out = fleetbook(&["test", "stdlib/rhai/tests"]).code(0);
    assert!(count(&out.stdout, " ... ok") >= 9, "{}", out.stdout);
    assert!(
        out.stdout.ends_with("0 failed (1 file)\n"),
        "{}",
        out.stdout
    );
}

#[test]
fn a_planted_wrong_assertion_fails_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rb.rhai"), "let rb = runbook(\"x\");\nrb.limit(\"web\", 1);\nrb.step(\"up\", |h| h.run(\"upgrade-app\"));\nrb\n").unwrap();
    std::fs::write(
        dir.path().join("rb_test.rhai"),
        "fn opts() { #{ inventory: \"[web]\\nw1\\nw2\\n\" } }\n\
         fn test_right() {\n    let p = plan(\"rb.rhai\", opts());\n    assert_eq(p.commands(\"w1\"), [\"upgrade-app\"]);\n}\n\
         fn test_wrong() {\n    let p = plan(\"rb.rhai\", opts());\n    assert(p.before(\"w1\", \"w2\"));\n    assert_eq(p.max_in_flight(\"web\"), 2);\n}\n",
    )
    .unwrap();
    let out = fleetbook(&["test"]).in_dir(dir.path()).code(5);
    assert!(
        out.stdout
            .contains("test ./rb_test.rhai::test_right ... ok\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("test ./rb_test.rhai::test_wrong ... FAILED\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("./rb_test.rhai:9:5: assertion failed: left == right\n"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("left: 1\n"), "{}", out.stdout);
    assert!(
        out.stdout
            .ends_with("test result: FAILED. 1 passed; 1 failed (1 file)\n"),
        "{}",
        out.stdout
    );
}

#[test]
fn test_paths_stay_inside_the_directory_the_tests_run_in() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(
        outside.path().join("evil.rhai"),
        "let rb = runbook(\"e\"); rb",
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let evil = outside.path().join("evil.rhai");
    std::os::unix::fs::symlink(&evil, dir.path().join("link.rhai")).unwrap();
    let t = |path: &str| format!("let p = plan({path:?}, #{{ inventory: \"[web]\\nw1\\n\" }});\n");
    for (path, why) in [
        (evil.display().to_string(), "not absolute"),
        ("link.rhai".to_string(), "leads outside"),
        (
            format!(
                "../{}/evil.rhai",
                outside.path().file_name().unwrap().to_string_lossy()
            ),
            "leads outside",
        ),
    ] {
        std::fs::write(dir.path().join("x_test.rhai"), t(&path)).unwrap();
        let out = fleetbook(&["test", "x_test.rhai"])
            .in_dir(dir.path())
            .code(5);
        assert!(out.stdout.contains("x_test.rhai:1:9: "), "{}", out.stdout);
        assert!(out.stdout.contains(why), "{path}: {}", out.stdout);
    }
}

#[test]
fn no_test_file_is_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let out = fleetbook(&["test"]).in_dir(dir.path()).code(2);
    assert!(
        out.stderr.contains("no *_test.rhai file under ."),
        "{}",
        out.stderr
    );
}

#[test]
fn doc_shows_a_builtin_library_as_text_and_markdown() {
    let out = fleetbook(&["doc", "rolling"]).code(0);
    assert!(
        out.stdout.starts_with("rolling (built-in)\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("\n  rolling::puppet_off_around(rb, opts, work)\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("      Example:\n        import \"rolling\" as rolling;\n"),
        "{}",
        out.stdout
    );
    // Private helpers are not part of the library's interface.
    assert!(!out.stdout.contains("hosts_of"), "{}", out.stdout);
    let md = fleetbook(&["doc", "rolling", "--format", "md"])
        .code(0)
        .stdout;
    assert!(md.starts_with("# `rolling`\n"), "{md}");
    assert!(
        md.contains("## `rolling::restart_healthy(h, service, url, timeout)`\n\nParameters: `h`, `service`, `url`, `timeout`.\n\n"),
        "{md}"
    );
    assert!(
        md.contains("```rhai\nimport \"rolling\" as rolling;\n"),
        "{md}"
    );
}

#[test]
fn doc_reads_a_file_or_a_library_directory() {
    let out = fleetbook(&["doc", "runbooks/lib/text.rhai"]).code(0);
    assert!(out.stdout.contains("text::table(text)"), "{}", out.stdout);
    let out = fleetbook(&["doc", "runbooks/lib", "--format", "md"]).code(0);
    assert!(
        out.stdout.contains("## `text::words(line)`"),
        "{}",
        out.stdout
    );
    let out = fleetbook(&["doc", "nosuchlib"]).code(2);
    assert!(
        out.stderr
            .contains("neither a built-in library (rolling, checks"),
        "{}",
        out.stderr
    );
}

/// Every ```rhai example in the stdlib's `///` docs plans against the docs' inventory.
#[test]
fn every_documented_stdlib_example_plans() {
    let dir = tempfile::tempdir().unwrap();
    let mut planned = 0;
    for entry in std::fs::read_dir(root().join("stdlib/rhai")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rhai") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for f in fleetbook_engine::libdoc::exported(&text) {
            let examples = f.examples();
            assert!(
                !examples.is_empty(),
                "{}: {} has no example",
                path.display(),
                f.name
            );
            for (i, ex) in examples.iter().enumerate() {
                let rb = dir.path().join(format!("{}-{i}.rhai", f.name));
                std::fs::write(&rb, ex).unwrap();
                let out = fleetbook(&["plan", "-i", "tests/fixtures/docs.ini"])
                    .arg(rb.display().to_string())
                    .run();
                assert_eq!(
                    out.code,
                    0,
                    "{} {}: {}\n{ex}",
                    path.display(),
                    f.name,
                    out.stderr
                );
                planned += 1;
            }
        }
    }
    assert!(planned >= 12, "only {planned} examples");
}
