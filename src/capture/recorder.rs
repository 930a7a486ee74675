//! The recorder: a std thread (never a tokio worker) that owns the tap
//! channel's receiving end, batches events (by count or age, so a killed proxy
//! loses at most one batch), appends the batches to the open segment and
//! rotates segments by size or age. A second thread converts closed segments
//! to Parquet so a conversion never stalls the draining of the channel, and
//! tries again those a full disk kept from converting.
//!
//! Drops (the tap found the channel full, or a write failed) are counted,
//! logged at most once per interval and written into each file's metadata.
//! The threads themselves are in [`worker`] and [`converter`].

use crate::clock::now_us;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

mod converter;
mod worker;

use super::CaptureError;
use super::convert::{convert_leftover, leftover_segments};
use super::live::RecorderLive;
use super::schema::CaptureInfo;
use crate::capture::event::{TapCounters, TapLimits, TapSender, tap_channel};
use worker::Worker;

/// How the recorder batches, rotates and (for tests) misbehaves.
#[derive(Debug, Clone)]
pub struct RecorderConfig {
    pub dir: PathBuf,
    pub upstream: String,
    pub rotate_size: u64,
    pub rotate_interval: Duration,
    pub redact_params: bool,
    /// COPY data and result values kept per statement (`--max-copy-bytes`,
    /// `--result-values-rows`, `--result-values-bytes`); `redact` follows
    /// `redact_params`.
    pub limits: TapLimits,
    /// A batch is written when it has this many rows ...
    pub batch_rows: usize,
    /// ... or its first row is this old.
    pub batch_interval: Duration,
    /// Capacity of the tap channel, in events.
    pub queue: usize,
    /// Drops are logged at most once per this interval.
    pub drop_log_interval: Duration,
    /// Test hook: sleep this long per event to simulate a slow disk.
    pub slow_per_event: Duration,
}

impl RecorderConfig {
    pub fn new(dir: impl Into<PathBuf>, upstream: impl Into<String>) -> Self {
        RecorderConfig {
            dir: dir.into(),
            upstream: upstream.into(),
            rotate_size: 128 << 20,
            rotate_interval: Duration::from_secs(60),
            redact_params: false,
            limits: TapLimits::default(),
            batch_rows: 8192,
            batch_interval: Duration::from_millis(200),
            queue: 65_536,
            drop_log_interval: Duration::from_secs(10),
            slow_per_event: Duration::ZERO,
        }
    }
}

/// What a recorder did, returned by [`Recorder::close`].
#[derive(Debug, Clone, Default)]
pub struct RecorderStats {
    /// Events received from the tap.
    pub events: u64,
    /// Rows written to segments.
    pub rows: u64,
    /// Events the tap dropped (channel full) plus rows lost to write errors.
    pub dropped: u64,
    /// Parquet files produced by this run (leftovers included), in order.
    pub files: Vec<PathBuf>,
}

/// A running recorder; [`Recorder::sender`] goes into `ProxyConfig::tap`.
pub struct Recorder {
    sender: TapSender,
    info: CaptureInfo,
    stop: Arc<AtomicBool>,
    live: Arc<RecorderLive>,
    thread: JoinHandle<Result<RecorderStats, CaptureError>>,
}

impl Recorder {
    /// Creates the directory (mode 0700), converts leftover segments of a
    /// killed run, then starts the threads.
    pub fn start(cfg: RecorderConfig) -> Result<Recorder, CaptureError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&cfg.dir)
            .map_err(|e| CaptureError::io(&cfg.dir, e))?;
        let mut files = Vec::new();
        let mut retry = Vec::new();
        for seg in leftover_segments(&cfg.dir)? {
            match convert_leftover(&seg) {
                Ok(Some(c)) => {
                    tracing::info!(file = %c.parquet.display(), rows = c.rows, torn = c.torn, "converted a leftover segment");
                    files.push(c.parquet);
                }
                Ok(None) => {
                    tracing::info!(segment = %seg.display(), "removed an empty leftover segment")
                }
                // A full disk must not keep the proxy from forwarding: the
                // converter tries again once space returns.
                Err(e) => {
                    tracing::error!("cannot convert a leftover segment: {e}; it is tried again");
                    retry.push(seg);
                }
            }
        }
        let info = CaptureInfo {
            capture_id: format!("{:016x}", rand::random::<u64>()),
            upstream: cfg.upstream.clone(),
            started_at_us: now_us(),
            params_redacted: cfg.redact_params,
            max_copy_bytes: cfg.limits.max_copy_bytes,
        };
        let (sender, rx, counters) = tap_channel(cfg.queue.max(1));
        let sender = sender.with_limits(TapLimits {
            redact: cfg.redact_params,
            ..cfg.limits
        });
        let stop = Arc::new(AtomicBool::new(false));
        let live = RecorderLive::new();
        live.files.store(files.len() as u64, Ordering::Relaxed);
        let worker = Worker::new(
            cfg,
            info.clone(),
            counters,
            stop.clone(),
            live.clone(),
            files,
            retry,
        );
        let thread = std::thread::Builder::new()
            .name("pgtape-recorder".into())
            .spawn(move || worker.run_to_end(rx))
            .map_err(|e| CaptureError::Thread(e.to_string()))?;
        Ok(Recorder {
            sender,
            info,
            stop,
            live,
            thread,
        })
    }

    /// A sender for the proxy's sessions.
    pub fn sender(&self) -> TapSender {
        self.sender.clone()
    }

    pub fn info(&self) -> &CaptureInfo {
        &self.info
    }

    pub fn counters(&self) -> &Arc<TapCounters> {
        self.sender.counters()
    }

    /// Live counts, the open segment and per-fingerprint totals.
    pub fn live(&self) -> &Arc<RecorderLive> {
        &self.live
    }

    /// Writes what was received, closes and converts the open segment.
    /// Events sent after this call are dropped (and counted by the sender).
    pub fn close(self) -> Result<RecorderStats, CaptureError> {
        self.stop.store(true, Ordering::Release);
        drop(self.sender);
        self.thread
            .join()
            .map_err(|_| CaptureError::Thread("the recorder thread panicked".into()))?
    }
}
