//! Column types compared by identity: user-defined types by schema-qualified
//! name, built-in ones by OID. Types created by the replayed traffic get
//! other OIDs on a target whose OID counter is ahead, and are still the same
//! types; a type a migration changed is still a divergence.

use pgtape::cluster::{Cluster, ClusterOptions};
use pgtape::diff::Verdict;

use super::harness::{query, record, replay_and_diff, sides};
use super::support::{cluster, psql, run_ok};

/// Moves `db`'s OID counter on: objects created and dropped.
fn burn_oids(db: &Cluster) {
    let mut sql = String::new();
    for i in 0..20 {
        sql.push_str(&format!(
            "CREATE TYPE burn{i} AS ENUM ('x'); CREATE TABLE burn_t{i} (a int); \
             DROP TABLE burn_t{i}; DROP TYPE burn{i};"
        ));
    }
    query(db, &sql);
}

fn classes(v: &Verdict) -> Vec<(String, String)> {
    v.divergences
        .iter()
        .map(|g| (g.class.clone(), g.normalized_sql.clone()))
        .collect()
}

#[test]
fn user_types_created_by_the_traffic_compare_by_name_and_a_changed_type_diverges() {
    let mut a = cluster(&ClusterOptions::default());
    // Present in the starting state: a target migration changes it.
    query(
        &a,
        "CREATE TYPE old_mood AS ENUM ('sad', 'ok'); \
         CREATE TABLE legacy (id int, m old_mood); INSERT INTO legacy VALUES (1, 'ok')",
    );
    let source = a.duplicate().unwrap();
    let target = a.duplicate().unwrap();
    burn_oids(&target);
    let to_text = a.duplicate().unwrap();
    query(&to_text, "ALTER TABLE legacy ALTER COLUMN m TYPE text");
    let renamed = a.duplicate().unwrap();
    query(&renamed, "ALTER TYPE old_mood RENAME TO legacy_mood");
    for t in [&to_text, &renamed] {
        burn_oids(t);
    }
    let dir = tempfile::tempdir().unwrap();
    let capture = record(&a, dir.path(), |port| {
        run_ok(&mut psql(
            port,
            &[
                "-c",
                "CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')",
                "-c",
                "CREATE DOMAIN posint AS int CHECK (VALUE > 0)",
                "-c",
                "CREATE TYPE pair AS (a int, b text)",
                "-c",
                "CREATE TABLE person (name text, current mood, age posint, p pair, moods mood[])",
                "-c",
                "INSERT INTO person VALUES ('ann', 'happy', 30, (1, 'x'), '{sad,ok}'), \
                 ('bob', 'sad', 40, (2, 'y'), '{}')",
                "-c",
                "SELECT * FROM person ORDER BY name",
                "-c",
                "SELECT p, current FROM person ORDER BY name",
                "-c",
                "SELECT * FROM legacy",
            ],
        ));
    });
    // Precondition: the types got other OIDs on the target.
    let oid = |db: &Cluster| query(db, "SELECT 'mood'::regtype::oid");
    let results = dir.path().join("same");
    let (_, v) = replay_and_diff(&capture, &results, &source, Some(&target), &["--max-rate"]);
    assert_ne!(
        oid(&source),
        oid(&target),
        "the OID counters differ, so do the types' OIDs"
    );
    let v = v.unwrap();
    assert_eq!(classes(&v), vec![], "{:#?}", v.divergences);
    assert!(v.passed, "{:?}", v.reasons);
    for (name, side) in sides(&results) {
        assert_eq!(side.mismatches(), Vec::<String>::new(), "{name}");
    }

    for (target, what) in [
        (&to_text, "enum column changed to text"),
        (&renamed, "enum renamed"),
    ] {
        let results = dir.path().join(what.replace(' ', "_"));
        let (_, v) = replay_and_diff(&capture, &results, &source, Some(target), &["--max-rate"]);
        let v = v.unwrap();
        assert_eq!(
            classes(&v),
            vec![(
                "different_columns".to_string(),
                "SELECT * FROM legacy".to_string()
            )],
            "{what}: {:#?}",
            v.divergences
        );
        assert!(!v.passed, "{what}");
    }
}
