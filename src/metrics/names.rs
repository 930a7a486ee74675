//! Every metric name pgtape exports, in one place: the code records through
//! these constants and the dashboard test checks each Grafana query against
//! [`ALL`]. Names carry the `pgtape_` prefix and their unit (`_seconds`,
//! `_bytes`, `_total` for counters); latencies are histograms.

/// How a metric is exposed (histograms add `_bucket`, `_sum` and `_count`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

// Every process.
pub const BUILD_INFO: &str = "pgtape_build_info";
pub const READY: &str = "pgtape_ready";

// pgtape proxy.
pub const PROXY_CLIENT_CONNECTIONS: &str = "pgtape_proxy_client_connections";
pub const PROXY_CLIENT_CONNECTIONS_TOTAL: &str = "pgtape_proxy_client_connections_total";
pub const PROXY_UPSTREAM_CONNECTIONS: &str = "pgtape_proxy_upstream_connections";
pub const PROXY_UPSTREAM_CONNECT_ERRORS_TOTAL: &str = "pgtape_proxy_upstream_connect_errors_total";
pub const PROXY_ADMIN_CONNECTIONS_TOTAL: &str = "pgtape_proxy_admin_connections_total";
pub const PROXY_STATEMENTS_TOTAL: &str = "pgtape_proxy_statements_total";
pub const PROXY_BYTES_TOTAL: &str = "pgtape_proxy_bytes_total";
pub const PROXY_STATEMENT_DURATION_SECONDS: &str = "pgtape_proxy_statement_duration_seconds";
pub const PROXY_STATEMENT_ERRORS_TOTAL: &str = "pgtape_proxy_statement_errors_total";
pub const CAPTURE_RECORDS_WRITTEN_TOTAL: &str = "pgtape_capture_records_written_total";
pub const CAPTURE_RECORDS_DROPPED_TOTAL: &str = "pgtape_capture_records_dropped_total";
pub const CAPTURE_RECORDS_PAUSED_TOTAL: &str = "pgtape_capture_records_paused_total";
pub const CAPTURE_SEGMENTS_TOTAL: &str = "pgtape_capture_segments_total";
pub const CAPTURE_FILES_TOTAL: &str = "pgtape_capture_files_total";
pub const CAPTURE_QUEUE_DEPTH: &str = "pgtape_capture_queue_depth";
pub const CAPTURE_PAUSED: &str = "pgtape_capture_paused";

// pgtape workload.
pub const WORKLOAD_OPERATIONS_TOTAL: &str = "pgtape_workload_operations_total";
pub const WORKLOAD_OPERATION_DURATION_SECONDS: &str = "pgtape_workload_operation_duration_seconds";
pub const WORKLOAD_POOL_ACQUIRE_SECONDS: &str = "pgtape_workload_pool_acquire_seconds";
pub const WORKLOAD_EVENTS_TOTAL: &str = "pgtape_workload_events_total";
pub const WORKLOAD_POOL_CONNECTIONS: &str = "pgtape_workload_pool_connections";
pub const WORKLOAD_POOL_MAX_CONNECTIONS: &str = "pgtape_workload_pool_max_connections";
pub const WORKLOAD_CACHE_LOOKUPS_TOTAL: &str = "pgtape_workload_cache_lookups_total";
pub const WORKLOAD_REDIS_DURATION_SECONDS: &str = "pgtape_workload_redis_duration_seconds";
pub const WORKLOAD_BACKLOGGED_TOTAL: &str = "pgtape_workload_backlogged_total";
pub const WORKLOAD_ACTIVE_ORGANIZATIONS: &str = "pgtape_workload_active_organizations";
pub const WORKLOAD_CONVERSION_RATIO: &str = "pgtape_workload_conversion_ratio";

// pgtape replay.
pub const REPLAY_STATEMENTS_TOTAL: &str = "pgtape_replay_statements_total";
pub const REPLAY_STATEMENT_DURATION_SECONDS: &str = "pgtape_replay_statement_duration_seconds";
pub const REPLAY_LAG_SECONDS: &str = "pgtape_replay_lag_seconds";
pub const REPLAY_DELAY_SECONDS: &str = "pgtape_replay_delay_seconds";
pub const REPLAY_ORDER_WAIT_SECONDS: &str = "pgtape_replay_order_wait_seconds";
pub const REPLAY_ORDER_RELEASED_TOTAL: &str = "pgtape_replay_order_released_total";
pub const REPLAY_ERRORS_TOTAL: &str = "pgtape_replay_errors_total";
pub const REPLAY_DIFFERING_TOTAL: &str = "pgtape_replay_differing_total";
pub const REPLAY_STATEMENTS_PLANNED: &str = "pgtape_replay_statements_planned";
pub const REPLAY_PROGRESS_RATIO: &str = "pgtape_replay_progress_ratio";
pub const REPLAY_SESSIONS_ACTIVE: &str = "pgtape_replay_sessions_active";

/// Every exported name with its kind and help text.
pub const ALL: &[(&str, Kind, &str)] = &[
    (
        BUILD_INFO,
        Kind::Gauge,
        "Always 1; labels: version, command",
    ),
    (READY, Kind::Gauge, "1 when /health answers 200"),
    (
        PROXY_CLIENT_CONNECTIONS,
        Kind::Gauge,
        "Open client connections (admin console included)",
    ),
    (
        PROXY_CLIENT_CONNECTIONS_TOTAL,
        Kind::Counter,
        "Client connections accepted",
    ),
    (
        PROXY_UPSTREAM_CONNECTIONS,
        Kind::Gauge,
        "Open upstream connections",
    ),
    (
        PROXY_UPSTREAM_CONNECT_ERRORS_TOTAL,
        Kind::Counter,
        "Failed upstream connection attempts",
    ),
    (
        PROXY_ADMIN_CONNECTIONS_TOTAL,
        Kind::Counter,
        "Admin console connections; label result: accepted | refused",
    ),
    (
        PROXY_STATEMENTS_TOTAL,
        Kind::Counter,
        "Statements executed through the proxy; label protocol",
    ),
    (
        PROXY_BYTES_TOTAL,
        Kind::Counter,
        "Bytes forwarded; label direction: client_to_upstream | upstream_to_client",
    ),
    (
        PROXY_STATEMENT_DURATION_SECONDS,
        Kind::Histogram,
        "Statement latency seen by the proxy",
    ),
    (
        PROXY_STATEMENT_ERRORS_TOTAL,
        Kind::Counter,
        "Failed statements; label class: the SQLSTATE class (2 characters)",
    ),
    (
        CAPTURE_RECORDS_WRITTEN_TOTAL,
        Kind::Counter,
        "Capture rows written to segments",
    ),
    (
        CAPTURE_RECORDS_DROPPED_TOTAL,
        Kind::Counter,
        "Capture events dropped (recorder behind or write failed)",
    ),
    (
        CAPTURE_RECORDS_PAUSED_TOTAL,
        Kind::Counter,
        "Statements not recorded because capture was paused",
    ),
    (
        CAPTURE_SEGMENTS_TOTAL,
        Kind::Counter,
        "Capture segments opened",
    ),
    (CAPTURE_FILES_TOTAL, Kind::Counter, "Parquet files produced"),
    (
        CAPTURE_QUEUE_DEPTH,
        Kind::Gauge,
        "Events waiting in the tap channel",
    ),
    (
        CAPTURE_PAUSED,
        Kind::Gauge,
        "1 while capture is paused (PAUSE CAPTURE)",
    ),
    (
        WORKLOAD_OPERATIONS_TOTAL,
        Kind::Counter,
        "Workload operations; labels kind, outcome: ok | error",
    ),
    (
        WORKLOAD_OPERATION_DURATION_SECONDS,
        Kind::Histogram,
        "Operation latency from its scheduled start; label kind",
    ),
    (
        WORKLOAD_POOL_ACQUIRE_SECONDS,
        Kind::Histogram,
        "Time to acquire a pooled connection; label kind",
    ),
    (
        WORKLOAD_EVENTS_TOTAL,
        Kind::Counter,
        "Analytics events generated; label event_type",
    ),
    (
        WORKLOAD_POOL_CONNECTIONS,
        Kind::Gauge,
        "Pool connections; label state: busy | idle",
    ),
    (
        WORKLOAD_POOL_MAX_CONNECTIONS,
        Kind::Gauge,
        "Pool size limit (--connections)",
    ),
    (
        WORKLOAD_CACHE_LOOKUPS_TOTAL,
        Kind::Counter,
        "Cache lookups; label result: hit | miss",
    ),
    (
        WORKLOAD_REDIS_DURATION_SECONDS,
        Kind::Histogram,
        "Redis command latency; label op",
    ),
    (
        WORKLOAD_BACKLOGGED_TOTAL,
        Kind::Counter,
        "Operations that waited for a free slot (generator or database behind)",
    ),
    (
        WORKLOAD_ACTIVE_ORGANIZATIONS,
        Kind::Gauge,
        "Organisations with events in the last minute",
    ),
    (
        WORKLOAD_CONVERSION_RATIO,
        Kind::Gauge,
        "Conversions per page view over the last minute",
    ),
    (
        REPLAY_STATEMENTS_TOTAL,
        Kind::Counter,
        "Replayed statements; labels side: source | target, outcome: ok | error",
    ),
    (
        REPLAY_STATEMENT_DURATION_SECONDS,
        Kind::Histogram,
        "Replayed statement latency; label side",
    ),
    (
        REPLAY_LAG_SECONDS,
        Kind::Histogram,
        "How late a statement started against its scheduled time; label side",
    ),
    (
        REPLAY_DELAY_SECONDS,
        Kind::Histogram,
        "The replayer's own part of the lag: from when a statement could start (due, its session's previous statement done) to its start; label side",
    ),
    (
        REPLAY_ORDER_WAIT_SECONDS,
        Kind::Histogram,
        "How long statements that waited for other sessions' sync points (--order commit) waited; label side",
    ),
    (
        REPLAY_ORDER_RELEASED_TOTAL,
        Kind::Counter,
        "Statements whose wait for order was ended by a release (a replay-made lock cycle, or --order-timeout) rather than by the sync points completing; label side",
    ),
    (
        REPLAY_ERRORS_TOTAL,
        Kind::Counter,
        "Replayed statements that failed; labels side, class (SQLSTATE class)",
    ),
    (
        REPLAY_DIFFERING_TOTAL,
        Kind::Counter,
        "Replayed statements whose result differs from the captured one (command tag, rows, result hashes, SQLSTATE), counted as they are written; label side. Divergences of target against source are the diff's, after the replay",
    ),
    (
        REPLAY_STATEMENTS_PLANNED,
        Kind::Gauge,
        "Statements the replay will issue per side",
    ),
    (
        REPLAY_PROGRESS_RATIO,
        Kind::Gauge,
        "Share of the capture replayed (0..1)",
    ),
    (
        REPLAY_SESSIONS_ACTIVE,
        Kind::Gauge,
        "Replay sessions open; label side",
    ),
];

/// The series names Prometheus shows for `name` (a histogram's three).
pub fn series(name: &str, kind: Kind) -> Vec<String> {
    match kind {
        Kind::Histogram => ["_bucket", "_sum", "_count"]
            .iter()
            .map(|s| format!("{name}{s}"))
            .collect(),
        _ => vec![name.to_string()],
    }
}

/// True if `series` (as a dashboard or alert writes it) is one pgtape exports.
pub fn is_exported(series_name: &str) -> bool {
    ALL.iter()
        .any(|(n, k, _)| self::series(n, *k).iter().any(|s| s == series_name))
}
