//! The results file writer: one side's rows as Parquet, in batches, under a
//! `.tmp` name until the replay finishes.

use std::fs::File;
use std::path::{Path, PathBuf};

use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use super::{RESULTS_SCHEMA_VERSION, ResultRow, VERSION_KEY, col, results_schema, to_batch};
use crate::columnar::zstd;

/// Writes one side's results file, a batch at a time (`.tmp`, renamed on finish).
pub struct ResultWriter {
    path: PathBuf,
    tmp: PathBuf,
    writer: ArrowWriter<File>,
    pending: Vec<ResultRow>,
    pub rows: u64,
}

/// Columns (Parquet paths) written without a dictionary.
const UNIQUE_COLUMNS: &[&[&str]] = &[
    &[col::SEQ],
    &[col::PARAM_VALUES, "list", "item"],
    &[col::CAPTURED_TS],
    &[col::CAPTURED_DURATION_US],
    &[col::CAPTURED_ORDERED_HASH],
    &[col::CAPTURED_UNORDERED_HASH],
    &[col::SCHEDULED_US],
    &[col::STARTED_US],
    &[col::LAG_US],
    &[col::DELAY_US],
    &[col::STARTED_AT],
    &[col::DURATION_US],
    &[col::ORDERED_HASH],
    &[col::UNORDERED_HASH],
];

/// Rows per Parquet row group of a results file.
const ROW_GROUP_ROWS: usize = 128 * 1024;

impl ResultWriter {
    pub fn create(
        dir: &Path,
        name: &str,
        metadata: &[(String, String)],
    ) -> Result<ResultWriter, ResultsError> {
        std::fs::create_dir_all(dir).map_err(|e| ResultsError::io(dir, e))?;
        let path = dir.join(format!("{name}.parquet"));
        let tmp = dir.join(format!("{name}.parquet.tmp"));
        let file = File::create(&tmp).map_err(|e| ResultsError::io(&tmp, e))?;
        let mut kv = vec![(VERSION_KEY.to_string(), RESULTS_SCHEMA_VERSION.to_string())];
        kv.extend(metadata.iter().cloned());
        let mut props = zstd(WriterProperties::builder(), 1)
            // A row group is held encoded in memory until it is written:
            // 128 Ki rows keeps a long replay's memory close to a short one's.
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS));
        // Timings, hashes and parameter values are all but unique per row:
        // a dictionary for them only costs a hash per value until it
        // overflows. The repeated columns (SQL, fingerprint, tags) keep theirs.
        for path in UNIQUE_COLUMNS {
            let path = ColumnPath::new(path.iter().map(|p| p.to_string()).collect());
            props = props.set_column_dictionary_enabled(path, false);
        }
        let props = props
            .set_key_value_metadata(Some(
                kv.into_iter()
                    .map(|(k, v)| parquet::file::metadata::KeyValue::new(k, v))
                    .collect(),
            ))
            .build();
        let writer = ArrowWriter::try_new(file, results_schema(), Some(props))
            .map_err(|e| ResultsError::parquet(&tmp, e))?;
        Ok(ResultWriter {
            path,
            tmp,
            writer,
            pending: Vec::with_capacity(4096),
            rows: 0,
        })
    }

    /// Where the file is written until it is finished.
    pub fn tmp_path(&self) -> &Path {
        &self.tmp
    }

    pub fn push(&mut self, row: ResultRow) -> Result<(), ResultsError> {
        self.pending.push(row);
        self.rows += 1;
        if self.pending.len() >= 8192 {
            self.flush_batch()
        } else {
            Ok(())
        }
    }

    fn flush_batch(&mut self) -> Result<(), ResultsError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let batch = to_batch(&self.pending);
        self.pending.clear();
        self.writer
            .write(&batch)
            .map_err(|e| ResultsError::parquet(&self.tmp, e))
    }

    /// Flushes and renames into place; returns the final path.
    pub fn finish(mut self) -> Result<PathBuf, ResultsError> {
        self.flush_batch()?;
        self.writer
            .close()
            .map_err(|e| ResultsError::parquet(&self.tmp, e))?;
        std::fs::rename(&self.tmp, &self.path).map_err(|e| ResultsError::io(&self.path, e))?;
        Ok(self.path)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: Parquet error: {source}", path.display())]
    Parquet {
        path: PathBuf,
        source: parquet::errors::ParquetError,
    },
}

impl ResultsError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        ResultsError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
    fn parquet(path: &Path, source: parquet::errors::ParquetError) -> Self {
        ResultsError::Parquet {
            path: path.to_path_buf(),
            source,
        }
    }
}
