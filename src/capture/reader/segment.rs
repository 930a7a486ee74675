//! Unconverted segments (`.arrows`, the open segment of a running proxy or
//! the leftover of a killed one) read as capture files, for a consumer that
//! must not leave them out silently (the replayer).
//!
//! What must stay true: a segment is read up to its last complete batch, a
//! torn tail is left out and said so; the number of batches is fixed when
//! the segment is checked, so every later scan of it (a running proxy may
//! still be appending) sees the same rows.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::{cast, filter_record_batch};
use arrow::datatypes::{DataType, Schema};
use arrow::error::ArrowError;
use arrow::ipc::reader::StreamReader;

use super::{CaptureFile, Predicate};
use crate::capture::CaptureError;
use crate::capture::schema::{CAPTURE_SCHEMA_VERSION, meta};
use crate::columnar::{Version, check_version};

/// How much of an unconverted segment a scan reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentExtent {
    /// Complete batches when the segment was checked.
    pub batches: usize,
    /// The segment ended in a torn batch (left out).
    pub torn: bool,
}

/// What became of one unconverted segment.
#[derive(Debug, Clone)]
pub struct SegmentNote {
    pub path: PathBuf,
    pub rows: i64,
    pub torn: bool,
    /// The segment had no complete batch (nothing of it is read).
    pub empty: bool,
}

impl std::fmt::Display for SegmentNote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is not converted to Parquet (the open segment of a running proxy, or a \
             killed proxy's leftover, which `pgtape proxy --capture` converts at its next start): ",
            self.path.display()
        )?;
        match (self.empty, self.torn) {
            (true, _) => write!(f, "it holds no complete batch, nothing of it is read"),
            (false, false) => write!(f, "reading its {} rows", self.rows),
            (false, true) => write!(
                f,
                "reading its {} rows; a torn last batch is left out",
                self.rows
            ),
        }
    }
}

fn open(path: &Path) -> Result<StreamReader<BufReader<File>>, ArrowError> {
    let file = File::open(path)?;
    StreamReader::try_new_buffered(file, None)
}

/// Checks a segment: its schema version and its complete batches. `Ok(None)`
/// when it holds no complete batch (killed before the first was written).
pub fn check_segment(path: &Path) -> Result<Option<CaptureFile>, CaptureError> {
    if let Err(e) = File::open(path) {
        return Err(CaptureError::io(path, e));
    }
    let Ok(reader) = open(path) else {
        return Ok(None);
    };
    let metadata: BTreeMap<String, String> = reader
        .schema()
        .metadata()
        .iter()
        .filter(|(k, _)| k.starts_with("pgtape."))
        .map(|(k, v)| (k.clone(), v.clone()))
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
    let (mut batches, mut rows, mut torn) = (0usize, 0i64, false);
    for b in reader {
        match b {
            Ok(b) => {
                batches += 1;
                rows += b.num_rows() as i64;
            }
            Err(_) => {
                torn = true;
                break;
            }
        }
    }
    if batches == 0 {
        return Ok(None);
    }
    Ok(Some(CaptureFile {
        path: path.to_path_buf(),
        rows,
        version,
        metadata,
        segment: Some(SegmentExtent { batches, torn }),
    }))
}

/// A segment's batches as a scan wants them: its columns, its filter, its
/// dictionary columns.
pub struct SegmentBatches {
    reader: StreamReader<BufReader<File>>,
    left: usize,
    columns: Vec<String>,
    filter: Option<(Vec<String>, Predicate)>,
    dictionary: Vec<String>,
}

impl SegmentBatches {
    pub fn new(
        path: &Path,
        extent: SegmentExtent,
        columns: &[String],
        filter: Option<(Vec<String>, Predicate)>,
        dictionary: &[String],
    ) -> Result<Self, CaptureError> {
        let reader = open(path).map_err(|e| CaptureError::arrow(path, e))?;
        Ok(SegmentBatches {
            reader,
            left: extent.batches,
            columns: columns.to_vec(),
            filter,
            dictionary: dictionary.to_vec(),
        })
    }

    /// The columns of `batch` named in `names`, in schema order (as a
    /// Parquet projection gives them).
    fn project(batch: &RecordBatch, names: &[String]) -> Result<RecordBatch, ArrowError> {
        let idx: Vec<usize> = batch
            .schema()
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| names.iter().any(|n| n == f.name()))
            .map(|(i, _)| i)
            .collect();
        batch.project(&idx)
    }

    fn shape(&self, batch: RecordBatch) -> Result<RecordBatch, ArrowError> {
        let batch = match &self.filter {
            Some((on, pred)) => {
                let mask = pred(&Self::project(&batch, on)?)?;
                filter_record_batch(&batch, &mask)?
            }
            None => batch,
        };
        let batch = Self::project(&batch, &self.columns)?;
        if self.dictionary.is_empty() {
            return Ok(batch);
        }
        let want = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
        let mut fields = Vec::with_capacity(batch.num_columns());
        let mut arrays = Vec::with_capacity(batch.num_columns());
        for (f, a) in batch.schema().fields().iter().zip(batch.columns()) {
            if self.dictionary.iter().any(|d| d == f.name()) && f.data_type() == &DataType::Utf8 {
                fields.push(f.as_ref().clone().with_data_type(want.clone()));
                arrays.push(cast(a, &want)?);
            } else {
                fields.push(f.as_ref().clone());
                arrays.push(a.clone());
            }
        }
        let schema = Schema::new_with_metadata(fields, batch.schema().metadata().clone());
        RecordBatch::try_new(Arc::new(schema), arrays)
    }
}

impl Iterator for SegmentBatches {
    type Item = Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        while self.left > 0 {
            self.left -= 1;
            let batch = match self.reader.next()? {
                Ok(b) => b,
                Err(e) => return Some(Err(e)),
            };
            match self.shape(batch) {
                Ok(b) if b.num_rows() == 0 => continue,
                other => return Some(other),
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::Capture;
    use crate::capture::col;
    use crate::capture::convert::convert_segment;
    use crate::capture::rows::RowsBuilder;
    use crate::capture::schema::CaptureInfo;
    use crate::capture::segment::Segment;
    use crate::capture::synth::{Synth, events};
    use arrow::array::{AsArray, Int64Array};
    use arrow::compute::concat_batches;

    /// A segment of two 1000-row batches in `dir`, and the same segment
    /// converted to Parquet in `parquet_dir`.
    fn two_batch_segment(dir: &Path, parquet_dir: &Path) -> PathBuf {
        let info = CaptureInfo {
            capture_id: "00000000000000aa".into(),
            upstream: "127.0.0.1:5432".into(),
            started_at_us: 1_714_564_800_000_000,
            params_redacted: false,
            max_copy_bytes: 64 << 20,
        };
        let mut rows = RowsBuilder::new(&info);
        let mut seg = Segment::create(dir, &info, info.started_at_us, 1).unwrap();
        let mut evs = events(&Synth {
            statements: 3000,
            ..Synth::default()
        });
        for _ in 0..2 {
            for ev in evs.by_ref().take(1000) {
                rows.push(&ev);
            }
            seg.write(&rows.finish().unwrap()).unwrap();
        }
        let path = seg.close().unwrap();
        let copy = parquet_dir.join(path.file_name().unwrap());
        std::fs::copy(&path, &copy).unwrap();
        convert_segment(&copy, &[]).unwrap().unwrap();
        path
    }

    fn scan_all(cap: &Capture) -> RecordBatch {
        let slow: Predicate = Arc::new(|b: &RecordBatch| {
            let d: &Int64Array = b.column(0).as_primitive();
            Ok(d.iter().map(|v| Some(v.unwrap_or(0) > 1000)).collect())
        });
        let batches: Vec<RecordBatch> = cap
            .scan(&[col::KIND, col::SQL, col::DURATION_US])
            .filter(&[col::DURATION_US], slow)
            .dictionary(&[col::KIND])
            .map(Result::unwrap)
            .collect();
        concat_batches(&batches[0].schema(), &batches).unwrap()
    }

    #[test]
    fn a_segment_scans_as_its_parquet_conversion_does() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        two_batch_segment(a.path(), b.path());
        let mut seg = Capture::open(a.path()).unwrap();
        let notes = seg.include_segments();
        assert_eq!(
            (notes.len(), notes[0].rows, notes[0].torn),
            (1, 2000, false)
        );
        let parquet = Capture::open(b.path()).unwrap();
        let (got, want) = (scan_all(&seg), scan_all(&parquet));
        assert!(got.num_rows() > 0 && got.num_rows() < 2000);
        assert_eq!(got.columns(), want.columns());
        assert!(got.column(0).as_any_dictionary_opt().is_some());
    }

    #[test]
    fn a_segment_cut_mid_batch_is_read_to_its_last_whole_batch() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let path = two_batch_segment(a.path(), b.path());
        let len = std::fs::metadata(&path).unwrap().len();
        let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len - 100).unwrap();
        let mut cap = Capture::open(a.path()).unwrap();
        let notes = cap.include_segments();
        assert_eq!((notes[0].rows, notes[0].torn), (1000, true));
        assert!(notes[0].to_string().contains("torn last batch is left out"));
        let rows: usize = cap.scan(&[col::SEQ]).map(|b| b.unwrap().num_rows()).sum();
        assert_eq!(rows, 1000);
        // Cut before its first batch ends: named, nothing read.
        f.set_len(400).unwrap();
        let mut cap = Capture::open(a.path()).unwrap();
        let notes = cap.include_segments();
        assert!(notes[0].empty && cap.files.is_empty(), "{notes:?}");
    }
}
