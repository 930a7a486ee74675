//! A workload run's traffic, the middle of [`super::run_observed`]: the
//! analytics app (ingestion, direct or through a Redis stream, and the
//! dashboard's requests, with the materialized-view refresh beside them)
//! or the order workflow, each driven open-loop until the plan's end or the
//! shutdown; then the wind-down of what still runs and the facts the
//! summary needs about the run itself.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::analytics::{self, Ctx, EventChooser, RequestChooser, ingest, queries};
use super::args::{self, Profile, WorkloadConfig};
use super::cache::{self, Cache};
use super::scheduler::{Gate, Plan, drive, expected_ops};
use super::setup::Sizes;
use super::stats::Recorder;
use super::summary::{NetworkBaseline, RunFacts};
use super::{WorkloadError, orders};

/// What every profile's traffic is driven with.
pub(super) struct Traffic<'a> {
    pub cfg: &'a WorkloadConfig,
    pub plan: &'a Plan,
    pub gate: &'a Gate,
    pub rec: &'a Arc<Recorder>,
    pub stop: watch::Receiver<bool>,
}

impl Traffic<'_> {
    /// The analytics app until its end (`false`) or `shutdown` (`true`),
    /// ingesting through `stream_con` when given (`--ingest stream`).
    /// Stream ingestion's drain workers and the refresh loop are pushed to
    /// `background`, to be waited for after the stop.
    pub async fn analytics(
        &self,
        pool: sqlx::PgPool,
        cache: Cache,
        stream_con: Option<ConnectionManager>,
        sizes: Sizes,
        background: &mut Vec<JoinHandle<()>>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<bool, WorkloadError> {
        let cfg = self.cfg;
        let ctx = Arc::new(Ctx::new(pool, cache, self.rec.clone(), sizes, cfg.copy));
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
                    self.stop.clone(),
                )));
            }
        }
        background.push(tokio::spawn(queries::refresh_loop(
            ctx.clone(),
            cfg.refresh_interval,
            self.plan.end,
            self.stop.clone(),
        )));
        let mut events = EventChooser::new(cfg.seed, sizes);
        let mut requests = RequestChooser::new(
            cfg.seed,
            sizes,
            cfg.read_write_ratio,
            cfg.cache_hit_target,
            self.rec.clone(),
        );
        let ingest_rate = cfg.events_per_second / analytics::mean_events_per_request();
        let ingest = drive(
            ingest_rate,
            || events.next_request(),
            |batch, due| {
                if let Some(first) = batch.first() {
                    super::metrics::ingested(first.org, batch.iter().map(|e| e.event_type));
                }
                let (ctx, con) = (ctx.clone(), stream_con.clone());
                async move {
                    match con {
                        Some(con) => ingest::publish(&ctx, con, batch, due).await,
                        None => ingest::direct(&ctx, batch, due).await,
                    }
                }
            },
            self.plan,
            self.gate,
            self.rec,
        );
        let app = drive(
            cfg.queries_per_second,
            || requests.next_request(),
            |req, due| {
                let ctx = ctx.clone();
                async move { queries::execute(&ctx, req, due).await }
            },
            self.plan,
            self.gate,
            self.rec,
        );
        Ok(tokio::select! {
            _ = async { tokio::join!(ingest, app) } => false,
            _ = shutdown => true,
        })
    }

    /// Seed 001's order workflow until its end (`false`) or `shutdown` (`true`).
    pub async fn orders(
        &self,
        pool: &sqlx::PgPool,
        shutdown: impl Future<Output = ()>,
    ) -> Result<bool, WorkloadError> {
        let shape = orders::shape(pool).await?;
        let mut chooser = orders::OrderChooser::new(self.cfg.seed, self.cfg.query_type, shape);
        let ops = drive(
            self.cfg.queries_per_second,
            || chooser.next_op(),
            |op, due| {
                let (pool, rec) = (pool.clone(), self.rec.clone());
                async move { orders::execute(&pool, &rec, op, due).await }
            },
            self.plan,
            self.gate,
            self.rec,
        );
        Ok(tokio::select! {
            _ = ops => false,
            _ = shutdown => true,
        })
    }
}

/// After the stop: operations in flight, background workers and the
/// progress line get 30 s each to finish; the summary does not wait longer.
pub(super) async fn wind_down(
    gate: &Gate,
    background: Vec<JoinHandle<()>>,
    progress: Option<JoinHandle<()>>,
) {
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
}

/// What the summary says about the run itself: its measured length (from
/// the end of warm-up to the last dispatch) and the rates the plan aimed at
/// over it.
pub(super) fn run_facts(
    cfg: &WorkloadConfig,
    plan: &Plan,
    dispatch_end: Instant,
    cache_backend: &'static str,
    network: Option<NetworkBaseline>,
) -> RunFacts {
    let measured = dispatch_end.saturating_duration_since(plan.measure_from);
    let target = |rate: f64| {
        if measured.is_zero() {
            0.0
        } else {
            expected_ops(rate, plan, measured) / measured.as_secs_f64()
        }
    };
    let (target_events, target_queries) = match cfg.profile {
        Profile::Analytics => (
            target(cfg.events_per_second),
            target(cfg.queries_per_second),
        ),
        Profile::Orders => (0.0, target(cfg.queries_per_second)),
    };
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
    }
}
