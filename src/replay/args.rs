//! `pgtape replay`'s arguments, validated into a [`ReplayConfig`] before any
//! I/O: every error names the flag and the fix.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::ValueEnum;

use super::conn_opts::ConnOpts;
pub use super::order::OrderMode;
use super::plan::Filter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Pace {
    /// Each side follows the schedule on its own: a slow target does not change the source's load.
    Independent,
    /// Each statement goes to both sides; the session waits for both.
    Lockstep,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Capture directory written by `pgtape proxy --capture`.
    pub capture: PathBuf,
    /// The database that stands for production (a copy of its starting state).
    #[arg(long, env = "PGTAPE_SOURCE")]
    pub source: String,
    /// The migration candidate; without it the replay runs against the source only.
    #[arg(long, env = "PGTAPE_TARGET")]
    pub target: Option<String>,
    /// Replay speed: 2 replays twice as fast as recorded.
    #[arg(long, default_value_t = 1.0, conflicts_with = "max_rate")]
    pub speed: f64,
    /// Ignore recorded timing: each session as fast as it can, in order.
    #[arg(long)]
    pub max_rate: bool,
    /// Where result files go.
    #[arg(long, default_value = "pgtape-results")]
    pub results: PathBuf,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Replay only read-only statements (and transaction control).
    #[arg(long)]
    pub read_only: bool,
    /// Start at this time: RFC 3339, or an offset from the capture's start (`30s`).
    #[arg(long)]
    pub from: Option<String>,
    /// Stop at this time: RFC 3339, or an offset from the capture's start (`5m`).
    #[arg(long)]
    pub until: Option<String>,
    /// Only sessions of this application_name.
    #[arg(long)]
    pub application: Option<String>,
    /// Only these captured session ids (repeatable).
    #[arg(long = "session")]
    pub sessions: Vec<i64>,
    /// Replay each read-only session N times (clones start staggered).
    #[arg(long, default_value_t = 1)]
    pub scale: u32,
    /// Connections per side at most.
    #[arg(long, default_value_t = 100)]
    pub max_connections: usize,
    /// Open each connection this long before its recorded connect (`100ms`),
    /// so a new backend's start-up is not counted as its first statements' lag.
    #[arg(long, value_name = "DURATION", value_parser = crate::clock::parse_duration)]
    pub connect_ahead: Option<std::time::Duration>,
    /// Threads the replayed sessions run on (default: one per core).
    #[arg(long)]
    pub threads: Option<usize>,
    #[arg(long, value_enum, default_value_t = Pace::Independent)]
    pub pace: Pace,
    /// Order of effects across sessions: `commit` makes each statement wait,
    /// on each side, for the writes, DDL and commits of other sessions that
    /// had completed before it started in the capture; `session` keeps each
    /// session's own order only.
    #[arg(long, value_enum, default_value_t = OrderMode::Commit)]
    pub order: OrderMode,
    /// Release a wait for order that has not moved for this long (a lock
    /// taken in another order on replay, a session that never gets there).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = crate::clock::parse_duration)]
    pub order_timeout: std::time::Duration,
    /// Do not ask the servers (pg_blocking_pids) whether a wait for order is
    /// a lock cycle the replay made, which is otherwise released at once;
    /// such waits then last --order-timeout.
    #[arg(long)]
    pub no_lock_check: bool,
    /// On SIGTERM or SIGINT: no statement starts, those in flight get this
    /// long, then the results are written; a second signal exits at once.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = crate::clock::parse_duration)]
    pub shutdown_grace: std::time::Duration,
    /// Map captured users to replay users: `app=replay_app,batch=replay_batch`.
    #[arg(long, value_delimiter = ',')]
    pub user_map: Vec<String>,
    /// Serve Prometheus metrics at /metrics and readiness at /health on this address.
    #[arg(long, env = "PGTAPE_METRICS")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Also write the verdict to this file: .html, .json, .md, or a text table.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Map values a session got back (ids, OIDs) to the side's own where it
    /// sends them again: within a session (default: deterministic on both
    /// sides), across a side's sessions too (pooled apps hand values between
    /// connections; races can mis-map), or not at all.
    #[arg(long, value_enum, default_value_t = super::remap::Mode::Session, env = "PGTAPE_REMAP")]
    pub remap: super::remap::Mode,
}

/// A validated replay.
#[derive(Debug, Clone)]
pub struct ReplayConfig {
    pub capture: PathBuf,
    pub source: ConnOpts,
    pub target: Option<ConnOpts>,
    pub speed: Option<f64>,
    pub results: PathBuf,
    pub filter: Filter,
    /// Raw --from/--until, resolved once the capture's start is known.
    pub window: (Option<String>, Option<String>),
    pub scale: u32,
    pub max_connections: usize,
    pub connect_ahead: std::time::Duration,
    /// Session threads; `None` runs sessions on the caller's runtime.
    pub threads: Option<usize>,
    pub pace: Pace,
    pub order: OrderMode,
    pub order_timeout: std::time::Duration,
    pub lock_check: bool,
    pub shutdown_grace: std::time::Duration,
    pub user_map: Vec<(String, String)>,
    pub metrics: Option<std::net::SocketAddr>,
    pub remap: super::remap::Mode,
}

impl ReplayConfig {
    pub fn from_args(a: &ReplayArgs) -> anyhow::Result<ReplayConfig> {
        let source = ConnOpts::parse(&a.source).context("--source")?;
        let target = a
            .target
            .as_deref()
            .map(ConnOpts::parse)
            .transpose()
            .context("--target")?;
        if !(a.max_rate || a.speed > 0.0 && a.speed.is_finite()) {
            bail!("--speed must be a positive number (e.g. --speed 2), or use --max-rate");
        }
        if a.scale == 0 {
            bail!("--scale must be at least 1");
        }
        if a.max_connections == 0 {
            bail!("--max-connections must be at least 1");
        }
        if a.max_rate && a.connect_ahead.is_some() {
            bail!(
                "--connect-ahead applies to a paced replay (--speed); --max-rate connects each session when its first item arrives"
            );
        }
        if a.order_timeout.is_zero() {
            bail!(
                "--order-timeout must be more than 0 (e.g. --order-timeout 10s); use --order session to replay without waits for order"
            );
        }
        if a.threads == Some(0) {
            bail!("--threads must be at least 1");
        }
        let user_map = a
            .user_map
            .iter()
            .map(|m| {
                m.split_once('=')
                    .map(|(f, t)| (f.to_string(), t.to_string()))
            })
            .collect::<Option<Vec<_>>>()
            .context("--user-map takes captured=replay pairs, e.g. --user-map app=replay_app")?;
        let filter = Filter {
            read_only: a.read_only,
            application: a.application.clone(),
            sessions: (!a.sessions.is_empty()).then(|| a.sessions.iter().copied().collect()),
            ..Default::default()
        };
        Ok(ReplayConfig {
            capture: a.capture.clone(),
            source,
            target,
            speed: (!a.max_rate).then_some(a.speed),
            results: a.results.clone(),
            filter,
            window: (a.from.clone(), a.until.clone()),
            scale: a.scale,
            max_connections: a.max_connections,
            connect_ahead: a.connect_ahead.unwrap_or_default(),
            // One per core: the replayer is the client, as pgbench -j is.
            threads: Some(
                a.threads
                    .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
            ),
            pace: a.pace,
            order: a.order,
            order_timeout: a.order_timeout,
            lock_check: !a.no_lock_check,
            shutdown_grace: a.shutdown_grace,
            user_map,
            metrics: a.metrics,
            remap: a.remap,
        })
    }
}

pub(super) fn resolve_time(s: &str, start_us: i64, flag: &str) -> anyhow::Result<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_micros());
    }
    let d = crate::clock::parse_duration(s)
        .map_err(|_| anyhow::anyhow!("{flag} {s:?}: use an RFC 3339 time (2026-11-23T12:00:00Z) or an offset from the capture's start (30s, 5m)"))?;
    Ok(start_us + d.as_micros() as i64)
}
