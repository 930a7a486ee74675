//! The capture as the replayer needs it: a stream of connect, statement and
//! disconnect items (filters applied), plus a first pass over a few cheap
//! columns that sizes the replay (capture start, sessions, peak concurrency,
//! read-only sessions) before anything connects.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Int16Type, Int32Type, Int64Type, TimestampMicrosecondType, UInt32Type};
use thiserror::Error;

use super::results::Captured;
use crate::capture::reader::Scan;
use crate::capture::schema::meta;
use crate::capture::{Capture, CaptureError, col};
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

/// Opens a capture directory, naming every bad file; fails if nothing is readable.
pub fn open(path: &Path) -> Result<Capture, PlanError> {
    if !path.exists() {
        return Err(PlanError::Missing(path.display().to_string()));
    }
    let mut cap = Capture::open(path)?;
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

fn key(
    capture_ids: &arrow::array::StringArray,
    sessions: &arrow::array::Int64Array,
    i: usize,
    intern: &mut HashMap<String, Arc<str>>,
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
    let mut intern = HashMap::new();
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
    fn time_ok(&self, t: i64) -> bool {
        self.from_us.is_none_or(|f| t >= f) && self.until_us.is_none_or(|u| t <= u)
    }
}

/// The columns the second pass reads.
const ITEM_COLUMNS: &[&str] = &[
    col::CAPTURE_ID,
    col::KIND,
    col::SESSION_ID,
    col::SEQ,
    col::TS,
    col::DURATION_US,
    col::PROTOCOL,
    col::SQL,
    col::FINGERPRINT,
    col::NORMALIZED_SQL,
    col::STATEMENT_NAME,
    col::PARAM_TYPES,
    col::PARAM_FORMATS,
    col::PARAM_VALUES,
    col::RESULT_FORMATS,
    col::MAX_ROWS,
    col::COMMAND_TAG,
    col::ROWS,
    col::ORDERED_HASH,
    col::UNORDERED_HASH,
    col::SQLSTATE,
    col::USER,
    col::APPLICATION_NAME,
    col::STARTUP_PARAMS,
];

/// Streams the capture as items, one batch at a time.
pub struct Items {
    scan: Scan,
    filter: Filter,
    intern: HashMap<String, Arc<str>>,
    ro_cache: HashMap<i64, bool>,
    /// Sessions excluded by --application (decided at their connect).
    excluded: HashSet<SessionKey>,
    pending: std::vec::IntoIter<Item>,
}

pub fn items(cap: &Capture, filter: Filter) -> Items {
    Items {
        scan: cap.scan(ITEM_COLUMNS).batch_size(4096),
        filter,
        intern: HashMap::new(),
        ro_cache: HashMap::new(),
        excluded: HashSet::new(),
        pending: Vec::new().into_iter(),
    }
}

impl Iterator for Items {
    type Item = Result<Item, PlanError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(it) = self.pending.next() {
                return Some(Ok(it));
            }
            match self.scan.next()? {
                Ok(b) => self.pending = self.decode(&b).into_iter(),
                Err(e) => return Some(Err(e.into())),
            }
        }
    }
}

impl Items {
    fn decode(&mut self, b: &RecordBatch) -> Vec<Item> {
        let c = |name: &str| b.column_by_name(name).expect("projected column");
        let ids = c(col::CAPTURE_ID).as_string::<i32>();
        let kinds = c(col::KIND).as_string::<i32>();
        let sess = c(col::SESSION_ID).as_primitive::<Int64Type>();
        let seq = c(col::SEQ).as_primitive::<Int64Type>();
        let ts = c(col::TS).as_primitive::<TimestampMicrosecondType>();
        let dur = c(col::DURATION_US).as_primitive::<Int64Type>();
        let proto = c(col::PROTOCOL).as_string::<i32>();
        let sql = c(col::SQL).as_string::<i32>();
        let fp = c(col::FINGERPRINT).as_primitive::<Int64Type>();
        let norm = c(col::NORMALIZED_SQL).as_string::<i32>();
        let name = c(col::STATEMENT_NAME).as_string::<i32>();
        let ptypes = c(col::PARAM_TYPES).as_list::<i32>();
        let pformats = c(col::PARAM_FORMATS).as_list::<i32>();
        let pvalues = c(col::PARAM_VALUES).as_list::<i32>();
        let rformats = c(col::RESULT_FORMATS).as_list::<i32>();
        let max_rows = c(col::MAX_ROWS).as_primitive::<Int32Type>();
        let tag = c(col::COMMAND_TAG).as_string::<i32>();
        let rows = c(col::ROWS).as_primitive::<Int64Type>();
        let oh = c(col::ORDERED_HASH).as_primitive::<Int64Type>();
        let uh = c(col::UNORDERED_HASH).as_primitive::<Int64Type>();
        let state = c(col::SQLSTATE).as_string::<i32>();
        let user = c(col::USER).as_string::<i32>();
        let app = c(col::APPLICATION_NAME).as_string::<i32>();
        let startup = c(col::STARTUP_PARAMS).as_map();
        let opt_str = |a: &arrow::array::StringArray, i: usize| {
            (!a.is_null(i)).then(|| a.value(i).to_string())
        };
        let mut out = Vec::with_capacity(b.num_rows());
        for i in 0..b.num_rows() {
            let t = ts.value(i);
            if !self.filter.time_ok(t) {
                continue;
            }
            let k = key(ids, sess, i, &mut self.intern);
            if self
                .filter
                .sessions
                .as_ref()
                .is_some_and(|s| !s.contains(&k.1))
                || self.excluded.contains(&k)
            {
                continue;
            }
            match kinds.value(i) {
                "connect" => {
                    if self
                        .filter
                        .application
                        .as_ref()
                        .is_some_and(|a| app.is_null(i) || app.value(i) != a)
                    {
                        self.excluded.insert(k);
                        continue;
                    }
                    let mut params = Vec::new();
                    if !startup.is_null(i) {
                        let entry = startup.value(i);
                        let keys = entry.column(0).as_string::<i32>();
                        let vals = entry.column(1).as_string::<i32>();
                        for j in 0..entry.len() {
                            params.push((
                                keys.value(j).to_string(),
                                if vals.is_null(j) {
                                    String::new()
                                } else {
                                    vals.value(j).to_string()
                                },
                            ));
                        }
                    }
                    let user = opt_str(user, i).unwrap_or_default();
                    out.push(Item::Connect {
                        key: k,
                        ts_us: t,
                        user,
                        params,
                    });
                }
                "disconnect" => out.push(Item::Disconnect { key: k, ts_us: t }),
                _ => {
                    let normalized = norm.value(i);
                    let ro = *self
                        .ro_cache
                        .entry(fp.value(i))
                        .or_insert_with(|| is_read_only(normalized));
                    if self.filter.read_only && !ro {
                        continue;
                    }
                    let list_u32 = |l: &arrow::array::ListArray| -> Vec<u32> {
                        if l.is_null(i) {
                            vec![]
                        } else {
                            l.value(i).as_primitive::<UInt32Type>().values().to_vec()
                        }
                    };
                    let list_i16 = |l: &arrow::array::ListArray| -> Vec<i16> {
                        if l.is_null(i) {
                            vec![]
                        } else {
                            l.value(i).as_primitive::<Int16Type>().values().to_vec()
                        }
                    };
                    let values = if pvalues.is_null(i) {
                        vec![]
                    } else {
                        let v = pvalues.value(i);
                        let v = v.as_binary::<i32>();
                        (0..v.len())
                            .map(|j| (!v.is_null(j)).then(|| v.value(j).to_vec()))
                            .collect()
                    };
                    let captured = Captured {
                        session_id: k.1,
                        seq: seq.value(i),
                        ts_us: t,
                        duration_us: dur.value(i),
                        fingerprint: fp.value(i),
                        normalized_sql: normalized.to_string(),
                        sql: sql.value(i).to_string(),
                        protocol: proto.value(i).to_string(),
                        read_only: ro,
                        param_types: list_u32(ptypes),
                        param_formats: list_i16(pformats),
                        param_values: values,
                        result_formats: list_i16(rformats),
                        max_rows: if max_rows.is_null(i) {
                            0
                        } else {
                            max_rows.value(i)
                        },
                        command_tag: opt_str(tag, i),
                        rows: if rows.is_null(i) { 0 } else { rows.value(i) },
                        ordered_hash: if oh.is_null(i) { 0 } else { oh.value(i) },
                        unordered_hash: if uh.is_null(i) { 0 } else { uh.value(i) },
                        sqlstate: opt_str(state, i),
                    };
                    let named = !name.is_null(i) && !name.value(i).is_empty();
                    out.push(Item::Statement {
                        key: k,
                        captured: Arc::new(captured),
                        named,
                    });
                }
            }
        }
        out
    }
}
