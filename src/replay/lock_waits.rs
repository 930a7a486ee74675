//! Which captured writes waited for a lock, for the order of effects
//! (`--order commit`): a write that waited must start, on replay, after
//! the transaction end that released it, or the replay takes its lock first
//! and makes a wait that cannot end (a cycle the watchdog has to break).
//!
//! The capture holds no lock events, only each statement's start and end.
//! A row lock is released when its transaction ends, so a write (an UPDATE,
//! DELETE, or a locking read; not an INSERT, which takes no lock on others'
//! rows) that was running when another session's writing transaction ended
//! on one of its tables may have queued behind it: its effective start
//! moves to just after the latest such end. Rows come in completion order,
//! so that end is among the last few read when the write's row arrives.
//! Scopes are rows where the statements' keys are known: a write queues
//! only behind a transaction that wrote its row (or may have).

use std::collections::VecDeque;

use super::order::{TableSet, scope};

/// Ends of writing transactions kept (the most recent).
const RECENT: usize = 64;

/// The latest ends of writing transactions, with the tables they wrote.
#[derive(Debug, Default)]
pub struct TxnEnds {
    recent: VecDeque<(i64, TableSet)>,
}

impl TxnEnds {
    /// A writing transaction (or an autocommit write) ended at `end`.
    pub fn push(&mut self, end: i64, tables: TableSet) {
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back((end, tables));
    }

    /// The latest end, strictly inside (`start`, `end`), of a transaction
    /// that wrote one of `tables` (`None`: any table).
    pub fn latest_within(&self, start: i64, end: i64, tables: &TableSet) -> Option<i64> {
        self.recent
            .iter()
            .filter(|(e, t)| *e > start && *e < end && scope::overlap(t, tables))
            .map(|(e, _)| *e)
            .max()
    }
}

/// Whether a statement may lock rows another session's transaction wrote:
/// a write that is not an INSERT or COPY.
pub fn may_queue(normalized: &str) -> bool {
    let head = normalized.trim_start();
    let word = |w: &str| head.len() >= w.len() && head[..w.len()].eq_ignore_ascii_case(w);
    !(word("insert") || word("copy"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ids: &[u32]) -> TableSet {
        scope::tables(&Some(ids.to_vec().into()))
    }

    #[test]
    fn the_latest_end_of_a_transaction_on_its_tables_while_it_ran() {
        let mut ends = TxnEnds::default();
        ends.push(100, t(&[0]));
        ends.push(150, t(&[1]));
        ends.push(180, t(&[0, 2]));
        ends.push(400, t(&[0]));
        assert_eq!(ends.latest_within(90, 300, &t(&[0])), Some(180));
        assert_eq!(ends.latest_within(90, 300, &t(&[1])), Some(150));
        assert_eq!(ends.latest_within(160, 300, &t(&[1])), None);
        assert_eq!(ends.latest_within(90, 300, &None), Some(180));
        ends.push(200, None);
        assert_eq!(ends.latest_within(90, 300, &t(&[1])), Some(200));
        for i in 0..RECENT as i64 {
            ends.push(1_000 + i, t(&[5]));
        }
        assert_eq!(
            ends.latest_within(90, 300, &None),
            None,
            "only the recent are kept"
        );
    }

    #[test]
    fn inserts_and_copies_take_no_lock_others_queue_for() {
        assert!(may_queue("UPDATE t SET a = ?"));
        assert!(may_queue("SELECT * FROM t FOR UPDATE"));
        assert!(may_queue("delete from t"));
        assert!(!may_queue("INSERT INTO t VALUES (?)"));
        assert!(!may_queue("copy t from stdin"));
    }
}
