//! Renderers of a [`Plan`](crate::plan::Plan): text for a terminal, the role-level and
//! step-level graph as Graphviz DOT and Mermaid (hosts collapsed by role, with counts), and a
//! self-contained HTML page with the schedule drawn.

mod describe;
mod graph;
mod html;
mod report;
mod summary;
mod text;

pub use describe::role_spans;
pub use graph::{dot, mermaid};
pub use html::html;
pub use report::{body as report_body, next_command, report, PageOptions, RunView};
pub use summary::{count, summary};
pub use text::text;
