//! Closed segment → Parquet: zstd, dictionary encoding on the repeated text
//! columns, row groups sized by bytes, written as `.tmp` then renamed so a
//! reader never sees half a file; the segment is removed only after the
//! rename. Also converts leftovers of a killed run: the IPC stream is read up
//! to its last complete batch and the torn tail is dropped.

use std::fs;
use std::path::{Path, PathBuf};

use arrow::ipc::reader::StreamReader;
use parquet::arrow::ArrowWriter;
use parquet::basic::Encoding;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use super::CaptureError;
use super::schema::{DICTIONARY_COLUMNS, col, meta};
use super::segment::{PARQUET_EXT, create_private};
use crate::columnar::zstd;

/// Row groups close at this many bytes of encoded data (readers parallelise
/// and skip by row group; DuckDB likes 64–256 MiB uncompressed).
pub const ROW_GROUP_BYTES: usize = 64 << 20;

/// What a conversion produced.
#[derive(Debug, Clone)]
pub struct Converted {
    pub parquet: PathBuf,
    pub rows: u64,
    /// The segment ended in a torn batch (the proxy was killed), now dropped.
    pub torn: bool,
}

/// The writer properties of every capture file.
pub fn writer_properties(kv: Vec<KeyValue>) -> WriterProperties {
    let mut b = zstd(WriterProperties::builder(), 3)
        .set_dictionary_enabled(false)
        .set_max_row_group_bytes(Some(ROW_GROUP_BYTES))
        .set_max_row_group_row_count(None)
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .set_key_value_metadata(Some(kv));
    for c in DICTIONARY_COLUMNS {
        b = b.set_column_dictionary_enabled(ColumnPath::from(*c), true);
    }
    // Near-monotonic integers: delta encoding leaves zstd little to do.
    for c in [col::TS, col::SEQ, col::SESSION_ID] {
        b = b.set_column_encoding(ColumnPath::from(c), Encoding::DELTA_BINARY_PACKED);
    }
    b.build()
}

/// Converts `segment` to Parquet beside it, adding `extra` key-value
/// metadata (and `recovered` when the segment ends in a torn batch); removes
/// the segment. `Ok(None)` when the segment held no complete batch (it is
/// removed too).
pub fn convert_segment(
    segment: &Path,
    extra: &[(String, String)],
) -> Result<Option<Converted>, CaptureError> {
    let file = fs::File::open(segment).map_err(|e| CaptureError::io(segment, e))?;
    let reader = match StreamReader::try_new_buffered(file, None) {
        Ok(r) => r,
        Err(e) => {
            // Killed before the schema reached the disk: nothing to keep.
            tracing::warn!(segment = %segment.display(), "segment has no readable schema ({e}); removing it");
            fs::remove_file(segment).map_err(|e| CaptureError::io(segment, e))?;
            return Ok(None);
        }
    };
    let schema = reader.schema();
    let mut kv: Vec<KeyValue> = schema
        .metadata()
        .iter()
        .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
        .collect();
    kv.sort_by(|a, b| a.key.cmp(&b.key));
    kv.extend(
        extra
            .iter()
            .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
    );

    let parquet = segment.with_extension(PARQUET_EXT);
    let tmp = segment.with_extension(format!("{PARQUET_EXT}.tmp"));
    // A leftover .tmp is an earlier conversion that died half-way.
    let _ = fs::remove_file(&tmp);
    let converted = write_parquet(segment, reader, kv, &tmp, &parquet);
    if converted.is_err() {
        // Disk full and the like: the segment stays for a later try, and the
        // half-written .tmp must not hold on to the space it needs.
        let _ = fs::remove_file(&tmp);
    }
    converted
}

/// The body of [`convert_segment`]: the batches of `reader` into `tmp`,
/// renamed to `parquet`; the segment removed.
fn write_parquet(
    segment: &Path,
    reader: StreamReader<std::io::BufReader<fs::File>>,
    kv: Vec<KeyValue>,
    tmp: &Path,
    parquet: &Path,
) -> Result<Option<Converted>, CaptureError> {
    let schema = reader.schema();
    let out = create_private(tmp)?;
    let mut writer = None;
    let mut rows = 0u64;
    let mut torn = false;
    for batch in reader {
        let batch = match batch {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(segment = %segment.display(), rows, "segment ends in a torn batch ({e}); keeping the rows before it");
                torn = true;
                break;
            }
        };
        if writer.is_none() {
            let props = writer_properties(kv.clone());
            writer = Some(
                ArrowWriter::try_new(
                    out.try_clone().map_err(|e| CaptureError::io(tmp, e))?,
                    schema.clone(),
                    Some(props),
                )
                .map_err(|e| CaptureError::parquet(tmp, e))?,
            );
        }
        rows += batch.num_rows() as u64;
        writer
            .as_mut()
            .expect("created above")
            .write(&batch)
            .map_err(|e| CaptureError::parquet(tmp, e))?;
    }
    let Some(mut writer) = writer else {
        drop(out);
        let _ = fs::remove_file(tmp);
        fs::remove_file(segment).map_err(|e| CaptureError::io(segment, e))?;
        return Ok(None);
    };
    if torn && !kv.iter().any(|k| k.key == meta::RECOVERED) {
        writer.append_key_value_metadata(KeyValue::new(meta::RECOVERED.into(), "true".to_string()));
    }
    writer.close().map_err(|e| CaptureError::parquet(tmp, e))?;
    out.sync_all().map_err(|e| CaptureError::io(tmp, e))?;
    fs::rename(tmp, parquet).map_err(|e| CaptureError::io(parquet, e))?;
    if let Some(dir) = parquet.parent() {
        // Make the rename durable before the segment disappears.
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    fs::remove_file(segment).map_err(|e| CaptureError::io(segment, e))?;
    Ok(Some(Converted {
        parquet: parquet.to_path_buf(),
        rows,
        torn,
    }))
}

/// Converts a leftover of an earlier run (killed, or stopped while its disk
/// was full): marked `recovered` whether or not its last batch is torn, as
/// its drop counts died with that run.
pub fn convert_leftover(segment: &Path) -> Result<Option<Converted>, CaptureError> {
    convert_segment(
        segment,
        &[(meta::RECOVERED.to_string(), "true".to_string())],
    )
}

/// Leftover segments in `dir` (from a killed run), oldest first.
pub fn leftover_segments(dir: &Path) -> Result<Vec<PathBuf>, CaptureError> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| CaptureError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .is_some_and(|x| x == super::segment::SEGMENT_EXT)
        })
        .collect();
    v.sort();
    Ok(v)
}
