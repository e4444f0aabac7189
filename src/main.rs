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

/// mimalloc, not glibc's malloc: planning makes and drops millions of small objects on
/// rayon's threads, and with mimalloc it runs 15% fewer instructions (callgrind, 2,000 hosts)
/// at a lower peak, once a finished stage's memory is given back (engine/src/plan.rs,
/// give_back_freed_memory). Built without transparent huge pages: with them a plan of
/// 10,000 hosts held ~1 KiB a host more, resident in 2 MiB steps (bench/README.md, Planning).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
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
