//! Renderers of a [`Plan`](crate::plan::Plan): text for a terminal, and the role-level and
//! step-level graph as Graphviz DOT and Mermaid (hosts collapsed by role, with counts).

mod graph;
mod text;

pub use graph::{dot, mermaid};
pub use text::text;
