//! The dispatcher: one thread that streams the capture, hands each item to
//! its session's queue, and tags statements with what they owe the order of
//! effects across sessions.
//!
//! What must stay true: no session's progress depends on another session's
//! queue. The dispatcher never waits for a session: a queue that is full in
//! memory takes the rest on the spool ([`super::queue`]). It only waits for
//! time or memory, never for a particular session:
//! - paced (`--speed`): it reads until the capture's start times it has read
//!   are a horizon ahead of the replay clock (at least 2 s, more when rows
//!   come late because they are in completion order: a long statement's row
//!   arrives after those that started after it);
//! - `--max-rate`: it reads until a budget of items waits in memory, and on
//!   past it whenever a session has run dry, so a session holding a lock
//!   always gets the COMMIT that releases it.
//!
//! With `--order commit` it classifies each statement as it reads it: a
//! write, DDL, a lock, or the end of a transaction that wrote is a *sync
//! point*, registered on every side ([`super::order::SideOrder::expect`])
//! before any later row is handed out; every statement waits for the sync
//! points that had completed before it started.
//!
//! A write's "start" is when it really ran: its end less its fingerprint's
//! typical (median) duration, when that is later than its start. A write
//! that took far longer than usual was waiting for a lock in the capture,
//! and whatever completed while it waited (the holder's COMMIT, the writes
//! that queued before it) must complete before it on replay too, or the
//! replay takes the locks in another order and makes a wait that cannot end.
//! This never waits for a session's own later work: a sync point that
//! completed before the write did cannot have needed the write's locks.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::order::SideOrder;
use super::plan::{Item, Items, OrderTag, PlanError, SessionKey};
use super::queue::{Pressure, SessionQueue};
use super::results::Captured;
use super::spool::Spool;
use super::timer::Clock;
use crate::fasthash::FastMap;

/// How far ahead of its sessions the dispatcher reads.
pub enum ReadAhead {
    /// Until this far ahead of the replay clock (in replay time).
    Paced { clock: Clock, horizon: Duration },
    /// Until this many items wait in memory, or further while a session starves.
    MaxRate { budget: i64 },
}

/// Makes the queues of a new captured session (one per replayed copy and
/// side group), spawning their sessions; gets the session's index.
pub type Spawn = Box<dyn FnMut(&SessionKey, u32) -> Vec<Arc<SessionQueue>> + Send>;

pub struct Dispatcher {
    pub items: Items,
    /// The sides' order state with `--order commit`.
    pub order: Option<Vec<Arc<SideOrder>>>,
    pub pressure: Arc<Pressure>,
    pub read_ahead: ReadAhead,
    pub stop: CancellationToken,
    /// `None` if the spool could not be created: queues then grow in memory.
    pub spool: Option<Spool>,
    pub spawn: Spawn,
    /// Typical captured duration of each writing fingerprint (the outline's).
    pub typical_us: Arc<FastMap<i64, i64>>,
}

/// What the dispatcher did, for the log.
#[derive(Debug, Default)]
pub struct Dispatched {
    pub items: u64,
    pub spooled: u64,
    pub sync_points: u64,
}

struct Session {
    index: u32,
    queues: Vec<Arc<SessionQueue>>,
    /// A write happened in the session's open transaction.
    wrote: bool,
    staged: Vec<Item>,
}

impl Dispatcher {
    /// Streams the whole capture (or until stopped), then closes every queue.
    pub fn run(mut self) -> Result<Dispatched, PlanError> {
        let _ = self.pressure.dispatcher.set(std::thread::current());
        let mut sessions: FastMap<SessionKey, Session> = FastMap::default();
        let mut touched: Vec<SessionKey> = Vec::new();
        let mut stats = Dispatched::default();
        let (mut serial, mut next_index) = (0u64, 0u32);
        let mut frontier = i64::MIN;
        let result = loop {
            self.throttle(frontier);
            if self.stop.is_cancelled() {
                break Ok(());
            }
            let batch = match self.items.next_batch() {
                None => break Ok(()),
                Some(Err(e)) => break Err(e),
                Some(Ok(b)) => b,
            };
            for mut item in batch {
                stats.items += 1;
                let key = item.key().clone();
                let s = sessions.entry(key.clone()).or_insert_with(|| {
                    next_index += 1;
                    Session {
                        index: next_index - 1,
                        queues: (self.spawn)(&key, next_index - 1),
                        wrote: false,
                        staged: Vec::new(),
                    }
                });
                if s.staged.is_empty() {
                    touched.push(key);
                }
                match &mut item {
                    Item::Statement {
                        captured, order, ..
                    } => {
                        frontier = frontier.max(captured.ts_us);
                        if let Some(sides) = &self.order {
                            let typical = self.typical_us.get(&captured.fingerprint).copied();
                            *order = tag(captured, typical, &mut s.wrote, &mut serial);
                            if let Some(sync) = order.sync {
                                stats.sync_points += 1;
                                for side in sides {
                                    side.expect(sync, s.index);
                                }
                            }
                        }
                    }
                    Item::Connect { ts_us, .. } => frontier = frontier.max(*ts_us),
                    Item::Disconnect { .. } => {}
                }
                s.staged.push(item);
            }
            for key in touched.drain(..) {
                let s = sessions.get_mut(&key).expect("touched sessions exist");
                let ended = matches!(s.staged.last(), Some(Item::Disconnect { .. }));
                stats.spooled += self.hand_over(s);
                if ended {
                    for q in &s.queues {
                        q.close();
                    }
                    sessions.remove(&key);
                }
            }
        };
        for s in sessions.values() {
            for q in &s.queues {
                q.close();
            }
        }
        result.map(|()| stats)
    }

    /// Gives a session's staged items to its queues: in memory where there
    /// is room, else written once to the spool and shared.
    fn hand_over(&mut self, s: &mut Session) -> u64 {
        let items = std::mem::take(&mut s.staged);
        let full: Vec<bool> = s.queues.iter().map(|q| !q.has_room(items.len())).collect();
        let block = match (&mut self.spool, full.iter().any(|f| *f)) {
            (Some(spool), true) => match spool.append(&items) {
                Ok(b) => Some(b),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot write the replay spool; keeping the items in memory");
                    self.spool = None;
                    None
                }
            },
            _ => None,
        };
        let mut spooled = 0;
        let last = s.queues.len().saturating_sub(1);
        let mut items = Some(items);
        for (i, (q, full)) in s.queues.iter().zip(full).enumerate() {
            match (&block, full) {
                (Some(b), true) => {
                    spooled += items.as_ref().map_or(0, |v| v.len() as u64);
                    q.push_disk(b.clone());
                }
                _ if i == last => q.push_mem(items.take().unwrap_or_default()),
                _ => q.push_mem(items.clone().unwrap_or_default()),
            }
        }
        spooled
    }

    /// Waits while the dispatcher is far enough ahead (never for a session).
    fn throttle(&self, frontier: i64) {
        loop {
            if self.stop.is_cancelled() {
                return;
            }
            let wait = match &self.read_ahead {
                ReadAhead::Paced { clock, horizon } => {
                    if frontier == i64::MIN {
                        return;
                    }
                    let Some(due) = clock.due(frontier, Duration::ZERO) else {
                        return;
                    };
                    let now = Instant::now();
                    if due <= now + *horizon {
                        return;
                    }
                    (due - *horizon - now).min(Duration::from_millis(100))
                }
                ReadAhead::MaxRate { budget } => {
                    let p = &self.pressure;
                    if p.queued.load(Ordering::Relaxed) < *budget
                        || p.starving.load(Ordering::Relaxed) > 0
                    {
                        return;
                    }
                    Duration::from_millis(50)
                }
            };
            std::thread::park_timeout(wait);
        }
    }
}

/// The order tag of a statement: wait for what had completed before it
/// started (a write: before it really ran, given its fingerprint's typical
/// duration); a sync point if it writes, locks, or ends a transaction that did.
fn tag(c: &Captured, typical_us: Option<i64>, wrote: &mut bool, serial: &mut u64) -> OrderTag {
    let writes = !c.read_only || takes_lock(&c.normalized_sql);
    let end = c.ts_us + c.duration_us.max(0);
    let after = match typical_us {
        Some(t) if writes => c.ts_us.max(end - t),
        _ => c.ts_us,
    };
    // Transaction status after the statement: idle means its transaction
    // (explicit, or the statement's own) ended here.
    let ends = c.tx_status == b'I';
    let sync = writes || (ends && *wrote);
    *wrote = !ends && (*wrote || writes);
    OrderTag {
        after: (!control(&c.normalized_sql)).then_some(after),
        sync: sync.then(|| {
            *serial += 1;
            (end, *serial)
        }),
    }
}

/// Transaction and session control: sees no other session's data, takes
/// no lock, so it waits for nothing.
fn control(normalized: &str) -> bool {
    let first = normalized
        .trim_start()
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("");
    const CONTROL: &[&str] = &[
        "BEGIN",
        "START",
        "COMMIT",
        "END",
        "ROLLBACK",
        "ABORT",
        "SAVEPOINT",
        "RELEASE",
        "SET",
        "SHOW",
        "RESET",
        "DISCARD",
        "DEALLOCATE",
    ];
    // COMMIT PREPARED / ROLLBACK PREPARED act on another transaction.
    CONTROL.iter().any(|w| first.eq_ignore_ascii_case(w)) && !normalized.contains("PREPARED")
}

/// Reads that take locks others wait for: advisory locks.
fn takes_lock(normalized: &str) -> bool {
    normalized.contains("advisory")
}

impl Item {
    pub fn key(&self) -> &SessionKey {
        match self {
            Item::Connect { key, .. }
            | Item::Statement { key, .. }
            | Item::Disconnect { key, .. } => key,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stmt(sql: &str, read_only: bool, tx: u8, ts: i64) -> Captured {
        Captured {
            normalized_sql: Arc::from(sql),
            read_only,
            tx_status: tx,
            ts_us: ts,
            duration_us: 10,
            ..Default::default()
        }
    }

    /// Writes and the end of a writing transaction are sync points; reads,
    /// BEGIN and the end of a read-only transaction are not.
    #[test]
    fn sync_points_are_writes_locks_and_ends_of_writing_transactions() {
        let (mut wrote, mut serial) = (false, 0);
        let mut sync =
            |sql, ro, tx| tag(&stmt(sql, ro, tx, 100), None, &mut wrote, &mut serial).sync;
        assert_eq!(sync("BEGIN", true, b'T'), None);
        assert_eq!(sync("SELECT ?", true, b'T'), None);
        assert_eq!(sync("COMMIT", true, b'I'), None, "read-only transaction");
        assert_eq!(sync("BEGIN", true, b'T'), None);
        assert_eq!(sync("UPDATE t SET a = ?", false, b'T'), Some((110, 1)));
        assert_eq!(sync("SELECT ?", true, b'T'), None);
        assert_eq!(sync("COMMIT", true, b'I'), Some((110, 2)));
        assert_eq!(sync("SELECT ?", true, b'I'), None, "autocommit read");
        assert_eq!(
            sync("INSERT INTO t VALUES (?)", false, b'I'),
            Some((110, 3))
        );
        assert_eq!(
            sync("SELECT pg_advisory_lock(?)", true, b'I'),
            Some((110, 4))
        );
        // A failed writing transaction rolled back is still a sync point:
        // its locks were held until then.
        assert_eq!(sync("BEGIN", true, b'T'), None);
        assert_eq!(sync("DELETE FROM t", false, b'E'), Some((110, 5)));
        assert_eq!(sync("ROLLBACK", true, b'I'), Some((110, 6)));
        let t = tag(
            &stmt("SELECT ?", true, b'I', 100),
            Some(2),
            &mut wrote,
            &mut serial,
        );
        assert_eq!(t.after, Some(100));
        // Transaction control sees no data and takes no lock: it waits for nothing.
        for sql in ["BEGIN", "COMMIT", "END", "SET x = ?", "ROLLBACK"] {
            let t = tag(&stmt(sql, true, b'I', 100), None, &mut wrote, &mut serial);
            assert_eq!(t.after, None, "{sql}");
        }
    }

    /// A write that took longer than its fingerprint usually does waited
    /// for a lock: it really ran at its end less the typical duration, and
    /// waits for what completed until then. A read keeps its start.
    #[test]
    fn a_write_that_waited_in_the_capture_runs_after_what_it_waited_for() {
        let (mut wrote, mut serial) = (false, 0);
        let mut slow = stmt("UPDATE t SET a = ?", false, b'T', 1_000);
        slow.duration_us = 50_000;
        let t = tag(&slow, Some(200), &mut wrote, &mut serial);
        assert_eq!(t.after, Some(1_000 + 50_000 - 200));
        let quick = stmt("UPDATE t SET a = ?", false, b'T', 1_000);
        let t = tag(&quick, Some(200), &mut wrote, &mut serial);
        assert_eq!(t.after, Some(1_000), "shorter than typical: its start");
        let mut read = stmt("SELECT ?", true, b'T', 1_000);
        read.duration_us = 50_000;
        let t = tag(&read, Some(200), &mut wrote, &mut serial);
        assert_eq!(t.after, Some(1_000));
    }
}
