//! The verdict for a terminal: the verdict and its reasons first, then the
//! counts and coverage, latency per fingerprint sorted by regression,
//! divergences by class and fingerprint with one example each, the noise,
//! and the fingerprints the verdict could not judge. Deterministic
//! for a given verdict (snapshot-tested).

use std::io::Write;

use super::table::{one_line, render};
use super::verdict::VerdictExporter;
use crate::diff::Verdict;
use crate::diff::model::{Coverage, Example, SideSummary};

pub struct VerdictTable;

const SQL_WIDTH: usize = 64;

pub(crate) fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

/// One side's result in a few words: `SELECT 3`, `error 23514: ...`.
pub(crate) fn side_line(s: &SideSummary) -> String {
    let mut out = match (&s.sqlstate, &s.command_tag) {
        (Some(code), _) => format!("error {code}: {}", s.error_message.as_deref().unwrap_or("")),
        (None, Some(tag)) => tag.clone(),
        (None, None) => s.status.clone(),
    };
    if !s.columns.is_empty() {
        let cols: Vec<String> = s
            .columns
            .iter()
            .map(|c| match &c.type_name {
                Some(t) => format!("{}:{t}", c.name),
                None => format!("{}:{}", c.name, c.type_oid),
            })
            .collect();
        out.push_str(&format!(" [{}]", cols.join(", ")));
    }
    out
}

/// The coverage figure in a few words: `coverage 99.1 % (1234 of 1245
/// compared; min 95 %)`.
pub(crate) fn coverage_line(c: &Coverage) -> String {
    let min = if c.min_percent > 0.0 {
        format!("; min {} %", c.min_percent)
    } else {
        "; not checked".into()
    };
    format!(
        "coverage {:.1} % ({} of {} compared{min}{}): {} noise, {} not replayed, {} unmatched",
        c.percent,
        c.compared,
        c.total,
        if c.below_min { ", BELOW" } else { "" },
        c.noise,
        c.not_replayed,
        c.unmatched
    )
}

pub(crate) fn params_line(e: &Example) -> String {
    e.params
        .iter()
        .map(|p| {
            p.as_deref()
                .map(|s| format!("'{s}'"))
                .unwrap_or("NULL".into())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn row_line(r: &Option<Vec<Option<String>>>) -> String {
    match r {
        None => "-".into(),
        Some(cells) => cells
            .iter()
            .map(|c| c.as_deref().unwrap_or("NULL"))
            .collect::<Vec<_>>()
            .join(" | "),
    }
}

impl VerdictExporter for VerdictTable {
    fn export(&self, v: &Verdict, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(
            out,
            "VERDICT: {} (exit code {}; fails on: {})",
            v.verdict.to_uppercase(),
            v.exit_code,
            if v.fail_on.is_empty() {
                "nothing".to_string()
            } else {
                v.fail_on.join(", ")
            }
        )?;
        for r in &v.reasons {
            writeln!(out, "  - {r}")?;
        }
        writeln!(out)?;
        let c = &v.counts;
        writeln!(
            out,
            "{} pairs: {} identical, {} divergent, {} noise, {} benign order; {} not replayed, {} unmatched",
            c.pairs,
            c.identical,
            c.divergences,
            c.noise,
            c.benign_order,
            c.not_replayed,
            c.unmatched_source + c.unmatched_target
        )?;
        writeln!(out, "{}", coverage_line(&v.coverage))?;
        let l = &v.latency;
        writeln!(
            out,
            "latency p{}: source {} ms, target {} ms, ratio {:.2} ({})\n",
            l.percentile,
            ms(l.source.at_percentile_us),
            ms(l.target.at_percentile_us),
            l.ratio,
            l.class
        )?;
        writeln!(out, "Latency per fingerprint (ms; sorted by regression)")?;
        let rows: Vec<Vec<String>> = v
            .fingerprints
            .iter()
            .map(|f| {
                vec![
                    f.fingerprint.clone(),
                    f.class.clone(),
                    format!("{:.2}", f.ratio),
                    f.source.count.to_string(),
                    format!("{}/{}", ms(f.source.p50_us), ms(f.target.p50_us)),
                    format!("{}/{}", ms(f.source.p95_us), ms(f.target.p95_us)),
                    format!("{}/{}", ms(f.source.p99_us), ms(f.target.p99_us)),
                    format!("{}/{}", ms(f.source.max_us), ms(f.target.max_us)),
                    f.divergences.to_string(),
                    f.noise.to_string(),
                    one_line(&f.normalized_sql, SQL_WIDTH),
                ]
            })
            .collect();
        render(
            out,
            &[
                "fingerprint",
                "class",
                "ratio",
                "count",
                "p50 s/t",
                "p95 s/t",
                "p99 s/t",
                "max s/t",
                "diverged",
                "noise",
                "query",
            ],
            &[
                false, false, true, true, true, true, true, true, true, true, false,
            ],
            &rows,
        )?;
        writeln!(out, "Divergences by class")?;
        let rows: Vec<Vec<String>> = v
            .divergence_classes
            .iter()
            .map(|c| {
                vec![
                    c.class.clone(),
                    c.count.to_string(),
                    c.fingerprints.to_string(),
                ]
            })
            .collect();
        render(
            out,
            &["class", "statements", "fingerprints"],
            &[false, true, true],
            &rows,
        )?;
        for g in &v.divergences {
            writeln!(
                out,
                "[{}] {} of {} statement(s) of {}: {}",
                g.class,
                g.count,
                g.pairs,
                g.fingerprint,
                one_line(&g.normalized_sql, 100)
            )?;
            if let Some(e) = g.examples.first() {
                writeln!(
                    out,
                    "    e.g. session {} seq {}: {}",
                    e.session_id,
                    e.seq,
                    one_line(&e.sql, 100)
                )?;
                if !e.params.is_empty() {
                    writeln!(out, "    params: {}", params_line(e))?;
                }
                writeln!(out, "    source: {}", side_line(&e.source))?;
                writeln!(out, "    target: {}", side_line(&e.target))?;
                if let Some(ev) = &e.evidence {
                    if let Some(n) = &ev.note {
                        writeln!(out, "    rows: {n}")?;
                    }
                    if !ev.rows.is_empty() {
                        writeln!(
                            out,
                            "    first differing rows ({}; {}):",
                            ev.mode,
                            ev.columns.join(" | ")
                        )?;
                    }
                    for r in &ev.rows {
                        let at = r.position.map(|p| format!("#{p} ")).unwrap_or_default();
                        writeln!(out, "      {at}source: {}", row_line(&r.source))?;
                        writeln!(out, "      {at}target: {}", row_line(&r.target))?;
                    }
                }
            }
        }
        if !v.divergences.is_empty() {
            writeln!(out)?;
        }
        writeln!(out, "Noise (non-deterministic statements; not divergences)")?;
        let rows: Vec<Vec<String>> = v
            .noise
            .iter()
            .map(|n| {
                vec![
                    n.fingerprint.clone(),
                    n.noise.to_string(),
                    n.pairs.to_string(),
                    format!("{:.1}%", n.source_noise_rate * 100.0),
                    format!("{:.1}%", n.target_difference_rate * 100.0),
                    n.why.clone(),
                    one_line(&n.normalized_sql, SQL_WIDTH),
                ]
            })
            .collect();
        render(
            out,
            &[
                "fingerprint",
                "noise",
                "pairs",
                "source noise",
                "target diff",
                "why",
                "query",
            ],
            &[false, true, true, true, true, false, false],
            &rows,
        )?;
        if v.coverage.unjudged.is_empty() {
            return Ok(());
        }
        writeln!(
            out,
            "Not judged (fingerprints mostly noise or not replayed; the verdict says little about them)"
        )?;
        let rows: Vec<Vec<String>> = v
            .coverage
            .unjudged
            .iter()
            .map(|u| {
                vec![
                    u.fingerprint.clone(),
                    format!("{:.1}%", u.percent),
                    format!("{}/{}", u.compared, u.pairs),
                    u.noise.to_string(),
                    u.not_replayed.to_string(),
                    one_line(&u.normalized_sql, SQL_WIDTH),
                ]
            })
            .collect();
        render(
            out,
            &[
                "fingerprint",
                "coverage",
                "compared",
                "noise",
                "not replayed",
                "query",
            ],
            &[false, true, true, true, true, false],
            &rows,
        )
    }
}
