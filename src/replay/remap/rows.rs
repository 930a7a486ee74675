//! What a statement's rows can hand out ([`Source`]), and its rows read
//! back through a session's mappings ([`StatementRows`]).

use super::SessionRemap;
use super::value::{Kind, Value, cells, class, handed_out, kind, row};
use crate::replay::client::{Column, RowMap};

/// How a statement can hand out values (read from its normalised SQL).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Source {
    /// It calls a generator: every column is a candidate.
    pub generator: bool,
    /// It returns rows it wrote (RETURNING): its table columns are.
    pub returning: bool,
}

impl Source {
    pub fn of(normalized_sql: &str) -> Source {
        Source {
            generator: generates(normalized_sql),
            // Normalised SQL upper-cases clause keywords.
            returning: normalized_sql.contains(" RETURNING "),
        }
    }
}

impl SessionRemap {
    /// Whether a column's values can be ones the session was handed.
    pub(super) fn candidate(&self, col: &Column, how: Source) -> bool {
        kind(col.type_oid).is_some()
            && (handed_out(col.type_oid)
                || how.generator
                || (col.table_oid != 0 && (how.returning || self.ids.contains(col))))
    }
}

pub(super) fn cell_value(col: &Column, cell: &[u8]) -> Option<Value> {
    if col.format == 1 && kind(col.type_oid) != Some(Kind::Text) {
        Value::from_binary(cell, col.type_oid)
    } else {
        Value::from_text(cell)
    }
}

/// SQL calling a function that hands out values.
pub fn generates(normalized_sql: &str) -> bool {
    let s = normalized_sql.to_ascii_lowercase();
    [
        "nextval(",
        "currval(",
        "lastval(",
        "txid_current",
        "pg_current_xact_id",
        "lo_creat",
        "lo_import",
        "gen_random_uuid",
        "uuid_generate",
        "pg_backend_pid",
    ]
    .iter()
    .any(|f| s.contains(f))
}

/// Rows of the statement come in a fixed order: an outermost ORDER BY, or
/// the rows a RETURNING clause returns.
pub(super) fn rows_align(normalized_sql: &str) -> bool {
    let s = normalized_sql.to_ascii_uppercase();
    if s.contains(" RETURNING ") {
        return true;
    }
    let mut depth = 0i32;
    let b = s.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'(' => depth += 1,
            b')' => depth -= 1,
            b'O' if depth == 0
                && b[i..].starts_with(b"ORDER BY")
                && (i == 0 || b[i - 1] == b' ') =>
            {
                return true;
            }
            _ => {}
        }
    }
    false
}

/// A session's mappings as one statement reads its results: mapped values
/// read back as the captured ones.
pub struct StatementRows<'a> {
    pub map: &'a SessionRemap,
    pub how: Source,
}

impl RowMap for StatementRows<'_> {
    fn rewrite(&self, columns: &[Column], body: &[u8], out: &mut Vec<u8>) -> bool {
        if self.map.is_empty() {
            return false;
        }
        let Some(mut cs) = cells(body) else {
            return false;
        };
        if cs.len() != columns.len() {
            return false;
        }
        let mut mapped: Vec<(usize, Vec<u8>)> = Vec::new();
        for (j, (col, cell)) in columns.iter().zip(&cs).enumerate() {
            let Some(cell) = cell else { continue };
            if !self.map.candidate(col, self.how) {
                continue;
            }
            let Some(v) = cell_value(col, cell) else {
                continue;
            };
            let Some(to) = self.map.reverse(class(col.type_oid), &v) else {
                continue;
            };
            let binary = col.format == 1 && kind(col.type_oid) != Some(Kind::Text);
            let bytes = if binary {
                to.binary(cell.len())
            } else {
                Some(to.text())
            };
            if let Some(b) = bytes {
                mapped.push((j, b));
            }
        }
        if mapped.is_empty() {
            return false;
        }
        for (j, b) in &mapped {
            cs[*j] = Some(b.as_slice());
        }
        row(&cs, out);
        true
    }
}
