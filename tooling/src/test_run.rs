//! `fleetbook test [PATH]`: the `*_test.rhai` files run by the engine's `testing`, each
//! test reported as cargo does. Takes a path and the library directories; gives the report.

use fleetbook_engine::{testing, Error, Result};
use std::path::{Path, PathBuf};

/// What a `fleetbook test` run printed and whether every test passed.
pub struct Report {
    pub text: String,
    pub passed: bool,
}

/// Runs every `*_test.rhai` file under `path` (`here`: the current directory, which confines
/// the tests' paths unless they are outside it).
pub fn run(
    path: Option<&Path>,
    here: &Path,
    lib_dirs: &[PathBuf],
    libs: &fleetbook_engine::libs::Libraries,
) -> Result<Report> {
    let path = path.unwrap_or(Path::new("."));
    let files = testing::discover(path)?;
    if files.is_empty() {
        return Err(Error::input(format!(
            "no *_test.rhai file under {}",
            path.display()
        )));
    }
    let root = test_root(path, here);
    let mut out = String::new();
    let (mut passed, mut failed) = (0, Vec::new());
    for file in &files {
        for o in testing::run_file(file, &root, lib_dirs, libs) {
            let name = if o.name.is_empty() {
                o.file.display().to_string()
            } else {
                format!("{}::{}", o.file.display(), o.name)
            };
            match o.failure {
                None => {
                    passed += 1;
                    out.push_str(&format!("test {name} ... ok\n"));
                }
                Some(why) => {
                    out.push_str(&format!("test {name} ... FAILED\n"));
                    failed.push((name, why));
                }
            }
        }
    }
    if !failed.is_empty() {
        out.push_str("\nfailures:\n");
        for (name, why) in &failed {
            out.push_str(&format!("    {name}\n"));
            for line in why.lines() {
                out.push_str(&format!("        {line}\n"));
            }
        }
    }
    let verdict = if failed.is_empty() { "ok" } else { "FAILED" };
    out.push_str(&format!(
        "\ntest result: {verdict}. {passed} passed; {} failed ({} file{})\n",
        failed.len(),
        files.len(),
        if files.len() == 1 { "" } else { "s" }
    ));
    Ok(Report {
        text: out,
        passed: failed.is_empty(),
    })
}

/// The directory a test's paths must stay inside: the current directory; for tests outside
/// it, their project (the nearest directory above them with a fleetbook.toml or a .git), else
/// the directory given (a file's own directory).
fn test_root(path: &Path, here: &Path) -> PathBuf {
    let real = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let here = here.canonicalize().unwrap_or_else(|_| here.to_path_buf());
    if real.starts_with(&here) {
        return here;
    }
    let dir = if real.is_file() {
        real.parent().map(Path::to_path_buf).unwrap_or(real)
    } else {
        real
    };
    dir.ancestors()
        .find(|d| d.join("fleetbook.toml").is_file() || d.join(".git").exists())
        .map(Path::to_path_buf)
        .unwrap_or(dir)
}
