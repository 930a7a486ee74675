//! Roll-ups of a capture summary: fingerprint stats summed into groups,
//! per-second counts re-bucketed into a series, a histogram into log2 buckets.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

use super::{FingerprintStats, Group, HistBucket, Point};

pub(super) fn group(name: &str, sessions: Option<u64>) -> Group {
    Group {
        name: name.to_string(),
        sessions,
        statements: 0,
        total_ms: 0.0,
        errors: 0,
    }
}

pub(super) fn round_group(mut g: Group) -> Group {
    g.total_ms = (g.total_ms * 100.0).round() / 100.0;
    g
}

/// Sums fingerprint stats into groups (a fingerprint may count in several).
pub(super) fn rollup(
    all: &[FingerprintStats],
    keys: impl Fn(&FingerprintStats) -> Vec<String>,
) -> Vec<Group> {
    let mut m: BTreeMap<String, Group> = BTreeMap::new();
    for f in all {
        for k in keys(f) {
            let g = m.entry(k.clone()).or_insert_with(|| group(&k, None));
            g.statements += f.count;
            g.total_ms += f.total_ms;
            g.errors += f.errors;
        }
    }
    let mut v: Vec<Group> = m.into_values().map(round_group).collect();
    v.sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms).then(a.name.cmp(&b.name)));
    v
}

/// Per-second counts re-bucketed to at most `max_points` points, gaps as zeros.
pub(super) fn series(
    per_sec: &BTreeMap<i64, (u64, u64)>,
    first_us: i64,
    max_points: usize,
) -> (u64, Vec<Point>) {
    let (Some((&lo, _)), Some((&hi, _))) = (per_sec.first_key_value(), per_sec.last_key_value())
    else {
        return (1, Vec::new());
    };
    let span = (hi - lo + 1) as u64;
    let bucket = span.div_ceil(max_points.max(1) as u64).max(1);
    let n = span.div_ceil(bucket) as usize;
    let mut pts: Vec<Point> = (0..n)
        .map(|i| Point {
            offset_s: i as u64 * bucket,
            statements: 0,
            errors: 0,
        })
        .collect();
    let _ = first_us;
    for (&s, &(c, e)) in per_sec {
        let p = &mut pts[((s - lo) as u64 / bucket) as usize];
        p.statements += c;
        p.errors += e;
    }
    (bucket, pts)
}

pub(super) fn log2_buckets(h: &Histogram<u64>) -> Vec<HistBucket> {
    if h.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut le = 1u64;
    let mut below = 0u64;
    loop {
        let upto = h.count_between(0, le);
        out.push(HistBucket {
            le_us: le,
            count: upto - below,
        });
        below = upto;
        if le >= h.max() {
            break;
        }
        le *= 2;
    }
    // Leading empty buckets say nothing.
    let start = out.iter().position(|b| b.count > 0).unwrap_or(0);
    out.split_off(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_rebuckets_and_fills_gaps() {
        let m: BTreeMap<i64, (u64, u64)> = [(100, (5, 1)), (103, (2, 0)), (109, (1, 0))].into();
        let (bucket, pts) = series(&m, 0, 5);
        assert_eq!(bucket, 2);
        assert_eq!(
            pts.iter().map(|p| p.statements).collect::<Vec<_>>(),
            vec![5, 2, 0, 0, 1]
        );
    }
}
