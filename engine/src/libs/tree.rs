//! The dependency tree: from a project's `[dependencies]` through each library's own, one
//! version of each library, every requirement checked, and the lock either written
//! ([`Mode::Fetch`]) or checked ([`Mode::Verify`]).

use super::lock::{file_changes, Entry, Lock, LOCK_VERSION};
use super::manifest::{GitRef, Source};
use super::{git, hash_files, DepSpec, Libraries, Library, Manifest, LOCK};
use crate::error::{Error, Result};
use indexmap::IndexMap;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};

/// A project's dependencies as its `fleetbook.toml` declares them.
pub struct ProjectDeps<'a> {
    /// The directory of `fleetbook.toml` (paths are relative to it; the lock is beside it).
    pub dir: &'a Path,
    pub deps: &'a [(String, DepSpec)],
    /// A plain-directory mirror (`FLEETBOOK_LIB_MIRROR`, `lib lib vendor`'s output):
    /// `MIRROR/NAME/VERSION/` holds a library's files; used before any other source.
    pub mirror: Option<&'a Path>,
    /// Also ask each git repository (when it answers) whether a locked tag still names the
    /// locked commit: for the commands that make a plan to run, not for `check` or editors.
    pub check_tags: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Plan, run, apply: offline, everything must match `fleetbook.lock`.
    Verify,
    /// `fleetbook lib fetch`: fetch git libraries and give a new lock; with `update`, the old
    /// lock is not consulted (a moved tag is then accepted).
    Fetch { update: bool },
}

/// The tree, resolved.
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    pub libraries: Libraries,
    /// The lock that describes it (what `lib fetch` writes).
    pub lock: Lock,
    /// Each library's position in the tree for `lib list`: (depth, name).
    pub tree: Vec<(usize, String)>,
}

struct Want {
    requirer: String,
    /// The requirer's directory: a path dependency is relative to it.
    base: PathBuf,
    from_git: bool,
    name: String,
    spec: DepSpec,
    depth: usize,
}

struct Node {
    identity: String,
    version: semver::Version,
    first: (String, DepSpec),
}

fn run_fetch(update: bool) -> String {
    if update {
        "run `fleetbook lib fetch --update`".into()
    } else {
        "run `fleetbook lib fetch`".into()
    }
}

/// Resolves the tree of a project's dependencies.
pub fn resolve(p: &ProjectDeps, mode: Mode) -> Result<Resolved> {
    let lock_path = p.dir.join(LOCK);
    let old = match mode {
        Mode::Fetch { update: true } => None,
        _ => Lock::read(&lock_path)?,
    };
    if mode == Mode::Verify && old.is_none() && !p.deps.is_empty() {
        return Err(Error::input_with_help(
            format!(
                "{} has no fleetbook.lock: the libraries this project uses are not pinned",
                p.dir.display()
            ),
            "run `fleetbook lib fetch` to fetch them and write the lock",
        ));
    }
    let mut queue: VecDeque<Want> = p
        .deps
        .iter()
        .map(|(name, spec)| Want {
            requirer: "fleetbook.toml".into(),
            base: p.dir.to_path_buf(),
            from_git: false,
            name: name.clone(),
            spec: spec.clone(),
            depth: 0,
        })
        .collect();
    let mut nodes: IndexMap<String, Node> = IndexMap::new();
    let mut out = Resolved {
        libraries: Libraries {
            all: Vec::new(),
            direct: p.deps.iter().map(|(n, _)| n.clone()).collect(),
        },
        lock: Lock {
            version: LOCK_VERSION,
            libraries: Vec::new(),
        },
        tree: Vec::new(),
    };
    while let Some(w) = queue.pop_front() {
        let what = format!("{}: dependency {}", w.requirer, w.name);
        let source = w.spec.source(&what)?;
        let req = w.spec.requirement(&what)?;
        let identity = identity(&source, &w.base)?;
        if let Some(n) = nodes.get(&w.name) {
            if n.identity != identity || !req.matches(&n.version) {
                return Err(Error::input_with_help(
                    format!(
                        "two incompatible requirements for library {}: {} requires {}, and {} requires {}",
                        w.name,
                        n.first.0,
                        n.first.1.describe(),
                        w.requirer,
                        w.spec.describe()
                    ),
                    format!(
                        "one version of a library is used in the whole tree ({} {} was chosen): make the two requirements agree",
                        w.name, n.version
                    ),
                ));
            }
            if let Some(e) = out.lock.libraries.iter_mut().find(|e| e.name == w.name) {
                if !e.required_by.contains(&w.requirer) {
                    e.required_by.push(w.requirer.clone());
                }
            }
            continue;
        }
        if w.from_git && matches!(source, Source::Path(_)) {
            return Err(Error::input(format!(
                "{what}: a library fetched from git cannot depend on a path (it would leave its repository); use git"
            )));
        }
        let locked = old.as_ref().and_then(|l| l.entry(&w.name));
        let (dir, commit) = locate(p, &w, &source, locked, mode)?;
        let m = Manifest::load(&dir)?;
        if m.name != w.name {
            return Err(Error::input(format!(
                "{what}: {} is library {:?}, not {:?}",
                dir.display(),
                m.name,
                w.name
            )));
        }
        if !req.matches(&m.version) {
            return Err(Error::input_with_help(
                format!(
                    "version mismatch: {} requires {} {req}, but {} is {} {}",
                    w.requirer,
                    w.name,
                    dir.display(),
                    m.name,
                    m.version
                ),
                "change the requirement, or point the dependency at a version that satisfies it",
            ));
        }
        m.check_fleetbook_version()?;
        let files = hash_files(&dir)?;
        let entry = Entry {
            name: w.name.clone(),
            version: m.version.to_string(),
            source: match &source {
                Source::Path(rel) => format!("path+{}", rel.display()),
                Source::Git { url, .. } => format!("git+{url}"),
            },
            tag: match &source {
                Source::Git {
                    at: GitRef::Tag(t), ..
                } => Some(t.clone()),
                _ => None,
            },
            rev: match &source {
                Source::Git {
                    at: GitRef::Rev(r), ..
                } => Some(r.clone()),
                _ => None,
            },
            commit: commit.clone(),
            required_by: vec![w.requirer.clone()],
            uses: m.uses.iter().cloned().collect(),
            files,
        };
        if mode == Mode::Verify {
            verify(&entry, locked, &w)?;
        }
        let label = format!("{} {}", m.name, m.version);
        for (name, spec) in &m.dependencies {
            queue.push_back(Want {
                requirer: label.clone(),
                base: dir.clone(),
                from_git: w.from_git || matches!(source, Source::Git { .. }),
                name: name.clone(),
                spec: spec.clone(),
                depth: w.depth + 1,
            });
        }
        out.tree.push((w.depth, w.name.clone()));
        out.libraries.all.push(Library {
            name: m.name.clone(),
            version: Some(m.version.to_string()),
            description: m.description.clone(),
            dir: Some(dir),
            source: describe_source(&source, commit.as_deref()),
            uses: Some(m.uses.clone()),
            deps: m.dependencies.keys().cloned().collect(),
        });
        out.lock.libraries.push(entry);
        nodes.insert(
            w.name.clone(),
            Node {
                identity,
                version: m.version,
                first: (w.requirer, w.spec),
            },
        );
    }
    Ok(out)
}

fn describe_source(source: &Source, commit: Option<&str>) -> String {
    match source {
        Source::Path(p) => format!("path {}", p.display()),
        Source::Git { url, at } => format!(
            "git {url} {at}{}",
            commit.map_or(String::new(), |c| format!(" ({})", &c[..c.len().min(12)]))
        ),
    }
}

/// What makes two requirements name the same library source.
fn identity(source: &Source, base: &Path) -> Result<String> {
    Ok(match source {
        Source::Path(rel) => {
            let dir = base.join(rel);
            let real = dir
                .canonicalize()
                .map_err(|e| Error::input(format!("library directory {}: {e}", dir.display())))?;
            format!("path {}", real.display())
        }
        Source::Git { url, at } => format!("git {url} {at}"),
    })
}

/// The directory holding the library's files, and the commit for a git library.
fn locate(
    p: &ProjectDeps,
    w: &Want,
    source: &Source,
    locked: Option<&Entry>,
    mode: Mode,
) -> Result<(PathBuf, Option<String>)> {
    // A mirror (or a vendored copy) has each library at the version the lock pins.
    if let (Some(mirror), Some(e)) = (p.mirror, locked) {
        let dir = mirror.join(&e.name).join(&e.version);
        if dir.join(super::MANIFEST).is_file() {
            let dir = dir
                .canonicalize()
                .map_err(|err| Error::input(format!("{}: {err}", dir.display())))?;
            return Ok((dir, e.commit.clone()));
        }
    }
    match source {
        Source::Path(rel) => {
            let dir = w.base.join(rel);
            let real = dir.canonicalize().map_err(|e| {
                Error::input(format!(
                    "{}: dependency {}: library directory {}: {e}",
                    w.requirer,
                    w.name,
                    dir.display()
                ))
            })?;
            Ok((real, None))
        }
        Source::Git { url, at } => locate_git(w, url, at, locked, mode, p.check_tags),
    }
}

fn locate_git(
    w: &Want,
    url: &str,
    at: &GitRef,
    locked: Option<&Entry>,
    mode: Mode,
    check_tags: bool,
) -> Result<(PathBuf, Option<String>)> {
    let same_ref = locked.filter(|e| {
        e.source == format!("git+{url}")
            && match at {
                GitRef::Tag(t) => e.tag.as_deref() == Some(t),
                GitRef::Rev(r) => e.rev.as_deref() == Some(r),
            }
    });
    let locked_commit = same_ref.and_then(|e| e.commit.clone());
    if let Some(c) = &locked_commit {
        if c.len() < 7 || !c.chars().all(|ch| ch.is_ascii_hexdigit()) {
            return Err(Error::input(format!(
                "fleetbook.lock: library {}: commit {c:?} is not a commit id",
                w.name
            )));
        }
    }
    if let Mode::Fetch { .. } = mode {
        git::update(url)?;
    }
    let mut now = git::commit_of(url, at)?;
    if let (Mode::Verify, true, GitRef::Tag(t), Some(_)) = (mode, check_tags, at, &locked_commit) {
        match git::remote_tag(url, t) {
            Ok(Some(c)) => now = Some(c),
            Ok(None) => {}
            // Offline is fine: the lock and the cache say what to run.
            Err(e) => tracing::warn!(
                "library {}: cannot check tag {t} at {url} ({e}); using the locked commit",
                w.name
            ),
        }
    }
    // A tag is a name that can be moved; the lock pins the commit it named.
    if let (Some(locked), Some(now), GitRef::Tag(t)) = (&locked_commit, &now, at) {
        if locked != now {
            return Err(Error::input_with_help(
                format!(
                    "tag {t} of library {} ({url}) moved: fleetbook.lock has commit {locked}, the repository now has {now}",
                    w.name
                ),
                "a moved tag may be a tampered repository: ask the library's authors. If the new commit is intended, run `fleetbook lib fetch --update`",
            ));
        }
    }
    let commit = match (mode, locked_commit, now) {
        (Mode::Verify, Some(c), _) => c,
        (Mode::Verify, None, _) => {
            return Err(Error::input_with_help(
                format!("library {} ({url} {at}) is not in fleetbook.lock", w.name),
                run_fetch(false),
            ))
        }
        (Mode::Fetch { .. }, _, Some(c)) => c,
        (Mode::Fetch { .. }, _, None) => {
            return Err(Error::input(format!(
                "library {}: {url} has no {at}",
                w.name
            )))
        }
    };
    let dir = git::checkout_dir(&w.name, &commit);
    if mode == Mode::Verify && !dir.is_dir() {
        return Err(Error::input_with_help(
            format!(
                "library {} ({url} {at}, commit {commit}) is not fetched on this machine",
                w.name
            ),
            "run `fleetbook lib fetch`, or set FLEETBOOK_LIB_MIRROR to a directory `fleetbook lib vendor` wrote",
        ));
    }
    let dir = git::checkout(&w.name, url, &commit)?;
    Ok((dir, Some(commit)))
}

/// The lock must say exactly what was found: the entry exists, with the same source,
/// version, commit and files.
fn verify(now: &Entry, locked: Option<&Entry>, w: &Want) -> Result<()> {
    let fix = run_fetch(false);
    let Some(l) = locked else {
        return Err(Error::input_with_help(
            format!(
                "fleetbook.lock has no entry for library {} (required by {})",
                w.name, w.requirer
            ),
            fix,
        ));
    };
    let source_of = |e: &Entry| {
        let at = match (&e.tag, &e.rev) {
            (Some(t), _) => format!(" tag {t}"),
            (_, Some(r)) => format!(" rev {r}"),
            _ => String::new(),
        };
        format!("{}{at}", e.source)
    };
    if now.source.starts_with("git+") && source_of(now) != source_of(l) {
        return Err(Error::input_with_help(
            format!(
                "library {}: {} asks for {}, fleetbook.lock has {}",
                w.name,
                w.requirer,
                source_of(now),
                source_of(l)
            ),
            fix,
        ));
    }
    let req = w.spec.requirement(&w.name)?;
    let lv = semver::Version::parse(&l.version).ok();
    if !lv.as_ref().is_some_and(|v| req.matches(v)) {
        return Err(Error::input_with_help(
            format!(
                "fleetbook.lock has library {} {}, which does not satisfy {req} (required by {})",
                w.name, l.version, w.requirer
            ),
            fix,
        ));
    }
    if now.version != l.version {
        return Err(Error::input_with_help(
            format!(
                "library {} is now version {}, fleetbook.lock has {}",
                w.name, now.version, l.version
            ),
            fix,
        ));
    }
    let changes = file_changes(&l.files, &now.files);
    if !changes.is_empty() {
        return Err(Error::input_with_help(
            format!(
                "library {} {} differs from fleetbook.lock: {}",
                w.name,
                now.version,
                changes.join("; ")
            ),
            "if the change is intended, run `fleetbook lib fetch` to lock it; otherwise restore the library",
        ));
    }
    Ok(())
}
