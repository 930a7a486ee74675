//! What a statement owes the order of effects, worked out as the
//! dispatcher reads it: the order tag ([`tag`]) from its captured times,
//! its scopes and what its transaction wrote so far ([`Txn`]).

use crate::replay::lock_waits::{self, TxnEnds};
use crate::replay::order::TableSet;
use crate::replay::plan::OrderTag;
use crate::replay::results::Captured;
use crate::replay::row_keys::Access;

/// The tables a transaction wrote so far.
#[derive(Debug, Default)]
pub(super) struct Txn {
    pub wrote: bool,
    /// `None` once it wrote a table of unknown name.
    tables: Option<std::collections::BTreeSet<u64>>,
}

impl Txn {
    pub fn add(&mut self, t: &TableSet) {
        if !self.wrote {
            self.wrote = true;
            self.tables = Some(Default::default());
        }
        match (t, &mut self.tables) {
            (Some(t), Some(mine)) => mine.extend(t.iter().copied()),
            _ => self.tables = None,
        }
    }

    pub fn take(&mut self) -> TableSet {
        let t = std::mem::take(self);
        t.tables.map(|s| s.into_iter().collect::<Vec<_>>().into())
    }
}

/// The order tag of a statement of scopes `access`: what it waits for (what
/// had completed before it ran; for a write, its end less its fingerprint's
/// typical duration when that is later than its start), whether it is a sync
/// point (it writes, locks, or ends a transaction that did) and on which
/// tables, whether it must be sent before later commits (it reads or writes
/// data), and whether it ends a writing transaction (so waits for those).
pub(super) fn tag(
    c: &Captured,
    access: Access,
    draws: bool,
    typical_us: Option<i64>,
    txn_ends: &mut TxnEnds,
    txn: &mut Txn,
    serial: &mut u64,
) -> OrderTag {
    // Read-only advisory locks are taken by reads that others wait for.
    let control = c.facts.control;
    let writes = !c.facts.read_only || c.facts.advisory;
    let end = c.ts_us + c.duration_us.max(0);
    // "Much longer": past the error of the median's estimate (19 %), so a
    // statement that is its fingerprint's only sample counts from its start.
    let ran = match typical_us {
        Some(t) if writes && c.duration_us > t + t / 5 => end - t,
        _ => c.ts_us,
    };
    let Access {
        reads,
        writes: wrote,
    } = access;
    let reads_nothing = reads.as_deref().is_some_and(|r| r.is_empty());
    // Or it ran after the transaction end it queued behind.
    let ran = match writes && lock_waits::may_queue(&c.facts.normalized) {
        true => txn_ends
            .latest_within(c.ts_us, end, &wrote)
            .map_or(ran, |e| ran.max(e + 1)),
        false => ran,
    };
    if writes {
        txn.add(&wrote);
    }
    // Transaction status after the statement: idle means its transaction
    // (explicit, or the statement's own) ended here.
    let ends = c.tx_status == b'I';
    let publishes = ends && txn.wrote;
    let sync = writes || publishes;
    // A commit is visible from its end: a statement that started while it
    // ran did not see it (and is sent before it on replay), one that
    // started after did (and waits for it). Every pair of a reader and a
    // commit is so ordered, the same way on both sides. A statement that
    // draws ids keeps its start, or it could wait, for its draws, for an
    // insert that waits for it to be sent.
    let visible_at_end = publishes && !draws;
    let sync_tables = if ends { txn.take() } else { wrote };
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
        // A statement that reads no row cannot see a commit: no later one
        // need wait for it to be sent.
        sent: (!control && !reads_nothing)
            .then(|| (if visible_at_end { end } else { ran }, next())),
        publish: publishes.then_some(if visible_at_end { end } else { c.ts_us }),
        tables: reads,
        ..Default::default()
    }
}
