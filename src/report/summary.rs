//! The summary of a capture, computed in two streaming passes over its
//! files: one over the few columns every statement needs (time, duration,
//! fingerprint, rows, SQLSTATE, session), one with a row filter for the slow
//! statements and their parameters. Memory grows with the number of distinct
//! fingerprints, sessions and seconds, never with the number of rows.
//!
//! The summary is plain data (serde): every exporter renders the same one,
//! and the JSON form is documented in the README.

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray, DictionaryArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int32Type, Int64Type, TimestampMicrosecondType};
use hdrhistogram::Histogram;

mod rollup;

pub use super::model::*;
use crate::capture::schema::rfc3339_us;
use crate::capture::{Capture, CaptureError, Kind, col};
use crate::clock::hist;
use crate::fasthash::FastMap;
use crate::sql::classify;
use rollup::{group, log2_buckets, rollup, round_group, series};

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

struct Fp {
    normalized: String,
    count: u64,
    total_us: u64,
    rows: u64,
    errors: u64,
    hist: Histogram<u64>,
}

fn latency(h: &Histogram<u64>) -> Latency {
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

fn ms(us: u64) -> f64 {
    (us as f64 / 10.0).round() / 100.0
}

/// Summarises `cap` (its readable files; its bad ones are listed).
pub fn summarize(cap: &Capture, opts: &SummaryOptions) -> Result<Summary, CaptureError> {
    let cols = [
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
    let mut fps: FastMap<i64, Fp> = FastMap::default();
    let mut overall = hist(3);
    let mut per_sec: BTreeMap<i64, (u64, u64)> = BTreeMap::new();
    let mut apps: Vec<(String, Group)> = Vec::new();
    let mut app_of: FastMap<i64, usize> = FastMap::default();
    let mut unknown_app: Option<usize> = None;
    let mut sqlstates: BTreeMap<String, u64> = BTreeMap::new();
    let (mut first, mut last) = (i64::MAX, i64::MIN);
    let (mut statements, mut errors) = (0u64, 0u64);
    let (mut cur_sec, mut cur) = (i64::MIN, (0u64, 0u64));

    let dict_cols = [
        col::KIND,
        col::NORMALIZED_SQL,
        col::SQLSTATE,
        col::APPLICATION_NAME,
    ];
    for batch in cap.scan(&cols).dictionary(&dict_cols) {
        let b = batch?;
        let prim = |name: &str| b.column_by_name(name).expect("projected").clone();
        let (sid, ts, dur, fp, rows) = (
            prim(col::SESSION_ID),
            prim(col::TS),
            prim(col::DURATION_US),
            prim(col::FINGERPRINT),
            prim(col::ROWS),
        );
        let sid = sid.as_primitive::<Int64Type>();
        let ts = ts.as_primitive::<TimestampMicrosecondType>();
        let dur = dur.as_primitive::<Int64Type>();
        let fp = fp.as_primitive::<Int64Type>();
        let rows = rows.as_primitive::<Int64Type>();
        let kind = dict(&b, col::KIND)?;
        let norm = dict(&b, col::NORMALIZED_SQL)?;
        let state = dict(&b, col::SQLSTATE)?;
        let app = dict(&b, col::APPLICATION_NAME)?;
        // Kinds by dictionary key: one string compare per distinct value, not per row.
        let kind_code: Vec<u8> = kind
            .values()
            .as_string::<i32>()
            .iter()
            .map(|v| match v.and_then(Kind::parse) {
                Some(Kind::Connect) => 1,
                Some(Kind::Statement) => 2,
                _ => 0,
            })
            .collect();
        for i in 0..b.num_rows() {
            let session = sid.value(i);
            match kind_code[kind.keys().value(i) as usize] {
                1 => {
                    let name = dict_str(&app, i).unwrap_or("");
                    let idx = match apps.iter().position(|(n, _)| n == name) {
                        Some(x) => x,
                        None => {
                            apps.push((name.to_string(), group(name, Some(0))));
                            apps.len() - 1
                        }
                    };
                    if app_of.insert(session, idx).is_none() {
                        *apps[idx].1.sessions.get_or_insert(0) += 1;
                    }
                }
                2 => {
                    let t = ts.value(i);
                    let d = dur.value(i).max(0) as u64;
                    let failed = state.is_valid(i);
                    statements += 1;
                    first = first.min(t);
                    last = last.max(t);
                    overall.saturating_record(d.max(1));
                    // Rows come mostly in time order: count into the current
                    // second, touch the map only when the second changes.
                    let sec = t.div_euclid(1_000_000);
                    if sec != cur_sec {
                        if cur.0 > 0 {
                            let e = per_sec.entry(cur_sec).or_default();
                            e.0 += cur.0;
                            e.1 += cur.1;
                        }
                        (cur_sec, cur) = (sec, (0, 0));
                    }
                    cur.0 += 1;
                    let f = fps.entry(fp.value(i)).or_insert_with(|| Fp {
                        normalized: dict_str(&norm, i).unwrap_or("").to_string(),
                        count: 0,
                        total_us: 0,
                        rows: 0,
                        errors: 0,
                        hist: hist(2),
                    });
                    f.count += 1;
                    f.total_us += d;
                    f.rows += rows.value(i).max(0) as u64;
                    f.hist.saturating_record(d.max(1));
                    let idx = match app_of.get(&session) {
                        Some(&x) => x,
                        None => {
                            let x = *unknown_app.get_or_insert_with(|| {
                                apps.push((
                                    "(no connect row)".into(),
                                    group("(no connect row)", Some(0)),
                                ));
                                apps.len() - 1
                            });
                            app_of.insert(session, x);
                            *apps[x].1.sessions.get_or_insert(0) += 1;
                            x
                        }
                    };
                    let g = &mut apps[idx].1;
                    g.statements += 1;
                    g.total_ms += d as f64 / 1000.0;
                    if failed {
                        errors += 1;
                        cur.1 += 1;
                        f.errors += 1;
                        g.errors += 1;
                        let code = dict_str(&state, i).unwrap_or("");
                        *sqlstates.entry(code.to_string()).or_default() += 1;
                    }
                }
                _ => {}
            }
        }
    }

    if cur.0 > 0 {
        let e = per_sec.entry(cur_sec).or_default();
        e.0 += cur.0;
        e.1 += cur.1;
    }
    let duration_s = if statements > 0 {
        (last - first) as f64 / 1e6
    } else {
        0.0
    };
    let mut all: Vec<FingerprintStats> = fps
        .iter()
        .map(|(k, f)| FingerprintStats {
            fingerprint: format!("{:016x}", *k as u64),
            statement_type: classify::statement_type(&f.normalized).as_str().to_string(),
            normalized_sql: f.normalized.clone(),
            count: f.count,
            total_ms: ms(f.total_us),
            latency: latency(&f.hist),
            rows: f.rows,
            errors: f.errors,
        })
        .collect();
    // Ties broken by fingerprint so the report is the same on every run.
    all.sort_by(|a, b| {
        b.total_ms
            .total_cmp(&a.total_ms)
            .then(a.fingerprint.cmp(&b.fingerprint))
    });
    let by_type = rollup(&all, |f| vec![f.statement_type.clone()]);
    let by_table = rollup(&all, |f| {
        let t = classify::tables(&f.normalized_sql);
        if t.is_empty() {
            vec!["(none)".into()]
        } else {
            t
        }
    });
    let top_by_total_time: Vec<_> = all.iter().take(opts.top).cloned().collect();
    all.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then(a.fingerprint.cmp(&b.fingerprint))
    });
    let top_by_count: Vec<_> = all.iter().take(opts.top).cloned().collect();
    let mut by_application: Vec<Group> = apps.into_iter().map(|(_, g)| round_group(g)).collect();
    by_application.sort_by(|a, b| b.statements.cmp(&a.statements).then(a.name.cmp(&b.name)));
    let mut errors_by_sqlstate: Vec<ErrorGroup> = sqlstates
        .into_iter()
        .map(|(sqlstate, count)| ErrorGroup { sqlstate, count })
        .collect();
    errors_by_sqlstate.sort_by(|a, b| b.count.cmp(&a.count).then(a.sqlstate.cmp(&b.sqlstate)));
    let (throughput_bucket_s, throughput) = series(&per_sec, first, opts.max_points);

    Ok(Summary {
        files: cap.files.len(),
        rows: cap.total_rows() as u64,
        dropped: cap.dropped(),
        bad_files: cap.errors.iter().map(|e| e.to_string()).collect(),
        pending_segments: cap
            .pending_segments
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
        start: (statements > 0).then(|| rfc3339_us(first)),
        end: (statements > 0).then(|| rfc3339_us(last)),
        duration_s,
        sessions: app_of.len() as u64,
        statements,
        errors,
        error_rate: if statements > 0 {
            round4(errors as f64 / statements as f64)
        } else {
            0.0
        },
        statements_per_s: if duration_s > 0.0 {
            (statements as f64 / duration_s * 10.0).round() / 10.0
        } else {
            statements as f64
        },
        latency: latency(&overall),
        throughput_bucket_s,
        throughput,
        latency_histogram: log2_buckets(&overall),
        top_by_total_time,
        top_by_count,
        by_type,
        by_table,
        by_application,
        errors_by_sqlstate,
        slow_ms: opts.slow_ms,
        slow: super::slow::slow_statements(cap, opts)?,
    })
}

/// A string column as a dictionary array (cast when a file stored it plain).
fn dict(b: &RecordBatch, name: &str) -> Result<DictionaryArray<Int32Type>, CaptureError> {
    let c = b.column_by_name(name).expect("projected");
    let want = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
    let c = cast(c, &want).map_err(|e| CaptureError::Arrow {
        path: name.into(),
        source: e,
    })?;
    Ok(c.as_dictionary::<Int32Type>().clone())
}

fn dict_str(d: &DictionaryArray<Int32Type>, i: usize) -> Option<&str> {
    if d.is_null(i) {
        return None;
    }
    Some(
        d.values()
            .as_string::<i32>()
            .value(d.keys().value(i) as usize),
    )
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

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
