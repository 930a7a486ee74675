//! `pgtape replay`: re-issues a capture against a source and a target at once.
//!
//! - [`conn_opts`]: connection URLs, validated and masked.
//! - [`client`]: the wire-level client that replays statements faithfully.
//! - [`plan`]: filters and the sizing pass over a capture.
//! - [`items`]: the capture as a stream of connect, statement and disconnect items.
//! - [`dispatch`]: the thread that streams the capture into the sessions' queues.
//! - [`queue`]: a session's queue, in memory or on the [`spool`], never blocking the reader.
//! - [`order`]: the order of effects across sessions (`--order commit`).
//! - [`tables`]: which tables a statement uses, from its SQL and the source's catalog.
//! - [`row_keys`]: which row of its table a statement touches, by the table's unique key.
//! - [`watchdog`]: breaks waits for order the replay itself made impossible.
//! - [`fidelity`]: what a capture keeps beyond a statement's shape (COPY data, result values).
//! - [`exec`]: one statement on one connection, with its COPY data and mapped values (the worker's one call).
//! - [`remap`]: values a session got back and sends again, mapped per side.
//! - [`timer`]: the replay clock and the precise timer behind it.
//! - [`worker`]: one replayed session on one side (or both, in lockstep).
//! - [`results`]: the per-side result files (Parquet) the diff joins.
//! - [`summary`]: per-side counts, lag and latency; table and JSON.
//! - [`progress`]: the progress line on a terminal, and the progress metric.
//! - [`args`]: arguments validated into a configuration.
//! - `preflight`: what is checked and loaded before the first session starts.
//! - [`run`]: the dispatcher, the sessions, the writers, the summary.

pub mod args;
pub mod client;
pub mod conn_opts;
pub mod dispatch;
pub mod exec;
pub mod fidelity;
pub mod items;
pub mod lock_waits;
pub mod order;
pub mod plan;
mod preflight;
pub mod progress;
pub mod queue;
pub mod remap;
pub mod results;
pub mod row_keys;
pub mod run;
pub mod sequences;
pub mod spool;
pub mod summary;
pub mod tables;
pub mod timer;
pub mod watchdog;
pub mod worker;

pub use run::{ReplayArgs, ReplayConfig, replay};
