//! A fast, non-DoS-resistant hasher for the per-row paths (the capture
//! summary, the replay's dispatcher and client): keys there are integers,
//! hashes already, or short ids from the project's own files, never input an
//! attacker chooses. The Fx multiply-rotate is several times cheaper than
//! the standard library's SipHash.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

#[derive(Default, Clone, Copy)]
pub struct Fx(u64);

impl Hasher for Fx {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in chunks.by_ref() {
            self.write_u64(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let mut tail = [0u8; 8];
        let rest = chunks.remainder();
        tail[..rest.len()].copy_from_slice(rest);
        self.write_u64(u64::from_le_bytes(tail) ^ rest.len() as u64);
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_i64(&mut self, n: i64) {
        self.write_u64(n as u64)
    }
}

pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<Fx>>;
pub type FastSet<K> = HashSet<K, BuildHasherDefault<Fx>>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::{BuildHasher, Hash};

    fn hash<T: Hash + ?Sized>(v: &T) -> u64 {
        BuildHasherDefault::<Fx>::default().hash_one(v)
    }

    #[test]
    fn strings_hash_by_every_byte_and_their_length() {
        assert_ne!(hash("capture-a"), hash("capture-b"));
        assert_ne!(hash("0123456789abcdefX"), hash("0123456789abcdefY"));
        assert_ne!(hash(&[0u8][..]), hash(&[0u8, 0][..]));
        assert_eq!(hash(&("id", 7i64)), hash(&("id", 7i64)));
        assert_ne!(hash(&("id", 7i64)), hash(&("id", 8i64)));
    }
}
