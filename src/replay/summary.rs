//! Per-side accounting while results are written: counts by status, lag and
//! latency histograms (HdrHistogram), the achieved rate; rendered at the end
//! as a table or JSON (fields documented in the README).

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::results::{ResultRow, Status};

pub struct SideStats {
    pub side: &'static str,
    pub url: String,
    ok: u64,
    errors: u64,
    not_replayed: u64,
    remapped: u64,
    reasons: BTreeMap<String, u64>,
    lag: Histogram<u64>,
    delay: Histogram<u64>,
    latency: Histogram<u64>,
    order_wait: Histogram<u64>,
    order_released: u64,
    same_as_captured: u64,
    /// Replayed results unlike the captured ones, as the metric sees them.
    differing: metrics::Counter,
    first_us: i64,
    last_us: i64,
}

impl SideStats {
    pub fn new(side: &'static str, url: String) -> Self {
        SideStats {
            side,
            url,
            ok: 0,
            errors: 0,
            not_replayed: 0,
            remapped: 0,
            reasons: BTreeMap::new(),
            // Fixed bounds: an auto-resizing histogram would clamp every
            // value above its first 2 ms to its starting maximum.
            lag: crate::clock::hist(3),
            delay: crate::clock::hist(3),
            latency: crate::clock::hist(3),
            order_wait: crate::clock::hist(3),
            order_released: 0,
            same_as_captured: 0,
            differing: crate::metrics::replay::differing(side),
            first_us: i64::MAX,
            last_us: i64::MIN,
        }
    }

    pub fn add(&mut self, r: &ResultRow) {
        if r.order_wait_us > 0 {
            self.order_wait.saturating_record(r.order_wait_us as u64);
        }
        self.order_released += r.order_released as u64;
        let same = same_as_captured(r);
        self.same_as_captured += same as u64;
        if !same && r.status != Status::NotReplayed {
            self.differing.increment(1);
        }
        self.remapped += r.remapped as u64;
        match r.status {
            Status::Ok => self.ok += 1,
            Status::Error => self.errors += 1,
            Status::NotReplayed => {
                self.not_replayed += 1;
                let reason = r.reason.clone().unwrap_or_default();
                // Keep the reason's kind, not every distinct message.
                let kind = reason.split(": ").next().unwrap_or("").to_string();
                *self.reasons.entry(kind).or_default() += 1;
                return;
            }
        }
        self.lag
            .saturating_record((r.started_us - r.scheduled_us).max(0) as u64);
        self.delay.saturating_record(r.delay_us.max(0) as u64);
        self.latency.saturating_record(r.duration_us.max(0) as u64);
        self.first_us = self.first_us.min(r.started_us);
        self.last_us = self.last_us.max(r.started_us + r.duration_us);
    }

    pub fn finish(&self) -> SideSummary {
        let replayed = self.ok + self.errors;
        let secs = if replayed > 0 {
            (self.last_us - self.first_us).max(1) as f64 / 1e6
        } else {
            0.0
        };
        let q = |h: &Histogram<u64>| {
            let at = |p| {
                if h.is_empty() {
                    0
                } else {
                    h.value_at_quantile(p)
                }
            };
            Percentiles {
                p50: at(0.5),
                p95: at(0.95),
                p99: at(0.99),
                max: h.max(),
            }
        };
        SideSummary {
            side: self.side,
            url: self.url.clone(),
            statements: replayed + self.not_replayed,
            replayed,
            same_as_captured: self.same_as_captured,
            ok: self.ok,
            failed: self.errors,
            not_replayed: self.not_replayed,
            not_replayed_reasons: self.reasons.clone(),
            remapped: self.remapped,
            seconds: secs,
            rate_per_s: if secs > 0.0 {
                replayed as f64 / secs
            } else {
                0.0
            },
            lag_us: q(&self.lag),
            delay_us: q(&self.delay),
            latency_us: q(&self.latency),
            order: OrderSummary {
                waited: self.order_wait.len(),
                wait_us: q(&self.order_wait),
                released: self.order_released,
                ..Default::default()
            },
        }
    }
}

/// Whether a replayed statement returned what the capture recorded.
fn same_as_captured(r: &ResultRow) -> bool {
    let c = &r.captured;
    r.status != Status::NotReplayed
        && r.command_tag == c.command_tag
        && r.rows == c.rows
        && r.ordered_hash == c.ordered_hash
        && r.unordered_hash == c.unordered_hash
        && r.error.as_ref().map(|e| e.0.as_str()) == c.sqlstate.as_deref()
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Percentiles {
    pub p50: u64,
    pub p95: u64,
    pub p99: u64,
    pub max: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SideSummary {
    pub side: &'static str,
    pub url: String,
    pub statements: u64,
    pub replayed: u64,
    /// Replayed statements that returned what the capture recorded (command
    /// tag, rows, both result hashes, SQLSTATE).
    pub same_as_captured: u64,
    pub ok: u64,
    pub failed: u64,
    pub not_replayed: u64,
    pub not_replayed_reasons: BTreeMap<String, u64>,
    /// Values replaced by this side's before sending (`--remap`).
    pub remapped: u64,
    pub seconds: f64,
    pub rate_per_s: f64,
    pub lag_us: Percentiles,
    /// The replayer's own part of the lag (the rest is each session waiting
    /// for its previous statement, i.e. for the server).
    pub delay_us: Percentiles,
    pub latency_us: Percentiles,
    /// The wait for other sessions' sync points (`--order commit`).
    pub order: OrderSummary,
}

/// One side's waits for order.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct OrderSummary {
    /// Statements that had to wait.
    pub waited: u64,
    /// How long those waited.
    pub wait_us: Percentiles,
    /// Statements whose wait a release ended (replay-made lock cycle or timeout).
    pub released: u64,
    /// Sync points released because PostgreSQL showed their session blocked
    /// by a session waiting for order.
    pub released_cycles: u64,
    /// Sync points released after `--order-timeout`.
    pub released_timeouts: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReplaySummary {
    pub capture: String,
    pub results: String,
    /// `null` for --max-rate.
    pub speed: Option<f64>,
    pub pace: &'static str,
    /// `session` or `commit` (`--order`).
    pub order: &'static str,
    /// The replay was stopped (SIGTERM, SIGINT) before its end.
    pub interrupted: bool,
    pub sessions: u64,
    pub captured_statements: u64,
    pub sides: Vec<SideSummary>,
}

impl ReplaySummary {
    pub fn table(&self) -> String {
        let mut s = String::new();
        let speed = self
            .speed
            .map(|x| format!("{x}x"))
            .unwrap_or_else(|| "max rate".into());
        s.push_str(&format!(
            "replayed {} ({} statements, {} sessions) at {speed}, {} pace, {} order; results in {}\n",
            self.capture,
            self.captured_statements,
            self.sessions,
            self.pace,
            self.order,
            self.results
        ));
        if self.interrupted {
            s.push_str(
                "interrupted: statements that did not run are not_replayed (interrupted) in the results\n",
            );
        }
        s.push('\n');
        s.push_str(&format!(
            "{:<8} {:>10} {:>8} {:>8} {:>8} {:>8} {:>10} {:>22} {:>14} {:>30}\n",
            "side",
            "replayed",
            "same %",
            "failed",
            "skipped",
            "rate/s",
            "seconds",
            "lag p50/p99/max ms",
            "delay p99 ms",
            "latency p50/p95/p99/max ms"
        ));
        let ms = |us: u64| us as f64 / 1000.0;
        for d in &self.sides {
            s.push_str(&format!(
                "{:<8} {:>10} {:>8.2} {:>8} {:>8} {:>8.0} {:>10.2} {:>22} {:>14.2} {:>30}\n",
                d.side,
                d.replayed,
                if d.replayed > 0 {
                    100.0 * d.same_as_captured as f64 / d.replayed as f64
                } else {
                    0.0
                },
                d.failed,
                d.not_replayed,
                d.rate_per_s,
                d.seconds,
                format!(
                    "{:.2}/{:.2}/{:.2}",
                    ms(d.lag_us.p50),
                    ms(d.lag_us.p99),
                    ms(d.lag_us.max)
                ),
                ms(d.delay_us.p99),
                format!(
                    "{:.2}/{:.2}/{:.2}/{:.2}",
                    ms(d.latency_us.p50),
                    ms(d.latency_us.p95),
                    ms(d.latency_us.p99),
                    ms(d.latency_us.max)
                ),
            ));
            let o = &d.order;
            if o.waited > 0 || o.released > 0 {
                s.push_str(&format!(
                    "         order: {} waited (p99 {:.2} ms, max {:.2} ms), {} released ({} lock cycles, {} timeouts)\n",
                    o.waited,
                    ms(o.wait_us.p99),
                    ms(o.wait_us.max),
                    o.released,
                    o.released_cycles,
                    o.released_timeouts
                ));
            }
            for (reason, n) in &d.not_replayed_reasons {
                s.push_str(&format!("         not replayed: {n} × {reason}\n"));
            }
            if d.remapped > 0 {
                s.push_str(&format!(
                    "         remapped: {} value(s) sent as this side's own\n",
                    d.remapped
                ));
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn row(scheduled_us: i64, started_us: i64, duration_us: i64) -> ResultRow {
        ResultRow {
            side: "source",
            clone: 0,
            captured: Arc::new(Default::default()),
            scheduled_us,
            started_us,
            started_at_us: started_us,
            delay_us: (started_us - scheduled_us) / 2,
            order_wait_us: 0,
            order_released: false,
            duration_us,
            status: Status::Ok,
            reason: None,
            command_tag: None,
            rows: 0,
            ordered_hash: 0,
            unordered_hash: 0,
            result_bytes: 0,
            columns: Arc::from(Vec::new()),
            error: None,
            remapped: 0,
        }
    }

    /// Lags and latencies of many milliseconds are reported as such, not
    /// clamped to the histogram's first range.
    #[test]
    fn long_lags_and_latencies_keep_their_size() {
        let mut s = SideStats::new("source", String::new());
        for i in 0..100i64 {
            // Lag i ms, latency 2 ms + i ms.
            s.add(&row(i * 10_000, i * 10_000 + i * 1_000, 2_000 + i * 1_000));
        }
        let sum = s.finish();
        let near = |got: u64, want: u64| got.abs_diff(want) <= want / 100;
        assert!(
            (49_000..=50_100).contains(&sum.lag_us.p50),
            "{:?}",
            sum.lag_us
        );
        assert!(near(sum.lag_us.max, 99_000), "{:?}", sum.lag_us);
        assert!(near(sum.delay_us.max, 49_500), "{:?}", sum.delay_us);
        assert!(near(sum.latency_us.p99, 100_000), "{:?}", sum.latency_us);
        assert_eq!(sum.replayed, 100);
    }
}
