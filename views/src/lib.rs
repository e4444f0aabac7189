//! How a run is shown. Takes the engine's events (`exec::Event`, through `session::RunUi`),
//! its plans and what a `RunStore` records; gives text for a terminal and a web page:
//! - [`board`]: a run as lines that fit the terminal (the heading, a line per role, the
//!   hosts in flight);
//! - [`log`]: the engine's log on standard error, drawn around the live display, and in a
//!   JSON Lines file;
//! - [`progress`]: the live display of `run`/`apply`/`resume` (a board redrawn in place on a
//!   terminal, a line per transition elsewhere, `--events jsonl`);
//! - [`recap`]: the table per role and the line per host when a run ends;
//! - [`status`]: `fleetbook status RUN --watch`, the board read from the store;
//! - [`summary`]: what is said before a run (the question, a rollback's undo steps) and
//!   after one that did not end well (how to see and continue it);
//! - [`web`]: `fleetbook watch`, the engine's run report served as a live page.
//!
//! Views only read: through the store and the engine's `session` calls (`web`'s approvals
//! and aborts are the engine's `session::give_approval`/`request_abort`). They never choose
//! an exit status; what they print on standard output goes through the caller's `Print`.

/// Human output goes to stderr, which the user may close or fill: std's `eprintln!` panics
/// then. This shadows it in every module below: output is lost, the run goes on.
macro_rules! eprintln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

pub mod board;
pub mod log;
pub mod progress;
pub mod recap;
pub mod status;
pub mod summary;
pub mod web;

/// Writes text to standard output the way the binary does (a closed pipe ends the command
/// quietly; any other failure is an error): views print through it and never exit.
pub type Print<'a> = &'a dyn Fn(&str) -> fleetbook_engine::Result<()>;
