//! The proxy's metrics as handles registered once at start: recording is an
//! atomic add (counters) or a lock-free bucket update (histograms), never a
//! registry lookup, never a lock shared across sessions. Statements are
//! recorded once each by the tap, bytes once per read chunk by the pump.

use std::sync::OnceLock;
use std::sync::atomic::Ordering;

use metrics::{Counter, Gauge, Histogram};

use crate::capture::event::{Protocol, StatementEvent, TapCounters};
use crate::capture::live::RecorderLive;
use crate::metrics::{Exporter, names};

/// SQLSTATE classes are two characters of [0-9A-Z].
const CLASSES: usize = 36 * 36;

pub struct ProxyMetrics {
    exporter: Option<Exporter>,
    pub client_connections: Gauge,
    pub client_connections_total: Counter,
    pub upstream_connections: Gauge,
    pub upstream_connect_errors: Counter,
    pub admin_accepted: Counter,
    pub admin_refused: Counter,
    simple: Counter,
    extended: Counter,
    pub bytes_from_client: Counter,
    pub bytes_from_upstream: Counter,
    duration: Histogram,
    /// Registered on first use of each class; lock-free afterwards.
    errors: Box<[OnceLock<Counter>]>,
}

impl std::fmt::Debug for ProxyMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyMetrics")
            .field("exporting", &self.exporter.is_some())
            .finish_non_exhaustive()
    }
}

impl ProxyMetrics {
    /// Handles that record nothing (no `--metrics`).
    pub fn noop() -> ProxyMetrics {
        // Not the global recorder: a process-wide exporter (workload, replay)
        // must not count the traffic of a proxy that exports nothing.
        metrics::with_local_recorder(&metrics::NoopRecorder, || Self::build(None))
    }

    /// Handles registered with `exporter`.
    pub fn new(exporter: &Exporter) -> ProxyMetrics {
        exporter.with(|| Self::build(Some(exporter.clone())))
    }

    fn build(exporter: Option<Exporter>) -> ProxyMetrics {
        use metrics::{counter, gauge, histogram};
        ProxyMetrics {
            exporter,
            client_connections: gauge!(names::PROXY_CLIENT_CONNECTIONS),
            client_connections_total: counter!(names::PROXY_CLIENT_CONNECTIONS_TOTAL),
            upstream_connections: gauge!(names::PROXY_UPSTREAM_CONNECTIONS),
            upstream_connect_errors: counter!(names::PROXY_UPSTREAM_CONNECT_ERRORS_TOTAL),
            admin_accepted: counter!(names::PROXY_ADMIN_CONNECTIONS_TOTAL, "result" => "accepted"),
            admin_refused: counter!(names::PROXY_ADMIN_CONNECTIONS_TOTAL, "result" => "refused"),
            simple: counter!(names::PROXY_STATEMENTS_TOTAL, "protocol" => "simple"),
            extended: counter!(names::PROXY_STATEMENTS_TOTAL, "protocol" => "extended"),
            bytes_from_client: counter!(names::PROXY_BYTES_TOTAL, "direction" => "client_to_upstream"),
            bytes_from_upstream: counter!(names::PROXY_BYTES_TOTAL, "direction" => "upstream_to_client"),
            duration: histogram!(names::PROXY_STATEMENT_DURATION_SECONDS),
            errors: (0..CLASSES).map(|_| OnceLock::new()).collect(),
        }
    }

    /// One executed statement (called by the tap when it completes).
    pub fn statement(&self, st: &StatementEvent) {
        if self.exporter.is_none() {
            return;
        }
        match st.protocol {
            Protocol::Simple => self.simple.increment(1),
            Protocol::Extended => self.extended.increment(1),
        }
        self.duration.record(st.duration_us.max(0) as f64 / 1e6);
        if let Some((code, _)) = &st.error {
            self.error(code);
        }
    }

    fn error(&self, code: &[u8]) {
        let class = crate::metrics::sqlstate_class(code);
        let slot = class
            .bytes()
            .map(|b| match b {
                b'0'..=b'9' => (b - b'0') as usize,
                b'A'..=b'Z' => (b - b'A') as usize + 10,
                _ => usize::MAX,
            })
            .try_fold(0usize, |acc, d| (d < 36).then(|| acc * 36 + d));
        let Some(exporter) = &self.exporter else {
            return;
        };
        let register = || {
            let class = class.to_string();
            exporter
                .with(|| metrics::counter!(names::PROXY_STATEMENT_ERRORS_TOTAL, "class" => class))
        };
        match slot.and_then(|s| self.errors.get(s)) {
            Some(cell) => cell.get_or_init(register).increment(1),
            None => register().increment(1),
        }
    }

    /// Publishes the recorder's counters (called at scrape time).
    pub fn capture(&self, tap: &TapCounters, live: &RecorderLive) {
        let Some(exporter) = &self.exporter else {
            return;
        };
        let sent = tap.sent.load(Ordering::Relaxed);
        let received = live.events.load(Ordering::Relaxed);
        exporter.with(|| {
            use metrics::{counter, gauge};
            counter!(names::CAPTURE_RECORDS_WRITTEN_TOTAL)
                .absolute(live.rows.load(Ordering::Relaxed));
            counter!(names::CAPTURE_RECORDS_DROPPED_TOTAL).absolute(
                tap.dropped.load(Ordering::Relaxed) + live.write_dropped.load(Ordering::Relaxed),
            );
            counter!(names::CAPTURE_RECORDS_PAUSED_TOTAL)
                .absolute(tap.paused_skipped.load(Ordering::Relaxed));
            counter!(names::CAPTURE_SEGMENTS_TOTAL).absolute(live.segments.load(Ordering::Relaxed));
            counter!(names::CAPTURE_FILES_TOTAL).absolute(live.files.load(Ordering::Relaxed));
            gauge!(names::CAPTURE_QUEUE_DEPTH).set(sent.saturating_sub(received) as f64);
            gauge!(names::CAPTURE_PAUSED).set(if tap.paused.load(Ordering::Relaxed) {
                1.0
            } else {
                0.0
            });
        });
    }
}

/// Publishes `capture`'s counters at every scrape and adds the `recorder`
/// health check (the recorder thread is alive).
pub fn watch_capture(
    exporter: &Exporter,
    metrics: std::sync::Arc<ProxyMetrics>,
    capture: super::admin::CaptureView,
) {
    let live = capture.live.clone();
    exporter.health.check("recorder", move || {
        if live.alive.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err("the capture recorder thread has stopped; see the log for its error".into())
        }
    });
    exporter.before_render(move || metrics.capture(&capture.counters, &capture.live));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_exporters_count_apart_and_render_histograms() {
        let (a, b) = (Exporter::new("proxy"), Exporter::new("proxy"));
        let (ma, _mb) = (ProxyMetrics::new(&a), ProxyMetrics::new(&b));
        ma.bytes_from_client.increment(7);
        let text = a.render();
        assert!(
            text.contains("pgtape_proxy_bytes_total{direction=\"client_to_upstream\"} 7"),
            "{text}"
        );
        assert!(text.contains("pgtape_ready 1"), "{text}");
        assert!(!b.render().contains("} 7\n"));
        a.health.check("always", || Err("down for the test".into()));
        assert_eq!(
            a.health.status(),
            Err(vec!["always: down for the test".to_string()])
        );
        assert!(a.render().contains("pgtape_ready 0"));
    }
}
