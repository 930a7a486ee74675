//! A gate's pending entries, with the earliest at hand (see [`Entries`]).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::{SyncKey, TableSet};
use crate::fasthash::FastMap;

/// A gate's pending entries: by key in a hash map (its owner and scopes),
/// and the keys in a min-heap for the earliest. Entries come and go nearly
/// in key order, so a heap push rarely sifts and a removal is one hash
/// lookup, where a tree walked its nodes for every entry; a removed key
/// stays in the heap until it reaches the top, and the heap is rebuilt from
/// the map when such keys outnumber the live ones (a long-pending entry
/// holds the top while thousands come and go behind it).
#[derive(Default)]
pub(super) struct Entries {
    by_key: FastMap<SyncKey, (u32, TableSet)>,
    keys: BinaryHeap<Reverse<SyncKey>>,
}

impl Entries {
    /// The earliest pending key (the heap's top is always live).
    pub fn first(&self) -> Option<SyncKey> {
        self.keys.peek().map(|k| k.0)
    }

    pub fn insert(&mut self, key: SyncKey, owner: u32, tables: TableSet) {
        if self.by_key.insert(key, (owner, tables)).is_none() {
            self.keys.push(Reverse(key));
        }
    }

    pub fn remove(&mut self, key: &SyncKey) -> Option<(u32, TableSet)> {
        let out = self.by_key.remove(key)?;
        while let Some(Reverse(k)) = self.keys.peek() {
            if self.by_key.contains_key(k) {
                break;
            }
            self.keys.pop();
        }
        if self.keys.len() > 1024 + 2 * self.by_key.len() {
            self.keys = self.by_key.keys().map(|k| Reverse(*k)).collect();
        }
        Some(out)
    }

    pub fn get(&self, key: &SyncKey) -> Option<&(u32, TableSet)> {
        self.by_key.get(key)
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn clear(&mut self) {
        self.by_key.clear();
        self.keys.clear();
    }

    pub fn iter(&self) -> impl Iterator<Item = (&SyncKey, &(u32, TableSet))> {
        self.by_key.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_earliest_is_the_least_live_key_whatever_the_order_of_removal() {
        let mut e = Entries::default();
        for k in [(5, 1), (3, 2), (9, 3), (3, 4)] {
            e.insert(k, 0, None);
        }
        assert_eq!(e.first(), Some((3, 2)));
        // Removed behind the top: the top stays.
        assert!(e.remove(&(9, 3)).is_some());
        assert_eq!(e.first(), Some((3, 2)));
        assert!(e.remove(&(3, 2)).is_some());
        assert_eq!(e.first(), Some((3, 4)));
        // The stale (9, 3) below is skipped when it would surface.
        assert!(e.remove(&(3, 4)).is_some());
        assert_eq!(e.first(), Some((5, 1)));
        assert!(e.remove(&(9, 3)).is_none(), "removed once only");
        assert!(e.remove(&(5, 1)).is_some());
        assert_eq!((e.first(), e.len()), (None, 0));
    }

    #[test]
    fn keys_removed_behind_a_long_pending_one_do_not_pile_up() {
        let mut e = Entries::default();
        e.insert((0, 0), 0, None);
        for i in 1..100_000 {
            e.insert((i, i as u64), 1, None);
            assert!(e.remove(&(i, i as u64)).is_some());
        }
        assert_eq!(e.first(), Some((0, 0)));
        assert!(e.keys.len() <= 1024 + 2 * e.len() + 1, "{}", e.keys.len());
    }
}
