//! The second pass over a capture: connect, statement and disconnect items,
//! decoded a batch at a time with the filters applied (see [`super::plan`]).

use std::sync::Arc;

use arrow::array::{Array, AsArray, ListArray, RecordBatch, StringArray};
use arrow::buffer::ScalarBuffer;
use arrow::datatypes::{
    ArrowPrimitiveType, Int16Type, Int32Type, Int64Type, TimestampMicrosecondType, UInt32Type,
};

use super::plan::{Filter, Item, PlanError, SessionKey, key};
use super::results::{Captured, Params};
use crate::capture::event::Protocol;
use crate::capture::reader::Scan;
use crate::capture::{Capture, Kind, col};
use crate::fasthash::{FastMap, FastSet};
use crate::sql::{Facts, FactsCache};

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
    col::TX_STATUS,
    col::USER,
    col::APPLICATION_NAME,
    col::STARTUP_PARAMS,
    // Version 2 (absent from older files: see `fidelity`).
    col::COPY_DATA,
    col::COPY_BYTES,
    col::RESULT_VALUES,
];

struct FingerprintText {
    facts: Arc<Facts>,
    last_sql: Arc<str>,
}

/// Streams the capture as items, one batch at a time.
pub struct Items {
    scan: Scan,
    filter: Filter,
    intern: FastMap<String, Arc<str>>,
    /// Per fingerprint: its facts, and the last SQL text seen (reused while
    /// statements repeat it, as prepared ones do).
    shapes: FastMap<i64, FingerprintText>,
    facts: FactsCache,
    /// Sessions excluded by --application (decided at their connect).
    excluded: FastSet<SessionKey>,
    pending: std::vec::IntoIter<Item>,
    words: Words,
}

/// Shared copies of the short strings statements repeat (command tags,
/// SQLSTATEs), up to a bound: a capture of `INSERT 0 n` with ever new `n`
/// costs an allocation per statement, never unbounded memory.
#[derive(Default)]
struct Words(FastMap<Box<str>, Arc<str>>);

impl Words {
    const MAX: usize = 4096;

    fn get(&mut self, a: &StringArray, i: usize) -> Option<Arc<str>> {
        if a.is_null(i) {
            return None;
        }
        let w = a.value(i);
        if let Some(s) = self.0.get(w) {
            return Some(s.clone());
        }
        let s: Arc<str> = w.into();
        if self.0.len() < Self::MAX {
            self.0.insert(w.into(), s.clone());
        }
        Some(s)
    }
}

pub fn items(cap: &Capture, filter: Filter) -> Items {
    Items {
        scan: cap.scan(ITEM_COLUMNS).batch_size(4096),
        filter,
        intern: FastMap::default(),
        shapes: FastMap::default(),
        facts: FactsCache::default(),
        excluded: FastSet::default(),
        pending: Vec::new().into_iter(),
        words: Words::default(),
    }
}

impl Items {
    /// The items of the capture's next batch (empty when every row of it
    /// was filtered out), or `None` at the end.
    pub fn next_batch(&mut self) -> Option<Result<Vec<Item>, PlanError>> {
        let rest: Vec<Item> = std::mem::take(&mut self.pending).collect();
        if !rest.is_empty() {
            return Some(Ok(rest));
        }
        match self.scan.next()? {
            Ok(b) => Some(Ok(self.decode(&b))),
            Err(e) => Some(Err(e.into())),
        }
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
        let txs = c(col::TX_STATUS).as_string::<i32>();
        let user = c(col::USER).as_string::<i32>();
        let app = c(col::APPLICATION_NAME).as_string::<i32>();
        let startup = c(col::STARTUP_PARAMS).as_map();
        let limit = b
            .schema()
            .metadata()
            .get(crate::capture::schema::meta::MAX_COPY_BYTES)
            .and_then(|v| v.parse().ok());
        let kept = super::fidelity::Columns::new(b, limit);
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
                || (!self.excluded.is_empty() && self.excluded.contains(&k))
            {
                continue;
            }
            match Kind::parse(kinds.value(i)) {
                Some(Kind::Connect) => {
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
                Some(Kind::Disconnect) => out.push(Item::Disconnect { key: k, ts_us: t }),
                _ => {
                    let text = sql.value(i);
                    let facts = &mut self.facts;
                    let f = self
                        .shapes
                        .entry(fp.value(i))
                        .or_insert_with(|| FingerprintText {
                            facts: facts.get(fp.value(i), norm.value(i)).clone(),
                            last_sql: text.into(),
                        });
                    if self.filter.read_only && !f.facts.read_only {
                        continue;
                    }
                    if *f.last_sql != *text {
                        f.last_sql = text.into();
                    }
                    // Slices of the batch's buffers: no copy, no allocation.
                    let values = if pvalues.is_null(i) {
                        Params::default()
                    } else {
                        let (at, len) = entry(pvalues, i);
                        Params::from_array(pvalues.values().as_binary::<i32>().slice(at, len))
                    };
                    let captured = Captured {
                        session_id: k.1,
                        seq: seq.value(i),
                        ts_us: t,
                        duration_us: dur.value(i),
                        fingerprint: fp.value(i),
                        facts: f.facts.clone(),
                        sql: f.last_sql.clone(),
                        protocol: Protocol::parse(proto.value(i)),
                        tx_status: if txs.is_null(i) {
                            0
                        } else {
                            txs.value(i).as_bytes().first().copied().unwrap_or(0)
                        },
                        param_types: list_slice::<UInt32Type>(ptypes, i),
                        param_formats: list_slice::<Int16Type>(pformats, i),
                        param_values: values,
                        result_formats: list_slice::<Int16Type>(rformats, i),
                        max_rows: if max_rows.is_null(i) {
                            0
                        } else {
                            max_rows.value(i)
                        },
                        command_tag: self.words.get(tag, i),
                        rows: if rows.is_null(i) { 0 } else { rows.value(i) },
                        ordered_hash: if oh.is_null(i) { 0 } else { oh.value(i) },
                        unordered_hash: if uh.is_null(i) { 0 } else { uh.value(i) },
                        sqlstate: self.words.get(state, i),
                        copy_in: kept.copy_in(i),
                        result_values: kept
                            .result_values(i)
                            .map(Params::from_array)
                            .unwrap_or_default(),
                    };
                    let named = !name.is_null(i) && !name.value(i).is_empty();
                    out.push(Item::Statement {
                        key: k,
                        captured: Arc::new(captured),
                        named,
                        order: Default::default(),
                    });
                }
            }
        }
        out
    }
}

/// Where list entry `i` lies in the list's values: (start, length).
fn entry(l: &ListArray, i: usize) -> (usize, usize) {
    let o = l.value_offsets();
    let start = o[i] as usize;
    (start, o[i + 1] as usize - start)
}

/// List entry `i` of a primitive list, as a slice of its buffer (a null
/// entry is empty).
fn list_slice<T: ArrowPrimitiveType>(l: &ListArray, i: usize) -> ScalarBuffer<T::Native> {
    let (at, len) = entry(l, i);
    l.values().as_primitive::<T>().values().slice(at, len)
}
