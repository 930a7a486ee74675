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

use analytics::{Ctx, EventChooser, RequestChooser, ingest, queries};
use cache::Cache;
use scheduler::{Gate, Plan, drive, expected_ops};
use summary::{Latency, NetworkBaseline, RunFacts};

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
    let ingest_rate = cfg.events_per_second / analytics::mean_events_per_request();
    let mut background = Vec::new();
    let interrupted;
    tokio::pin!(shutdown);
    match cfg.profile {
        Profile::Analytics => {
            let ctx = Arc::new(Ctx::new(pool.clone(), cache, rec.clone(), sizes, cfg.copy));
            if let Some(con) = &stream_con {
                ingest::create_group(&mut con.clone()).await.map_err(|e| {
                    WorkloadError::BadInput(format!("cannot create the Redis consumer group: {e}"))
                })?;
                let url = cfg.redis_url.as_deref().unwrap_or_default();
                for i in 0..2 {
                    // Own connections: XREADGROUP BLOCK would stall the
                    // cache's multiplexed one.
                    let con = cache::connect_redis(url).await.map_err(|cause| {
                        WorkloadError::RedisUnreachable {
                            url: args::mask_url(url),
                            cause,
                        }
                    })?;
                    background.push(tokio::spawn(ingest::drain_worker(
                        ctx.clone(),
                        con,
                        format!("worker-{i}"),
                        stop_rx.clone(),
                    )));
                }
            }
            background.push(tokio::spawn(queries::refresh_loop(
                ctx.clone(),
                cfg.refresh_interval,
                plan.end,
                stop_rx.clone(),
            )));
            let mut events = EventChooser::new(cfg.seed, sizes);
            let mut requests = RequestChooser::new(
                cfg.seed,
                sizes,
                cfg.read_write_ratio,
                cfg.cache_hit_target,
                rec.clone(),
            );
            let ingest = drive(
                ingest_rate,
                || events.next_request(),
                |batch, due| {
                    if let Some(first) = batch.first() {
                        self::metrics::ingested(first.org, batch.iter().map(|e| e.event_type));
                    }
                    let (ctx, con) = (ctx.clone(), stream_con.clone());
                    async move {
                        match con {
                            Some(con) => ingest::publish(&ctx, con, batch, due).await,
                            None => ingest::direct(&ctx, batch, due).await,
                        }
                    }
                },
                &plan,
                &gate,
                &rec,
            );
            let app = drive(
                cfg.queries_per_second,
                || requests.next_request(),
                |req, due| {
                    let ctx = ctx.clone();
                    async move { queries::execute(&ctx, req, due).await }
                },
                &plan,
                &gate,
                &rec,
            );
            interrupted = tokio::select! {
                _ = async { tokio::join!(ingest, app) } => false,
                _ = &mut shutdown => true,
            };
        }
        Profile::Orders => {
            let shape = orders::shape(&pool).await?;
            let mut chooser = orders::OrderChooser::new(cfg.seed, cfg.query_type, shape);
            let ops = drive(
                cfg.queries_per_second,
                || chooser.next_op(),
                |op, due| {
                    let (pool, rec) = (pool.clone(), rec.clone());
                    async move { orders::execute(&pool, &rec, op, due).await }
                },
                &plan,
                &gate,
                &rec,
            );
            interrupted = tokio::select! {
                _ = ops => false,
                _ = &mut shutdown => true,
            };
        }
    }
    let dispatch_end = Instant::now().min(plan.end);
    let _ = stop_tx.send(true);
    if !gate.drain(Duration::from_secs(30)).await {
        tracing::warn!(
            "operations still running 30 s after the run ended; summarising without them"
        );
    }
    for task in background {
        if tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .is_err()
        {
            tracing::warn!("a background worker did not finish within 30 s");
        }
    }
    if let Some(p) = progress {
        let _ = p.await;
    }
    if interrupted {
        tracing::info!("interrupted: summarising what ran");
    }
    let measured = dispatch_end.saturating_duration_since(plan.measure_from);
    let target = |rate: f64| {
        if measured.is_zero() {
            0.0
        } else {
            expected_ops(rate, &plan, measured) / measured.as_secs_f64()
        }
    };
    let (target_events, target_queries) = match cfg.profile {
        Profile::Analytics => (
            target(cfg.events_per_second),
            target(cfg.queries_per_second),
        ),
        Profile::Orders => (0.0, target(cfg.queries_per_second)),
    };
    pool.close().await;
    Ok(summary::build(
        &rec,
        RunFacts {
            profile: cfg.profile,
            pattern: cfg.pattern,
            seed: cfg.seed,
            duration_s: measured.as_secs_f64(),
            connections: cfg.connections,
            target_events,
            target_queries,
            target_ingest_requests: target_events / analytics::mean_events_per_request(),
            cache_backend,
            cache_target_pct: match cfg.profile {
                Profile::Analytics => cfg.cache_hit_target * 100.0,
                Profile::Orders => 0.0,
            },
            network,
        },
    ))
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
