//! A statement's wait at a gate: until the dispatcher has registered every
//! entry before its time, then until no entry of its tables before its time
//! is pending. Registered with its waker under the side's lock, so a removal
//! between the check and the registration cannot be missed.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use super::gate::{self, Place, Waiter};
use super::layout::SetId;
use super::{Gate, Inner, SideOrder, Slot, TableSet};

/// How a statement's wait for order ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Waited {
    /// It had to wait at all.
    pub waited: bool,
    /// A release, not the entries' own end, ended the wait.
    pub released: bool,
}

impl SideOrder {
    /// Waits at `gate` until every entry of `tables` before `after` (a
    /// captured time, µs) is gone from this side.
    pub async fn wait(&self, gate: Gate, after: i64, tables: &TableSet, slot: &Slot) -> Waited {
        if self.blocked(gate, after, tables).is_none() {
            return Waited::default();
        }
        slot.waiting.store(true, Ordering::Relaxed);
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let _waiting = Waiting { order: self, slot };
        let released = Arc::new(AtomicBool::new(false));
        OrderWait {
            order: self,
            slot,
            gate,
            after,
            tables,
            registered: None,
            starving: false,
            released: released.clone(),
        }
        .await;
        Waited {
            waited: true,
            released: released.load(Ordering::Relaxed),
        }
    }

    /// What holds a wait up; `None` when it may go. Fixed sets are read
    /// without the lock; rows' sets, and sets not kept yet, under it.
    fn blocked(&self, gate: Gate, after: i64, tables: &TableSet) -> Option<Place> {
        let marks = &self.watermarks[gate as usize];
        if marks[0].load(Ordering::Acquire) >= after {
            // No entry of the gate is pending before `after` (set 0 holds
            // them all): nothing to look up, under the lock or not.
            return self.blocked_with(gate, after, &None, |_| false);
        }
        let fixed = self.blocked_with(gate, after, tables, |_| false);
        let unsure = match fixed {
            Some(Place::Set(SetId::Fixed(i))) => marks[i].load(Ordering::Acquire) == gate::UNKEPT,
            Some(_) => false,
            None => self.layouts[gate as usize].has_rows(tables),
        };
        if !unsure {
            return fixed;
        }
        let mut g = self.lock();
        self.blocked_locked(&mut g, gate, after, tables)
    }

    /// [`Self::blocked`] with the side's lock held: the sets the wait
    /// looks at are kept from now on.
    fn blocked_locked(
        &self,
        g: &mut Inner,
        gate: Gate,
        after: i64,
        tables: &TableSet,
    ) -> Option<Place> {
        let marks = &self.watermarks[gate as usize];
        let state = &mut g.gates[gate as usize];
        self.layouts[gate as usize].wait_sets(tables, |s| match s {
            SetId::Fixed(i) => state.keep(i, marks),
            SetId::Row(r) => state.keep_rows(super::scope::split(r).0),
        });
        self.blocked_with(gate, after, tables, |r| state.row_watermark(r) < after)
    }

    fn blocked_with(
        &self,
        gate: Gate,
        after: i64,
        tables: &TableSet,
        row_held: impl Fn(u64) -> bool,
    ) -> Option<Place> {
        if self.closed.load(Ordering::Acquire) {
            return None;
        }
        if self.frontier[gate as usize].load(Ordering::Acquire) < after {
            return Some(Place::Frontier);
        }
        let marks = &self.watermarks[gate as usize];
        self.layouts[gate as usize]
            .find_wait_set(tables, |s| match s {
                SetId::Fixed(i) => marks[i].load(Ordering::Acquire) < after,
                SetId::Row(r) => row_held(r),
            })
            .map(Place::Set)
    }
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

struct OrderWait<'a> {
    order: &'a SideOrder,
    slot: &'a Slot,
    gate: Gate,
    after: i64,
    tables: &'a TableSet,
    registered: Option<(Place, (i64, u64))>,
    /// Counted as a session the dispatcher must read on for.
    starving: bool,
    released: Arc<AtomicBool>,
}

impl OrderWait<'_> {
    fn starve(&mut self, on: bool) {
        if on == self.starving {
            return;
        }
        self.starving = on;
        let p = &self.order.pressure;
        if on {
            p.starving.fetch_add(1, Ordering::Relaxed);
            if let Some(t) = p.dispatcher.get() {
                t.unpark();
            }
        } else {
            p.starving.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn unregister(&mut self) {
        if let Some((place, id)) = self.registered.take() {
            let mut g = self.order.lock();
            g.gates[self.gate as usize].unregister(place, id);
            self.mark(None);
        }
    }

    /// Records where the wait is held, for the watchdog (under the lock).
    fn mark(&self, place: Option<Place>) {
        let mut b = self.slot.blocked.lock().unwrap_or_else(|e| e.into_inner());
        *b = match place {
            Some(Place::Set(set)) => Some((self.gate, set, Instant::now())),
            _ => None,
        };
    }
}

impl Future for OrderWait<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let order = self.order;
        let (gate, after) = (self.gate, self.after);
        let Some(_) = order.blocked(gate, after, self.tables) else {
            self.unregister();
            self.starve(false);
            return Poll::Ready(());
        };
        let mut g = order.lock();
        // Checked again under the lock: a removal or a frontier move between
        // the first look and the lock would otherwise be missed.
        let Some(place) = order.blocked_locked(&mut g, gate, after, self.tables) else {
            drop(g);
            self.unregister();
            self.starve(false);
            return Poll::Ready(());
        };
        let state = &mut g.gates[gate as usize];
        match self.registered {
            Some((p, id)) if p == place => {
                if let Some(w) = state.waiter(p, id) {
                    if !w.waker.will_wake(cx.waker()) {
                        w.waker = cx.waker().clone();
                    }
                } else {
                    // Woken and removed, yet still blocked there: again.
                    state.register(p, id, self.waiter(cx));
                    self.mark(Some(p));
                }
            }
            other => {
                if let Some((p, id)) = other {
                    state.unregister(p, id);
                }
                g.next_waiter += 1;
                let id = (after, g.next_waiter);
                let waiter = self.waiter(cx);
                g.gates[gate as usize].register(place, id, waiter);
                self.registered = Some((place, id));
                self.mark(Some(place));
            }
        }
        drop(g);
        self.starve(place == Place::Frontier);
        Poll::Pending
    }
}

impl OrderWait<'_> {
    fn waiter(&self, cx: &Context<'_>) -> Waiter {
        Waiter {
            waker: cx.waker().clone(),
            released: self.released.clone(),
        }
    }
}

impl Drop for OrderWait<'_> {
    fn drop(&mut self) {
        self.unregister();
        self.starve(false);
    }
}
