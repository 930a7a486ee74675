//! What a capture keeps of a statement beyond its shape (capture schema
//! version 2): the COPY messages the client streamed and the values of a
//! small result, as slices of the capture's own buffers. A version-1 capture
//! has neither column: its statements read as [`CopyIn::Unknown`] with no
//! result values.

use arrow::array::{
    Array, AsArray, BinaryArray, Int64Array, LargeBinaryArray, ListArray, RecordBatch,
};
use arrow::datatypes::Int64Type;

use crate::capture::col;

/// A statement's COPY FROM STDIN data as captured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CopyIn {
    /// The capture predates COPY data (schema version 1).
    #[default]
    Unknown,
    /// The statement streamed no COPY data.
    None,
    /// The messages the client sent: type byte (`d`, `c`, `f`), then body.
    Messages(Messages),
    /// The data passed `--max-copy-bytes` at capture and was not kept.
    OverLimit { bytes: u64, limit: Option<u64> },
}

/// The captured COPY messages of one statement.
#[derive(Debug, Clone)]
pub struct Messages(LargeBinaryArray);

impl Messages {
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.0.iter().flatten()
    }

    /// Messages of their own (read back from the replay's spool).
    pub fn from_messages<'a>(messages: impl IntoIterator<Item = &'a [u8]>) -> Messages {
        Messages(LargeBinaryArray::from_iter_values(messages))
    }
}

impl PartialEq for Messages {
    fn eq(&self, o: &Messages) -> bool {
        self.iter().eq(o.iter())
    }
}
impl Eq for Messages {}

/// The optional version-2 columns of one capture batch.
pub struct Columns<'a> {
    copy_data: Option<&'a ListArray>,
    copy_bytes: Option<&'a Int64Array>,
    result_values: Option<&'a ListArray>,
    /// `pgtape.capture.max_copy_bytes` of the capture, for the reason given.
    limit: Option<u64>,
}

impl<'a> Columns<'a> {
    pub fn new(b: &'a RecordBatch, limit: Option<u64>) -> Self {
        Columns {
            copy_data: b.column_by_name(col::COPY_DATA).map(|c| c.as_list::<i32>()),
            copy_bytes: b
                .column_by_name(col::COPY_BYTES)
                .map(|c| c.as_primitive::<Int64Type>()),
            result_values: b
                .column_by_name(col::RESULT_VALUES)
                .map(|c| c.as_list::<i32>()),
            limit,
        }
    }

    /// Row `i`'s COPY data.
    pub fn copy_in(&self, i: usize) -> CopyIn {
        let (Some(data), Some(bytes)) = (self.copy_data, self.copy_bytes) else {
            return CopyIn::Unknown;
        };
        if !data.is_null(i) {
            let (at, len) = entry(data, i);
            return CopyIn::Messages(Messages(data.values().as_binary::<i64>().slice(at, len)));
        }
        if bytes.is_null(i) {
            return CopyIn::None;
        }
        CopyIn::OverLimit {
            bytes: bytes.value(i).max(0) as u64,
            limit: self.limit,
        }
    }

    /// Row `i`'s result values (DataRow bodies), if kept.
    pub fn result_values(&self, i: usize) -> Option<BinaryArray> {
        let v = self.result_values?;
        if v.is_null(i) {
            return None;
        }
        let (at, len) = entry(v, i);
        Some(v.values().as_binary::<i32>().slice(at, len))
    }
}

/// Where list entry `i` lies in the list's values: (start, length).
fn entry(l: &ListArray, i: usize) -> (usize, usize) {
    let o = l.value_offsets();
    let start = o[i] as usize;
    (start, o[i + 1] as usize - start)
}
