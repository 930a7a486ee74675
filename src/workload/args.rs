//! `pgtape workload` command line, validated into [`WorkloadConfig`] and
//! [`SetupConfig`] before any I/O. Knobs carry seed 000's environment
//! variables so a container user sets them the same way.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Subcommand, ValueEnum};
use serde::Serialize;

use super::WorkloadError;
use super::pattern::Pattern;
use crate::clock::parse_duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// Multi-tenant analytics app (seeds 000, 002, 003, 004).
    #[default]
    Analytics,
    /// Order workflow simulator (seed 001).
    Orders,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum IngestMode {
    /// The generator inserts events itself.
    #[default]
    Direct,
    /// Events go to a Redis stream; workers drain it into PostgreSQL in batches.
    Stream,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum QueryType {
    Select,
    Insert,
    Update,
    /// 60 % select, 25 % insert, 15 % update.
    #[default]
    Mixed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum OutputFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct WorkloadArgs {
    #[command(subcommand)]
    pub action: Option<WorkloadAction>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum WorkloadAction {
    /// Create the profile's schema and seed its data (idempotent).
    Setup(DataArgs),
}

/// What both `setup` and a run need: where, which profile, how big.
#[derive(Debug, Clone, clap::Args)]
pub struct DataArgs {
    /// PostgreSQL URL (the proxy's address to record the traffic). Required.
    // Optional for clap, checked in validation: a required flag both here
    // and in the `setup` subcommand trips clap's requirement check.
    #[arg(long, env = "DATABASE_URL")]
    pub url: Option<String>,
    #[arg(long, value_enum, default_value_t = Profile::Analytics, env = "PGTAPE_PROFILE")]
    pub profile: Profile,
    /// Tenants (analytics) or stores (orders) seeded by setup.
    #[arg(long, default_value_t = 50, env = "ORGANIZATIONS")]
    pub organizations: u32,
    /// Users per organization seeded by setup.
    #[arg(long, default_value_t = 1000, env = "USERS_PER_ORG")]
    pub users_per_org: u32,
    /// Seed of every random choice: the same seed gives the same mix.
    #[arg(long, default_value_t = 1, env = "PGTAPE_SEED")]
    pub seed: u64,
}

#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Redis for the cache and the event stream.
    #[arg(long, default_value = "redis://127.0.0.1:6379/", env = "REDIS_URL")]
    pub redis: String,
    /// Fail (exit 2) instead of falling back to an in-process cache when Redis is unreachable.
    #[arg(long)]
    pub redis_required: bool,
    /// Events ingested per second (analytics).
    #[arg(long, default_value_t = 100.0, env = "EVENTS_PER_SECOND")]
    pub events_per_second: f64,
    /// App requests per second: analytics queries and session writes, or order operations.
    #[arg(long, default_value_t = 200.0, env = "QUERIES_PER_SECOND")]
    pub queries_per_second: f64,
    /// Target cache hit ratio of cacheable queries, in percent.
    #[arg(long, default_value_t = 85.0, env = "CACHE_HIT_TARGET")]
    pub cache_hit_target: f64,
    /// Percent of app requests that read; the rest are session writes (analytics).
    #[arg(long, default_value_t = 80.0, env = "READ_WRITE_RATIO")]
    pub read_write_ratio: f64,
    /// direct: insert events; stream: through a Redis stream drained by workers.
    #[arg(long, value_enum, default_value_t = IngestMode::Direct)]
    pub ingest: IngestMode,
    /// Stream workers write batches with COPY instead of a multi-row INSERT.
    #[arg(long)]
    pub copy: bool,
    /// Order operations (orders profile).
    #[arg(long, value_enum, default_value_t = QueryType::Mixed)]
    pub query_type: QueryType,
    /// Connection pool size (concurrent database sessions).
    #[arg(long, default_value_t = 20, env = "PGTAPE_CONNECTIONS")]
    pub connections: u32,
    /// Measured run length (after --warmup).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Stop after this many operations (whichever comes first with --duration).
    #[arg(long)]
    pub total_operations: Option<u64>,
    /// Load before measuring starts: fills the pool, the caches and the plans.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    #[arg(long, value_enum, default_value_t = Pattern::Steady)]
    pub pattern: Pattern,
    /// Measure the `SELECT 1` round trip first and report it apart from query time.
    #[arg(long)]
    pub measure_network: bool,
    /// Refresh the dashboards' materialized views this often (analytics).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub refresh_interval: Duration,
    /// Serve Prometheus metrics on this address.
    #[arg(long, env = "PGTAPE_METRICS")]
    pub metrics: Option<SocketAddr>,
    /// Summary format on stdout.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
    /// Run `setup` first (creates what is missing, keeps what exists).
    #[arg(long)]
    pub setup: bool,
}

/// A validated `setup`.
#[derive(Debug, Clone)]
pub struct SetupConfig {
    pub url: String,
    pub profile: Profile,
    pub organizations: u32,
    pub users_per_org: u32,
    pub seed: u64,
}

/// A validated run. Build one with [`WorkloadConfig::new`] and adjust fields.
#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    pub url: String,
    pub profile: Profile,
    /// `None`: no Redis at all (in-process cache; stream ingestion unavailable).
    pub redis_url: Option<String>,
    pub redis_required: bool,
    pub events_per_second: f64,
    pub queries_per_second: f64,
    /// 0–1.
    pub cache_hit_target: f64,
    /// 0–1: share of analytics requests that read.
    pub read_write_ratio: f64,
    pub ingest: IngestMode,
    pub copy: bool,
    pub query_type: QueryType,
    pub connections: u32,
    pub duration: Duration,
    pub total_operations: Option<u64>,
    pub warmup: Duration,
    pub pattern: Pattern,
    pub measure_network: bool,
    pub refresh_interval: Duration,
    pub seed: u64,
    /// Print a progress line on stderr once a second.
    pub progress: bool,
    pub metrics: Option<SocketAddr>,
}

impl WorkloadConfig {
    /// Seed 000's defaults against `url`, no Redis, 10 s, no warmup.
    pub fn new(url: impl Into<String>, profile: Profile) -> Self {
        WorkloadConfig {
            url: url.into(),
            profile,
            redis_url: None,
            redis_required: false,
            events_per_second: 100.0,
            queries_per_second: 200.0,
            cache_hit_target: 0.85,
            read_write_ratio: 0.80,
            ingest: IngestMode::Direct,
            copy: false,
            query_type: QueryType::Mixed,
            connections: 20,
            duration: Duration::from_secs(10),
            total_operations: None,
            warmup: Duration::ZERO,
            pattern: Pattern::Steady,
            measure_network: false,
            refresh_interval: Duration::from_secs(60),
            seed: 1,
            progress: false,
            metrics: None,
        }
    }

    pub fn from_args(a: &RunArgs) -> Result<Self, WorkloadError> {
        let bad = |msg: String| Err(WorkloadError::BadInput(msg));
        let url = check_url(&a.data.url)?;
        for (flag, v) in [
            ("--events-per-second", a.events_per_second),
            ("--queries-per-second", a.queries_per_second),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(format!("{flag} {v} must be a number >= 0, e.g. {flag} 100"));
            }
        }
        let total_rate = match a.data.profile {
            Profile::Analytics => a.events_per_second + a.queries_per_second,
            Profile::Orders => a.queries_per_second,
        };
        if total_rate <= 0.0 {
            return bad(
                "--events-per-second and --queries-per-second are both 0: nothing to do; \
                 set one of them above 0"
                    .into(),
            );
        }
        for (flag, v) in [
            ("--cache-hit-target", a.cache_hit_target),
            ("--read-write-ratio", a.read_write_ratio),
        ] {
            if !(0.0..=100.0).contains(&v) {
                return bad(format!("{flag} {v} is a percentage: use 0 to 100"));
            }
        }
        if a.connections == 0 || a.connections > 10_000 {
            return bad(format!(
                "--connections {} must be 1 to 10000",
                a.connections
            ));
        }
        if a.duration.is_zero() && a.total_operations.is_none() {
            return bad("--duration 0 without --total-operations never starts; give one".into());
        }
        if a.pattern != Pattern::Steady && a.duration.is_zero() {
            return bad(format!(
                "--pattern {:?} spreads its phases over --duration; give --duration, e.g. 5m",
                a.pattern
            ));
        }
        if a.copy && a.ingest != IngestMode::Stream {
            return bad("--copy applies to the stream workers; add --ingest stream".into());
        }
        Ok(WorkloadConfig {
            url,
            profile: a.data.profile,
            redis_url: Some(a.redis.clone()),
            redis_required: a.redis_required,
            events_per_second: a.events_per_second,
            queries_per_second: a.queries_per_second,
            cache_hit_target: a.cache_hit_target / 100.0,
            read_write_ratio: a.read_write_ratio / 100.0,
            ingest: a.ingest,
            copy: a.copy,
            query_type: a.query_type,
            connections: a.connections,
            duration: a.duration,
            total_operations: a.total_operations,
            warmup: a.warmup,
            pattern: a.pattern,
            measure_network: a.measure_network,
            refresh_interval: a.refresh_interval.max(Duration::from_secs(1)),
            seed: a.data.seed,
            progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            metrics: a.metrics,
        })
    }
}

impl SetupConfig {
    pub fn new(url: impl Into<String>, profile: Profile, organizations: u32, users: u32) -> Self {
        SetupConfig {
            url: url.into(),
            profile,
            organizations,
            users_per_org: users,
            seed: 1,
        }
    }

    pub fn from_args(a: &DataArgs) -> Result<Self, WorkloadError> {
        let url = check_url(&a.url)?;
        if a.organizations == 0 || a.organizations > 100_000 {
            return Err(WorkloadError::BadInput(format!(
                "--organizations {} must be 1 to 100000",
                a.organizations
            )));
        }
        if a.users_per_org == 0 || a.users_per_org > 1_000_000 {
            return Err(WorkloadError::BadInput(format!(
                "--users-per-org {} must be 1 to 1000000",
                a.users_per_org
            )));
        }
        Ok(SetupConfig {
            url,
            profile: a.profile,
            organizations: a.organizations,
            users_per_org: a.users_per_org,
            seed: a.seed,
        })
    }
}

fn check_url(url: &Option<String>) -> Result<String, WorkloadError> {
    let Some(url) = url else {
        return Err(WorkloadError::BadInput(
            "--url is required (or set DATABASE_URL), e.g. --url postgres://user:password@127.0.0.1:5432/app".into(),
        ));
    };
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(url.clone())
    } else {
        Err(WorkloadError::BadInput(format!(
            "--url {} is not a PostgreSQL URL; use postgres://user:password@host:port/database",
            mask_url(url)
        )))
    }
}

/// `scheme://user:***@host/...`: URLs in messages never show the password.
/// `host:port` of a `postgres://` URL (port 5432 if absent), for probes.
pub fn host_port(url: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    let host = u.host_str().filter(|h| !h.is_empty())?;
    Some(format!("{host}:{}", u.port().unwrap_or(5432)))
}

pub fn mask_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[scheme_end..];
    let Some(at) = rest.rfind('@') else {
        return url.to_string();
    };
    match rest[..at].find(':') {
        Some(colon) => format!(
            "{}{}:***{}",
            &url[..scheme_end],
            &rest[..colon],
            &rest[at..]
        ),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_url_hides_only_the_password() {
        assert_eq!(
            mask_url("postgres://app:s3cr@t@db:5432/x"),
            "postgres://app:***@db:5432/x"
        );
        assert_eq!(mask_url("redis://:pw@h:6379/"), "redis://:***@h:6379/");
        assert_eq!(mask_url("postgres://app@db/x"), "postgres://app@db/x");
        assert_eq!(mask_url("redis://h:6379/"), "redis://h:6379/");
    }
}
