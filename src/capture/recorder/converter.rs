//! The converter thread: closed segments to Parquet, in the order they
//! closed, off the recorder's thread so a conversion never stalls the
//! draining of the tap channel.
//!
//! What must stay true: a segment that fails to convert (disk full) is not
//! forgotten until the next start: it is tried again, backing off from 1 s
//! to 30 s, and once more when the recorder closes; only what still fails
//! then is left as `.arrows` for the next start.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::capture::CaptureError;
use crate::capture::convert::convert_segment;
use crate::capture::live::RecorderLive;

const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// A closed segment and the metadata its Parquet file gets.
pub(super) struct Job {
    segment: PathBuf,
    extra: Vec<(String, String)>,
    /// Failed attempts so far: the first failure is logged, retries quietly.
    failures: u32,
}

impl Job {
    pub(super) fn new(segment: PathBuf, extra: Vec<(String, String)>) -> Job {
        Job {
            segment,
            extra,
            failures: 0,
        }
    }

    /// A job whose first attempt already failed (and was logged).
    pub(super) fn failed_once(segment: PathBuf, extra: Vec<(String, String)>) -> Job {
        Job {
            failures: 1,
            ..Job::new(segment, extra)
        }
    }
}

pub(super) struct Converter {
    tx: Sender<Job>,
    thread: JoinHandle<()>,
}

impl Converter {
    /// Starts the thread; converted files are appended to `files`. `retry`
    /// are segments an earlier attempt could not convert (leftovers found at
    /// start on a full disk).
    pub(super) fn start(
        files: Arc<Mutex<Vec<PathBuf>>>,
        live: Arc<RecorderLive>,
        retry: Vec<Job>,
    ) -> Result<Converter, CaptureError> {
        let (tx, rx) = channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("pgtape-convert".into())
            .spawn(move || {
                let mut t = Thread {
                    files,
                    live,
                    failed: retry.into(),
                    wait: RETRY_FIRST,
                    next_try: Instant::now(),
                };
                t.run(rx)
            })
            .map_err(|e| CaptureError::Thread(e.to_string()))?;
        Ok(Converter { tx, thread })
    }

    pub(super) fn send(&self, job: Job) {
        let _ = self.tx.send(job);
    }

    /// Converts what is queued (failed segments tried once more) and ends.
    pub(super) fn finish(self) {
        drop(self.tx);
        let _ = self.thread.join();
    }
}

struct Thread {
    files: Arc<Mutex<Vec<PathBuf>>>,
    live: Arc<RecorderLive>,
    /// Segments that failed to convert, oldest first.
    failed: VecDeque<Job>,
    wait: Duration,
    next_try: Instant,
}

impl Thread {
    fn run(&mut self, rx: Receiver<Job>) {
        loop {
            let job = if self.failed.is_empty() {
                rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
            } else {
                rx.recv_timeout(self.next_try.saturating_duration_since(Instant::now()))
            };
            match job {
                // Behind the ones that failed: conversions stay in order.
                Ok(job) if !self.failed.is_empty() => self.failed.push_back(job),
                Ok(job) => {
                    if let Err(job) = self.convert(job) {
                        self.failed.push_back(job);
                        self.next_try = Instant::now() + self.wait;
                    }
                }
                Err(RecvTimeoutError::Timeout) => self.retry(),
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        self.retry();
        for job in &self.failed {
            tracing::error!(segment = %job.segment.display(), "segment still not converted; the next `pgtape proxy --capture` start converts it");
        }
    }

    /// Tries the failed segments in order, stopping at the first that fails
    /// again (the disk is still full) and waiting longer before the next try.
    fn retry(&mut self) {
        while let Some(job) = self.failed.pop_front() {
            if let Err(job) = self.convert(job) {
                self.failed.push_front(job);
                self.wait = (self.wait * 2).min(RETRY_MAX);
                self.next_try = Instant::now() + self.wait;
                return;
            }
        }
        self.wait = RETRY_FIRST;
    }

    fn convert(&mut self, mut job: Job) -> Result<(), Job> {
        match convert_segment(&job.segment, &job.extra) {
            Ok(Some(c)) => {
                tracing::debug!(file = %c.parquet.display(), rows = c.rows, "segment converted");
                if job.failures > 0 {
                    tracing::info!(file = %c.parquet.display(), "segment converted after {} failed tries", job.failures);
                }
                self.live.files.fetch_add(1, Ordering::Relaxed);
                *self
                    .live
                    .last_file
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Some(c.parquet.clone());
                self.files
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(c.parquet);
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(e) => {
                if job.failures == 0 {
                    tracing::error!(
                        "cannot convert segment: {e}; it stays as .arrows and is tried again"
                    );
                } else {
                    tracing::debug!("segment not converted yet: {e}");
                }
                job.failures += 1;
                Err(job)
            }
        }
    }
}
