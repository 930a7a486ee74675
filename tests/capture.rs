//! Recording through the proxy into Parquet and reading it back: real
//! PostgreSQL, real pgbench, the built binary for the crash tests, and
//! pyarrow/DuckDB as outside readers.

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray, BinaryArray, Int64Array, ListArray, RecordBatch, StringArray};
use pgtape::capture::{Capture, CaptureError, Recorder, RecorderConfig, col};
use pgtape::cluster::ClusterOptions;
use support::*;

/// One statement row of a capture, as the tests look at it.
#[derive(Debug, Clone)]
struct Row {
    session_id: i64,
    seq: i64,
    sql: String,
    statement_name: String,
    params: Vec<Option<Vec<u8>>>,
    lengths: Vec<i32>,
    sqlstate: Option<String>,
}

fn statement_rows(dir: &Path) -> Vec<Row> {
    let cap = Capture::open(dir).unwrap();
    assert!(cap.errors.is_empty(), "{:?}", cap.errors);
    let cols = [
        col::KIND,
        col::SESSION_ID,
        col::SEQ,
        col::SQL,
        col::STATEMENT_NAME,
        col::PARAM_VALUES,
        col::PARAM_LENGTHS,
        col::SQLSTATE,
    ];
    let mut out = Vec::new();
    for b in cap.scan(&cols) {
        let b = b.unwrap();
        push_rows(&b, &mut out);
    }
    out
}

fn push_rows(b: &RecordBatch, out: &mut Vec<Row>) {
    let s = |n: &str| b.column_by_name(n).unwrap().as_string::<i32>().clone();
    let kind: StringArray = s(col::KIND);
    let sql = s(col::SQL);
    let name = s(col::STATEMENT_NAME);
    let state = s(col::SQLSTATE);
    let session: &Int64Array = b.column_by_name(col::SESSION_ID).unwrap().as_primitive();
    let seq: &Int64Array = b.column_by_name(col::SEQ).unwrap().as_primitive();
    let params: &ListArray = b.column_by_name(col::PARAM_VALUES).unwrap().as_list();
    let lengths: &ListArray = b.column_by_name(col::PARAM_LENGTHS).unwrap().as_list();
    for i in 0..b.num_rows() {
        if kind.value(i) != "statement" {
            continue;
        }
        let p = params.value(i);
        let p: &BinaryArray = p.as_binary();
        let l = lengths.value(i);
        out.push(Row {
            session_id: session.value(i),
            seq: seq.value(i),
            sql: sql.value(i).to_string(),
            statement_name: name.value(i).to_string(),
            params: (0..p.len())
                .map(|j| (!p.is_null(j)).then(|| p.value(j).to_vec()))
                .collect(),
            lengths: l
                .as_primitive::<arrow::datatypes::Int32Type>()
                .values()
                .to_vec(),
            sqlstate: (!state.is_null(i)).then(|| state.value(i).to_string()),
        });
    }
}

fn files_with_ext(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(ext))
        .collect();
    v.sort();
    v
}

fn is_tpcb(sql: &str) -> bool {
    [
        "BEGIN;",
        "END;",
        "UPDATE pgbench_",
        "SELECT abalance",
        "INSERT INTO pgbench_history",
    ]
    .iter()
    .any(|p| sql.starts_with(p))
}

/// pgbench through an in-process proxy recording to `dir`.
fn record_pgbench(
    dir: &Path,
    mode: &str,
    clients: usize,
    txns: usize,
    tweak: impl FnOnce(&mut RecorderConfig),
) -> (
    pgtape::cluster::Cluster,
    pgtape::capture::RecorderStats,
    Duration,
) {
    let db = cluster(&ClusterOptions::default());
    run_ok(&mut pgbench(db.port(), &["-i", "-q", "-s", "1"]));
    let mut rc = RecorderConfig::new(dir, db.addr());
    tweak(&mut rc);
    let recorder = Recorder::start(rc).unwrap();
    let sender = recorder.sender();
    let proxy = Proxy::start(&db.addr(), move |cfg| cfg.tap = Some(sender));
    let started = Instant::now();
    let out = run_ok(&mut pgbench(
        proxy.port(),
        &[
            "-n",
            "-M",
            mode,
            "-c",
            &clients.to_string(),
            "-j",
            "2",
            "-t",
            &txns.to_string(),
        ],
    ));
    let took = started.elapsed();
    let total = clients * txns;
    assert!(
        stdout(&out).contains(&format!(
            "number of transactions actually processed: {total}/{total}"
        )),
        "{}",
        stdout(&out)
    );
    drop(proxy);
    let stats = recorder.close().unwrap();
    (db, stats, took)
}

#[test]
fn pgbench_prepared_capture_matches_executed_statements_and_parameters() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cap");
    let (clients, txns) = (4, 100);
    let (db, stats, _) = record_pgbench(&dir, "prepared", clients, txns, |_| {});
    assert_eq!(stats.dropped, 0, "{stats:?}");
    assert!(
        files_with_ext(&dir, ".arrows").is_empty(),
        "segment left after close"
    );
    let files = files_with_ext(&dir, ".parquet");
    assert!(!files.is_empty());
    for f in &files {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} must be private", f.display());
    }

    let rows = statement_rows(&dir);
    let script: Vec<&Row> = rows
        .iter()
        .filter(|r| r.sqlstate.is_none() && is_tpcb(&r.sql))
        .collect();
    assert_eq!(
        script.len(),
        clients * txns * 7,
        "captured rows vs pgbench's executed statements"
    );
    assert!(
        script.iter().all(|r| !r.statement_name.is_empty()),
        "prepared mode names statements"
    );
    // Per session, seq is 1.. without gaps: nothing lost, nothing doubled.
    let mut by_session: HashMap<i64, Vec<i64>> = HashMap::new();
    for r in &rows {
        by_session.entry(r.session_id).or_default().push(r.seq);
    }
    for (s, mut seqs) in by_session {
        seqs.sort();
        assert_eq!(
            seqs,
            (1..=seqs.len() as i64).collect::<Vec<_>>(),
            "session {s}"
        );
    }

    // Every INSERT's parameters are the row pgbench_history holds.
    let mut captured: Vec<String> = script
        .iter()
        .filter(|r| r.sql.starts_with("INSERT INTO pgbench_history"))
        .map(|r| {
            assert_eq!(r.lengths.len(), 4);
            r.params
                .iter()
                .map(|p| String::from_utf8(p.clone().unwrap()).unwrap())
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect();
    let mut stored: Vec<String> = db
        .psql(
            "postgres",
            "SELECT tid, bid, aid, delta FROM pgbench_history",
        )
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    captured.sort();
    stored.sort();
    assert_eq!(captured.len(), clients * txns);
    assert_eq!(
        captured, stored,
        "captured parameters vs the rows pgbench inserted"
    );

    // Outside readers take the files untouched.
    let py = r#"
import sys, glob, pyarrow.parquet as pq, duckdb
d = sys.argv[1]
files = sorted(glob.glob(d + "/*.parquet"))
t = pq.read_table(files)
kinds = t.column("kind").to_pylist()
assert t.schema.field("ts").type.tz == "UTC", t.schema.field("ts").type
md = pq.read_metadata(files[0]).metadata
assert md[b"pgtape.capture.version"] == b"1", md
n = duckdb.sql("SELECT count(*) FROM read_parquet('" + d + "/*.parquet') WHERE kind = 'statement' AND sqlstate IS NULL AND (sql LIKE 'BEGIN;%' OR sql LIKE 'END;%' OR sql LIKE 'UPDATE pgbench_%' OR sql LIKE 'SELECT abalance%' OR sql LIKE 'INSERT INTO pgbench_history%')").fetchall()[0][0]
print(kinds.count("statement"), n)
"#;
    let out = run_ok(Command::new("python3").arg("-c").arg(py).arg(&dir));
    let printed = stdout(&out);
    let nums: Vec<usize> = printed
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    assert_eq!(
        nums,
        vec![rows.len(), clients * txns * 7],
        "pyarrow/duckdb: {printed}"
    );

    let bytes: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    eprintln!(
        "capture: {} statement rows, {} bytes on disk, {:.1} B/statement",
        rows.len(),
        bytes,
        bytes as f64 / rows.len() as f64
    );
}
