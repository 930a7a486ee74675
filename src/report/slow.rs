//! Slow statements: a second streaming pass whose row filter reads only
//! `duration_us`, so the SQL and parameters are decoded for the slow rows
//! alone; the list is trimmed as it grows, so memory stays bounded.

use arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use arrow::compute::kernels::cmp::gt;
use arrow::datatypes::{Int16Type, Int64Type, TimestampMicrosecondType};

use super::summary::{SlowStatement, SummaryOptions};
use crate::capture::schema::rfc3339_us;
use crate::capture::{Capture, CaptureError, col};
use crate::wire::messages::render_param;

/// The slowest statements over `slow_ms`, with their parameters. Only rows
/// that pass the duration filter have their SQL and parameters decoded.
pub fn slow_statements(
    cap: &Capture,
    opts: &SummaryOptions,
) -> Result<Vec<SlowStatement>, CaptureError> {
    if opts.slow_limit == 0 {
        return Ok(Vec::new());
    }
    let threshold = (opts.slow_ms * 1000.0) as i64;
    let pred: crate::capture::reader::Predicate = std::sync::Arc::new(move |b: &RecordBatch| {
        let d = b.column(0).as_primitive::<Int64Type>();
        let t = arrow::array::Int64Array::new_scalar(threshold);
        let m: BooleanArray = gt(d, &t)?;
        Ok(m)
    });
    let cols = [
        col::TS,
        col::SESSION_ID,
        col::SEQ,
        col::DURATION_US,
        col::FINGERPRINT,
        col::SQL,
        col::PARAM_FORMATS,
        col::PARAM_VALUES,
    ];
    let mut out: Vec<SlowStatement> = Vec::new();
    for b in cap.scan(&cols).filter(&[col::DURATION_US], pred) {
        let b = b?;
        let ts = b
            .column_by_name(col::TS)
            .expect("projected")
            .as_primitive::<TimestampMicrosecondType>();
        let sid = b
            .column_by_name(col::SESSION_ID)
            .expect("projected")
            .as_primitive::<Int64Type>();
        let seq = b
            .column_by_name(col::SEQ)
            .expect("projected")
            .as_primitive::<Int64Type>();
        let dur = b
            .column_by_name(col::DURATION_US)
            .expect("projected")
            .as_primitive::<Int64Type>();
        let fp = b
            .column_by_name(col::FINGERPRINT)
            .expect("projected")
            .as_primitive::<Int64Type>();
        let sql = b
            .column_by_name(col::SQL)
            .expect("projected")
            .as_string::<i32>();
        let fmts = b
            .column_by_name(col::PARAM_FORMATS)
            .expect("projected")
            .as_list::<i32>();
        let vals = b
            .column_by_name(col::PARAM_VALUES)
            .expect("projected")
            .as_list::<i32>();
        for i in 0..b.num_rows() {
            let f = fmts.value(i);
            let f = f.as_primitive::<Int16Type>();
            let v = vals.value(i);
            let v = v.as_binary::<i32>();
            let params = (0..v.len())
                .map(|j| {
                    (!v.is_null(j)).then(|| {
                        // One format code applies to all parameters; none means text.
                        let code = match f.len() {
                            0 => 0,
                            1 => f.value(0),
                            _ => f.value(j.min(f.len() - 1)),
                        };
                        render_param(v.value(j), code)
                    })
                })
                .collect();
            out.push(SlowStatement {
                ts: rfc3339_us(ts.value(i)),
                session_id: sid.value(i),
                seq: seq.value(i),
                duration_us: dur.value(i),
                fingerprint: format!("{:016x}", fp.value(i) as u64),
                sql: sql.value(i).to_string(),
                params,
            });
        }
        // Keep the list short as we go: memory stays bounded by the limit.
        if out.len() > opts.slow_limit * 4 {
            trim_slow(&mut out, opts.slow_limit);
        }
    }
    trim_slow(&mut out, opts.slow_limit);
    Ok(out)
}

fn trim_slow(v: &mut Vec<SlowStatement>, n: usize) {
    v.sort_by(|a, b| {
        b.duration_us
            .cmp(&a.duration_us)
            .then(a.ts.cmp(&b.ts))
            .then(a.session_id.cmp(&b.session_id))
    });
    v.truncate(n);
}
