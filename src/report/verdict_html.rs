//! The verdict as one self-contained HTML page (inline CSS and SVG, no
//! script, no external request; opens offline): the verdict first, the
//! latency CDF and throughput over time per side, fingerprints sorted by
//! regression, divergences grouped by class and fingerprint with example
//! SQL, parameters and both sides' results, and the noise apart.

use std::fmt::Write as _;
use std::io::Write;

use super::html::esc;
use super::verdict::VerdictExporter;
use super::verdict_table::{coverage_line, ms, params_line, row_line, side_line};
use crate::diff::Verdict;
use crate::diff::model::Point;

pub struct VerdictHtml;

const W: f64 = 720.0;
const H: f64 = 220.0;
const PAD: f64 = 40.0;
const SOURCE: &str = "#2a6fdb";
const TARGET: &str = "#e07b00";

fn axes(s: &mut String, label: &str) {
    let _ = write!(
        s,
        r##"<svg class=chart width="{W}" height="{H}" role="img" aria-label="{label}">
<line x1="{PAD}" y1="{b}" x2="{r}" y2="{b}" stroke="#999"/><line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{b}" stroke="#999"/>
"##,
        b = H - PAD,
        r = W - PAD,
    );
}

fn legend(s: &mut String) {
    let _ = write!(
        s,
        r##"<text x="{x}" y="16" font-size="12" fill="{SOURCE}">■ source</text><text x="{x2}" y="16" font-size="12" fill="{TARGET}">■ target</text>"##,
        x = W - 170.0,
        x2 = W - 90.0
    );
}

/// Latency CDF per side on a log-scaled latency axis.
fn cdf_svg(source: &[(u64, f64)], target: &[(u64, f64)]) -> String {
    let mut s = String::new();
    axes(&mut s, "latency CDF per side");
    let all = source.iter().chain(target).map(|p| p.0.max(1) as f64);
    let lo = all
        .clone()
        .fold(f64::MAX, f64::min)
        .min(1e9)
        .log10()
        .floor();
    let hi = all.fold(1.0, f64::max).log10().ceil().max(lo + 1.0);
    let x = |us: u64| PAD + (W - 2.0 * PAD) * ((us.max(1) as f64).log10() - lo) / (hi - lo);
    let y = |q: f64| H - PAD - (H - 2.0 * PAD) * q;
    for d in lo as i32..=hi as i32 {
        let us = 10f64.powi(d) as u64;
        let _ = write!(
            s,
            r##"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="middle">{}</text>"##,
            x(us),
            H - PAD + 14.0,
            label_us(us)
        );
    }
    let _ = write!(
        s,
        r##"<text x="4" y="{PAD}" font-size="10">100%</text><text x="4" y="{:.1}" font-size="10">50%</text><text x="4" y="{:.1}" font-size="10">0%</text>"##,
        y(0.5),
        y(0.0)
    );
    for (pts, color, name) in [(source, SOURCE, "source"), (target, TARGET, "target")] {
        let line: Vec<String> = pts
            .iter()
            .map(|(us, q)| format!("{:.1},{:.1}", x(*us), y(*q)))
            .collect();
        let _ = write!(
            s,
            r##"<polyline class="cdf-{name}" fill="none" stroke="{color}" stroke-width="2" points="{}"/>"##,
            line.join(" ")
        );
    }
    legend(&mut s);
    s.push_str("</svg>\n");
    s
}

/// Statements per bucket over time, per side.
fn throughput_svg(source: &[Point], target: &[Point], bucket_s: u64) -> String {
    let mut s = String::new();
    axes(&mut s, "throughput over time per side");
    let max = source
        .iter()
        .chain(target)
        .map(|p| p.statements)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let n = source.len().max(target.len()).max(2) as f64 - 1.0;
    let x = |i: usize| PAD + (W - 2.0 * PAD) * i as f64 / n;
    let y = |v: u64| H - PAD - (H - 2.0 * PAD) * v as f64 / max;
    let end = source.last().map(|p| p.offset_s + bucket_s).unwrap_or(0);
    let _ = write!(
        s,
        r##"<text x="4" y="{PAD}" font-size="10">{}</text><text x="4" y="{b}" font-size="10">0</text><text x="{PAD}" y="{l}" font-size="10">+0 s</text><text x="{r}" y="{l}" font-size="10" text-anchor="end">+{end} s</text>"##,
        max as u64,
        b = H - PAD,
        l = H - PAD + 14.0,
        r = W - PAD,
    );
    for (pts, color, name) in [(source, SOURCE, "source"), (target, TARGET, "target")] {
        let line: Vec<String> = pts
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{:.1},{:.1}", x(i), y(p.statements)))
            .collect();
        let _ = write!(
            s,
            r##"<polyline class="throughput-{name}" fill="none" stroke="{color}" stroke-width="1.5" points="{}"/>"##,
            line.join(" ")
        );
    }
    legend(&mut s);
    s.push_str("</svg>\n");
    s
}

fn label_us(us: u64) -> String {
    match us {
        u if u >= 1_000_000 => format!("{}s", u / 1_000_000),
        u if u >= 1_000 => format!("{}ms", u / 1_000),
        u => format!("{u}µs"),
    }
}

impl VerdictExporter for VerdictHtml {
    fn export(&self, v: &Verdict, out: &mut dyn Write) -> std::io::Result<()> {
        let mut s = String::new();
        s.push_str(
            "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8><title>pgtape verdict</title>\n<style>\
             body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin-bottom:1.5em}\
             td,th{border:1px solid #ddd;padding:3px 6px;text-align:right}td.sql,td.l{text-align:left}td.sql,code{font-family:monospace}\
             .verdict{padding:.8em 1.2em;border-radius:6px;margin-bottom:1em}.pass{background:#e3f6e5;border:2px solid #2e9d42}\
             .fail{background:#fde7e7;border:2px solid #c62828}.verdict h1{margin:0}.degraded{color:#c62828;font-weight:bold}\
             .improved{color:#2e9d42}details{margin:.4em 0}summary{cursor:pointer}pre{background:#f6f6f6;padding:.5em;white-space:pre-wrap}\
             .kpi{display:inline-block;margin-right:2em}.kpi b{display:block;font-size:1.6em}</style></head><body>\n",
        );
        let _ = writeln!(
            s,
            "<div id=verdict class=\"verdict {}\"><h1>Verdict: {}</h1><p>exit code {}; fails on: {}</p><ul>",
            if v.passed { "pass" } else { "fail" },
            esc(&v.verdict.to_uppercase()),
            v.exit_code,
            esc(&if v.fail_on.is_empty() {
                "nothing".into()
            } else {
                v.fail_on.join(", ")
            })
        );
        for r in &v.reasons {
            let _ = writeln!(s, "<li>{}</li>", esc(r));
        }
        s.push_str("</ul></div>\n");
        let c = &v.counts;
        let l = &v.latency;
        for (k, val) in [
            ("statement pairs", c.pairs.to_string()),
            ("coverage", format!("{:.1} %", v.coverage.percent)),
            ("divergent", c.divergences.to_string()),
            ("noise", c.noise.to_string()),
            ("degraded fingerprints", c.regressions.to_string()),
            (
                &*format!("p{} source ms", l.percentile),
                ms(l.source.at_percentile_us),
            ),
            (
                &*format!("p{} target ms", l.percentile),
                ms(l.target.at_percentile_us),
            ),
            ("latency", format!("{} ({:.2}x)", l.class, l.ratio)),
        ] {
            let _ = writeln!(s, "<div class=kpi><b>{}</b>{}</div>", esc(&val), esc(k));
        }
        let _ = writeln!(
            s,
            "<p id=coverage class=\"{}\">{}</p>",
            if v.coverage.below_min { "degraded" } else { "" },
            esc(&coverage_line(&v.coverage))
        );
        if !v.coverage.unjudged.is_empty() {
            s.push_str(
                "<h2>Not judged (mostly noise or not replayed)</h2><table id=unjudged><tr><th>coverage</th>\
                 <th>compared</th><th>noise</th><th>not replayed</th><th>query</th></tr>\n",
            );
            for u in &v.coverage.unjudged {
                let _ = writeln!(
                    s,
                    "<tr><td>{:.1}%</td><td>{}/{}</td><td>{}</td><td>{}</td><td class=sql title=\"{}\">{}</td></tr>",
                    u.percent,
                    u.compared,
                    u.pairs,
                    u.noise,
                    u.not_replayed,
                    esc(&u.fingerprint),
                    esc(&u.normalized_sql)
                );
            }
            s.push_str("</table>\n");
        }
        s.push_str("<h2>Latency distribution (CDF per side)</h2>\n");
        s.push_str(&cdf_svg(&v.charts.cdf_source, &v.charts.cdf_target));
        let _ = writeln!(
            s,
            "<h2>Throughput over time (statements per {} s)</h2>",
            v.charts.throughput_bucket_s
        );
        s.push_str(&throughput_svg(
            &v.charts.throughput_source,
            &v.charts.throughput_target,
            v.charts.throughput_bucket_s,
        ));
        s.push_str(
            "<h2>Fingerprints by regression</h2><table id=fingerprints><tr><th>class</th><th>ratio</th><th>count</th>\
             <th>p50 ms s/t</th><th>p95 ms s/t</th><th>p99 ms s/t</th><th>max ms s/t</th><th>diverged</th><th>noise</th><th>query</th></tr>\n",
        );
        for f in &v.fingerprints {
            let _ = writeln!(
                s,
                "<tr><td class=\"l {cl}\">{cl}</td><td>{:.2}</td><td>{}</td><td>{} / {}</td><td>{} / {}</td><td>{} / {}</td><td>{} / {}</td><td>{}</td><td>{}</td><td class=sql title=\"{}\">{}</td></tr>",
                f.ratio,
                f.source.count,
                ms(f.source.p50_us),
                ms(f.target.p50_us),
                ms(f.source.p95_us),
                ms(f.target.p95_us),
                ms(f.source.p99_us),
                ms(f.target.p99_us),
                ms(f.source.max_us),
                ms(f.target.max_us),
                f.divergences,
                f.noise,
                esc(&f.fingerprint),
                esc(&f.normalized_sql),
                cl = esc(&f.class),
            );
        }
        s.push_str("</table>\n<h2>Divergences</h2>\n<div id=divergences>\n");
        if v.divergences.is_empty() {
            s.push_str("<p>None.</p>\n");
        }
        let mut current = "";
        for g in &v.divergences {
            if g.class != current {
                current = &g.class;
                let n: u64 = v
                    .divergence_classes
                    .iter()
                    .find(|c| c.class == g.class)
                    .map(|c| c.count)
                    .unwrap_or(0);
                let _ = writeln!(s, "<h3>{} ({n})</h3>", esc(&g.class));
            }
            let _ = writeln!(
                s,
                "<details class=divergence open><summary>{} of {} — <code>{}</code></summary>",
                g.count,
                g.pairs,
                esc(&g.normalized_sql)
            );
            for e in &g.examples {
                let _ = writeln!(
                    s,
                    "<p>session {} seq {}</p><pre>{}</pre>",
                    e.session_id,
                    e.seq,
                    esc(&e.sql)
                );
                if !e.params.is_empty() {
                    let _ = writeln!(
                        s,
                        "<p>parameters: <code>{}</code></p>",
                        esc(&params_line(e))
                    );
                }
                let _ = writeln!(
                    s,
                    "<table><tr><th>side</th><th>result</th><th>ms</th></tr>\
                     <tr><td class=l>captured</td><td class=sql>{}</td><td>{}</td></tr>\
                     <tr><td class=l>source</td><td class=sql>{}</td><td>{}</td></tr>\
                     <tr><td class=l>target</td><td class=sql>{}</td><td>{}</td></tr></table>",
                    esc(&side_line(&e.captured)),
                    ms(e.captured.duration_us.max(0) as u64),
                    esc(&side_line(&e.source)),
                    ms(e.source.duration_us.max(0) as u64),
                    esc(&side_line(&e.target)),
                    ms(e.target.duration_us.max(0) as u64),
                );
                if let Some(ev) = &e.evidence {
                    if let Some(n) = &ev.note {
                        let _ = writeln!(s, "<p>rows: {}</p>", esc(n));
                    }
                    if !ev.rows.is_empty() {
                        let _ = writeln!(
                            s,
                            "<table class=evidence><tr><th>row ({})</th><th>source: {}</th><th>target</th></tr>",
                            esc(&ev.mode),
                            esc(&ev.columns.join(" | "))
                        );
                        for r in &ev.rows {
                            let _ = writeln!(
                                s,
                                "<tr><td>{}</td><td class=sql>{}</td><td class=sql>{}</td></tr>",
                                r.position.map(|p| format!("#{p}")).unwrap_or_default(),
                                esc(&row_line(&r.source)),
                                esc(&row_line(&r.target))
                            );
                        }
                        s.push_str("</table>\n");
                    }
                }
            }
            s.push_str("</details>\n");
        }
        s.push_str(
            "</div>\n<h2>Noise (non-deterministic statements, not divergences)</h2>\n<table id=noise><tr><th>noise</th><th>pairs</th>\
             <th>source noise</th><th>target diff</th><th>why</th><th>query</th></tr>\n",
        );
        for n in &v.noise {
            let _ = writeln!(
                s,
                "<tr><td>{}</td><td>{}</td><td>{:.1}%</td><td>{:.1}%</td><td class=l>{}</td><td class=sql>{}</td></tr>",
                n.noise,
                n.pairs,
                n.source_noise_rate * 100.0,
                n.target_difference_rate * 100.0,
                esc(&n.why),
                esc(&n.normalized_sql)
            );
        }
        let _ = writeln!(
            s,
            "</table>\n<p>{} statements not compared (not replayed: {}, unmatched: {} source / {} target). Results: <code>{}</code></p>\n</body></html>",
            c.not_replayed + c.unmatched_source + c.unmatched_target,
            c.not_replayed,
            c.unmatched_source,
            c.unmatched_target,
            esc(&v.results_dir)
        );
        out.write_all(s.as_bytes())
    }
}
