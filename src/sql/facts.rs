//! A statement's facts, worked out once per distinct normalised text: its
//! type, the tables it names, whether it changes nothing, whether it is
//! transaction or session control, whether it is a COPY that reads its data
//! from the client, whether its outermost query is ordered, whether its
//! result depends on when it runs, and whether it takes an advisory lock.
//!
//! Every reader of a capture or of a results file asks a [`FactsCache`]
//! (keyed by fingerprint, the hash of the normalised text) and shares the
//! one [`Facts`] it returns among every statement of that text: the
//! tokenizer runs once per shape, never per statement, and no module works
//! these facts out on its own.

use std::sync::Arc;

use super::classify::{self, StatementType};
use super::determinism;
use crate::fasthash::FastMap;

/// What pgtape knows about one normalised text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// The normalised text the facts are of.
    pub normalized: Arc<str>,
    pub kind: StatementType,
    /// Table names it reads or writes (see [`classify::tables`]).
    pub tables: Vec<String>,
    /// Changes nothing: a read, or session or transaction control.
    pub read_only: bool,
    /// Transaction or session control: sees no other session's data.
    pub control: bool,
    /// A COPY FROM STDIN: the client sends its data.
    pub copy_in: bool,
    /// The outermost query ends with an ORDER BY.
    pub order_by: bool,
    /// Its result depends on the clock, randomness or a sequence.
    pub volatile: bool,
    /// Calls an advisory-lock function (a lock other sessions wait for).
    pub advisory: bool,
}

impl Facts {
    /// Works the facts of `normalized` out (the tokenizer runs here; ask a
    /// [`FactsCache`] instead where the same text comes again).
    pub fn of(normalized: &str) -> Facts {
        Facts {
            normalized: Arc::from(normalized),
            kind: classify::statement_type(normalized),
            tables: classify::tables(normalized),
            read_only: classify::is_read_only(normalized),
            control: classify::is_control(normalized),
            copy_in: classify::copy_from_stdin(normalized),
            order_by: determinism::has_order_by(normalized),
            volatile: determinism::is_volatile(normalized),
            advisory: normalized.contains("advisory"),
        }
    }
}

impl Default for Facts {
    /// The facts of an empty text, shared: nothing known, nothing read-only.
    fn default() -> Facts {
        Facts {
            normalized: Arc::from(""),
            kind: StatementType::Other,
            tables: Vec::new(),
            read_only: false,
            control: false,
            copy_in: false,
            order_by: false,
            volatile: false,
            advisory: false,
        }
    }
}

/// Distinct texts kept before the cache starts over, as the capture's
/// shape cache does: a capture of unbounded distinct shapes must not grow
/// its reader without limit.
const MAX_ENTRIES: usize = 100_000;

/// Facts by fingerprint, each worked out the first time its text is seen.
#[derive(Default)]
pub struct FactsCache {
    by_fingerprint: FastMap<i64, Arc<Facts>>,
}

impl FactsCache {
    /// The facts of the statement with `fingerprint`, whose normalised
    /// text is `normalized`.
    pub fn get(&mut self, fingerprint: i64, normalized: &str) -> &Arc<Facts> {
        if self.by_fingerprint.len() >= MAX_ENTRIES
            && !self.by_fingerprint.contains_key(&fingerprint)
        {
            self.by_fingerprint.clear();
        }
        self.by_fingerprint
            .entry(fingerprint)
            .or_insert_with(|| Arc::new(Facts::of(normalized)))
    }

    /// Distinct texts held.
    pub fn len(&self) -> usize {
        self.by_fingerprint.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_fingerprint.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_of_a_text_agree_with_each_question_asked_alone() {
        for sql in [
            "SELECT a FROM t WHERE b = ? ORDER BY a",
            "INSERT INTO t VALUES (?, now())",
            "COPY t FROM STDIN",
            "BEGIN",
            "SELECT pg_advisory_lock(?)",
            "UPDATE pgbench_accounts SET abalance = abalance + ? WHERE aid = ?",
        ] {
            let f = Facts::of(sql);
            assert_eq!(&*f.normalized, sql);
            assert_eq!(f.kind, classify::statement_type(sql), "{sql}");
            assert_eq!(f.tables, classify::tables(sql), "{sql}");
            assert_eq!(f.read_only, classify::is_read_only(sql), "{sql}");
            assert_eq!(f.control, classify::is_control(sql), "{sql}");
            assert_eq!(f.copy_in, classify::copy_from_stdin(sql), "{sql}");
            assert_eq!(f.order_by, determinism::has_order_by(sql), "{sql}");
            assert_eq!(f.volatile, determinism::is_volatile(sql), "{sql}");
        }
        let f = Facts::of("COPY t FROM STDIN");
        assert!(f.copy_in && !f.read_only && f.kind == StatementType::Insert);
        assert!(Facts::of("BEGIN").control);
        assert!(Facts::of("SELECT pg_advisory_lock(?)").advisory);
        assert!(Facts::of("SELECT a FROM t ORDER BY a").order_by);
        assert!(Facts::of("INSERT INTO t VALUES (now())").volatile);
    }

    #[test]
    fn a_fingerprint_is_worked_out_once_and_shared() {
        let mut cache = FactsCache::default();
        let a = cache.get(7, "SELECT 1").clone();
        // A second look at the same fingerprint does not read the text again.
        let b = cache.get(7, "not looked at").clone();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(&*b.normalized, "SELECT 1");
        let c = cache.get(8, "SELECT 2").clone();
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(cache.len(), 2);
    }
}
