//! The summary of a capture, computed in two streaming passes over its
//! files: one over the few columns every statement needs (time, duration,
//! fingerprint, rows, SQLSTATE, session) into an accumulator
//! (`summary/acc.rs`), one with a row filter for the slow statements and their
//! parameters. Memory grows with the number of distinct
//! fingerprints, sessions and seconds, never with the number of rows.
//!
//! The summary is plain data (serde): every exporter renders the same one,
//! and the JSON form is documented in the README.

use hdrhistogram::Histogram;

mod acc;
mod rollup;

pub use super::model::*;
use crate::capture::{Capture, CaptureError, col};
use acc::SummaryAcc;

/// What to summarise and how much of it to show.
#[derive(Debug, Clone)]
pub struct SummaryOptions {
    pub top: usize,
    pub slow_ms: f64,
    pub slow_limit: usize,
    /// At most this many points in the throughput series.
    pub max_points: usize,
}

impl Default for SummaryOptions {
    fn default() -> Self {
        SummaryOptions {
            top: 20,
            slow_ms: 1000.0,
            slow_limit: 50,
            max_points: 120,
        }
    }
}

pub(super) fn latency(h: &Histogram<u64>) -> Latency {
    if h.is_empty() {
        return Latency::default();
    }
    Latency {
        mean_us: (h.mean() * 10.0).round() / 10.0,
        p50_us: h.value_at_quantile(0.50),
        p95_us: h.value_at_quantile(0.95),
        p99_us: h.value_at_quantile(0.99),
        max_us: h.max(),
    }
}

pub(super) fn ms(us: u64) -> f64 {
    (us as f64 / 10.0).round() / 100.0
}

/// The columns the first pass reads, and those of them stored as dictionaries.
const COLUMNS: [&str; 9] = [
    col::KIND,
    col::SESSION_ID,
    col::TS,
    col::DURATION_US,
    col::FINGERPRINT,
    col::NORMALIZED_SQL,
    col::ROWS,
    col::SQLSTATE,
    col::APPLICATION_NAME,
];
const DICTIONARY_COLUMNS: [&str; 4] = [
    col::KIND,
    col::NORMALIZED_SQL,
    col::SQLSTATE,
    col::APPLICATION_NAME,
];

/// Summarises `cap` (its readable files; its bad ones are listed).
pub fn summarize(cap: &Capture, opts: &SummaryOptions) -> Result<Summary, CaptureError> {
    let mut acc = SummaryAcc::default();
    for batch in cap.scan(&COLUMNS).dictionary(&DICTIONARY_COLUMNS) {
        acc.add_batch(&batch?)?;
    }
    acc.finish(cap, opts)
}

pub(super) fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::hist;

    // Regression: per-fingerprint percentiles were clamped to 2 ms.
    #[test]
    fn histograms_keep_durations_above_two_milliseconds() {
        for sigfig in [2, 3] {
            let mut h = hist(sigfig);
            for v in [100u64, 500, 1000, 1_600_000] {
                h.saturating_record(v);
            }
            let l = latency(&h);
            assert!(l.max_us >= 1_590_000, "sigfig {sigfig}: {l:?}");
            assert!(l.p50_us >= 495, "sigfig {sigfig}: {l:?}");
        }
    }
}
