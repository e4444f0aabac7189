//! Which exit status an outcome gets, decided here and nowhere else (the codes and what
//! they mean are `fleetbook_cli::status`), and how errors and standard output are written.

use fleetbook_engine::exec::RunStatus;
use fleetbook_engine::Error;
use miette::{GraphicalTheme, MietteHandlerOpts};
use std::io::{IsTerminal, Write};

pub use fleetbook_cli::status::{
    ABORTED, BAD_INPUT, FAILURES, HALTED, INTERNAL, LOCKED, OK, STORE,
};

pub fn install_report_handler() {
    let _ = miette::set_hook(Box::new(|_| {
        let mut opts = MietteHandlerOpts::new().terminal_links(false).width(100);
        opts = if fleetbook_cli::color::color(std::io::stderr().is_terminal()) {
            opts.color(true).graphical_theme(GraphicalTheme::unicode())
        } else {
            opts.color(false)
                .graphical_theme(GraphicalTheme::unicode_nocolor())
        };
        Box::new(opts.build())
    }));
}

/// Prints the error with its source snippet and returns the exit code it calls for.
pub fn report(err: Error) -> i32 {
    let code = code_of(&err);
    eprintln!("{:?}", miette::Report::new(err));
    code
}

/// The exit status an error calls for.
pub fn code_of(err: &Error) -> i32 {
    match err {
        fleetbook_engine::Error::Locked { .. } => LOCKED,
        e if e.is_input() => BAD_INPUT,
        _ => INTERNAL,
    }
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

/// Writes `text` to the file (whole or not at all) or, without one, to standard output.
pub fn write_output(path: Option<&std::path::Path>, text: &str) -> fleetbook_engine::Result<()> {
    let Some(p) = path else {
        return print(text);
    };
    // Write next to the target and rename, so a failure never leaves half a file.
    let tmp = p.with_extension("fleetbook-tmp");
    std::fs::write(&tmp, text)
        .and_then(|_| std::fs::rename(&tmp, p))
        .map_err(|e| Error::input(format!("cannot write {}: {e}", p.display())))
}

/// The exit status of a run that ended.
pub fn of_run(status: RunStatus) -> i32 {
    match status {
        RunStatus::Succeeded | RunStatus::RolledBack => OK,
        RunStatus::SucceededWithFailures => FAILURES,
        RunStatus::Halted | RunStatus::RollbackFailed => HALTED,
        RunStatus::StoreFailed => STORE,
        RunStatus::Aborted => ABORTED,
    }
}

pub fn stdout_error(e: &std::io::Error) -> Error {
    Error::Internal(format!("cannot write to standard output: {e}"))
}

/// Parses the command line. Help and version go through [`print`], so that `--help >
/// /dev/full` fails as any other output would.
pub fn parse_args<T: clap::FromArgMatches>(cmd: clap::Command) -> T {
    let parsed = cmd.try_get_matches().and_then(|m| T::from_arg_matches(&m));
    match parsed {
        Ok(args) => args,
        Err(e) if e.use_stderr() => e.exit(),
        Err(e) => {
            let text = if fleetbook_cli::color::color(std::io::stdout().is_terminal()) {
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
