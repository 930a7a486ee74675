//! The data of a verdict: what [`super::run_diff`] computes and every
//! exporter renders. Plain serde structs; their field names are the JSON
//! interface (`pgtape report RESULTS --format json`, documented in the
//! README): add fields, do not rename them.

use serde::Serialize;

/// Version of the verdict JSON document, in its `version` field.
pub const VERDICT_JSON_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Verdict {
    pub version: u32,
    pub results_dir: String,
    /// `pass` or `fail`.
    pub verdict: String,
    pub passed: bool,
    /// 0 the migration passes, 1 a verdict named in `fail_on` failed.
    pub exit_code: i32,
    pub fail_on: Vec<String>,
    /// Why the verdict is what it is, one sentence each.
    pub reasons: Vec<String>,
    pub settings: Settings,
    pub counts: Counts,
    /// How much of the traffic the verdict compared (`--min-coverage`).
    pub coverage: Coverage,
    pub latency: OverallLatency,
    /// Fingerprints sorted by regression (highest latency ratio first;
    /// those that cannot be evaluated last).
    pub fingerprints: Vec<FingerprintLatency>,
    /// Divergence counts per class.
    pub divergence_classes: Vec<ClassCount>,
    /// Divergences grouped by class and fingerprint, with examples.
    pub divergences: Vec<DivergenceGroup>,
    /// Fingerprints whose target differences are non-determinism, not divergence.
    pub noise: Vec<NoiseGroup>,
    pub charts: Charts,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Settings {
    pub latency_percentile: f64,
    pub regression_threshold: f64,
    pub regression_min_delta_ms: f64,
    pub min_executions: u64,
    pub noise_relative: f64,
    pub noise_absolute: f64,
    pub show_rows: usize,
    /// `--min-coverage`, percent (0: not checked).
    pub min_coverage: f64,
}

/// The share of statements the verdict compared. Every statement pair is
/// compared (identical, benign order or divergent), set aside as noise, or
/// not replayed on a side; unmatched statements are on one side only. A
/// verdict is only as strong as the share it compared.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Coverage {
    /// `compared` over `total`, percent (0 when there is nothing at all).
    pub percent: f64,
    /// Pairs compared: identical, benign order or divergent.
    pub compared: u64,
    /// Pairs plus statements unmatched on either side.
    pub total: u64,
    pub noise: u64,
    pub not_replayed: u64,
    pub unmatched: u64,
    /// `--min-coverage`, percent (0: not checked).
    pub min_percent: f64,
    /// Below `min_percent`: the verdict fails when it gates on divergence.
    pub below_min: bool,
    /// Fingerprints of which the verdict compared less than half: mostly
    /// noise or not replayed, the queries it could not judge. Most
    /// uncompared first.
    pub unjudged: Vec<Unjudged>,
}

/// A fingerprint the verdict could not judge.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Unjudged {
    pub fingerprint: String,
    pub normalized_sql: String,
    pub pairs: u64,
    pub compared: u64,
    pub noise: u64,
    pub not_replayed: u64,
    pub percent: f64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Counts {
    pub source_rows: u64,
    pub target_rows: u64,
    /// Statements found on both sides (joined by session, seq, clone).
    pub pairs: u64,
    pub unmatched_source: u64,
    pub unmatched_target: u64,
    /// Pairs where a side did not run the statement (reason in the results file).
    pub not_replayed: u64,
    /// Of those, pairs one side ran and the other did not (it lost its
    /// connection, could not connect): the replay is incomplete.
    pub one_sided: u64,
    /// Pairs whose results are the same on both sides.
    pub identical: u64,
    pub divergences: u64,
    pub divergent_fingerprints: u64,
    pub noise: u64,
    /// Same rows in another order, for statements without ORDER BY.
    pub benign_order: u64,
    pub source_errors: u64,
    pub target_errors: u64,
    pub regressions: u64,
    pub improvements: u64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct LatencyStats {
    pub count: u64,
    pub p50_us: u64,
    pub p95_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    /// The value at `settings.latency_percentile`.
    pub at_percentile_us: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OverallLatency {
    pub percentile: f64,
    pub source: LatencyStats,
    pub target: LatencyStats,
    /// target / source at the percentile (0 when the source has none).
    pub ratio: f64,
    pub class: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FingerprintLatency {
    /// The fingerprint as 16 hex digits (as in `pgtape report` of a capture).
    pub fingerprint: String,
    pub normalized_sql: String,
    pub read_only: bool,
    pub source: LatencyStats,
    pub target: LatencyStats,
    pub ratio: f64,
    /// `improved`, `same`, `degraded` or `cannot_evaluate`.
    pub class: String,
    pub divergences: u64,
    pub noise: u64,
    /// Pairs of the fingerprint, those compared (identical, benign order
    /// or divergent) and those not replayed on a side.
    pub pairs: u64,
    pub compared: u64,
    pub not_replayed: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClassCount {
    pub class: String,
    pub count: u64,
    pub fingerprints: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DivergenceGroup {
    /// `new_error`, `resolved_error`, `different_sqlstate`, `different_columns`,
    /// `different_command_tag`, `different_row_count`, `different_order`, `different_rows`.
    pub class: String,
    pub fingerprint: String,
    pub normalized_sql: String,
    pub read_only: bool,
    pub has_order_by: bool,
    pub count: u64,
    /// Pairs of this fingerprint.
    pub pairs: u64,
    pub examples: Vec<Example>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Example {
    pub session_id: i64,
    pub seq: i64,
    pub clone: i32,
    pub sql: String,
    /// Text-format values as text, binary ones as `\x` hex, NULL as null.
    pub params: Vec<Option<String>>,
    pub captured: SideSummary,
    pub source: SideSummary,
    pub target: SideSummary,
    /// First differing rows, when `--show-rows` re-ran the statement.
    pub evidence: Option<Evidence>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct SideSummary {
    /// `ok`, `error` or `not_replayed` (`captured` for the capture's own result).
    pub status: String,
    pub command_tag: Option<String>,
    pub rows: i64,
    pub columns: Vec<Column>,
    pub sqlstate: Option<String>,
    pub error_message: Option<String>,
    pub duration_us: i64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Column {
    pub name: String,
    pub type_oid: u32,
    /// A user-defined type's schema-qualified name (results version 2),
    /// which the diff compares instead of the OID.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub type_name: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Evidence {
    /// `ordered` (compared position by position) or `unordered` (as multisets).
    pub mode: String,
    pub columns: Vec<String>,
    pub rows: Vec<RowDiff>,
    /// Why no rows could be shown (error, statement not read-only, ...).
    pub note: Option<String>,
    /// The re-run returned the same rows on both sides: the replayed
    /// difference came from the moment, not from the target.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub transient: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RowDiff {
    /// 0-based row position (ordered mode only).
    pub position: Option<u64>,
    pub source: Option<Vec<Option<String>>>,
    pub target: Option<Vec<Option<String>>>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NoiseGroup {
    pub fingerprint: String,
    pub normalized_sql: String,
    pub pairs: u64,
    /// Pairs whose target differed, counted as noise.
    pub noise: u64,
    /// Share of pairs whose source replay differed from the capture.
    pub source_noise_rate: f64,
    /// Share of pairs whose target differed from the source.
    pub target_difference_rate: f64,
    /// Differences of deterministic pairs judged within the noise
    /// thresholds (included in `noise`).
    pub suppressed: u64,
    /// Why: `source differs from capture` or `within noise thresholds`.
    pub why: String,
    pub example: Option<Example>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Charts {
    /// Latency CDF per side: `[latency_us, cumulative share]` points.
    pub cdf_source: Vec<(u64, f64)>,
    pub cdf_target: Vec<(u64, f64)>,
    pub throughput_bucket_s: u64,
    pub throughput_source: Vec<Point>,
    pub throughput_target: Vec<Point>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Point {
    /// Seconds since the replay started.
    pub offset_s: u64,
    pub statements: u64,
    pub errors: u64,
}
