//! The recorder: a std thread (never a tokio worker) that owns the tap
//! channel's receiving end, batches events (by count or age, so a killed proxy
//! loses at most one batch), appends the batches to the open segment and
//! rotates segments by size or age. A second thread converts closed segments
//! to Parquet so a conversion never stalls the draining of the channel.
//!
//! Drops (the tap found the channel full, or a write failed) are counted,
//! logged at most once per interval and written into each file's metadata.

use crate::proxy::pump::now_us;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::CaptureError;
use super::convert::{convert_segment, leftover_segments};
use super::live::RecorderLive;
use super::rows::RowsBuilder;
use super::schema::{CaptureInfo, meta};
use super::segment::Segment;
use crate::proxy::event::{TapCounters, TapEvent, TapSender, tap_channel};

/// How long the recorder sleeps after draining a burst of events (events
/// queue meanwhile; the channel holds far more than this much traffic).
const DRAIN_PAUSE: Duration = Duration::from_millis(2);

/// How the recorder batches, rotates and (for tests) misbehaves.
#[derive(Debug, Clone)]
pub struct RecorderConfig {
    pub dir: PathBuf,
    pub upstream: String,
    pub rotate_size: u64,
    pub rotate_interval: Duration,
    pub redact_params: bool,
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
        for seg in leftover_segments(&cfg.dir)? {
            match convert_segment(&seg, &[])? {
                Some(c) => {
                    tracing::info!(file = %c.parquet.display(), rows = c.rows, torn = c.torn, "converted a leftover segment");
                    files.push(c.parquet);
                }
                None => {
                    tracing::info!(segment = %seg.display(), "removed an empty leftover segment")
                }
            }
        }
        let info = CaptureInfo {
            capture_id: format!("{:016x}", rand::random::<u64>()),
            upstream: cfg.upstream.clone(),
            started_at_us: now_us(),
            params_redacted: cfg.redact_params,
        };
        let (sender, rx, counters) = tap_channel(cfg.queue.max(1));
        let stop = Arc::new(AtomicBool::new(false));
        let live = RecorderLive::new();
        live.files.store(files.len() as u64, Ordering::Relaxed);
        let mut worker = Worker {
            rows: RowsBuilder::new(&info),
            info: info.clone(),
            cfg,
            counters,
            stop: stop.clone(),
            live: live.clone(),
            segment: None,
            segments_opened: 0,
            batch_started: None,
            dropped_attributed: 0,
            write_dropped: 0,
            dropped_logged: 0,
            last_drop_log: Instant::now(),
            stats: RecorderStats {
                files,
                ..Default::default()
            },
            converter: None,
        };
        let thread = std::thread::Builder::new()
            .name("pgtape-recorder".into())
            .spawn(move || {
                let r = worker.run(rx);
                worker.live.alive.store(false, Ordering::Release);
                r
            })
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

struct Converter {
    tx: Sender<(PathBuf, Vec<(String, String)>)>,
    thread: JoinHandle<()>,
}

fn start_converter(
    files: Arc<Mutex<Vec<PathBuf>>>,
    live: Arc<RecorderLive>,
) -> Result<Converter, CaptureError> {
    let (tx, rx) = channel::<(PathBuf, Vec<(String, String)>)>();
    let thread = std::thread::Builder::new()
        .name("pgtape-convert".into())
        .spawn(move || {
            for (seg, extra) in rx {
                match convert_segment(&seg, &extra) {
                    Ok(Some(c)) => {
                        tracing::debug!(file = %c.parquet.display(), rows = c.rows, "segment converted");
                        live.files.fetch_add(1, Ordering::Relaxed);
                        *live.last_file.lock().unwrap_or_else(|e| e.into_inner()) =
                            Some(c.parquet.clone());
                        files.lock().expect("converter list").push(c.parquet);
                    }
                    Ok(None) => {}
                    // The segment stays; the next start converts it.
                    Err(e) => tracing::error!("cannot convert segment: {e}"),
                }
            }
        })
        .map_err(|e| CaptureError::Thread(e.to_string()))?;
    Ok(Converter { tx, thread })
}

struct Worker {
    cfg: RecorderConfig,
    info: CaptureInfo,
    counters: Arc<TapCounters>,
    stop: Arc<AtomicBool>,
    live: Arc<RecorderLive>,
    rows: RowsBuilder,
    segment: Option<Segment>,
    segments_opened: u64,
    batch_started: Option<Instant>,
    dropped_attributed: u64,
    write_dropped: u64,
    dropped_logged: u64,
    last_drop_log: Instant,
    stats: RecorderStats,
    converter: Option<(Converter, Arc<Mutex<Vec<PathBuf>>>)>,
}

impl Worker {
    /// Test hook: a recorder made artificially slow.
    fn slow_hook(&self) {
        if !self.cfg.slow_per_event.is_zero() && !self.stop.load(Ordering::Acquire) {
            std::thread::sleep(self.cfg.slow_per_event);
        }
    }

    fn run(&mut self, rx: Receiver<TapEvent>) -> Result<RecorderStats, CaptureError> {
        let files = Arc::new(Mutex::new(Vec::new()));
        self.converter = Some((start_converter(files.clone(), self.live.clone())?, files));
        let tick = self.cfg.batch_interval.min(Duration::from_millis(100));
        loop {
            let wait = match self.batch_started {
                Some(t) => self
                    .cfg
                    .batch_interval
                    .saturating_sub(t.elapsed())
                    .min(tick),
                None => tick,
            };
            // Under load, drain what queued up and then sleep briefly rather
            // than park on the channel: a parked receiver costs every session
            // a futex wake-up per event; a sleeping one costs nothing.
            let mut got = 0usize;
            let mut gone = false;
            loop {
                match rx.try_recv() {
                    Ok(ev) => {
                        self.slow_hook();
                        self.push(&ev);
                        got += 1;
                        if got >= self.cfg.batch_rows {
                            break;
                        }
                    }
                    Err(std::sync::mpsc::TryRecvError::Empty) => break,
                    Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                        gone = true;
                        break;
                    }
                }
            }
            if gone {
                break;
            }
            if got > 0 {
                std::thread::sleep(DRAIN_PAUSE.min(wait));
            } else {
                match rx.recv_timeout(wait) {
                    Ok(ev) => {
                        self.slow_hook();
                        self.push(&ev);
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
            if self.stop.load(Ordering::Acquire) {
                // Whatever the sessions managed to send before the stop.
                while let Ok(ev) = rx.try_recv() {
                    self.push(&ev);
                }
                break;
            }
            let due = self
                .batch_started
                .is_some_and(|t| t.elapsed() >= self.cfg.batch_interval);
            if self.rows.len() >= self.cfg.batch_rows || due {
                self.flush_batch();
            }
            if self.segment.as_ref().is_some_and(|s| {
                s.bytes() >= self.cfg.rotate_size || s.age() >= self.cfg.rotate_interval
            }) {
                self.rotate();
            }
            self.log_drops(false);
        }
        self.flush_batch();
        self.rotate();
        self.log_drops(true);
        let (conv, files) = self.converter.take().expect("started above");
        drop(conv.tx);
        let _ = conv.thread.join();
        self.stats
            .files
            .extend(files.lock().expect("converter list").drain(..));
        self.stats.dropped = self.total_dropped();
        Ok(std::mem::take(&mut self.stats))
    }

    fn push(&mut self, ev: &TapEvent) {
        self.stats.events += 1;
        self.live.events.fetch_add(1, Ordering::Relaxed);
        if self.batch_started.is_none() {
            self.batch_started = Some(Instant::now());
        }
        if let (Some(shape), TapEvent::Statement(st)) = (self.rows.push(ev), ev) {
            self.live
                .top
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .observe(st, &shape);
        }
    }

    fn total_dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed) + self.write_dropped
    }

    fn flush_batch(&mut self) {
        self.batch_started = None;
        if self.rows.is_empty() {
            return;
        }
        let n = self.rows.len() as u64;
        let batch = match self.rows.finish() {
            Ok(b) => b,
            Err(e) => {
                tracing::error!("cannot build a capture batch: {e}");
                self.write_dropped += n;
                self.live.write_dropped.fetch_add(n, Ordering::Relaxed);
                return;
            }
        };
        if self.segment.is_none() {
            self.segments_opened += 1;
            match Segment::create(&self.cfg.dir, &self.info, now_us(), self.segments_opened) {
                Ok(s) => {
                    self.live.segments.fetch_add(1, Ordering::Relaxed);
                    *self
                        .live
                        .open_segment
                        .lock()
                        .unwrap_or_else(|e| e.into_inner()) = Some(s.path().to_path_buf());
                    self.segment = Some(s);
                }
                Err(e) => {
                    self.write_dropped += n;
                    self.live.write_dropped.fetch_add(n, Ordering::Relaxed);
                    self.warn_write(&e);
                    return;
                }
            }
        }
        let seg = self.segment.as_mut().expect("opened above");
        match seg.write(&batch) {
            Ok(()) => {
                self.stats.rows += n;
                self.live.rows.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => {
                // Disk full or the like: this batch is lost; start afresh next time.
                self.write_dropped += n;
                self.live.write_dropped.fetch_add(n, Ordering::Relaxed);
                self.warn_write(&e);
                self.rotate();
            }
        }
    }

    fn warn_write(&mut self, e: &CaptureError) {
        if self.last_drop_log.elapsed() >= self.cfg.drop_log_interval || self.dropped_logged == 0 {
            tracing::error!("capture write failed, rows dropped: {e}");
        }
    }

    /// Closes the open segment and queues it for conversion.
    fn rotate(&mut self) {
        let Some(seg) = self.segment.take() else {
            return;
        };
        *self
            .live
            .open_segment
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = None;
        // Drops since the previous segment closed belong to this one, so the
        // files' DROPPED values add up to the capture's total.
        let total = self.total_dropped();
        let extra = vec![
            (
                meta::DROPPED.to_string(),
                (total - self.dropped_attributed).to_string(),
            ),
            (meta::DROPPED_TOTAL.to_string(), total.to_string()),
        ];
        self.dropped_attributed = total;
        match seg.close() {
            Ok(path) => {
                if let Some((c, _)) = &self.converter {
                    let _ = c.tx.send((path, extra));
                }
            }
            // Left on disk as a leftover; the next start converts what it can.
            Err(e) => tracing::error!("cannot close capture segment: {e}"),
        }
    }

    fn log_drops(&mut self, force: bool) {
        if !force && self.last_drop_log.elapsed() < self.cfg.drop_log_interval {
            return;
        }
        let total = self.total_dropped();
        if total > self.dropped_logged {
            tracing::warn!(
                dropped = total - self.dropped_logged,
                dropped_total = total,
                "capture dropped events: the recorder fell behind or the disk is full \
                 (clients were not slowed; check the disk, or raise --rotate-size/--capture-queue)"
            );
            self.dropped_logged = total;
        }
        self.last_drop_log = Instant::now();
    }
}
