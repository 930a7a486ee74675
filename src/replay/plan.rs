//! The capture as the replayer needs it: a stream of connect, statement and
//! disconnect items (filters applied), plus a first pass over a few cheap
//! columns that sizes the replay (capture start, sessions, peak concurrency,
//! read-only sessions) before anything connects. The second pass, the items
//! themselves, is [`super::items`].

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use arrow::array::AsArray;
use arrow::datatypes::{Int64Type, TimestampMicrosecondType};
use thiserror::Error;

use super::results::Captured;
use crate::capture::schema::meta;
use crate::capture::{Capture, CaptureError, col};
use crate::fasthash::FastMap;
use crate::report::classify::statement_type;

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
    },
    Disconnect {
        key: SessionKey,
        ts_us: i64,
    },
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

/// True for statements that change nothing: reads, and session or
/// transaction control (which a read-only replay keeps).
pub fn is_read_only(normalized: &str) -> bool {
    let upper = normalized.trim_start().to_ascii_uppercase();
    let first = upper
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("");
    match first {
        "BEGIN" | "START" | "COMMIT" | "END" | "ROLLBACK" | "SAVEPOINT" | "RELEASE" | "SET"
        | "SHOW" | "RESET" | "DISCARD" | "DEALLOCATE" | "EXPLAIN" => !upper.contains("ANALYZE"),
        _ => {
            statement_type(normalized) == "SELECT"
                && ![
                    " FOR UPDATE",
                    " FOR SHARE",
                    " FOR NO KEY",
                    " FOR KEY SHARE",
                    " INTO ",
                    "NEXTVAL",
                    "SETVAL",
                ]
                .iter()
                .any(|w| upper.contains(w))
        }
    }
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
    let mut ro_cache: HashMap<i64, bool> = HashMap::new();
    let scan = cap.scan(&[
        col::CAPTURE_ID,
        col::KIND,
        col::SESSION_ID,
        col::TS,
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
            match kinds.value(i) {
                "connect" => {
                    open.insert(k.clone());
                    o.peak_sessions = o.peak_sessions.max(open.len() as u64);
                    seen.insert(k);
                }
                "disconnect" => {
                    open.remove(&k);
                }
                _ => {
                    let ro = *ro_cache
                        .entry(fps.value(i))
                        .or_insert_with(|| is_read_only(norm.value(i)));
                    if filter.read_only && !ro {
                        continue;
                    }
                    if !ro {
                        writes.insert(k.clone());
                    }
                    o.statements += 1;
                    if seen.insert(k.clone()) {
                        // A session whose connect was not captured.
                        open.insert(k);
                        o.peak_sessions = o.peak_sessions.max(open.len() as u64);
                    }
                }
            }
        }
    }
    o.sessions = seen.len() as u64;
    o.read_only_sessions = seen.into_iter().filter(|k| !writes.contains(k)).collect();
    if o.start_us == i64::MAX {
        o.start_us = 0;
        o.end_us = 0;
    }
    Ok(o)
}

impl Filter {
    pub(super) fn time_ok(&self, t: i64) -> bool {
        self.from_us.is_none_or(|f| t >= f) && self.until_us.is_none_or(|u| t <= u)
    }
}

pub use super::items::{Items, items};
