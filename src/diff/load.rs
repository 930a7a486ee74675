//! Reading a results directory: `source.parquet` and `target.parquet`, each
//! checked for `pgtape.results.version`, read with only the columns the diff
//! needs into compact [`SideRow`]s (hashes and counts, no SQL text, no
//! parameters, no column lists), so the join holds one small record per
//! statement of the smaller side.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Int32Type, Int64Type, UInt32Type};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use xxhash_rust::xxh3::xxh3_64;

use super::DiffError;
use crate::columnar::{Version, check_version};
use crate::replay::results::{RESULTS_SCHEMA_VERSION, VERSION_KEY, col};

/// The join key: (session_id, seq, clone).
pub type Key = (i64, i64, i32);

/// The results contract's reduced result and status, owned by the replay
/// that writes them.
pub use crate::replay::results::{Outcome, Status};

/// One row of a results file as the join keeps it.
#[derive(Debug, Clone)]
pub struct SideRow {
    pub key: Key,
    pub fingerprint: i64,
    pub read_only: bool,
    pub duration_us: i64,
    pub started_us: i64,
    pub outcome: Outcome,
    pub captured: Outcome,
}

/// The two files of a results directory.
#[derive(Debug, Clone)]
pub struct ResultsDir {
    pub source: PathBuf,
    pub target: PathBuf,
    pub source_rows: u64,
    pub target_rows: u64,
}

/// True when `path` is a results directory (or file) written by `pgtape replay`.
pub fn is_results_dir(path: &Path) -> bool {
    ["source.parquet", "target.parquet"]
        .iter()
        .any(|f| file_version(&path.join(f)).is_some())
}

fn file_version(path: &Path) -> Option<String> {
    let b = ParquetRecordBatchReaderBuilder::try_new(File::open(path).ok()?).ok()?;
    b.metadata()
        .file_metadata()
        .key_value_metadata()?
        .iter()
        .find(|kv| kv.key == VERSION_KEY)
        .and_then(|kv| kv.value.clone())
}

impl ResultsDir {
    pub fn open(dir: &Path) -> Result<ResultsDir, DiffError> {
        let check = |name: &str| -> Result<(PathBuf, u64), DiffError> {
            let path = dir.join(name);
            let file = File::open(&path).map_err(|e| DiffError::Missing {
                path: path.clone(),
                why: e.to_string(),
            })?;
            let b = ParquetRecordBatchReaderBuilder::try_new(file)
                .map_err(|e| DiffError::parquet(&path, e))?;
            let version = b
                .metadata()
                .file_metadata()
                .key_value_metadata()
                .and_then(|kv| kv.iter().find(|kv| kv.key == VERSION_KEY))
                .and_then(|kv| kv.value.clone());
            match check_version(version.as_deref(), RESULTS_SCHEMA_VERSION) {
                Version::Supported(_) => {}
                Version::Newer(_) | Version::Unreadable(_) => {
                    return Err(DiffError::Version {
                        path,
                        found: version.unwrap_or_default(),
                    });
                }
                Version::Missing => return Err(DiffError::NotResults { path }),
            }
            let rows = b.metadata().file_metadata().num_rows().max(0) as u64;
            Ok((path, rows))
        };
        let (source, source_rows) = check("source.parquet")?;
        let (target, target_rows) = check("target.parquet")?;
        Ok(ResultsDir {
            source,
            target,
            source_rows,
            target_rows,
        })
    }
}

/// Columns that results files of an earlier schema version lack: read
/// when present.
const OPTIONAL_COLUMNS: &[&str] = &[
    col::DELAY_US,
    col::ORDER_WAIT_US,
    col::ORDER_RELEASED,
    col::COLUMN_TYPE_NAMES,
    col::REMAPPED,
];

const JOIN_COLUMNS: &[&str] = &[
    col::SESSION_ID,
    col::SEQ,
    col::CLONE,
    col::FINGERPRINT,
    col::READ_ONLY,
    col::CAPTURED_COMMAND_TAG,
    col::CAPTURED_ROWS,
    col::CAPTURED_ORDERED_HASH,
    col::CAPTURED_UNORDERED_HASH,
    col::CAPTURED_SQLSTATE,
    col::STARTED_US,
    col::DURATION_US,
    col::STATUS,
    col::COMMAND_TAG,
    col::ROWS,
    col::ORDERED_HASH,
    col::UNORDERED_HASH,
    col::COLUMN_NAMES,
    col::COLUMN_TYPES,
    col::COLUMN_TYPE_NAMES,
    col::SQLSTATE,
];

/// Reads `path` a batch at a time with only `columns`, calling `f` per
/// batch; of [`OPTIONAL_COLUMNS`], those the file lacks are left out.
pub(super) fn scan(
    path: &Path,
    columns: &[&str],
    mut f: impl FnMut(&RecordBatch) -> Result<(), DiffError>,
) -> Result<(), DiffError> {
    let file = File::open(path).map_err(|e| DiffError::Missing {
        path: path.to_path_buf(),
        why: e.to_string(),
    })?;
    let b =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| DiffError::parquet(path, e))?;
    let idx: Vec<usize> = b
        .schema()
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, fl)| columns.contains(&fl.name().as_str()))
        .map(|(i, _)| i)
        .collect();
    let missing: Vec<&str> = columns
        .iter()
        .filter(|c| !OPTIONAL_COLUMNS.contains(c))
        .filter(|c| b.schema().field_with_name(c).is_err())
        .copied()
        .collect();
    if !missing.is_empty() {
        return Err(DiffError::Schema {
            path: path.to_path_buf(),
            why: format!("columns are missing: {}", missing.join(", ")),
        });
    }
    let mask = ProjectionMask::roots(b.parquet_schema(), idx);
    let reader = b
        .with_projection(mask)
        .with_batch_size(8192)
        .build()
        .map_err(|e| DiffError::parquet(path, e))?;
    for batch in reader {
        let batch = batch.map_err(|e| DiffError::Schema {
            path: path.to_path_buf(),
            why: e.to_string(),
        })?;
        f(&batch)?;
    }
    Ok(())
}

/// A column's type as the diff compares it: a user-defined type (OID from
/// 16384) by its schema-qualified name, which is the same on both sides
/// when the type is, whatever OID each side gave it; a built-in type by
/// its OID, the same on every server. A user type whose name is unknown
/// (results of schema version 1) falls back to its OID.
fn column_type(out: &mut Vec<u8>, oid: u32, name: Option<&str>) {
    match name {
        Some(n) if oid >= crate::replay::client::FIRST_USER_OID => {
            out.push(b'n');
            out.extend_from_slice(n.as_bytes());
            out.push(0);
        }
        _ => {
            out.push(b'o');
            out.extend_from_slice(&oid.to_be_bytes());
        }
    }
}

fn opt_str_ref(a: &arrow::array::StringArray, i: usize) -> Option<&str> {
    (i < a.len() && !a.is_null(i)).then(|| a.value(i))
}

pub(super) fn opt_str(a: &arrow::array::StringArray, i: usize) -> Option<String> {
    (!a.is_null(i)).then(|| a.value(i).to_string())
}

/// Streams one side's rows, reduced, to `f`.
pub fn read_side(path: &Path, mut f: impl FnMut(SideRow)) -> Result<(), DiffError> {
    scan(path, JOIN_COLUMNS, |b| {
        let i64c = |n: &str| b.column_by_name(n).unwrap().as_primitive::<Int64Type>();
        let strc = |n: &str| b.column_by_name(n).unwrap().as_string::<i32>();
        let (session, seq, fp) = (
            i64c(col::SESSION_ID),
            i64c(col::SEQ),
            i64c(col::FINGERPRINT),
        );
        let clone = b
            .column_by_name(col::CLONE)
            .unwrap()
            .as_primitive::<Int32Type>();
        let read_only = b.column_by_name(col::READ_ONLY).unwrap().as_boolean();
        let (ctag, cstate, tag, state, st) = (
            strc(col::CAPTURED_COMMAND_TAG),
            strc(col::CAPTURED_SQLSTATE),
            strc(col::COMMAND_TAG),
            strc(col::SQLSTATE),
            strc(col::STATUS),
        );
        let (crows, coh, cuh) = (
            i64c(col::CAPTURED_ROWS),
            i64c(col::CAPTURED_ORDERED_HASH),
            i64c(col::CAPTURED_UNORDERED_HASH),
        );
        let (started, dur, rows, oh, uh) = (
            i64c(col::STARTED_US),
            i64c(col::DURATION_US),
            i64c(col::ROWS),
            i64c(col::ORDERED_HASH),
            i64c(col::UNORDERED_HASH),
        );
        let names = b
            .column_by_name(col::COLUMN_NAMES)
            .unwrap()
            .as_list::<i32>();
        let types = b
            .column_by_name(col::COLUMN_TYPES)
            .unwrap()
            .as_list::<i32>();
        let type_names = b
            .column_by_name(col::COLUMN_TYPE_NAMES)
            .map(|c| c.as_list::<i32>());
        let mut cols = Vec::new();
        for i in 0..b.num_rows() {
            cols.clear();
            let n = names.value(i);
            let t = types.value(i);
            let (n, t) = (n.as_string::<i32>(), t.as_primitive::<UInt32Type>());
            let tn = type_names.map(|l| l.value(i));
            let tn = tn.as_ref().map(|a| a.as_string::<i32>());
            for j in 0..n.len() {
                cols.extend_from_slice(n.value(j).as_bytes());
                cols.push(0);
                column_type(&mut cols, t.value(j), tn.and_then(|a| opt_str_ref(a, j)));
            }
            let captured_sqlstate = opt_str(cstate, i);
            f(SideRow {
                key: (session.value(i), seq.value(i), clone.value(i)),
                fingerprint: fp.value(i),
                read_only: read_only.value(i),
                duration_us: dur.value(i),
                started_us: started.value(i),
                outcome: Outcome {
                    status: Status::parse(st.value(i)),
                    sqlstate: opt_str(state, i),
                    command_tag: opt_str(tag, i),
                    rows: rows.value(i),
                    ordered_hash: oh.value(i),
                    unordered_hash: uh.value(i),
                    columns: Some(xxh3_64(&cols)),
                },
                captured: Outcome {
                    status: if captured_sqlstate.is_some() {
                        Status::Error
                    } else {
                        Status::Ok
                    },
                    sqlstate: captured_sqlstate,
                    command_tag: opt_str(ctag, i),
                    rows: crows.value(i),
                    ordered_hash: coh.value(i),
                    unordered_hash: cuh.value(i),
                    columns: None,
                },
            });
        }
        Ok(())
    })
}
