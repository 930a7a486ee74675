//! The verdict as GitHub-flavoured Markdown, for a pull-request comment:
//! the verdict line first, then the regressions and divergences that made
//! it, with details folded away.

use std::io::Write;

use super::verdict::VerdictExporter;
use super::verdict_table::{coverage_line, ms, params_line, row_line, side_line};
use crate::diff::Verdict;

pub struct VerdictMarkdown;

/// Escapes a table cell (pipes and newlines would break the row).
fn cell(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

fn code(s: &str) -> String {
    format!("`{}`", cell(s).replace('`', "'"))
}

impl VerdictExporter for VerdictMarkdown {
    fn export(&self, v: &Verdict, out: &mut dyn Write) -> std::io::Result<()> {
        let icon = if v.passed { "✅" } else { "❌" };
        writeln!(
            out,
            "## {icon} pgtape verdict: **{}** (exit code {})\n",
            v.verdict.to_uppercase(),
            v.exit_code
        )?;
        for r in &v.reasons {
            writeln!(out, "- {r}")?;
        }
        let c = &v.counts;
        let l = &v.latency;
        writeln!(
            out,
            "\n| pairs | identical | divergent | noise | benign order | p{} source ms | p{} target ms | ratio | latency |\n|---:|---:|---:|---:|---:|---:|---:|---:|---|\n| {} | {} | {} | {} | {} | {} | {} | {:.2} | {} |\n",
            l.percentile,
            l.percentile,
            c.pairs,
            c.identical,
            c.divergences,
            c.noise,
            c.benign_order,
            ms(l.source.at_percentile_us),
            ms(l.target.at_percentile_us),
            l.ratio,
            l.class
        )?;
        writeln!(out, "**{}**\n", cell(&coverage_line(&v.coverage)))?;
        if !v.coverage.unjudged.is_empty() {
            writeln!(
                out,
                "### Not judged\n\nFingerprints mostly noise or not replayed: the verdict says little about them.\n\n\
                 | coverage | compared | noise | not replayed | query |\n|---:|---:|---:|---:|---|"
            )?;
            for u in &v.coverage.unjudged {
                writeln!(
                    out,
                    "| {:.1}% | {}/{} | {} | {} | {} |",
                    u.percent,
                    u.compared,
                    u.pairs,
                    u.noise,
                    u.not_replayed,
                    code(&u.normalized_sql)
                )?;
            }
            writeln!(out)?;
        }
        writeln!(out, "### Latency per fingerprint\n")?;
        writeln!(
            out,
            "| class | ratio | count | p50 ms (s → t) | p95 ms (s → t) | p99 ms (s → t) | query |\n|---|---:|---:|---:|---:|---:|---|"
        )?;
        for f in &v.fingerprints {
            writeln!(
                out,
                "| {} | {:.2} | {} | {} → {} | {} → {} | {} → {} | {} |",
                f.class,
                f.ratio,
                f.source.count,
                ms(f.source.p50_us),
                ms(f.target.p50_us),
                ms(f.source.p95_us),
                ms(f.target.p95_us),
                ms(f.source.p99_us),
                ms(f.target.p99_us),
                code(&f.normalized_sql)
            )?;
        }
        writeln!(out, "\n### Divergences\n")?;
        if v.divergences.is_empty() {
            writeln!(out, "None.")?;
        }
        for g in &v.divergences {
            writeln!(
                out,
                "<details><summary><b>{}</b>: {} of {} — {}</summary>\n",
                g.class,
                g.count,
                g.pairs,
                code(&g.normalized_sql)
            )?;
            for e in &g.examples {
                writeln!(
                    out,
                    "- session {} seq {}: {}{}\n  - source: {}\n  - target: {}",
                    e.session_id,
                    e.seq,
                    code(&e.sql),
                    if e.params.is_empty() {
                        String::new()
                    } else {
                        format!(" params {}", code(&params_line(e)))
                    },
                    code(&side_line(&e.source)),
                    code(&side_line(&e.target))
                )?;
                if let Some(ev) = &e.evidence {
                    if let Some(n) = &ev.note {
                        writeln!(out, "  - rows: {}", cell(n))?;
                    }
                    for r in &ev.rows {
                        writeln!(
                            out,
                            "  - row{}: source {} / target {}",
                            r.position.map(|p| format!(" #{p}")).unwrap_or_default(),
                            code(&row_line(&r.source)),
                            code(&row_line(&r.target))
                        )?;
                    }
                }
            }
            writeln!(out, "\n</details>")?;
        }
        writeln!(out, "\n### Noise\n")?;
        if v.noise.is_empty() {
            writeln!(out, "None.")?;
        } else {
            writeln!(
                out,
                "| noise | pairs | source noise | target diff | why | query |\n|---:|---:|---:|---:|---|---|"
            )?;
        }
        for n in &v.noise {
            writeln!(
                out,
                "| {} | {} | {:.1}% | {:.1}% | {} | {} |",
                n.noise,
                n.pairs,
                n.source_noise_rate * 100.0,
                n.target_difference_rate * 100.0,
                n.why,
                code(&n.normalized_sql)
            )?;
        }
        Ok(())
    }
}
