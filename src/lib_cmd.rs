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
    let entry = |name: &str| resolved.lock.entry(name);
    if format == ReportFormat::Json {
        let libraries: Vec<serde_json::Value> = resolved
            .tree
            .iter()
            .filter_map(|(depth, name)| {
                let l = resolved.libraries.get(name)?;
                let e = entry(name)?;
                Some(serde_json::json!({
                    "name": l.name,
                    "version": l.version,
                    "depth": depth,
                    "source": l.source,
                    "commit": e.commit,
                    "required_by": e.required_by,
                    "uses": e.uses,
                    "dependencies": l.deps,
                    "files": e.files,
                }))
            })
            .collect();
        let text = serde_json::to_string_pretty(&serde_json::json!({ "libraries": libraries }))
            .map_err(|e| Error::Internal(e.to_string()))?;
        exit::print(&format!("{text}\n"))?;
        return Ok(exit::OK);
    }
    let mut out = String::new();
    if resolved.tree.is_empty() {
        out.push_str("no libraries ([dependencies] in fleetbook.toml is empty)\n");
    }
    for (depth, name) in &resolved.tree {
        let (Some(l), Some(e)) = (resolved.libraries.get(name), entry(name)) else {
            continue;
        };
        let uses = if e.uses.is_empty() {
            "uses nothing".to_string()
        } else {
            format!("uses {}", e.uses.join(", "))
        };
        let about = if l.description.is_empty() {
            String::new()
        } else {
            format!(" — {}", l.description)
        };
        out.push_str(&format!(
            "{}{} ({}) {uses}; {}; required by {}{about}\n",
            "    ".repeat(*depth),
            l.label(),
            l.source,
            fleetbook_engine::render::count(e.files.len(), "file"),
            e.required_by.join(", ")
        ));
    }
    exit::print(&out)?;
    Ok(exit::OK)
}

fn vendor(project: &Project, dir: &Path) -> Result<i32> {
    let resolved = project.resolve(Mode::Verify)?;
    for l in &resolved.libraries.all {
        let (Some(src), Some(version), Some(e)) =
            (&l.dir, &l.version, resolved.lock.entry(&l.name))
        else {
            continue;
        };
        let to = dir.join(&l.name).join(version);
        if to.exists() {
            std::fs::remove_dir_all(&to)
                .map_err(|err| Error::input(format!("cannot replace {}: {err}", to.display())))?;
        }
        for rel in e.files.keys() {
            let target = to.join(rel);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(|err| {
                    Error::input(format!("cannot create {}: {err}", parent.display()))
                })?;
            }
            std::fs::copy(src.join(rel), &target).map_err(|err| {
                Error::input(format!("cannot copy to {}: {err}", target.display()))
            })?;
        }
        eprintln!("{} -> {}", l.label(), to.display());
    }
    eprintln!(
        "{} vendored into {}: use it with FLEETBOOK_LIB_MIRROR={} (or lib_mirror = {:?} in fleetbook.toml)",
        libraries(resolved.libraries.all.len()),
        dir.display(),
        dir.display(),
        dir.display().to_string()
    );
    Ok(exit::OK)
}
