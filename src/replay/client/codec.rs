//! The client's own message codec: Parse and Bind from captured bytes, the
//! statement names derived from the SQL, RowDescription parsing.

use std::io;

use bytes::{BufMut, BytesMut};
use postgres_protocol::message::frontend;
use xxhash_rust::xxh3::Xxh3;

use super::{Column, Extended};
use crate::wire::frame::put_frame;
use crate::wire::messages::Reader;

/// Bind of the unnamed portal to `statement` with `x`'s captured parameters.
pub(super) fn encode_bind(
    statement: &str,
    x: &Extended<'_>,
    result_formats: &[i16],
    out: &mut BytesMut,
) -> io::Result<()> {
    frontend::bind(
        "",
        statement,
        x.param_formats.iter().copied(),
        x.params.iter(),
        |v, buf| match v {
            Some(b) => {
                buf.put_slice(b);
                Ok(postgres_protocol::IsNull::No)
            }
            None => Ok(postgres_protocol::IsNull::Yes),
        },
        result_formats.iter().copied(),
        out,
    )
    .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "parameter too large to bind"))
}

/// Parse with the SQL as raw bytes (captured SQL need not be UTF-8).
pub(super) fn encode_parse(name: &str, sql: &[u8], oids: &[u32], out: &mut BytesMut) {
    let mut body = Vec::with_capacity(name.len() + sql.len() + 4 + oids.len() * 4);
    body.extend_from_slice(name.as_bytes());
    body.push(0);
    body.extend_from_slice(sql);
    body.push(0);
    body.extend_from_slice(&(oids.len() as i16).to_be_bytes());
    for o in oids {
        body.extend_from_slice(&o.to_be_bytes());
    }
    put_frame(out, b'P', &body);
}

/// The per-connection statement name key: the SQL and its parameter types.
pub fn statement_key(sql: &[u8], oids: &[u32]) -> u64 {
    let mut h = Xxh3::new();
    h.update(sql);
    for o in oids {
        h.update(&o.to_be_bytes());
    }
    h.digest()
}

/// `pgtape_` and the key in hex, written into `buf` (no allocation per statement).
pub(super) fn statement_name(key: u64, buf: &mut [u8; 23]) -> &str {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    buf[..7].copy_from_slice(b"pgtape_");
    for (i, b) in buf[7..].iter_mut().enumerate() {
        *b = HEX[(key >> (60 - 4 * i) & 0xf) as usize];
    }
    std::str::from_utf8(buf).expect("ASCII")
}

/// The result columns of a RowDescription.
pub(super) fn row_description(body: &[u8]) -> Vec<Column> {
    let mut r = Reader::new(body, "RowDescription");
    let Ok(n) = r.count() else { return Vec::new() };
    let mut cols = Vec::with_capacity(n);
    for _ in 0..n {
        let (Ok(name), Ok(table), Ok(attnum), Ok(oid), Ok(_len), Ok(_mod), Ok(format)) = (
            r.cstr(),
            r.i32(),
            r.i16(),
            r.i32(),
            r.i16(),
            r.i32(),
            r.i16(),
        ) else {
            break;
        };
        cols.push(Column {
            name: String::from_utf8_lossy(name).into_owned(),
            type_oid: oid as u32,
            table_oid: table as u32,
            attnum,
            format,
            type_name: None,
        });
    }
    cols
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_names_are_the_key_in_hex() {
        let key = statement_key(b"SELECT $1", &[23]);
        let mut buf = [0u8; 23];
        assert_eq!(statement_name(key, &mut buf), format!("pgtape_{key:016x}"));
        assert_ne!(
            key,
            statement_key(b"SELECT $1", &[25]),
            "types are part of the key"
        );
        assert_eq!(key, statement_key(b"SELECT $1", &[23]));
    }
}
