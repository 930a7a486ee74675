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
//! - `--max-rate`: it reads until a budget of items waits in the queues (in
//!   memory or spooled), and on past it whenever a session that may hold a
//!   lock has run dry, so a session holding a lock always gets the COMMIT
//!   that releases it.
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

use super::lock_waits::TxnEnds;
use super::order::{Gate, SideOrder, TableSet, scope};
use super::plan::{Item, Items, Outline, PlanError, SessionKey};
use super::queue::{Pressure, SessionQueue};
use super::row_keys::Plan;
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
        // Per fingerprint: its whole tables' scopes, its sequences, its row plan.
        let mut shapes: FastMap<i64, (TableSet, TableSet, Plan)> = FastMap::default();
        let mut txn_ends = TxnEnds::default();
        // The batch's registrations, made at once per side.
        let mut regs: Vec<(Gate, super::order::SyncKey, u32, TableSet)> = Vec::new();
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
                if stats.items % 100_000 == 0 {
                    if let Some(sides) = &self.order {
                        tracing::debug!(
                            items = stats.items,
                            pending = ?sides[0].pending(),
                            "order entries pending (Done, Sent, Seq)"
                        );
                    }
                }
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
                        if self.order.is_some() {
                            let catalog = &self.catalog;
                            let (whole, seqs, plan) =
                                shapes.entry(captured.fingerprint).or_insert_with(|| {
                                    let sql = &captured.facts.normalized;
                                    let ids = catalog.resolve(sql);
                                    let plan =
                                        catalog.keys.plan(&ids, &captured.sql, |n| catalog.id(n));
                                    let seqs = scope::ids(&catalog.sequences.resolve(sql));
                                    (scope::tables(&ids), seqs, plan)
                                });
                            let access = plan.access(whole, captured);
                            // A statement that reads nothing waits for no
                            // sync point: its draws can be keyed by its own
                            // start, when it drew in the capture (a slow
                            // insert was slow after its nextval).
                            let reads_nothing =
                                access.reads.as_deref().is_some_and(|r| r.is_empty());
                            let seqs = seqs.clone();
                            let typical = self.outline.typical_us.get(&captured.fingerprint);
                            *order = tag(
                                captured,
                                access,
                                seqs.is_some(),
                                typical.copied(),
                                &mut txn_ends,
                                &mut s.txn,
                                &mut serial,
                            );
                            // A sync point nothing can wait on is not registered.
                            if order.sync.is_some() && !catalog.keys.observed(&order.sync_tables) {
                                order.sync = None;
                            }
                            if let (Some(after), Some(_)) = (order.after, &seqs) {
                                serial += 1;
                                let at = if reads_nothing { captured.ts_us } else { after };
                                order.seq = Some((at, serial));
                                order.seq_tables = seqs;
                            }
                            if !observers {
                                order.sent = None;
                            }
                            if let Some(sync) = order.sync {
                                regs.push((Gate::Done, sync, s.index, order.sync_tables.clone()));
                            }
                            if let Some(sent) = order.sent {
                                regs.push((Gate::Sent, sent, s.index, order.tables.clone()));
                            }
                            if let Some(seq) = order.seq {
                                regs.push((Gate::Seq, seq, s.index, order.seq_tables.clone()));
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
                // Registered before any item of the batch is handed out.
                for side in sides {
                    side.expect_all(&regs);
                }
                regs.clear();
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
                    let n = items.as_ref().map_or(0, |v| v.len());
                    spooled += n as u64;
                    q.push_disk(b.clone(), n);
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

impl Item {
    pub fn key(&self) -> &SessionKey {
        match self {
            Item::Connect { key, .. }
            | Item::Statement { key, .. }
            | Item::Disconnect { key, .. } => key,
        }
    }
}

mod tag;

use tag::{Txn, tag};

#[cfg(test)]
mod tests;
