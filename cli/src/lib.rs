//! fleetbook's command line, one command tree for the binary, its help, the man pages,
//! shell completions and docs/cli.md. Takes the raw arguments (and the project file around
//! the current directory); gives a parsed [`Cli`] whose options are typed settings
//! ([`StateArgs::open`], [`EtcdArgs::access`], [`ScriptArgs::param_map`]...) with the
//! project's defaults filled in ([`fill`]), the pages of [`man`], the completers of
//! [`complete`], and the exit statuses every command documents ([`status`]). It runs no
//! command and chooses no exit status: that is the binary's.

mod args;
pub mod color;
pub mod complete;
mod fill;
pub mod man;
mod settings;
pub mod status;

pub use args::*;
pub use fill::{add_path_dirs, fill, find_project};
pub use settings::{parse_timeout, refuse_to_overwrite, shell_word};
