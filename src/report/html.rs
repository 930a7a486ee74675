//! The HTML exporter: one self-contained page (inline CSS and SVG, no script,
//! no external request) readable offline: headline numbers, throughput over
//! time, the latency distribution and the same tables as the terminal form.

use std::fmt::Write as _;
use std::io::Write;

use super::summary::{FingerprintStats, Group, HistBucket, Point};
use super::{Exporter, Summary};

pub struct HtmlExporter;

/// Escapes text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

const W: f64 = 720.0;
const H: f64 = 200.0;
const PAD: f64 = 36.0;

/// Throughput as a polyline with the errors as a second one.
fn throughput_svg(pts: &[Point], bucket_s: u64) -> String {
    let mut s = String::new();
    let max = pts.iter().map(|p| p.statements).max().unwrap_or(0).max(1) as f64;
    let n = pts.len().max(2) as f64 - 1.0;
    let x = |i: usize| PAD + (W - 2.0 * PAD) * i as f64 / n;
    let y = |v: u64| H - PAD - (H - 2.0 * PAD) * v as f64 / max;
    let line = |f: &dyn Fn(&Point) -> u64| -> String {
        pts.iter()
            .enumerate()
            .map(|(i, p)| format!("{:.1},{:.1}", x(i), y(f(p))))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let _ = write!(
        s,
        r##"<svg width="{W}" height="{H}" role="img" aria-label="statements per {bucket_s} s over time">
<line x1="{PAD}" y1="{b}" x2="{r}" y2="{b}" stroke="#999"/><line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{b}" stroke="#999"/>
<text x="4" y="{PAD}" font-size="11">{max}</text><text x="4" y="{b}" font-size="11">0</text>
<text x="{PAD}" y="{l}" font-size="11">+0 s</text><text x="{r}" y="{l}" font-size="11" text-anchor="end">+{end} s</text>
<polyline fill="none" stroke="#2a6fdb" stroke-width="1.5" points="{all}"/>
<polyline fill="none" stroke="#d33" stroke-width="1.5" points="{err}"/>
</svg>"##,
        b = H - PAD,
        r = W - PAD,
        l = H - PAD + 16.0,
        max = max as u64,
        end = pts.last().map(|p| p.offset_s + bucket_s).unwrap_or(0),
        all = line(&|p| p.statements),
        err = line(&|p| p.errors),
    );
    s
}

/// Latency distribution as bars over power-of-two buckets.
fn latency_svg(h: &[HistBucket]) -> String {
    let mut s = String::new();
    let max = h.iter().map(|b| b.count).max().unwrap_or(0).max(1) as f64;
    let bw = (W - 2.0 * PAD) / h.len().max(1) as f64;
    let _ = writeln!(
        s,
        r##"<svg width="{W}" height="{H}" role="img" aria-label="latency distribution">"##
    );
    for (i, b) in h.iter().enumerate() {
        let bh = (H - 2.0 * PAD) * b.count as f64 / max;
        let x = PAD + i as f64 * bw;
        let _ = writeln!(
            s,
            r##"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{bh:.1}" fill="#2a6fdb"><title>≤ {} µs: {}</title></rect>"##,
            H - PAD - bh,
            (bw - 2.0).max(1.0),
            b.le_us,
            b.count
        );
        if i % 2 == 0 || h.len() < 12 {
            let _ = writeln!(
                s,
                r##"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="middle">{}</text>"##,
                x + bw / 2.0,
                H - PAD + 14.0,
                label_us(b.le_us)
            );
        }
    }
    s.push_str("</svg>");
    s
}

fn label_us(us: u64) -> String {
    match us {
        u if u >= 1_000_000 => format!("{}s", u / 1_000_000),
        u if u >= 1_000 => format!("{}ms", u / 1_000),
        u => format!("{u}µs"),
    }
}

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

fn fp_table(s: &mut String, title: &str, v: &[FingerprintStats]) {
    let _ = writeln!(
        s,
        "<h2>{}</h2><table><tr><th>fingerprint</th><th>type</th><th>count</th><th>total ms</th><th>mean ms</th><th>p50</th><th>p95</th><th>p99</th><th>max</th><th>rows</th><th>errors</th><th>query</th></tr>",
        esc(title)
    );
    for f in v {
        let _ = writeln!(
            s,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.2}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=sql>{}</td></tr>",
            f.fingerprint,
            esc(&f.statement_type),
            f.count,
            f.total_ms,
            f.latency.mean_us / 1000.0,
            ms(f.latency.p50_us),
            ms(f.latency.p95_us),
            ms(f.latency.p99_us),
            ms(f.latency.max_us),
            f.rows,
            f.errors,
            esc(&f.normalized_sql)
        );
    }
    s.push_str("</table>\n");
}

fn group_table(s: &mut String, title: &str, key: &str, v: &[Group]) {
    let _ = writeln!(
        s,
        "<h2>{}</h2><table><tr><th>{}</th><th>sessions</th><th>statements</th><th>total ms</th><th>errors</th></tr>",
        esc(title),
        esc(key)
    );
    for g in v {
        let sessions = g.sessions.map(|n| n.to_string()).unwrap_or_default();
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td>{sessions}</td><td>{}</td><td>{:.2}</td><td>{}</td></tr>",
            esc(&g.name),
            g.statements,
            g.total_ms,
            g.errors
        );
    }
    s.push_str("</table>\n");
}

impl Exporter for HtmlExporter {
    fn export(&self, r: &Summary, out: &mut dyn Write) -> std::io::Result<()> {
        let mut s = String::new();
        s.push_str(
            "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8><title>pgtape report</title>\n<style>\
             body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin-bottom:1.5em}\
             td,th{border:1px solid #ddd;padding:3px 6px;text-align:right}td.sql,th:last-child{text-align:left;font-family:monospace}\
             .kpi{display:inline-block;margin-right:2em}.kpi b{display:block;font-size:1.6em}</style></head><body>\n<h1>pgtape report</h1>\n",
        );
        let _ = writeln!(
            s,
            "<p>{} file(s), {} rows, {} events dropped while recording; {} .. {}</p>",
            r.files,
            r.rows,
            r.dropped,
            esc(r.start.as_deref().unwrap_or("-")),
            esc(r.end.as_deref().unwrap_or("-"))
        );
        for b in &r.bad_files {
            let _ = writeln!(s, "<p>skipped: {}</p>", esc(b));
        }
        for (k, v) in [
            ("sessions", r.sessions.to_string()),
            ("statements", r.statements.to_string()),
            ("statements/s", format!("{:.1}", r.statements_per_s)),
            ("error rate", format!("{:.2}%", r.error_rate * 100.0)),
            ("p50 ms", ms(r.latency.p50_us)),
            ("p99 ms", ms(r.latency.p99_us)),
        ] {
            let _ = writeln!(s, "<div class=kpi><b>{v}</b>{k}</div>");
        }
        let _ = writeln!(
            s,
            "<h2>Throughput (statements per {} s; errors in red)</h2>",
            r.throughput_bucket_s
        );
        s.push_str(&throughput_svg(&r.throughput, r.throughput_bucket_s));
        s.push_str("\n<h2>Latency distribution</h2>\n");
        s.push_str(&latency_svg(&r.latency_histogram));
        s.push('\n');
        fp_table(
            &mut s,
            "Top fingerprints by total time",
            &r.top_by_total_time,
        );
        fp_table(&mut s, "Top fingerprints by count", &r.top_by_count);
        group_table(&mut s, "By statement type", "type", &r.by_type);
        group_table(&mut s, "By table", "table", &r.by_table);
        group_table(
            &mut s,
            "By application_name",
            "application",
            &r.by_application,
        );
        let _ = writeln!(
            s,
            "<h2>Errors by SQLSTATE</h2><table><tr><th>sqlstate</th><th>count</th></tr>"
        );
        for e in &r.errors_by_sqlstate {
            let _ = writeln!(
                s,
                "<tr><td>{}</td><td>{}</td></tr>",
                esc(&e.sqlstate),
                e.count
            );
        }
        s.push_str("</table>\n");
        let _ = writeln!(
            s,
            "<h2>Slow statements (over {} ms)</h2><table><tr><th>start</th><th>session/seq</th><th>ms</th><th>sql</th><th>params</th></tr>",
            r.slow_ms
        );
        for x in &r.slow {
            let params = x
                .params
                .iter()
                .map(|p| p.as_deref().unwrap_or("NULL"))
                .collect::<Vec<_>>()
                .join(", ");
            let _ = writeln!(
                s,
                "<tr><td>{}</td><td>{}/{}</td><td>{}</td><td class=sql>{}</td><td class=sql>{}</td></tr>",
                esc(&x.ts),
                x.session_id,
                x.seq,
                ms(x.duration_us.max(0) as u64),
                esc(&x.sql),
                esc(&params)
            );
        }
        s.push_str("</table>\n</body></html>\n");
        out.write_all(s.as_bytes())
    }
}
