//! Noise cancellation, after Twitter's Diffy: a statement whose source
//! replay already differs from what the capture recorded is
//! non-deterministic (now(), random(), sequences, LIMIT without ORDER BY),
//! so a target difference on it is noise. Per fingerprint, differences of
//! values (rows, row counts, order) are divergences only when the target's
//! difference rate clearly exceeds the source's noise rate; structural
//! differences (errors, column types) always are.

use std::collections::{BTreeMap, HashMap};

use super::classify::{Class, classify};
use super::latency::{Hist, Throughput};
use super::load::{Key, SideRow, Status};
use crate::sql::Facts;

/// Noise thresholds (`--noise-relative`, `--noise-absolute`).
#[derive(Debug, Clone, Copy)]
pub struct NoiseThresholds {
    /// The target difference rate must be at least this multiple of the noise rate...
    pub relative: f64,
    /// ...and exceed it by at least this share of the pairs.
    pub absolute: f64,
}

/// What the diff gathers per fingerprint while streaming pairs.
#[derive(Debug, Default)]
pub struct FpAcc {
    pub normalized_sql: String,
    pub read_only: bool,
    pub has_order_by: bool,
    /// The SQL reads the clock or a random source: differences are expected
    /// even when the source replay happened to match the capture.
    pub volatile: bool,
    pub pairs: u64,
    /// Pairs whose source differed from the capture.
    pub source_noisy: u64,
    /// Pairs whose target differed from the source (benign order excluded).
    pub target_differs: u64,
    /// Target differences on pairs whose source was noisy.
    pub noise: u64,
    pub noise_examples: Vec<Key>,
    /// Target differences on deterministic pairs, by class.
    pub candidates: BTreeMap<Class, (u64, Vec<Key>)>,
    pub benign_order: u64,
    pub identical: u64,
    /// Candidates judged within the noise thresholds (moved to `noise`).
    pub suppressed: u64,
    /// Per result hash, how many `different_rows` candidates returned it on
    /// the source minus on the target: all zero when the two sides returned
    /// the same results, handed to other statements.
    pub permutation: HashMap<i64, i64>,
    /// Candidates moved to `noise` because they were such a permutation.
    pub permuted: u64,
    pub source: Hist,
    pub target: Hist,
}

/// What a pair turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairKind {
    Identical,
    BenignOrder,
    Noise,
    Candidate(Class),
}

impl FpAcc {
    /// The accumulator of one fingerprint (made once per fingerprint: its
    /// facts are worked out here, not per pair).
    pub fn new(normalized_sql: String, read_only: bool) -> FpAcc {
        let facts = Facts::of(&normalized_sql);
        FpAcc {
            has_order_by: facts.order_by,
            volatile: facts.volatile,
            normalized_sql,
            read_only,
            ..Default::default()
        }
    }

    /// Accounts one joined pair; both sides were replayed.
    pub fn add(&mut self, s: &SideRow, t: &SideRow, examples: usize) -> PairKind {
        self.pairs += 1;
        let noisy = classify(&s.captured, &s.outcome).is_some();
        self.source_noisy += u64::from(noisy);
        let kind = match classify(&s.outcome, &t.outcome) {
            None => PairKind::Identical,
            Some(Class::DifferentOrder) if !self.has_order_by => PairKind::BenignOrder,
            Some(_) if noisy => PairKind::Noise,
            Some(c) => PairKind::Candidate(c),
        };
        match kind {
            PairKind::Identical => self.identical += 1,
            PairKind::BenignOrder => self.benign_order += 1,
            PairKind::Noise => {
                self.target_differs += 1;
                self.noise += 1;
                if self.noise_examples.len() < examples {
                    self.noise_examples.push(s.key);
                }
            }
            PairKind::Candidate(c) => {
                self.target_differs += 1;
                if c == Class::DifferentRows {
                    *self
                        .permutation
                        .entry(s.outcome.unordered_hash)
                        .or_default() += 1;
                    *self
                        .permutation
                        .entry(t.outcome.unordered_hash)
                        .or_default() -= 1;
                }
                let e = self.candidates.entry(c).or_default();
                e.0 += 1;
                if e.1.len() < examples {
                    e.1.push(s.key);
                }
            }
        }
        kind
    }

    /// Several `different_rows` statements, and the source's results of
    /// them are exactly the target's, in another order.
    fn is_permutation(&self) -> bool {
        self.candidates
            .get(&Class::DifferentRows)
            .is_some_and(|(n, _)| *n >= 2)
            && self.permutation.values().all(|d| *d == 0)
    }

    pub fn noise_rate(&self) -> f64 {
        rate(self.source_noisy, self.pairs)
    }

    pub fn difference_rate(&self) -> f64 {
        rate(self.target_differs, self.pairs)
    }

    /// True when value differences of this fingerprint are divergences: no
    /// noise at all (and SQL that reads no clock nor random source), or a
    /// difference rate clearly above the noise rate.
    pub fn values_diverge(&self, t: &NoiseThresholds) -> bool {
        let (noise, diff) = (self.noise_rate(), self.difference_rate());
        (noise == 0.0 && !self.volatile)
            || (diff >= noise * t.relative && diff - noise >= t.absolute)
    }

    /// Splits the candidates into divergences and noise (in place: the
    /// suppressed ones move to `noise`). Returns the number suppressed.
    pub fn settle(&mut self, t: &NoiseThresholds) -> u64 {
        if self.is_permutation() {
            // Concurrent sessions raced for a sequence or a row (INSERT ...
            // RETURNING id): both sides returned the same results, but to
            // other statements. Under independent pacing that is timing.
            let n = self
                .candidates
                .remove(&Class::DifferentRows)
                .map_or(0, |(n, keys)| {
                    if self.noise_examples.is_empty() {
                        self.noise_examples.extend(keys.first());
                    }
                    n
                });
            self.noise += n;
            self.permuted = n;
        }
        if self.values_diverge(t) {
            return 0;
        }
        let mut suppressed = 0;
        self.candidates.retain(|c, (n, keys)| {
            if c.structural() {
                return true;
            }
            suppressed += *n;
            for k in keys.iter() {
                if self.noise_examples.is_empty() {
                    self.noise_examples.push(*k);
                }
            }
            false
        });
        self.noise += suppressed;
        self.suppressed = suppressed;
        suppressed
    }
}

fn rate(n: u64, of: u64) -> f64 {
    if of == 0 { 0.0 } else { n as f64 / of as f64 }
}

/// Per-side totals gathered beside the fingerprints.
#[derive(Debug, Default)]
pub struct SideAcc {
    pub rows: u64,
    pub errors: u64,
    pub hist: Hist,
    pub throughput: Throughput,
}

impl SideAcc {
    pub fn add(&mut self, r: &SideRow) {
        self.rows += 1;
        if r.outcome.status == Status::NotReplayed {
            return;
        }
        let error = r.outcome.status == Status::Error;
        self.errors += u64::from(error);
        self.hist.record(r.duration_us);
        self.throughput.record(r.started_us, error);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::load::Outcome;

    /// `INSERT ... RETURNING id` from concurrent sessions: each side hands
    /// the same ids out, in another order. A real difference is kept.
    #[test]
    fn results_permuted_among_statements_are_noise_other_differences_are_not() {
        let t = NoiseThresholds {
            relative: 2.0,
            absolute: 0.05,
        };
        let row = |seq: i64, hash: i64, captured: i64| {
            let out = |h: i64| Outcome {
                status: Status::Ok,
                command_tag: Some("INSERT 0 1".into()),
                rows: 1,
                ordered_hash: h,
                unordered_hash: h,
                ..Default::default()
            };
            SideRow {
                key: (seq, 1, 0),
                fingerprint: 7,
                read_only: false,
                duration_us: 100,
                started_us: 0,
                outcome: out(hash),
                captured: out(captured),
            }
        };
        let sql = "INSERT INTO sessions(org_id) VALUES (?) RETURNING session_id";
        // Source matches the capture (ids 10, 11, 12); the target swapped two.
        let pairs = |target: [i64; 3]| {
            let mut acc = FpAcc::new(sql.into(), false);
            for (i, h) in [10, 11, 12].into_iter().enumerate() {
                acc.add(&row(i as i64, h, h), &row(i as i64, target[i], h), 3);
            }
            acc.settle(&t);
            acc
        };
        let swapped = pairs([11, 10, 12]);
        assert_eq!((swapped.permuted, swapped.noise), (2, 2));
        assert!(swapped.candidates.is_empty());
        let wrong = pairs([11, 13, 12]);
        assert_eq!(wrong.permuted, 0);
        assert_eq!(wrong.candidates[&Class::DifferentRows].0, 2);
    }

    #[test]
    fn a_rare_difference_of_a_clock_window_is_noise_not_divergence() {
        // Regression: a `now() - interval` window edge differed once in 140
        // target runs while the source matched its capture every time.
        let t = NoiseThresholds {
            relative: 2.0,
            absolute: 0.05,
        };
        let mut acc = FpAcc::new(
            "SELECT count(*) FROM events WHERE occurred_at > now() - INTERVAL ?".into(),
            true,
        );
        acc.pairs = 140;
        acc.target_differs = 1;
        assert!(!acc.values_diverge(&t));
        let mut plain = FpAcc::new("SELECT count(*) FROM events WHERE org_id = ?".into(), true);
        plain.pairs = 140;
        plain.target_differs = 1;
        assert!(
            plain.values_diverge(&t),
            "deterministic SQL: any difference is a divergence"
        );
    }
}
