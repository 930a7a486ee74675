//! Latency per fingerprint and overall, per side, from HdrHistogram: count,
//! p50/p95/p99/max, the ratio target/source at the chosen percentile and a
//! class (improved, same, degraded, cannot evaluate). Also the two charts'
//! data: the latency CDF and throughput over time per side.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

use super::model::{LatencyStats, Point};

/// Latency classes of a fingerprint (or the whole replay).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatencyClass {
    Improved,
    Same,
    Degraded,
    CannotEvaluate,
}

impl LatencyClass {
    pub fn as_str(self) -> &'static str {
        match self {
            LatencyClass::Improved => "improved",
            LatencyClass::Same => "same",
            LatencyClass::Degraded => "degraded",
            LatencyClass::CannotEvaluate => "cannot_evaluate",
        }
    }
}

/// The thresholds a class is judged by.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    pub percentile: f64,
    /// Degraded above this ratio, improved below its inverse.
    pub ratio: f64,
    /// ... and only when the percentile moved by at least this much (µs),
    /// so sub-millisecond jitter is not a regression.
    pub min_delta_us: f64,
    pub min_executions: u64,
}

/// One side's latencies, µs, 3 significant digits up to one hour.
#[derive(Debug, Clone)]
pub struct Hist(Histogram<u64>);

impl Default for Hist {
    fn default() -> Self {
        Hist(Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"))
    }
}

impl Hist {
    pub fn record(&mut self, us: i64) {
        self.0.saturating_record(us.max(1) as u64);
    }

    pub fn count(&self) -> u64 {
        self.0.len()
    }

    pub fn stats(&self, percentile: f64) -> LatencyStats {
        let h = &self.0;
        if h.is_empty() {
            return LatencyStats::default();
        }
        LatencyStats {
            count: h.len(),
            p50_us: h.value_at_quantile(0.50),
            p95_us: h.value_at_quantile(0.95),
            p99_us: h.value_at_quantile(0.99),
            max_us: h.max(),
            at_percentile_us: h.value_at_quantile(percentile / 100.0),
        }
    }

    /// `[latency_us, cumulative share]` at fixed quantiles (a step CDF).
    pub fn cdf(&self) -> Vec<(u64, f64)> {
        if self.0.is_empty() {
            return Vec::new();
        }
        let mut qs: Vec<f64> = (0..=20).map(|i| i as f64 * 0.05).collect();
        qs.extend([0.975, 0.99, 0.995, 0.999]);
        qs.sort_by(f64::total_cmp);
        qs.into_iter()
            .map(|q| (self.0.value_at_quantile(q), q))
            .collect()
    }
}

/// Ratio and class of one fingerprint's target vs source latencies.
pub fn judge(source: &Hist, target: &Hist, t: &Thresholds) -> (f64, LatencyClass) {
    judge_with(source, target, t, true)
}

/// Ratio and class of the whole replay: a mix of fingerprints, so its median
/// says nothing about one of them and only the percentile is judged.
pub fn judge_overall(source: &Hist, target: &Hist, t: &Thresholds) -> (f64, LatencyClass) {
    judge_with(source, target, t, false)
}

fn judge_with(source: &Hist, target: &Hist, t: &Thresholds, bulk_too: bool) -> (f64, LatencyClass) {
    let (s, g) = (source.stats(t.percentile), target.stats(t.percentile));
    let ratio = if s.at_percentile_us > 0 {
        g.at_percentile_us as f64 / s.at_percentile_us as f64
    } else {
        0.0
    };
    if s.count.min(g.count) < t.min_executions.max(1) {
        return (ratio, LatencyClass::CannotEvaluate);
    }
    let delta = (g.at_percentile_us as f64 - s.at_percentile_us as f64).abs();
    // The shift must show in the bulk of the executions too (the median, by
    // half the threshold): a few slow executions on a busy machine move a
    // high percentile of a small sample without any regression.
    let median = if s.p50_us > 0 {
        g.p50_us as f64 / s.p50_us as f64
    } else {
        1.0
    };
    let bulk = 1.0 + (t.ratio - 1.0) / 2.0;
    // And the shift must be significant: a rank test (Mann-Whitney U) over
    // both sides' executions, so run-to-run jitter of a shared machine does
    // not fail a migration.
    let z = if bulk_too {
        rank_shift_z(source, target)
    } else {
        0.0
    };
    let class = if delta < t.min_delta_us {
        LatencyClass::Same
    } else if ratio > t.ratio && (!bulk_too || (median >= bulk && z >= SIGNIFICANT_Z)) {
        LatencyClass::Degraded
    } else if ratio < 1.0 / t.ratio && (!bulk_too || (median <= 1.0 / bulk && z <= -SIGNIFICANT_Z))
    {
        LatencyClass::Improved
    } else {
        LatencyClass::Same
    };
    (ratio, class)
}

/// One-sided z of 3.3: a chance shift this large happens about once in two
/// thousand comparisons.
const SIGNIFICANT_Z: f64 = 3.3;

/// Mann-Whitney U of target against source as a z-score (normal
/// approximation): positive when target executions tend to be slower.
pub fn rank_shift_z(source: &Hist, target: &Hist) -> f64 {
    let (n1, n2) = (source.0.len() as f64, target.0.len() as f64);
    if n1 == 0.0 || n2 == 0.0 {
        return 0.0;
    }
    let mut at: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for v in source.0.iter_recorded() {
        at.entry(v.value_iterated_to()).or_default().0 += v.count_at_value();
    }
    for v in target.0.iter_recorded() {
        at.entry(v.value_iterated_to()).or_default().1 += v.count_at_value();
    }
    let (mut below, mut u) = (0.0f64, 0.0f64);
    for (cs, ct) in at.values() {
        u += *ct as f64 * (below + 0.5 * *cs as f64);
        below += *cs as f64;
    }
    let mean = n1 * n2 / 2.0;
    let sd = (n1 * n2 * (n1 + n2 + 1.0) / 12.0).sqrt();
    (u - mean) / sd
}

/// Statements (and errors) per second of replay, per side.
#[derive(Debug, Clone, Default)]
pub struct Throughput {
    per_s: BTreeMap<u64, (u64, u64)>,
}

impl Throughput {
    pub fn record(&mut self, started_us: i64, error: bool) {
        let e = self
            .per_s
            .entry(started_us.max(0) as u64 / 1_000_000)
            .or_default();
        e.0 += 1;
        e.1 += u64::from(error);
    }

    pub fn last_s(&self) -> u64 {
        self.per_s.keys().next_back().copied().unwrap_or(0)
    }

    /// Buckets of `bucket_s` seconds from 0 to `last_s`, empty ones included.
    pub fn points(&self, bucket_s: u64, last_s: u64) -> Vec<Point> {
        let bucket_s = bucket_s.max(1);
        let n = last_s / bucket_s + 1;
        let mut pts: Vec<Point> = (0..n)
            .map(|i| Point {
                offset_s: i * bucket_s,
                statements: 0,
                errors: 0,
            })
            .collect();
        for (s, (count, errors)) in &self.per_s {
            let p = &mut pts[(s / bucket_s) as usize];
            p.statements += count;
            p.errors += errors;
        }
        pts
    }
}

/// A bucket width giving at most ~120 points over `last_s` seconds.
pub fn bucket_for(last_s: u64) -> u64 {
    (last_s / 120 + 1).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist(v: &[i64]) -> Hist {
        let mut h = Hist::default();
        for x in v {
            h.record(*x);
        }
        h
    }

    #[test]
    fn classes_follow_ratio_delta_and_count() {
        let t = Thresholds {
            percentile: 95.0,
            ratio: 1.2,
            min_delta_us: 500.0,
            min_executions: 5,
        };
        let fast = hist(&[1000; 10]);
        let slow = hist(&[5000; 10]);
        assert_eq!(judge(&fast, &slow, &t).1, LatencyClass::Degraded);
        assert_eq!(judge(&slow, &fast, &t).1, LatencyClass::Improved);
        assert_eq!(judge(&fast, &fast, &t).1, LatencyClass::Same);
        // 3x slower but by 200 µs only: jitter, not a regression.
        assert_eq!(
            judge(&hist(&[100; 10]), &hist(&[300; 10]), &t).1,
            LatencyClass::Same
        );
        assert_eq!(
            judge(&hist(&[1000; 3]), &slow, &t).1,
            LatencyClass::CannotEvaluate
        );
        // Regression_a_slow_tail_of_a_small_sample_is_not_a_regression: the
        // median did not move, only the two slowest of 20 executions.
        let mut tail = vec![1000; 18];
        tail.extend([9000, 9000]);
        let mut base = vec![1000; 18];
        base.extend([1500, 1500]);
        assert_eq!(judge(&hist(&base), &hist(&tail), &t).1, LatencyClass::Same);
        // Regression_jitter_of_a_shared_machine_is_not_a_regression: two
        // samples from one spread, the target's a little slower by chance.
        let src: Vec<i64> = (0..100).map(|i| 1000 + (i * 37 % 100) * 40).collect();
        let tgt: Vec<i64> = (0..100).map(|i| 1150 + (i * 53 % 100) * 40).collect();
        assert!(rank_shift_z(&hist(&src), &hist(&tgt)).abs() < 3.3);
        assert_eq!(judge(&hist(&src), &hist(&tgt), &t).1, LatencyClass::Same);
        assert!(rank_shift_z(&hist(&[1000; 30]), &hist(&[5000; 30])) > 3.3);
    }
}
