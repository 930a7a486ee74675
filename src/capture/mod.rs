//! Capture: every statement the proxy's tap sees, recorded crash-safely to
//! Parquet, and read back as a stream. The Parquet files are the contract
//! between the proxy, `pgtape report`, the replayer and outside tools; the
//! columns are documented in `schema/capture.md`.
//!
//! - [`event`]: the tap event contract: what the proxy's tap hands to the
//!   recorder, and the bounded, never-blocking channel it travels on.
//! - [`schema`]: the Arrow schema, its version and the file metadata keys.
//! - [`rows`]: tap events → Arrow batches (decodes Bind and OIDs).
//! - [`segment`]: the open Arrow IPC segment, flushed per batch.
//! - [`convert`]: closed or leftover segment → Parquet (`.tmp`, then rename).
//! - [`recorder`]: the recorder thread: batching, rotation, drops.
//! - [`live`]: the recorder's live counts and per-fingerprint totals (admin, metrics).
//! - [`reader`]: a capture directory as per-file checks and a projected stream.
//! - [`synth`]: a deterministic synthetic workload (fixture, benchmarks).

pub mod convert;
pub mod event;
pub mod live;
pub mod reader;
pub mod recorder;
pub mod rows;
pub mod schema;
pub mod segment;
pub mod synth;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use event::{TapEvent, TapSender, tap_channel};
pub use reader::{Capture, CaptureFile, Scan};
pub use recorder::{Recorder, RecorderConfig, RecorderStats};
pub use schema::{CAPTURE_SCHEMA_VERSION, CaptureInfo, Kind, capture_schema, col};

use crate::clock::parse_duration;
use event::TapLimits;

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: Arrow error: {source}", path.display())]
    Arrow {
        path: PathBuf,
        source: arrow::error::ArrowError,
    },
    #[error("{}: Parquet error: {source}", path.display())]
    Parquet {
        path: PathBuf,
        source: parquet::errors::ParquetError,
    },
    #[error("{}: not a Parquet file (no PAR1 magic); move it out of the capture directory", path.display())]
    NotParquet { path: PathBuf },
    #[error(
        "{}: truncated or damaged Parquet file ({detail}); it was cut short while being copied, \
         or is a .tmp of an interrupted conversion: copy it again or remove it",
        path.display()
    )]
    Truncated { path: PathBuf, detail: String },
    #[error(
        "{}: a Parquet file but not a pgtape capture (no pgtape.capture.version metadata); \
         move it out of the capture directory",
        path.display()
    )]
    NotACapture { path: PathBuf },
    #[error(
        "{}: written with capture schema version {found}, this pgtape reads up to {supported}; \
         upgrade pgtape to read it",
        path.display()
    )]
    NewerVersion {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("cannot run the recorder: {0}")]
    Thread(String),
}

impl CaptureError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        CaptureError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
    pub fn arrow(path: &Path, source: arrow::error::ArrowError) -> Self {
        CaptureError::Arrow {
            path: path.to_path_buf(),
            source,
        }
    }
    pub fn parquet(path: &Path, source: parquet::errors::ParquetError) -> Self {
        CaptureError::Parquet {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Parses `128MiB`, `64MB`, `512k`, `1G` or a plain number of bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid size {s:?}: use e.g. 128MiB, 64MB, 1GiB"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1048576.0,
        "g" | "gb" => 1e9,
        "gib" => 1073741824.0,
        _ => {
            return Err(format!(
                "invalid size unit in {s:?}: use B, KiB, MiB, GiB, KB, MB or GB"
            ));
        }
    };
    let bytes = n * mult;
    if !bytes.is_finite() || bytes < 1.0 {
        return Err(format!("invalid size {s:?}: must be at least 1 byte"));
    }
    Ok(bytes as u64)
}

/// The `pgtape proxy` flags of the recorder.
#[derive(Debug, Clone, clap::Args)]
pub struct CaptureArgs {
    /// Record every statement into this directory (Parquet files, mode 0600).
    #[arg(long, env = "PGTAPE_CAPTURE_DIR")]
    pub capture: Option<PathBuf>,
    /// Close the open segment and convert it to Parquet at this size.
    #[arg(long, default_value = "128MiB", value_parser = parse_size, env = "PGTAPE_ROTATE_SIZE")]
    pub rotate_size: u64,
    /// ... or at this age.
    #[arg(long, default_value = "60s", value_parser = parse_duration, env = "PGTAPE_ROTATE_INTERVAL")]
    pub rotate_interval: Duration,
    /// Write parameter values as NULL (their types and lengths are kept), and
    /// keep no COPY data and no result values.
    #[arg(long, env = "PGTAPE_REDACT_PARAMS")]
    pub redact_params: bool,
    /// COPY FROM STDIN data kept per statement; a larger COPY is recorded
    /// without its data and not replayed.
    #[arg(long, default_value = "64MiB", value_parser = parse_size, env = "PGTAPE_MAX_COPY_BYTES")]
    pub max_copy_bytes: u64,
    /// Keep the values of results of at most this many rows (0: none), so
    /// replay can map the ids and OIDs sessions send back.
    #[arg(long, default_value_t = TapLimits::RESULT_ROWS, env = "PGTAPE_RESULT_VALUES_ROWS")]
    pub result_values_rows: u64,
    /// ... and at most this many bytes.
    #[arg(long, default_value = "2KiB", value_parser = parse_size, env = "PGTAPE_RESULT_VALUES_BYTES")]
    pub result_values_bytes: u64,
    /// Capacity of the queue between the sessions and the recorder, in events;
    /// when full, events are dropped and counted, never waited for.
    #[arg(long, default_value_t = 65_536, env = "PGTAPE_CAPTURE_QUEUE")]
    pub capture_queue: usize,
    /// Test hook: the recorder sleeps this long per event (simulates a slow disk).
    #[arg(long, default_value = "0s", value_parser = parse_duration, hide = true)]
    pub test_slow_recorder: Duration,
}

impl CaptureArgs {
    /// Refuses settings that cannot work, naming the flag and the fix.
    pub fn check(&self) -> Result<(), String> {
        if self.capture.is_none() {
            return Ok(());
        }
        if self.rotate_interval < std::time::Duration::from_secs(1) {
            return Err(format!(
                "--rotate-interval {}s would close a file per batch: give at least 1s, e.g. --rotate-interval 60s",
                self.rotate_interval.as_secs_f64()
            ));
        }
        if self.capture_queue == 0 {
            return Err(
                "--capture-queue must be at least 1 event, e.g. --capture-queue 65536".into(),
            );
        }
        Ok(())
    }

    /// The recorder configuration, if `--capture` was given.
    pub fn recorder_config(&self, upstream: &str) -> Option<RecorderConfig> {
        let dir = self.capture.as_ref()?;
        let mut cfg = RecorderConfig::new(dir, upstream);
        cfg.rotate_size = self.rotate_size;
        cfg.rotate_interval = self.rotate_interval;
        cfg.redact_params = self.redact_params;
        cfg.limits = TapLimits {
            max_copy_bytes: self.max_copy_bytes,
            result_rows: self.result_values_rows,
            result_bytes: self.result_values_bytes as usize,
            redact: self.redact_params,
        };
        cfg.queue = self.capture_queue;
        cfg.slow_per_event = self.test_slow_recorder;
        Some(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("128MiB"), Ok(128 << 20));
        assert_eq!(parse_size("64MB"), Ok(64_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("0").is_err());
    }
}
