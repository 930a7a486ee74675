//! The end-of-run summary of seed 001's simulator — counts, success rate,
//! achieved vs target rates, connection acquisition vs execution time,
//! latency per operation kind, cache hit ratio, network baseline — as text
//! for people or JSON (`--format json`) for scripts. Built from the
//! [`Recorder`]; rendering never touches the run.

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::args::{OutputFormat, Profile};
use super::pattern::Pattern;
use super::stats::{OpKind, Recorder};

#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    pub min_ms: f64,
    pub avg_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    pub fn from_hist(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Latency::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            min_ms: ms(h.min()),
            avg_ms: h.mean() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p95_ms: ms(h.value_at_quantile(0.95)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct OpSummary {
    pub kind: OpKind,
    pub total: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// From the scheduled start (open loop).
    pub latency: Latency,
}

/// Achieved and target rate of one stream, per second.
#[derive(Debug, Clone, Serialize)]
pub struct Rate {
    pub achieved: f64,
    pub target: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Rates {
    pub operations: f64,
    /// Events stored (analytics).
    pub events: Rate,
    /// App requests (analytics) or order operations.
    pub queries: Rate,
}

#[derive(Debug, Clone, Serialize)]
pub struct Connections {
    /// Pool size: concurrent database sessions.
    pub concurrent_sessions: u32,
    pub acquire_avg_ms: f64,
    pub exec_avg_ms: f64,
    /// Execution share of acquisition + execution, percent.
    pub efficiency_pct: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CacheSummary {
    pub backend: &'static str,
    pub hits: u64,
    pub misses: u64,
    /// Percent of cacheable lookups that hit (0 when there were none).
    pub hit_ratio_pct: f64,
    pub target_pct: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct NetworkBaseline {
    pub samples: u64,
    pub round_trip: Latency,
}

#[derive(Debug, Clone, Serialize)]
pub struct ErrorCount {
    pub message: String,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub profile: Profile,
    pub pattern: Pattern,
    pub seed: u64,
    pub total: u64,
    pub succeeded: u64,
    pub failed: u64,
    pub success_rate_pct: f64,
    pub duration_s: f64,
    pub rates: Rates,
    pub connections: Connections,
    pub latency: Latency,
    pub operations: Vec<OpSummary>,
    pub events_written: u64,
    pub cache: CacheSummary,
    pub network: Option<NetworkBaseline>,
    pub errors: Vec<ErrorCount>,
    /// Targets not reached and similar: the run says so instead of
    /// silently under-delivering.
    pub warnings: Vec<String>,
}

/// What the summary needs besides the recorder.
pub struct RunFacts {
    pub profile: Profile,
    pub pattern: Pattern,
    pub seed: u64,
    pub duration_s: f64,
    pub connections: u32,
    pub target_events: f64,
    pub target_queries: f64,
    /// Ingest requests per second the target events/s mean.
    pub target_ingest_requests: f64,
    pub cache_backend: &'static str,
    pub cache_target_pct: f64,
    pub network: Option<NetworkBaseline>,
}

/// Rates below this share of their target get a warning.
const REACHED: f64 = 0.9;

pub fn build(rec: &Recorder, f: RunFacts) -> Summary {
    let mut all = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds");
    let (mut ok, mut failed, mut acq, mut exec, mut events, mut queries) = (0, 0, 0, 0, 0, 0);
    let mut ingest_requests = 0;
    let mut operations = Vec::new();
    rec.for_each(|kind, k| {
        let n = k.ok + k.failed;
        if n == 0 {
            return;
        }
        ok += k.ok;
        failed += k.failed;
        acq += k.acquire_us;
        exec += k.exec_us;
        events += k.events;
        if matches!(
            kind,
            OpKind::IngestSingle | OpKind::IngestBatch | OpKind::StreamPublish
        ) {
            ingest_requests += n;
        } else if kind.is_scheduled() {
            queries += n;
        }
        all.add(&k.latency_us).expect("same bounds");
        operations.push(OpSummary {
            kind,
            total: n,
            succeeded: k.ok,
            failed: k.failed,
            latency: Latency::from_hist(&k.latency_us),
        });
    });
    // Panics are bugs; they count as failures of no particular kind.
    failed += rec.live.panicked.load(std::sync::atomic::Ordering::Relaxed);
    let total = ok + failed;
    let secs = f.duration_s.max(1e-9);
    let per = |x: u64| x as f64 / secs;
    let hits = rec.cache_hits.load(std::sync::atomic::Ordering::Relaxed);
    let misses = rec.cache_misses.load(std::sync::atomic::Ordering::Relaxed);
    let rates = Rates {
        operations: per(total),
        events: Rate {
            achieved: per(events),
            target: f.target_events,
        },
        queries: Rate {
            achieved: per(queries),
            target: f.target_queries,
        },
    };
    let mut warnings = Vec::new();
    // Judged on requests: events come in batches of 1-100, so their count
    // alone is too noisy over a short run to call a shortfall.
    let request_share = [
        (ingest_requests as f64 / secs) / f.target_ingest_requests.max(1e-9),
        rates.queries.achieved / rates.queries.target.max(1e-9),
    ];
    for ((name, r), share) in [("events", &rates.events), ("queries", &rates.queries)]
        .into_iter()
        .zip(request_share)
    {
        if r.target > 0.0 && share < REACHED {
            warnings.push(format!(
                "target not reached: {name} {:.1}/s achieved of {:.1}/s targeted ({:.0} %); \
                 the generator or the database cannot keep up at this rate (see the latency percentiles)",
                r.achieved,
                r.target,
                100.0 * r.achieved / r.target
            ));
        }
    }
    let backlogged = rec
        .live
        .backlogged
        .load(std::sync::atomic::Ordering::Relaxed);
    if backlogged > 0 {
        warnings.push(format!(
            "{backlogged} operations waited for an in-flight slot: the database answered slower than the offered load"
        ));
    }
    Summary {
        profile: f.profile,
        pattern: f.pattern,
        seed: f.seed,
        total,
        succeeded: ok,
        failed,
        success_rate_pct: if total == 0 {
            0.0
        } else {
            100.0 * ok as f64 / total as f64
        },
        duration_s: f.duration_s,
        rates,
        connections: Connections {
            concurrent_sessions: f.connections,
            acquire_avg_ms: if total == 0 {
                0.0
            } else {
                acq as f64 / total as f64 / 1000.0
            },
            exec_avg_ms: if total == 0 {
                0.0
            } else {
                exec as f64 / total as f64 / 1000.0
            },
            efficiency_pct: if acq + exec == 0 {
                0.0
            } else {
                100.0 * exec as f64 / (acq + exec) as f64
            },
        },
        latency: Latency::from_hist(&all),
        operations,
        events_written: events,
        cache: CacheSummary {
            backend: f.cache_backend,
            hits,
            misses,
            hit_ratio_pct: if hits + misses == 0 {
                0.0
            } else {
                100.0 * hits as f64 / (hits + misses) as f64
            },
            target_pct: f.cache_target_pct,
        },
        network: f.network,
        errors: rec
            .errors()
            .into_iter()
            .map(|(message, count)| ErrorCount { message, count })
            .collect(),
        warnings,
    }
}

impl Summary {
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let line = "=".repeat(64);
        let _ = writeln!(s, "{line}");
        let _ = writeln!(
            s,
            "pgtape workload: {:?} profile, {:?} pattern, seed {}",
            self.profile, self.pattern, self.seed
        );
        let _ = writeln!(s, "Operations");
        let _ = writeln!(s, "  total                {:>12}", self.total);
        let _ = writeln!(s, "  succeeded            {:>12}", self.succeeded);
        let _ = writeln!(s, "  failed               {:>12}", self.failed);
        let _ = writeln!(
            s,
            "  success rate         {:>11.2} %",
            self.success_rate_pct
        );
        let _ = writeln!(s, "Throughput");
        let _ = writeln!(s, "  duration             {:>11.2} s", self.duration_s);
        let _ = writeln!(s, "  operations/s         {:>12.1}", self.rates.operations);
        for (name, r) in [
            ("events/s", &self.rates.events),
            ("queries/s", &self.rates.queries),
        ] {
            if r.target > 0.0 {
                let _ = writeln!(
                    s,
                    "  {name:<20} {:>12.1}  (target {:.1})",
                    r.achieved, r.target
                );
            }
        }
        let c = &self.connections;
        let _ = writeln!(s, "  concurrent sessions  {:>12}", c.concurrent_sessions);
        let _ = writeln!(s, "  pool acquire avg     {:>11.3} ms", c.acquire_avg_ms);
        let _ = writeln!(s, "  execution avg        {:>11.3} ms", c.exec_avg_ms);
        let _ = writeln!(s, "  connection efficiency{:>11.1} %", c.efficiency_pct);
        let _ = writeln!(s, "Latency from scheduled start (ms)");
        let _ = writeln!(
            s,
            "  {:<16} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9}",
            "operation", "count", "min", "avg", "p50", "p95", "p99", "max"
        );
        let rows = self
            .operations
            .iter()
            .map(|o| (o.kind.name(), o.total, &o.latency));
        for (name, n, l) in rows.chain(std::iter::once(("all", self.total, &self.latency))) {
            let _ = writeln!(
                s,
                "  {name:<16} {n:>9} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>9.2}",
                l.min_ms, l.avg_ms, l.p50_ms, l.p95_ms, l.p99_ms, l.max_ms
            );
        }
        let k = &self.cache;
        if k.hits + k.misses > 0 {
            let _ = writeln!(
                s,
                "Cache ({}): {:.1} % hit ({} hits, {} misses), target {:.0} %",
                k.backend, k.hit_ratio_pct, k.hits, k.misses, k.target_pct
            );
        }
        if let Some(n) = &self.network {
            let r = &n.round_trip;
            let _ = writeln!(
                s,
                "Network baseline (SELECT 1, {} samples): min {:.3} avg {:.3} p50 {:.3} p99 {:.3} ms",
                n.samples, r.min_ms, r.avg_ms, r.p50_ms, r.p99_ms
            );
            let db = (self.latency.p50_ms - r.p50_ms).max(0.0);
            let _ = writeln!(s, "  database time beyond the round trip, p50: {db:.3} ms");
        }
        for e in &self.errors {
            let _ = writeln!(s, "error ×{}: {}", e.count, e.message);
        }
        for w in &self.warnings {
            let _ = writeln!(s, "warning: {w}");
        }
        let _ = writeln!(s, "{line}");
        s
    }
}

/// The summary as `--format` asks (what `pgtape workload` prints on stdout).
pub fn render(summary: &Summary, format: OutputFormat) -> String {
    match format {
        OutputFormat::Text => summary.to_text(),
        OutputFormat::Json => {
            let mut s = serde_json::to_string_pretty(summary).expect("the summary serializes");
            s.push('\n');
            s
        }
    }
}
