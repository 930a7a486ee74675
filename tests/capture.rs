//! Recording through the proxy into Parquet and reading it back: real
//! PostgreSQL, real pgbench, and pyarrow/DuckDB as outside readers. The
//! crash tests (kill -9, full disk) are in `tests/faults.rs`.

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
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
assert md[b"pgtape.capture.version"] == b"2", md
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

#[test]
fn slow_recorder_drops_and_counts_while_pgbench_runs_at_full_speed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cap");
    let delay = Duration::from_millis(5);
    let (_db, stats, took) = record_pgbench(&dir, "extended", 2, 200, |rc| {
        rc.queue = 64;
        rc.slow_per_event = delay;
    });
    let offered = stats.events + stats.dropped;
    assert!(
        stats.dropped > 0,
        "a 5 ms/event recorder must fall behind: {stats:?}"
    );
    // Had the tap waited for the recorder, pgbench could not finish before the
    // recorder had spent `delay` on every event.
    let blocking_floor = delay * offered as u32;
    assert!(
        took < blocking_floor / 2,
        "pgbench took {took:?}; a blocking tap would need at least {blocking_floor:?}"
    );
    assert_eq!(stats.rows, stats.events, "received events are all written");
    let cap = Capture::open(&dir).unwrap();
    assert!(cap.errors.is_empty(), "{:?}", cap.errors);
    assert_eq!(cap.total_rows() as u64, stats.rows);
    assert_eq!(
        cap.dropped(),
        stats.dropped,
        "drops are in the files' metadata"
    );
}

#[test]
fn bad_files_are_named_and_the_others_still_load() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cap");
    let recorder = Recorder::start(RecorderConfig::new(&dir, "127.0.0.1:5432")).unwrap();
    let tx = recorder.sender();
    for i in 1..=10u64 {
        tx.send(pgtape::capture::TapEvent::Statement(Box::new(
            pgtape::capture::event::StatementEvent {
                session_id: 1,
                seq: i,
                start_us: 1_700_000_000_000_000 + i as i64,
                duration_us: 10,
                protocol: pgtape::capture::event::Protocol::Simple,
                sql: bytes::Bytes::from_static(b"SELECT 1"),
                statement_name: Default::default(),
                param_oids: Default::default(),
                bind: Default::default(),
                max_rows: 0,
                command_tag: bytes::Bytes::from_static(b"SELECT 1"),
                rows: 1,
                ordered_hash: 0,
                unordered_hash: 0,
                result_bytes: 11,
                error: None,
                tx_status: b'I',
                copy_in: None,
                result_values: None,
            },
        )));
    }
    drop(tx);
    let stats = recorder.close().unwrap();
    let good = stats.files[0].clone();
    std::fs::write(dir.join("notes.parquet"), "not parquet at all").unwrap();
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(dir.join("cut.parquet"), &bytes[..bytes.len() / 2]).unwrap();
    write_newer_version(&good, &dir.join("zz-future.parquet"));

    let cap = Capture::open(&dir).unwrap();
    assert_eq!(cap.files.len(), 1);
    assert_eq!(cap.total_rows(), 10);
    let msgs: Vec<String> = cap.errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(msgs.len(), 3, "{msgs:#?}");
    let find = |name: &str| {
        msgs.iter()
            .find(|m| m.contains(name))
            .unwrap_or_else(|| panic!("no error names {name}: {msgs:#?}"))
    };
    assert!(find("notes.parquet").contains("not a Parquet file"));
    assert!(find("cut.parquet").contains("truncated"));
    assert!(find("zz-future.parquet").contains("upgrade pgtape"));
    assert!(matches!(
        cap.errors
            .iter()
            .find(|e| e.to_string().contains("zz-future")),
        Some(CaptureError::NewerVersion { found: 99, .. })
    ));
}

/// Rewrites a capture file as if a future pgtape (schema version 99) wrote it.
fn write_newer_version(from: &Path, to: &Path) {
    use parquet::arrow::ArrowWriter;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::file::metadata::KeyValue;
    use parquet::file::properties::WriterProperties;
    let r = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(from).unwrap()).unwrap();
    let schema = r.schema().clone();
    let props = WriterProperties::builder()
        .set_key_value_metadata(Some(vec![KeyValue::new(
            "pgtape.capture.version".into(),
            "99".to_string(),
        )]))
        .build();
    let mut w =
        ArrowWriter::try_new(std::fs::File::create(to).unwrap(), schema, Some(props)).unwrap();
    for b in r.build().unwrap() {
        w.write(&b.unwrap()).unwrap();
    }
    w.close().unwrap();
}

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/capture-small");

/// Rewrites the committed report fixture (run by hand after a schema change:
/// `cargo test --test capture regenerate -- --ignored`).
#[test]
#[ignore]
fn regenerate_report_fixture() {
    use pgtape::capture::synth::{Synth, events, write_capture};
    let dir = Path::new(FIXTURE);
    let _ = std::fs::remove_dir_all(dir);
    let info = pgtape::capture::CaptureInfo {
        capture_id: "00000000fixture0".into(),
        upstream: "127.0.0.1:5432".into(),
        started_at_us: 1_714_564_800_000_000,
        params_redacted: false,
        max_copy_bytes: pgtape::capture::event::TapLimits::MAX_COPY_BYTES,
    };
    let synth = Synth {
        statements: 2000,
        gap_us: 30_000,
        ..Default::default()
    };
    let files = write_capture(dir, &info, events(&synth), 256, 1000).unwrap();
    assert_eq!(files.len(), 2);
}

fn fixture_summary() -> pgtape::report::Summary {
    let cap = Capture::open(Path::new(FIXTURE)).unwrap();
    assert!(cap.errors.is_empty(), "{:?}", cap.errors);
    let opts = pgtape::report::SummaryOptions {
        top: 5,
        slow_ms: 1.5,
        slow_limit: 3,
        max_points: 10,
    };
    pgtape::report::summarize(&cap, &opts).unwrap()
}

fn export(s: &pgtape::report::Summary, f: pgtape::report::Format) -> String {
    let mut out = Vec::new();
    f.exporter().export(s, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn report_table_of_the_fixture_capture() {
    let s = fixture_summary();
    assert_eq!(s.statements, 2000, "the fixture is not empty");
    insta::assert_snapshot!(export(&s, pgtape::report::Format::Table));
}

#[test]
fn report_json_of_the_fixture_capture() {
    let s = fixture_summary();
    let json = export(&s, pgtape::report::Format::Json);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["statements"], 2000);
    insta::assert_snapshot!(json);
}

#[test]
fn report_html_is_one_self_contained_page() {
    let html = export(&fixture_summary(), pgtape::report::Format::Html);
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert_eq!(
        html.matches("<svg").count(),
        2,
        "throughput and latency charts"
    );
    for external in ["http://", "https://", "src=", "<script", "<link"] {
        assert!(
            !html.contains(external),
            "the page must not load anything ({external})"
        );
    }
}

#[test]
fn report_cli_names_bad_files_and_exits_2_when_nothing_is_readable() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("broken.parquet"), "nope").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pgtape"))
        .args(["report"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("broken.parquet") && err.contains("not a Parquet file"),
        "{err}"
    );

    // With a good file beside it, the report runs and lists the bad one.
    for f in files_with_ext(Path::new(FIXTURE), ".parquet") {
        std::fs::copy(&f, tmp.path().join(f.file_name().unwrap())).unwrap();
    }
    let html = tmp.path().join("r.html");
    let out = Command::new(env!("CARGO_BIN_EXE_pgtape"))
        .args(["report", "--format", "json", "--out"])
        .arg(&html)
        .arg(tmp.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&html).unwrap()).unwrap();
    assert_eq!(v["statements"], 2000);
    assert!(
        v["bad_files"][0]
            .as_str()
            .unwrap()
            .contains("broken.parquet")
    );
}

#[test]
fn redact_params_writes_null_values_but_keeps_lengths() {
    use pgtape::capture::synth::{Synth, events};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cap");
    let mut rc = RecorderConfig::new(&dir, "127.0.0.1:5432");
    rc.redact_params = true;
    let recorder = Recorder::start(rc).unwrap();
    let tx = recorder.sender();
    for ev in events(&Synth {
        statements: 200,
        ..Default::default()
    }) {
        tx.send(ev);
    }
    drop(tx);
    recorder.close().unwrap();
    let rows = statement_rows(&dir);
    let with_params: Vec<&Row> = rows.iter().filter(|r| !r.lengths.is_empty()).collect();
    assert!(
        !with_params.is_empty(),
        "the synthetic workload binds parameters"
    );
    for r in with_params {
        assert!(r.params.iter().all(Option::is_none), "{r:?}");
        assert!(r.lengths.iter().all(|&l| l > 0), "{r:?}");
    }
    let cap = Capture::open(&dir).unwrap();
    assert_eq!(
        cap.files[0].metadata["pgtape.capture.params_redacted"],
        "true"
    );
}
