//! psql's `\d TABLE` and `\d+ TABLE` over tables the traffic created, on
//! clusters whose OID counters differ: psql inlines the OID its first
//! catalog query returned into the next ones, and every one of them must
//! return the captured result on both sides.

use pgtape::cluster::{Cluster, ClusterOptions};

use super::harness::{query, record, replay_and_diff, sides};
use super::support::{cluster, psql, run_ok};

/// Moves `db`'s OID counter on by `n` tables created and dropped.
fn burn_oids(db: &Cluster, n: usize) {
    let sql: String = (0..n)
        .map(|i| format!("CREATE TABLE burn{i} (a int); DROP TABLE burn{i};"))
        .collect();
    query(db, &sql);
}

#[test]
fn psql_describe_queries_return_the_captured_results_on_both_sides() {
    let mut a = cluster(&ClusterOptions::default());
    let source = a.duplicate().unwrap();
    let target = a.duplicate().unwrap();
    burn_oids(&source, 7);
    burn_oids(&target, 30);
    let dir = tempfile::tempdir().unwrap();
    let capture = record(&a, dir.path(), |port| {
        run_ok(&mut psql(
            port,
            &[
                "-c",
                "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')",
                "-c",
                "CREATE TABLE people (id serial PRIMARY KEY, name text NOT NULL, \
                 current mood DEFAULT 'ok', born date CHECK (born > '1900-01-01'))",
                "-c",
                "CREATE INDEX people_name ON people (name)",
                "-c",
                "CREATE TABLE visits (id bigserial PRIMARY KEY, person int REFERENCES people, at timestamptz)",
                "-c",
                "COMMENT ON COLUMN visits.at IS 'when'",
                // psql's describe commands, in the same session.
                "-c",
                r"\d people",
                "-c",
                r"\d+ people",
                "-c",
                r"\d visits",
                "-c",
                r"\d+ visits",
                "-c",
                r"\d",
            ],
        ));
    });
    let oid = |db: &Cluster| query(db, "SELECT 'people'::regclass::oid");
    let results = dir.path().join("results");
    let (summary, v) = replay_and_diff(
        &capture,
        &results,
        &source,
        Some(&target),
        &["--speed", "1"],
    );
    let oids = [oid(&a), oid(&source), oid(&target)];
    assert!(
        oids[0] != oids[1] && oids[1] != oids[2] && oids[0] != oids[2],
        "three OID counters: {oids:?}"
    );
    for (name, side) in sides(&results) {
        let catalog = (0..side.len())
            .filter(|&i| side.sql[i].contains("pg_catalog"))
            .count();
        assert!(
            catalog >= 20,
            "{name}: psql's catalog queries replayed: {catalog}"
        );
        assert_eq!(
            side.mismatches(),
            Vec::<String>::new(),
            "{name}: every catalog query returns the captured result"
        );
    }
    let remapped: Vec<u64> = summary.sides.iter().map(|s| s.remapped).collect();
    assert!(
        remapped.iter().all(|&n| n > 0),
        "OIDs inlined as literals: {remapped:?}"
    );
    let v = v.unwrap();
    assert_eq!(
        (v.counts.divergences, v.passed),
        (0, true),
        "{:?}",
        v.reasons
    );
}
