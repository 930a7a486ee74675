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
//! With `--order commit` it tags each statement as it reads it (see
//! [`super::order`]): its tables; a write, DDL, a lock, or the end of a
//! transaction that wrote is a *sync point*, and every statement that reads
//! or writes data must be *sent* before later commits of its tables; both
//! are registered on every side ([`super::order::SideOrder::expect`]) before
//! any later row is handed out, and after each batch the dispatcher
//! publishes how far its registrations are complete (rows come in
//! completion order, late by at most the outline's measured lateness).
//!
//! A write's "start" is when it really ran: just after the latest end of
//! another writing transaction on its tables while it ran, when it may
//! have queued for that transaction's locks ([`super::lock_waits`]), or its
//! end less its fingerprint's typical (median) duration when it took longer
//! than that (past the estimate's error). A write that queued for a lock in
//! the capture, and whatever completed while it waited (the holder's COMMIT, the writes
//! that queued before it) must complete before it on replay too, or the
//! replay takes the locks in another order and makes a wait that cannot end.
//! This never waits for a session's own later work: a sync point that
//! completed before the write did cannot have needed the write's locks.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::lock_waits::{self, TxnEnds};
use super::order::{Gate, SideOrder, TableSet};
use super::plan::{Item, Items, OrderTag, Outline, PlanError, SessionKey};
use super::queue::{Pressure, SessionQueue};
use super::results::Captured;
use super::spool::Spool;
use super::tables::Catalog;
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
    /// How statements map to tables (`--order commit`).
    pub catalog: Arc<Catalog>,
    /// Typical durations, lateness, writes: the outline's.
    pub outline: Arc<Outline>,
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
    /// What the session's open transaction wrote.
    txn: Txn,
    staged: Vec<Item>,
}

/// The tables a transaction wrote so far.
#[derive(Debug, Default)]
struct Txn {
    wrote: bool,
    /// `None` once it wrote a table of unknown name.
    tables: Option<std::collections::BTreeSet<u32>>,
}

impl Txn {
    fn add(&mut self, t: &TableSet) {
        if !self.wrote {
            self.wrote = true;
            self.tables = Some(Default::default());
        }
        match (t, &mut self.tables) {
            (Some(t), Some(mine)) => mine.extend(t.iter().copied()),
            _ => self.tables = None,
        }
    }

    fn take(&mut self) -> TableSet {
        let t = std::mem::take(self);
        t.tables.map(|s| s.into_iter().collect::<Vec<_>>().into())
    }
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
        let mut ended = i64::MIN;
        // Statements must be sent before later commits only if anything commits.
        let observers = !self.outline.typical_us.is_empty();
        let mut shapes: FastMap<i64, (TableSet, TableSet)> = FastMap::default();
        let mut txn_ends = TxnEnds::default();
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
                        txn: Txn::default(),
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
                        ended = ended.max(captured.ts_us + captured.duration_us.max(0));
                        if let Some(sides) = &self.order {
                            let (tables, seqs) = shapes
                                .entry(captured.fingerprint)
                                .or_insert_with(|| {
                                    let sql = &captured.normalized_sql;
                                    (
                                        self.catalog.resolve(sql),
                                        self.catalog.sequences.resolve(sql),
                                    )
                                })
                                .clone();
                            let typical = self.outline.typical_us.get(&captured.fingerprint);
                            *order = tag(
                                captured,
                                tables,
                                typical.copied(),
                                &mut txn_ends,
                                &mut s.txn,
                                &mut serial,
                            );
                            if let (Some(after), Some(_)) = (order.after, &seqs) {
                                serial += 1;
                                order.seq = Some((after, serial));
                                order.seq_tables = seqs;
                            }
                            if !observers {
                                order.sent = None;
                            }
                            for side in sides {
                                if let Some(sync) = order.sync {
                                    side.expect(Gate::Done, sync, s.index, &order.sync_tables);
                                }
                                if let Some(sent) = order.sent {
                                    side.expect(Gate::Sent, sent, s.index, &order.tables);
                                }
                                if let Some(seq) = order.seq {
                                    side.expect(Gate::Seq, seq, s.index, &order.seq_tables);
                                }
                            }
                            stats.sync_points += order.sync.is_some() as u64;
                        }
                    }
                    Item::Connect { ts_us, .. } => frontier = frontier.max(*ts_us),
                    Item::Disconnect { .. } => {}
                }
                s.staged.push(item);
            }
            if let Some(sides) = &self.order {
                let o = &self.outline;
                for side in sides {
                    side.advance_frontier(Gate::Done, ended.saturating_sub(o.max_end_lateness_us));
                    side.advance_frontier(Gate::Sent, frontier.saturating_sub(o.max_lateness_us));
                    side.advance_frontier(Gate::Seq, frontier.saturating_sub(o.max_lateness_us));
                }
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
        // Every registration is made: nothing waits for the frontier any more.
        for side in self.order.iter().flatten() {
            side.advance_frontier(Gate::Done, i64::MAX);
            side.advance_frontier(Gate::Sent, i64::MAX);
            side.advance_frontier(Gate::Seq, i64::MAX);
        }
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

/// The order tag of a statement using `tables`: what it waits for (what
/// had completed before it ran; for a write, its end less its fingerprint's
/// typical duration when that is later than its start), whether it is a sync
/// point (it writes, locks, or ends a transaction that did) and on which
/// tables, whether it must be sent before later commits (it reads or writes
/// data), and whether it ends a writing transaction (so waits for those).
fn tag(
    c: &Captured,
    tables: TableSet,
    typical_us: Option<i64>,
    txn_ends: &mut TxnEnds,
    txn: &mut Txn,
    serial: &mut u64,
) -> OrderTag {
    let control = control(&c.normalized_sql);
    let writes = !c.read_only || takes_lock(&c.normalized_sql);
    let end = c.ts_us + c.duration_us.max(0);
    // "Much longer": past the error of the median's estimate (19 %), so a
    // statement that is its fingerprint's only sample counts from its start.
    let ran = match typical_us {
        Some(t) if writes && c.duration_us > t + t / 5 => end - t,
        _ => c.ts_us,
    };
    // Or it ran after the transaction end it queued behind.
    let ran = match writes && lock_waits::may_queue(&c.normalized_sql) {
        true => txn_ends
            .latest_within(c.ts_us, end, &tables)
            .map_or(ran, |e| ran.max(e + 1)),
        false => ran,
    };
    if writes {
        txn.add(&tables);
    }
    // Transaction status after the statement: idle means its transaction
    // (explicit, or the statement's own) ended here.
    let ends = c.tx_status == b'I';
    let publishes = ends && txn.wrote;
    let sync = writes || publishes;
    let sync_tables = if ends { txn.take() } else { tables.clone() };
    if publishes {
        txn_ends.push(end, sync_tables.clone());
    }
    let mut next = || {
        *serial += 1;
        *serial
    };
    OrderTag {
        after: (!control).then_some(ran),
        sync: sync.then(|| (end, next())),
        sync_tables: if sync { sync_tables } else { None },
        sent: (!control).then(|| (ran, next())),
        publish: publishes.then_some(c.ts_us),
        tables,
        ..Default::default()
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

    fn t(ids: &[u32]) -> TableSet {
        Some(ids.into())
    }

    /// Writes and the end of a writing transaction are sync points, the end
    /// on every table the transaction wrote; reads, BEGIN and the end of a
    /// read-only transaction are not.
    #[test]
    fn sync_points_are_writes_locks_and_ends_of_writing_transactions() {
        let (mut txn, mut serial) = (Txn::default(), 0);
        let mut tag_of = |sql, ro, tx, tables: TableSet| {
            tag(
                &stmt(sql, ro, tx, 100),
                tables,
                None,
                &mut TxnEnds::default(),
                &mut txn,
                &mut serial,
            )
        };
        assert_eq!(tag_of("BEGIN", true, b'T', None).sync, None);
        assert_eq!(tag_of("SELECT ?", true, b'T', t(&[0])).sync, None);
        assert_eq!(
            tag_of("COMMIT", true, b'I', None).sync,
            None,
            "read-only transaction"
        );
        tag_of("BEGIN", true, b'T', None);
        let u = tag_of("UPDATE t SET a = ?", false, b'T', t(&[1]));
        assert_eq!(
            (u.sync.map(|s| s.0), u.sync_tables.clone()),
            (Some(110), t(&[1]))
        );
        assert_eq!(u.publish, None, "not visible before its COMMIT");
        tag_of("SELECT ?", true, b'T', t(&[0]));
        tag_of("INSERT INTO u VALUES (?)", false, b'T', t(&[2]));
        let c = tag_of("COMMIT", true, b'I', None);
        assert_eq!(c.sync_tables, t(&[1, 2]), "what the transaction wrote");
        assert_eq!((c.after, c.sent, c.publish), (None, None, Some(100)));
        let r = tag_of("SELECT ?", true, b'I', t(&[0]));
        assert_eq!(
            (r.sync, r.after, r.sent.map(|s| s.0)),
            (None, Some(100), Some(100))
        );
        let a = tag_of("INSERT INTO t VALUES (?)", false, b'I', t(&[1]));
        assert_eq!((a.sync_tables, a.publish), (t(&[1]), Some(100)));
        let l = tag_of("SELECT pg_advisory_lock(?)", true, b'I', None);
        assert_eq!((l.sync.is_some(), l.sync_tables), (true, None));
        // A failed writing transaction rolled back is still a sync point:
        // its locks were held until then.
        tag_of("BEGIN", true, b'T', None);
        assert!(tag_of("DELETE FROM t", false, b'E', t(&[1])).sync.is_some());
        assert!(tag_of("ROLLBACK", true, b'I', None).sync.is_some());
        // A write of unknown tables makes its transaction's end "any table".
        tag_of("BEGIN", true, b'T', None);
        tag_of("SELECT f()", false, b'T', None);
        tag_of("UPDATE t SET a = ?", false, b'T', t(&[1]));
        assert_eq!(tag_of("COMMIT", true, b'I', None).sync_tables, None);
        // Transaction control sees no data and takes no lock: it waits for
        // nothing and need not be sent before anything.
        for sql in ["BEGIN", "COMMIT", "END", "SET x = ?", "ROLLBACK"] {
            let c = tag_of(sql, true, b'I', None);
            assert_eq!((c.after, c.sent), (None, None), "{sql}");
        }
    }

    /// A write that took longer than its fingerprint usually does waited
    /// for a lock: it really ran at its end less the typical duration, and
    /// waits for what completed until then. A read keeps its start.
    #[test]
    fn a_write_that_waited_in_the_capture_runs_after_what_it_waited_for() {
        let (mut txn, mut serial) = (Txn::default(), 0);
        let mut slow = stmt("UPDATE t SET a = ?", false, b'T', 1_000);
        slow.duration_us = 50_000;
        let w = tag(
            &slow,
            t(&[0]),
            Some(200),
            &mut TxnEnds::default(),
            &mut txn,
            &mut serial,
        );
        assert_eq!(w.after, Some(1_000 + 50_000 - 200));
        assert_eq!(w.sent.map(|s| s.0), w.after);
        let quick = stmt("UPDATE t SET a = ?", false, b'T', 1_000);
        let w = tag(
            &quick,
            t(&[0]),
            Some(200),
            &mut TxnEnds::default(),
            &mut txn,
            &mut serial,
        );
        assert_eq!(w.after, Some(1_000), "shorter than typical: its start");
        let mut near = stmt("UPDATE t SET a = ?", false, b'T', 1_000);
        near.duration_us = 230;
        let w = tag(
            &near,
            t(&[0]),
            Some(200),
            &mut TxnEnds::default(),
            &mut txn,
            &mut serial,
        );
        assert_eq!(w.after, Some(1_000), "within the median's error: its start");
        // A quick write that ran while another transaction on its table
        // ended queued behind it; an insert did not.
        let mut ends = TxnEnds::default();
        ends.push(1_100, t(&[0]));
        let mut queued = stmt("UPDATE t SET a = ?", false, b'T', 1_000);
        queued.duration_us = 200;
        let w = tag(
            &queued,
            t(&[0]),
            Some(200),
            &mut ends,
            &mut txn,
            &mut serial,
        );
        assert_eq!(w.after, Some(1_101));
        let mut insert = stmt("INSERT INTO t VALUES (?)", false, b'T', 1_000);
        insert.duration_us = 200;
        let w = tag(
            &insert,
            t(&[0]),
            Some(200),
            &mut ends,
            &mut txn,
            &mut serial,
        );
        assert_eq!(w.after, Some(1_000));
        let mut read = stmt("SELECT ?", true, b'T', 1_000);
        read.duration_us = 50_000;
        let r = tag(
            &read,
            t(&[0]),
            Some(200),
            &mut TxnEnds::default(),
            &mut txn,
            &mut serial,
        );
        assert_eq!(r.after, Some(1_000));
    }
}
