//! `fleetbook test [PATH]`: tooling's test run, printed, and its exit status.

use crate::exit;
use fleetbook_engine::Result;
use std::path::{Path, PathBuf};

pub fn run(
    path: Option<&Path>,
    here: &Path,
    lib_dirs: &[PathBuf],
    libs: &fleetbook_engine::libs::Libraries,
) -> Result<i32> {
    let report = fleetbook_tooling::test_run::run(path, here, lib_dirs, libs)?;
    exit::print(&report.text)?;
    Ok(if report.passed {
        exit::OK
    } else {
        exit::FAILURES
    })
}
