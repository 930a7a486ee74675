//! The deterministic results directory behind the report tests
//! (`fixtures/results-small/`): fixed timings and hashes, one fingerprint
//! per thing a report must show (a regression, each divergence class, noise,
//! benign order, too few executions). Regenerate it with
//! `cargo run --example results_fixture -- fixtures/results-small`.

use std::path::Path;
use std::sync::Arc;

use crate::capture::event::Protocol;
use crate::replay::results::{Captured, ResultRow, ResultWriter, ResultsError, Status};
use crate::sql::{Facts, shape};

/// What one side returned, as the fixture describes it.
#[derive(Clone)]
struct Ret {
    tag: &'static str,
    rows: i64,
    oh: i64,
    uh: i64,
    cols: Vec<(&'static str, u32)>,
    error: Option<(&'static str, &'static str)>,
    us: i64,
}

fn ok(tag: &'static str, rows: i64, h: i64, cols: &[(&'static str, u32)], us: i64) -> Ret {
    Ret {
        tag,
        rows,
        oh: h,
        uh: h * 7,
        cols: cols.to_vec(),
        error: None,
        us,
    }
}

fn err(code: &'static str, msg: &'static str, us: i64) -> Ret {
    Ret {
        tag: "",
        rows: 0,
        oh: 0,
        uh: 0,
        cols: Vec::new(),
        error: Some((code, msg)),
        us,
    }
}

struct Stmt {
    sql: &'static str,
    params: Vec<Option<Vec<u8>>>,
    read_only: bool,
    captured: Ret,
    source: Ret,
    target: Ret,
}

const ID: &[(&str, u32)] = &[("id", 23), ("name", 25)];

/// The fixture's statements, in capture order.
fn statements() -> Vec<Stmt> {
    let mut v = Vec::new();
    let p = |s: &str| vec![Some(s.as_bytes().to_vec())];
    // Same results, same latency.
    for i in 0..40 {
        let r = ok("SELECT 1", 1, 100 + i, ID, 200 + (i % 5) * 10);
        let mut t = r.clone();
        t.us += 5;
        v.push(Stmt {
            sql: "SELECT id, name FROM users WHERE id = $1",
            params: p(&i.to_string()),
            read_only: true,
            captured: r.clone(),
            source: r,
            target: t,
        });
    }
    // Degraded: ten times slower on the target (a dropped index).
    for i in 0..30 {
        let r = ok(
            "SELECT 3",
            3,
            500 + i,
            &[("id", 23), ("total", 1700)],
            400 + (i % 3) * 20,
        );
        let mut t = r.clone();
        t.us = 4_000 + (i % 3) * 200;
        v.push(Stmt {
            sql: "SELECT id, total FROM orders WHERE customer_id = $1",
            params: p(&(i % 7).to_string()),
            read_only: true,
            captured: r.clone(),
            source: r,
            target: t,
        });
    }
    // ORDER BY under another collation: same rows, another order.
    for i in 0..12 {
        let r = ok("SELECT 5", 5, 900, &[("name", 25)], 300);
        let mut t = r.clone();
        if i % 2 == 0 {
            t.oh = 901;
        }
        v.push(Stmt {
            sql: "SELECT name FROM users ORDER BY name",
            params: vec![],
            read_only: true,
            captured: r.clone(),
            source: r,
            target: t,
        });
    }
    // No ORDER BY: another order is benign.
    for _ in 0..12 {
        let r = ok("SELECT 4", 4, 950, &[("id", 23)], 250);
        let mut t = r.clone();
        t.oh = 951;
        v.push(Stmt {
            sql: "SELECT id FROM items",
            params: vec![],
            read_only: true,
            captured: r.clone(),
            source: r,
            target: t,
        });
    }
    // now(): differs from the capture every time: noise.
    for i in 0..20 {
        v.push(Stmt {
            sql: "SELECT now()",
            params: vec![],
            read_only: true,
            captured: ok("SELECT 1", 1, 2000 + i, &[("now", 1184)], 90),
            source: ok("SELECT 1", 1, 3000 + i, &[("now", 1184)], 90),
            target: ok("SELECT 1", 1, 4000 + i, &[("now", 1184)], 95),
        });
    }
    // A new CHECK constraint on the target.
    for i in 0..15 {
        let r = ok("INSERT 0 1", 1, 0, &[], 600);
        let t = if i % 5 == 0 {
            err(
                "23514",
                "new row for relation \"orders\" violates check constraint \"orders_total_check\"",
                300,
            )
        } else {
            r.clone()
        };
        v.push(Stmt {
            sql: "INSERT INTO orders (customer_id, total) VALUES ($1, $2)",
            params: vec![Some(i.to_string().into_bytes()), Some(b"-1.00".to_vec())],
            read_only: false,
            captured: r.clone(),
            source: r,
            target: t,
        });
    }
    // A changed column type.
    for i in 0..10 {
        let r = ok("SELECT 1", 1, 1200 + i, &[("amount", 1700)], 150);
        let mut t = ok("SELECT 1", 1, 1300 + i, &[("amount", 701)], 150);
        t.uh = r.uh + 1;
        v.push(Stmt {
            sql: "SELECT amount FROM payments WHERE id = $1",
            params: p(&i.to_string()),
            read_only: true,
            captured: r.clone(),
            source: r,
            target: t,
        });
    }
    // A deleted row: one fewer.
    for i in 0..10 {
        let r = ok("SELECT 2", 2, 1400, &[("sku", 25)], 180);
        let t = if i == 3 {
            ok("SELECT 1", 1, 1401, &[("sku", 25)], 170)
        } else {
            r.clone()
        };
        v.push(Stmt {
            sql: "SELECT sku FROM stock WHERE warehouse = $1",
            params: p("north"),
            read_only: true,
            captured: r.clone(),
            source: r,
            target: t,
        });
    }
    // Different values, same count.
    for i in 0..10 {
        let r = ok("SELECT 1", 1, 1500, &[("count", 20)], 700);
        let t = if i < 2 {
            ok("SELECT 1", 1, 1501, &[("count", 20)], 700)
        } else {
            r.clone()
        };
        v.push(Stmt {
            sql: "SELECT count(*) FROM orders",
            params: vec![],
            read_only: true,
            captured: r.clone(),
            source: r,
            target: t,
        });
    }
    // Unordered LIMIT: noisy on the source 5 times in 20, the target differs
    // 6 times: within the noise thresholds.
    for i in 0..20 {
        let r = ok("SELECT 10", 10, 1600, &[("id", 23)], 350);
        let mut s = r.clone();
        let mut t = r.clone();
        if i < 5 {
            s.uh = 1700 + i;
            t.uh = 1800 + i;
        } else if i == 5 {
            t.uh = 1900;
        }
        v.push(Stmt {
            sql: "SELECT id FROM sessions LIMIT 10",
            params: vec![],
            read_only: true,
            captured: r,
            source: s,
            target: t,
        });
    }
    // Errors: resolved on the target, and another SQLSTATE.
    for _ in 0..2 {
        v.push(Stmt {
            sql: "SELECT * FROM legacy_view",
            params: vec![],
            read_only: true,
            captured: err("42P01", "relation \"legacy_view\" does not exist", 80),
            source: err("42P01", "relation \"legacy_view\" does not exist", 80),
            target: ok("SELECT 0", 0, 0, &[("x", 23)], 90),
        });
    }
    v.push(Stmt {
        sql: "INSERT INTO accounts (id) VALUES ($1)",
        params: p("7"),
        read_only: false,
        captured: err("23505", "duplicate key value violates unique constraint \"accounts_pkey\"", 100),
        source: err("23505", "duplicate key value violates unique constraint \"accounts_pkey\"", 100),
        target: err("23503", "insert or update on table \"accounts\" violates foreign key constraint \"accounts_org_fkey\"", 100),
    });
    v
}

/// Start of the fixture's capture: 2024-05-01T12:00:00Z.
const T0_US: i64 = 1_714_564_800_000_000;

/// Writes `source.parquet` and `target.parquet` into `dir`.
pub fn write(dir: &Path) -> Result<(), ResultsError> {
    let stmts = statements();
    let meta = vec![("pgtape.results.capture".to_string(), "fixture".to_string())];
    let mut src = ResultWriter::create(dir, "source", &meta)?;
    let mut tgt = ResultWriter::create(dir, "target", &meta)?;
    let n = stmts.len() as i64;
    for (i, s) in stmts.into_iter().enumerate() {
        let i = i as i64;
        let shape = shape(s.sql);
        // Four sessions, statements spread over 60 s of replay.
        let offset = i * 60_000_000 / n;
        let captured = Arc::new(Captured {
            session_id: i % 4 + 1,
            seq: i / 4 + 1,
            ts_us: T0_US + offset,
            duration_us: s.captured.us,
            fingerprint: shape.fingerprint as i64,
            facts: Arc::new(Facts {
                read_only: s.read_only,
                ..Facts::of(&shape.normalized)
            }),
            sql: s.sql.into(),
            protocol: if s.params.is_empty() {
                Protocol::Simple
            } else {
                Protocol::Extended
            },
            tx_status: b'I',
            param_types: vec![0; s.params.len()].into(),
            param_formats: Vec::new().into(),
            param_values: s.params.iter().cloned().collect(),
            result_formats: Vec::new().into(),
            max_rows: 0,
            command_tag: (!s.captured.tag.is_empty()).then(|| s.captured.tag.into()),
            rows: s.captured.rows,
            ordered_hash: s.captured.oh,
            unordered_hash: s.captured.uh,
            sqlstate: s.captured.error.map(|e| e.0.into()),
            ..Default::default()
        });
        for (w, side, r) in [
            (&mut src, "source", &s.source),
            (&mut tgt, "target", &s.target),
        ] {
            w.push(ResultRow {
                side,
                clone: 0,
                captured: captured.clone(),
                scheduled_us: offset,
                started_us: offset + 50,
                started_at_us: T0_US + 3_600_000_000 + offset + 50,
                delay_us: 50,
                order_wait_us: 0,
                order_released: false,
                duration_us: r.us,
                status: if r.error.is_some() {
                    Status::Error
                } else {
                    Status::Ok
                },
                reason: None,
                command_tag: (!r.tag.is_empty()).then(|| r.tag.into()),
                rows: r.rows,
                ordered_hash: r.oh,
                unordered_hash: r.uh,
                result_bytes: r.rows * 20,
                columns: r
                    .cols
                    .iter()
                    .map(|(n, t)| crate::replay::client::Column {
                        name: n.to_string(),
                        type_oid: *t,
                        ..Default::default()
                    })
                    .collect(),
                error: r.error.map(|(c, m)| (c.into(), m.into())),
                remapped: 0,
            })?;
        }
    }
    src.finish()?;
    tgt.finish()?;
    Ok(())
}
