//! `fleetbook lib fetch | list | vendor`: the project's libraries, through the engine's
//! resolver (engine/src/libs/).

use crate::cli::{LibCommand, ReportFormat};
use crate::exit;
use fleetbook_engine::libs::{self, lock::Lock, Mode};
use fleetbook_engine::project::Project;
use fleetbook_engine::{Error, Result};
use std::path::Path;

fn libraries(n: usize) -> String {
    format!("{n} {}", if n == 1 { "library" } else { "libraries" })
}

pub fn run(command: LibCommand, project: Option<&Project>) -> Result<i32> {
    let project = project.ok_or_else(|| {
        Error::input_with_help(
            "no fleetbook.toml here or in a directory above: libraries are a project's",
            "create fleetbook.toml with a [dependencies] table (docs/libraries.md)",
        )
    })?;
    match command {
        LibCommand::Fetch { update } => fetch(project, update),
        LibCommand::List { format } => list(project, format),
        LibCommand::Vendor { dir } => vendor(project, &dir),
    }
}

fn fetch(project: &Project, update: bool) -> Result<i32> {
    let resolved = project.resolve(Mode::Fetch { update })?;
    let path = project.dir().join(libs::LOCK);
    let old = Lock::read(&path).ok().flatten();
    resolved.lock.write(&path)?;
    for e in &resolved.lock.libraries {
        let was = old.as_ref().and_then(|o| o.entry(&e.name));
        let note = match was {
            None => "added",
            Some(w) if w == e => "unchanged",
            Some(_) => "updated",
        };
        eprintln!(
            "{} {} ({}{}) {note}",
            e.name,
            e.version,
            e.source,
            e.commit
                .as_deref()
                .map_or(String::new(), |c| format!(" {}", &c[..c.len().min(12)]))
        );
    }
    eprintln!(
        "{} written: {}",
        path.display(),
        libraries(resolved.lock.libraries.len())
    );
    Ok(exit::OK)
}

fn list(project: &Project, format: ReportFormat) -> Result<i32> {
    let resolved = project.resolve(Mode::Verify)?;
    let text = match format {
        ReportFormat::Json => {
            let json = serde_json::to_string_pretty(&libs::listing::json(&resolved))
                .map_err(|e| Error::Internal(e.to_string()))?;
            format!("{json}\n")
        }
        ReportFormat::Text => libs::listing::text(&resolved),
    };
    exit::print(&text)?;
    Ok(exit::OK)
}

fn vendor(project: &Project, dir: &Path) -> Result<i32> {
    let resolved = project.resolve(Mode::Verify)?;
    libs::vendor::vendor(&resolved, dir, &mut |label, to| {
        eprintln!("{label} -> {}", to.display())
    })?;
    eprintln!(
        "{} vendored into {}: use it with FLEETBOOK_LIB_MIRROR={} (or lib_mirror = {:?} in fleetbook.toml)",
        libraries(resolved.libraries.all.len()),
        dir.display(),
        dir.display(),
        dir.display().to_string()
    );
    Ok(exit::OK)
}
