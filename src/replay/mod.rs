//! `pgtape replay`: re-issues a capture against a source and a target at once.
//!
//! - [`conn_opts`]: connection URLs, validated and masked.
//! - [`client`]: the wire-level client that replays statements faithfully.
//! - [`results`]: the per-side result files (Parquet) the diff joins.

pub mod client;
pub mod conn_opts;
pub mod results;
