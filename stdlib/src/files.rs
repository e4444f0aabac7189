//! `file::` (read, exists) and `http::` (ok, checked from the host itself).
//!
//! `cat` and `curl` get `--` before the path or URL. `test -e PATH` needs none: with two
//! arguments POSIX `test` always reads the first as the operator and the second as its operand.
//! curl gets `--globoff` (`[1-9]` and `{a,b}` would fetch several URLs) and `--proto
//! =http,https,file` (`http::` checks HTTP, or a local `file://` that a health check writes;
//! never `dict://`, `gopher://` or another protocol).

use crate::host::Host;
use crate::located;
use crate::quote::quote;
use rhai::{EvalAltResult, FuncRegistration, Module, NativeCallContext};

type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

pub fn read_command(path: &str) -> String {
    format!("cat -- {}", quote(path))
}

pub fn exists_command(path: &str) -> String {
    format!("test -e {}", quote(path))
}

pub fn http_ok_command(url: &str) -> String {
    format!(
        "curl -fsS -o /dev/null --max-time 10 --globoff --proto =http,https,file -- {}",
        quote(url)
    )
}

pub(crate) fn file_module() -> Module {
    let mut m = Module::new();
    FuncRegistration::new("read").set_into_module(
        &mut m,
        |ctx: NativeCallContext, h: Host, path: &str| -> RhaiResult<String> {
            located(&ctx, || {
                let out = h.run(&read_command(path))?;
                Ok(crate::host::strip_newline(&out.stdout).to_string())
            })
        },
    );
    FuncRegistration::new("exists").set_into_module(
        &mut m,
        |ctx: NativeCallContext, h: Host, path: &str| -> RhaiResult<bool> {
            located(&ctx, || h.run_ok(&exists_command(path)))
        },
    );
    m
}

pub(crate) fn http_module() -> Module {
    let mut m = Module::new();
    FuncRegistration::new("ok").set_into_module(
        &mut m,
        |ctx: NativeCallContext, h: Host, url: &str| -> RhaiResult<bool> {
            located(&ctx, || h.run_ok(&http_ok_command(url)))
        },
    );
    m
}
