//! The open segment: an Arrow IPC stream file (zstd-compressed buffers) that
//! the recorder appends one batch at a time, flushing after each, so a killed
//! proxy leaves a readable prefix that loses at most the batch being written.
//!
//! Files are created with mode 0600 (captures hold query text and parameters)
//! and named `<open time>-<capture id>-<n>.arrows`, so a directory listing
//! sorts by time.
//!
//! What must stay true: the file is always a readable stream of whole
//! batches. A batch is written in one piece; when that fails (disk full) the
//! file is cut back to its last whole batch, so the same segment takes the
//! next batch once space returns, and a segment that could not be finished
//! still converts.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
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

/// Holds one batch's IPC messages in memory and writes them to the file in
/// one piece on flush; a failed flush cuts the file back to the bytes of
/// whole batches. Also counts those bytes, so rotation by size needs no
/// `stat` per batch.
struct Staged {
    file: File,
    pending: Vec<u8>,
    /// Bytes of whole messages on disk.
    written: u64,
    /// A failed write could not be cut back: the tail of the file is not a
    /// whole message, so nothing may follow it.
    broken: bool,
}

impl Write for Staged {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.broken {
            self.pending.clear();
            return Err(std::io::Error::other(
                "an earlier failed write left a partial batch",
            ));
        }
        if self.pending.is_empty() {
            return Ok(());
        }
        let result = self.file.write_all(&self.pending);
        let n = self.pending.len() as u64;
        self.pending.clear();
        match result {
            Ok(()) => {
                self.written += n;
                Ok(())
            }
            Err(e) => {
                let cut = self
                    .file
                    .set_len(self.written)
                    .and_then(|_| self.file.seek(SeekFrom::Start(self.written)));
                self.broken = cut.is_err();
                Err(e)
            }
        }
    }
}

pub struct Segment {
    path: PathBuf,
    writer: StreamWriter<Staged>,
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
        // Written under a `.tmp` name until its schema is on disk: an
        // `.arrows` file always starts whole, and a disk too full for even
        // the schema never shows an empty segment to readers.
        let tmp = path.with_extension(format!("{SEGMENT_EXT}.tmp"));
        let file = create_private(&tmp)?;
        let out = Staged {
            file,
            pending: Vec::with_capacity(1 << 20),
            written: 0,
            broken: false,
        };
        let opts = IpcWriteOptions::default()
            .try_with_compression(Some(CompressionType::ZSTD))
            .map_err(|e| CaptureError::arrow(&path, e))?;
        let started = StreamWriter::try_new_with_options(out, &info.schema(), opts)
            .and_then(|mut w| w.flush().map(|_| w));
        let writer = match started {
            Ok(w) => w,
            Err(e) => {
                // Not even the schema fits (disk full): leave no file.
                let _ = std::fs::remove_file(&tmp);
                return Err(CaptureError::arrow(&path, e));
            }
        };
        if let Err(e) = std::fs::rename(&tmp, &path) {
            let _ = std::fs::remove_file(&tmp);
            return Err(CaptureError::io(&path, e));
        }
        Ok(Segment {
            path,
            writer,
            opened: Instant::now(),
            rows: 0,
        })
    }

    /// Appends one batch and hands it to the OS (no fsync: surviving a
    /// process kill is the goal; a machine crash may lose the page cache).
    /// On failure the file still ends with its last whole batch.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), CaptureError> {
        self.writer
            .write(batch)
            .and_then(|_| self.writer.flush())
            .map_err(|e| CaptureError::arrow(&self.path, e))?;
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// A failed write could not be cut back: the segment takes no more
    /// batches (its whole ones still convert).
    pub fn is_broken(&self) -> bool {
        self.writer.get_ref().broken
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
    /// When that fails the file is left a stream of whole batches without
    /// its marker, which converts all the same.
    pub fn close(mut self) -> Result<PathBuf, CaptureError> {
        self.writer
            .finish()
            .map_err(|e| CaptureError::arrow(&self.path, e))?;
        let out = self
            .writer
            .into_inner()
            .map_err(|e| CaptureError::arrow(&self.path, e))?;
        out.file
            .sync_all()
            .map_err(|e| CaptureError::io(&self.path, e))?;
        Ok(self.path)
    }
}
