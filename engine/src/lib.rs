//! fleetbook's engine: inventories, the runbook compiler (Rhai -> model -> DAG), the planner
//! and schedule simulator, and the plan renderers. No terminal code, no command-line parsing.

pub mod ahead;
pub mod api;
pub mod compile;
pub mod error;
pub mod exec;
#[doc(hidden)]
pub mod fuzzing;
pub mod inventory;
pub mod journal;
pub mod model;
pub mod plan;
pub mod predicate;
pub mod render;
pub mod schedule;
#[cfg(test)]
mod schedule_tests;
pub mod script;
pub mod secrets;
pub mod session;
pub mod slots;
pub mod status;
pub mod store;
pub mod transport;

pub use error::{Error, Result};
