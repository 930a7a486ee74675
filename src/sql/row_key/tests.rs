use super::*;

fn lit(s: &str) -> Slot {
    Slot::Literal(s.into())
}

#[test]
fn pgbench_statements_bind_their_keys() {
    let u =
        row_target("UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2;").unwrap();
    assert_eq!(
        (u.op, u.table.as_str(), u.slot("aid"), u.assigned.clone()),
        (
            RowOp::Update,
            "pgbench_accounts",
            Some(&Slot::Param(2)),
            vec!["abalance".to_string()]
        )
    );
    assert!(u.increments && !u.returning);
    let s = row_target("SELECT abalance FROM pgbench_accounts WHERE aid = 4711").unwrap();
    assert_eq!((s.op, s.slot("aid")), (RowOp::Select, Some(&lit("4711"))));
    let i = row_target(
        "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) \
         VALUES ($3, $4, $2, $1, CURRENT_TIMESTAMP)",
    )
    .unwrap();
    assert_eq!(i.op, RowOp::Insert);
    assert_eq!(i.listed.len(), 5);
    assert_eq!(i.slot("aid"), Some(&Slot::Param(2)));
    assert_eq!(i.slot("mtime"), None, "an expression binds nothing");
}

#[test]
fn qualified_cast_reversed_and_extra_conditions() {
    let d = row_target(
        "delete from public.\"Orders\" o where o.id = $1::int8 and 'x' = o.code and o.total > 5",
    )
    .unwrap();
    assert_eq!(d.table, "public.Orders");
    assert_eq!(d.slot("id"), Some(&Slot::Param(1)));
    assert_eq!(d.slot("code"), Some(&lit("x")));
    assert_eq!(d.bound.len(), 2);
    let s = row_target(
        "SELECT * FROM t WHERE id = -3 AND v BETWEEN 1 AND 2 ORDER BY v LIMIT 1 FOR UPDATE",
    )
    .unwrap();
    assert_eq!(s.slot("id"), Some(&lit("-3")));
    let u = row_target("UPDATE t SET (a, b) = ($1, $2), c = now() WHERE id = 'it''s'").unwrap();
    assert_eq!(u.assigned, vec!["a", "b", "c"]);
    assert!(!u.increments);
    for (sql, inc) in [
        (
            "UPDATE t SET n = n + 1, m = m - $2::int WHERE id = $1",
            true,
        ),
        ("UPDATE t SET n = n + 1 WHERE id = $1 RETURNING n", true),
        ("UPDATE t SET n = n + 1 WHERE id = $1 AND n < 10", false),
        ("UPDATE t SET n = m + 1 WHERE id = $1", false),
        ("UPDATE t SET n = n * 2 WHERE id = $1", false),
        ("UPDATE t SET n = n + m WHERE id = $1", false),
    ] {
        assert_eq!(row_target(sql).unwrap().increments, inc, "{sql}");
    }
    assert!(
        row_target("UPDATE t SET n = n + 1 WHERE id = $1 RETURNING n")
            .unwrap()
            .returning
    );
    assert_eq!(u.slot("id"), Some(&lit("it's")));
}

#[test]
fn shapes_that_touch_rows_the_text_does_not_tell_are_not_recognised() {
    for sql in [
        "SELECT * FROM a JOIN b ON a.id = b.id WHERE a.id = 1",
        "SELECT * FROM a, b WHERE a.id = 1",
        "SELECT * FROM a WHERE id = 1 OR id = 2",
        "SELECT * FROM a WHERE id IN (SELECT x FROM b)",
        "SELECT 1; SELECT 2",
        "WITH x AS (SELECT 1) SELECT * FROM a WHERE id = 1",
        "SELECT * FROM a WHERE id = 1 UNION SELECT * FROM a WHERE id = 2",
        "UPDATE a SET v = 1 FROM b WHERE a.id = b.id",
        "UPDATE a SET v = (SELECT max(v) FROM b) WHERE id = 1",
        "DELETE FROM a USING b WHERE a.id = 1",
        "INSERT INTO a (id) VALUES (1), (2)",
        "INSERT INTO a (id) SELECT x FROM b",
        "INSERT INTO a (id) SELECT max(id) + 1 FROM a",
        "INSERT INTO a VALUES (1, 2)",
        "SELECT now()",
        "UPDATE a SET v = 1",
    ] {
        assert_eq!(row_target(sql), None, "{sql}");
    }
}

#[test]
fn inserts_name_their_columns_and_conflicts() {
    let i = row_target(
        "INSERT INTO kv AS k (key, value) VALUES ($1, $2) \
         ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value RETURNING value",
    )
    .unwrap();
    assert!(i.on_conflict);
    assert_eq!(i.assigned, vec!["value"]);
    assert_eq!(i.slot("key"), Some(&Slot::Param(1)));
    let i = row_target("INSERT INTO s (org, dev) VALUES ($1, $2) RETURNING id").unwrap();
    assert_eq!(i.listed, vec!["org", "dev"]);
    assert!(i.slot("id").is_none());
    let batch =
        row_target("INSERT INTO events (org_id, kind) SELECT * FROM unnest($1::int[], $2::text[])")
            .unwrap();
    assert!(batch.from_query && batch.bound.is_empty());
    assert_eq!(batch.listed, vec!["org_id", "kind"]);
    let norm = row_target("SELECT * FROM events WHERE org_id = ? AND at > now() - ?").unwrap();
    assert_eq!(
        norm.slot("org_id"),
        Some(&Slot::Param(0)),
        "normalised text"
    );
}
