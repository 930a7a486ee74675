//! One gate's pending entries and waiters, by scope. Set 0 holds every
//! entry (what a statement of unknown tables waits on), set 1 the entries of
//! unknown tables (what every statement waits on); then, per table, the
//! sets its scopes map to ([`Layout`]). A fixed set's watermark (its
//! earliest pending entry's time) is also kept in an atomic, read without
//! the side's lock; a row's set lives only while it has entries or waiters.
//!
//! A table's whole and wide sets, and its rows' sets, are *kept* (their
//! entries tracked) only from the first wait on them: until then a whole or
//! wide set's watermark reads [`UNKEPT`], which sends a waiter to the lock
//! (as any wait on a row does), where the set is built from the entries at
//! once. A replay keyed by rows never waits on most of them (nothing waits
//! on the rows of a table whose writes commute), and tracking them cost a
//! tree operation per entry.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::task::Waker;
use std::time::Instant;

use super::entries::Entries;
use super::layout::{ALL, Layout, SetId};
use super::{SyncKey, TableSet, scope};
use crate::fasthash::FastMap;

/// The watermark of a set not kept yet: below every time, so a waiter
/// looks under the lock.
pub(super) const UNKEPT: i64 = i64::MIN;

pub(super) struct Waiter {
    pub waker: Waker,
    /// Set when a release, not the entries' own end, woke it.
    pub released: Arc<AtomicBool>,
}

/// Where a waiter is registered: a set, or the dispatcher's frontier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Place {
    Set(SetId),
    Frontier,
}

/// A set's pending entries: most rows' sets hold one at a time, which
/// takes no allocation.
enum Pending {
    None,
    One(SyncKey),
    Many(BTreeSet<SyncKey>),
}

impl Pending {
    fn first(&self) -> Option<&SyncKey> {
        match self {
            Pending::None => None,
            Pending::One(k) => Some(k),
            Pending::Many(s) => s.first(),
        }
    }

    fn insert(&mut self, key: SyncKey) {
        match self {
            Pending::None => *self = Pending::One(key),
            Pending::One(k) if *k == key => {}
            Pending::One(k) => *self = Pending::Many(BTreeSet::from([*k, key])),
            Pending::Many(s) => {
                s.insert(key);
            }
        }
    }

    fn remove(&mut self, key: &SyncKey) {
        match self {
            Pending::One(k) if k == key => *self = Pending::None,
            Pending::Many(s) => {
                s.remove(key);
            }
            _ => {}
        }
    }

    fn is_empty(&self) -> bool {
        self.first().is_none()
    }
}

struct Set {
    pending: Pending,
    waiters: BTreeMap<(i64, u64), Waiter>,
    /// When the watermark last moved.
    moved: Instant,
}

impl Set {
    fn new() -> Set {
        Set {
            pending: Pending::None,
            waiters: BTreeMap::new(),
            moved: Instant::now(),
        }
    }

    fn watermark(&self) -> i64 {
        self.pending.first().map_or(i64::MAX, |k| k.0)
    }
}

pub(super) struct GateState {
    layout: Layout,
    entries: Entries,
    sets: Vec<Set>,
    /// Per fixed set: whether its entries are tracked (always for ALL and ANY).
    kept: Vec<bool>,
    /// Per table: whether its rows' entries are tracked.
    rows_kept: Vec<bool>,
    rows: FastMap<u64, Set>,
    frontier_waiters: BTreeMap<(i64, u64), Waiter>,
}

impl GateState {
    pub fn new(layout: Layout) -> GateState {
        GateState {
            layout,
            entries: Entries::default(),
            sets: (0..layout.sets()).map(|_| Set::new()).collect(),
            kept: (0..layout.sets()).map(|i| i < 2).collect(),
            rows_kept: vec![false; layout.ids],
            rows: FastMap::default(),
            frontier_waiters: BTreeMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// A row's set's watermark (`i64::MAX` when it has no entry).
    pub fn row_watermark(&self, row: u64) -> i64 {
        self.rows.get(&row).map_or(i64::MAX, Set::watermark)
    }

    pub fn insert(&mut self, key: SyncKey, owner: u32, tables: &TableSet, marks: &[AtomicI64]) {
        if self.entries.first().is_none_or(|k| key < k) {
            marks[ALL].store(key.0, Ordering::Release);
            self.sets[ALL].moved = Instant::now();
        }
        let (sets, rows, kept, rows_kept) =
            (&mut self.sets, &mut self.rows, &self.kept, &self.rows_kept);
        self.layout.entry_sets(tables, |s| {
            let set = match s {
                SetId::Fixed(i) if !kept[i] => return,
                SetId::Fixed(i) => &mut sets[i],
                SetId::Row(r) if !rows_kept[scope::split(r).0] => return,
                SetId::Row(r) => rows.entry(r).or_insert_with(Set::new),
            };
            if key.0 < set.watermark() {
                set.moved = Instant::now();
                if let SetId::Fixed(i) = s {
                    marks[i].store(key.0, Ordering::Release);
                }
            }
            set.pending.insert(key);
        });
        self.entries.insert(key, owner, tables.clone());
    }

    /// Removes `key`, wakes whom its removal satisfies; whether it was pending.
    pub fn remove(&mut self, key: SyncKey, marks: &[AtomicI64], released: bool) -> bool {
        let was_first = self.entries.first() == Some(key);
        let Some((_, tables)) = self.entries.remove(&key) else {
            return false;
        };
        if was_first {
            let w = self.entries.first().map_or(i64::MAX, |k| k.0);
            marks[ALL].store(w, Ordering::Release);
            let all = &mut self.sets[ALL];
            all.moved = Instant::now();
            wake_until(&mut all.waiters, w, released);
        }
        let (sets, rows, kept) = (&mut self.sets, &mut self.rows, &self.kept);
        self.layout.entry_sets(&tables, |s| {
            let set = match s {
                SetId::Fixed(i) if !kept[i] => return,
                SetId::Fixed(i) => &mut sets[i],
                SetId::Row(r) => match rows.get_mut(&r) {
                    Some(set) => set,
                    None => return,
                },
            };
            let was_first = set.pending.first() == Some(&key);
            set.pending.remove(&key);
            if was_first {
                let w = set.watermark();
                if let SetId::Fixed(i) = s {
                    marks[i].store(w, Ordering::Release);
                }
                set.moved = Instant::now();
                wake_until(&mut set.waiters, w, released);
            }
            if let SetId::Row(r) = s {
                if set.pending.is_empty() && set.waiters.is_empty() {
                    rows.remove(&r);
                }
            }
        });
        true
    }

    /// Starts keeping the sets of table `t`'s rows if they are not kept
    /// yet: their entries are found among all the gate's.
    pub fn keep_rows(&mut self, t: usize) {
        if self.rows_kept[t] {
            return;
        }
        self.rows_kept[t] = true;
        let (layout, rows) = (self.layout, &mut self.rows);
        for (key, (_, tables)) in self.entries.iter() {
            layout.entry_sets(tables, |s| {
                if let SetId::Row(r) = s {
                    if scope::split(r).0 == t {
                        rows.entry(r).or_insert_with(Set::new).pending.insert(*key);
                    }
                }
            });
        }
    }

    /// Starts keeping fixed set `i` if it is not kept yet: its entries are
    /// found among all the gate's.
    pub fn keep(&mut self, i: usize, marks: &[AtomicI64]) {
        if self.kept[i] {
            return;
        }
        self.kept[i] = true;
        let mut pending = Pending::None;
        for (key, (_, tables)) in self.entries.iter() {
            let mut member = false;
            self.layout
                .entry_sets(tables, |s| member |= s == SetId::Fixed(i));
            if member {
                pending.insert(*key);
            }
        }
        let set = &mut self.sets[i];
        set.pending = pending;
        set.moved = Instant::now();
        marks[i].store(set.watermark(), Ordering::Release);
    }

    /// Drops every entry and wakes every waiter (the replay is stopping).
    pub fn clear(&mut self, marks: &[AtomicI64]) {
        self.entries.clear();
        self.rows_kept.iter_mut().for_each(|k| *k = true);
        for (s, set) in self.sets.iter_mut().enumerate() {
            self.kept[s] = true;
            set.pending = Pending::None;
            marks[s].store(i64::MAX, Ordering::Release);
            wake_until(&mut set.waiters, i64::MAX, false);
        }
        for set in self.rows.values_mut() {
            set.pending = Pending::None;
            wake_until(&mut set.waiters, i64::MAX, false);
        }
        self.rows.clear();
        wake_until(&mut self.frontier_waiters, i64::MAX, false);
    }

    pub fn frontier_moved(&mut self, to: i64) {
        wake_until(&mut self.frontier_waiters, to, false);
    }

    fn set_mut(&mut self, s: SetId) -> &mut Set {
        match s {
            SetId::Fixed(i) => &mut self.sets[i],
            SetId::Row(r) => self.rows.entry(r).or_insert_with(Set::new),
        }
    }

    pub fn register(&mut self, place: Place, id: (i64, u64), waiter: Waiter) {
        match place {
            Place::Set(s) => self.set_mut(s).waiters.insert(id, waiter),
            Place::Frontier => self.frontier_waiters.insert(id, waiter),
        };
    }

    /// The registered waiter, to refresh its waker.
    pub fn waiter(&mut self, place: Place, id: (i64, u64)) -> Option<&mut Waiter> {
        match place {
            Place::Set(SetId::Fixed(i)) => self.sets[i].waiters.get_mut(&id),
            Place::Set(SetId::Row(r)) => self.rows.get_mut(&r)?.waiters.get_mut(&id),
            Place::Frontier => self.frontier_waiters.get_mut(&id),
        }
    }

    pub fn unregister(&mut self, place: Place, id: (i64, u64)) {
        match place {
            Place::Set(SetId::Fixed(i)) => {
                self.sets[i].waiters.remove(&id);
            }
            Place::Set(SetId::Row(r)) => {
                if let Some(set) = self.rows.get_mut(&r) {
                    set.waiters.remove(&id);
                    if set.pending.is_empty() && set.waiters.is_empty() {
                        self.rows.remove(&r);
                    }
                }
            }
            Place::Frontier => {
                self.frontier_waiters.remove(&id);
            }
        }
    }

    /// The earliest pending entry of `set`: its key, owner, and when the
    /// set's watermark last moved.
    pub fn first(&self, set: SetId) -> Option<(SyncKey, u32, Instant)> {
        if set == SetId::Fixed(ALL) {
            let key = self.entries.first()?;
            return Some((key, self.entries.get(&key)?.0, self.sets[ALL].moved));
        }
        let s = match set {
            SetId::Fixed(i) => &self.sets[i],
            SetId::Row(r) => self.rows.get(&r)?,
        };
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
