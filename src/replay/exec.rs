//! One captured statement run on one connection, with everything the
//! capture kept for it: parameters as captured, COPY data sent back when the
//! server asks for it. This is the worker's one call per statement and side;
//! what the worker needs besides is [`skip_reason`].

use std::borrow::Cow;
use std::io;

use super::client::{Client, Extended, Extras, Outcome};
use super::fidelity::CopyIn;
use super::results::Captured;

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
        CopyIn::Unknown if copy_from_stdin(&c.normalized_sql) => {
            Some("COPY FROM STDIN data is not in the capture (capture schema version 1)".into())
        }
        _ => None,
    }
}

/// A version-1 capture's COPY FROM STDIN, by its normalised SQL.
fn copy_from_stdin(normalized: &str) -> bool {
    let n = normalized.as_bytes();
    let copy = n.get(..4).is_some_and(|w| w.eq_ignore_ascii_case(b"COPY"));
    copy && n.windows(10).any(|w| w.eq_ignore_ascii_case(b"FROM STDIN"))
}

/// Runs `c` on `client` as captured.
pub async fn execute(client: &mut Client, c: &Captured, named: bool) -> io::Result<Outcome> {
    let copy: Vec<&[u8]>;
    let mut ex = Extras::default();
    if let CopyIn::Messages(m) = &c.copy_in {
        copy = m.iter().collect();
        ex.copy_in = Some(&copy);
    }
    if c.protocol == "simple" {
        return client.simple_with(c.sql.as_bytes(), &ex).await;
    }
    // Parameters as slices, on the stack unless there are very many.
    let mut few = [None; 32];
    let many: Vec<Option<&[u8]>>;
    let params = if c.param_values.len() <= few.len() {
        for (slot, v) in few.iter_mut().zip(c.param_values.iter()) {
            *slot = v;
        }
        &few[..c.param_values.len()]
    } else {
        many = c.param_values.iter().collect();
        &many[..]
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
    client.extended_with(&x, &ex).await
}
