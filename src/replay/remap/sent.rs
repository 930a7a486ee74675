//! The values a side's sessions sent as captured (parameters and literals),
//! remembered in a Bloom filter: a value already sent before the database
//! handed it out is ambiguous (the `3` of `org_id = 3` is not the session
//! id 3 an INSERT returned later), so no mapping of it is learnt.
//!
//! Fixed size and lock-free: 4 Mi bits (512 KiB) per side, three probes
//! from one xxh3 hash. A false positive only costs a mapping not learnt.

use std::sync::atomic::{AtomicU64, Ordering};

use xxhash_rust::xxh3::xxh3_64;

use super::value::Value;

const WORDS: usize = 1 << 16;
const BITS: u64 = (WORDS as u64) * 64;

#[derive(Debug)]
pub struct Sent(Box<[AtomicU64]>);

impl Default for Sent {
    fn default() -> Self {
        Sent((0..WORDS).map(|_| AtomicU64::new(0)).collect())
    }
}

fn probes(v: &Value) -> [u64; 3] {
    let h = match v {
        Value::Int(i) => xxh3_64(&i.to_le_bytes()),
        Value::Uuid(u) => xxh3_64(u),
        Value::Text(t) => xxh3_64(t) ^ 0x9e37_79b9_7f4a_7c15,
    };
    let (a, b) = (h, h.rotate_left(21) | 1);
    [
        a % BITS,
        a.wrapping_add(b) % BITS,
        a.wrapping_add(b.wrapping_mul(2)) % BITS,
    ]
}

impl Sent {
    pub fn insert(&self, v: &Value) {
        for p in probes(v) {
            let bit = 1u64 << (p % 64);
            let w = &self.0[(p / 64) as usize];
            if w.load(Ordering::Relaxed) & bit == 0 {
                w.fetch_or(bit, Ordering::Relaxed);
            }
        }
    }

    pub fn contains(&self, v: &Value) -> bool {
        probes(v)
            .iter()
            .all(|p| self.0[(p / 64) as usize].load(Ordering::Relaxed) & (1 << (p % 64)) != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_was_sent_is_remembered_and_little_else() {
        let s = Sent::default();
        for i in 0..10_000 {
            s.insert(&Value::Int(i));
        }
        assert!((0..10_000).all(|i| s.contains(&Value::Int(i))));
        let false_positives = (1_000_000..1_010_000)
            .filter(|&i| s.contains(&Value::Int(i)))
            .count();
        assert!(false_positives < 10, "{false_positives}");
        assert!(
            !s.contains(&Value::Text((*b"3").into())),
            "3 the text is not 3 the number"
        );
    }
}
