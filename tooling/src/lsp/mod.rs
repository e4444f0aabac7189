//! `fleetbook lsp`: a language server over stdio for runbooks. It takes LSP JSON-RPC
//! messages and gives diagnostics (from the engine's compiler and planner), hover docs,
//! completion and go-to-definition.
//!
//! On lsp-server (rust-analyzer's transport) rather than tower-lsp: it is synchronous, and
//! the engine compiles and plans synchronously, so one thread that answers messages in order
//! needs no async runtime and no locking; a burst of edits is checked once, when the queue
//! is empty.

mod completion;
mod definition;
mod diagnostics;
pub mod docs;
mod hover;
mod symbols;
mod text;

use fleetbook_engine::{Error, Result};
use lsp_server::{Connection, ExtractError, Message, Notification, Request, RequestId, Response};
use lsp_types::notification::{
    DidChangeTextDocument, DidChangeWatchedFiles, DidCloseTextDocument, DidOpenTextDocument,
    DidSaveTextDocument, Notification as _, PublishDiagnostics,
};
use lsp_types::request::{Completion, GotoDefinition, HoverRequest, Request as _};
use lsp_types::{
    CompletionOptions, CompletionResponse, GotoDefinitionResponse, Hover, HoverContents,
    HoverProviderCapability, MarkupContent, MarkupKind, OneOf, PublishDiagnosticsParams,
    ServerCapabilities, TextDocumentSyncCapability, TextDocumentSyncKind, Uri,
};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// An open document.
pub struct Document {
    uri: Uri,
    path: PathBuf,
    text: String,
    version: i32,
}

/// What the project around a document adds: `lib` directories, parameters, the inventory.
#[derive(Default)]
pub struct Settings {
    pub lib_dirs: Vec<PathBuf>,
    /// The project's dependencies as locked (none when the lock does not match: the
    /// diagnostics then say which import fails).
    pub libs: fleetbook_engine::libs::Libraries,
    /// Parameters as `check` gives them: soft (a runbook that does not declare one ignores it).
    pub params: BTreeMap<String, String>,
    pub inventory: Option<PathBuf>,
}

/// The settings of the project around a document's path ([`project_settings`], or a test's).
pub type SettingsOf = fn(&Path) -> Settings;

/// What the project around a runbook adds: its `lib` directories, its dependencies as
/// locked, its parameters (soft, as for `check`) and its inventory.
pub fn project_settings(path: &Path) -> Settings {
    use fleetbook_engine::project::{libraries, Project};
    let dir = path.parent().unwrap_or(Path::new("."));
    // The editor shows the server's standard error as its log: the warning lands there.
    let mut warn = |file: &Path, why: &str| {
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "warning: ignoring {}: {why}",
            file.display()
        );
    };
    let Ok(Some(p)) = Project::find(dir, &mut warn) else {
        return Settings::default();
    };
    Settings {
        lib_dirs: p.settings.lib.iter().map(|l| p.path(l)).collect(),
        libs: libraries(Some(&p)).unwrap_or_default(),
        // Soft, as for `check`: a runbook that does not declare one ignores it.
        params: p
            .params()
            .into_iter()
            .map(|(k, v)| (format!("{k}{}", fleetbook_engine::script::SOFT), v))
            .collect(),
        inventory: p.settings.inventory.as_deref().map(|i| p.path(i)),
    }
}

impl Settings {
    /// The inventory's groups, for completion.
    fn roles(&self) -> Vec<String> {
        let Some(path) = &self.inventory else {
            return Vec::new();
        };
        match fleetbook_engine::inventory::Inventory::load(path) {
            Ok(inv) => inv.groups.keys().cloned().collect(),
            Err(_) => Vec::new(),
        }
    }
}

impl Document {
    fn module(&self, settings: &Settings, path: &str) -> Option<symbols::Module> {
        // `acme/ops`: module ops of the project's library acme; `std/rolling`: built in.
        if let Some((lib, rest)) = path.split_once('/') {
            // Confined as the compiler confines it.
            if rest.starts_with('/') || rest.split('/').any(|c| c == "..") {
                return None;
            }
            if let Some(dir) = settings.libs.get(lib).and_then(|l| l.dir.clone()) {
                let file = dir.join(if rest.ends_with(".rhai") {
                    rest.to_string()
                } else {
                    format!("{rest}.rhai")
                });
                return file.is_file().then_some(symbols::Module::File(file));
            }
            if lib == fleetbook_engine::libs::STD {
                return symbols::resolve(rest, None, &[]);
            }
        }
        symbols::resolve(path, self.path.parent(), &settings.lib_dirs)
    }

    /// The functions of the module imported as `alias`.
    fn module_functions(&self, settings: &Settings, alias: &str) -> Option<Vec<symbols::Function>> {
        let import = symbols::imports(&self.text)
            .into_iter()
            .find(|i| i.alias == alias)?;
        let text = self.module(settings, &import.path)?.text()?;
        Some(symbols::functions(&text))
    }

    fn imported(&self, settings: &Settings, alias: &str, name: &str) -> Option<symbols::Function> {
        self.module_functions(settings, alias)?
            .into_iter()
            .find(|f| f.name == name)
    }
}

fn protocol(e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("language server: {e}"))
}

/// Serves one client on stdin/stdout until it says `exit`; `settings_of` gives what the
/// project around a document adds.
pub fn serve(settings_of: SettingsOf) -> Result<()> {
    let (connection, io) = Connection::stdio();
    let capabilities = ServerCapabilities {
        text_document_sync: Some(TextDocumentSyncCapability::Kind(TextDocumentSyncKind::FULL)),
        hover_provider: Some(HoverProviderCapability::Simple(true)),
        completion_provider: Some(CompletionOptions {
            trigger_characters: Some(vec![".".into(), ":".into(), "\"".into()]),
            ..CompletionOptions::default()
        }),
        definition_provider: Some(OneOf::Left(true)),
        ..ServerCapabilities::default()
    };
    let caps = serde_json::to_value(capabilities).map_err(protocol)?;
    connection.initialize(caps).map_err(protocol)?;
    Server {
        settings_of,
        docs: HashMap::new(),
        dirty: Vec::new(),
    }
    .serve(&connection)?;
    drop(connection);
    io.join().map_err(protocol)?;
    Ok(())
}

struct Server {
    settings_of: SettingsOf,
    docs: HashMap<String, Document>,
    /// Documents changed since their diagnostics were last published.
    dirty: Vec<String>,
}

impl Server {
    fn serve(&mut self, connection: &Connection) -> Result<()> {
        for msg in &connection.receiver {
            match msg {
                Message::Request(req) => {
                    if connection.handle_shutdown(&req).map_err(protocol)? {
                        return Ok(());
                    }
                    let resp = self.answer(req);
                    connection
                        .sender
                        .send(Message::Response(resp))
                        .map_err(protocol)?;
                }
                Message::Notification(n) => self.notified(n),
                Message::Response(_) => {}
            }
            // Check once a burst of edits is over, not once per keystroke.
            if connection.receiver.is_empty() {
                for key in std::mem::take(&mut self.dirty) {
                    if let Some(doc) = self.docs.get(&key) {
                        let settings = (self.settings_of)(&doc.path);
                        let diagnostics =
                            diagnostics::check(&doc.uri, &doc.path, &doc.text, &settings);
                        publish(connection, doc.uri.clone(), diagnostics, Some(doc.version))?;
                    }
                }
            }
        }
        Ok(())
    }

    fn notified(&mut self, n: Notification) {
        match n.method.as_str() {
            DidOpenTextDocument::METHOD => {
                if let Ok(p) =
                    n.extract::<lsp_types::DidOpenTextDocumentParams>(DidOpenTextDocument::METHOD)
                {
                    let d = p.text_document;
                    self.open(d.uri, d.text, d.version);
                }
            }
            DidChangeTextDocument::METHOD => {
                if let Ok(p) = n.extract::<lsp_types::DidChangeTextDocumentParams>(
                    DidChangeTextDocument::METHOD,
                ) {
                    // Full sync: the last change is the whole text.
                    if let Some(c) = p.content_changes.into_iter().last() {
                        self.open(p.text_document.uri, c.text, p.text_document.version);
                    }
                }
            }
            DidSaveTextDocument::METHOD | DidChangeWatchedFiles::METHOD => {
                // A module beside it (or the project file) may have changed: check every open
                // document again.
                self.dirty = self.docs.keys().cloned().collect();
            }
            DidCloseTextDocument::METHOD => {
                if let Ok(p) =
                    n.extract::<lsp_types::DidCloseTextDocumentParams>(DidCloseTextDocument::METHOD)
                {
                    let key = p.text_document.uri.as_str().to_string();
                    self.docs.remove(&key);
                    self.dirty.retain(|k| *k != key);
                }
            }
            _ => {}
        }
    }

    fn open(&mut self, uri: Uri, text: String, version: i32) {
        let Some(path) = text::path_of(&uri) else {
            return;
        };
        let key = uri.as_str().to_string();
        if !self.dirty.contains(&key) {
            self.dirty.push(key.clone());
        }
        self.docs.insert(
            key,
            Document {
                uri,
                path,
                text,
                version,
            },
        );
    }

    fn answer(&self, req: Request) -> Response {
        let id = req.id.clone();
        let result = match req.method.as_str() {
            HoverRequest::METHOD => {
                self.at::<HoverRequest, _>(req, hover::markdown)
                    .map(|(id, md)| {
                        let hover = md.map(|value| Hover {
                            contents: HoverContents::Markup(MarkupContent {
                                kind: MarkupKind::Markdown,
                                value,
                            }),
                            range: None,
                        });
                        (id, serde_json::to_value(hover))
                    })
            }
            Completion::METHOD => self
                .at::<Completion, _>(req, |doc, s, off| Some(completion::items(doc, s, off)))
                .map(|(id, items)| {
                    let resp = items.map(CompletionResponse::Array);
                    (id, serde_json::to_value(resp))
                }),
            GotoDefinition::METHOD => {
                self.at::<GotoDefinition, _>(req, definition::location)
                    .map(|(id, loc)| {
                        let resp = loc.map(GotoDefinitionResponse::Scalar);
                        (id, serde_json::to_value(resp))
                    })
            }
            _ => {
                return Response::new_err(
                    id,
                    lsp_server::ErrorCode::MethodNotFound as i32,
                    format!("fleetbook lsp does not answer {}", req.method),
                )
            }
        };
        match result {
            Ok((id, Ok(value))) => Response::new_ok(id, value),
            Ok((id, Err(e))) => Response::new_err(
                id,
                lsp_server::ErrorCode::InternalError as i32,
                e.to_string(),
            ),
            Err(e) => Response::new_err(id, lsp_server::ErrorCode::InvalidParams as i32, e),
        }
    }

    /// Runs `f` on the document and offset a position request names.
    fn at<R, T>(
        &self,
        req: Request,
        f: impl Fn(&Document, &Settings, usize) -> Option<T>,
    ) -> std::result::Result<(RequestId, Option<T>), String>
    where
        R: lsp_types::request::Request,
        R::Params: Positioned,
    {
        let (id, params) = req.extract::<R::Params>(R::METHOD).map_err(|e| match e {
            ExtractError::JsonError { error, .. } => error.to_string(),
            ExtractError::MethodMismatch(r) => format!("unexpected {}", r.method),
        })?;
        let (uri, pos) = params.position();
        let Some(doc) = self.docs.get(uri.as_str()) else {
            return Ok((id, None));
        };
        let settings = (self.settings_of)(&doc.path);
        let offset = text::offset(&doc.text, pos);
        Ok((id, f(doc, &settings, offset)))
    }
}

/// Requests about a position in a document.
trait Positioned {
    fn position(&self) -> (&Uri, lsp_types::Position);
}

impl Positioned for lsp_types::HoverParams {
    fn position(&self) -> (&Uri, lsp_types::Position) {
        let p = &self.text_document_position_params;
        (&p.text_document.uri, p.position)
    }
}

impl Positioned for lsp_types::CompletionParams {
    fn position(&self) -> (&Uri, lsp_types::Position) {
        let p = &self.text_document_position;
        (&p.text_document.uri, p.position)
    }
}

impl Positioned for lsp_types::GotoDefinitionParams {
    fn position(&self) -> (&Uri, lsp_types::Position) {
        let p = &self.text_document_position_params;
        (&p.text_document.uri, p.position)
    }
}

fn publish(
    connection: &Connection,
    uri: Uri,
    diagnostics: Vec<lsp_types::Diagnostic>,
    version: Option<i32>,
) -> Result<()> {
    let params = PublishDiagnosticsParams {
        uri,
        diagnostics,
        version,
    };
    let n = Notification::new(PublishDiagnostics::METHOD.to_string(), params);
    connection
        .sender
        .send(Message::Notification(n))
        .map_err(protocol)
}
