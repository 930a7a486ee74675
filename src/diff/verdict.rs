//! From the joined pass to a [`Verdict`]: divergence and noise groups with
//! their examples, latency per fingerprint sorted by regression, the
//! overall latency class, the charts' data, and the exit code (`--fail-on`).

use std::collections::HashMap;

use super::DiffConfig;
use super::FailOn;
use super::detail::Detail;
use super::engine::Joined;
use super::latency::{LatencyClass, bucket_for, judge, judge_overall};
use super::load::Key;
use super::model::*;

/// The two sides' details of the example statements.
pub struct Details {
    pub source: HashMap<Key, Detail>,
    pub target: HashMap<Key, Detail>,
}

impl Details {
    fn example(&self, key: Key) -> Option<Example> {
        let s = self.source.get(&key)?;
        let t = self.target.get(&key)?;
        Some(Example {
            session_id: key.0,
            seq: key.1,
            clone: key.2,
            sql: s.sql.clone(),
            params: s.params_text(),
            captured: s.captured.clone(),
            source: s.side.clone(),
            target: t.side.clone(),
            evidence: None,
        })
    }
}

fn hex(fp: i64) -> String {
    format!("{:016x}", fp as u64)
}

/// The example keys a verdict shows (call after `settle`).
pub fn example_keys(j: &Joined) -> Vec<Key> {
    let mut keys = Vec::new();
    for acc in j.fingerprints.values() {
        for (_, ks) in acc.candidates.values() {
            keys.extend(ks);
        }
        keys.extend(acc.noise_examples.iter().take(1));
    }
    keys
}

pub fn build(results_dir: String, j: &Joined, cfg: &DiffConfig, d: &Details) -> Verdict {
    let t = cfg.thresholds();
    let mut counts = Counts {
        source_rows: j.source.rows,
        target_rows: j.target.rows,
        pairs: j.pairs,
        unmatched_source: j.unmatched_source,
        unmatched_target: j.unmatched_target,
        not_replayed: j.not_replayed,
        one_sided: j.one_sided,
        source_errors: j.source.errors,
        target_errors: j.target.errors,
        ..Default::default()
    };
    let mut fingerprints = Vec::new();
    let mut divergences = Vec::new();
    let mut noise = Vec::new();
    for (fp, acc) in &j.fingerprints {
        let (ratio, class) = judge(&acc.source, &acc.target, &t);
        match class {
            LatencyClass::Degraded => counts.regressions += 1,
            LatencyClass::Improved => counts.improvements += 1,
            _ => {}
        }
        let diverged: u64 = acc.candidates.values().map(|(n, _)| n).sum();
        counts.identical += acc.identical;
        counts.benign_order += acc.benign_order;
        counts.noise += acc.noise;
        counts.divergences += diverged;
        counts.divergent_fingerprints += u64::from(diverged > 0);
        let not_replayed = j.not_replayed_by_fp.get(fp).map_or(0, |n| n.0);
        fingerprints.push(FingerprintLatency {
            fingerprint: hex(*fp),
            normalized_sql: acc.normalized_sql.clone(),
            read_only: acc.read_only,
            source: acc.source.stats(cfg.latency_percentile),
            target: acc.target.stats(cfg.latency_percentile),
            ratio: round3(ratio),
            class: class.as_str().into(),
            divergences: diverged,
            noise: acc.noise,
            pairs: acc.pairs + not_replayed,
            compared: acc.identical + acc.benign_order + diverged,
            not_replayed,
        });
        for (c, (n, keys)) in &acc.candidates {
            divergences.push(DivergenceGroup {
                class: c.as_str().into(),
                fingerprint: hex(*fp),
                normalized_sql: acc.normalized_sql.clone(),
                read_only: acc.read_only,
                has_order_by: acc.has_order_by,
                count: *n,
                pairs: acc.pairs,
                examples: keys.iter().filter_map(|k| d.example(*k)).collect(),
            });
        }
        if acc.noise > 0 {
            noise.push(NoiseGroup {
                fingerprint: hex(*fp),
                normalized_sql: acc.normalized_sql.clone(),
                pairs: acc.pairs,
                noise: acc.noise,
                source_noise_rate: round3(acc.noise_rate()),
                target_difference_rate: round3(acc.difference_rate()),
                suppressed: acc.suppressed,
                why: if acc.permuted > 0 {
                    "same results on both sides, returned to other statements (concurrent writes)"
                        .into()
                } else if acc.suppressed > 0 {
                    "within noise thresholds".into()
                } else {
                    "source differs from capture".into()
                },
                example: acc.noise_examples.first().and_then(|k| d.example(*k)),
            });
        }
    }
    // Regressions first: degraded by ratio, then the rest by ratio, the
    // ones that cannot be evaluated last.
    let rank = |f: &FingerprintLatency| match f.class.as_str() {
        "degraded" => 0,
        "cannot_evaluate" => 2,
        _ => 1,
    };
    fingerprints.sort_by(|a, b| {
        rank(a)
            .cmp(&rank(b))
            .then(b.ratio.total_cmp(&a.ratio))
            .then(a.fingerprint.cmp(&b.fingerprint))
    });
    divergences.sort_by(|a, b| {
        class_rank(&a.class)
            .cmp(&class_rank(&b.class))
            .then(b.count.cmp(&a.count))
            .then(a.fingerprint.cmp(&b.fingerprint))
    });
    noise.sort_by(|a, b| {
        b.noise
            .cmp(&a.noise)
            .then(a.fingerprint.cmp(&b.fingerprint))
    });
    let divergence_classes = super::classify::Class::ALL
        .iter()
        .filter_map(|c| {
            let groups: Vec<_> = divergences
                .iter()
                .filter(|g| g.class == c.as_str())
                .collect();
            (!groups.is_empty()).then(|| ClassCount {
                class: c.as_str().into(),
                count: groups.iter().map(|g| g.count).sum(),
                fingerprints: groups.len() as u64,
            })
        })
        .collect();
    let (ratio, class) = judge_overall(&j.source.hist, &j.target.hist, &t);
    let latency = OverallLatency {
        percentile: cfg.latency_percentile,
        source: j.source.hist.stats(cfg.latency_percentile),
        target: j.target.hist.stats(cfg.latency_percentile),
        ratio: round3(ratio),
        class: class.as_str().into(),
    };
    let last_s = j
        .source
        .throughput
        .last_s()
        .max(j.target.throughput.last_s());
    let bucket = bucket_for(last_s);
    let charts = Charts {
        cdf_source: j.source.hist.cdf(),
        cdf_target: j.target.hist.cdf(),
        throughput_bucket_s: bucket,
        throughput_source: j.source.throughput.points(bucket, last_s),
        throughput_target: j.target.throughput.points(bucket, last_s),
    };
    let mut v = Verdict {
        version: VERDICT_JSON_VERSION,
        results_dir,
        verdict: String::new(),
        passed: true,
        exit_code: 0,
        fail_on: cfg.fail_on.iter().map(|f| f.as_str().into()).collect(),
        reasons: Vec::new(),
        settings: Settings {
            latency_percentile: cfg.latency_percentile,
            regression_threshold: cfg.regression_threshold,
            regression_min_delta_ms: cfg.regression_min_delta_ms,
            min_executions: cfg.min_executions,
            noise_relative: cfg.noise_relative,
            noise_absolute: cfg.noise_absolute,
            show_rows: cfg.show_rows,
            min_coverage: cfg.min_coverage,
        },
        counts,
        coverage: Default::default(),
        latency,
        fingerprints,
        divergence_classes,
        divergences,
        noise,
        charts,
    };
    let not_replayed_only: super::coverage::NotReplayedOnly = j
        .not_replayed_by_fp
        .iter()
        .filter(|(fp, _)| !j.fingerprints.contains_key(fp))
        .map(|(fp, n)| (hex(*fp), n.clone()))
        .collect();
    super::coverage::assess(&mut v, Some(&not_replayed_only));
    decide(&mut v, &cfg.fail_on);
    v
}

fn class_rank(c: &str) -> usize {
    super::classify::Class::ALL
        .iter()
        .position(|x| x.as_str() == c)
        .unwrap_or(usize::MAX)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Sets `passed`, `verdict`, `exit_code` and `reasons` from the counts.
/// Moves to noise each divergence that was a single statement whose re-run
/// (`--show-rows`) returned the same rows on both sides, and decides again.
///
/// With independent pacing, a read that races another session's write can
/// see the write on one side and not on the other; the re-run on the settled
/// databases shows the target answers as the source does. Such a group stays
/// in the report, as noise with its evidence, instead of failing the gate.
/// Groups of several statements are kept: one re-run speaks for one.
pub fn settle_transient(v: &mut Verdict, fail_on: &[FailOn]) {
    let transient = |g: &DivergenceGroup| {
        g.count == 1
            && g.examples
                .first()
                .and_then(|e| e.evidence.as_ref())
                .is_some_and(|e| e.transient)
    };
    if !v.divergences.iter().any(transient) {
        return;
    }
    let (moved, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut v.divergences)
        .into_iter()
        .partition(transient);
    v.divergences = kept;
    for g in moved {
        v.counts.divergences -= g.count;
        v.counts.noise += g.count;
        if let Some(c) = v.divergence_classes.iter_mut().find(|c| c.class == g.class) {
            c.count -= g.count;
            c.fingerprints -= 1;
        }
        if let Some(f) = v
            .fingerprints
            .iter_mut()
            .find(|f| f.fingerprint == g.fingerprint)
        {
            f.divergences -= g.count;
            f.compared -= g.count;
            f.noise += g.count;
        }
        v.noise.push(NoiseGroup {
            fingerprint: g.fingerprint,
            normalized_sql: g.normalized_sql,
            pairs: g.pairs,
            noise: g.count,
            source_noise_rate: 0.0,
            target_difference_rate: g.count as f64 / g.pairs.max(1) as f64,
            suppressed: 0,
            why: "re-run matched on both sides".into(),
            example: g.examples.into_iter().next(),
        });
    }
    v.divergence_classes.retain(|c| c.count > 0);
    let mut fps: Vec<&str> = v
        .divergences
        .iter()
        .map(|g| g.fingerprint.as_str())
        .collect();
    fps.sort_unstable();
    fps.dedup();
    v.counts.divergent_fingerprints = fps.len() as u64;
    super::coverage::assess(v, None);
    decide(v, fail_on);
}

pub fn decide(v: &mut Verdict, fail_on: &[FailOn]) {
    let c = &v.counts;
    let mut reasons = Vec::new();
    let mut failed = false;
    if c.divergences > 0 {
        failed |= fail_on.contains(&FailOn::Divergence);
        reasons.push(format!(
            "{} divergent statement(s) in {} fingerprint(s)",
            c.divergences, c.divergent_fingerprints
        ));
    } else {
        reasons.push(format!("no divergence in {} statement pair(s)", c.pairs));
    }
    if c.regressions > 0 {
        failed |= fail_on.contains(&FailOn::Regression);
        reasons.push(format!(
            "{} fingerprint(s) degraded: p{} latency over {}x the source's",
            c.regressions, v.settings.latency_percentile, v.settings.regression_threshold
        ));
    } else {
        reasons.push("no latency regression over the threshold".into());
    }
    if v.coverage.below_min {
        // Coverage qualifies the comparison of results: it fails a gate on
        // divergence, not one on latency alone.
        failed |= fail_on.contains(&FailOn::Divergence);
    }
    if c.one_sided > 0 {
        // A side that stopped answering compared neither results nor
        // latency for the rest: whatever the gate, the verdict is not whole.
        failed |= !fail_on.is_empty();
        reasons.push(format!(
            "incomplete: {} statement(s) ran on one side only (see the not_replayed reasons in the results)",
            c.one_sided
        ));
    }
    reasons.push(super::coverage::reason(&v.coverage));
    if c.noise > 0 {
        reasons.push(format!(
            "{} difference(s) counted as noise (non-deterministic statements)",
            c.noise
        ));
    }
    v.passed = !failed;
    v.verdict = if failed { "fail" } else { "pass" }.into();
    v.exit_code = if failed {
        crate::process::exit::VERDICT_FAILED
    } else {
        crate::process::exit::OK
    };
    v.reasons = reasons;
}
