//! The recorder's thread: drains the tap channel into batches and segments
//! ([`Worker`]); closed segments go to the converter thread.
//!
//! What must stay true on a full disk: a failed write drops its batch
//! (counted) and keeps the open segment, cut back to its last whole batch;
//! writes are tried again after a back-off (200 ms doubling to 5 s), and no
//! new file is opened and the segment does not rotate before that, so a disk
//! that stays full costs no file churn and writing resumes where it stopped.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::converter::{Converter, Job};
use super::{RecorderConfig, RecorderStats};
use crate::capture::CaptureError;
use crate::capture::event::{TapCounters, TapEvent};
use crate::capture::live::RecorderLive;
use crate::capture::rows::RowsBuilder;
use crate::capture::schema::{CaptureInfo, meta};
use crate::capture::segment::Segment;
use crate::clock::now_us;

/// How long the recorder sleeps after draining a burst of events (events
/// queue meanwhile; the channel holds far more than this much traffic).
const DRAIN_PAUSE: Duration = Duration::from_millis(2);
/// Back-off after a failed write: from the first to the longest wait.
const BACKOFF_FIRST: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Writes are failing (disk full): when to try again, and how long the
/// last wait was.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    wait: Duration,
    next_try: Instant,
    since: Instant,
}

pub(super) struct Worker {
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
    /// Leftovers that could not be converted at start, for the converter.
    retry: Vec<Job>,
    backoff: Option<Backoff>,
}

impl Worker {
    pub(super) fn new(
        cfg: RecorderConfig,
        info: CaptureInfo,
        counters: Arc<TapCounters>,
        stop: Arc<AtomicBool>,
        live: Arc<RecorderLive>,
        files: Vec<PathBuf>,
        retry: Vec<PathBuf>,
    ) -> Worker {
        Worker {
            rows: RowsBuilder::new(&info),
            info,
            cfg,
            counters,
            stop,
            live,
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
            retry: retry
                .into_iter()
                .map(|seg| Job::failed_once(seg, vec![(meta::RECOVERED.into(), "true".into())]))
                .collect(),
            backoff: None,
        }
    }

    /// The recorder thread: drains until every sender is gone or the stop.
    pub(super) fn run_to_end(
        mut self,
        rx: Receiver<TapEvent>,
    ) -> Result<RecorderStats, CaptureError> {
        let r = self.run(rx);
        self.live.alive.store(false, Ordering::Release);
        r
    }

    /// Test hook: a recorder made artificially slow.
    fn slow_hook(&self) {
        if !self.cfg.slow_per_event.is_zero() && !self.stop.load(Ordering::Acquire) {
            std::thread::sleep(self.cfg.slow_per_event);
        }
    }

    fn run(&mut self, rx: Receiver<TapEvent>) -> Result<RecorderStats, CaptureError> {
        let files = Arc::new(Mutex::new(Vec::new()));
        let retry = std::mem::take(&mut self.retry);
        self.converter = Some((
            Converter::start(files.clone(), self.live.clone(), retry)?,
            files,
        ));
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
            // Not while waiting out a failed write (a new segment could not
            // be written either), but a due rotation is not put off for
            // good: traffic may have stopped, leaving no write to succeed.
            if self.backoff.is_none_or(|b| Instant::now() >= b.next_try)
                && self.segment.as_ref().is_some_and(|s| {
                    s.bytes() >= self.cfg.rotate_size || s.age() >= self.cfg.rotate_interval
                })
            {
                self.rotate();
            }
            self.log_drops(false);
        }
        self.flush_batch();
        self.rotate();
        self.log_drops(true);
        let (conv, files) = self.converter.take().expect("started above");
        conv.finish();
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
                self.drop_rows(n);
                return;
            }
        };
        if self.backoff.is_some_and(|b| Instant::now() < b.next_try) {
            self.drop_rows(n);
            return;
        }
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
                    self.drop_rows(n);
                    self.write_failed(&e);
                    return;
                }
            }
        }
        let seg = self.segment.as_mut().expect("opened above");
        match seg.write(&batch) {
            Ok(()) => {
                self.stats.rows += n;
                self.live.rows.fetch_add(n, Ordering::Relaxed);
                if let Some(b) = self.backoff.take() {
                    tracing::info!(
                        after = ?b.since.elapsed(),
                        "capture writes again; rows were dropped meanwhile"
                    );
                }
            }
            Err(e) => {
                // Disk full or the like: this batch is lost; the segment,
                // cut back to its last whole batch, takes the next one.
                let broken = seg.is_broken();
                self.drop_rows(n);
                self.write_failed(&e);
                if broken {
                    self.rotate();
                }
            }
        }
    }

    fn drop_rows(&mut self, n: u64) {
        self.write_dropped += n;
        self.live.write_dropped.fetch_add(n, Ordering::Relaxed);
    }

    /// A write failed: log it (at most once per drop-log interval) and wait
    /// longer before the next try.
    fn write_failed(&mut self, e: &CaptureError) {
        // Once per episode; the periodic drop warning says the rest.
        if self.backoff.is_none() {
            tracing::error!("capture write failed, rows dropped until it succeeds again: {e}");
        }
        let now = Instant::now();
        let (wait, since) = match self.backoff {
            Some(b) => ((b.wait * 2).min(BACKOFF_MAX), b.since),
            None => (BACKOFF_FIRST, now),
        };
        self.backoff = Some(Backoff {
            wait,
            next_try: now + wait,
            since,
        });
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
        let path = seg.path().to_path_buf();
        if let Err(e) = seg.close() {
            // Its end-of-stream marker is missing; its whole batches convert.
            tracing::warn!("cannot finish capture segment: {e}");
        }
        if let Some((c, _)) = &self.converter {
            c.send(Job::new(path, extra));
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
