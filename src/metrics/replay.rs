//! What the replayer records. `pgtape replay --metrics ADDR` calls
//! [`install`] once, then these helpers from its workers; each is a handful
//! of atomic operations through the global `metrics` facade.
//!
//! `side` is `"source"` or `"target"`. What is known live is charted live:
//! a result that differs from the captured one is counted as it is written;
//! divergences of target against source are known only after the diff and
//! are the verdict's, not a metric's.

use std::net::SocketAddr;
use std::time::Duration;

use metrics::{counter, gauge, histogram};

use super::{Exporter, MetricsError, names};

/// Creates the exporter, makes it the global recorder and serves it on
/// `addr` (on the current tokio runtime). Add readiness checks with
/// `exporter.health.check(..)` or `exporter.health.probe_postgres(..)`.
pub async fn install(addr: SocketAddr) -> Result<(Exporter, SocketAddr), MetricsError> {
    let exporter = Exporter::new("replay");
    exporter.install_global();
    let (local, _task) = exporter.serve(addr).await?;
    Ok((exporter, local))
}

/// The number of statements the replay will issue per side (once, at start).
pub fn planned(statements: u64) {
    gauge!(names::REPLAY_STATEMENTS_PLANNED).set(statements as f64);
}

/// Share of the capture replayed so far, 0..=1.
pub fn progress(done: u64, planned: u64) {
    let ratio = if planned == 0 {
        1.0
    } else {
        done as f64 / planned as f64
    };
    gauge!(names::REPLAY_PROGRESS_RATIO).set(ratio.min(1.0));
}

/// One side's per-statement metrics, registered once (after [`install`])
/// so a statement costs a few atomic operations and no key lookups.
pub struct SideMetrics {
    side: &'static str,
    ok: metrics::Counter,
    failed: metrics::Counter,
    duration: metrics::Histogram,
    lag: metrics::Histogram,
    delay: metrics::Histogram,
    order_wait: metrics::Histogram,
    order_released: metrics::Counter,
}

impl SideMetrics {
    pub fn new(side: &'static str) -> Self {
        SideMetrics {
            side,
            ok: counter!(names::REPLAY_STATEMENTS_TOTAL, "side" => side, "outcome" => "ok"),
            failed: counter!(names::REPLAY_STATEMENTS_TOTAL, "side" => side, "outcome" => "error"),
            duration: histogram!(names::REPLAY_STATEMENT_DURATION_SECONDS, "side" => side),
            lag: histogram!(names::REPLAY_LAG_SECONDS, "side" => side),
            delay: histogram!(names::REPLAY_DELAY_SECONDS, "side" => side),
            order_wait: histogram!(names::REPLAY_ORDER_WAIT_SECONDS, "side" => side),
            order_released: counter!(names::REPLAY_ORDER_RELEASED_TOTAL, "side" => side),
        }
    }

    /// One statement replayed: its latency, how late it started against its
    /// schedule, the replayer's part of that, and its SQLSTATE if it failed.
    pub fn statement(
        &self,
        duration: Duration,
        (lag, delay): (Duration, Duration),
        sqlstate: Option<&[u8]>,
    ) {
        self.duration.record(duration.as_secs_f64());
        self.lag.record(lag.as_secs_f64());
        self.delay.record(delay.as_secs_f64());
        match sqlstate {
            None => self.ok.increment(1),
            Some(code) => {
                self.failed.increment(1);
                let class = super::sqlstate_class(code).to_string();
                counter!(names::REPLAY_ERRORS_TOTAL, "side" => self.side, "class" => class)
                    .increment(1);
            }
        }
    }
}

impl SideMetrics {
    /// A statement waited for order this long; `released` if a release ended it.
    pub fn order_wait(&self, waited: Duration, released: bool) {
        self.order_wait.record(waited.as_secs_f64());
        if released {
            self.order_released.increment(1);
        }
    }
}

/// The counter of `side`'s results that differ from the captured ones,
/// registered once by the side's results writer.
pub fn differing(side: &'static str) -> metrics::Counter {
    counter!(names::REPLAY_DIFFERING_TOTAL, "side" => side)
}

/// A replay session opened (`+1`) or closed (`-1`) on `side`.
pub fn session(side: &'static str, delta: f64) {
    gauge!(names::REPLAY_SESSIONS_ACTIVE, "side" => side).increment(delta);
}
