use arrow::buffer::ScalarBuffer;

use super::values::{INT4, INT8, TEXT};
use super::*;
use crate::sql::Facts;

fn row(v: &[&dyn ToString]) -> Vec<Option<String>> {
    v.iter().map(|x| Some(x.to_string())).collect()
}

/// Lone tables 0..4: pgbench's accounts (keyed by aid) and history (no
/// unique index), `kv` (key k, a second unique column code), `ev` (serial
/// id, a tenant column org that statements bind).
fn keys() -> RowKeys {
    let lone: FastMap<i64, u32> = [(10, 0), (11, 1), (12, 2), (13, 3)].into_iter().collect();
    let cols = [
        row(&[&10, &"aid", &INT4]),
        row(&[&10, &"abalance", &INT4]),
        row(&[&11, &"aid", &INT4]),
        row(&[&11, &"delta", &INT4]),
        row(&[&12, &"k", &INT8]),
        row(&[&12, &"code", &TEXT]),
        row(&[&12, &"v", &TEXT]),
        row(&[&13, &"id", &INT8]),
        row(&[&13, &"org", &INT4]),
        row(&[&13, &"kind", &TEXT]),
        row(&[&13, &"at", &1184]),
    ];
    let uniq = [
        row(&[&100, &10, &true, &1, &"aid", &false]),
        row(&[&101, &12, &false, &1, &"code", &false]),
        row(&[&102, &12, &true, &1, &"k", &false]),
        row(&[&103, &13, &true, &1, &"id", &true]),
        row(&[&103, &13, &true, &2, &"at", &false]),
    ];
    RowKeys::build(&lone, &uniq, &cols)
}

fn name(n: &str) -> Option<u32> {
    match n {
        "pgbench_accounts" => Some(0),
        "pgbench_history" => Some(1),
        "kv" => Some(2),
        "ev" => Some(3),
        _ => None,
    }
}

fn plan_with(k: &RowKeys, sql: &str, table: u32) -> Plan {
    k.plan(&Some(Arc::from([table])), &Arc::from(sql), name)
}

fn plan(sql: &str, table: u32) -> Plan {
    plan_with(&keys(), sql, table)
}

fn stmt(sql: &str, params: &[&[u8]], formats: &[i16]) -> Captured {
    Captured {
        sql: Arc::from(sql),
        param_values: params.iter().map(|p| Some(*p)).collect(),
        param_formats: ScalarBuffer::from(formats.to_vec()),
        ..Default::default()
    }
}

fn whole(t: u32) -> TableSet {
    Some(Arc::from([scope::table(t)]))
}

fn none() -> TableSet {
    Some(Arc::from([]))
}

fn reads(p: &Plan, c: &Captured, t: u32) -> TableSet {
    p.access(&whole(t), c).reads
}

/// One account is one key whether it came as text, as binary int4 or as a
/// literal; another account is another; the history insert reads no row
/// and writes the whole history table.
#[test]
fn a_key_is_one_scope_in_every_form_it_is_sent() {
    const UPDATE: &str = "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2";
    let p = plan(UPDATE, 0);
    assert!(matches!(p, Plan::Keyed(_)), "{p:?}");
    let text = reads(&p, &stmt(UPDATE, &[b"5", b"4711"], &[]), 0);
    let binary = reads(
        &p,
        &stmt(UPDATE, &[&5i32.to_be_bytes(), &4711i32.to_be_bytes()], &[1]),
        0,
    );
    const SELECT: &str = "SELECT abalance FROM pgbench_accounts WHERE aid = 4711";
    let lit = plan(SELECT, 0);
    let literal = reads(&lit, &stmt(SELECT, &[], &[]), 0);
    let other = "SELECT abalance FROM pgbench_accounts WHERE aid = '04711 '";
    assert_eq!(text, binary);
    assert_eq!(text, literal);
    assert_eq!(
        text,
        reads(&lit, &stmt(other, &[], &[]), 0),
        "read again per text"
    );
    assert_ne!(text, whole(0));
    assert!(scope::overlap(&text, &whole(0)));
    let elsewhere = reads(&p, &stmt(UPDATE, &[b"5", b"4712"], &[]), 0);
    assert_eq!(
        scope::overlap(&text, &elsewhere),
        text == elsewhere,
        "keys overlap only in one bucket"
    );
    let h = plan(
        "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($3, $4, $2, $1, CURRENT_TIMESTAMP)",
        1,
    );
    let a = h.access(&whole(1), &stmt("", &[], &[]));
    assert_eq!((a.reads, a.writes), (none(), whole(1)));
}

/// What may touch rows of another key counts for the whole table: an
/// UPDATE of a unique column, an INSERT into a table with another unique
/// index, a key not bound, a NULL key, a table that is not lone, two
/// tables, a value not of the key's type, binary of another kind.
#[test]
fn what_may_touch_other_keys_counts_for_the_whole_table() {
    assert!(matches!(
        plan("UPDATE kv SET code = $1 WHERE k = $2", 2),
        Plan::Whole
    ));
    assert!(matches!(
        plan("UPDATE kv SET v = $1 WHERE k = $2", 2),
        Plan::Keyed(_)
    ));
    assert!(matches!(
        plan("INSERT INTO kv (k, code) VALUES ($1, $2)", 2),
        Plan::Whole
    ));
    assert!(matches!(
        plan("SELECT * FROM kv WHERE v = $1", 2),
        Plan::Whole
    ));
    assert!(matches!(
        plan("DELETE FROM kv WHERE k > $1", 2),
        Plan::Whole
    ));
    assert!(matches!(
        keys().plan(
            &Some(Arc::from([7])),
            &Arc::from("SELECT * FROM t WHERE id = 1"),
            |_| Some(7)
        ),
        Plan::Whole
    ));
    assert!(matches!(
        keys().plan(
            &Some(Arc::from([0, 1])),
            &Arc::from("SELECT * FROM pgbench_accounts WHERE aid = 1"),
            name
        ),
        Plan::Whole
    ));
    const Q: &str = "SELECT * FROM pgbench_accounts WHERE aid = $1";
    let p = plan(Q, 0);
    let null = Captured {
        sql: Arc::from(Q),
        param_values: [None::<&[u8]>].into_iter().collect(),
        ..Default::default()
    };
    assert_eq!(reads(&p, &null, 0), whole(0));
    assert_eq!(
        reads(&p, &stmt(Q, &[b"x1"], &[]), 0),
        whole(0),
        "not an integer"
    );
    let as_text = Captured {
        param_types: ScalarBuffer::from(vec![TEXT]),
        ..stmt(Q, &[b"4711"], &[1])
    };
    assert_eq!(
        reads(&p, &as_text, 0),
        whole(0),
        "binary text for an integer key"
    );
}

/// A table is keyed by what its statements bind: `ev`'s statements bind
/// the tenant, never the serial id, so they are keyed by tenant, and an
/// insert leaving the id to its sequence reads nothing and writes its
/// tenant; a batch from unnest() writes the whole table.
#[test]
fn a_table_is_keyed_by_the_columns_its_statements_bind() {
    let mut k = keys();
    assert_eq!(k.key_of(3), Some(&["id".to_string(), "at".to_string()][..]));
    let ins = "INSERT INTO ev (org, kind, at) VALUES (?, ?, ?)";
    let read = "SELECT count(*) FROM ev WHERE org = ? AND at > now() - ?";
    let by_time = "SELECT * FROM ev WHERE at = ?";
    k.choose([(ins, 10), (read, 5), (by_time, 2)], name);
    assert_eq!(
        k.key_of(3),
        Some(&["org".to_string()][..]),
        "at is no canonical type"
    );
    const INS: &str = "INSERT INTO ev (org, kind, at) VALUES ($1, $2, $3) RETURNING id";
    let p = plan_with(&k, INS, 3);
    let a = p.access(&whole(3), &stmt(INS, &[b"7", b"click", b"2026-12-04"], &[]));
    assert_eq!(a.reads, none(), "no unique index can reject it");
    const READ: &str = "SELECT count(*) FROM ev WHERE org = $1 AND at > now() - $2";
    let r = plan_with(&k, READ, 3).access(&whole(3), &stmt(READ, &[b"7", b"1 hour"], &[]));
    assert_eq!(r.reads, a.writes, "a tenant's reads wait for its inserts");
    let other = plan_with(&k, READ, 3).access(&whole(3), &stmt(READ, &[b"8", b"1 hour"], &[]));
    assert_ne!(other.reads, a.writes);
    let batch = plan_with(
        &k,
        "INSERT INTO ev (org, kind, at) SELECT * FROM unnest($1::int[], $2::text[], $3::timestamptz[])",
        3,
    );
    let b = batch.access(&whole(3), &stmt("", &[], &[]));
    assert_eq!((b.reads, b.writes), (none(), whole(3)));
    let explicit = plan_with(&k, "INSERT INTO ev (id, org, at) VALUES ($1, $2, $3)", 3);
    assert!(
        matches!(explicit, Plan::Whole),
        "the id may collide across tenants"
    );
}

/// With its primary key chosen, an insert that gives the key is that key
/// (it may collide there only), an upsert too.
#[test]
fn inserts_giving_the_key_wait_for_that_key() {
    let p = plan(
        "INSERT INTO pgbench_accounts (aid, abalance) VALUES ($1, $2)",
        0,
    );
    let a = p.access(
        &whole(0),
        &stmt(
            "INSERT INTO pgbench_accounts (aid, abalance) VALUES ($1, $2)",
            &[b"3", b"0"],
            &[],
        ),
    );
    assert_eq!(a.reads, a.writes);
    assert_ne!(a.reads, whole(0));
    let up = plan(
        "INSERT INTO pgbench_accounts (aid, abalance) VALUES ($1, $2) \
         ON CONFLICT (aid) DO UPDATE SET abalance = EXCLUDED.abalance",
        0,
    );
    assert!(matches!(up, Plan::Keyed(_)), "{up:?}");
    let moved = plan(
        "INSERT INTO pgbench_accounts (aid, abalance) VALUES ($1, $2) \
         ON CONFLICT (aid) DO UPDATE SET aid = EXCLUDED.aid + 1",
        0,
    );
    assert!(matches!(moved, Plan::Whole));
}

/// pgbench's branches take only increments by key once the run starts (its
/// start-up count comes before): their writes commute and read nothing;
/// accounts, read back by the script's SELECT, do not; a read of the
/// table while the increments go on spoils it, as a statement of unknown
/// tables does, but not transaction control.
#[test]
fn tables_only_blind_increments_write_commute() {
    let lone: FastMap<i64, u32> = [(10, 0), (14, 4)].into_iter().collect();
    let cols = [
        row(&[&10, &"aid", &INT4]),
        row(&[&10, &"abalance", &INT4]),
        row(&[&14, &"bid", &INT4]),
        row(&[&14, &"bbalance", &INT4]),
    ];
    let uniq = [
        row(&[&100, &10, &true, &1, &"aid", &false]),
        row(&[&104, &14, &true, &1, &"bid", &false]),
    ];
    let names = |n: &str| match n {
        "pgbench_accounts" => Some(0),
        "pgbench_branches" => Some(4),
        _ => None,
    };
    let t = |id: u32| -> Ids { Some(Arc::from([id])) };
    const BRANCH: &str = "UPDATE pgbench_branches SET bbalance = bbalance + ? WHERE bid = ?";
    const ACCOUNT: &str = "UPDATE pgbench_accounts SET abalance = abalance + ? WHERE aid = ?";
    const READ: &str = "SELECT abalance FROM pgbench_accounts WHERE aid = ?";
    let run = |extra: Vec<(&'static str, Ids, i64, i64)>| {
        let mut k = RowKeys::build(&lone, &uniq, &cols);
        let mut shapes = vec![
            ("select count(*) from pgbench_branches", t(4), 0, 0),
            ("BEGIN", None, 1, 100),
            (ACCOUNT, t(0), 1, 100),
            (READ, t(0), 1, 100),
            (BRANCH, t(4), 1, 100),
            ("END", None, 1, 100),
        ];
        shapes.extend(extra);
        let shapes = with_facts(&shapes);
        k.find_commuting(refs(&shapes), names);
        k
    };
    let k = run(vec![]);
    assert!(k.commutes(4) && !k.commutes(0));
    const B: &str = "UPDATE pgbench_branches SET bbalance = bbalance + $1 WHERE bid = $2";
    let plan = |sql: &str, id: u32| k.plan(&t(id), &Arc::from(sql), names);
    let a = plan(B, 4).access(&whole(4), &stmt(B, &[b"5", b"1"], &[]));
    assert_eq!(a.reads, none());
    assert_ne!(a.writes, whole(4), "still a sync point of its key");
    const A: &str = "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2";
    let a = plan(A, 0).access(&whole(0), &stmt(A, &[b"5", b"1"], &[]));
    assert_eq!(a.reads, a.writes);
    assert!(
        !run(vec![(
            "SELECT bbalance FROM pgbench_branches WHERE bid = ?",
            t(4),
            50,
            50
        )])
        .commutes(4)
    );
    assert!(!run(vec![("SELECT f()", None, 50, 50)]).commutes(4));
    assert!(run(vec![("SET x = ?", None, 50, 50)]).commutes(4));
}

/// pgbench's history and branches are never read once written (the
/// script inserts into one and increments the other): their sync points
/// are not registered; accounts, read back, are.
#[test]
fn tables_nothing_reads_once_written_are_not_observed() {
    let lone: FastMap<i64, u32> = [(10, 0), (11, 1), (14, 4)].into_iter().collect();
    let cols = [
        row(&[&10, &"aid", &INT4]),
        row(&[&10, &"abalance", &INT4]),
        row(&[&11, &"aid", &INT4]),
        row(&[&14, &"bid", &INT4]),
        row(&[&14, &"bbalance", &INT4]),
    ];
    let uniq = [
        row(&[&100, &10, &true, &1, &"aid", &false]),
        row(&[&104, &14, &true, &1, &"bid", &false]),
    ];
    let names = |n: &str| match n {
        "pgbench_accounts" => Some(0),
        "pgbench_history" => Some(1),
        "pgbench_branches" => Some(4),
        _ => None,
    };
    let t = |id: u32| -> Ids { Some(Arc::from([id])) };
    let run = |extra: Vec<(&'static str, Ids, i64, i64)>| {
        let mut k = RowKeys::build(&lone, &uniq, &cols);
        let mut shapes = vec![
            ("select count(*) from pgbench_branches", t(4), 0, 0),
            (
                "UPDATE pgbench_accounts SET abalance = abalance + ? WHERE aid = ?",
                t(0),
                1,
                100,
            ),
            (
                "SELECT abalance FROM pgbench_accounts WHERE aid = ?",
                t(0),
                1,
                100,
            ),
            (
                "UPDATE pgbench_branches SET bbalance = bbalance + ? WHERE bid = ?",
                t(4),
                1,
                100,
            ),
            (
                "INSERT INTO pgbench_history (aid, delta) VALUES (?, ?)",
                t(1),
                1,
                100,
            ),
            ("END", None, 1, 100),
        ];
        shapes.extend(extra);
        let shapes = with_facts(&shapes);
        k.find_commuting(refs(&shapes), names);
        k.find_unread(refs(&shapes), names);
        k
    };
    let scopes = |ids: &[u32]| scope::tables(&Some(ids.into()));
    let k = run(vec![]);
    assert!(!k.observed(&scopes(&[1])) && !k.observed(&scopes(&[4])));
    assert!(!k.observed(&scopes(&[1, 4])));
    assert!(k.observed(&scopes(&[0])) && k.observed(&scopes(&[0, 1])));
    assert!(k.observed(&None), "unknown tables");
    let later = run(vec![(
        "SELECT sum(delta) FROM pgbench_history",
        t(1),
        50,
        50,
    )]);
    assert!(later.observed(&scopes(&[1])), "read after its first write");
    let unknown = run(vec![("SELECT f()", None, 50, 50)]);
    assert!(
        unknown.observed(&scopes(&[4])),
        "a statement of unknown tables may read it"
    );
}

/// Shapes as the catalog hands them to the key finders: each text's facts
/// beside its tables and first and last start.
fn with_facts(shapes: &[(&str, Ids, i64, i64)]) -> Vec<(Facts, Ids, i64, i64)> {
    shapes
        .iter()
        .map(|(sql, ids, first, last)| (Facts::of(sql), ids.clone(), *first, *last))
        .collect()
}

fn refs(shapes: &[(Facts, Ids, i64, i64)]) -> impl Iterator<Item = (&Facts, Ids, i64, i64)> {
    shapes.iter().map(|(f, ids, a, b)| (f, ids.clone(), *a, *b))
}
