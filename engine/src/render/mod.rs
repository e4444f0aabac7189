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

/// The forms `fleetbook plan --format` writes a plan in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlanFormat {
    Text,
    /// The plan schema of docs/plan-schema.md, pretty-printed.
    Json,
    Dot,
    Mermaid,
    Html,
}

/// The plan in the form asked for, ready to be written out.
pub fn plan(p: &crate::plan::Plan, format: PlanFormat) -> crate::Result<String> {
    Ok(match format {
        PlanFormat::Text => text(p),
        PlanFormat::Json => json(p)?,
        PlanFormat::Dot => dot(p),
        PlanFormat::Mermaid => mermaid(p),
        PlanFormat::Html => html(p),
    })
}

/// A value as the commands' `--format json` print it: pretty, with a final newline.
pub fn json(v: &impl serde::Serialize) -> crate::Result<String> {
    let mut s =
        serde_json::to_string_pretty(v).map_err(|e| crate::Error::Internal(e.to_string()))?;
    s.push('\n');
    Ok(s)
}
