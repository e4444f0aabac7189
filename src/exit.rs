//! Exit codes, decided here and nowhere else, and how errors are printed.

use fleetbook_engine::Error;
use miette::{GraphicalTheme, MietteHandlerOpts};
use std::io::{IsTerminal, Write};

/// The command did what was asked.
pub const OK: i32 = 0;
/// fleetbook itself failed (a bug or the environment), not the input.
pub const INTERNAL: i32 = 1;
/// Bad input: a runbook, inventory, parameter, pattern or argument the user must fix.
pub const BAD_INPUT: i32 = 2;
/// A run halted: failures past `max_failures`, a failed gate or pre-check.
pub const HALTED: i32 = 3;
/// A run was stopped by the operator (Ctrl-C).
pub const ABORTED: i32 = 4;
/// A run finished, but some hosts failed within the tolerance (or `exec` failed somewhere).
pub const FAILURES: i32 = 5;
/// The fleet is locked by another run (or a stale lock waits for `fleetbook unlock`).
pub const LOCKED: i32 = 6;
/// A run lost its fleet lock or could not write its journal: it stopped starting tasks.
pub const STORE: i32 = 7;

pub fn install_report_handler() {
    let _ = miette::set_hook(Box::new(|_| {
        let mut opts = MietteHandlerOpts::new().terminal_links(false).width(100);
        if !std::io::stderr().is_terminal() || std::env::var_os("NO_COLOR").is_some() {
            opts = opts.graphical_theme(GraphicalTheme::unicode_nocolor());
        }
        Box::new(opts.build())
    }));
}

/// Prints the error with its source snippet and returns the exit code it calls for.
pub fn report(err: Error) -> i32 {
    let code = match &err {
        fleetbook_engine::Error::Locked { .. } => LOCKED,
        e if e.is_input() => BAD_INPUT,
        _ => INTERNAL,
    };
    eprintln!("{:?}", miette::Report::new(err));
    code
}

/// Writes `text` to standard output. A closed pipe (`fleetbook runs | head -1`) ends the
/// command quietly, as Unix tools do; any other failure (`> /dev/full`) is an error.
pub fn print(text: &str) -> fleetbook_engine::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(OK),
        Err(e) => Err(stdout_error(&e)),
    }
}

pub fn stdout_error(e: &std::io::Error) -> Error {
    Error::Internal(format!("cannot write to standard output: {e}"))
}

/// Parses the command line. Help and version go through [`print`], so that `--help >
/// /dev/full` fails as any other output would.
pub fn parse_args<T: clap::Parser>() -> T {
    match T::try_parse() {
        Ok(args) => args,
        Err(e) if e.use_stderr() => e.exit(),
        Err(e) => {
            let text = if std::io::stdout().is_terminal() {
                e.render().ansi().to_string()
            } else {
                e.render().to_string()
            };
            std::process::exit(match print(&text) {
                Ok(()) => OK,
                Err(err) => report(err),
            })
        }
    }
}
