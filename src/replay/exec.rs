//! One captured statement run on one connection, with everything the
//! capture kept for it: parameters as captured (with the values `remap`
//! maps replaced), COPY data sent back when the server asks for it, and its
//! result's values learnt from. This is the worker's one call per statement
//! and side; what the worker needs besides is [`skip_reason`] and one
//! [`SessionRemap`] per session and side.

use std::borrow::Cow;
use std::io;

use super::client::{Client, Extended, Extras, KeptRow, Reply, RowMap};
use super::fidelity::CopyIn;
use super::remap::{Mode, SessionRemap, Source, StatementRows};
use super::results::Captured;
use crate::capture::event::Protocol;
use crate::wire::rowhash::RowHash;

/// Why `c` cannot be replayed faithfully, if it cannot: COPY data the
/// capture does not hold.
pub fn skip_reason(c: &Captured) -> Option<Cow<'static, str>> {
    match &c.copy_in {
        CopyIn::OverLimit { bytes, limit } => Some(
            match limit {
                Some(l) => {
                    format!("COPY data over --max-copy-bytes at capture: {bytes} bytes, limit {l}")
                }
                None => format!("COPY data over --max-copy-bytes at capture: {bytes} bytes"),
            }
            .into(),
        ),
        // A capture older than COPY data (schema version 1).
        CopyIn::Unknown if c.facts.copy_in => {
            Some("COPY FROM STDIN data is not in the capture (capture schema version 1)".into())
        }
        _ => None,
    }
}

/// Runs `c` on `client` as captured, with the values `remap` maps
/// replaced; learns from its result what this side hands out.
pub async fn execute(
    client: &mut Client,
    c: &Captured,
    named: bool,
    remap: &mut SessionRemap,
) -> io::Result<Reply> {
    let copy: Vec<&[u8]>;
    let mut ex = Extras::default();
    if let CopyIn::Messages(m) = &c.copy_in {
        copy = m.iter().collect();
        ex.copy_in = Some(&copy);
    }
    let learning = remap.mode() != Mode::None && !c.result_values.is_empty();
    if learning {
        // Rows beyond the captured ones could not be paired with any.
        ex.keep = Some((c.result_values.len() as u64, KEEP_BYTES));
    }
    // Values replaced first (this also notes what the session sent).
    let (mapped_sql, mapped) = if c.protocol == Protocol::Simple {
        (remap.sql(&c.sql), None)
    } else {
        (None, remap.params(c))
    };
    let remapped = mapped_sql
        .as_ref()
        .map(|m| m.1)
        .or(mapped.as_ref().map(|m| m.1))
        .unwrap_or(0);
    let how = if learning || !remap.is_empty() {
        remap.source(c)
    } else {
        Source::default()
    };
    let rows = StatementRows { map: remap, how };
    if !remap.is_empty() {
        ex.rows = Some(&rows);
    }
    let mut out = if c.protocol == Protocol::Simple {
        let sql = mapped_sql.as_ref().map_or(&*c.sql, |m| m.0.as_str());
        client.simple_with(sql.as_bytes(), &ex).await?
    } else {
        // Parameters as slices, on the stack unless there are very many.
        let mut few = [None; 32];
        let many: Vec<Option<&[u8]>>;
        let n = c.param_values.len();
        let params = match &mapped {
            Some((values, _)) => {
                many = values.iter().map(|v| v.as_deref()).collect();
                &many[..]
            }
            None if n <= few.len() => {
                for (slot, v) in few.iter_mut().zip(c.param_values.iter()) {
                    *slot = v;
                }
                &few[..n]
            }
            None => {
                many = c.param_values.iter().collect();
                &many[..]
            }
        };
        let x = Extended {
            sql: c.sql.as_bytes(),
            param_oids: &c.param_types,
            param_formats: &c.param_formats,
            params,
            result_formats: &c.result_formats,
            max_rows: c.max_rows,
            named,
        };
        client.extended_with(&x, &ex).await?
    };
    out.remapped = remapped;
    if let Some(kept) = out.kept.take() {
        if remap.learn(c, &kept) && out.error.is_none() {
            rehash(&mut out, &kept, &StatementRows { map: remap, how });
        }
    }
    Ok(out)
}

/// Bytes of DataRows kept for learning at most (the captured result was
/// within the capture's bounds; this side's may be a little longer).
const KEEP_BYTES: usize = 64 << 10;

/// Hashes a result again after its own statement taught a mapping (the id
/// an INSERT ... RETURNING got on this side), when every row was kept.
fn rehash(out: &mut Reply, kept: &[KeptRow], rows: &StatementRows<'_>) {
    let held: u64 = kept.iter().map(|k| k.1.len() as u64 + 5).sum();
    if held != out.hash.bytes {
        return;
    }
    let mut h = RowHash::default();
    let mut scratch = Vec::new();
    for (cols, body) in kept {
        if rows.rewrite(cols, body, &mut scratch) {
            h.add(&scratch);
        } else {
            h.add(body);
        }
    }
    (out.hash.ordered, out.hash.unordered) = (h.ordered, h.unordered);
}
