//! COPY FROM STDIN recorded through the proxy and replayed onto copies of
//! the starting state: psql's `\copy` (csv), a driver's binary `copy_in`,
//! `copy t from stdout`, and a COPY inside a multi-statement Query.

use std::io::Write;
use std::process::{Command, Stdio};

use pgtape::cluster::ClusterOptions;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;

use super::harness::{query, record, replay_and_diff, sides};
use super::support::{cluster, conn_str, psql, run_ok};

/// psql against the proxy with `input` on its standard input.
fn psql_with_stdin(port: u16, args: &[&str], input: &str) {
    let mut cmd: Command = psql(port, args);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

const TABLES: [&str; 4] = ["t_csv", "t_bin", "t_out", "t_multi"];

fn table_digest(db: &pgtape::cluster::Cluster, table: &str) -> String {
    query(
        db,
        &format!(
            "SELECT count(*) || ' ' || coalesce(md5(string_agg(t::text, ',' ORDER BY t::text)), '') FROM {table} t"
        ),
    )
}

#[test]
fn copy_from_psql_a_driver_stdout_and_a_multi_statement_query_replays_onto_copies() {
    let mut a = cluster(&ClusterOptions::default());
    query(
        &a,
        "CREATE TABLE t_csv (id int, name text); CREATE TABLE t_bin (id int8, v text); \
         CREATE TABLE t_out (a int)",
    );
    let b = a.duplicate().unwrap();
    let c = a.duplicate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Large enough for psql to send it in many CopyData messages.
    let csv: String = (1..=3000).map(|i| format!("{i},\"name, {i}\"\n")).collect();
    let capture = record(&a, dir.path(), |port| {
        tokio::runtime::Runtime::new().unwrap().block_on(async {
            let (client, conn) = tokio_postgres::connect(&conn_str(port), tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            let sink = client
                .copy_in("COPY t_bin (id, v) FROM STDIN (FORMAT binary)")
                .await
                .unwrap();
            let w = BinaryCopyInWriter::new(sink, &[Type::INT8, Type::TEXT]);
            futures_util::pin_mut!(w);
            for i in 0..2000i64 {
                let v = format!("value {i}");
                w.as_mut().write(&[&i, &v]).await.unwrap();
            }
            assert_eq!(w.finish().await.unwrap(), 2000);
            // The session goes on in step after the driver's COPY.
            let n: i64 = client
                .query_one("SELECT count(*) FROM t_bin WHERE id >= $1", &[&1000i64])
                .await
                .unwrap()
                .get(0);
            assert_eq!(n, 1000);
        });
        let mut input = csv.clone();
        input.push_str("\\.\n7\n8\n9\n\\.\n1\tone\n2\ttwo\n\\.\n");
        psql_with_stdin(
            port,
            &[
                "-c",
                "\\copy t_csv FROM pstdin WITH (FORMAT csv)",
                "-c",
                "copy t_out from stdout",
                "-c",
                "CREATE TABLE t_multi (a int, b text); COPY t_multi FROM STDIN; \
                 INSERT INTO t_multi VALUES (0, 'zero')",
                // Later reads, in the same session.
                "-c",
                "SELECT count(*), sum(id), md5(string_agg(name, ',' ORDER BY id)) FROM t_csv",
                "-c",
                "SELECT count(*), md5(string_agg(v, ',' ORDER BY id)) FROM t_bin",
                "-c",
                "SELECT string_agg(a::text, ',' ORDER BY a) FROM t_out",
                "-c",
                "SELECT * FROM t_multi ORDER BY a",
                "-c",
                "\\copy (SELECT * FROM t_csv ORDER BY id) TO STDOUT WITH (FORMAT csv)",
            ],
            &input,
        );
    });

    // The capture holds the data, readable by DuckDB as schema/capture.md shows.
    let py = r#"
import sys, duckdb
d = sys.argv[1]
rows = duckdb.sql(f"""
SELECT sql, copy_bytes,
       list_transform(list_filter(copy_data, lambda m: m[1:1] = 'd'::blob),
                      lambda m: try(decode(m[2:]))) AS chunks
FROM read_parquet('{d}/*.parquet') WHERE kind = 'statement' AND copy_bytes IS NOT NULL
ORDER BY ts""").fetchall()
for sql, n, chunks in rows:
    text = ''.join(c for c in chunks if c is not None)
    print(repr(sql[:20]), n, len(chunks), len(text))
want = open(sys.argv[2]).read()
got = ''.join(rows[1][2])
# psql sends csv's end-of-data line too.
print(got in (want, want + "\\.\n"))
"#;
    let csv_file = dir.path().join("input.csv");
    std::fs::write(&csv_file, &csv).unwrap();
    let out = run_ok(
        Command::new("python3")
            .arg("-c")
            .arg(py)
            .arg(&capture)
            .arg(&csv_file),
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(
        lines.len(),
        5,
        "four COPY FROM STDIN statements:\n{printed}"
    );
    assert_eq!(lines[4], "True", "the \\copy data as sent:\n{printed}");
    assert!(
        lines[1].contains(&format!(" {} ", csv.len() + 3)),
        "psql's chunks add up to the csv:\n{printed}"
    );

    let results = dir.path().join("results");
    let (summary, verdict) = replay_and_diff(&capture, &results, &b, Some(&c), &["--speed", "1"]);
    for (name, side) in sides(&results) {
        assert!(
            side.status.iter().all(|s| s == "ok"),
            "{name}: every statement replayed and ok:\n{}",
            (0..side.len())
                .map(|i| side.show(i))
                .collect::<Vec<_>>()
                .join("\n")
        );
        assert_eq!(
            side.mismatches(),
            Vec::<String>::new(),
            "{name}: every statement returns the captured result"
        );
        let copies = (0..side.len())
            .filter(|&i| {
                side.tag[i]
                    .as_deref()
                    .is_some_and(|t| t.starts_with("COPY"))
            })
            .count();
        assert_eq!(
            copies, 4,
            "{name}: three COPY FROM STDIN and one TO STDOUT end in a COPY tag"
        );
        let multi = side
            .sql
            .iter()
            .position(|q| q.starts_with("CREATE TABLE t_multi"))
            .unwrap();
        assert_eq!(
            (side.rows[multi], side.tag[multi].as_deref()),
            (3, Some("INSERT 0 1")),
            "{name}: the multi-statement Query counts the COPY's 2 rows and the INSERT's 1"
        );
    }
    for t in TABLES {
        let want = table_digest(&a, t);
        assert_eq!(table_digest(&b, t), want, "{t} on the source");
        assert_eq!(table_digest(&c, t), want, "{t} on the target");
    }
    let v = verdict.unwrap();
    assert_eq!(
        (v.counts.divergences, v.passed),
        (0, true),
        "{:#?}\n{summary:#?}",
        v.reasons
    );
}

/// A COPY whose data passed `--max-copy-bytes` is recorded with its size and
/// without its data, and replayed as not_replayed with that reason.
#[test]
fn a_copy_over_max_copy_bytes_is_not_replayed_with_the_reason() {
    let mut a = cluster(&ClusterOptions::default());
    query(&a, "CREATE TABLE t (a int)");
    let b = a.duplicate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let input: String = (0..1000).map(|i| format!("{i}\n")).collect();
    let capture = super::harness::record_with(
        &a,
        dir.path(),
        |cfg| cfg.limits.max_copy_bytes = 1000,
        |port| {
            psql_with_stdin(port, &["-c", "COPY t FROM STDIN", "-c", "SELECT 1"], &input);
        },
    );
    let results = dir.path().join("results");
    replay_and_diff(&capture, &results, &b, None, &["--max-rate"]);
    let s = super::harness::read_side(&results.join("source.parquet"));
    assert_eq!(s.status, vec!["not_replayed", "ok"], "{:?}", s.reason);
    let reason = s.reason[0].as_deref().unwrap_or_default();
    assert!(
        reason.contains("--max-copy-bytes") && reason.contains(&format!("{} bytes", input.len())),
        "{reason}"
    );
    assert_eq!(query(&b, "SELECT count(*) FROM t"), "0");
}
