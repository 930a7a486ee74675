//! Replay result files: one row per statement per side, written as Parquet
//! (`source.parquet`, `target.parquet` under `--results`), joined by the diff
//! on (session_id, seq, clone). Each row carries the captured statement (SQL,
//! parameters, captured result summary) beside what the side returned, so a
//! results directory is self-contained: the diff and `pgtape report` need
//! nothing else.

use std::sync::{Arc, OnceLock};

use arrow::array::{Array, BinaryArray};
use arrow::buffer::ScalarBuffer;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::capture::event::Protocol;
use crate::columnar::list_field;
use crate::sql::Facts;

mod batch;
mod writer;
pub use batch::to_batch;
pub use writer::{ResultWriter, ResultsError};

/// Version of the results schema, in each file's `pgtape.results.version`.
/// 2 added `column_type_names`, `remapped`, `order_wait_us` and
/// `order_released` (readers take 1 without them).
pub const RESULTS_SCHEMA_VERSION: u32 = 2;
pub const VERSION_KEY: &str = "pgtape.results.version";

/// Column names of a results file.
pub mod col {
    pub const SIDE: &str = "side";
    pub const SESSION_ID: &str = "session_id";
    pub const SEQ: &str = "seq";
    pub const CLONE: &str = "clone";
    pub const FINGERPRINT: &str = "fingerprint";
    pub const NORMALIZED_SQL: &str = "normalized_sql";
    pub const SQL: &str = "sql";
    pub const PROTOCOL: &str = "protocol";
    pub const READ_ONLY: &str = "read_only";
    pub const PARAM_TYPES: &str = "param_types";
    pub const PARAM_FORMATS: &str = "param_formats";
    pub const PARAM_VALUES: &str = "param_values";
    pub const RESULT_FORMATS: &str = "result_formats";
    pub const MAX_ROWS: &str = "max_rows";
    pub const CAPTURED_TS: &str = "captured_ts";
    pub const CAPTURED_DURATION_US: &str = "captured_duration_us";
    pub const CAPTURED_COMMAND_TAG: &str = "captured_command_tag";
    pub const CAPTURED_ROWS: &str = "captured_rows";
    pub const CAPTURED_ORDERED_HASH: &str = "captured_ordered_hash";
    pub const CAPTURED_UNORDERED_HASH: &str = "captured_unordered_hash";
    pub const CAPTURED_SQLSTATE: &str = "captured_sqlstate";
    pub const SCHEDULED_US: &str = "scheduled_us";
    pub const STARTED_US: &str = "started_us";
    pub const LAG_US: &str = "lag_us";
    pub const DELAY_US: &str = "delay_us";
    pub const ORDER_WAIT_US: &str = "order_wait_us";
    pub const ORDER_RELEASED: &str = "order_released";
    pub const STARTED_AT: &str = "started_at";
    pub const DURATION_US: &str = "duration_us";
    pub const STATUS: &str = "status";
    pub const REASON: &str = "reason";
    pub const COMMAND_TAG: &str = "command_tag";
    pub const ROWS: &str = "rows";
    pub const ORDERED_HASH: &str = "ordered_hash";
    pub const UNORDERED_HASH: &str = "unordered_hash";
    pub const RESULT_BYTES: &str = "result_bytes";
    pub const COLUMN_NAMES: &str = "column_names";
    pub const COLUMN_TYPES: &str = "column_types";
    pub const SQLSTATE: &str = "sqlstate";
    pub const ERROR_MESSAGE: &str = "error_message";
    pub const COLUMN_TYPE_NAMES: &str = "column_type_names";
    pub const REMAPPED: &str = "remapped";
}

/// One statement's result on one side (or as captured) as a results file
/// holds it, reduced to what the diff compares: the one form a replayed
/// result takes from its row to the verdict.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// `ok`, `error` or `not_replayed`.
    pub status: Status,
    pub sqlstate: Option<String>,
    pub command_tag: Option<String>,
    pub rows: i64,
    pub ordered_hash: i64,
    pub unordered_hash: i64,
    /// xxh3 of the column names and types; `None` when unknown (captured).
    pub columns: Option<u64>,
}

/// What happened to one statement on one side: the `status` column,
/// written by the replay and read by the diff through [`Status::as_str`]
/// and [`Status::parse`] only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Status {
    #[default]
    Ok,
    Error,
    NotReplayed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Error => "error",
            Status::NotReplayed => "not_replayed",
        }
    }

    /// The status a results file spells `s`; anything unknown reads as `ok`.
    pub fn parse(s: &str) -> Status {
        match s {
            "error" => Status::Error,
            "not_replayed" => Status::NotReplayed,
            _ => Status::Ok,
        }
    }
}

/// The captured statement a result row refers to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captured {
    pub session_id: i64,
    pub seq: i64,
    pub ts_us: i64,
    pub duration_us: i64,
    pub fingerprint: i64,
    /// The normalised text and what it is (read-only, control, COPY FROM
    /// STDIN, ...), shared by every statement of the fingerprint.
    pub facts: Arc<Facts>,
    /// Shared with the previous statement of the fingerprint when identical.
    pub sql: Arc<str>,
    /// `simple` or `extended`.
    pub protocol: Protocol,
    /// Transaction status after the statement (`I`, `T`, `E`; 0 if unknown).
    pub tx_status: u8,
    /// The list columns below are slices of the capture's own Arrow
    /// buffers: streaming a capture copies no parameter.
    pub param_types: ScalarBuffer<u32>,
    pub param_formats: ScalarBuffer<i16>,
    pub param_values: Params,
    pub result_formats: ScalarBuffer<i16>,
    pub max_rows: i32,
    /// Tags and SQLSTATEs repeat: shared, not allocated per statement.
    pub command_tag: Option<Arc<str>>,
    pub rows: i64,
    pub ordered_hash: i64,
    pub unordered_hash: i64,
    pub sqlstate: Option<Arc<str>>,
    /// COPY FROM STDIN data the client streamed (capture version 2).
    pub copy_in: super::fidelity::CopyIn,
    /// The DataRow bodies of a small result, as captured (version 2).
    pub result_values: Params,
}

/// A statement's captured parameter values (NULL as `None`), or the
/// captured DataRow bodies of its result.
#[derive(Debug, Clone, Default)]
pub struct Params(Option<BinaryArray>);

impl Params {
    /// A slice of a capture's `param_values` list entry.
    pub fn from_array(values: BinaryArray) -> Params {
        Params(Some(values))
    }

    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |a| a.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = Option<&[u8]>> {
        self.0.iter().flat_map(|a| a.iter())
    }
}

impl<T: AsRef<[u8]>> FromIterator<Option<T>> for Params {
    fn from_iter<I: IntoIterator<Item = Option<T>>>(values: I) -> Params {
        Params(Some(values.into_iter().collect()))
    }
}

impl PartialEq for Params {
    fn eq(&self, o: &Params) -> bool {
        self.iter().eq(o.iter())
    }
}
impl Eq for Params {}

/// One row of a results file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultRow {
    pub side: &'static str,
    pub clone: i32,
    pub captured: Arc<Captured>,
    pub scheduled_us: i64,
    pub started_us: i64,
    pub started_at_us: i64,
    /// The replayer's own share of the lag: from when the statement could
    /// start (due, and its session's previous statement done) to its start.
    pub delay_us: i64,
    /// Time spent waiting for other sessions' sync points (`--order commit`).
    pub order_wait_us: i64,
    /// That wait was ended by a release (a replay-made deadlock, or
    /// `--order-timeout`), not by the sync points completing.
    pub order_released: bool,
    pub duration_us: i64,
    pub status: Status,
    pub reason: Option<String>,
    pub command_tag: Option<Arc<str>>,
    pub rows: i64,
    pub ordered_hash: i64,
    pub unordered_hash: i64,
    pub result_bytes: i64,
    pub columns: Arc<[super::client::Column]>,
    pub error: Option<(String, String)>,
    /// Values replaced by this side's before sending (`--remap`).
    pub remapped: u32,
}

/// The results schema (without metadata).
pub fn results_schema() -> SchemaRef {
    static S: OnceLock<SchemaRef> = OnceLock::new();
    S.get_or_init(|| {
        use DataType::*;
        let ts = Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        Arc::new(Schema::new(vec![
            Field::new(col::SIDE, Utf8, false),
            Field::new(col::SESSION_ID, Int64, false),
            Field::new(col::SEQ, Int64, false),
            Field::new(col::CLONE, Int32, false),
            Field::new(col::FINGERPRINT, Int64, false),
            Field::new(col::NORMALIZED_SQL, Utf8, true),
            Field::new(col::SQL, Utf8, true),
            Field::new(col::PROTOCOL, Utf8, true),
            Field::new(col::READ_ONLY, Boolean, false),
            list_field(col::PARAM_TYPES, UInt32, false),
            list_field(col::PARAM_FORMATS, Int16, false),
            list_field(col::PARAM_VALUES, Binary, true),
            list_field(col::RESULT_FORMATS, Int16, false),
            Field::new(col::MAX_ROWS, Int32, false),
            Field::new(col::CAPTURED_TS, ts.clone(), false),
            Field::new(col::CAPTURED_DURATION_US, Int64, false),
            Field::new(col::CAPTURED_COMMAND_TAG, Utf8, true),
            Field::new(col::CAPTURED_ROWS, Int64, false),
            Field::new(col::CAPTURED_ORDERED_HASH, Int64, false),
            Field::new(col::CAPTURED_UNORDERED_HASH, Int64, false),
            Field::new(col::CAPTURED_SQLSTATE, Utf8, true),
            Field::new(col::SCHEDULED_US, Int64, false),
            Field::new(col::STARTED_US, Int64, false),
            Field::new(col::LAG_US, Int64, false),
            Field::new(col::DELAY_US, Int64, false),
            Field::new(col::ORDER_WAIT_US, Int64, false),
            Field::new(col::ORDER_RELEASED, Boolean, false),
            Field::new(col::STARTED_AT, ts, false),
            Field::new(col::DURATION_US, Int64, false),
            Field::new(col::STATUS, Utf8, false),
            Field::new(col::REASON, Utf8, true),
            Field::new(col::COMMAND_TAG, Utf8, true),
            Field::new(col::ROWS, Int64, false),
            Field::new(col::ORDERED_HASH, Int64, false),
            Field::new(col::UNORDERED_HASH, Int64, false),
            Field::new(col::RESULT_BYTES, Int64, false),
            list_field(col::COLUMN_NAMES, Utf8, false),
            list_field(col::COLUMN_TYPES, UInt32, false),
            Field::new(col::SQLSTATE, Utf8, true),
            Field::new(col::ERROR_MESSAGE, Utf8, true),
            list_field(col::COLUMN_TYPE_NAMES, Utf8, true),
            Field::new(col::REMAPPED, Int32, false),
        ]))
    })
    .clone()
}
