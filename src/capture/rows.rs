//! Turns tap events into Arrow record batches of the capture schema. This is
//! where the raw protocol bytes the tap copied (Bind body, Parse OIDs) are
//! decoded into columns, on the recorder thread, off the forwarding path.
//!
//! SQL text, command tags and error messages are stored as UTF-8 strings; bytes
//! that are not UTF-8 are replaced with U+FFFD (the raw bytes are not kept).
//! Parameter values are kept as the exact bytes the client sent.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, Int16Builder, Int32Builder, Int64Builder, LargeBinaryBuilder,
    ListBuilder, MapBuilder, MapFieldNames, StringBuilder, TimestampMicrosecondBuilder,
    UInt32Builder,
};
use arrow::datatypes::{DataType, Field};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

use super::schema::{CaptureInfo, Kind};
use crate::capture::event::CopyIn;
use crate::capture::event::{ConnectEvent, DisconnectEvent, StatementEvent, TapEvent};
use crate::sql::Shape;
use crate::sql::ShapeCache;
use crate::wire::frame::{Direction, Frames};
use crate::wire::messages::{decode_oids, parse_bind};

fn list<B: arrow::array::ArrayBuilder>(b: B, item: DataType, nullable: bool) -> ListBuilder<B> {
    ListBuilder::new(b).with_field(Arc::new(Field::new("item", item, nullable)))
}

/// Accumulates events into columns; `finish` yields one batch.
pub struct RowsBuilder {
    schema: arrow::datatypes::SchemaRef,
    capture_id: String,
    redact_params: bool,
    shapes: ShapeCache,
    len: usize,
    capture: StringBuilder,
    kind: StringBuilder,
    session_id: Int64Builder,
    seq: Int64Builder,
    ts: TimestampMicrosecondBuilder,
    duration: Int64Builder,
    protocol: StringBuilder,
    sql: StringBuilder,
    fingerprint: Int64Builder,
    normalized: StringBuilder,
    statement_name: StringBuilder,
    param_types: ListBuilder<UInt32Builder>,
    param_formats: ListBuilder<Int16Builder>,
    param_values: ListBuilder<BinaryBuilder>,
    param_lengths: ListBuilder<Int32Builder>,
    result_formats: ListBuilder<Int16Builder>,
    max_rows: Int32Builder,
    command_tag: StringBuilder,
    rows: Int64Builder,
    ordered_hash: Int64Builder,
    unordered_hash: Int64Builder,
    result_bytes: Int64Builder,
    sqlstate: StringBuilder,
    error_message: StringBuilder,
    tx_status: StringBuilder,
    user: StringBuilder,
    database: StringBuilder,
    application_name: StringBuilder,
    client_addr: StringBuilder,
    startup_params: MapBuilder<StringBuilder, StringBuilder>,
    protocol_version: StringBuilder,
    disconnect_reason: StringBuilder,
    copy_data: ListBuilder<LargeBinaryBuilder>,
    copy_bytes: Int64Builder,
    result_values: ListBuilder<BinaryBuilder>,
}

impl RowsBuilder {
    pub fn new(info: &CaptureInfo) -> Self {
        use DataType::*;
        let names = MapFieldNames {
            entry: "entries".into(),
            key: "keys".into(),
            value: "values".into(),
        };
        RowsBuilder {
            schema: info.schema(),
            capture_id: info.capture_id.clone(),
            redact_params: info.params_redacted,
            shapes: ShapeCache::default(),
            len: 0,
            capture: StringBuilder::new(),
            kind: StringBuilder::new(),
            session_id: Int64Builder::new(),
            seq: Int64Builder::new(),
            ts: TimestampMicrosecondBuilder::new().with_timezone("UTC"),
            duration: Int64Builder::new(),
            protocol: StringBuilder::new(),
            sql: StringBuilder::new(),
            fingerprint: Int64Builder::new(),
            normalized: StringBuilder::new(),
            statement_name: StringBuilder::new(),
            param_types: list(UInt32Builder::new(), UInt32, false),
            param_formats: list(Int16Builder::new(), Int16, false),
            param_values: list(BinaryBuilder::new(), Binary, true),
            param_lengths: list(Int32Builder::new(), Int32, false),
            result_formats: list(Int16Builder::new(), Int16, false),
            max_rows: Int32Builder::new(),
            command_tag: StringBuilder::new(),
            rows: Int64Builder::new(),
            ordered_hash: Int64Builder::new(),
            unordered_hash: Int64Builder::new(),
            result_bytes: Int64Builder::new(),
            sqlstate: StringBuilder::new(),
            error_message: StringBuilder::new(),
            tx_status: StringBuilder::new(),
            user: StringBuilder::new(),
            database: StringBuilder::new(),
            application_name: StringBuilder::new(),
            client_addr: StringBuilder::new(),
            startup_params: MapBuilder::new(
                Some(names),
                StringBuilder::new(),
                StringBuilder::new(),
            ),
            protocol_version: StringBuilder::new(),
            disconnect_reason: StringBuilder::new(),
            copy_data: list(LargeBinaryBuilder::new(), LargeBinary, false),
            copy_bytes: Int64Builder::new(),
            result_values: list(BinaryBuilder::new(), Binary, false),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends one event; for a statement, returns its shape.
    pub fn push(&mut self, ev: &TapEvent) -> Option<Arc<Shape>> {
        self.len += 1;
        self.capture.append_value(&self.capture_id);
        match ev {
            TapEvent::Connect(c) => self.connect(c),
            TapEvent::Statement(s) => return Some(self.statement(s)),
            TapEvent::Disconnect(d) => self.disconnect(d),
        }
        None
    }

    fn nulls_statement(&mut self) {
        self.seq.append_null();
        self.duration.append_null();
        self.protocol.append_null();
        self.sql.append_null();
        self.fingerprint.append_null();
        self.normalized.append_null();
        self.statement_name.append_null();
        self.param_types.append_null();
        self.param_formats.append_null();
        self.param_values.append_null();
        self.param_lengths.append_null();
        self.result_formats.append_null();
        self.max_rows.append_null();
        self.command_tag.append_null();
        self.rows.append_null();
        self.ordered_hash.append_null();
        self.unordered_hash.append_null();
        self.result_bytes.append_null();
        self.sqlstate.append_null();
        self.error_message.append_null();
        self.tx_status.append_null();
        self.copy_data.append_null();
        self.copy_bytes.append_null();
        self.result_values.append_null();
    }

    fn nulls_connect(&mut self) {
        self.user.append_null();
        self.database.append_null();
        self.application_name.append_null();
        self.client_addr.append_null();
        self.startup_params
            .append(false)
            .expect("map builder keys and values stay in step");
        self.protocol_version.append_null();
    }

    fn connect(&mut self, c: &ConnectEvent) {
        self.kind.append_value(Kind::Connect.as_str());
        self.session_id.append_value(c.session_id as i64);
        self.ts.append_value(c.at_us);
        self.nulls_statement();
        self.user.append_value(&c.user);
        self.database.append_value(&c.database);
        self.application_name.append_value(&c.application_name);
        self.client_addr.append_value(&c.client_addr);
        for (k, v) in &c.startup_params {
            self.startup_params.keys().append_value(k);
            self.startup_params.values().append_value(v);
        }
        self.startup_params
            .append(true)
            .expect("map builder keys and values stay in step");
        self.protocol_version.append_value(&c.protocol_version);
        self.disconnect_reason.append_null();
    }

    fn disconnect(&mut self, d: &DisconnectEvent) {
        self.kind.append_value(Kind::Disconnect.as_str());
        self.session_id.append_value(d.session_id as i64);
        self.ts.append_value(d.at_us);
        self.nulls_statement();
        self.nulls_connect();
        self.disconnect_reason.append_value(&d.reason);
    }

    fn statement(&mut self, s: &StatementEvent) -> Arc<Shape> {
        self.kind.append_value(Kind::Statement.as_str());
        self.session_id.append_value(s.session_id as i64);
        self.seq.append_value(s.seq as i64);
        self.ts.append_value(s.start_us);
        self.duration.append_value(s.duration_us);
        self.protocol.append_value(s.protocol.as_str());
        let text = String::from_utf8_lossy(&s.sql);
        let sh = self.shapes.get(&s.sql);
        self.sql.append_value(&text);
        self.fingerprint.append_value(sh.fingerprint as i64);
        self.normalized.append_value(&sh.normalized);
        self.statement_name
            .append_value(String::from_utf8_lossy(&s.statement_name));
        self.param_types
            .values()
            .append_slice(&decode_oids(&s.param_oids));
        self.param_types.append(true);
        match parse_bind(&s.bind) {
            Ok(b) => {
                self.param_formats.values().append_slice(&b.param_formats);
                self.param_formats.append(true);
                for p in &b.params {
                    match p {
                        Some(v) if !self.redact_params => {
                            self.param_values.values().append_value(v)
                        }
                        _ => self.param_values.values().append_null(),
                    }
                    self.param_lengths
                        .values()
                        .append_value(p.map_or(-1, |v| v.len() as i32));
                }
                self.param_values.append(true);
                self.param_lengths.append(true);
                self.result_formats.values().append_slice(&b.result_formats);
                self.result_formats.append(true);
            }
            // Simple queries have no Bind; an unreadable one keeps the row.
            Err(_) => {
                self.param_formats.append(true);
                self.param_values.append(true);
                self.param_lengths.append(true);
                self.result_formats.append(true);
            }
        }
        self.max_rows.append_value(s.max_rows);
        self.command_tag
            .append_value(String::from_utf8_lossy(&s.command_tag));
        self.rows.append_value(s.rows as i64);
        self.ordered_hash.append_value(s.ordered_hash as i64);
        self.unordered_hash.append_value(s.unordered_hash as i64);
        self.result_bytes.append_value(s.result_bytes as i64);
        match &s.error {
            Some((code, message)) => {
                self.sqlstate.append_value(String::from_utf8_lossy(code));
                self.error_message
                    .append_value(String::from_utf8_lossy(message));
            }
            None => {
                self.sqlstate.append_null();
                self.error_message.append_null();
            }
        }
        let mut tx = [0u8; 4];
        self.tx_status
            .append_value(char::from(s.tx_status).encode_utf8(&mut tx));
        self.copy(s.copy_in.as_deref());
        match &s.result_values {
            Some(v) if !v.is_empty() && !self.redact_params => {
                for (_, body) in frames(v) {
                    self.result_values.values().append_value(body);
                }
                self.result_values.append(true);
            }
            _ => self.result_values.append_null(),
        }
        self.nulls_connect();
        self.disconnect_reason.append_null();
        sh
    }

    /// `copy_data` items are the messages as sent without their length: the
    /// type byte (`d`, `c`, `f`) then the body. NULL when not kept.
    fn copy(&mut self, c: Option<&CopyIn>) {
        let Some(c) = c else {
            self.copy_data.append_null();
            self.copy_bytes.append_null();
            return;
        };
        self.copy_bytes.append_value(c.bytes as i64);
        if c.over_limit || self.redact_params {
            self.copy_data.append_null();
            return;
        }
        let mut item = Vec::new();
        for (tag, body) in frames(&c.frames) {
            item.clear();
            item.push(tag);
            item.extend_from_slice(body);
            self.copy_data.values().append_value(&item);
        }
        self.copy_data.append(true);
    }

    /// The rows pushed since the last call, as one batch.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        self.len = 0;
        let cols: Vec<ArrayRef> = vec![
            Arc::new(self.capture.finish()),
            Arc::new(self.kind.finish()),
            Arc::new(self.session_id.finish()),
            Arc::new(self.seq.finish()),
            Arc::new(self.ts.finish()),
            Arc::new(self.duration.finish()),
            Arc::new(self.protocol.finish()),
            Arc::new(self.sql.finish()),
            Arc::new(self.fingerprint.finish()),
            Arc::new(self.normalized.finish()),
            Arc::new(self.statement_name.finish()),
            Arc::new(self.param_types.finish()),
            Arc::new(self.param_formats.finish()),
            Arc::new(self.param_values.finish()),
            Arc::new(self.param_lengths.finish()),
            Arc::new(self.result_formats.finish()),
            Arc::new(self.max_rows.finish()),
            Arc::new(self.command_tag.finish()),
            Arc::new(self.rows.finish()),
            Arc::new(self.ordered_hash.finish()),
            Arc::new(self.unordered_hash.finish()),
            Arc::new(self.result_bytes.finish()),
            Arc::new(self.sqlstate.finish()),
            Arc::new(self.error_message.finish()),
            Arc::new(self.tx_status.finish()),
            Arc::new(self.user.finish()),
            Arc::new(self.database.finish()),
            Arc::new(self.application_name.finish()),
            Arc::new(self.client_addr.finish()),
            Arc::new(self.startup_params.finish()),
            Arc::new(self.protocol_version.finish()),
            Arc::new(self.disconnect_reason.finish()),
            Arc::new(self.copy_data.finish()),
            Arc::new(self.copy_bytes.finish()),
            Arc::new(self.result_values.finish()),
        ];
        RecordBatch::try_new(self.schema.clone(), cols)
    }
}

/// The frames the tap kept (COPY messages, DataRows), as (type, body).
fn frames(buf: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    // Frames of the tap's own making: whole, and within the message limit.
    Frames::new(buf, Direction::Backend, usize::MAX).map_while(Result::ok)
}
