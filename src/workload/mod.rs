//! `pgtape workload`: realistic traffic to record — the synthetic analytics
//! app and the order workflow of the seeds, sent through a real sqlx pool
//! (extended protocol, prepared statements) and a real Redis cache.
//!
//! - [`args`]: the command line, validated into [`WorkloadConfig`] / [`SetupConfig`].
//! - [`setup`]: schema (`schema/*.sql`), seed data, the pool, the schema check.
//! - [`pattern`]: traffic patterns as a rate function of the run's progress.
//! - [`scheduler`]: the open-loop scheduler (latency from the due time).
//! - [`analytics`]: event ingestion, tenant-scoped queries, view refresh.
//! - [`orders`]: seed 001's order workflow.
//! - [`cache`]: cache-aside with TTL tiers and tag invalidation; in-process fallback.
//! - [`stats`]: per-operation histograms and live counters.
//! - [`summary`]: the end-of-run report, text or JSON.
//! - [`metrics`]: the workload's exporter, fed by its live recorder.
//!
//! Entry points: [`setup()`] then [`run`] (or [`run_observed`] to get the
//! live counters, e.g. for a metrics exporter); [`main`] is the CLI edge.

pub mod analytics;
pub mod args;
pub mod cache;
pub mod metrics;
pub mod orders;
pub mod pattern;
pub mod scheduler;
pub mod setup;
pub mod stats;
pub mod summary;
mod traffic;

use std::future::Future;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::sync::watch;

pub use args::{
    IngestMode, OutputFormat, Profile, QueryType, SetupConfig, WorkloadAction, WorkloadArgs,
    WorkloadConfig,
};
pub use pattern::Pattern;
pub use setup::{SetupReport, Sizes, setup};
pub use stats::Recorder;
pub use summary::Summary;
pub use summary::render;

use cache::Cache;
use scheduler::{Gate, Plan};
use summary::{Latency, NetworkBaseline};
use traffic::Traffic;

#[derive(Debug, Error)]
pub enum WorkloadError {
    #[error("{0}")]
    BadInput(String),
    #[error(
        "cannot connect to PostgreSQL at {url}: {cause}; check --url (DATABASE_URL) and that the server runs"
    )]
    Unreachable { url: String, cause: String },
    #[error(
        "Redis at {url} is unreachable and --redis-required is set: {cause}; start Redis, fix --redis (REDIS_URL) or drop --redis-required"
    )]
    RedisUnreachable { url: String, cause: String },
    #[error(
        "--ingest stream needs Redis, but Redis at {url} is unreachable: start Redis, fix --redis or use --ingest direct"
    )]
    StreamNeedsRedis { url: String },
    #[error(
        "the {profile} schema is missing in {url}: run `pgtape workload setup --url <URL> --profile {profile}` first \
         (or add --setup to this command)"
    )]
    SchemaMissing { url: String, profile: &'static str },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// Runs the workload until its duration or count is done, or `shutdown`
/// resolves; returns the summary. The schema must exist ([`setup()`]).
pub async fn run(
    cfg: &WorkloadConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<Summary, WorkloadError> {
    run_observed(cfg, shutdown, |_| {}).await
}

/// [`run`], handing the live [`Recorder`] to `observe` before load starts
/// (the hook for a Prometheus exporter: it reads `recorder.live`).
///
/// The stages, in order: connect and check the schema, the cache; the
/// profile's traffic until its end or `shutdown` (`traffic.rs`); the wind
/// down of what still runs; the summary of what the recorder saw.
pub async fn run_observed(
    cfg: &WorkloadConfig,
    shutdown: impl Future<Output = ()>,
    observe: impl FnOnce(Arc<Recorder>),
) -> Result<Summary, WorkloadError> {
    let pool = setup::connect_pool(&cfg.url, cfg.connections).await?;
    let sizes = setup::check_schema(&pool, cfg.profile, &cfg.url).await?;
    let network = match cfg.measure_network {
        true => Some(network_baseline(&pool).await?),
        false => None,
    };
    let cache = match cfg.profile {
        Profile::Analytics => Cache::connect(cfg.redis_url.as_deref(), cfg.redis_required).await?,
        Profile::Orders => Cache::memory(),
    };
    let stream_con = match (cfg.profile, cfg.ingest) {
        (Profile::Analytics, IngestMode::Stream) => {
            Some(
                cache
                    .redis()
                    .ok_or_else(|| WorkloadError::StreamNeedsRedis {
                        url: args::mask_url(cfg.redis_url.as_deref().unwrap_or("(none)")),
                    })?,
            )
        }
        _ => None,
    };
    let cache_backend = cache.backend_name();
    let plan = Plan::new(cfg.warmup, cfg.duration, cfg.pattern, cfg.total_operations);
    let rec = Arc::new(Recorder::new(plan.measure_from));
    self::metrics::track_pool(&pool, cfg.connections);
    observe(rec.clone());
    let (stop_tx, stop_rx) = watch::channel(false);
    let gate = Gate::new((cfg.connections * 8).max(256), stop_rx.clone());
    let progress = cfg
        .progress
        .then(|| tokio::spawn(progress_line(rec.clone(), stop_rx.clone())));
    let traffic = Traffic {
        cfg,
        plan: &plan,
        gate: &gate,
        rec: &rec,
        stop: stop_rx,
    };
    let mut background = Vec::new();
    let interrupted = match cfg.profile {
        Profile::Analytics => {
            traffic
                .analytics(
                    pool.clone(),
                    cache,
                    stream_con,
                    sizes,
                    &mut background,
                    shutdown,
                )
                .await?
        }
        Profile::Orders => traffic.orders(&pool, shutdown).await?,
    };
    let dispatch_end = Instant::now().min(plan.end);
    let _ = stop_tx.send(true);
    traffic::wind_down(&gate, background, progress).await;
    if interrupted {
        tracing::info!("interrupted: summarising what ran");
    }
    pool.close().await;
    let facts = traffic::run_facts(cfg, &plan, dispatch_end, cache_backend, network);
    Ok(summary::build(&rec, facts))
}

/// `SELECT 1` round trips on one connection: the floor under every query.
async fn network_baseline(pool: &sqlx::PgPool) -> Result<NetworkBaseline, WorkloadError> {
    const SAMPLES: u64 = 200;
    let mut conn = pool.acquire().await?;
    let mut h =
        hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    for i in 0..SAMPLES + 10 {
        let t = Instant::now();
        sqlx::query("SELECT 1").execute(&mut *conn).await?;
        // The first few pay for preparing the statement.
        if i >= 10 {
            h.saturating_record((t.elapsed().as_micros() as u64).max(1));
        }
    }
    Ok(NetworkBaseline {
        samples: SAMPLES,
        round_trip: Latency::from_hist(&h),
    })
}

/// One line on stderr each second: achieved rates, errors, cache hits.
async fn progress_line(rec: Arc<Recorder>, mut stop: watch::Receiver<bool>) {
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let (mut last_ops, mut last_events) = (0, 0);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        let l = &rec.live;
        let ops = l.ops_ok.load(Ordering::Relaxed) + l.ops_failed.load(Ordering::Relaxed);
        let events = l.events.load(Ordering::Relaxed);
        let (hits, misses) = (
            l.cache_hits.load(Ordering::Relaxed),
            l.cache_misses.load(Ordering::Relaxed),
        );
        let hit = if hits + misses == 0 {
            0.0
        } else {
            100.0 * hits as f64 / (hits + misses) as f64
        };
        eprint!(
            "\r[{:>5.0}s] {:>7} ops/s  {:>7} events/s  {} errors  cache {hit:.1} %   ",
            started.elapsed().as_secs_f64(),
            ops - last_ops,
            events - last_events,
            l.ops_failed.load(Ordering::Relaxed),
        );
        let _ = std::io::stderr().flush();
        (last_ops, last_events) = (ops, events);
    }
    eprintln!();
}

/// `pgtape workload [setup]`: the CLI edge. Exit 0 on success; errors map to 2.
pub fn main(args: WorkloadArgs) -> anyhow::Result<i32> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match args.action {
        Some(WorkloadAction::Setup(data)) => {
            let cfg = SetupConfig::from_args(&data)?;
            let report = rt.block_on(setup(&cfg))?;
            println!(
                "{:?} schema ready in {}: {} organizations × {} users, {} rows, {:.1} s",
                report.profile,
                args::mask_url(&cfg.url),
                report.sizes.organizations,
                report.sizes.users_per_org,
                report.rows,
                report.seconds
            );
            Ok(crate::process::exit::OK)
        }
        None => {
            let cfg = WorkloadConfig::from_args(&args.run)?;
            let summary = rt.block_on(async {
                let exporter = match cfg.metrics {
                    Some(addr) => {
                        let exp = crate::metrics::Exporter::new("workload");
                        exp.install_global();
                        if let Some(db) = args::host_port(&cfg.url) {
                            exp.health
                                .probe_postgres("database", db, Duration::from_secs(2));
                        }
                        exp.serve(addr)
                            .await
                            .map_err(|e| WorkloadError::BadInput(e.to_string()))?;
                        Some(exp)
                    }
                    None => None,
                };
                if args.run.setup {
                    setup(&SetupConfig::from_args(&args.run.data)?).await?;
                }
                let observe = |rec: Arc<Recorder>| {
                    if let Some(exp) = &exporter {
                        self::metrics::observe(exp, rec);
                    }
                };
                run_observed(&cfg, crate::process::shutdown_signal(), observe).await
            })?;
            print!("{}", render(&summary, args.run.format));
            Ok(crate::process::exit::OK)
        }
    }
}
