//! Result rows → an Arrow batch of the results schema.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Int16Builder, Int32Builder, Int64Builder, ListBuilder,
    RecordBatch, StringBuilder, TimestampMicrosecondBuilder, UInt32Builder,
};
use arrow::datatypes::{DataType, Field};

use super::{Captured, ResultRow, results_schema};

/// Builds a RecordBatch from result rows.
pub fn to_batch(rows: &[ResultRow]) -> RecordBatch {
    let n = rows.len();
    let mut side = StringBuilder::with_capacity(n, n * 6);
    let (mut session, mut seq, mut fp) = (
        Int64Builder::new(),
        Int64Builder::new(),
        Int64Builder::new(),
    );
    let mut clone = Int32Builder::new();
    // The SQL columns copy every row's text: sized once from the first row
    // rather than regrown as the batch fills.
    let text = |f: fn(&Captured) -> usize| rows.first().map_or(0, |r| f(&r.captured) * n * 5 / 4);
    let (mut norm, mut sql, mut proto) = (
        StringBuilder::with_capacity(n, text(|c| c.facts.normalized.len())),
        StringBuilder::with_capacity(n, text(|c| c.sql.len())),
        StringBuilder::with_capacity(n, n * 8),
    );
    let mut read_only = BooleanBuilder::new();
    let mut ptypes = ListBuilder::new(UInt32Builder::new()).with_field(Field::new(
        "item",
        DataType::UInt32,
        false,
    ));
    let mut pformats = ListBuilder::new(Int16Builder::new()).with_field(Field::new(
        "item",
        DataType::Int16,
        false,
    ));
    let mut pvalues = ListBuilder::new(BinaryBuilder::new());
    let mut rformats = ListBuilder::new(Int16Builder::new()).with_field(Field::new(
        "item",
        DataType::Int16,
        false,
    ));
    let mut max_rows = Int32Builder::new();
    let mut cts = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    let (mut cdur, mut crows, mut coh, mut cuh) = (
        Int64Builder::new(),
        Int64Builder::new(),
        Int64Builder::new(),
        Int64Builder::new(),
    );
    let (mut ctag, mut cstate) = (StringBuilder::new(), StringBuilder::new());
    let (mut sched, mut started, mut lag, mut delay, mut dur) = (
        Int64Builder::new(),
        Int64Builder::new(),
        Int64Builder::new(),
        Int64Builder::new(),
        Int64Builder::new(),
    );
    let (mut order_wait, mut order_released) = (Int64Builder::new(), BooleanBuilder::new());
    let mut started_at = TimestampMicrosecondBuilder::new().with_timezone("UTC");
    let (mut status, mut reason, mut tag) = (
        StringBuilder::new(),
        StringBuilder::new(),
        StringBuilder::new(),
    );
    let (mut nrows, mut oh, mut uh, mut bytes) = (
        Int64Builder::new(),
        Int64Builder::new(),
        Int64Builder::new(),
        Int64Builder::new(),
    );
    let mut cnames = ListBuilder::new(StringBuilder::new()).with_field(Field::new(
        "item",
        DataType::Utf8,
        false,
    ));
    let mut ctypes = ListBuilder::new(UInt32Builder::new()).with_field(Field::new(
        "item",
        DataType::UInt32,
        false,
    ));
    let (mut state, mut msg) = (StringBuilder::new(), StringBuilder::new());
    let mut tnames = ListBuilder::new(StringBuilder::new());
    let mut remapped = Int32Builder::new();
    for r in rows {
        let c = &r.captured;
        side.append_value(r.side);
        session.append_value(c.session_id);
        seq.append_value(c.seq);
        clone.append_value(r.clone);
        fp.append_value(c.fingerprint);
        norm.append_value(&*c.facts.normalized);
        sql.append_value(&c.sql);
        proto.append_value(c.protocol.as_str());
        read_only.append_value(c.facts.read_only);
        ptypes.values().append_slice(&c.param_types);
        ptypes.append(true);
        pformats.values().append_slice(&c.param_formats);
        pformats.append(true);
        for v in c.param_values.iter() {
            pvalues.values().append_option(v);
        }
        pvalues.append(true);
        rformats.values().append_slice(&c.result_formats);
        rformats.append(true);
        max_rows.append_value(c.max_rows);
        cts.append_value(c.ts_us);
        cdur.append_value(c.duration_us);
        ctag.append_option(c.command_tag.as_deref());
        crows.append_value(c.rows);
        coh.append_value(c.ordered_hash);
        cuh.append_value(c.unordered_hash);
        cstate.append_option(c.sqlstate.as_deref());
        sched.append_value(r.scheduled_us);
        started.append_value(r.started_us);
        lag.append_value(r.started_us - r.scheduled_us);
        delay.append_value(r.delay_us);
        order_wait.append_value(r.order_wait_us);
        order_released.append_value(r.order_released);
        started_at.append_value(r.started_at_us);
        dur.append_value(r.duration_us);
        status.append_value(r.status.as_str());
        reason.append_option(r.reason.as_deref());
        tag.append_option(r.command_tag.as_deref());
        nrows.append_value(r.rows);
        oh.append_value(r.ordered_hash);
        uh.append_value(r.unordered_hash);
        bytes.append_value(r.result_bytes);
        for c in r.columns.iter() {
            cnames.values().append_value(&c.name);
            ctypes.values().append_value(c.type_oid);
            tnames.values().append_option(c.type_name.as_deref());
        }
        cnames.append(true);
        ctypes.append(true);
        tnames.append(true);
        remapped.append_value(r.remapped.min(i32::MAX as u32) as i32);
        state.append_option(r.error.as_ref().map(|e| e.0.as_str()));
        msg.append_option(r.error.as_ref().map(|e| e.1.as_str()));
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(side.finish()),
        Arc::new(session.finish()),
        Arc::new(seq.finish()),
        Arc::new(clone.finish()),
        Arc::new(fp.finish()),
        Arc::new(norm.finish()),
        Arc::new(sql.finish()),
        Arc::new(proto.finish()),
        Arc::new(read_only.finish()),
        Arc::new(ptypes.finish()),
        Arc::new(pformats.finish()),
        Arc::new(pvalues.finish()),
        Arc::new(rformats.finish()),
        Arc::new(max_rows.finish()),
        Arc::new(cts.finish()),
        Arc::new(cdur.finish()),
        Arc::new(ctag.finish()),
        Arc::new(crows.finish()),
        Arc::new(coh.finish()),
        Arc::new(cuh.finish()),
        Arc::new(cstate.finish()),
        Arc::new(sched.finish()),
        Arc::new(started.finish()),
        Arc::new(lag.finish()),
        Arc::new(delay.finish()),
        Arc::new(order_wait.finish()),
        Arc::new(order_released.finish()),
        Arc::new(started_at.finish()),
        Arc::new(dur.finish()),
        Arc::new(status.finish()),
        Arc::new(reason.finish()),
        Arc::new(tag.finish()),
        Arc::new(nrows.finish()),
        Arc::new(oh.finish()),
        Arc::new(uh.finish()),
        Arc::new(bytes.finish()),
        Arc::new(cnames.finish()),
        Arc::new(ctypes.finish()),
        Arc::new(state.finish()),
        Arc::new(msg.finish()),
        Arc::new(tnames.finish()),
        Arc::new(remapped.finish()),
    ];
    RecordBatch::try_new(results_schema(), columns).expect("result rows match the results schema")
}
