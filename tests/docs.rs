//! Every ```rhai example in docs/runbook-language.md is a complete runbook that plans
//! against tests/fixtures/docs.ini.

use crate::support::{fleetbook, root};

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
