//! Values a session got back and sends again: ids from `INSERT ...
//! RETURNING` in later UPDATEs (parameters and psql's `\gset` literals),
//! replayed on a target whose sequence is ahead, and on one whose sequence
//! is behind.

use pgtape::cluster::{Cluster, ClusterOptions};
use pgtape::diff::Verdict;

use super::harness::{query, record, replay_and_diff, sides};
use super::support::{cluster, conn_str, psql, run_ok};

const SESSIONS: usize = 4;
const ROUNDS: i32 = 25;

/// `SESSIONS` concurrent sessions, each inserting rows and updating and
/// reading back each by the id it got; then one psql session doing the
/// same with `\gset` (the id inlined as literals).
fn traffic(port: u16, dir: &std::path::Path) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for s in 0..SESSIONS {
            tasks.push(tokio::spawn(async move {
                let (c, conn) = tokio_postgres::connect(&conn_str(port), tokio_postgres::NoTls)
                    .await
                    .unwrap();
                tokio::spawn(conn);
                for i in 0..ROUNDS {
                    let v = format!("s{s} r{i}");
                    let id: i32 = c
                        .query_one("INSERT INTO items (v) VALUES ($1) RETURNING id", &[&v])
                        .await
                        .unwrap()
                        .get(0);
                    let n = c
                        .execute("UPDATE items SET n = n + 1 WHERE id = $1", &[&id])
                        .await
                        .unwrap();
                    assert_eq!(n, 1);
                    let back: String = c
                        .query_one("SELECT v FROM items WHERE id = $1", &[&id])
                        .await
                        .unwrap()
                        .get(0);
                    assert_eq!(back, v);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    let script = dir.join("gset.sql");
    std::fs::write(
        &script,
        "INSERT INTO items (v) VALUES ('psql') RETURNING id \\gset\n\
         UPDATE items SET n = n + 10 WHERE id = :id;\n\
         SELECT v, n FROM items WHERE id = :'id';\n",
    )
    .unwrap();
    run_ok(&mut psql(port, &["-f", script.to_str().unwrap()]));
}

fn updates_changing_one_row(side: &super::harness::Side) -> (usize, usize) {
    let updates: Vec<usize> = (0..side.len())
        .filter(|&i| side.sql[i].starts_with("UPDATE items"))
        .collect();
    let one = updates
        .iter()
        .filter(|&&i| side.tag[i].as_deref() == Some("UPDATE 1"))
        .count();
    (one, updates.len())
}

fn update_divergences(v: &Verdict) -> u64 {
    v.divergences
        .iter()
        .filter(|g| g.normalized_sql.starts_with("UPDATE items"))
        .map(|g| g.count)
        .sum()
}

fn starting_state() -> Cluster {
    let a = cluster(&ClusterOptions::default());
    query(
        &a,
        "CREATE TABLE items (id serial PRIMARY KEY, v text NOT NULL, n int NOT NULL DEFAULT 0); \
         INSERT INTO items (v) SELECT 'seed ' || g FROM generate_series(1, 100) g",
    );
    a
}

#[test]
fn returned_ids_are_mapped_on_a_target_whose_sequence_is_ahead_and_not_without_remap() {
    let mut a = starting_state();
    let source = a.duplicate().unwrap();
    let ahead = a.duplicate().unwrap();
    // A migration that did not carry sequence values exactly.
    query(&ahead, "SELECT setval('items_id_seq', 1100)");
    let dir = tempfile::tempdir().unwrap();
    let capture = record(&a, dir.path(), |port| traffic(port, dir.path()));
    let expected_updates = SESSIONS * ROUNDS as usize + 1;

    let results = dir.path().join("remapped");
    let (summary, v) = replay_and_diff(&capture, &results, &source, Some(&ahead), &["--max-rate"]);
    let v = v.unwrap();
    for (name, side) in sides(&results) {
        assert_eq!(
            updates_changing_one_row(&side),
            (expected_updates, expected_updates),
            "{name}: every UPDATE changes one row"
        );
        assert_eq!(
            side.mismatches(),
            Vec::<String>::new(),
            "{name}: results as captured"
        );
    }
    let target = summary.sides.iter().find(|s| s.side == "target").unwrap();
    // Each round's UPDATE and SELECT, and psql's two literals.
    let want = (SESSIONS * ROUNDS as usize * 2 + 2) as u64;
    assert_eq!(target.remapped, want, "{summary:#?}");
    println!(
        "remapped values: target {}, source {}",
        target.remapped, summary.sides[0].remapped
    );
    assert_eq!(
        (v.counts.divergences, v.passed),
        (0, true),
        "{:#?}",
        (&v.reasons, &v.divergences)
    );
    let table = summary.table();
    assert!(
        table.contains(&format!("remapped: {want} value(s)")),
        "{table}"
    );

    // Without remapping, the UPDATEs miss their rows on the target.
    let results = dir.path().join("none");
    let (_, v) = replay_and_diff(
        &capture,
        &results,
        &source,
        Some(&ahead),
        &["--max-rate", "--remap", "none"],
    );
    let v = v.unwrap();
    let [(_, _), (_, target)] = sides(&results);
    assert_eq!(
        updates_changing_one_row(&target).0,
        0,
        "--remap none: the target's UPDATEs match nothing"
    );
    assert_eq!(
        update_divergences(&v),
        expected_updates as u64,
        "{:#?}",
        v.divergences
    );
    assert!(!v.passed);
}

#[test]
fn a_target_whose_sequence_is_behind_still_fails() {
    let mut a = starting_state();
    let source = a.duplicate().unwrap();
    let behind = a.duplicate().unwrap();
    // Ids the target hands out are taken already: duplicate keys.
    query(&behind, "SELECT setval('items_id_seq', 1)");
    let dir = tempfile::tempdir().unwrap();
    let capture = record(&a, dir.path(), |port| traffic(port, dir.path()));
    let results = dir.path().join("behind");
    let (_, v) = replay_and_diff(&capture, &results, &source, Some(&behind), &["--max-rate"]);
    let v = v.unwrap();
    assert!(!v.passed, "{:?}", v.reasons);
    assert!(
        v.divergences
            .iter()
            .any(|g| g.class == "new_error" && g.normalized_sql.starts_with("INSERT INTO items")),
        "{:#?}",
        v.divergences
    );
}
