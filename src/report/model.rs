//! The data of a report: what `summary` computes and every exporter renders.
//! Plain serde structs; their field names are the JSON interface (documented
//! in the README): add fields, do not rename them.

use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    pub files: usize,
    pub rows: u64,
    /// Events the proxy dropped while recording (from the files' metadata).
    pub dropped: u64,
    /// Files that could not be read, each with why.
    pub bad_files: Vec<String>,
    /// `.arrows` segments not converted yet (proxy running or killed).
    pub pending_segments: Vec<String>,
    pub start: Option<String>,
    pub end: Option<String>,
    pub duration_s: f64,
    pub sessions: u64,
    pub statements: u64,
    pub errors: u64,
    pub error_rate: f64,
    pub statements_per_s: f64,
    pub latency: Latency,
    pub throughput_bucket_s: u64,
    pub throughput: Vec<Point>,
    pub latency_histogram: Vec<HistBucket>,
    pub top_by_total_time: Vec<FingerprintStats>,
    pub top_by_count: Vec<FingerprintStats>,
    pub by_type: Vec<Group>,
    pub by_table: Vec<Group>,
    pub by_application: Vec<Group>,
    pub errors_by_sqlstate: Vec<ErrorGroup>,
    pub slow_ms: f64,
    pub slow: Vec<SlowStatement>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Latency {
    pub mean_us: f64,
    pub p50_us: u64,
    pub p95_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Point {
    /// Seconds since the first statement.
    pub offset_s: u64,
    pub statements: u64,
    pub errors: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HistBucket {
    /// Upper bound of the bucket, in µs (powers of two).
    pub le_us: u64,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FingerprintStats {
    /// The fingerprint as 16 hex digits (the `fingerprint` column's u64 bits).
    pub fingerprint: String,
    pub normalized_sql: String,
    pub statement_type: String,
    pub count: u64,
    pub total_ms: f64,
    pub latency: Latency,
    pub rows: u64,
    pub errors: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Group {
    pub name: String,
    pub sessions: Option<u64>,
    pub statements: u64,
    pub total_ms: f64,
    pub errors: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ErrorGroup {
    pub sqlstate: String,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SlowStatement {
    pub ts: String,
    pub session_id: i64,
    pub seq: i64,
    pub duration_us: i64,
    pub fingerprint: String,
    pub sql: String,
    /// Text-format values as text, binary ones as `\x` hex, NULL as null.
    pub params: Vec<Option<String>>,
}
