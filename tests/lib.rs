//! Integration tests: the real `fleetbook` binary, run through a small builder, with its
//! stdout, stderr and exit status checked exactly (insta snapshots for the long ones).

mod browser;
mod sshd;
mod support;

mod check;
mod check_json;
mod conformance;
mod connections;
mod definitions;
mod docs;
mod editors;
mod errors;
#[cfg(feature = "etcd")]
mod etcd;
mod faults;
mod fleet;
mod flow;
mod hostops;
mod inventory;
mod journal;
mod libraries;
mod logging;
mod lsp;
mod plan;
mod project;
mod run;
mod terminal;
mod testing;
mod trust;
mod ux;
mod watch;
