//! Integration tests: the real `fleetbook` binary, run through a small builder, with its
//! stdout, stderr and exit status checked exactly (insta snapshots for the long ones).

mod sshd;
mod support;

mod check;
mod conformance;
mod docs;
mod errors;
#[cfg(feature = "etcd")]
mod etcd;
mod faults;
mod fleet;
mod flow;
mod hostops;
mod inventory;
mod journal;
mod logging;
mod lsp;
mod plan;
mod project;
mod run;
mod trust;
mod ux;
