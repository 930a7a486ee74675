//! What the run measured: per operation kind, latency from the *scheduled*
//! start (HdrHistogram, µs), pool acquisition and execution time, successes
//! and failures; plus live counters that the progress line and a metrics
//! exporter read while the run goes on ([`Recorder::live`]).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Every operation the workload issues. The analytics query mix is
/// dashboard 70 % / filtered + event list 20 % / real-time 10 %.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    IngestSingle,
    IngestBatch,
    StreamPublish,
    StreamDrain,
    Dashboard,
    Filtered,
    EventList,
    Realtime,
    SessionWrite,
    RefreshViews,
    OrderSelect,
    OrderInsert,
    OrderUpdate,
}

impl OpKind {
    pub const ALL: [OpKind; 13] = [
        OpKind::IngestSingle,
        OpKind::IngestBatch,
        OpKind::StreamPublish,
        OpKind::StreamDrain,
        OpKind::Dashboard,
        OpKind::Filtered,
        OpKind::EventList,
        OpKind::Realtime,
        OpKind::SessionWrite,
        OpKind::RefreshViews,
        OpKind::OrderSelect,
        OpKind::OrderInsert,
        OpKind::OrderUpdate,
    ];

    pub fn name(self) -> &'static str {
        match self {
            OpKind::IngestSingle => "ingest_single",
            OpKind::IngestBatch => "ingest_batch",
            OpKind::StreamPublish => "stream_publish",
            OpKind::StreamDrain => "stream_drain",
            OpKind::Dashboard => "dashboard",
            OpKind::Filtered => "filtered",
            OpKind::EventList => "event_list",
            OpKind::Realtime => "realtime",
            OpKind::SessionWrite => "session_write",
            OpKind::RefreshViews => "refresh_views",
            OpKind::OrderSelect => "order_select",
            OpKind::OrderInsert => "order_insert",
            OpKind::OrderUpdate => "order_update",
        }
    }

    /// Operations that the open-loop scheduler issues (the rest run on their
    /// own clocks: stream workers, view refresh).
    pub fn is_scheduled(self) -> bool {
        !matches!(self, OpKind::StreamDrain | OpKind::RefreshViews)
    }
}

/// The result of one operation.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    pub kind: OpKind,
    /// When the operation was due (open loop): latency counts from here.
    pub scheduled: Instant,
    pub acquire: Duration,
    pub exec: Duration,
    pub ok: bool,
    /// Events this operation wrote (ingestion) — for the achieved event rate.
    pub events: u64,
}

#[derive(Debug)]
pub struct KindStats {
    pub latency_us: Histogram<u64>,
    pub ok: u64,
    pub failed: u64,
    pub acquire_us: u64,
    pub exec_us: u64,
    pub events: u64,
}

impl KindStats {
    fn new() -> Self {
        KindStats {
            latency_us: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"),
            ok: 0,
            failed: 0,
            acquire_us: 0,
            exec_us: 0,
            events: 0,
        }
    }
}

/// Counters readable at any time without locks.
#[derive(Debug, Default)]
pub struct Live {
    pub ops_ok: AtomicU64,
    pub ops_failed: AtomicU64,
    pub events: AtomicU64,
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    /// Operations waiting for a free slot because too many were in flight:
    /// the generator or the database cannot keep up.
    pub backlogged: AtomicU64,
    /// Operations that panicked (a bug in pgtape): counted as failures.
    pub panicked: AtomicU64,
}

pub struct Recorder {
    measure_from: Instant,
    kinds: Vec<Mutex<KindStats>>,
    errors: Mutex<Vec<(String, u64)>>,
    pub live: Live,
    /// Cache lookups after warmup, for the summary (live has them all).
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
}

/// Distinct error messages kept for the summary.
const MAX_ERROR_KINDS: usize = 8;

impl Recorder {
    /// Operations scheduled before `measure_from` (the warmup) only count in
    /// the live counters.
    pub fn new(measure_from: Instant) -> Self {
        Recorder {
            measure_from,
            kinds: OpKind::ALL
                .iter()
                .map(|_| Mutex::new(KindStats::new()))
                .collect(),
            errors: Mutex::new(Vec::new()),
            live: Live::default(),
            cache_hits: AtomicU64::new(0),
            cache_misses: AtomicU64::new(0),
        }
    }

    pub fn measure_from(&self) -> Instant {
        self.measure_from
    }

    pub fn measuring(&self, at: Instant) -> bool {
        at >= self.measure_from
    }

    pub fn record(&self, o: Outcome) {
        let live = if o.ok {
            &self.live.ops_ok
        } else {
            &self.live.ops_failed
        };
        live.fetch_add(1, Ordering::Relaxed);
        self.live.events.fetch_add(o.events, Ordering::Relaxed);
        let elapsed = o.scheduled.elapsed();
        super::metrics::outcome(&o, elapsed);
        if !self.measuring(o.scheduled) {
            return;
        }
        let latency = elapsed.as_micros() as u64;
        let mut k = self.kinds[o.kind as usize]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        k.latency_us.saturating_record(latency.max(1));
        if o.ok {
            k.ok += 1;
        } else {
            k.failed += 1;
        }
        k.acquire_us += o.acquire.as_micros() as u64;
        k.exec_us += o.exec.as_micros() as u64;
        k.events += o.events;
    }

    pub fn cache_lookup(&self, hit: bool, at: Instant) {
        let (live, measured) = if hit {
            (&self.live.cache_hits, &self.cache_hits)
        } else {
            (&self.live.cache_misses, &self.cache_misses)
        };
        live.fetch_add(1, Ordering::Relaxed);
        if self.measuring(at) {
            measured.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Keeps the first few distinct messages with their counts; the first
    /// occurrence of each is logged.
    pub fn error(&self, kind: OpKind, message: String) {
        let mut errs = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        let msg = format!("{}: {message}", kind.name());
        if let Some(e) = errs.iter_mut().find(|(m, _)| *m == msg) {
            e.1 += 1;
        } else if errs.len() < MAX_ERROR_KINDS {
            tracing::warn!(op = kind.name(), error = %message, "operation failed");
            errs.push((msg, 1));
        }
    }

    pub fn panicked(&self, message: String) {
        self.live.panicked.fetch_add(1, Ordering::Relaxed);
        self.live.ops_failed.fetch_add(1, Ordering::Relaxed);
        let mut errs = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        let msg = format!("panic: {message}");
        match errs.iter_mut().find(|(m, _)| *m == msg) {
            Some(e) => e.1 += 1,
            None => {
                tracing::error!(error = %message, "a workload operation panicked");
                errs.push((msg, 1));
            }
        }
    }

    pub fn errors(&self) -> Vec<(String, u64)> {
        self.errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Runs `f` on each kind's measured stats.
    pub fn for_each(&self, mut f: impl FnMut(OpKind, &KindStats)) {
        for (kind, m) in OpKind::ALL.iter().zip(&self.kinds) {
            f(*kind, &m.lock().unwrap_or_else(|e| e.into_inner()));
        }
    }
}

/// A failed operation's message (any error converts into it).
#[derive(Debug)]
pub struct OpError(pub String);

impl<E: std::error::Error> From<E> for OpError {
    fn from(e: E) -> Self {
        OpError(e.to_string())
    }
}

/// Times one operation: pool acquisition apart from the rest.
pub struct Timing {
    pub due: Instant,
    started: Instant,
    acquire: Duration,
}

impl Timing {
    pub fn start(due: Instant) -> Self {
        Timing {
            due,
            started: Instant::now(),
            acquire: Duration::ZERO,
        }
    }

    /// A pooled connection; the wait counts as acquisition time.
    pub async fn conn(
        &mut self,
        pool: &sqlx::PgPool,
    ) -> Result<sqlx::pool::PoolConnection<sqlx::Postgres>, sqlx::Error> {
        let t = Instant::now();
        let c = pool.acquire().await;
        self.acquire += t.elapsed();
        c
    }

    /// Records the outcome; `Ok(n)` carries the events written.
    pub fn finish(self, rec: &Recorder, kind: OpKind, result: Result<u64, OpError>) {
        let exec = self.started.elapsed().saturating_sub(self.acquire);
        let (ok, events) = match result {
            Ok(n) => (true, n),
            Err(OpError(msg)) => {
                rec.error(kind, msg);
                (false, 0)
            }
        };
        rec.record(Outcome {
            kind,
            scheduled: self.due,
            acquire: self.acquire,
            exec,
            ok,
            events,
        });
    }
}
