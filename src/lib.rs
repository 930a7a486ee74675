//! pgtape records PostgreSQL traffic at the wire level and replays it against
//! a source and a target database at once.
//!
//! Modules follow the data's path:
//! - [`wire`]: framing, the messages pgtape reads, TLS for both sides.
//! - [`proxy`]: listener, session pump and the statement tap.
//! - [`workload`]: the synthetic analytics app and order workflow: real traffic to record.
//! - [`capture`]: the recorder (Arrow IPC segments → Parquet) and the capture reader.
//! - [`replay`]: re-issues a capture against source and target in parallel; result files.
//! - [`diff`]: a replay's source and target results joined, classed, noise
//!   cancelled, latency compared; the verdict and its exit code.
//! - [`report`]: summaries of a capture and verdicts of a replay; table, JSON,
//!   Markdown and HTML exporters.
//! - [`metrics`]: Prometheus `/metrics` and `/health`; every metric name in one place.
//! - [`demo`]: the whole story on one machine, one command.
//! - [`cluster`]: throw-away PostgreSQL clusters from the local binaries (tests, demo).
//! - [`redis_server`]: throw-away redis-server processes (tests, demo).
//! - [`workers`]: thread-per-core runtimes that proxy and replay sessions are spread over.
//! - [`cli`]: the command line, validated into each command's configuration.
//! - [`logging`]: tracing to stderr, text or JSON.
//! - [`fasthash`]: the hasher of the per-row maps.

pub mod capture;
pub mod cli;
pub mod cluster;
pub mod demo;
pub mod diff;
pub mod fasthash;
pub mod logging;
pub mod metrics;
pub mod proxy;
pub mod redis_server;
pub mod replay;
pub mod report;
pub mod wire;
pub mod workers;
pub mod workload;
