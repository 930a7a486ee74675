//! The capture's Arrow schema, its version and the key-value metadata every
//! capture file carries. This is the contract with the replayer, `pgtape
//! report` and outside readers (DuckDB, pyarrow, Spark): `schema/capture.md`
//! documents each column and must change with this file.
//!
//! What must stay true: a change that an older reader cannot read bumps
//! [`CAPTURE_SCHEMA_VERSION`]; adding a nullable column at the end does not.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

use crate::columnar::list_field;

/// Version of the capture schema written by this build. 2 added `copy_data`,
/// `copy_bytes` and `result_values` (a replay of a version-1 capture skips
/// its COPY FROM STDIN statements and maps no values).
pub const CAPTURE_SCHEMA_VERSION: u32 = 2;

/// Key-value metadata keys (Arrow schema metadata and Parquet footer).
pub mod meta {
    pub const VERSION: &str = "pgtape.capture.version";
    pub const PGTAPE_VERSION: &str = "pgtape.version";
    pub const CAPTURE_ID: &str = "pgtape.capture.id";
    pub const UPSTREAM: &str = "pgtape.capture.upstream";
    /// RFC 3339 UTC time the capture (the proxy run) started.
    pub const STARTED_AT: &str = "pgtape.capture.started_at";
    /// Events the tap dropped while this segment was open (recorder behind,
    /// disk full); absent for a segment recovered after a crash.
    pub const DROPPED: &str = "pgtape.capture.dropped";
    /// Events dropped since the capture started, as of this segment's close.
    pub const DROPPED_TOTAL: &str = "pgtape.capture.dropped_total";
    /// `true` when the segment was converted after a crash: a leftover of an
    /// earlier run, converted at the next start (a torn tail is cut).
    pub const RECOVERED: &str = "pgtape.capture.recovered";
    pub const REDACTED: &str = "pgtape.capture.params_redacted";
    /// `--max-copy-bytes` of the run (COPY data above it was not kept).
    pub const MAX_COPY_BYTES: &str = "pgtape.capture.max_copy_bytes";
}

/// Column names, so readers never spell them twice.
pub mod col {
    pub const CAPTURE_ID: &str = "capture_id";
    pub const KIND: &str = "kind";
    pub const SESSION_ID: &str = "session_id";
    pub const SEQ: &str = "seq";
    pub const TS: &str = "ts";
    pub const DURATION_US: &str = "duration_us";
    pub const PROTOCOL: &str = "protocol";
    pub const SQL: &str = "sql";
    pub const FINGERPRINT: &str = "fingerprint";
    pub const NORMALIZED_SQL: &str = "normalized_sql";
    pub const STATEMENT_NAME: &str = "statement_name";
    pub const PARAM_TYPES: &str = "param_types";
    pub const PARAM_FORMATS: &str = "param_formats";
    pub const PARAM_VALUES: &str = "param_values";
    pub const PARAM_LENGTHS: &str = "param_lengths";
    pub const RESULT_FORMATS: &str = "result_formats";
    pub const MAX_ROWS: &str = "max_rows";
    pub const COMMAND_TAG: &str = "command_tag";
    pub const ROWS: &str = "rows";
    pub const ORDERED_HASH: &str = "ordered_hash";
    pub const UNORDERED_HASH: &str = "unordered_hash";
    pub const RESULT_BYTES: &str = "result_bytes";
    pub const SQLSTATE: &str = "sqlstate";
    pub const ERROR_MESSAGE: &str = "error_message";
    pub const TX_STATUS: &str = "tx_status";
    pub const USER: &str = "user";
    pub const DATABASE: &str = "database";
    pub const APPLICATION_NAME: &str = "application_name";
    pub const CLIENT_ADDR: &str = "client_addr";
    pub const STARTUP_PARAMS: &str = "startup_params";
    pub const PROTOCOL_VERSION: &str = "protocol_version";
    pub const DISCONNECT_REASON: &str = "disconnect_reason";
    pub const COPY_DATA: &str = "copy_data";
    pub const COPY_BYTES: &str = "copy_bytes";
    pub const RESULT_VALUES: &str = "result_values";
}

/// A row's [`col::KIND`]: the event it records. Writer and readers go
/// through [`Kind::as_str`] and [`Kind::parse`], never the literals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Connect,
    Statement,
    Disconnect,
}

impl Kind {
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Connect => "connect",
            Kind::Statement => "statement",
            Kind::Disconnect => "disconnect",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "connect" => Some(Kind::Connect),
            "statement" => Some(Kind::Statement),
            "disconnect" => Some(Kind::Disconnect),
            _ => None,
        }
    }
}

/// Text columns worth dictionary-encoding in Parquet: few distinct values,
/// repeated on many rows.
pub const DICTIONARY_COLUMNS: &[&str] = &[
    col::CAPTURE_ID,
    col::KIND,
    col::PROTOCOL,
    col::SQL,
    col::FINGERPRINT,
    col::NORMALIZED_SQL,
    col::STATEMENT_NAME,
    col::COMMAND_TAG,
    col::SQLSTATE,
    col::ERROR_MESSAGE,
    col::TX_STATUS,
    col::USER,
    col::DATABASE,
    col::APPLICATION_NAME,
    col::CLIENT_ADDR,
    col::PROTOCOL_VERSION,
    col::DISCONNECT_REASON,
];

/// Timestamp type of `ts`: microseconds, UTC (Parquet TIMESTAMP(MICROS, true)).
pub fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The startup parameters as a Parquet MAP<string, string>.
pub fn startup_params_type() -> DataType {
    DataType::Map(
        Arc::new(Field::new(
            "entries",
            DataType::Struct(Fields::from(vec![
                Field::new("keys", DataType::Utf8, false),
                Field::new("values", DataType::Utf8, true),
            ])),
            false,
        )),
        false,
    )
}

fn fields() -> Vec<Field> {
    use DataType::*;
    vec![
        Field::new(col::CAPTURE_ID, Utf8, false),
        Field::new(col::KIND, Utf8, false),
        Field::new(col::SESSION_ID, Int64, false),
        Field::new(col::SEQ, Int64, true),
        Field::new(col::TS, ts_type(), false),
        Field::new(col::DURATION_US, Int64, true),
        Field::new(col::PROTOCOL, Utf8, true),
        Field::new(col::SQL, Utf8, true),
        Field::new(col::FINGERPRINT, Int64, true),
        Field::new(col::NORMALIZED_SQL, Utf8, true),
        Field::new(col::STATEMENT_NAME, Utf8, true),
        list_field(col::PARAM_TYPES, UInt32, false),
        list_field(col::PARAM_FORMATS, Int16, false),
        list_field(col::PARAM_VALUES, Binary, true),
        list_field(col::PARAM_LENGTHS, Int32, false),
        list_field(col::RESULT_FORMATS, Int16, false),
        Field::new(col::MAX_ROWS, Int32, true),
        Field::new(col::COMMAND_TAG, Utf8, true),
        Field::new(col::ROWS, Int64, true),
        Field::new(col::ORDERED_HASH, Int64, true),
        Field::new(col::UNORDERED_HASH, Int64, true),
        Field::new(col::RESULT_BYTES, Int64, true),
        Field::new(col::SQLSTATE, Utf8, true),
        Field::new(col::ERROR_MESSAGE, Utf8, true),
        Field::new(col::TX_STATUS, Utf8, true),
        Field::new(col::USER, Utf8, true),
        Field::new(col::DATABASE, Utf8, true),
        Field::new(col::APPLICATION_NAME, Utf8, true),
        Field::new(col::CLIENT_ADDR, Utf8, true),
        Field::new(col::STARTUP_PARAMS, startup_params_type(), true),
        Field::new(col::PROTOCOL_VERSION, Utf8, true),
        Field::new(col::DISCONNECT_REASON, Utf8, true),
        // Large offsets: one statement's COPY may pass 2 GiB with a raised
        // --max-copy-bytes, and a batch holds several.
        list_field(col::COPY_DATA, LargeBinary, false),
        Field::new(col::COPY_BYTES, Int64, true),
        list_field(col::RESULT_VALUES, Binary, false),
    ]
}

/// The capture schema without metadata (shared, built once).
pub fn capture_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| Arc::new(Schema::new(fields())))
        .clone()
}

/// What identifies one capture run; written into every file it produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureInfo {
    pub capture_id: String,
    pub upstream: String,
    /// UTC microseconds since the epoch.
    pub started_at_us: i64,
    pub params_redacted: bool,
    pub max_copy_bytes: u64,
}

impl CaptureInfo {
    /// The key-value metadata of a file of this capture.
    pub fn metadata(&self) -> HashMap<String, String> {
        HashMap::from([
            (meta::VERSION.into(), CAPTURE_SCHEMA_VERSION.to_string()),
            (
                meta::PGTAPE_VERSION.into(),
                env!("CARGO_PKG_VERSION").into(),
            ),
            (meta::CAPTURE_ID.into(), self.capture_id.clone()),
            (meta::UPSTREAM.into(), self.upstream.clone()),
            (meta::STARTED_AT.into(), rfc3339_us(self.started_at_us)),
            (meta::REDACTED.into(), self.params_redacted.to_string()),
            (meta::MAX_COPY_BYTES.into(), self.max_copy_bytes.to_string()),
        ])
    }

    /// The capture schema carrying this capture's metadata.
    pub fn schema(&self) -> SchemaRef {
        Arc::new(
            capture_schema()
                .as_ref()
                .clone()
                .with_metadata(self.metadata()),
        )
    }
}

/// `2024-05-01T12:00:00.000000Z` from UTC microseconds (no time-zone crate needed).
pub fn rfc3339_us(us: i64) -> String {
    let secs = us.div_euclid(1_000_000);
    let micros = us.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_utc_micros() {
        assert_eq!(rfc3339_us(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            rfc3339_us(1_714_564_800_123_456),
            "2024-05-01T12:00:00.123456Z"
        );
    }

    #[test]
    fn every_dictionary_column_exists() {
        let s = capture_schema();
        for c in DICTIONARY_COLUMNS {
            assert!(s.field_with_name(c).is_ok(), "{c}");
        }
    }
}
