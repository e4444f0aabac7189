//! The `fleetbook` command: parses arguments, runs the command, maps the outcome to an exit
//! code. Everything else lives in the engine.

/// Human output goes to stderr, which the user may close or fill (`2>&-`, `2>/dev/full`,
/// `2>&1 | head`): std's `eprintln!` panics then, which would leave a run crashed with its
/// lock held. These shadow std's macros in every module below: output is lost, the run
/// goes on and ends cleanly (the journal and `status` still tell everything).
macro_rules! eprintln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

macro_rules! eprint {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr(), $($arg)*);
    }};
}

use fleetbook_cli as cli;

mod commands;
mod drive;
mod exit;
mod run_cmds;

/// At most two glibc malloc arenas (the default is eight per CPU). Planning allocates
/// millions of small objects on rayon's threads; with an arena per thread the resident set
/// stayed ~12% above what two arenas keep for the same plan, at no measured CPU cost
/// (bench/README.md, Planning). Call before any thread starts.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas() {
    // SAFETY: mallopt only sets a malloc parameter; no thread has started yet.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 2) };
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}

fn main() {
    limit_malloc_arenas();
    // `COMPLETE=SHELL fleetbook ...`: the shell asks for completions (cli/src/complete.rs).
    clap_complete::CompleteEnv::with_factory(cli::command).complete();
    let raw: Vec<std::ffi::OsString> = std::env::args_os().collect();
    cli::color::set_color(&raw);
    exit::install_report_handler();
    let args: cli::Cli = exit::parse_args(cli::command());
    let code = match fleetbook_views::log::init(args.verbose, args.log_file.as_deref())
        .and_then(|()| commands::run(args))
    {
        Ok(code) => code,
        Err(err) => exit::report(err),
    };
    std::process::exit(code);
}
