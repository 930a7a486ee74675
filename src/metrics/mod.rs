//! Prometheus metrics and health for every long-running command.
//!
//! - [`names`]: every metric name, in one place (the dashboards test reads it).
//! - [`health`]: readiness checks behind `/health` (200, or 503 with the reasons).
//! - [`http`]: the tiny HTTP listener serving `/metrics` and `/health`.
//! - [`replay`]: the helpers the replayer calls, one per thing it measures.
//!
//! A foundation: the proxy's and the workload's handles, which read their
//! own types, live beside them (`proxy::metrics`, `workload::metrics`) and
//! use the names and the [`Exporter`] from here.
//!
//! Recording goes through the `metrics` facade into a
//! `metrics-exporter-prometheus` recorder owned by an [`Exporter`]. The proxy
//! registers its handles once against its exporter's recorder (so two proxies
//! in one process, as in tests, never mix counts); `workload` and `replay`
//! install their exporter as the process's global recorder and record with
//! the facade's macros.

pub mod health;
pub mod http;
pub mod names;
pub mod replay;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use metrics::{Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

pub use health::Health;

/// Histogram buckets, in seconds: 100 µs to 60 s.
pub const BUCKETS_SECONDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error(
        "cannot listen on --metrics {addr}: {source}; pick a free port, e.g. --metrics 127.0.0.1:9187"
    )]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A Prometheus recorder, its rendering handle and the process's health.
#[derive(Clone)]
pub struct Exporter {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
    pub health: Arc<Health>,
    /// Run before each render: copy counts kept elsewhere into metrics.
    hooks: Arc<Mutex<Vec<Hook>>>,
}

type Hook = Box<dyn Fn() + Send + Sync>;

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter").finish_non_exhaustive()
    }
}

impl Exporter {
    /// A fresh recorder for `command` (`proxy`, `workload`, `replay`), with
    /// help texts and `pgtape_build_info`.
    pub fn new(command: &'static str) -> Exporter {
        let recorder = PrometheusBuilder::new()
            .set_buckets(BUCKETS_SECONDS)
            .expect("non-empty buckets")
            .build_recorder();
        let handle = recorder.handle();
        let exporter = Exporter {
            recorder: Arc::new(recorder),
            handle,
            health: Arc::new(Health::default()),
            hooks: Arc::default(),
        };
        for (name, _, help) in names::ALL {
            let unit = name.ends_with("_seconds").then_some(Unit::Seconds);
            exporter.recorder.describe_gauge(
                KeyName::from_const_str(name),
                unit,
                SharedString::const_str(help),
            );
        }
        exporter.with(|| {
            metrics::gauge!(names::BUILD_INFO, "version" => env!("CARGO_PKG_VERSION"), "command" => command)
                .set(1.0)
        });
        exporter
    }

    /// Runs `f` with this exporter's recorder as the facade's recorder, so the
    /// handles it registers belong to this exporter.
    pub fn with<T>(&self, f: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(&*self.recorder, f)
    }

    /// Runs `f` before every render (e.g. publish a recorder's counters).
    pub fn before_render(&self, f: impl Fn() + Send + Sync + 'static) {
        self.hooks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Box::new(f));
    }

    /// Makes this exporter the process's global recorder (for the facade's
    /// macros anywhere). Only the first call in a process succeeds; returns
    /// whether this one did.
    pub fn install_global(&self) -> bool {
        metrics::set_global_recorder(Shared(self.recorder.clone())).is_ok()
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        for hook in self.hooks.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            hook();
        }
        let ready = self.health.status().is_ok();
        self.with(|| metrics::gauge!(names::READY).set(if ready { 1.0 } else { 0.0 }));
        self.handle.run_upkeep();
        self.handle.render()
    }

    /// Binds `addr` and serves `/metrics` and `/health` on the current tokio
    /// runtime until the returned task is aborted.
    pub async fn serve(
        &self,
        addr: SocketAddr,
    ) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), MetricsError> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| MetricsError::Listen { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| MetricsError::Listen { addr, source })?;
        tracing::info!(metrics = %local, "serving /metrics and /health");
        Ok((local, tokio::spawn(http::serve(listener, self.clone()))))
    }
}

/// The shared recorder behind the global facade.
struct Shared(Arc<PrometheusRecorder>);

impl Recorder for Shared {
    fn describe_counter(&self, k: KeyName, u: Option<Unit>, d: SharedString) {
        self.0.describe_counter(k, u, d)
    }
    fn describe_gauge(&self, k: KeyName, u: Option<Unit>, d: SharedString) {
        self.0.describe_gauge(k, u, d)
    }
    fn describe_histogram(&self, k: KeyName, u: Option<Unit>, d: SharedString) {
        self.0.describe_histogram(k, u, d)
    }
    fn register_counter(&self, k: &Key, m: &Metadata<'_>) -> metrics::Counter {
        self.0.register_counter(k, m)
    }
    fn register_gauge(&self, k: &Key, m: &Metadata<'_>) -> metrics::Gauge {
        self.0.register_gauge(k, m)
    }
    fn register_histogram(&self, k: &Key, m: &Metadata<'_>) -> metrics::Histogram {
        self.0.register_histogram(k, m)
    }
}

/// The SQLSTATE class of `code` (its first two characters), or `??`.
pub fn sqlstate_class(code: &[u8]) -> &str {
    code.get(..2)
        .and_then(|c| std::str::from_utf8(c).ok())
        .filter(|c| c.bytes().all(|b| b.is_ascii_alphanumeric()))
        .unwrap_or("??")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names_are_unique_prefixed_and_carry_units() {
        let mut seen = std::collections::HashSet::new();
        for (name, kind, help) in names::ALL {
            assert!(seen.insert(*name), "{name} listed twice");
            assert!(name.starts_with("pgtape_") && !help.is_empty(), "{name}");
            match kind {
                names::Kind::Counter => assert!(name.ends_with("_total"), "{name}"),
                names::Kind::Histogram => assert!(name.ends_with("_seconds"), "{name}"),
                names::Kind::Gauge => assert!(!name.ends_with("_total"), "{name}"),
            }
        }
        assert!(names::is_exported(
            "pgtape_proxy_statement_duration_seconds_bucket"
        ));
        assert!(!names::is_exported(
            "pgtape_proxy_statement_duration_seconds_total"
        ));
    }

    #[test]
    fn sqlstate_classes_are_two_characters_or_unknown() {
        assert_eq!(sqlstate_class(b"42P01"), "42");
        assert_eq!(sqlstate_class(b"4"), "??");
        assert_eq!(sqlstate_class(b"\xff\xfe1"), "??");
    }
}
