//! fleetbook's engine: inventories, the runbook compiler (Rhai -> model -> DAG), the planner
//! and schedule simulator, and the plan renderers. No terminal code, no command-line parsing.

pub mod adhoc;
#[cfg(test)]
mod agreement_tests;
pub(crate) mod ahead;
pub(crate) mod api;
pub mod clock;
pub mod compile;
pub(crate) mod dispatch;
pub mod error;
pub mod eta;
pub mod exec;
#[doc(hidden)]
pub mod fuzzing;
pub mod inventory;
pub mod journal;
pub mod libdoc;
pub mod libs;
pub mod model;
pub mod plan;
pub(crate) mod predicate;
pub mod project;
pub mod render;
pub(crate) mod schedule;
#[cfg(test)]
mod schedule_tests;
pub mod script;
pub(crate) mod script_output;
pub mod secrets;
pub mod session;
pub mod shared;
pub mod slots;
pub mod status;
pub mod store;
pub mod testing;
pub mod transport;

pub use error::{Error, Result};
