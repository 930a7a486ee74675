use super::*;

fn catalog() -> Catalog {
    let rel = |oid, name: &str, plain| (oid, "public".to_string(), name.to_string(), plain);
    Catalog::build(
        &[
            rel(1, "accounts", true),
            rel(2, "branches", true),
            rel(3, "orders", true),
            rel(4, "order_items", true),
            rel(5, "recent", false),
            rel(6, "events", true),
        ],
        &[(4, 3)],
        &[],
    )
}

fn ids(c: &Catalog, sql: &str) -> Option<Vec<u32>> {
    c.resolve(sql).map(|s| s.to_vec())
}

#[test]
fn relations_resolve_to_plain_tables_or_any() {
    let c = catalog();
    let a = ids(
        &c,
        "UPDATE accounts SET abalance = abalance + ? WHERE aid = ?",
    )
    .unwrap();
    let b = ids(&c, "SELECT * FROM branches WHERE bid = ?").unwrap();
    assert_eq!(a.len(), 1);
    assert_ne!(a, b);
    // Comma joins, aliases, schema-qualified names.
    let j = ids(
        &c,
        "SELECT * FROM public.accounts a, branches AS b WHERE a.x = b.y",
    )
    .unwrap();
    assert_eq!(j.len(), 2);
    // Foreign keys join parent and child.
    assert_eq!(
        ids(&c, "INSERT INTO order_items(order_id) VALUES (?)"),
        ids(&c, "DELETE FROM orders WHERE id = ?")
    );
    // A view, a name the catalog does not know, no table at all: any.
    assert_eq!(ids(&c, "SELECT * FROM recent"), None);
    assert_eq!(
        ids(&c, "SELECT * FROM accounts JOIN created_later USING (id)"),
        None
    );
    assert_eq!(ids(&c, "SELECT now()"), None);
    assert_eq!(ids(&c, "CREATE INDEX ON accounts (aid)"), Some(a.clone()));
    // Functions in FROM and the statement's own CTEs are not tables.
    assert_eq!(
        ids(
            &c,
            "INSERT INTO events(a, b) SELECT o, u FROM unnest(?::int[], ?::int[]) AS x(o, u)"
        )
        .map(|v| v.len()),
        Some(1)
    );
    assert_eq!(
        ids(
            &c,
            "WITH r AS (SELECT * FROM accounts) SELECT * FROM r JOIN branches ON true"
        )
        .map(|v| v.len()),
        Some(2)
    );
    // FROM inside extract() is no relation; FOR UPDATE, COPY FROM STDIN neither.
    assert_eq!(
        ids(
            &c,
            "SELECT extract(epoch FROM started) FROM accounts FOR UPDATE"
        )
        .map(|v| v.len()),
        Some(1)
    );
    assert_eq!(ids(&c, "COPY events FROM STDIN").map(|v| v.len()), Some(1));
    // A subquery's table is found wherever it is.
    assert_eq!(
        ids(&c, "UPDATE accounts SET x = (SELECT max(y) FROM branches)").map(|v| v.len()),
        Some(2)
    );
}

/// A partitioned table and its partitions are one table, whose rows
/// can be keyed; tables joined by a foreign key cannot.
#[test]
fn partitions_share_their_parents_id_and_foreign_keys_join_tables() {
    let rel = |oid, name: &str| (oid, "public".to_string(), name.to_string(), true);
    let c = Catalog::build(
        &[
            rel(1, "events"),
            rel(2, "events_default"),
            rel(3, "events_2026"),
            rel(4, "orders"),
            rel(5, "items"),
            rel(6, "tree"),
        ],
        &[(5, 4), (6, 6)],
        &[(2, 1), (3, 1)],
    );
    assert_eq!(c.id("events"), c.id("events_default"));
    assert_eq!(c.id("events"), c.id("public.events_2026"));
    assert_eq!(c.id("orders"), c.id("items"));
    assert!(c.id("events").is_some() && c.id("tree").is_some());
    let lone: Vec<i64> = {
        let mut v: Vec<i64> = c.lone.keys().copied().collect();
        v.sort();
        v
    };
    assert_eq!(
        lone,
        vec![1],
        "the parent only; no table a foreign key joins"
    );
}

#[test]
fn an_ambiguous_name_is_any_table() {
    let c = Catalog::build(
        &[
            (1, "a".into(), "t".into(), true),
            (2, "b".into(), "t".into(), true),
        ],
        &[],
        &[],
    );
    assert_eq!(c.resolve("SELECT * FROM t"), None);
    assert!(c.resolve("SELECT * FROM a.t").is_some());
}
