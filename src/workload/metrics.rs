//! The workload's metrics, seed 000's set: operations and events per second
//! by kind, latency from the scheduled start, pool utilisation, cache hits
//! and misses, Redis latency, and the business figures (active
//! organisations, conversion rate). `pgtape workload --metrics ADDR`
//! installs its exporter as the global recorder, so the workload's code
//! records with the facade's macros (no-ops without `--metrics`).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use metrics::{counter, gauge, histogram};

use super::stats::{Outcome, Recorder};
use crate::metrics::{Exporter, names};

/// Organisations count as active for this long after their last event.
const ACTIVE_WINDOW: Duration = Duration::from_secs(60);

/// One finished operation (called by the workload's recorder).
pub fn outcome(o: &Outcome, latency: Duration) {
    let kind = o.kind.name();
    let outcome = if o.ok { "ok" } else { "error" };
    counter!(names::WORKLOAD_OPERATIONS_TOTAL, "kind" => kind, "outcome" => outcome).increment(1);
    histogram!(names::WORKLOAD_OPERATION_DURATION_SECONDS, "kind" => kind)
        .record(latency.as_secs_f64());
    histogram!(names::WORKLOAD_POOL_ACQUIRE_SECONDS, "kind" => kind)
        .record(o.acquire.as_secs_f64());
}

/// One Redis command (or pipeline) and how long it took.
pub fn redis(op: &'static str, took: Duration) {
    histogram!(names::WORKLOAD_REDIS_DURATION_SECONDS, "op" => op).record(took.as_secs_f64());
}

#[derive(Default)]
struct Business {
    last_seen: HashMap<i32, Instant>,
    /// (when, page views, conversions) per ingest request in the window.
    recent: VecDeque<(Instant, u32, u32)>,
}

fn business() -> &'static Mutex<Business> {
    static B: OnceLock<Mutex<Business>> = OnceLock::new();
    B.get_or_init(Mutex::default)
}

/// One ingest request for `org` with these event types (called once per
/// request, not per event).
pub fn ingested<'a>(org: i32, types: impl Iterator<Item = &'a str>) {
    let (mut views, mut conversions) = (0, 0);
    let mut counts: Vec<(&'a str, u64)> = Vec::new();
    for t in types {
        match t {
            "page_view" => views += 1,
            "conversion" => conversions += 1,
            _ => {}
        }
        match counts.iter_mut().find(|(k, _)| *k == t) {
            Some((_, n)) => *n += 1,
            None => counts.push((t, 1)),
        }
    }
    for (t, n) in counts {
        counter!(names::WORKLOAD_EVENTS_TOTAL, "event_type" => t.to_string()).increment(n);
    }
    let now = Instant::now();
    let mut b = business().lock().unwrap_or_else(|e| e.into_inner());
    b.last_seen.insert(org, now);
    b.recent.push_back((now, views, conversions));
}

fn publish_business() {
    let now = Instant::now();
    let mut b = business().lock().unwrap_or_else(|e| e.into_inner());
    b.last_seen
        .retain(|_, t| now.duration_since(*t) < ACTIVE_WINDOW);
    while b
        .recent
        .front()
        .is_some_and(|(t, ..)| now.duration_since(*t) >= ACTIVE_WINDOW)
    {
        b.recent.pop_front();
    }
    let (views, conversions) = b.recent.iter().fold((0u64, 0u64), |(v, c), (_, dv, dc)| {
        (v + *dv as u64, c + *dc as u64)
    });
    gauge!(names::WORKLOAD_ACTIVE_ORGANIZATIONS).set(b.last_seen.len() as f64);
    let ratio = if views == 0 {
        0.0
    } else {
        conversions as f64 / views as f64
    };
    gauge!(names::WORKLOAD_CONVERSION_RATIO).set(ratio);
}

static POOL: Mutex<Option<(sqlx::PgPool, u32)>> = Mutex::new(None);

/// The pool whose utilisation `/metrics` reports.
pub fn track_pool(pool: &sqlx::PgPool, max: u32) {
    *POOL.lock().unwrap_or_else(|e| e.into_inner()) = Some((pool.clone(), max));
}

/// Wires `exporter` to a run: call from `run_observed`'s hook with the live
/// recorder. Counters kept by the recorder are copied at each scrape.
pub fn observe(exporter: &Exporter, rec: Arc<Recorder>) {
    exporter.before_render(move || {
        let l = &rec.live;
        counter!(names::WORKLOAD_CACHE_LOOKUPS_TOTAL, "result" => "hit")
            .absolute(l.cache_hits.load(Ordering::Relaxed));
        counter!(names::WORKLOAD_CACHE_LOOKUPS_TOTAL, "result" => "miss")
            .absolute(l.cache_misses.load(Ordering::Relaxed));
        counter!(names::WORKLOAD_BACKLOGGED_TOTAL).absolute(l.backlogged.load(Ordering::Relaxed));
        if let Some((pool, max)) = &*POOL.lock().unwrap_or_else(|e| e.into_inner()) {
            let (size, idle) = (pool.size() as f64, pool.num_idle() as f64);
            gauge!(names::WORKLOAD_POOL_CONNECTIONS, "state" => "busy").set((size - idle).max(0.0));
            gauge!(names::WORKLOAD_POOL_CONNECTIONS, "state" => "idle").set(idle);
            gauge!(names::WORKLOAD_POOL_MAX_CONNECTIONS).set(*max as f64);
        }
        publish_business();
    });
}
