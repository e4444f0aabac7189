//! The `fleetbook` command: parses arguments, runs the command, maps the outcome to an exit
//! code. Everything else lives in the engine.

mod adhoc;
mod cli;
mod commands;
mod drive;
mod exit;
mod journal_cmds;
mod progress;

fn main() {
    exit::install_report_handler();
    let args: cli::Cli = exit::parse_args();
    let code = match commands::run(args) {
        Ok(code) => code,
        Err(err) => exit::report(err),
    };
    std::process::exit(code);
}
