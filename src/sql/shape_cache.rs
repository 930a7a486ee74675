//! A cache of query shapes keyed so that statements differing only in their
//! literal values share one entry.
//!
//! Applications that inline values (`WHERE aid = 48213`) send a new text for
//! nearly every statement, so a cache keyed on the raw text misses every time
//! and the tokenizer runs per statement. The key here is the text with each
//! plain numeric and single-quoted literal replaced by a NUL byte (which SQL
//! on the wire can never contain). Two texts with one key differ only inside
//! literal tokens, so the tokenizer gives them the same token kinds and
//! [`shape`] the same normalised text. Anything whose literals need real
//! lexing (backslashes, dollar quotes, comments, quoted identifiers, prefixed
//! strings, `1e5`) keeps its raw text as key: a miss, never a wrong shape.

use std::collections::HashMap;
use std::sync::Arc;

use xxhash_rust::xxh3::xxh3_64;

use super::fingerprint::{Shape, shape};

/// Entries kept before the cache starts over (a workload that generates
/// unbounded distinct shapes must not grow the recorder without limit).
const MAX_ENTRIES: usize = 50_000;

#[derive(Default)]
pub struct ShapeCache {
    shapes: HashMap<u64, Arc<Shape>>,
    /// The masked text of the statement being looked up, reused.
    scratch: Vec<u8>,
}

impl ShapeCache {
    /// The shape of `sql`, tokenizing it only when no statement of the same
    /// shape-up-to-literals was seen before.
    pub fn get(&mut self, sql: &[u8]) -> Arc<Shape> {
        let key = if mask_literals(sql, &mut self.scratch) {
            xxh3_64(&self.scratch)
        } else {
            xxh3_64(sql)
        };
        if let Some(s) = self.shapes.get(&key) {
            return s.clone();
        }
        if self.shapes.len() >= MAX_ENTRIES {
            self.shapes.clear();
        }
        let s = Arc::new(shape(&String::from_utf8_lossy(sql)));
        self.shapes.insert(key, s.clone());
        s
    }
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// Writes `sql` into `out` with plain literals replaced by NUL. Returns false
/// (and `out` is meaningless) when the text needs real lexing.
fn mask_literals(sql: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    let mut i = 0;
    while i < sql.len() {
        let b = sql[i];
        let prev = if i > 0 { sql[i - 1] } else { b' ' };
        match b {
            b'\\' | b'"' | 0 => return false,
            b'$' if !sql.get(i + 1).is_some_and(u8::is_ascii_digit) => return false,
            b'-' if sql.get(i + 1) == Some(&b'-') => return false,
            b'/' if sql.get(i + 1) == Some(&b'*') => return false,
            b'\'' => {
                // E'', B'', X'', N'' and U&'' lex differently: keep them raw.
                if is_ident(prev) || prev == b'&' {
                    return false;
                }
                let mut j = i + 1;
                loop {
                    match sql.get(j) {
                        None => return false,
                        Some(b'\'') if sql.get(j + 1) == Some(&b'\'') => j += 2,
                        Some(b'\'') => break,
                        Some(_) => j += 1,
                    }
                }
                // Adjacent string constants (`'a'\n'b'`) concatenate: keep raw.
                let next = sql[j + 1..].iter().find(|c| !c.is_ascii_whitespace());
                if next == Some(&b'\'') {
                    return false;
                }
                out.push(0);
                i = j + 1;
                continue;
            }
            b'0'..=b'9' if !is_ident(prev) && prev != b'.' => {
                let mut j = i;
                while sql.get(j).is_some_and(u8::is_ascii_digit) {
                    j += 1;
                }
                if sql.get(j) == Some(&b'.') && sql.get(j + 1).is_some_and(u8::is_ascii_digit) {
                    j += 1;
                    while sql.get(j).is_some_and(u8::is_ascii_digit) {
                        j += 1;
                    }
                }
                // `1e5`, `0x1f`, `1_000`, `1.`: lexed otherwise; copy as is.
                if sql.get(j).is_some_and(|&c| is_ident(c) || c == b'.') {
                    out.extend_from_slice(&sql[i..j]);
                } else {
                    out.push(0);
                }
                i = j;
                continue;
            }
            _ => {}
        }
        out.push(b);
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(sql: &str) -> Option<String> {
        let mut out = Vec::new();
        mask_literals(sql.as_bytes(), &mut out)
            .then(|| String::from_utf8_lossy(&out).replace('\0', "?"))
    }

    #[test]
    fn plain_literals_are_masked() {
        assert_eq!(
            masked("SELECT abalance FROM pgbench_accounts WHERE aid = 48213;").as_deref(),
            Some("SELECT abalance FROM pgbench_accounts WHERE aid = ?;")
        );
        assert_eq!(
            masked("select * from t2 where name = 'O''Brien' and x > 1.25 and y = $1").as_deref(),
            Some("select * from t2 where name = ? and x > ? and y = $1")
        );
    }

    #[test]
    fn texts_that_need_lexing_keep_their_raw_key() {
        for sql in [
            "select E'a\\nb'",
            "select $$x$$",
            "select 1 -- one",
            "select /* hint */ 1",
            "select \"Col1\" from t",
            "select 'a' 'b'",
            "select x'1f'",
            "select 'unterminated",
        ] {
            assert_eq!(masked(sql), None, "{sql}");
        }
        // Numbers the tokenizer reads otherwise are copied, not masked.
        assert_eq!(
            masked("select 1e5, 0x1f").as_deref(),
            Some("select 1e5, 0x1f")
        );
    }

    /// The cache's promise: one key, one shape. Every pair of statements
    /// that share a masked key must have the same fingerprint, checked
    /// against the tokenizer itself; texts the mask keeps apart are free to
    /// differ.
    #[test]
    fn one_key_never_hides_a_different_shape() {
        let corpus = [
            "SELECT abalance FROM pgbench_accounts WHERE aid = 1;",
            "SELECT abalance FROM pgbench_accounts WHERE aid = 99999;",
            "UPDATE pgbench_accounts SET abalance = abalance + -4071 WHERE aid = 3;",
            "UPDATE pgbench_accounts SET abalance = abalance + 12 WHERE aid = 3;",
            "select * from t where id in (1, 2, 3)",
            "select * from t where id in (4, 5, 6)",
            "select * from t where id in (4, 5)",
            "insert into t values (1, 'a'), (2, 'b')",
            "insert into t values (3, 'it''s'), (4, '')",
            "select x - 1 from t",
            "select x - 2 from t",
            "select arr[1:2] from t",
            "select arr[3:4] from t",
            "select 1.5 * 2",
            "select 3.25 * 4",
            "select t.x from t where t.y = 'é'",
            "select t.x from t where t.y = 'ü'",
        ];
        let mut by_key: HashMap<Vec<u8>, (&str, u64)> = HashMap::new();
        let mut shared = 0;
        for sql in corpus {
            let mut out = Vec::new();
            assert!(mask_literals(sql.as_bytes(), &mut out), "{sql}");
            let fp = shape(sql).fingerprint;
            if let Some((first, f)) = by_key.get(&out) {
                assert_eq!(*f, fp, "{first:?} and {sql:?} share a key");
                shared += 1;
            } else {
                by_key.insert(out, (sql, fp));
            }
        }
        assert!(shared >= 7, "the corpus exercises shared keys ({shared})");
    }

    #[test]
    fn the_cache_tokenizes_a_shape_once() {
        let mut c = ShapeCache::default();
        let a = c.get(b"select * from t where id = 1");
        let b = c.get(b"select * from t where id = 2");
        assert!(Arc::ptr_eq(&a, &b), "same shape, one entry");
        assert_eq!(a.normalized, "SELECT * FROM t WHERE id = ?");
        let d = c.get(b"select * from u where id = 2");
        assert_ne!(a.fingerprint, d.fingerprint);
        assert_eq!(c.shapes.len(), 2);
    }
}
