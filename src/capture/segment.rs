//! The open segment: an Arrow IPC stream file (zstd-compressed buffers) that
//! the recorder appends one batch at a time, flushing after each, so a killed
//! proxy leaves a readable prefix that loses at most the batch being written.
//!
//! Files are created with mode 0600 (captures hold query text and parameters)
//! and named `<open time>-<capture id>-<n>.arrows`, so a directory listing
//! sorts by time.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use arrow::ipc::CompressionType;
use arrow::ipc::writer::{IpcWriteOptions, StreamWriter};
use arrow::record_batch::RecordBatch;

use super::CaptureError;
use super::schema::{CaptureInfo, rfc3339_us};

/// Extension of an open (or leftover) segment.
pub const SEGMENT_EXT: &str = "arrows";
/// Extension of a converted capture file.
pub const PARQUET_EXT: &str = "parquet";

/// Creates `path` exclusively with mode 0600.
pub fn create_private(path: &Path) -> Result<File, CaptureError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| CaptureError::io(path, e))
}

/// The base name (without extension) of segment `n` opened at `now_us`.
pub fn segment_stem(info: &CaptureInfo, now_us: i64, n: u64) -> String {
    // 2024-05-01T12:00:00.123456Z -> 20240501T120000.123456Z (no colons: portable names).
    let t: String = rfc3339_us(now_us)
        .chars()
        .filter(|c| !matches!(c, '-' | ':'))
        .collect();
    format!("{t}-{}-{n:05}", info.capture_id)
}

/// Counts bytes so rotation by size needs no `stat` per batch.
struct Counting {
    inner: BufWriter<File>,
    written: u64,
}

impl Write for Counting {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

pub struct Segment {
    path: PathBuf,
    writer: StreamWriter<Counting>,
    opened: Instant,
    rows: u64,
}

impl Segment {
    pub fn create(
        dir: &Path,
        info: &CaptureInfo,
        now_us: i64,
        n: u64,
    ) -> Result<Self, CaptureError> {
        let path = dir.join(format!("{}.{SEGMENT_EXT}", segment_stem(info, now_us, n)));
        let file = create_private(&path)?;
        let out = Counting {
            inner: BufWriter::with_capacity(1 << 20, file),
            written: 0,
        };
        let opts = IpcWriteOptions::default()
            .try_with_compression(Some(CompressionType::ZSTD))
            .map_err(|e| CaptureError::arrow(&path, e))?;
        let mut writer = StreamWriter::try_new_with_options(out, &info.schema(), opts)
            .map_err(|e| CaptureError::arrow(&path, e))?;
        writer.flush().map_err(|e| CaptureError::arrow(&path, e))?;
        Ok(Segment {
            path,
            writer,
            opened: Instant::now(),
            rows: 0,
        })
    }

    /// Appends one batch and hands it to the OS (no fsync: surviving a
    /// process kill is the goal; a machine crash may lose the page cache).
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), CaptureError> {
        self.writer
            .write(batch)
            .and_then(|_| self.writer.flush())
            .map_err(|e| CaptureError::arrow(&self.path, e))?;
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    pub fn bytes(&self) -> u64 {
        self.writer.get_ref().written
    }

    pub fn age(&self) -> std::time::Duration {
        self.opened.elapsed()
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the end-of-stream marker and syncs; returns the file's path.
    pub fn close(mut self) -> Result<PathBuf, CaptureError> {
        self.writer
            .finish()
            .map_err(|e| CaptureError::arrow(&self.path, e))?;
        let out = self
            .writer
            .into_inner()
            .map_err(|e| CaptureError::arrow(&self.path, e))?;
        let file = out
            .inner
            .into_inner()
            .map_err(|e| CaptureError::io(&self.path, e.into_error()))?;
        file.sync_all()
            .map_err(|e| CaptureError::io(&self.path, e))?;
        Ok(self.path)
    }
}
