//! One row count for a simple Query of several statements: the proxy and the
//! replayer both sum each statement's rows (its DataRows, else its tag's
//! count), so such a Query replays equal to its own capture.

use pgtape::cluster::ClusterOptions;

use super::harness::{query, read_side, record, replay_and_diff};
use super::support::{cluster, psql, run_ok};

#[test]
fn a_multi_statement_query_replays_with_the_row_count_it_was_captured_with() {
    let mut a = cluster(&ClusterOptions::default());
    query(&a, "CREATE TABLE t (id int)");
    let b = a.duplicate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let queries = [
        // Regression: captured 5 rows, replayed as the SELECT's 2.
        (
            "INSERT INTO t SELECT generate_series(1, 3); SELECT 1 UNION SELECT 2",
            5,
        ),
        // Regression: captured as the SELECT's 2 only.
        (
            "SELECT 1 UNION SELECT 2; INSERT INTO t SELECT generate_series(1, 3)",
            5,
        ),
        (
            "SHOW work_mem; UPDATE t SET id = id + 1; SELECT count(*) FROM t",
            8,
        ),
    ];
    // One session: the Queries depend on each other's rows.
    let capture = record(&a, dir.path(), |port| {
        let args: Vec<&str> = queries.iter().flat_map(|(q, _)| ["-c", *q]).collect();
        run_ok(&mut psql(port, &args));
    });
    let results = dir.path().join("results");
    replay_and_diff(&capture, &results, &b, None, &["--max-rate"]);
    let s = read_side(&results.join("source.parquet"));
    let got: Vec<(i64, i64)> = queries
        .iter()
        .map(|(q, _)| {
            let i = s.sql.iter().position(|x| x == q).unwrap();
            (s.captured_rows[i], s.rows[i])
        })
        .collect();
    let want: Vec<(i64, i64)> = queries.iter().map(|(_, n)| (*n, *n)).collect();
    assert_eq!(got, want, "(captured, replayed) rows per Query");
    assert_eq!(s.mismatches(), Vec::<String>::new());
}
