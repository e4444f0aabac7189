//! fleetbook's editor tooling: `check`'s diagnostics (one producer for the command line and
//! the editor), the language server, Rhai definition files, library docs and the report of
//! `fleetbook test`. It takes runbooks and projects' settings and gives text and LSP
//! messages; no command-line parsing.

pub mod calls;
pub mod check;
pub mod definitions;
pub mod doc;
pub mod lsp;
pub mod test_run;
