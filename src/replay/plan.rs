//! The capture as the replayer needs it: a stream of connect, statement and
//! disconnect items (filters applied), plus a first pass over a few cheap
//! columns that sizes the replay (capture start, sessions, peak concurrency,
//! read-only sessions) before anything connects. The second pass, the items
//! themselves, is [`super::items`].

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Int64Type, TimestampMicrosecondType};
use thiserror::Error;

use super::order::{SyncKey, TableSet};
use super::results::Captured;
use crate::capture::schema::meta;
use crate::capture::{Capture, CaptureError, Kind, col};
use crate::fasthash::FastMap;
use crate::sql::{Facts, FactsCache};

#[derive(Debug, Error)]
pub enum PlanError {
    #[error(
        "capture {0}: no such directory or file; pass the directory `pgtape proxy --capture` wrote"
    )]
    Missing(String),
    #[error(
        "capture {0} holds no capture files (*.parquet); was the proxy started with --capture, and has it rotated or stopped?"
    )]
    Empty(String),
    #[error("{0}")]
    Capture(#[from] CaptureError),
}

/// Which captured statements to replay.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub read_only: bool,
    pub from_us: Option<i64>,
    pub until_us: Option<i64>,
    pub application: Option<String>,
    pub sessions: Option<HashSet<i64>>,
}

/// A replay session: one captured session of one capture run.
pub type SessionKey = (Arc<str>, i64);

#[derive(Debug, Clone)]
pub enum Item {
    Connect {
        key: SessionKey,
        ts_us: i64,
        user: String,
        params: Vec<(String, String)>,
    },
    Statement {
        key: SessionKey,
        captured: Arc<Captured>,
        named: bool,
        order: OrderTag,
    },
    Disconnect {
        key: SessionKey,
        ts_us: i64,
    },
}

/// What a statement owes the order of effects across sessions (`--order
/// commit`; see [`super::order`]): set by the dispatcher.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderTag {
    /// See what it saw: wait, on `tables`, until every sync point that had
    /// completed before this captured time (µs) has completed on the side.
    pub after: Option<i64>,
    /// The tables the statement uses (`None`: any).
    pub tables: TableSet,
    /// This statement is a sync point: remove it once it ran.
    pub sync: Option<SyncKey>,
    /// The tables its sync point changes or makes visible.
    pub sync_tables: TableSet,
    /// This statement must be sent before later commits of its tables:
    /// remove it once sent.
    pub sent: Option<SyncKey>,
    /// Do not see what it did not: an end of a writing transaction waits,
    /// on `sync_tables`, until every statement that had started before this
    /// captured time has been sent on the side.
    pub publish: Option<i64>,
    /// Draws from `seq_tables` (sequences): wait, there, until every
    /// statement drawing from them that had started before this captured
    /// time has completed on the side; remove it once it ran.
    pub seq: Option<SyncKey>,
    pub seq_tables: TableSet,
}

/// What the first pass learnt.
#[derive(Debug, Default, Clone)]
pub struct Outline {
    pub start_us: i64,
    pub end_us: i64,
    pub statements: u64,
    pub sessions: u64,
    /// Most sessions open at once (connect to disconnect).
    pub peak_sessions: u64,
    /// Sessions whose every statement is read-only (clonable by --scale).
    pub read_only_sessions: HashSet<SessionKey>,
    pub params_redacted: bool,
    /// How far, in capture time, a statement's row comes after rows of
    /// statements that started later (rows are in completion order): how
    /// far ahead of the clock a paced replay must read.
    pub max_lateness_us: i64,
    /// The same for completion times: how far a row comes after rows of
    /// statements that completed later (a pipeline's rows wait for its Sync).
    pub max_end_lateness_us: i64,
    /// Each fingerprint's typical (median) captured duration, µs: how long
    /// a write takes when it waits for no lock (see [`super::dispatch`]).
    pub typical_us: Arc<FastMap<i64, i64>>,
    /// What each fingerprint's statements are: what the order's row keys
    /// are chosen from ([`super::row_keys::RowKeys::choose`]).
    pub shapes: Arc<FastMap<i64, ShapeSeen>>,
}

/// A fingerprint as the first pass saw it.
#[derive(Debug, Clone)]
pub struct ShapeSeen {
    pub facts: Arc<Facts>,
    pub statements: u64,
    /// Captured start of its first and its last statement, µs.
    pub first_us: i64,
    pub last_us: i64,
}

/// Opens a capture directory, naming every bad file; fails if nothing is
/// readable. Unconverted `.arrows` segments are replayed up to their last
/// complete batch, each named on stderr: a replay leaves nothing out silently.
pub fn open(path: &Path) -> Result<Capture, PlanError> {
    if !path.exists() {
        return Err(PlanError::Missing(path.display().to_string()));
    }
    let mut cap = Capture::open(path)?;
    for note in cap.include_segments() {
        tracing::warn!("capture segment {note}");
    }
    if let Some(e) = cap.errors.drain(..).next() {
        // A bad file must not be silently skipped in a replay: name it.
        return Err(PlanError::Capture(e));
    }
    if cap.files.is_empty() {
        return Err(PlanError::Empty(path.display().to_string()));
    }
    Ok(cap)
}

pub(super) fn key(
    capture_ids: &arrow::array::StringArray,
    sessions: &arrow::array::Int64Array,
    i: usize,
    intern: &mut FastMap<String, Arc<str>>,
) -> SessionKey {
    let id = capture_ids.value(i);
    let id = match intern.get(id) {
        Some(a) => a.clone(),
        None => {
            let a: Arc<str> = Arc::from(id);
            intern.insert(id.to_string(), a.clone());
            a
        }
    };
    (id, sessions.value(i))
}

/// The first pass: kind, session, time and normalised SQL only.
pub fn outline(cap: &Capture, filter: &Filter) -> Result<Outline, PlanError> {
    let mut o = Outline {
        start_us: i64::MAX,
        end_us: i64::MIN,
        ..Default::default()
    };
    o.params_redacted = cap
        .files
        .iter()
        .any(|f| f.metadata.get(meta::REDACTED).is_some_and(|v| v == "true"));
    let mut intern = FastMap::default();
    let mut open: HashSet<SessionKey> = HashSet::new();
    let mut seen: HashSet<SessionKey> = HashSet::new();
    let mut writes: HashSet<SessionKey> = HashSet::new();
    let mut facts = FactsCache::default();
    let mut latest_start = i64::MIN;
    let mut latest_end = i64::MIN;
    let mut durations: FastMap<i64, LogHistogram> = FastMap::default();
    let mut shapes: FastMap<i64, ShapeSeen> = FastMap::default();
    let scan = cap.scan(&[
        col::CAPTURE_ID,
        col::KIND,
        col::SESSION_ID,
        col::TS,
        col::DURATION_US,
        col::FINGERPRINT,
        col::NORMALIZED_SQL,
    ]);
    for batch in scan {
        let b = batch?;
        let ids = b
            .column_by_name(col::CAPTURE_ID)
            .expect("projected")
            .as_string::<i32>();
        let kinds = b
            .column_by_name(col::KIND)
            .expect("projected")
            .as_string::<i32>();
        let sess = b
            .column_by_name(col::SESSION_ID)
            .expect("projected")
            .as_primitive::<Int64Type>();
        let ts = b
            .column_by_name(col::TS)
            .expect("projected")
            .as_primitive::<TimestampMicrosecondType>();
        let dur = b
            .column_by_name(col::DURATION_US)
            .expect("projected")
            .as_primitive::<Int64Type>();
        let fps = b
            .column_by_name(col::FINGERPRINT)
            .expect("projected")
            .as_primitive::<Int64Type>();
        let norm = b
            .column_by_name(col::NORMALIZED_SQL)
            .expect("projected")
            .as_string::<i32>();
        for i in 0..b.num_rows() {
            let t = ts.value(i);
            if !filter.time_ok(t) {
                continue;
            }
            let k = key(ids, sess, i, &mut intern);
            if filter.sessions.as_ref().is_some_and(|s| !s.contains(&k.1)) {
                continue;
            }
            o.start_us = o.start_us.min(t);
            o.end_us = o.end_us.max(t);
            match Kind::parse(kinds.value(i)) {
                Some(Kind::Connect) => {
                    open.insert(k.clone());
                    o.peak_sessions = o.peak_sessions.max(open.len() as u64);
                    seen.insert(k);
                }
                Some(Kind::Disconnect) => {
                    open.remove(&k);
                }
                _ => {
                    let f = facts.get(fps.value(i), norm.value(i));
                    let ro = f.read_only;
                    if filter.read_only && !ro {
                        continue;
                    }
                    if !ro {
                        writes.insert(k.clone());
                    }
                    o.statements += 1;
                    let shape = shapes.entry(fps.value(i)).or_insert_with(|| ShapeSeen {
                        facts: f.clone(),
                        statements: 0,
                        first_us: t,
                        last_us: t,
                    });
                    shape.statements += 1;
                    shape.first_us = shape.first_us.min(t);
                    shape.last_us = shape.last_us.max(t);
                    if !ro && !dur.is_null(i) {
                        durations
                            .entry(fps.value(i))
                            .or_default()
                            .record(dur.value(i));
                    }
                    latest_start = latest_start.max(t);
                    o.max_lateness_us = o.max_lateness_us.max(latest_start - t);
                    let end = t + if dur.is_null(i) {
                        0
                    } else {
                        dur.value(i).max(0)
                    };
                    latest_end = latest_end.max(end);
                    o.max_end_lateness_us = o.max_end_lateness_us.max(latest_end - end);
                    if seen.insert(k.clone()) {
                        // A session whose connect was not captured.
                        open.insert(k);
                        o.peak_sessions = o.peak_sessions.max(open.len() as u64);
                    }
                }
            }
        }
    }
    o.typical_us = Arc::new(
        durations
            .into_iter()
            .map(|(fp, h)| (fp, h.median()))
            .collect(),
    );
    o.shapes = Arc::new(shapes);
    o.sessions = seen.len() as u64;
    o.read_only_sessions = seen.into_iter().filter(|k| !writes.contains(k)).collect();
    if o.start_us == i64::MAX {
        o.start_us = 0;
        o.end_us = 0;
    }
    Ok(o)
}

/// Durations in quarter-octave buckets: a median within 19 % in 640 bytes,
/// whatever the number of executions.
struct LogHistogram([u32; 160]);

impl Default for LogHistogram {
    fn default() -> Self {
        LogHistogram([0; 160])
    }
}

impl LogHistogram {
    fn bucket(us: i64) -> usize {
        ((us.max(1) as f64).log2() * 4.0) as usize
    }

    fn record(&mut self, us: i64) {
        let b = Self::bucket(us).min(self.0.len() - 1);
        self.0[b] = self.0[b].saturating_add(1);
    }

    /// The lower bound of the bucket holding the median.
    fn median(&self) -> i64 {
        let total: u64 = self.0.iter().map(|&c| c as u64).sum();
        if total == 0 {
            return 0;
        }
        let mut seen = 0;
        for (b, &c) in self.0.iter().enumerate() {
            seen += c as u64;
            if seen * 2 >= total {
                return 2f64.powf(b as f64 / 4.0) as i64;
            }
        }
        0
    }
}

impl Filter {
    pub(super) fn time_ok(&self, t: i64) -> bool {
        self.from_us.is_none_or(|f| t >= f) && self.until_us.is_none_or(|u| t <= u)
    }
}

pub use super::items::{Items, items};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_duration_is_within_a_quarter_octave() {
        let mut h = LogHistogram::default();
        for us in [100, 110, 120, 130, 5_000_000] {
            h.record(us);
        }
        let m = h.median();
        assert!((90..=120).contains(&m), "{m}");
        assert_eq!(LogHistogram::default().median(), 0);
    }
}
