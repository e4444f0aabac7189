//! Replays the fuzz corpus and every input the fuzzer ever found a bug with
//! (`fuzz/corpus/<target>/`, `fuzz/regressions/<target>/`) through the same entry points the
//! fuzz targets call, so a fixed crash stays fixed without a fuzzer.

use fleetbook_engine::fuzzing;
use std::path::Path;
use std::time::{Duration, Instant};

/// An input slower than this is a bug, as a crash is (debug builds get four times as long).
const SLOW: Duration = Duration::from_secs(5);

fn replay(target: &str, run: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut seen = 0;
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        let mut files: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        files.sort();
        for file in files.iter().filter(|f| f.is_file()) {
            let data = std::fs::read(file).unwrap();
            let started = Instant::now();
            if std::panic::catch_unwind(|| run(&data)).is_err() {
                panic!("{} panicked", file.display());
            }
            let took = started.elapsed();
            let limit = if cfg!(debug_assertions) {
                SLOW * 4
            } else {
                SLOW
            };
            assert!(took < limit, "{} took {took:?}", file.display());
            seen += 1;
        }
    }
    assert!(seen > 0, "no corpus for fuzz target {target}");
}

#[test]
fn fuzz_corpus_ini() {
    replay("ini", fuzzing::ini);
}

#[test]
fn fuzz_corpus_yaml() {
    replay("yaml", fuzzing::yaml);
}

#[test]
fn fuzz_corpus_toml() {
    replay("toml", fuzzing::toml);
}

#[test]
fn fuzz_corpus_pattern() {
    replay("pattern", fuzzing::pattern);
}

#[test]
fn fuzz_corpus_range() {
    replay("range", fuzzing::range);
}

#[test]
fn fuzz_corpus_plan() {
    replay("plan", fuzzing::plan);
}
