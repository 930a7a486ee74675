//! Reading a capture: a directory of Parquet files (or one file), checked
//! file by file so that one bad file (not Parquet, truncated, written by a
//! newer pgtape) is reported by name while the others still load; then
//! streamed batch by batch with only the columns asked for, so memory stays
//! flat however large the capture.
//!
//! Order: files in name order, which is segment-open time; within a file rows
//! are in the order the recorder received them (statement completion order
//! across sessions, `seq` order within a session). Consumers that need one
//! session's statements in order sort by (`session_id`, `seq`) or rely on the
//! per-session order.
//!
//! Unconverted `.arrows` segments are listed apart (`pending_segments`);
//! [`Capture::include_segments`] reads them as files too ([`segment`]).

mod segment;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{BooleanArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::error::ArrowError;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowPredicateFn, ArrowReaderOptions, ParquetRecordBatchReader,
    ParquetRecordBatchReaderBuilder, RowFilter,
};

use super::CaptureError;
use super::schema::{CAPTURE_SCHEMA_VERSION, meta};
use super::segment::{PARQUET_EXT, SEGMENT_EXT};
use crate::columnar::{Version, check_version};
use segment::{SegmentBatches, check_segment};
pub use segment::{SegmentExtent, SegmentNote};

/// One readable capture file.
#[derive(Debug, Clone)]
pub struct CaptureFile {
    pub path: PathBuf,
    pub rows: i64,
    pub version: u32,
    /// The file's key-value metadata (`pgtape.*` keys; see `schema::meta`).
    pub metadata: BTreeMap<String, String>,
    /// An unconverted `.arrows` segment, and how much of it is read.
    pub segment: Option<SegmentExtent>,
}

impl CaptureFile {
    /// Events dropped while this file's segment was open, if recorded.
    pub fn dropped(&self) -> Option<u64> {
        self.metadata.get(meta::DROPPED)?.parse().ok()
    }
}

/// A capture directory, opened: the good files and an error per bad one.
#[derive(Debug)]
pub struct Capture {
    pub files: Vec<CaptureFile>,
    /// One error per file that cannot be read, naming it.
    pub errors: Vec<CaptureError>,
    /// Open or leftover `.arrows` segments, not yet converted (a running or
    /// killed proxy); the next `pgtape proxy --capture` start converts them.
    pub pending_segments: Vec<PathBuf>,
}

/// A row predicate evaluated on the predicate columns before the others are
/// decoded (Parquet late materialisation).
pub type Predicate = Arc<dyn Fn(&RecordBatch) -> Result<BooleanArray, ArrowError> + Send + Sync>;

impl Capture {
    /// Opens a capture directory or a single capture file. Fails only if
    /// `path` itself cannot be read; bad files land in `errors`.
    pub fn open(path: &Path) -> Result<Capture, CaptureError> {
        let mut cap = Capture {
            files: Vec::new(),
            errors: Vec::new(),
            pending_segments: Vec::new(),
        };
        let meta = std::fs::metadata(path).map_err(|e| CaptureError::io(path, e))?;
        let mut paths = if meta.is_dir() {
            std::fs::read_dir(path)
                .map_err(|e| CaptureError::io(path, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect::<Vec<_>>()
        } else {
            vec![path.to_path_buf()]
        };
        paths.sort();
        for p in paths {
            let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
            if ext == SEGMENT_EXT {
                cap.pending_segments.push(p);
            } else if ext == PARQUET_EXT || !meta.is_dir() {
                match check_file(&p) {
                    Ok(f) => cap.files.push(f),
                    Err(e) => cap.errors.push(e),
                }
            }
            // Other files (`.tmp` of a conversion in progress, notes) are not ours.
        }
        Ok(cap)
    }

    /// Moves the unconverted segments into `files`, each read up to its last
    /// complete batch; one note per segment, for the caller to name it. A
    /// segment that cannot be read lands in `errors`.
    pub fn include_segments(&mut self) -> Vec<SegmentNote> {
        let mut notes = Vec::new();
        for path in std::mem::take(&mut self.pending_segments) {
            match check_segment(&path) {
                Ok(Some(f)) => {
                    notes.push(SegmentNote {
                        path,
                        rows: f.rows,
                        torn: f.segment.is_some_and(|s| s.torn),
                        empty: false,
                    });
                    self.files.push(f);
                }
                Ok(None) => notes.push(SegmentNote {
                    path,
                    rows: 0,
                    torn: false,
                    empty: true,
                }),
                Err(e) => self.errors.push(e),
            }
        }
        self.files.sort_by(|a, b| a.path.cmp(&b.path));
        notes
    }

    pub fn total_rows(&self) -> i64 {
        self.files.iter().map(|f| f.rows).sum()
    }

    /// Dropped events recorded in the files' metadata.
    pub fn dropped(&self) -> u64 {
        self.files.iter().filter_map(|f| f.dropped()).sum()
    }

    /// Streams every file's batches with only `columns` (names from
    /// `schema::col`; columns a file lacks are left out of its batches).
    pub fn scan(&self, columns: &[&str]) -> Scan {
        Scan {
            files: self
                .files
                .iter()
                .map(|f| (f.path.clone(), f.segment))
                .collect(),
            next_file: 0,
            columns: columns.iter().map(|s| s.to_string()).collect(),
            filter: None,
            dictionary: Vec::new(),
            batch_size: 8192,
            current: None,
        }
    }
}

/// A streaming scan over a capture's files; yields `Result<RecordBatch>`.
pub struct Scan {
    files: Vec<(PathBuf, Option<SegmentExtent>)>,
    next_file: usize,
    columns: Vec<String>,
    filter: Option<(Vec<String>, Predicate)>,
    dictionary: Vec<String>,
    batch_size: usize,
    current: Option<(PathBuf, Batches)>,
}

/// The batches of the file a scan is in.
enum Batches {
    Parquet(ParquetRecordBatchReader),
    Segment(SegmentBatches),
}

impl Iterator for Batches {
    type Item = Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Batches::Parquet(r) => r.next(),
            Batches::Segment(r) => r.next(),
        }
    }
}

impl Scan {
    /// Keeps only rows where `predicate` (given the `on` columns) is true;
    /// other columns are decoded only for those rows.
    pub fn filter(mut self, on: &[&str], predicate: Predicate) -> Self {
        self.filter = Some((on.iter().map(|s| s.to_string()).collect(), predicate));
        self
    }

    /// Reads these string columns as `Dictionary(Int32, Utf8)`: Parquet's
    /// dictionary pages are kept, not expanded into one string per row (much
    /// faster for `normalized_sql`, `kind`, `application_name`).
    pub fn dictionary(mut self, columns: &[&str]) -> Self {
        self.dictionary = columns.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }

    fn open(&self, path: &Path) -> Result<ParquetRecordBatchReader, CaptureError> {
        let file = File::open(path).map_err(|e| CaptureError::io(path, e))?;
        let mut b = ParquetRecordBatchReaderBuilder::try_new(
            file.try_clone().map_err(|e| CaptureError::io(path, e))?,
        )
        .map_err(|e| CaptureError::parquet(path, e))?;
        if !self.dictionary.is_empty() {
            let fields: Vec<Field> = b
                .schema()
                .fields()
                .iter()
                .map(|f| {
                    if self.dictionary.iter().any(|d| d == f.name())
                        && f.data_type() == &DataType::Utf8
                    {
                        f.as_ref().clone().with_data_type(DataType::Dictionary(
                            Box::new(DataType::Int32),
                            Box::new(DataType::Utf8),
                        ))
                    } else {
                        f.as_ref().clone()
                    }
                })
                .collect();
            let schema = Arc::new(Schema::new_with_metadata(
                fields,
                b.schema().metadata().clone(),
            ));
            b = ParquetRecordBatchReaderBuilder::try_new_with_options(
                file,
                ArrowReaderOptions::new().with_schema(schema),
            )
            .map_err(|e| CaptureError::parquet(path, e))?;
        }
        let schema = b.parquet_schema().clone();
        let arrow_schema = b.schema().clone();
        let roots = |names: &[String]| {
            let idx: Vec<usize> = arrow_schema
                .fields()
                .iter()
                .enumerate()
                .filter(|(_, f)| names.iter().any(|n| n == f.name()))
                .map(|(i, _)| i)
                .collect();
            ProjectionMask::roots(&schema, idx)
        };
        let mask = roots(&self.columns);
        let filter_mask = self.filter.as_ref().map(|(on, _)| roots(on));
        let mut b = b.with_batch_size(self.batch_size);
        if let (Some((_, pred)), Some(fm)) = (&self.filter, filter_mask) {
            let pred = pred.clone();
            let f = ArrowPredicateFn::new(fm, move |batch| pred(&batch));
            b = b.with_row_filter(RowFilter::new(vec![Box::new(f)]));
        }
        b.with_projection(mask)
            .build()
            .map_err(|e| CaptureError::parquet(path, e))
    }
}

impl Iterator for Scan {
    type Item = Result<RecordBatch, CaptureError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((path, reader)) = &mut self.current {
                match reader.next() {
                    Some(Ok(b)) => return Some(Ok(b)),
                    Some(Err(e)) => {
                        let err = CaptureError::arrow(path, e);
                        self.current = None;
                        return Some(Err(err));
                    }
                    None => self.current = None,
                }
            }
            let (path, segment) = self.files.get(self.next_file)?.clone();
            self.next_file += 1;
            let opened = match segment {
                None => self.open(&path).map(Batches::Parquet),
                Some(extent) => SegmentBatches::new(
                    &path,
                    extent,
                    &self.columns,
                    self.filter.clone(),
                    &self.dictionary,
                )
                .map(Batches::Segment),
            };
            match opened {
                Ok(r) => self.current = Some((path, r)),
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// Checks that `path` is a whole Parquet file of a capture this build reads.
pub fn check_file(path: &Path) -> Result<CaptureFile, CaptureError> {
    let mut f = File::open(path).map_err(|e| CaptureError::io(path, e))?;
    let len = f.metadata().map_err(|e| CaptureError::io(path, e))?.len();
    let mut head = [0u8; 4];
    let mut tail = [0u8; 4];
    let magic_ok = len >= 12 && f.read_exact(&mut head).is_ok() && &head == b"PAR1";
    if !magic_ok {
        return Err(CaptureError::NotParquet {
            path: path.to_path_buf(),
        });
    }
    let tail_ok =
        f.seek(SeekFrom::End(-4)).is_ok() && f.read_exact(&mut tail).is_ok() && &tail == b"PAR1";
    if !tail_ok {
        return Err(CaptureError::Truncated {
            path: path.to_path_buf(),
            detail: "no Parquet footer at the end".into(),
        });
    }
    let b = ParquetRecordBatchReaderBuilder::try_new(f).map_err(|e| CaptureError::Truncated {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    let fm = b.metadata().file_metadata();
    let metadata: BTreeMap<String, String> = fm
        .key_value_metadata()
        .into_iter()
        .flatten()
        .filter(|kv| kv.key.starts_with("pgtape."))
        .map(|kv| (kv.key.clone(), kv.value.clone().unwrap_or_default()))
        .collect();
    let version = match check_version(
        metadata.get(meta::VERSION).map(String::as_str),
        CAPTURE_SCHEMA_VERSION,
    ) {
        Version::Supported(v) => v,
        Version::Newer(found) => {
            return Err(CaptureError::NewerVersion {
                path: path.to_path_buf(),
                found,
                supported: CAPTURE_SCHEMA_VERSION,
            });
        }
        Version::Unreadable(_) | Version::Missing => {
            return Err(CaptureError::NotACapture {
                path: path.to_path_buf(),
            });
        }
    };
    Ok(CaptureFile {
        path: path.to_path_buf(),
        rows: fm.num_rows(),
        version,
        metadata,
        segment: None,
    })
}
