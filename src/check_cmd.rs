//! `fleetbook check`: the arguments to the tooling crate's checker, its answer to stdout
//! (the summary line, or every diagnostic as JSON) and an exit status.

use crate::cli::{ReportFormat, ScriptArgs};
use crate::exit;
use fleetbook_engine::libs::Libraries;
use fleetbook_engine::{Error, Result};
use fleetbook_tooling::check::{self, Depth, Subject};
use std::path::Path;

pub fn command(
    runbook: &Path,
    inventory: Option<&Path>,
    args: &ScriptArgs,
    format: ReportFormat,
    libs: &Libraries,
    verbose: bool,
) -> Result<i32> {
    let params = args.param_map().map_err(Error::input)?;
    let subject = Subject {
        path: runbook,
        text: None,
        lib_dirs: &args.lib_dirs,
        libs,
        params: &params,
        inventory,
        depth: Depth::Compile,
    };
    let outcome = check::run(&subject);
    if format == ReportFormat::Json {
        exit::print(&check::to_json(&check::diagnostics(&subject, &outcome)))?;
        return Ok(match &outcome {
            Ok(_) => exit::OK,
            Err(f) => exit::code_of(&f.error),
        });
    }
    let compiled = outcome.map_err(|f| f.error)?;
    for u in &compiled.unknown_calls {
        eprintln!(
            "warning: {}:{}:{}: {}",
            runbook.display(),
            u.line,
            u.col,
            u.message
        );
    }
    for w in &compiled.warnings {
        eprintln!("warning: {w}");
    }
    let Some(script) = compiled.script else {
        return Err(Error::Internal("check lost its script".into()));
    };
    // Human output: on standard error, with the log that -v also turns up.
    if verbose {
        eprint!("{}", check::imports_of(&script));
    }
    exit::print(&check::summary(runbook, &script))?;
    Ok(exit::OK)
}
