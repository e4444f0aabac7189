//! `import` resolution, confined. Takes the import path and the importing module; gives the
//! module, from (in this order) the importer's own directory (the runbook's, or its
//! library's), the `--lib` / `FLEETBOOK_PATH` directories and the project's dependencies
//! (a library's own dependencies for its modules), then the stdlib embedded in the binary.
//! `import "acme/upgrade"` names library acme's module `upgrade`. A module found in two
//! libraries is an error naming both; no `..`, absolute path or symlink leaves a root; a
//! library's code is checked against its `uses` (confine.rs) before it runs.

use super::{confine, Libraries, Library, STD};
use crate::script::Sources;
use fleetbook_stdlib::LIBRARIES;
use rhai::module_resolvers::ModuleResolver;
use rhai::{Engine, EvalAltResult, Module, Position, Scope, Shared};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Which library a loaded module belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// The runbook's own directory.
    Local,
    Lib(usize),
    Std,
}

/// A library file a compilation read, for the plan (name, version, path, sha256).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsedFile {
    /// `local` for the runbook's directory, `std` for the embedded stdlib.
    pub library: String,
    pub version: Option<String>,
    pub source: String,
    pub uses: Option<Vec<String>>,
    /// Inside the library, with `/`.
    pub path: String,
    pub sha256: String,
}

/// One import, for `fleetbook check -v`: who imported what, and the file it bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRecord {
    pub importer: String,
    pub path: String,
    pub file: String,
    pub library: String,
}

/// What a compilation learnt about its imports, shared with the `Script`.
#[derive(Debug, Default)]
pub struct Used {
    pub files: Vec<UsedFile>,
    pub imports: Vec<ImportRecord>,
}

/// A module being loaded: its identity, its name in messages, and where it was imported.
struct Loading {
    key: String,
    name: String,
    site: Option<String>,
}

/// Modules loaded by `import`, by the file they came from.
pub type ModuleCache = Arc<Mutex<HashMap<String, Shared<Module>>>>;

pub struct Resolver {
    main: String,
    local: Option<PathBuf>,
    /// `--lib` directories first, then the dependency tree.
    libs: Vec<Library>,
    lib_dirs: usize,
    direct: Vec<String>,
    sources: Sources,
    cache: ModuleCache,
    /// The runbook's own imports, by path: compile() registers them for closures.
    pub top: Arc<Mutex<HashMap<String, Shared<Module>>>>,
    loading: Mutex<Vec<Loading>>,
    origin: Mutex<HashMap<String, Origin>>,
    /// The host-operation namespaces each loaded module may reach (its code and imports).
    effects: Mutex<HashMap<String, BTreeSet<String>>>,
    /// The literal import paths of each module (a dependency is imported by literal only).
    literal: Arc<Mutex<HashMap<String, HashSet<String>>>>,
    pub used: Arc<Mutex<Used>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The value thrown when an `import` cannot be resolved (not found, not allowed, a cycle, a
/// library outside its `uses`): typed, so that its diagnostic is coded `import` rather than
/// as the script's own error.
#[derive(Debug, Clone)]
pub struct ImportFailed(pub String);

fn error_at(msg: String, pos: Position) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorRuntime(
        rhai::Dynamic::from(ImportFailed(msg)),
        pos,
    ))
}

pub fn module_error(path: &str, pos: Position, msg: String) -> Box<EvalAltResult> {
    Box::new(EvalAltResult::ErrorInModule(
        path.to_string(),
        error_at(msg, pos),
        pos,
    ))
}

/// A file found for an import.
struct Found {
    origin: Origin,
    /// Canonical file, None for the stdlib.
    file: Option<PathBuf>,
    /// Inside its root, with `/` (`upgrade.rhai`), or the stdlib module's name.
    rel: String,
}

impl Resolver {
    pub fn new(
        main: &str,
        local: Option<&Path>,
        lib_dirs: Vec<Library>,
        deps: &Libraries,
        sources: Sources,
        cache: ModuleCache,
    ) -> Resolver {
        let n = lib_dirs.len();
        let mut libs = lib_dirs;
        libs.extend(deps.all.iter().cloned());
        let main_key = local
            .zip(Path::new(main).file_name())
            .and_then(|(d, f)| d.join(f).canonicalize().ok());
        let loading = main_key
            .map(|k| Loading {
                key: k.display().to_string(),
                name: main.to_string(),
                site: None,
            })
            .into_iter()
            .collect();
        let mut origin = HashMap::new();
        origin.insert(main.to_string(), Origin::Local);
        Resolver {
            main: main.to_string(),
            local: local.and_then(|d| d.canonicalize().ok()),
            libs,
            lib_dirs: n,
            direct: deps.direct.clone(),
            sources,
            cache,
            top: Arc::default(),
            loading: Mutex::new(loading),
            origin: Mutex::new(origin),
            effects: Mutex::default(),
            literal: Arc::default(),
            used: Arc::default(),
        }
    }

    /// Records the runbook's literal imports (its AST is compiled outside the resolver).
    pub fn literal_imports(&self) -> Arc<Mutex<HashMap<String, HashSet<String>>>> {
        self.literal.clone()
    }

    fn lib_name(&self, o: Origin) -> String {
        match o {
            Origin::Local => "local".into(),
            Origin::Std => STD.into(),
            Origin::Lib(i) => self.libs[i].label(),
        }
    }

    /// The libraries an importer may name: the runbook sees the `--lib` ones and the
    /// project's dependencies; a library sees itself and its own dependencies.
    fn visible(&self, importer: Origin) -> Vec<usize> {
        let by_name = |n: &str| (self.lib_dirs..self.libs.len()).find(|&i| self.libs[i].name == n);
        match importer {
            Origin::Local | Origin::Std => (0..self.lib_dirs)
                .chain(self.direct.iter().filter_map(|n| by_name(n)))
                .collect(),
            Origin::Lib(i) => std::iter::once(i)
                .chain(self.libs[i].deps.iter().filter_map(|n| by_name(n)))
                .collect(),
        }
    }

    fn in_dir(
        &self,
        dir: &Path,
        rel: &Path,
        path: &str,
        pos: Position,
    ) -> Result<Option<PathBuf>, Box<EvalAltResult>> {
        let candidate = dir.join(rel);
        if !candidate.is_file() {
            return Ok(None);
        }
        let real = candidate.canonicalize().map_err(|e| {
            module_error(
                path,
                pos,
                format!("cannot open {}: {e}", candidate.display()),
            )
        })?;
        if !real.starts_with(dir) {
            return Err(module_error(
                path,
                pos,
                format!(
                    "import {path:?} leads outside {} (through a symlink)",
                    dir.display()
                ),
            ));
        }
        Ok(Some(real))
    }

    fn find(
        &self,
        importer: Origin,
        path: &str,
        pos: Position,
    ) -> Result<Found, Box<EvalAltResult>> {
        let p = Path::new(path);
        if p.is_absolute()
            || p.components()
                .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(module_error(
                path,
                pos,
                format!("import {path:?} is not allowed: imports are relative paths inside the runbook's directory or the library path (no '..', no absolute paths)"),
            ));
        }
        let file = if p.extension().is_some() {
            p.to_path_buf()
        } else {
            p.with_extension("rhai")
        };
        let rel_of = |f: &Path| {
            f.components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/")
        };
        // Qualified: `std/rolling`, `acme/upgrade`.
        let mut comps = file.components();
        let first = comps
            .next()
            .map(|c| c.as_os_str().to_string_lossy().into_owned());
        let rest: PathBuf = comps.collect();
        if let (Some(first), false) = (&first, rest.as_os_str().is_empty()) {
            if first == STD {
                let stem = rel_of(&rest);
                let stem = stem.strip_suffix(".rhai").unwrap_or(&stem);
                if LIBRARIES.iter().any(|(n, _)| *n == stem) {
                    return Ok(Found {
                        origin: Origin::Std,
                        file: None,
                        rel: stem.to_string(),
                    });
                }
                return Err(self.not_found(path, pos));
            }
            let visible = self.visible(importer);
            if let Some(&i) = visible.iter().find(|&&i| self.libs[i].name == *first) {
                let dir = self.libs[i].dir.clone().unwrap_or_default();
                return match self.in_dir(&dir, &rest, path, pos)? {
                    Some(real) => Ok(Found {
                        origin: Origin::Lib(i),
                        file: Some(real),
                        rel: rel_of(&rest),
                    }),
                    None => Err(module_error(
                        path,
                        pos,
                        format!(
                            "library {} has no module {:?} ({} has no {})",
                            self.libs[i].label(),
                            rel_of(&rest).trim_end_matches(".rhai"),
                            dir.display(),
                            rel_of(&rest)
                        ),
                    )),
                };
            }
            if let Some(l) = self.libs.iter().find(|l| l.name == *first) {
                if !matches!(importer, Origin::Local)
                    || self.local.as_ref().is_none_or(|d| !d.join(&file).is_file())
                {
                    return Err(module_error(
                        path,
                        pos,
                        format!(
                            "library {} is not a dependency of {}: add it to {}",
                            l.label(),
                            self.lib_name(importer),
                            match importer {
                                Origin::Lib(_) =>
                                    "that library's fleetbook-lib.toml [dependencies]",
                                _ => "fleetbook.toml [dependencies]",
                            }
                        ),
                    ));
                }
            }
        }
        // The importer's own directory first.
        let home = match importer {
            Origin::Local | Origin::Std => self.local.clone(),
            Origin::Lib(i) => self.libs[i].dir.clone(),
        };
        if let Some(dir) = home {
            if let Some(real) = self.in_dir(&dir, &file, path, pos)? {
                return Ok(Found {
                    origin: importer,
                    file: Some(real),
                    rel: rel_of(&file),
                });
            }
        }
        // Then the `--lib` directories, then the dependencies: the first level that has the
        // module wins, and within a level exactly one library may have it.
        let visible = self.visible(importer);
        let (dirs, deps): (Vec<usize>, Vec<usize>) = visible
            .into_iter()
            .filter(|&i| Origin::Lib(i) != importer)
            .partition(|&i| i < self.lib_dirs);
        for level in [dirs, deps] {
            let mut hits = Vec::new();
            for i in level {
                if let Some(dir) = &self.libs[i].dir {
                    if let Some(real) = self.in_dir(dir, &file, path, pos)? {
                        hits.push((i, real));
                    }
                }
            }
            if hits.len() > 1 {
                return Err(self.clash(path, pos, &hits));
            }
            if let Some((i, real)) = hits.pop() {
                return Ok(Found {
                    origin: Origin::Lib(i),
                    file: Some(real),
                    rel: rel_of(&file),
                });
            }
        }
        let stem = path.strip_suffix(".rhai").unwrap_or(path);
        if LIBRARIES.iter().any(|(n, _)| *n == stem) {
            return Ok(Found {
                origin: Origin::Std,
                file: None,
                rel: stem.to_string(),
            });
        }
        Err(self.not_found(path, pos))
    }

    fn clash(&self, path: &str, pos: Position, hits: &[(usize, PathBuf)]) -> Box<EvalAltResult> {
        let named: Vec<String> = hits
            .iter()
            .map(|(i, f)| format!("{} ({})", self.libs[*i].label(), f.display()))
            .collect();
        let qualified: Vec<String> = hits
            .iter()
            .map(|(i, _)| format!("import \"{}/{path}\"", self.libs[*i].name))
            .collect();
        module_error(
            path,
            pos,
            format!(
                "module {path:?} is in two libraries: {}; say which: {}",
                named.join(" and "),
                qualified.join(" or ")
            ),
        )
    }

    fn not_found(&self, path: &str, pos: Position) -> Box<EvalAltResult> {
        let builtin: Vec<&str> = LIBRARIES.iter().map(|(n, _)| *n).collect();
        module_error(
            path,
            pos,
            format!(
                "module {path:?} not found in the runbook's directory, the library path, the project's dependencies or the built-in libraries ({})",
                builtin.join(", ")
            ),
        )
    }

    /// The name a module has in messages and in the sources.
    fn shown(&self, f: &Found) -> String {
        match f.origin {
            Origin::Local => f.rel.clone(),
            Origin::Std => format!("<lib>/{}.rhai", f.rel),
            Origin::Lib(i) => format!("{}/{}", self.libs[i].name, f.rel),
        }
    }

    /// The namespaces a loaded module may reach, as an importer must allow them: a library
    /// with `uses` by its declaration, any other module by what it calls.
    fn reach(&self, f: &Found, name: &str) -> BTreeSet<String> {
        if let Origin::Lib(i) = f.origin {
            if let Some(u) = &self.libs[i].uses {
                return u.clone();
            }
        }
        lock(&self.effects).get(name).cloned().unwrap_or_default()
    }

    fn load(
        &self,
        engine: &Engine,
        f: &Found,
        name: &str,
        text: Arc<str>,
        pos: Position,
    ) -> Result<Shared<Module>, Box<EvalAltResult>> {
        lock(&self.sources).insert(name.to_string(), text.clone());
        lock(&self.origin).insert(name.to_string(), f.origin);
        let in_module =
            |e: Box<EvalAltResult>| Box::new(EvalAltResult::ErrorInModule(name.into(), e, pos));
        let mut ast = engine
            .compile(&*text)
            .map_err(|e| in_module(Box::new(e.into())))?;
        ast.set_source(name);
        let calls = confine::calls(&ast);
        if let Origin::Lib(i) = f.origin {
            let lib = &self.libs[i];
            if let Some(uses) = &lib.uses {
                if let Some(c) = calls.iter().find(|c| !uses.contains(&c.namespace)) {
                    return Err(in_module(error_at(
                        confined_message(lib, &c.call, &c.namespace, uses),
                        c.pos,
                    )));
                }
            }
        }
        lock(&self.effects).insert(
            name.to_string(),
            calls.iter().map(|c| c.namespace.clone()).collect(),
        );
        lock(&self.literal).insert(
            name.to_string(),
            confine::literal_imports(&ast).into_iter().collect(),
        );
        let module = Module::eval_ast_as_new(Scope::new(), &ast, engine).map_err(in_module)?;
        Ok(module.into())
    }

    /// Loads a module unless it is already being loaded further up: then the import closes
    /// a cycle, reported with every import that makes it.
    fn guarded(
        &self,
        key: String,
        name: &str,
        site: String,
        pos: Position,
        load: impl FnOnce() -> Result<Shared<Module>, Box<EvalAltResult>>,
    ) -> Result<Shared<Module>, Box<EvalAltResult>> {
        {
            let mut loading = lock(&self.loading);
            if let Some(i) = loading.iter().position(|l| l.key == key) {
                let mut names: Vec<&str> = loading[i..].iter().map(|l| l.name.as_str()).collect();
                names.push(&loading[i].name);
                let mut sites: Vec<&str> = loading[i + 1..]
                    .iter()
                    .filter_map(|l| l.site.as_deref())
                    .collect();
                sites.push(&site);
                // Not wrapped in the imported module's name: the error is in the importer.
                return Err(error_at(
                    format!(
                        "import cycle: {} ({})",
                        names.join(" -> "),
                        sites.join("; ")
                    ),
                    pos,
                ));
            }
            loading.push(Loading {
                key,
                name: name.to_string(),
                site: Some(site),
            });
        }
        let result = load();
        lock(&self.loading).pop();
        result
    }

    fn record(&self, f: &Found, importer: &str, path: &str, text: &str) {
        let (library, version, source, uses) = match f.origin {
            Origin::Local => (
                "local".to_string(),
                None,
                "the runbook's directory".to_string(),
                None,
            ),
            Origin::Std => (
                STD.to_string(),
                Some(env!("CARGO_PKG_VERSION").to_string()),
                "built in".to_string(),
                None,
            ),
            Origin::Lib(i) => {
                let l = &self.libs[i];
                (
                    l.name.clone(),
                    l.version.clone(),
                    l.source.clone(),
                    l.uses.as_ref().map(|u| u.iter().cloned().collect()),
                )
            }
        };
        let rel = if f.origin == Origin::Std {
            format!("{}.rhai", f.rel)
        } else {
            f.rel.clone()
        };
        let mut used = lock(&self.used);
        // An import inside a function runs at each call: record it once.
        if used
            .imports
            .iter()
            .any(|i| i.importer == importer && i.path == path)
        {
            return;
        }
        used.imports.push(ImportRecord {
            importer: importer.to_string(),
            path: path.to_string(),
            file: f
                .file
                .as_ref()
                .map_or_else(|| format!("<built in>/{rel}"), |p| p.display().to_string()),
            library: match (&version, f.origin) {
                (Some(v), Origin::Lib(_)) => format!("{library} {v}"),
                _ => library.clone(),
            },
        });
        if !used
            .files
            .iter()
            .any(|u| u.library == library && u.path == rel)
        {
            used.files.push(UsedFile {
                library,
                version,
                source,
                uses,
                path: rel,
                sha256: super::sha256(text.as_bytes()),
            });
        }
    }
}

fn confined_message(lib: &Library, call: &str, ns: &str, uses: &BTreeSet<String>) -> String {
    let declared = if uses.is_empty() {
        "declares no host operations (uses = [])".to_string()
    } else {
        format!(
            "declares uses = [{}]",
            uses.iter()
                .map(|u| format!("{u:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    if ns == "computed" {
        return format!(
            "library {} may not call {call}: what it calls must be known before it runs",
            lib.label()
        );
    }
    format!(
        "library {} calls {call}, of namespace {ns:?}, but {declared} in its fleetbook-lib.toml",
        lib.label()
    )
}

/// `file:line: import "path"`, for the trail of an import cycle.
fn import_site(source: Option<&str>, path: &str, pos: Position) -> String {
    format!(
        "{}:{}: import {path:?}",
        source.unwrap_or("?"),
        pos.line().unwrap_or(0)
    )
}

impl ModuleResolver for Resolver {
    fn resolve(
        &self,
        engine: &Engine,
        source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<Shared<Module>, Box<EvalAltResult>> {
        let importer_name = source.unwrap_or(&self.main).to_string();
        let importer = lock(&self.origin)
            .get(&importer_name)
            .copied()
            .unwrap_or(Origin::Local);
        let found = self.find(importer, path, pos)?;
        // A dependency is imported by a literal path: what a runbook binds to is in its text.
        if matches!(found.origin, Origin::Lib(i) if i >= self.lib_dirs) && found.origin != importer
        {
            let literal = lock(&self.literal)
                .get(&importer_name)
                .is_some_and(|s| s.contains(path));
            if !literal {
                return Err(error_at(
                    format!("import of library {} must be a literal string, not a computed path (it was {path:?})", self.lib_name(found.origin)),
                    pos,
                ));
            }
        }
        let name = self.shown(&found);
        let key = found
            .file
            .as_ref()
            .map_or_else(|| name.clone(), |p| p.display().to_string());
        let cached = lock(&self.cache).get(&key).cloned();
        let text: Arc<str> = match &found.file {
            Some(real) => crate::error::read_file(real)
                .map_err(|e| module_error(path, pos, e.to_string()))?
                .into(),
            None => LIBRARIES
                .iter()
                .find(|(n, _)| *n == found.rel)
                .map(|(_, t)| Arc::from(*t))
                .unwrap_or_else(|| Arc::from("")),
        };
        let module = match cached {
            Some(m) => m,
            None => {
                let site = import_site(source, path, pos);
                let module = self.guarded(key.clone(), &name, site, pos, || {
                    self.load(engine, &found, &name, text.clone(), pos)
                })?;
                lock(&self.cache).insert(key, module.clone());
                module
            }
        };
        // Importing does not widen what a library may do.
        let reach = self.reach(&found, &name);
        if let Origin::Lib(i) = importer {
            if let (Some(uses), true) = (&self.libs[i].uses, found.origin != importer) {
                if let Some(ns) = reach.iter().find(|n| !uses.contains(*n)) {
                    return Err(error_at(
                        format!(
                            "library {} imports {path:?} ({}), which may use namespace {ns:?}, but {}",
                            self.libs[i].label(),
                            self.lib_name(found.origin),
                            confined_message(&self.libs[i], "", ns, uses)
                                .split(" but ")
                                .nth(1)
                                .unwrap_or("it does not declare it")
                        ),
                        pos,
                    ));
                }
            }
        }
        lock(&self.effects)
            .entry(importer_name.clone())
            .or_default()
            .extend(reach);
        self.record(&found, &importer_name, path, &text);
        if importer_name == self.main {
            lock(&self.top).insert(path.to_string(), module.clone());
        }
        Ok(module)
    }
}
