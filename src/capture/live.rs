//! What the recorder is doing right now, shared with the admin console and
//! the metrics exporter: atomics for the counts, and small locks that only
//! the recorder thread (writer) and an admin command or a scrape (readers)
//! ever take — never a proxy session.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64};

use crate::capture::event::StatementEvent;
use crate::sql::Shape;

/// Fingerprints remembered for `SHOW STATS`; past
/// this the table starts afresh rather than grow without bound.
const MAX_ENTRIES: usize = 10_000;

#[derive(Debug, Default)]
pub struct RecorderLive {
    /// Events received from the tap channel.
    pub events: AtomicU64,
    /// Rows written to segments.
    pub rows: AtomicU64,
    /// Rows lost to write errors (the tap's own drops are in `TapCounters`).
    pub write_dropped: AtomicU64,
    pub segments: AtomicU64,
    /// Parquet files produced (leftovers converted at start included).
    pub files: AtomicU64,
    /// False once the recorder thread has ended.
    pub alive: AtomicBool,
    pub open_segment: Mutex<Option<PathBuf>>,
    pub last_file: Mutex<Option<PathBuf>>,
    pub top: Mutex<TopStats>,
}

impl RecorderLive {
    pub fn new() -> Arc<Self> {
        Arc::new(RecorderLive {
            alive: AtomicBool::new(true),
            ..Default::default()
        })
    }
}

/// Totals of one query fingerprint.
#[derive(Debug, Clone)]
pub struct FingerprintStat {
    pub fingerprint: u64,
    pub normalized: Arc<str>,
    pub calls: u64,
    pub total_us: u64,
    pub max_us: u64,
    pub errors: u64,
    pub rows: u64,
}

/// Per-fingerprint totals of the statements recorded since start.
#[derive(Debug, Default)]
pub struct TopStats {
    by_fingerprint: HashMap<u64, FingerprintStat>,
}

impl TopStats {
    /// Counts `st`, whose shape the recorder already worked out.
    pub fn observe(&mut self, st: &StatementEvent, shape: &Shape) {
        let fingerprint = shape.fingerprint;
        if self.by_fingerprint.len() >= MAX_ENTRIES
            && !self.by_fingerprint.contains_key(&fingerprint)
        {
            self.by_fingerprint.clear();
        }
        let e = self
            .by_fingerprint
            .entry(fingerprint)
            .or_insert_with(|| FingerprintStat {
                fingerprint,
                normalized: shape.normalized.as_str().into(),
                calls: 0,
                total_us: 0,
                max_us: 0,
                errors: 0,
                rows: 0,
            });
        let d = st.duration_us.max(0) as u64;
        e.calls += 1;
        e.total_us += d;
        e.max_us = e.max_us.max(d);
        e.rows += st.rows;
        e.errors += st.error.is_some() as u64;
    }

    /// The `n` fingerprints with the largest total time.
    pub fn top(&self, n: usize) -> Vec<FingerprintStat> {
        let mut v: Vec<_> = self.by_fingerprint.values().cloned().collect();
        v.sort_by(|a, b| b.total_us.cmp(&a.total_us).then(b.calls.cmp(&a.calls)));
        v.truncate(n);
        v
    }
}
