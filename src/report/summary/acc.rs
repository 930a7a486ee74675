//! The summary's first pass as an accumulator: [`SummaryAcc::add_batch`]
//! takes the capture's batches one by one (the few columns every statement
//! needs), [`SummaryAcc::finish`] turns the totals into a [`Summary`], with
//! the second pass (slow statements) run there. Memory grows with the
//! distinct fingerprints, sessions and seconds, never with the rows.

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray, DictionaryArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int32Type, Int64Type, TimestampMicrosecondType};
use hdrhistogram::Histogram;

use super::rollup::{group, log2_buckets, rollup, round_group, series};
use super::{ErrorGroup, FingerprintStats, Group, Summary, SummaryOptions, latency, ms, round4};
use crate::capture::schema::rfc3339_us;
use crate::capture::{Capture, CaptureError, Kind, col};
use crate::clock::hist;
use crate::fasthash::FastMap;
use crate::sql::FactsCache;

/// One fingerprint's totals.
struct Fp {
    normalized: String,
    count: u64,
    total_us: u64,
    rows: u64,
    errors: u64,
    hist: Histogram<u64>,
}

/// Statements and errors per second; rows come mostly in time order, so
/// the current second is counted apart and the map touched only when the
/// second changes.
struct PerSecond {
    done: BTreeMap<i64, (u64, u64)>,
    sec: i64,
    cur: (u64, u64),
}

impl PerSecond {
    fn add(&mut self, t_us: i64, failed: bool) {
        let sec = t_us.div_euclid(1_000_000);
        if sec != self.sec {
            self.flush();
            (self.sec, self.cur) = (sec, (0, 0));
        }
        self.cur.0 += 1;
        self.cur.1 += failed as u64;
    }

    fn flush(&mut self) {
        if self.cur.0 > 0 {
            let e = self.done.entry(self.sec).or_default();
            e.0 += self.cur.0;
            e.1 += self.cur.1;
        }
    }
}

/// Sessions by application name, from their connect rows.
#[derive(Default)]
struct Applications {
    groups: Vec<(String, Group)>,
    of_session: FastMap<i64, usize>,
    /// The group of sessions seen without a connect row (captured mid-session).
    unknown: Option<usize>,
}

impl Applications {
    fn connect(&mut self, session: i64, name: &str) {
        let idx = match self.groups.iter().position(|(n, _)| n == name) {
            Some(x) => x,
            None => {
                self.groups.push((name.to_string(), group(name, Some(0))));
                self.groups.len() - 1
            }
        };
        if self.of_session.insert(session, idx).is_none() {
            *self.groups[idx].1.sessions.get_or_insert(0) += 1;
        }
    }

    fn of(&mut self, session: i64) -> &mut Group {
        let idx = match self.of_session.get(&session) {
            Some(&x) => x,
            None => {
                let groups = &mut self.groups;
                let x = *self.unknown.get_or_insert_with(|| {
                    groups.push((
                        "(no connect row)".into(),
                        group("(no connect row)", Some(0)),
                    ));
                    groups.len() - 1
                });
                self.of_session.insert(session, x);
                *self.groups[x].1.sessions.get_or_insert(0) += 1;
                x
            }
        };
        &mut self.groups[idx].1
    }
}

/// The first pass's totals.
pub(super) struct SummaryAcc {
    fps: FastMap<i64, Fp>,
    overall: Histogram<u64>,
    per_sec: PerSecond,
    apps: Applications,
    sqlstates: BTreeMap<String, u64>,
    first: i64,
    last: i64,
    statements: u64,
    errors: u64,
}

impl Default for SummaryAcc {
    fn default() -> Self {
        SummaryAcc {
            fps: FastMap::default(),
            overall: hist(3),
            per_sec: PerSecond {
                done: BTreeMap::new(),
                sec: i64::MIN,
                cur: (0, 0),
            },
            apps: Applications::default(),
            sqlstates: BTreeMap::new(),
            first: i64::MAX,
            last: i64::MIN,
            statements: 0,
            errors: 0,
        }
    }
}

impl SummaryAcc {
    /// Adds one batch of the first pass's columns (string columns as dictionaries).
    pub(super) fn add_batch(&mut self, b: &RecordBatch) -> Result<(), CaptureError> {
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
        let kind = dict(b, col::KIND)?;
        let norm = dict(b, col::NORMALIZED_SQL)?;
        let state = dict(b, col::SQLSTATE)?;
        let app = dict(b, col::APPLICATION_NAME)?;
        // Kinds by dictionary key: one string compare per distinct value, not per row.
        let kinds: Vec<Option<Kind>> = kind
            .values()
            .as_string::<i32>()
            .iter()
            .map(|v| v.and_then(Kind::parse))
            .collect();
        for i in 0..b.num_rows() {
            let session = sid.value(i);
            match kinds[kind.keys().value(i) as usize] {
                Some(Kind::Connect) => self.apps.connect(session, dict_str(&app, i).unwrap_or("")),
                Some(Kind::Statement) => {
                    let t = ts.value(i);
                    let d = dur.value(i).max(0) as u64;
                    let failed = state.is_valid(i);
                    self.statements += 1;
                    self.first = self.first.min(t);
                    self.last = self.last.max(t);
                    self.overall.saturating_record(d.max(1));
                    self.per_sec.add(t, failed);
                    let f = self.fps.entry(fp.value(i)).or_insert_with(|| Fp {
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
                    let g = self.apps.of(session);
                    g.statements += 1;
                    g.total_ms += d as f64 / 1000.0;
                    if failed {
                        self.errors += 1;
                        f.errors += 1;
                        g.errors += 1;
                        let code = dict_str(&state, i).unwrap_or("");
                        *self.sqlstates.entry(code.to_string()).or_default() += 1;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The summary of what was added; runs the slow statements' pass over `cap`.
    pub(super) fn finish(
        mut self,
        cap: &Capture,
        opts: &SummaryOptions,
    ) -> Result<Summary, CaptureError> {
        self.per_sec.flush();
        let (statements, errors, first, last) =
            (self.statements, self.errors, self.first, self.last);
        let duration_s = if statements > 0 {
            (last - first) as f64 / 1e6
        } else {
            0.0
        };
        // Each fingerprint's facts, worked out once: its type here, its
        // tables for the breakdown below.
        let mut facts = FactsCache::default();
        let mut tables_of: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut all: Vec<FingerprintStats> = self
            .fps
            .iter()
            .map(|(k, f)| {
                let fingerprint = format!("{:016x}", *k as u64);
                let facts = facts.get(*k, &f.normalized);
                tables_of.insert(fingerprint.clone(), facts.tables.clone());
                (fingerprint, f, facts.kind)
            })
            .map(|(fingerprint, f, kind)| FingerprintStats {
                fingerprint,
                statement_type: kind.as_str().to_string(),
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
            let t = tables_of.get(&f.fingerprint).cloned().unwrap_or_default();
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
        let sessions = self.apps.of_session.len() as u64;
        let mut by_application: Vec<Group> = self
            .apps
            .groups
            .into_iter()
            .map(|(_, g)| round_group(g))
            .collect();
        by_application.sort_by(|a, b| b.statements.cmp(&a.statements).then(a.name.cmp(&b.name)));
        let mut errors_by_sqlstate: Vec<ErrorGroup> = self
            .sqlstates
            .into_iter()
            .map(|(sqlstate, count)| ErrorGroup { sqlstate, count })
            .collect();
        errors_by_sqlstate.sort_by(|a, b| b.count.cmp(&a.count).then(a.sqlstate.cmp(&b.sqlstate)));
        let (throughput_bucket_s, throughput) = series(&self.per_sec.done, first, opts.max_points);

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
            sessions,
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
            latency: latency(&self.overall),
            throughput_bucket_s,
            throughput,
            latency_histogram: log2_buckets(&self.overall),
            top_by_total_time,
            top_by_count,
            by_type,
            by_table,
            by_application,
            errors_by_sqlstate,
            slow_ms: opts.slow_ms,
            slow: crate::report::slow::slow_statements(cap, opts)?,
        })
    }
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
