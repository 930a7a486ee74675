//! The order of effects across sessions (`--order commit`), one [`SideOrder`]
//! per side.
//!
//! After Oracle Database Replay's commit-order synchronisation, at the
//! grain of its object-level mode refined to rows: three rules, each per
//! scope, each per side.
//!
//! - **See what it saw** ([`Gate::Done`]). A *sync point* is a captured
//!   statement whose completion other sessions can observe: a write, DDL, a
//!   lock, or the end of a transaction that wrote. A statement that ran at
//!   capture time `t` waits until every sync point of the scopes it reads
//!   that had completed before `t` has completed on the side: their commits
//!   are visible to it, their locks taken or given back, as they were.
//! - **Do not see what it did not** ([`Gate::Sent`]). The end of a
//!   transaction (a COMMIT, an autocommit write) that started at `t` waits
//!   until every statement reading its scopes that had started before `t`
//!   has been sent on the side, so none of them sees its effects on replay
//!   when it could not in the capture. A statement that reads no row (an
//!   INSERT no unique index can reject) is waited for by none.
//!
//! - **Take the values it took** ([`Gate::Seq`]). A statement that draws
//!   from a sequence (an INSERT or COPY into a table whose column defaults
//!   to one) waits until every statement drawing from the same sequence
//!   that had started before it has completed on the side, so rows get the
//!   ids they got in the capture (overlapping inserts go in the order they
//!   started, the best the capture can tell: their captured start when they
//!   read nothing, else their effective start, so no cycle can form).
//!
//! Scopes are tables, or rows of them: a statement that binds its table's
//! key (`aid = $2`, `org_id = $1`; see [`super::row_keys`]) reads and
//! writes that key's rows only, and waits only for what touched them, or
//! the whole table; others count for their whole tables (from the SQL and
//! the source's catalog, [`super::tables`]); `None` is "any table":
//! unknown names, views, functions, DDL that creates. The bookkeeping needs
//! no sorting: the dispatcher registers each batch's entries
//! ([`SideOrder::expect_all`]) before any of its statements is handed out,
//! and publishes how far its registrations are complete
//! ([`SideOrder::advance_frontier`]); a gate keeps its pending entries by
//! time per scope, and a statement may pass once the earliest pending entry
//! of each scope it uses is at or after its own time.
//!
//! Every wait points to an earlier time than the waiter's (its effective
//! start; see [`super::dispatch`]), so the rules alone never make a cycle.
//! What must stay true: every registered entry is removed exactly once per
//! side, whatever happens to its statement (run, failed, not replayed,
//! interrupted), or waiters would hang; a wait that cannot be satisfied (a
//! lock taken in another order on replay than in the capture) is broken by
//! [`super::watchdog`] releasing the entry that holds it.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use crate::fasthash::FastMap;

mod entries;
mod gate;
mod layout;
mod wait;

use gate::GateState;
use layout::{Layout, SetId};
pub use wait::Waited;

use super::queue::Pressure;

/// An entry's identity on every side: its captured time (end for a sync
/// point, effective start for a statement to send), then a unique serial.
pub type SyncKey = (i64, u64);

/// The scopes a statement uses ([`scope`]: whole tables, or rows of them,
/// at the Done and Sent gates; sequence ids at the Seq gate); `None` is
/// any table.
pub type TableSet = Option<Arc<[u64]>>;

/// Scopes of the Done and Sent gates: a table's dense id with 40 bits of
/// a row key's hash, or 0 there for the whole table.
pub mod scope {
    use std::sync::Arc;

    use super::TableSet;

    const BITS: u32 = 40;
    const MASK: u64 = (1 << BITS) - 1;

    /// The whole of table `t`.
    pub fn table(t: u32) -> u64 {
        u64::from(t) << BITS
    }

    /// The rows of table `t` whose key hashes to `hash`.
    pub fn row(t: u32, hash: u64) -> u64 {
        (u64::from(t) << BITS) | (1 + hash % MASK)
    }

    /// (table, whether a row's scope).
    pub fn split(s: u64) -> (usize, bool) {
        ((s >> BITS) as usize, s & MASK != 0)
    }

    /// The whole tables of dense ids `ids`.
    pub fn tables(ids: &Option<Arc<[u32]>>) -> TableSet {
        ids.as_ref()
            .map(|ts| ts.iter().map(|t| table(*t)).collect::<Vec<_>>().into())
    }

    /// Plain ids (the Seq gate's sequences) as scopes.
    pub fn ids(ids: &Option<Arc<[u32]>>) -> TableSet {
        ids.as_ref()
            .map(|ts| ts.iter().map(|t| u64::from(*t)).collect::<Vec<_>>().into())
    }

    /// Whether two scope sets may touch the same row (`None`: any table).
    pub fn overlap(a: &TableSet, b: &TableSet) -> bool {
        let (Some(a), Some(b)) = (a, b) else {
            return true;
        };
        a.iter().any(|x| {
            b.iter().any(|y| {
                let ((ta, ra), (tb, rb)) = (split(*x), split(*y));
                ta == tb && (!ra || !rb || x == y)
            })
        })
    }
}

/// How a replay orders statements across sessions (`--order`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OrderMode {
    /// Each session keeps its own order only.
    Session,
    /// Statements see, on each side, what they saw in the capture and no
    /// more (commit-order synchronisation, per table or per row key).
    Commit,
}

/// The two rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Sync points, pending until they completed on the side.
    Done = 0,
    /// Statements, pending until they were sent on the side.
    Sent = 1,
    /// Statements drawing from a sequence (sets are sequences, not tables),
    /// pending until they completed on the side.
    Seq = 2,
}

/// Gates a side keeps.
const GATES: usize = 3;

/// A replay session's registration on a side: its backend and what it is
/// doing, which is what the watchdog's cycle test needs.
#[derive(Debug, Default)]
pub struct Slot {
    pub pid: AtomicI32,
    pub waiting: AtomicBool,
    /// A statement of the session is in flight on the side.
    pub running: AtomicBool,
    /// Where its wait is registered, and since when (under the side's lock).
    blocked: Mutex<Option<(Gate, SetId, Instant)>>,
}

/// Why a pending entry was released before its statement got there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// PostgreSQL showed its session blocked by a session waiting for order.
    Deadlock,
    /// `--order-timeout` passed without the wait moving.
    Timeout,
}

struct Inner {
    gates: [GateState; GATES],
    next_waiter: u64,
    slots: FastMap<u64, Arc<Slot>>,
}

/// One side's order of effects.
pub struct SideOrder {
    inner: Mutex<Inner>,
    /// Per gate, per set (all, any table, then each table): the earliest
    /// pending entry's time (`i64::MAX` when none), read without the lock.
    watermarks: [Box<[AtomicI64]>; GATES],
    /// Per gate: how its scopes map to its sets.
    layouts: [Layout; GATES],
    /// Per gate: every entry before this time is registered.
    frontier: [AtomicI64; GATES],
    closed: AtomicBool,
    waiting: AtomicU64,
    released_deadlock: AtomicU64,
    released_timeout: AtomicU64,
    /// Woken when a session waits for the dispatcher's frontier.
    pressure: Arc<Pressure>,
}

impl SideOrder {
    /// The order of a side whose statements use `tables` known tables
    /// (with their rows) and draw from `sequences` known sequences.
    pub fn new(tables: usize, sequences: usize, pressure: Arc<Pressure>) -> SideOrder {
        let rows = Layout::keyed(tables);
        let plain = Layout::plain(sequences);
        // ALL and ANY are kept from the start; a table's sets once waited on.
        let marks = |l: Layout| {
            (0..l.sets())
                .map(|i| AtomicI64::new(if i < 2 { i64::MAX } else { gate::UNKEPT }))
                .collect::<Box<[_]>>()
        };
        SideOrder {
            inner: Mutex::new(Inner {
                gates: [
                    GateState::new(rows),
                    GateState::new(rows),
                    GateState::new(plain),
                ],
                next_waiter: 0,
                slots: FastMap::default(),
            }),
            watermarks: [marks(rows), marks(rows), marks(plain)],
            layouts: [rows, rows, plain],
            frontier: [const { AtomicI64::new(i64::MIN) }; GATES],
            closed: AtomicBool::new(false),
            waiting: AtomicU64::new(0),
            released_deadlock: AtomicU64::new(0),
            released_timeout: AtomicU64::new(0),
            pressure,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers an entry of captured session `owner` (the dispatcher,
    /// before handing out any statement that could wait for it).
    pub fn expect(&self, gate: Gate, key: SyncKey, owner: u32, tables: &TableSet) {
        let mut g = self.lock();
        g.gates[gate as usize].insert(key, owner, tables, &self.watermarks[gate as usize]);
    }

    /// [`Self::expect`] for many entries under one lock (a batch's).
    pub fn expect_all(&self, entries: &[(Gate, SyncKey, u32, TableSet)]) {
        if entries.is_empty() {
            return;
        }
        let mut g = self.lock();
        for (gate, key, owner, tables) in entries {
            g.gates[*gate as usize].insert(*key, *owner, tables, &self.watermarks[*gate as usize]);
        }
    }

    /// [`Self::remove`] for each entry given, under one lock.
    pub fn remove_all(&self, entries: &[(Gate, Option<SyncKey>)]) {
        if entries.iter().all(|(_, k)| k.is_none()) {
            return;
        }
        let mut g = self.lock();
        for (gate, key) in entries {
            if let Some(key) = key {
                g.gates[*gate as usize].remove(*key, &self.watermarks[*gate as usize], false);
            }
        }
    }

    /// The entry's statement completed (`Done`) or was sent (`Sent`) on this
    /// side, or never will be; removing it twice is harmless.
    pub fn remove(&self, gate: Gate, key: SyncKey) {
        let mut g = self.lock();
        g.gates[gate as usize].remove(key, &self.watermarks[gate as usize], false);
    }

    /// Releases a pending entry so those waiting for it go on; whether it
    /// was still pending.
    pub fn release(&self, gate: Gate, key: SyncKey, why: Release) -> bool {
        let mut g = self.lock();
        if !g.gates[gate as usize].remove(key, &self.watermarks[gate as usize], true) {
            return false;
        }
        match why {
            Release::Deadlock => &self.released_deadlock,
            Release::Timeout => &self.released_timeout,
        }
        .fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Every entry of `gate` before `to` is registered.
    pub fn advance_frontier(&self, gate: Gate, to: i64) {
        let f = &self.frontier[gate as usize];
        if to <= f.load(Ordering::Relaxed) {
            return;
        }
        f.store(to, Ordering::Release);
        let mut g = self.lock();
        g.gates[gate as usize].frontier_moved(to);
    }

    /// Ends every wait: the replay is stopping.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let mut g = self.lock();
        for (i, gate) in g.gates.iter_mut().enumerate() {
            gate.clear(&self.watermarks[i]);
        }
    }

    /// Registers a replay session's slot (`task` is unique per session and clone).
    pub fn register(&self, task: u64) -> Arc<Slot> {
        let slot = Arc::new(Slot::default());
        self.lock().slots.insert(task, slot.clone());
        slot
    }

    pub fn unregister(&self, task: u64) {
        self.lock().slots.remove(&task);
    }

    /// What the watchdog looks at: every registered backend, and for each
    /// waiting one the entry that holds it, that entry's owner, and since
    /// when it has been held there. `None` while nobody waits.
    pub fn snapshot(&self) -> Option<Vec<Backend>> {
        if self.waiting.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let g = self.lock();
        let backends = g
            .slots
            .iter()
            .map(|(task, s)| {
                let blocked = *s.blocked.lock().unwrap_or_else(|e| e.into_inner());
                Backend {
                    task: *task,
                    pid: s.pid.load(Ordering::Relaxed),
                    waiting: s.waiting.load(Ordering::Relaxed),
                    running: s.running.load(Ordering::Relaxed),
                    held_by: blocked.and_then(|(gate, set, since)| {
                        let (key, owner, moved) = g.gates[gate as usize].first(set)?;
                        Some(Held {
                            gate,
                            key,
                            owner,
                            since: since.max(moved),
                        })
                    }),
                }
            })
            .collect();
        Some(backends)
    }

    /// Entries pending per gate (for the log).
    pub fn pending(&self) -> [usize; GATES] {
        let g = self.lock();
        [0, 1, 2].map(|i| g.gates[i].len())
    }

    /// Releases so far: (replay-made lock cycles broken, timeouts).
    pub fn releases(&self) -> (u64, u64) {
        (
            self.released_deadlock.load(Ordering::Relaxed),
            self.released_timeout.load(Ordering::Relaxed),
        )
    }
}

/// A replay session's backend on the side, as the watchdog sees it.
#[derive(Debug, Clone, Copy)]
pub struct Backend {
    pub task: u64,
    /// 0 until connected.
    pub pid: i32,
    pub waiting: bool,
    pub running: bool,
    /// What its wait for order is held by.
    pub held_by: Option<Held>,
}

/// The entry a wait is held by.
#[derive(Debug, Clone, Copy)]
pub struct Held {
    pub gate: Gate,
    pub key: SyncKey,
    /// The captured session (dispatcher index) that owns the entry.
    pub owner: u32,
    /// Held there since (the wait's registration, or the last move of what
    /// holds it, whichever is later).
    pub since: Instant,
}

/// The task key of a session's clone: the captured session's dispatcher
/// index and the clone number.
pub fn task_key(session: u32, clone: i32) -> u64 {
    ((session as u64) << 16) | (clone as u64 & 0xffff)
}

#[cfg(test)]
mod tests;
