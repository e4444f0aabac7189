//! Git libraries through the system `git`: a bare repository per URL in a cache
//! (`$XDG_CACHE_HOME/fleetbook/git/db/`, default `~/.cache/fleetbook/git/db/`), and one
//! checkout per commit beside it (`.../git/checkouts/NAME-COMMIT/`), never modified once
//! made. Every URL, tag and commit is passed as one argument after the options.

use super::manifest::GitRef;
use super::sha256;
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The cache's root: `$XDG_CACHE_HOME/fleetbook/git`, or `~/.cache/fleetbook/git`.
pub fn cache_dir() -> PathBuf {
    let xdg = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute());
    match xdg {
        Some(d) => d.join("fleetbook/git"),
        None => std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default()
            .join(".cache/fleetbook/git"),
    }
}

fn db_dir(url: &str) -> PathBuf {
    let h = sha256(url.as_bytes());
    let stem: String = url
        .trim_end_matches('/')
        .trim_end_matches(".git")
        .rsplit(['/', ':'])
        .next()
        .unwrap_or("repo")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    cache_dir().join("db").join(format!("{stem}-{}", &h[7..23]))
}

/// Where the files of `name` at `commit` are checked out.
pub fn checkout_dir(name: &str, commit: &str) -> PathBuf {
    cache_dir()
        .join("checkouts")
        .join(format!("{name}-{commit}"))
}

fn git(args: &[&str], dir: Option<&Path>) -> Result<String> {
    let mut cmd = Command::new("git");
    if let Some(d) = dir {
        cmd.arg("--git-dir").arg(d);
    }
    cmd.args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null());
    let out = cmd.output().map_err(|e| {
        Error::input(format!(
            "cannot run git (git libraries are fetched with the system git): {e}"
        ))
    })?;
    if !out.status.success() {
        return Err(Error::input(format!(
            "git {} failed: {}",
            args.first().copied().unwrap_or(""),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Brings the cache's copy of `url` up to date (the network is used here only).
pub fn update(url: &str) -> Result<()> {
    let db = db_dir(url);
    if !db.join("HEAD").is_file() {
        std::fs::create_dir_all(db.parent().unwrap_or(&db))
            .map_err(|e| Error::input(format!("cannot create {}: {e}", db.display())))?;
        let db_s = db.to_string_lossy().into_owned();
        git(&["clone", "--bare", "--quiet", "--", url, &db_s], None)
            .map_err(|e| Error::input(format!("fetching {url}: {e}")))?;
    }
    // Tags are taken as they are now (forced), so that a moved tag is seen and refused.
    git(
        &[
            "fetch",
            "--quiet",
            "--force",
            "--",
            url,
            "+refs/heads/*:refs/heads/*",
            "+refs/tags/*:refs/tags/*",
        ],
        Some(&db),
    )
    .map_err(|e| Error::input(format!("fetching {url}: {e}")))?;
    Ok(())
}

/// The commit a tag or rev names in the cache's copy of `url`; None when the cache has no
/// copy of it (nothing was fetched yet).
pub fn commit_of(url: &str, at: &GitRef) -> Result<Option<String>> {
    let db = db_dir(url);
    if !db.join("HEAD").is_file() {
        return Ok(None);
    }
    let spec = match at {
        GitRef::Tag(t) => format!("refs/tags/{t}^{{commit}}"),
        GitRef::Rev(r) => format!("{r}^{{commit}}"),
    };
    match git(
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            "--end-of-options",
            &spec,
        ],
        Some(&db),
    ) {
        Ok(c) if !c.is_empty() => Ok(Some(c)),
        _ => Ok(None),
    }
}

/// The commit a tag names in the repository at `url` now (`git ls-remote`, no fetch); None
/// when it has no such tag.
pub fn remote_tag(url: &str, tag: &str) -> Result<Option<String>> {
    let plain = format!("refs/tags/{tag}");
    let peeled = format!("{plain}^{{}}");
    let out = git(&["ls-remote", "--tags", "--", url, &plain, &peeled], None)?;
    let mut found = None;
    for line in out.lines() {
        let mut parts = line.split_whitespace();
        let (Some(sha), Some(name)) = (parts.next(), parts.next()) else {
            continue;
        };
        // An annotated tag's peeled line names the commit; a lightweight tag's plain one.
        if name == peeled {
            return Ok(Some(sha.to_string()));
        }
        if name == plain {
            found = Some(sha.to_string());
        }
    }
    Ok(found)
}

/// Makes the checkout of `commit` (once; a checkout is never changed afterwards).
pub fn checkout(name: &str, url: &str, commit: &str) -> Result<PathBuf> {
    let dir = checkout_dir(name, commit);
    if dir.is_dir() {
        return Ok(dir);
    }
    let db = db_dir(url);
    let tmp = dir.with_extension("tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)
        .map_err(|e| Error::input(format!("cannot create {}: {e}", tmp.display())))?;
    let tmp_s = tmp.to_string_lossy().into_owned();
    // `git archive | tar` would need tar; a work tree of the bare repository needs nothing.
    git(
        &[
            &format!("--work-tree={tmp_s}"),
            "checkout",
            "--quiet",
            "--force",
            commit,
            "--",
            ".",
        ],
        Some(&db),
    )?;
    std::fs::rename(&tmp, &dir)
        .map_err(|e| Error::input(format!("cannot create {}: {e}", dir.display())))?;
    Ok(dir)
}
