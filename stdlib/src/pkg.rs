//! `pkg::` — package operations for apt (Debian, Ubuntu) and dnf (RHEL, Fedora).
//!
//! The package manager comes from the host variable `pkg_manager` (`apt` or `dnf`), or is
//! detected once per host with `command -v`. apt runs non-interactively and keeps local
//! configuration files (`--force-confdef --force-confold`), as Software Heritage does.
//!
//! A package name is one package, never an option, a pattern or a file: names are checked
//! ([`check_name`]) before any command runs, and apt, dpkg-query and rpm get `--` before them
//! (dnf 5 has no `--`, so there the check is what keeps a name from being an option).

use crate::host::Host;
use crate::quote::{command, quote};
use crate::{located, refused, runtime_error};
use rhai::{Array, EvalAltResult, FuncRegistration, ImmutableString, Module, NativeCallContext};

type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manager {
    Apt,
    Dnf,
}

/// Waits (up to 2 minutes) for a dpkg lock held by another apt, e.g. one that a killed
/// controller left running on the host, instead of failing at once.
const LOCK_WAIT: &str = "-o DPkg::Lock::Timeout=120";
/// `APT::Cmd::Pattern-Only`: a name that is no package is not tried as a regular expression
/// (apt-get would install every package that `python3.1` matches).
const APT: &str = "DEBIAN_FRONTEND=noninteractive apt-get -q -y -o DPkg::Lock::Timeout=120 -o APT::Cmd::Pattern-Only=true -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold";

pub fn manager(h: &Host) -> RhaiResult<Manager> {
    // The inventory's variable is borrowed: no copy of it per package operation.
    if let Some(name) = h.var("pkg_manager") {
        return manager_named(h, name);
    }
    if let Some(name) = h.fact("pkg_manager") {
        return manager_named(h, &name);
    }
    let detected = if h.run_ok("command -v apt-get >/dev/null 2>&1")? {
        "apt"
    } else if h.run_ok("command -v dnf >/dev/null 2>&1")? {
        "dnf"
    } else {
        return Err(runtime_error(format!(
            "host {}: neither apt-get nor dnf found; set the host variable pkg_manager",
            h.info.name
        )));
    };
    h.set_fact("pkg_manager", detected.to_string());
    manager_named(h, detected)
}

fn manager_named(h: &Host, name: &str) -> RhaiResult<Manager> {
    match name {
        "apt" => Ok(Manager::Apt),
        "dnf" | "yum" => Ok(Manager::Dnf),
        other => Err(runtime_error(format!(
            "host {}: unsupported pkg_manager {other:?} (use apt or dnf)",
            h.info.name
        ))),
    }
}

/// Refuses what apt-get or dnf would read as more than one named package: an option (`-y`),
/// an apt pattern (`~i`, `?installed`), a glob or regex (`nginx*`), a local file (`./x.deb`),
/// apt's remove suffix (`nginx-`), or several words (`pkg::remove` also refuses apt's install
/// suffix, `nginx+`). Debian and RPM package names start with a
/// letter or digit and use only letters, digits and `._+-` (`:` for an architecture or epoch).
pub fn check_name(op: &str, name: &str) -> RhaiResult<()> {
    let first_ok = name.starts_with(|c: char| c.is_ascii_alphanumeric());
    let rest_ok = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._+:-".contains(c));
    if !first_ok || !rest_ok || name.ends_with('-') {
        return Err(refused(
            op,
            "package name",
            name,
            "a package name starts with a letter or digit and has only letters, digits and ._+:- \
             (the package manager would read anything else as an option, a pattern or a file)",
        ));
    }
    Ok(())
}

/// Refuses a version that dnf would expand as a glob or that is several words.
pub fn check_version(op: &str, version: &str) -> RhaiResult<()> {
    if version
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || "*?[]".contains(c))
    {
        return Err(refused(
            op,
            "version",
            version,
            "a version has no spaces, control characters or glob characters (*?[])",
        ));
    }
    Ok(())
}

/// The names of `list`, checked: each shares the array's string (no copy per name).
fn names(op: &str, list: &Array) -> RhaiResult<Vec<ImmutableString>> {
    list.iter()
        .map(|v| {
            let name = v.clone().into_immutable_string().map_err(|t| {
                runtime_error(format!("{op}: package names must be strings, got {t}"))
            })?;
            check_name(op, &name)?;
            Ok(name)
        })
        .collect()
}

pub fn update_index_command(m: Manager) -> String {
    match m {
        Manager::Apt => ["apt-get -q ", LOCK_WAIT, " update"].concat(),
        Manager::Dnf => "dnf -q -y makecache".into(),
    }
}

pub fn upgrade_command<S: AsRef<str>>(m: Manager, names: &[S]) -> String {
    match (m, names.is_empty()) {
        (Manager::Apt, true) => [APT, " dist-upgrade"].concat(),
        (Manager::Apt, false) => command(&[APT, " install --only-upgrade -- "], names, ""),
        (Manager::Dnf, true) => "dnf -y upgrade".into(),
        (Manager::Dnf, false) => command(&["dnf -y upgrade "], names, ""),
    }
}

pub fn install_command(m: Manager, name: &str, version: &str) -> String {
    match (m, version.is_empty()) {
        (Manager::Apt, true) => command(&[APT, " install -- "], &[name], ""),
        (Manager::Apt, false) => command(
            &[APT, " install --allow-downgrades -- "],
            &[[name, "=", version].concat()],
            "",
        ),
        (Manager::Dnf, true) => command(&["dnf -y install "], &[name], ""),
        (Manager::Dnf, false) => {
            let spec = quote(&format!("{name}-{version}"));
            format!("dnf -y install {spec} || dnf -y downgrade {spec}")
        }
    }
}

pub fn remove_command(m: Manager, name: &str) -> String {
    match m {
        Manager::Apt => format!("{APT} remove -- {}", quote(name)),
        Manager::Dnf => format!("dnf -y remove {}", quote(name)),
    }
}

pub fn version_command(m: Manager, name: &str) -> String {
    match m {
        Manager::Apt => format!("dpkg-query -W -f='${{Version}}' -- {}", quote(name)),
        Manager::Dnf => format!("rpm -q --qf '%{{VERSION}}-%{{RELEASE}}' -- {}", quote(name)),
    }
}

/// One query for the installed versions of several packages: a `NAME VERSION` line each
/// (packages that are not installed print nothing, or an empty version).
pub fn versions_command(m: Manager, names: &[&str]) -> String {
    match m {
        Manager::Apt => command(
            &["dpkg-query -W -f='${Package} ${Version}\\n' -- "],
            names,
            " 2>/dev/null || true",
        ),
        Manager::Dnf => command(
            &["rpm -q --qf '%{NAME} %{VERSION}-%{RELEASE}\\n' -- "],
            names,
            " 2>/dev/null | grep -v ' is not installed$' || true",
        ),
    }
}

/// The fact that holds the version `name` had before this run changed it.
const PREVIOUS: &str = "previous_version:";

/// `previous_version:NAME` in `key`, a buffer reused for each name.
fn previous_key<'a>(key: &'a mut String, name: &str) -> &'a str {
    key.clear();
    key.push_str(PREVIOUS);
    key.push_str(name);
    key
}

/// Before a package changes, the version it had becomes the facts `previous_version:NAME`
/// (empty: it was not installed) and, for the first package the run changes on this host,
/// `previous_version`, so that an undo can put it back. A fact already known is kept: a
/// retry or a resumed run must not take the new version for the old one.
fn remember_previous<S: AsRef<str>>(h: &Host, mgr: Manager, names: &[S]) -> RhaiResult<()> {
    let mut key = String::with_capacity(64);
    let missing: Vec<&str> = names
        .iter()
        .map(AsRef::as_ref)
        .filter(|n| !h.has_fact(previous_key(&mut key, n)))
        .collect();
    if !missing.is_empty() {
        let out = h.exec(&versions_command(mgr, &missing))?;
        let found: std::collections::HashMap<&str, &str> = out
            .stdout
            .lines()
            .filter_map(|l| l.split_once(' '))
            .collect();
        for n in &missing {
            let v = if h.is_dry_run() {
                ["<", previous_key(&mut key, n), ">"].concat()
            } else {
                found
                    .get(n)
                    .map(|v| v.trim().to_string())
                    .unwrap_or_default()
            };
            h.set_fact(previous_key(&mut key, n), v);
        }
    }
    if !h.has_fact("previous_version") {
        if let Some(v) = names
            .first()
            .and_then(|n| h.fact(previous_key(&mut key, n.as_ref())))
        {
            h.set_fact("previous_version", v);
        }
    }
    Ok(())
}

fn run_privileged(h: &Host, op: &str, cmd: &str) -> RhaiResult<()> {
    h.run(&h.privileged(op, cmd)).map(|_| ())
}

pub(crate) fn module() -> Module {
    let mut m = Module::new();
    FuncRegistration::new("update_index").set_into_module(
        &mut m,
        |ctx: NativeCallContext, h: &mut Host| -> RhaiResult<()> {
            located(&ctx, || {
                let mgr = manager(h)?;
                run_privileged(h, "pkg::update_index", &update_index_command(mgr))
            })
        },
    );
    FuncRegistration::new("upgrade").set_into_module(
        &mut m,
        |ctx: NativeCallContext, h: &mut Host, list: Array| -> RhaiResult<()> { located(&ctx, || {
            let list = names("pkg::upgrade", &list)?;
            let mgr = manager(h)?;
            if list.is_empty() {
                return Err(runtime_error(
                    "pkg::upgrade needs package names; use pkg::dist_upgrade(h) to upgrade everything",
                ));
            }
            remember_previous(h, mgr, &list)?;
            run_privileged(h, "pkg::upgrade", &upgrade_command(mgr, &list))
        }) },
    );
    FuncRegistration::new("dist_upgrade").set_into_module(
        &mut m,
        |ctx: NativeCallContext, h: &mut Host| -> RhaiResult<()> {
            located(&ctx, || {
                let mgr = manager(h)?;
                run_privileged(h, "pkg::dist_upgrade", &upgrade_command::<&str>(mgr, &[]))
            })
        },
    );
    FuncRegistration::new("install").set_into_module(
        &mut m,
        |ctx: NativeCallContext, h: &mut Host, name: &str, version: &str| -> RhaiResult<()> {
            located(&ctx, || {
                check_name("pkg::install", name)?;
                check_version("pkg::install", version)?;
                let mgr = manager(h)?;
                remember_previous(h, mgr, &[name])?;
                run_privileged(h, "pkg::install", &install_command(mgr, name, version))
            })
        },
    );
    FuncRegistration::new("install").set_into_module(
        &mut m,
        |ctx: NativeCallContext, h: &mut Host, name: &str| -> RhaiResult<()> {
            located(&ctx, || {
                check_name("pkg::install", name)?;
                let mgr = manager(h)?;
                remember_previous(h, mgr, &[name])?;
                run_privileged(h, "pkg::install", &install_command(mgr, name, ""))
            })
        },
    );
    // Puts a package back as it was before this run changed it on this host: the version
    // recorded in the fact previous_version:NAME, or removed if it was not installed.
    FuncRegistration::new("restore").set_into_module(
        &mut m,
        |ctx: NativeCallContext, h: &mut Host, name: &str| -> RhaiResult<()> { located(&ctx, || {
            check_name("pkg::restore", name)?;
            let mgr = manager(h)?;
            let key = format!("previous_version:{name}");
            match h.fact(&key) {
                None if h.is_dry_run() => {
                    run_privileged(h, "pkg::restore", &install_command(mgr, name, &format!("<{key}>")))
                }
                None => Err(runtime_error(format!(
                    "pkg::restore: host {} has no fact {key}: this run did not change {name} there (pkg::install or pkg::upgrade record it)",
                    h.info.name
                ))),
                Some(v) if v.is_empty() => run_privileged(h, "pkg::restore", &remove_command(mgr, name)),
                Some(v) => run_privileged(h, "pkg::restore", &install_command(mgr, name, &v)),
            }
        }) },
    );
    FuncRegistration::new("remove").set_into_module(
        &mut m,
        |ctx: NativeCallContext, h: &mut Host, name: &str| -> RhaiResult<()> {
            located(&ctx, || {
                check_name("pkg::remove", name)?;
                if name.ends_with('+') {
                    return Err(refused(
                        "pkg::remove",
                        "package name",
                        name,
                        "apt-get reads a trailing + as \"install\"",
                    ));
                }
                let mgr = manager(h)?;
                run_privileged(h, "pkg::remove", &remove_command(mgr, name))
            })
        },
    );
    FuncRegistration::new("version").set_into_module(
        &mut m,
        |ctx: NativeCallContext, h: &mut Host, name: &str| -> RhaiResult<String> {
            located(&ctx, || {
                check_name("pkg::version", name)?;
                let mgr = manager(h)?;
                let out = h.exec(&version_command(mgr, name))?;
                // Not installed is an answer (""), not a failure.
                Ok(if out.code == 0 {
                    out.stdout.trim().to_string()
                } else {
                    String::new()
                })
            })
        },
    );
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apt_upgrade_is_noninteractive_and_keeps_configs() {
        let cmd = upgrade_command(Manager::Apt, &["nova-common", "a b"]);
        assert_eq!(
            cmd,
            "DEBIAN_FRONTEND=noninteractive apt-get -q -y -o DPkg::Lock::Timeout=120 \
             -o APT::Cmd::Pattern-Only=true \
             -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
             install --only-upgrade -- nova-common 'a b'"
        );
        assert!(
            upgrade_command::<&str>(Manager::Apt, &[]).ends_with("--force-confold dist-upgrade")
        );
    }

    #[test]
    fn previous_versions_are_asked_in_one_quoted_query() {
        assert_eq!(
            versions_command(Manager::Apt, &["nova-common", "a b"]),
            "dpkg-query -W -f='${Package} ${Version}\\n' -- nova-common 'a b' 2>/dev/null || true"
        );
        assert!(versions_command(Manager::Dnf, &["demo"])
            .starts_with("rpm -q --qf '%{NAME} %{VERSION}-%{RELEASE}\\n' -- demo"));
    }

    #[test]
    fn versions_are_pinned_per_manager() {
        assert!(install_command(Manager::Apt, "demo", "1.0")
            .ends_with("--allow-downgrades -- demo=1.0"));
        assert_eq!(
            install_command(Manager::Dnf, "demo", "1.0"),
            "dnf -y install demo-1.0 || dnf -y downgrade demo-1.0"
        );
        assert_eq!(
            version_command(Manager::Apt, "x;y"),
            "dpkg-query -W -f='${Version}' -- 'x;y'"
        );
    }
}
