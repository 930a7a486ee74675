//! Replay fidelity against real PostgreSQL clusters: COPY data, one row
//! count for multi-statement Queries, column types by identity, values a
//! session got back and sends again, and the verdict's coverage.

#[path = "fidelity/analytics.rs"]
mod analytics;
#[path = "fidelity/catalog.rs"]
mod catalog;
#[path = "fidelity/copy.rs"]
mod copy;
#[path = "fidelity/coverage.rs"]
mod coverage;
#[path = "fidelity/harness.rs"]
mod harness;
#[path = "fidelity/remap.rs"]
mod remap;
#[path = "fidelity/rows.rs"]
mod rows;
mod support;
#[path = "fidelity/types.rs"]
mod types;
