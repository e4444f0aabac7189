//! Where the engine's structured log is shown (the binary calls [`init`]; the engine only
//! emits `tracing` events and spans). Standard error, drawn around the live display
//! ([`crate::progress::suspend`]): by default only what runbooks `print`; `-v` adds every
//! task transition (info), `-vv` debug (limit waits, commands), `-vvv` trace.
//! `FLEETBOOK_LOG` (an `EnvFilter`, e.g. `fleetbook_engine=debug`) replaces the level chosen
//! by `-v`. `--log-file PATH` appends JSON Lines with every span's fields (run, host, task),
//! at info, or at the `-v`/`FLEETBOOK_LOG` level when that is more.

use fleetbook_engine::{Error, Result};
use std::io::Write;
use std::path::Path;
use tracing_subscriber::fmt::{format::Writer, FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

pub const ENV: &str = "FLEETBOOK_LOG";

fn level(verbose: u8) -> &'static str {
    match verbose {
        0 => "off,fleetbook::script=info",
        1 => "info",
        2 => "debug",
        _ => "trace",
    }
}

fn filter(verbose: u8) -> Result<EnvFilter> {
    match std::env::var(ENV) {
        Ok(spec) if !spec.trim().is_empty() => EnvFilter::try_new(&spec)
            .map_err(|e| Error::input(format!("{ENV}={spec:?} is not a log filter: {e}"))),
        _ => Ok(EnvFilter::new(level(verbose))),
    }
}

/// Standard error, drawn around the live progress display.
struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut result = Ok(buf.len());
        crate::progress::suspend(|| result = std::io::stderr().write_all(buf).map(|_| buf.len()));
        result
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Without -v a line is just what the runbook printed, as before logs existed.
struct MessageOnly;

impl<S, N> FormatEvent<S, N> for MessageOnly
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        // The message alone: the fields (a print's `script` position) are for -v and the file.
        struct Message<'w, 'a>(&'w mut Writer<'a>, std::fmt::Result);
        impl tracing::field::Visit for Message<'_, '_> {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                if f.name() == "message" {
                    self.1 = write!(self.0, "{v:?}");
                }
            }
        }
        let mut message = Message(&mut writer, Ok(()));
        event.record(&mut message);
        message.1?;
        writeln!(writer)
    }
}

/// Installs the subscriber for this process.
pub fn init(verbose: u8, log_file: Option<&Path>) -> Result<()> {
    let stderr = if verbose == 0 {
        tracing_subscriber::fmt::layer()
            .event_format(MessageOnly)
            .with_writer(|| Stderr)
            .with_filter(filter(verbose)?)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_writer(|| Stderr)
            .with_ansi(false)
            .with_filter(filter(verbose)?)
            .boxed()
    };
    let file = match log_file {
        Some(path) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| Error::input(format!("--log-file {}: {e}", path.display())))?;
            let level = if verbose >= 2 || std::env::var_os(ENV).is_some() {
                filter(verbose)?
            } else {
                EnvFilter::new("info")
            };
            Some(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(true)
                    .with_writer(std::sync::Mutex::new(f))
                    .with_filter(level),
            )
        }
        None => None,
    };
    tracing_subscriber::registry()
        .with(stderr)
        .with(file)
        .try_init()
        .map_err(|e| Error::Internal(format!("the log could not be set up: {e}")))
}
