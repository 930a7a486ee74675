//! Coverage: how much of the traffic a verdict compared. Each statement
//! pair is compared (identical, benign order or divergent), set aside as
//! noise, or not replayed on a side; statements found on one side only are
//! unmatched. A verdict that compared half the traffic says little about
//! the other half, so below `--min-coverage` it fails with that reason, and
//! the fingerprints it mostly could not judge are listed by name.

use std::collections::BTreeMap;

use super::model::{Coverage, FingerprintLatency, Unjudged, Verdict};

/// A fingerprint is unjudged when less than this share of its pairs was compared.
const UNJUDGED_BELOW: f64 = 0.5;

/// Parses `--min-coverage`: a percent in [0, 100], `95` or `95%`.
pub fn parse_percent(s: &str) -> Result<f64, String> {
    let t = s.trim().trim_end_matches('%').trim();
    match t.parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
        _ => Err(format!(
            "{s:?} is not a percent in [0, 100]: use e.g. --min-coverage 95 (0 turns the check off)"
        )),
    }
}

fn percent(n: u64, of: u64) -> f64 {
    if of == 0 {
        0.0
    } else {
        (n as f64 * 1000.0 / of as f64).floor() / 10.0
    }
}

/// Fingerprints with nothing compared because no pair was replayed on both
/// sides (they have no latency entry): fingerprint → (not replayed, SQL).
pub type NotReplayedOnly = BTreeMap<String, (u64, String)>;

/// Recomputes `v.coverage` from the counts and fingerprints (after the
/// verdict is built, and again after noise is settled).
pub fn assess(v: &mut Verdict, not_replayed_only: Option<&NotReplayedOnly>) {
    let c = &v.counts;
    let cov = &mut v.coverage;
    cov.compared = c.identical + c.benign_order + c.divergences;
    cov.noise = c.noise;
    cov.not_replayed = c.not_replayed;
    cov.unmatched = c.unmatched_source + c.unmatched_target;
    cov.total = c.pairs + cov.unmatched;
    cov.percent = percent(cov.compared, cov.total);
    cov.min_percent = v.settings.min_coverage;
    cov.below_min = cov.min_percent > 0.0 && cov.percent < cov.min_percent;
    // Fingerprints no pair of which was replayed have no latency entry:
    // listed at the first assessment, kept at the next.
    let listed: std::collections::HashSet<&str> = v
        .fingerprints
        .iter()
        .map(|f| f.fingerprint.as_str())
        .collect();
    let mut unjudged: Vec<Unjudged> = std::mem::take(&mut cov.unjudged)
        .into_iter()
        .filter(|u| !listed.contains(u.fingerprint.as_str()))
        .collect();
    unjudged.extend(
        not_replayed_only
            .into_iter()
            .flatten()
            .map(|(fp, (n, sql))| Unjudged {
                fingerprint: fp.clone(),
                normalized_sql: sql.clone(),
                pairs: *n,
                compared: 0,
                noise: 0,
                not_replayed: *n,
                percent: 0.0,
            }),
    );
    unjudged.extend(v.fingerprints.iter().filter_map(unjudged_fp));
    unjudged.sort_by(|a, b| {
        (b.pairs - b.compared)
            .cmp(&(a.pairs - a.compared))
            .then(a.fingerprint.cmp(&b.fingerprint))
    });
    v.coverage.unjudged = unjudged;
}

fn unjudged_fp(f: &FingerprintLatency) -> Option<Unjudged> {
    ((f.compared as f64) < f.pairs as f64 * UNJUDGED_BELOW).then(|| Unjudged {
        fingerprint: f.fingerprint.clone(),
        normalized_sql: f.normalized_sql.clone(),
        pairs: f.pairs,
        compared: f.compared,
        noise: f.noise,
        not_replayed: f.not_replayed,
        percent: percent(f.compared, f.pairs),
    })
}

/// The verdict's sentence on coverage.
pub fn reason(c: &Coverage) -> String {
    let mut r = if c.total == 0 {
        "coverage 0 %: no statement was compared".to_string()
    } else {
        format!(
            "coverage {:.1} %: {} of {} statement(s) compared (identical or divergent); {} noise, {} not replayed, {} unmatched",
            c.percent, c.compared, c.total, c.noise, c.not_replayed, c.unmatched
        )
    };
    if c.below_min {
        r.push_str(&format!(
            ", below --min-coverage {} %: the verdict judged too little of the traffic",
            c.min_percent
        ));
    }
    if !c.unjudged.is_empty() {
        r.push_str(&format!(
            "; {} fingerprint(s) mostly not judged (see coverage)",
            c.unjudged.len()
        ));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percents_parse_and_round_down() {
        assert_eq!(parse_percent("95"), Ok(95.0));
        assert_eq!(parse_percent("99.5%"), Ok(99.5));
        assert_eq!(parse_percent("0"), Ok(0.0));
        assert!(parse_percent("101").is_err());
        assert!(parse_percent("most").is_err());
        // 94.99 % is not 95 %.
        assert_eq!(percent(9499, 10_000), 94.9);
        assert_eq!(percent(0, 0), 0.0);
    }
}
