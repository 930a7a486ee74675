//! The result hashes the tap records and the replayer recomputes: both sides
//! must hash DataRow bodies the same way for results to be comparable.
//!
//! - ordered: each row's xxh3 is seeded with the previous hash, so the same
//!   rows in another order hash differently;
//! - unordered: the wrapping sum of each row's xxh3, equal for the same
//!   multiset of rows in any order.

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RowHash {
    pub rows: u64,
    pub ordered: u64,
    pub unordered: u64,
    /// Bytes of DataRow messages, headers included.
    pub bytes: u64,
}

impl RowHash {
    /// Adds one DataRow body (the message without its 5-byte header).
    #[inline]
    pub fn add(&mut self, body: &[u8]) {
        self.ordered = xxh3_64_with_seed(body, self.ordered);
        self.unordered = self.unordered.wrapping_add(xxh3_64(body));
        self.bytes += body.len() as u64 + 5;
        self.rows += 1;
    }

    /// Adds one CopyData body of a COPY TO STDOUT: hashed as a row is, but
    /// not counted as one (a COPY's row count is its command tag's; binary
    /// COPY sends its header and trailer in messages of their own).
    #[inline]
    pub fn add_copy(&mut self, body: &[u8]) {
        let rows = self.rows;
        self.add(body);
        self.rows = rows;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_changes_only_the_ordered_hash() {
        let (mut a, mut b) = (RowHash::default(), RowHash::default());
        for r in [&b"x"[..], b"y", b"z"] {
            a.add(r);
        }
        for r in [&b"z"[..], b"x", b"y"] {
            b.add(r);
        }
        assert_eq!(
            (a.unordered, a.rows, a.bytes),
            (b.unordered, b.rows, b.bytes)
        );
        assert_ne!(a.ordered, b.ordered);
        let mut c = RowHash::default();
        c.add(b"x");
        assert_ne!(c.unordered, a.unordered);
    }
}
