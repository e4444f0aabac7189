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

/// The fleet scenarios (`fleet::scenarios_one_at_a_time`), named to sort first: libtest
/// starts tests in the order of their names, and these are the suite's longest path (about
/// 14 minutes on two cores), which the rest of the suite runs beside.
#[test]
fn a_fleet_scenarios_one_at_a_time() {
    fleet::scenarios_one_at_a_time();
}
