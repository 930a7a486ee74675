//! One gate's pending entries and waiters, per table. Set 0 holds every
//! entry (what a statement of unknown tables waits on), set 1 the entries of
//! unknown tables (what every statement waits on), set `2 + t` those of
//! table `t`. A set's watermark is its earliest pending entry's time.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::task::Waker;
use std::time::Instant;

use super::{SyncKey, TableSet};

const ALL: usize = 0;
const ANY: usize = 1;

/// Sets a gate has for `tables` known tables.
pub(super) fn sets(tables: usize) -> usize {
    tables + 2
}

/// The sets an entry of `tables` belongs to.
fn entry_sets(tables: &TableSet) -> impl Iterator<Item = usize> + '_ {
    let own: Box<dyn Iterator<Item = usize>> = match tables {
        None => Box::new(std::iter::once(ANY)),
        Some(ts) => Box::new(ts.iter().map(|t| *t as usize + 2)),
    };
    std::iter::once(ALL).chain(own)
}

/// The sets a statement of `tables` waits on.
pub(super) fn wait_sets(tables: &TableSet) -> impl Iterator<Item = usize> + '_ {
    let sets: Box<dyn Iterator<Item = usize>> = match tables {
        None => Box::new(std::iter::once(ALL)),
        Some(ts) => Box::new(std::iter::once(ANY).chain(ts.iter().map(|t| *t as usize + 2))),
    };
    sets
}

pub(super) struct Waiter {
    pub waker: Waker,
    /// Set when a release, not the entries' own end, woke it.
    pub released: Arc<AtomicBool>,
}

/// Where a waiter is registered: a set, or the dispatcher's frontier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Place {
    Set(usize),
    Frontier,
}

struct Set {
    pending: BTreeSet<SyncKey>,
    waiters: BTreeMap<(i64, u64), Waiter>,
    /// When the watermark last moved.
    moved: Instant,
}

pub(super) struct GateState {
    entries: BTreeMap<SyncKey, (u32, TableSet)>,
    sets: Vec<Set>,
    frontier_waiters: BTreeMap<(i64, u64), Waiter>,
}

impl GateState {
    pub fn new(tables: usize) -> GateState {
        let now = Instant::now();
        GateState {
            entries: BTreeMap::new(),
            sets: (0..sets(tables))
                .map(|_| Set {
                    pending: BTreeSet::new(),
                    waiters: BTreeMap::new(),
                    moved: now,
                })
                .collect(),
            frontier_waiters: BTreeMap::new(),
        }
    }

    pub fn insert(&mut self, key: SyncKey, owner: u32, tables: &TableSet, marks: &[AtomicI64]) {
        for s in entry_sets(tables) {
            let set = &mut self.sets[s];
            set.pending.insert(key);
            if key.0 < marks[s].load(Ordering::Relaxed) {
                marks[s].store(key.0, Ordering::Release);
                set.moved = Instant::now();
            }
        }
        self.entries.insert(key, (owner, tables.clone()));
    }

    /// Removes `key`, wakes whom its removal satisfies; whether it was pending.
    pub fn remove(&mut self, key: SyncKey, marks: &[AtomicI64], released: bool) -> bool {
        let Some((_, tables)) = self.entries.remove(&key) else {
            return false;
        };
        for s in entry_sets(&tables) {
            let set = &mut self.sets[s];
            let was_first = set.pending.first() == Some(&key);
            set.pending.remove(&key);
            if !was_first {
                continue;
            }
            let w = set.pending.first().map_or(i64::MAX, |k| k.0);
            marks[s].store(w, Ordering::Release);
            set.moved = Instant::now();
            wake_until(&mut set.waiters, w, released);
        }
        true
    }

    /// Drops every entry and wakes every waiter (the replay is stopping).
    pub fn clear(&mut self, marks: &[AtomicI64]) {
        self.entries.clear();
        for (s, set) in self.sets.iter_mut().enumerate() {
            set.pending.clear();
            marks[s].store(i64::MAX, Ordering::Release);
            wake_until(&mut set.waiters, i64::MAX, false);
        }
        wake_until(&mut self.frontier_waiters, i64::MAX, false);
    }

    pub fn frontier_moved(&mut self, to: i64) {
        wake_until(&mut self.frontier_waiters, to, false);
    }

    pub fn register(&mut self, place: Place, id: (i64, u64), waiter: Waiter) {
        match place {
            Place::Set(s) => self.sets[s].waiters.insert(id, waiter),
            Place::Frontier => self.frontier_waiters.insert(id, waiter),
        };
    }

    /// The registered waiter, to refresh its waker.
    pub fn waiter(&mut self, place: Place, id: (i64, u64)) -> Option<&mut Waiter> {
        match place {
            Place::Set(s) => self.sets[s].waiters.get_mut(&id),
            Place::Frontier => self.frontier_waiters.get_mut(&id),
        }
    }

    pub fn unregister(&mut self, place: Place, id: (i64, u64)) {
        match place {
            Place::Set(s) => self.sets[s].waiters.remove(&id),
            Place::Frontier => self.frontier_waiters.remove(&id),
        };
    }

    /// The earliest pending entry of `set`: its key, owner, and when the
    /// set's watermark last moved.
    pub fn first(&self, set: usize) -> Option<(SyncKey, u32, Instant)> {
        let s = &self.sets[set];
        let key = *s.pending.first()?;
        Some((key, self.entries.get(&key)?.0, s.moved))
    }
}

/// Wakes the waiters whose time is at or before `w`.
fn wake_until(waiters: &mut BTreeMap<(i64, u64), Waiter>, w: i64, released: bool) {
    while let Some(entry) = waiters.first_entry() {
        if entry.key().0 > w {
            break;
        }
        let waiter = entry.remove();
        if released {
            waiter.released.store(true, Ordering::Relaxed);
        }
        waiter.waker.wake();
    }
}
