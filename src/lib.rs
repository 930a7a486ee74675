//! pgtape records PostgreSQL traffic at the wire level and replays it against
//! a source and a target database at once.
//!
//! Modules follow the data's path, lowest layer first; a module uses only the
//! layers listed before its own, never its neighbours or a later one
//! (`tests/layers.rs` keeps the order):
//!
//! 1. Foundations, knowing nothing of captures, sessions or verdicts, in
//!    three rows (a row uses only the rows above it):
//!    - [`fasthash`]: the hasher of the per-row maps;
//!      [`logging`]: tracing to stderr, text or JSON;
//!      [`clock`]: UTC microseconds, durations as flags spell them, latency histograms;
//!      [`process`]: exit codes and the shutdown signals.
//!    - [`wire`]: framing, the messages pgtape reads, the SSLRequest, TLS for both sides;
//!      [`sql`]: a statement's shape: fingerprint, normalised text, type, tables,
//!      read-only, outer ORDER BY, volatility;
//!      [`columnar`]: what every Parquet file pgtape writes shares: list columns,
//!      zstd, the schema version check;
//!      [`workers`]: thread-per-core runtimes that proxy and replay sessions are spread over.
//!    - [`metrics`]: Prometheus `/metrics` and `/health`; every metric name in one place;
//!      [`cluster`]: throw-away PostgreSQL clusters from the local binaries (tests, demo);
//!      [`redis_server`]: throw-away redis-server processes (tests, demo).
//! 2. [`capture`]: the tap event contract, the recorder (Arrow IPC segments →
//!    Parquet) and the capture reader.
//! 3. [`proxy`]: listener, session pump and the statement tap (produces events);
//!    [`replay`]: re-issues a capture against source and target in parallel
//!    (consumes captures, owns the result files).
//! 4. [`diff`]: a replay's source and target results joined, classed, noise
//!    cancelled, latency compared; the verdict and its exit code.
//! 5. [`report`]: summaries of a capture and verdicts of a replay; table, JSON,
//!    Markdown and HTML exporters.
//! 6. [`demo`]: the whole story on one machine, one command.
//! 7. [`cli`]: the command line, validated into each command's configuration.
//!
//! Beside the stack, on the foundations only: [`workload`], the synthetic
//! analytics app and order workflow (real traffic to record); only the
//! commands use it.

pub mod capture;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod columnar;
pub mod demo;
pub mod diff;
pub mod fasthash;
pub mod logging;
pub mod metrics;
pub mod process;
pub mod proxy;
pub mod redis_server;
pub mod replay;
pub mod report;
pub mod sql;
pub mod wire;
pub mod workers;
pub mod workload;
