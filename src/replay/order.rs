//! The order of effects across sessions (`--order commit`), one [`SideOrder`]
//! per side.
//!
//! After Oracle Database Replay's commit-order synchronisation. A *sync
//! point* is a captured statement whose completion other sessions can
//! observe: a write, DDL, a lock, or the end of a transaction that wrote. In
//! the capture, a statement that started after a sync point had completed
//! saw its effects (its commit was visible, its locks were taken or given
//! back); a statement that started earlier may or may not have. So a replayed
//! statement that started at capture time `t` waits, on each side, until
//! every sync point that had completed before `t` has completed on that side,
//! and for nothing else.
//!
//! The bookkeeping needs no sorting: the capture lists statements in the
//! order they completed, so the dispatcher registers each sync point
//! ([`SideOrder::expect`]) before any statement that started after it is
//! handed to a session. A side keeps the pending sync points by captured
//! end time; its *watermark* is the earliest pending end (or +∞), and a
//! statement that started at `t` may run once the watermark is at least `t`.
//! Completing a sync point ([`SideOrder::complete`]) raises the watermark
//! and wakes exactly the waiters it satisfies.
//!
//! What must stay true: every registered sync point is completed or released
//! exactly once per side, whatever happens to its statement (run, failed,
//! not replayed, interrupted), or waiters would hang; a wait that cannot be
//! satisfied (a lock taken in another order on replay than in the capture)
//! is broken by [`super::watchdog`] releasing the earliest pending sync
//! point, never by a waiter giving up on its own.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use crate::fasthash::FastMap;

/// A sync point's identity on every side: its captured end time, then a
/// tie-breaking serial.
pub type SyncKey = (i64, u64);

/// How a replay orders statements across sessions (`--order`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OrderMode {
    /// Each session keeps its own order only.
    Session,
    /// Each statement waits for the sync points that had completed before it
    /// started in the capture (commit-order synchronisation).
    Commit,
}

/// A replay session's registration on a side: its backend and whether it is
/// waiting for order, which is what the watchdog's cycle test needs.
#[derive(Debug, Default)]
pub struct Slot {
    pub pid: AtomicI32,
    pub waiting: AtomicBool,
    /// A statement of the session is in flight on the side.
    pub running: AtomicBool,
}

/// Why a pending sync point was released before it completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// PostgreSQL showed its session blocked by a session waiting for order.
    Deadlock,
    /// `--order-timeout` passed without the watermark moving.
    Timeout,
}

struct Waiter {
    waker: Waker,
    since: Instant,
    /// Set when the wait ends because of a release rather than completions.
    released: Arc<AtomicBool>,
}

#[derive(Default)]
struct Inner {
    pending: BTreeMap<SyncKey, u32>,
    waiters: BTreeMap<(i64, u64), Waiter>,
    next_waiter: u64,
    slots: FastMap<u64, Arc<Slot>>,
    /// When the watermark last moved (for the watchdog).
    moved: Option<Instant>,
}

/// One side's order of effects.
pub struct SideOrder {
    inner: Mutex<Inner>,
    /// The earliest pending sync point's captured end time, µs (`i64::MAX`
    /// when none is pending): read without the lock on every statement.
    watermark: AtomicI64,
    closed: AtomicBool,
    waiting: AtomicU64,
    released_deadlock: AtomicU64,
    released_timeout: AtomicU64,
}

impl Default for SideOrder {
    fn default() -> Self {
        SideOrder {
            inner: Mutex::default(),
            watermark: AtomicI64::new(i64::MAX),
            closed: AtomicBool::new(false),
            waiting: AtomicU64::new(0),
            released_deadlock: AtomicU64::new(0),
            released_timeout: AtomicU64::new(0),
        }
    }
}

/// How a statement's wait for order ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Waited {
    /// It had to wait at all.
    pub waited: bool,
    /// A release, not the sync points' completion, ended the wait.
    pub released: bool,
}

impl SideOrder {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a sync point of captured session `session` (the dispatcher,
    /// before any statement that started after `key.0` is handed out).
    pub fn expect(&self, key: SyncKey, session: u32) {
        let mut g = self.lock();
        g.pending.insert(key, session);
        if key.0 < self.watermark.load(Ordering::Relaxed) {
            self.watermark.store(key.0, Ordering::Release);
            g.moved = Some(Instant::now());
        }
    }

    /// The sync point ran (or will never run) on this side.
    pub fn complete(&self, key: SyncKey) {
        let mut g = self.lock();
        if g.pending.remove(&key).is_some() {
            self.advance(&mut g, None);
        }
    }

    /// Releases the earliest pending sync point if it is still `key`, so
    /// those waiting for it go on; returns whether it did.
    pub fn release(&self, key: SyncKey, why: Release) -> bool {
        let mut g = self.lock();
        if g.pending.first_key_value().map(|(k, _)| *k) != Some(key) {
            return false;
        }
        g.pending.remove(&key);
        match why {
            Release::Deadlock => &self.released_deadlock,
            Release::Timeout => &self.released_timeout,
        }
        .fetch_add(1, Ordering::Relaxed);
        self.advance(&mut g, Some(key.0));
        true
    }

    /// Ends every wait: the replay is stopping.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let mut g = self.lock();
        g.pending.clear();
        self.advance(&mut g, None);
    }

    /// Recomputes the watermark and wakes the waiters it satisfies; those
    /// that had waited beyond `released_end` owe their wake-up to a release.
    fn advance(&self, g: &mut Inner, released_end: Option<i64>) {
        let w = g.pending.first_key_value().map_or(i64::MAX, |(k, _)| k.0);
        if w == self.watermark.load(Ordering::Relaxed) {
            return;
        }
        self.watermark.store(w, Ordering::Release);
        g.moved = Some(Instant::now());
        while let Some(entry) = g.waiters.first_entry() {
            if entry.key().0 > w {
                break;
            }
            let after = entry.key().0;
            let waiter = entry.remove();
            if released_end.is_some_and(|e| after > e) {
                waiter.released.store(true, Ordering::Relaxed);
            }
            waiter.waker.wake();
        }
    }

    /// Waits until every sync point that had completed in the capture
    /// before `after` (a captured start time, µs) has completed here.
    pub async fn wait(&self, after: i64, slot: &Slot) -> Waited {
        if self.satisfied(after) {
            return Waited::default();
        }
        slot.waiting.store(true, Ordering::Relaxed);
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let _waiting = Waiting { order: self, slot };
        let released = Arc::new(AtomicBool::new(false));
        OrderWait {
            order: self,
            after,
            key: None,
            released: released.clone(),
        }
        .await;
        Waited {
            waited: true,
            released: released.load(Ordering::Relaxed),
        }
    }

    fn satisfied(&self, after: i64) -> bool {
        self.watermark.load(Ordering::Acquire) >= after || self.closed.load(Ordering::Acquire)
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

    /// What the watchdog looks at: the earliest pending sync point, the
    /// session that owns it, since when the watermark has not moved, and
    /// every registered backend with whether it waits for order.
    pub fn stall(&self) -> Option<Stall> {
        if self.waiting.load(Ordering::Relaxed) == 0 {
            return None;
        }
        let g = self.lock();
        let (key, owner) = g.pending.first_key_value().map(|(k, o)| (*k, *o))?;
        // Held up since the watermark last moved, or since the first of
        // those now waiting began, whichever is later.
        let first_waiter = g.waiters.values().map(|w| w.since).min()?;
        Some(Stall {
            key,
            owner,
            since: g.moved.map_or(first_waiter, |m| m.max(first_waiter)),
            backends: g
                .slots
                .iter()
                .map(|(task, s)| Backend {
                    task: *task,
                    pid: s.pid.load(Ordering::Relaxed),
                    waiting: s.waiting.load(Ordering::Relaxed),
                    running: s.running.load(Ordering::Relaxed),
                })
                .collect(),
        })
    }

    /// Releases so far: (deadlocks broken, timeouts).
    pub fn releases(&self) -> (u64, u64) {
        (
            self.released_deadlock.load(Ordering::Relaxed),
            self.released_timeout.load(Ordering::Relaxed),
        )
    }
}

/// A snapshot of a side whose sessions wait for order.
#[derive(Debug)]
pub struct Stall {
    pub key: SyncKey,
    /// The captured session (dispatcher index) that owns the sync point.
    pub owner: u32,
    pub since: Instant,
    pub backends: Vec<Backend>,
}

/// A replay session's backend on the side, as the watchdog sees it.
#[derive(Debug, Clone, Copy)]
pub struct Backend {
    pub task: u64,
    /// 0 until connected.
    pub pid: i32,
    pub waiting: bool,
    pub running: bool,
}

/// The task key of a session's clone: the captured session's dispatcher
/// index and the clone number.
pub fn task_key(session: u32, clone: i32) -> u64 {
    ((session as u64) << 16) | (clone as u64 & 0xffff)
}

/// Marks a slot as waiting for as long as a wait lasts, however it ends
/// (satisfied, or dropped because the replay is stopping).
struct Waiting<'a> {
    order: &'a SideOrder,
    slot: &'a Slot,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.slot.waiting.store(false, Ordering::Relaxed);
        self.order.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The wait itself: registered with its waker under the side's lock, so a
/// completion between the check and the registration cannot be missed.
struct OrderWait<'a> {
    order: &'a SideOrder,
    after: i64,
    key: Option<(i64, u64)>,
    released: Arc<AtomicBool>,
}

impl Future for OrderWait<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let order = self.order;
        if order.satisfied(self.after) {
            return Poll::Ready(());
        }
        let mut g = order.lock();
        if order.satisfied(self.after) {
            return Poll::Ready(());
        }
        match self.key.and_then(|k| g.waiters.get_mut(&k)) {
            Some(w) => {
                if !w.waker.will_wake(cx.waker()) {
                    w.waker = cx.waker().clone();
                }
            }
            None => {
                g.next_waiter += 1;
                let id = (self.after, g.next_waiter);
                g.waiters.insert(
                    id,
                    Waiter {
                        waker: cx.waker().clone(),
                        since: Instant::now(),
                        released: self.released.clone(),
                    },
                );
                drop(g);
                self.key = Some(id);
            }
        }
        Poll::Pending
    }
}

impl Drop for OrderWait<'_> {
    fn drop(&mut self) {
        if let Some(k) = self.key.take() {
            self.order.lock().waiters.remove(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// A statement waits for sync points that ended before it started, and
    /// only those: one ending later never holds it.
    #[test]
    fn waits_for_earlier_sync_points_only() {
        let o = Arc::new(SideOrder::default());
        let slot = Slot::default();
        o.expect((100, 1), 7);
        o.expect((300, 2), 8);
        rt().block_on(async {
            // Started at 50: nothing had completed before it.
            assert_eq!(o.wait(50, &slot).await, Waited::default());
            // Started at 200: (100, 1) must complete first, (300, 2) need not.
            let o2 = o.clone();
            let h = tokio::spawn(async move {
                let s = Slot::default();
                o2.wait(200, &s).await
            });
            tokio::task::yield_now().await;
            assert!(!h.is_finished());
            o.complete((100, 1));
            let w = h.await.unwrap();
            assert!(w.waited && !w.released, "{w:?}");
            assert_eq!(o.watermark.load(Ordering::Relaxed), 300);
        });
    }

    /// A release ends the waits that the released sync point held, marks
    /// them released, and its later completion changes nothing.
    #[test]
    fn release_frees_waiters_and_is_counted() {
        let o = Arc::new(SideOrder::default());
        o.expect((100, 1), 3);
        o.expect((150, 2), 4);
        rt().block_on(async {
            let o2 = o.clone();
            let h = tokio::spawn(async move {
                let s = Slot::default();
                o2.wait(120, &s).await
            });
            tokio::task::yield_now().await;
            let stall = o.stall().expect("a waiter");
            assert_eq!((stall.key, stall.owner), ((100, 1), 3));
            assert!(!o.release((150, 2), Release::Timeout), "not the earliest");
            assert!(o.release((100, 1), Release::Deadlock));
            let w = h.await.unwrap();
            assert!(w.released, "{w:?}");
            o.complete((100, 1));
            assert_eq!(o.releases(), (1, 0));
            assert_eq!(o.watermark.load(Ordering::Relaxed), 150);
        });
    }

    /// Closing ends every wait, and a dropped wait leaves no registration.
    #[test]
    fn close_ends_waits_and_cancelled_waits_unregister() {
        let o = Arc::new(SideOrder::default());
        o.expect((10, 1), 0);
        rt().block_on(async {
            let s = Slot::default();
            let r = tokio::time::timeout(Duration::from_millis(20), o.wait(20, &s)).await;
            assert!(r.is_err());
            assert!(o.lock().waiters.is_empty());
            assert!(!s.waiting.load(Ordering::Relaxed));
            assert!(o.stall().is_none(), "nobody waits");
            let o2 = o.clone();
            let h = tokio::spawn(async move {
                let s = Slot::default();
                o2.wait(20, &s).await
            });
            tokio::task::yield_now().await;
            o.close();
            assert!(h.await.unwrap().waited);
        });
    }
}
