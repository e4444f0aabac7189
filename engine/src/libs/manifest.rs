//! `fleetbook-lib.toml`, and a dependency as `[dependencies]` declares it (in a library's
//! manifest or in a project's `fleetbook.toml`).

use super::{confine, MANIFEST};
use crate::error::{Error, Result};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// One entry of `[dependencies]`: a source (`path`, or `git` at a `tag` or a `rev`) and a
/// semver requirement on the library's version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DepSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub git: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rev: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// Where a dependency comes from, once its declaration is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Path(PathBuf),
    Git { url: String, at: GitRef },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GitRef {
    Tag(String),
    Rev(String),
}

impl std::fmt::Display for GitRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GitRef::Tag(t) => write!(f, "tag {t}"),
            GitRef::Rev(r) => write!(f, "rev {r}"),
        }
    }
}

impl DepSpec {
    /// The source it names, or why the declaration is wrong (`what` says where it is).
    pub fn source(&self, what: &str) -> Result<Source> {
        let bad = |why: &str| {
            Error::input_with_help(
                format!("{what}: {why}"),
                "write { path = \"../libs/acme\", version = \"^1.2\" } or { git = \"https://host/acme.git\", tag = \"v1.2.0\", version = \"^1.2\" } (or rev = COMMIT instead of tag)",
            )
        };
        match (&self.path, &self.git) {
            (Some(p), None) => {
                if self.tag.is_some() || self.rev.is_some() {
                    return Err(bad("tag and rev go with git, not path"));
                }
                Ok(Source::Path(p.clone()))
            }
            (None, Some(url)) => {
                if url.starts_with('-') || url.trim().is_empty() {
                    return Err(bad(&format!("{url:?} is not a git URL")));
                }
                let at = match (&self.tag, &self.rev) {
                    (Some(t), None) => GitRef::Tag(t.clone()),
                    (None, Some(r)) => {
                        let hex = r.len() >= 7 && r.chars().all(|c| c.is_ascii_hexdigit());
                        if !hex {
                            return Err(bad(&format!(
                                "rev {r:?} is not a commit id (7 to 40 hexadecimal digits)"
                            )));
                        }
                        GitRef::Rev(r.to_ascii_lowercase())
                    }
                    (Some(_), Some(_)) => return Err(bad("give tag or rev, not both")),
                    (None, None) => {
                        return Err(bad(
                            "a git dependency needs a tag or a rev (a branch would move under the lock)",
                        ))
                    }
                };
                if at_is_option(&at) {
                    return Err(bad(&format!("{at} looks like an option")));
                }
                Ok(Source::Git {
                    url: url.clone(),
                    at,
                })
            }
            (Some(_), Some(_)) => Err(bad("give path or git, not both")),
            (None, None) => Err(bad("no source: give path or git")),
        }
    }

    /// The version requirement (any version when none is given).
    pub fn requirement(&self, what: &str) -> Result<semver::VersionReq> {
        match &self.version {
            None => Ok(semver::VersionReq::STAR),
            Some(v) => semver::VersionReq::parse(v).map_err(|e| {
                Error::input(format!(
                    "{what}: version {v:?} is not a semver requirement: {e}"
                ))
            }),
        }
    }

    /// How it reads in messages: `^1.2 (git URL tag v1.2.0)`.
    pub fn describe(&self) -> String {
        let req = self.version.as_deref().unwrap_or("*");
        match (&self.path, &self.git) {
            (Some(p), _) => format!("{req} (path {})", p.display()),
            (_, Some(g)) => {
                let at = match (&self.tag, &self.rev) {
                    (Some(t), _) => format!(" tag {t}"),
                    (_, Some(r)) => format!(" rev {r}"),
                    _ => String::new(),
                };
                format!("{req} (git {g}{at})")
            }
            _ => req.to_string(),
        }
    }
}

fn at_is_option(at: &GitRef) -> bool {
    match at {
        GitRef::Tag(t) | GitRef::Rev(t) => t.starts_with('-') || t.is_empty(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    library: Table,
    #[serde(default)]
    dependencies: IndexMap<String, DepSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    name: String,
    version: String,
    #[serde(default)]
    description: String,
    fleetbook: Option<String>,
    #[serde(default)]
    uses: Vec<String>,
}

/// A library's `fleetbook-lib.toml`, checked.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub name: String,
    pub version: semver::Version,
    pub description: String,
    /// The fleetbook versions it works with.
    pub fleetbook: Option<semver::VersionReq>,
    pub uses: BTreeSet<String>,
    pub dependencies: IndexMap<String, DepSpec>,
}

impl Manifest {
    pub fn load(dir: &Path) -> Result<Manifest> {
        let path = dir.join(MANIFEST);
        if !path.is_file() {
            return Err(Error::input(format!(
                "{} is not a fleetbook library: it has no {MANIFEST}",
                dir.display()
            )));
        }
        let text = crate::error::read_file(&path)?;
        Manifest::parse(&path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Manifest> {
        let f: File = toml::from_str(text).map_err(|e| toml_error(path, text, &e))?;
        let at = |what: &str| format!("{}: {what}", path.display());
        let t = f.library;
        if !valid_name(&t.name) {
            return Err(Error::input(at(&format!(
                "library name {:?} must be letters, digits, '-' and '_' (it is the first part of a qualified import, \"{}/module\")",
                t.name, t.name
            ))));
        }
        let version = semver::Version::parse(&t.version).map_err(|e| {
            Error::input(at(&format!(
                "version {:?} is not a semver version (such as 1.2.0): {e}",
                t.version
            )))
        })?;
        let fleetbook = t
            .fleetbook
            .as_deref()
            .map(|r| {
                semver::VersionReq::parse(r).map_err(|e| {
                    Error::input(at(&format!(
                        "fleetbook = {r:?} is not a semver requirement (such as \">=0.1\"): {e}"
                    )))
                })
            })
            .transpose()?;
        let mut uses = BTreeSet::new();
        for u in t.uses {
            if !confine::NAMESPACES.contains(&u.as_str()) {
                return Err(Error::input_with_help(
                    at(&format!("uses: unknown namespace {u:?}")),
                    format!("the namespaces are: {}", confine::NAMESPACES.join(", ")),
                ));
            }
            uses.insert(u);
        }
        for name in f.dependencies.keys() {
            if !valid_name(name) {
                return Err(Error::input(at(&format!(
                    "dependency name {name:?} must be letters, digits, '-' and '_'"
                ))));
            }
        }
        Ok(Manifest {
            name: t.name,
            version,
            description: t.description,
            fleetbook,
            uses,
            dependencies: f.dependencies,
        })
    }

    /// A library made for a newer fleetbook is refused, with the version it needs.
    pub fn check_fleetbook_version(&self) -> Result<()> {
        let Some(req) = &self.fleetbook else {
            return Ok(());
        };
        let me = semver::Version::parse(env!("CARGO_PKG_VERSION"))
            .map_err(|e| Error::Internal(e.to_string()))?;
        // A pre-release fleetbook still satisfies `>=0.1`.
        let me_release = semver::Version::new(me.major, me.minor, me.patch);
        if req.matches(&me) || req.matches(&me_release) {
            return Ok(());
        }
        Err(Error::input(format!(
            "library {} {} needs fleetbook {req}; this is fleetbook {me}",
            self.name, self.version
        )))
    }
}

pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name != super::STD
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A TOML error as `FILE:LINE:COL: message`.
pub fn toml_error(path: &Path, text: &str, e: &toml::de::Error) -> Error {
    let at = e
        .span()
        .map(|s| {
            let line = text[..s.start].matches('\n').count() + 1;
            let col = s.start - text[..s.start].rfind('\n').map_or(0, |i| i + 1) + 1;
            format!(":{line}:{col}")
        })
        .unwrap_or_default();
    Error::input(format!("{}{at}: {}", path.display(), e.message()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_is_checked() {
        let p = Path::new("fleetbook-lib.toml");
        let m = Manifest::parse(
            p,
            "[library]\nname = \"acme\"\nversion = \"1.2.0\"\nfleetbook = \">=0.1\"\nuses = [\"service\"]\n[dependencies]\nbase = { path = \"../base\", version = \"^0.1\" }\n",
        )
        .unwrap();
        assert_eq!(m.version, semver::Version::new(1, 2, 0));
        assert!(m.uses.contains("service"));
        m.check_fleetbook_version().unwrap();
        let e = Manifest::parse(p, "[library]\nname = \"acme\"\nversion = \"1.2\"\n").unwrap_err();
        assert!(e.to_string().contains("not a semver version"), "{e}");
        let e = Manifest::parse(
            p,
            "[library]\nname = \"acme\"\nversion = \"1.2.0\"\nuses = [\"shell\"]\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown namespace \"shell\""), "{e}");
        let e = Manifest::parse(
            p,
            "[library]\nname = \"acme\"\nversion = \"1.2.0\"\nfleetbook = \">=99\"\n",
        )
        .unwrap()
        .check_fleetbook_version()
        .unwrap_err();
        assert!(e.to_string().contains("needs fleetbook >=99"), "{e}");
    }

    #[test]
    fn a_git_dependency_needs_a_tag_or_a_commit() {
        let git = |tag: Option<&str>, rev: Option<&str>| DepSpec {
            git: Some("file:///x.git".into()),
            tag: tag.map(Into::into),
            rev: rev.map(Into::into),
            ..DepSpec::default()
        };
        assert!(git(None, None).source("acme").is_err());
        assert!(git(Some("v1"), Some("abcdef0")).source("acme").is_err());
        assert!(git(None, Some("main")).source("acme").is_err());
        assert!(git(Some("--upload-pack=x"), None).source("acme").is_err());
        assert!(git(Some("v1.2.0"), None).source("acme").is_ok());
    }
}
