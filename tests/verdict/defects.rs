//! Seeded defects on real clusters. Replay results are produced without the
//! replayer's scheduler: each statement runs on the source once for the
//! "captured" result, once more as the source side, then on the target,
//! through the replayer's wire client, and the rows go through ResultWriter.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use pgtape::cluster::{Cluster, ClusterOptions};
use pgtape::diff::{DiffConfig, FailOn, Verdict, run_diff_blocking};
use pgtape::replay::client::{Client, Extended, Reply};
use pgtape::replay::conn_opts::ConnOpts;
use pgtape::replay::results::{Captured, ResultRow, ResultWriter, Status};
use pgtape::sql::{Facts, shape};

/// A statement with text parameters, sent with the extended protocol.
pub struct Stmt {
    pub sql: String,
    pub params: Vec<String>,
}

pub fn stmt(sql: &str, params: &[&str]) -> Stmt {
    Stmt {
        sql: sql.into(),
        params: params.iter().map(|p| p.to_string()).collect(),
    }
}

async fn run(c: &mut Client, s: &Stmt) -> (Reply, i64) {
    let params: Vec<Option<&[u8]>> = s.params.iter().map(|p| Some(p.as_bytes())).collect();
    let x = Extended {
        sql: s.sql.as_bytes(),
        param_oids: &[],
        param_formats: &[],
        params: &params,
        result_formats: &[],
        max_rows: 0,
        named: false,
    };
    let t = Instant::now();
    let o = c.extended(&x).await.expect("the statement runs");
    (o, t.elapsed().as_micros() as i64)
}

fn row(side: &'static str, captured: &Arc<Captured>, o: Reply, us: i64, at: i64) -> ResultRow {
    ResultRow {
        side,
        clone: 0,
        captured: captured.clone(),
        scheduled_us: at,
        started_us: at,
        started_at_us: at,
        delay_us: 0,
        order_wait_us: 0,
        order_released: false,
        duration_us: us,
        status: if o.error.is_some() {
            Status::Error
        } else {
            Status::Ok
        },
        reason: None,
        command_tag: (!o.command_tag.is_empty()).then(|| o.command_tag.clone()),
        rows: o.rows() as i64,
        ordered_hash: o.hash.ordered as i64,
        unordered_hash: o.hash.unordered as i64,
        result_bytes: o.hash.bytes as i64,
        columns: o.columns.clone(),
        error: o.error.clone(),
        remapped: 0,
    }
}

/// Replays `stmts` on both clusters into a results directory at `dir`.
pub fn replay_pair(source: &Cluster, target: &Cluster, stmts: &[Stmt], dir: &Path) {
    let (so, to) = opts(source, target);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut cap = Client::connect(&so, &so.user, &[]).await.unwrap();
        let mut src = Client::connect(&so, &so.user, &[]).await.unwrap();
        let mut tgt = Client::connect(&to, &to.user, &[]).await.unwrap();
        let mut ws = ResultWriter::create(dir, "source", &[]).unwrap();
        let mut wt = ResultWriter::create(dir, "target", &[]).unwrap();
        let t0 = Instant::now();
        for (i, s) in stmts.iter().enumerate() {
            let (c, cus) = run(&mut cap, s).await;
            let shape = shape(&s.sql);
            let captured = Arc::new(Captured {
                session_id: 1,
                seq: i as i64 + 1,
                ts_us: t0.elapsed().as_micros() as i64,
                duration_us: cus,
                fingerprint: shape.fingerprint as i64,
                facts: Arc::new(Facts {
                    read_only: s
                        .sql
                        .trim_start()
                        .to_ascii_uppercase()
                        .starts_with("SELECT"),
                    ..Facts::of(&shape.normalized)
                }),
                sql: s.sql.as_str().into(),
                protocol: pgtape::capture::event::Protocol::Extended,
                tx_status: b'I',
                param_types: vec![0; s.params.len()].into(),
                param_formats: Vec::new().into(),
                param_values: s
                    .params
                    .iter()
                    .map(|p| Some(p.clone().into_bytes()))
                    .collect(),
                result_formats: Vec::new().into(),
                max_rows: 0,
                command_tag: (!c.command_tag.is_empty()).then(|| c.command_tag.clone()),
                rows: c.rows() as i64,
                ordered_hash: c.hash.ordered as i64,
                unordered_hash: c.hash.unordered as i64,
                sqlstate: c.error.as_ref().map(|e| e.0.as_str().into()),
                ..Default::default()
            });
            let at = t0.elapsed().as_micros() as i64;
            let (o, us) = run(&mut src, s).await;
            ws.push(row("source", &captured, o, us, at)).unwrap();
            let (o, us) = run(&mut tgt, s).await;
            wt.push(row("target", &captured, o, us, at)).unwrap();
        }
        ws.finish().unwrap();
        wt.finish().unwrap();
        for c in [cap, src, tgt] {
            c.terminate().await;
        }
    });
}

pub fn opts(source: &Cluster, target: &Cluster) -> (ConnOpts, ConnOpts) {
    (
        ConnOpts::parse(&format!("{}?sslmode=disable", source.url("postgres"))).unwrap(),
        ConnOpts::parse(&format!("{}?sslmode=disable", target.url("postgres"))).unwrap(),
    )
}

/// An ICU (else libc) collation that sorts `apple` before `Banana`, as "C" does not.
fn linguistic_collation(c: &Cluster) -> String {
    let found = c
        .psql(
            "postgres",
            "SELECT collname FROM pg_collation WHERE collname IN ('und-x-icu', 'en-x-icu', 'en_US.utf8', 'en_US') \
             ORDER BY collname = 'und-x-icu' DESC, collname = 'en-x-icu' DESC LIMIT 1",
        )
        .unwrap();
    assert!(!found.is_empty(), "no linguistic collation on this server");
    found
}

const SCHEMA: &str = "
CREATE TABLE users (id int PRIMARY KEY, name text COLLATE \"C\");
INSERT INTO users VALUES (1, 'apple'), (2, 'Banana'), (3, 'cherry'), (4, 'Date');
CREATE TABLE payments (id int PRIMARY KEY, amount numeric(10,2));
INSERT INTO payments SELECT i, i * 1.25 FROM generate_series(1, 20) i;
CREATE TABLE stock (sku text, warehouse text);
INSERT INTO stock VALUES ('a1', 'north'), ('a2', 'north'), ('b1', 'south');
CREATE TABLE orders (id serial PRIMARY KEY, customer_id int, total numeric(10,2));
CREATE TABLE big (id int, k int, payload text);
INSERT INTO big SELECT i, i % 50000, md5(i::text) FROM generate_series(1, 200000) i;
CREATE INDEX big_k ON big (k);
ANALYZE;
";

fn clusters() -> (Cluster, Cluster) {
    let mut source = Cluster::start(&ClusterOptions::default()).expect("source cluster");
    source.psql("postgres", SCHEMA).unwrap();
    let target = source.duplicate().expect("target cluster");
    (source, target)
}

/// The statements of both scenarios: a mix of everything the defects touch.
fn workload() -> Vec<Stmt> {
    let mut v = Vec::new();
    for i in 0..30 {
        v.push(stmt(
            "SELECT id, payload FROM big WHERE k = $1",
            &[&(i * 997 % 50000).to_string()],
        ));
        v.push(stmt(
            "SELECT name FROM users WHERE id = $1",
            &[&(i % 4 + 1).to_string()],
        ));
    }
    for i in 0..12 {
        v.push(stmt("SELECT name FROM users ORDER BY name", &[]));
        v.push(stmt(
            "SELECT amount FROM payments WHERE id = $1",
            &[&(i + 1).to_string()],
        ));
        v.push(stmt(
            "SELECT sku FROM stock WHERE warehouse = $1",
            &["north"],
        ));
        v.push(stmt(
            "INSERT INTO orders (customer_id, total) VALUES ($1, $2)",
            &[&i.to_string(), if i % 4 == 0 { "-5.00" } else { "10.00" }],
        ));
        v.push(stmt("SELECT now()", &[]));
        v.push(stmt("SELECT random()", &[]));
    }
    v
}

fn group<'a>(v: &'a Verdict, sql_part: &str) -> Vec<&'a str> {
    v.divergences
        .iter()
        .filter(|g| g.normalized_sql.contains(sql_part))
        .map(|g| g.class.as_str())
        .collect()
}

#[test]
fn seeded_defects_are_each_caught_and_classed() {
    let (source, target) = clusters();
    let coll = linguistic_collation(&target);
    target
        .psql(
            "postgres",
            &format!(
                "ALTER TABLE payments ALTER amount TYPE float8;
                 DELETE FROM stock WHERE sku = 'a2';
                 ALTER TABLE users ALTER name TYPE text COLLATE \"{coll}\";
                 ALTER TABLE orders ADD CONSTRAINT orders_total_check CHECK (total >= 0) NOT VALID;
                 DROP INDEX big_k;"
            ),
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    replay_pair(&source, &target, &workload(), dir.path());
    let (so, to) = opts(&source, &target);
    let v = run_diff_blocking(dir.path(), &DiffConfig::default(), Some((&so, &to))).unwrap();
    let ctx = || pgtape_table(&v);
    assert_eq!(
        group(&v, "FROM payments"),
        ["different_columns"],
        "{}",
        ctx()
    );
    assert_eq!(
        group(&v, "FROM stock"),
        ["different_row_count"],
        "{}",
        ctx()
    );
    assert_eq!(group(&v, "ORDER BY name"), ["different_order"], "{}", ctx());
    assert_eq!(group(&v, "INSERT INTO orders"), ["new_error"], "{}", ctx());
    assert!(group(&v, "FROM big").is_empty(), "{}", ctx());
    let new_error = v
        .divergences
        .iter()
        .find(|g| g.class == "new_error")
        .unwrap();
    assert_eq!(new_error.count, 3);
    assert_eq!(
        new_error.examples[0].target.sqlstate.as_deref(),
        Some("23514")
    );
    let big = v
        .fingerprints
        .iter()
        .find(|f| f.normalized_sql.contains("FROM big"))
        .unwrap();
    assert_eq!(big.class, "degraded", "{}", ctx());
    assert!(big.ratio > 5.0, "{}", ctx());
    assert_eq!(v.fingerprints[0].fingerprint, big.fingerprint, "{}", ctx());
    // Row-level evidence: the deleted row shows on the source side only,
    // and the collation change position by position.
    let stock = v
        .divergences
        .iter()
        .find(|g| g.normalized_sql.contains("FROM stock"))
        .unwrap();
    let ev = stock.examples[0].evidence.as_ref().expect("evidence");
    assert_eq!(ev.rows.len(), 1, "{ev:?}");
    assert_eq!(ev.rows[0].source, Some(vec![Some("a2".to_string())]));
    assert_eq!(ev.rows[0].target, None);
    let order = v
        .divergences
        .iter()
        .find(|g| g.class == "different_order")
        .unwrap();
    let ev = order.examples[0].evidence.as_ref().expect("evidence");
    assert_eq!(
        (ev.mode.as_str(), ev.rows[0].position),
        ("ordered", Some(0)),
        "{ev:?}"
    );
    assert_eq!((v.verdict.as_str(), v.exit_code), ("fail", 1));
    // The regression alone fails a --fail-on regression gate.
    let cfg = DiffConfig {
        fail_on: vec![FailOn::Regression],
        ..Default::default()
    };
    assert_eq!(
        run_diff_blocking(dir.path(), &cfg, None).unwrap().exit_code,
        1
    );
    // The HTML of a real verdict renders in a browser too.
    super::chromium::assert_renders(&v, "defects");
}

#[test]
fn identical_clusters_have_no_divergence_and_now_random_are_noise() {
    let (source, target) = clusters();
    let dir = tempfile::tempdir().unwrap();
    replay_pair(&source, &target, &workload(), dir.path());
    // now() and random() are 24 of the 132 statements: the default
    // --min-coverage (95 %) fails such a verdict, as the coverage test
    // shows; here the check is off to look at the noise alone.
    let cfg = DiffConfig {
        fail_on: vec![FailOn::Divergence],
        min_coverage: 0.0,
        ..Default::default()
    };
    let v = run_diff_blocking(dir.path(), &cfg, None).unwrap();
    assert_eq!(v.counts.divergences, 0, "{}", pgtape_table(&v));
    assert_eq!(
        (v.coverage.compared, v.coverage.total, v.coverage.percent),
        (108, 132, 81.8)
    );
    let noisy: Vec<&str> = v.noise.iter().map(|n| n.normalized_sql.as_str()).collect();
    assert!(noisy.contains(&"SELECT now()"), "{noisy:?}");
    assert!(noisy.contains(&"SELECT random()"), "{noisy:?}");
    assert_eq!(v.counts.noise, 24, "{}", pgtape_table(&v));
    assert_eq!((v.verdict.as_str(), v.exit_code), ("pass", 0));
}

fn pgtape_table(v: &Verdict) -> String {
    let mut out = Vec::new();
    pgtape::report::verdict::render(v, pgtape::report::Format::Table, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}
