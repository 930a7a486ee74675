//! The terminal exporter: aligned text tables, numbers right-aligned, long
//! SQL cut to one line. Deterministic for a given summary (snapshot-tested).

use std::io::Write;

use super::summary::{FingerprintStats, Group, Latency};
use super::{Exporter, Summary};

pub struct TableExporter;

/// Widest SQL shown in a table cell.
const SQL_WIDTH: usize = 72;

fn ms(us: u64) -> String {
    format!("{:.2}", us as f64 / 1000.0)
}

pub(crate) fn one_line(sql: &str, width: usize) -> String {
    let flat: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= width {
        flat
    } else {
        let cut: String = flat.chars().take(width - 1).collect();
        format!("{cut}…")
    }
}

/// Renders rows under headers; columns whose header starts with a space... are
/// not special: a column is right-aligned when `right[i]`.
pub(crate) fn render(
    out: &mut dyn Write,
    headers: &[&str],
    right: &[bool],
    rows: &[Vec<String>],
) -> std::io::Result<()> {
    let mut w: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let mut s = String::from(" ");
        for (i, c) in cells.iter().enumerate() {
            let pad = w[i] - c.chars().count();
            let last = i + 1 == cells.len();
            s.push(' ');
            if right[i] {
                s.push_str(&" ".repeat(pad));
                s.push_str(c);
            } else {
                s.push_str(c);
                if !last {
                    s.push_str(&" ".repeat(pad));
                }
            }
            s.push(' ');
        }
        s.trim_end().to_string()
    };
    writeln!(out, "{}", line(headers.to_vec()))?;
    writeln!(
        out,
        "{}",
        line(
            w.iter()
                .map(|n| "-".repeat(*n))
                .collect::<Vec<_>>()
                .iter()
                .map(String::as_str)
                .collect()
        )
    )?;
    for r in rows {
        writeln!(out, "{}", line(r.iter().map(String::as_str).collect()))?;
    }
    writeln!(out)
}

fn latency_line(l: &Latency) -> String {
    format!(
        "mean {:.2} ms, p50 {} ms, p95 {} ms, p99 {} ms, max {} ms",
        l.mean_us / 1000.0,
        ms(l.p50_us),
        ms(l.p95_us),
        ms(l.p99_us),
        ms(l.max_us)
    )
}

fn fingerprints(out: &mut dyn Write, title: &str, v: &[FingerprintStats]) -> std::io::Result<()> {
    writeln!(out, "{title}")?;
    let rows: Vec<Vec<String>> = v
        .iter()
        .map(|f| {
            vec![
                f.fingerprint.clone(),
                f.statement_type.clone(),
                f.count.to_string(),
                format!("{:.2}", f.total_ms),
                format!("{:.2}", f.latency.mean_us / 1000.0),
                ms(f.latency.p50_us),
                ms(f.latency.p95_us),
                ms(f.latency.p99_us),
                ms(f.latency.max_us),
                f.rows.to_string(),
                f.errors.to_string(),
                one_line(&f.normalized_sql, SQL_WIDTH),
            ]
        })
        .collect();
    render(
        out,
        &[
            "fingerprint",
            "type",
            "count",
            "total ms",
            "mean ms",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "max ms",
            "rows",
            "errors",
            "query",
        ],
        &[
            false, false, true, true, true, true, true, true, true, true, true, false,
        ],
        &rows,
    )
}

fn groups(out: &mut dyn Write, title: &str, key: &str, v: &[Group]) -> std::io::Result<()> {
    writeln!(out, "{title}")?;
    let with_sessions = v.iter().any(|g| g.sessions.is_some());
    let rows: Vec<Vec<String>> = v
        .iter()
        .map(|g| {
            let mut r = vec![if g.name.is_empty() {
                "(empty)".into()
            } else {
                g.name.clone()
            }];
            if with_sessions {
                r.push(g.sessions.unwrap_or(0).to_string());
            }
            r.extend([
                g.statements.to_string(),
                format!("{:.2}", g.total_ms),
                g.errors.to_string(),
            ]);
            r
        })
        .collect();
    if with_sessions {
        render(
            out,
            &[key, "sessions", "statements", "total ms", "errors"],
            &[false, true, true, true, true],
            &rows,
        )
    } else {
        render(
            out,
            &[key, "statements", "total ms", "errors"],
            &[false, true, true, true],
            &rows,
        )
    }
}

impl Exporter for TableExporter {
    fn export(&self, s: &Summary, out: &mut dyn Write) -> std::io::Result<()> {
        writeln!(
            out,
            "Capture: {} file(s), {} rows, {} events dropped while recording",
            s.files, s.rows, s.dropped
        )?;
        for b in &s.bad_files {
            writeln!(out, "  skipped: {b}")?;
        }
        for p in &s.pending_segments {
            writeln!(out, "  not converted yet: {p}")?;
        }
        if let (Some(a), Some(b)) = (&s.start, &s.end) {
            writeln!(out, "Span:       {a} .. {b} ({:.1} s)", s.duration_s)?;
        }
        writeln!(out, "Sessions:   {}", s.sessions)?;
        writeln!(
            out,
            "Statements: {} ({:.1}/s), errors {} ({:.2}%)",
            s.statements,
            s.statements_per_s,
            s.errors,
            s.error_rate * 100.0
        )?;
        writeln!(out, "Latency:    {}", latency_line(&s.latency))?;
        writeln!(out)?;
        fingerprints(out, "Top fingerprints by total time", &s.top_by_total_time)?;
        fingerprints(out, "Top fingerprints by count", &s.top_by_count)?;
        groups(out, "By statement type", "type", &s.by_type)?;
        groups(out, "By table", "table", &s.by_table)?;
        groups(out, "By application_name", "application", &s.by_application)?;
        if !s.errors_by_sqlstate.is_empty() {
            writeln!(out, "Errors by SQLSTATE")?;
            let rows: Vec<Vec<String>> = s
                .errors_by_sqlstate
                .iter()
                .map(|e| vec![e.sqlstate.clone(), e.count.to_string()])
                .collect();
            render(out, &["sqlstate", "count"], &[false, true], &rows)?;
        }
        writeln!(
            out,
            "Throughput (statements per {} s)",
            s.throughput_bucket_s
        )?;
        let rows: Vec<Vec<String>> = s
            .throughput
            .iter()
            .map(|p| {
                vec![
                    format!("+{}s", p.offset_s),
                    p.statements.to_string(),
                    p.errors.to_string(),
                ]
            })
            .collect();
        render(
            out,
            &["offset", "statements", "errors"],
            &[true, true, true],
            &rows,
        )?;
        writeln!(
            out,
            "Slow statements (over {} ms): {}",
            s.slow_ms,
            s.slow.len()
        )?;
        let rows: Vec<Vec<String>> = s
            .slow
            .iter()
            .map(|x| {
                let params = x
                    .params
                    .iter()
                    .map(|p| p.as_deref().unwrap_or("NULL"))
                    .collect::<Vec<_>>()
                    .join(", ");
                vec![
                    x.ts.clone(),
                    format!("{}/{}", x.session_id, x.seq),
                    ms(x.duration_us.max(0) as u64),
                    one_line(&x.sql, 48),
                    one_line(&params, 40),
                ]
            })
            .collect();
        if !rows.is_empty() {
            render(
                out,
                &["start", "session/seq", "ms", "sql", "params"],
                &[false, true, true, false, false],
                &rows,
            )?;
        }
        Ok(())
    }
}
