//! `file::` (read, exists) and `http::` (ok, checked from the host itself).

use crate::host::Host;
use crate::quote::quote;
use rhai::{EvalAltResult, FuncRegistration, Module};

type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

pub fn read_command(path: &str) -> String {
    format!("cat -- {}", quote(path))
}

pub fn exists_command(path: &str) -> String {
    format!("test -e {}", quote(path))
}

pub fn http_ok_command(url: &str) -> String {
    format!("curl -fsS -o /dev/null --max-time 10 {}", quote(url))
}

pub(crate) fn file_module() -> Module {
    let mut m = Module::new();
    FuncRegistration::new("read")
        .set_into_module(&mut m, |h: Host, path: &str| -> RhaiResult<String> {
            Ok(h.run(&read_command(path))?.stdout)
        });
    FuncRegistration::new("exists")
        .set_into_module(&mut m, |h: Host, path: &str| -> RhaiResult<bool> {
            h.run_ok(&exists_command(path))
        });
    m
}

pub(crate) fn http_module() -> Module {
    let mut m = Module::new();
    FuncRegistration::new("ok").set_into_module(&mut m, |h: Host, url: &str| -> RhaiResult<bool> {
        h.run_ok(&http_ok_command(url))
    });
    m
}
