//! The remapper on captured statements and results built by hand: what is
//! learnt, what is substituted, what is read back as captured.

use std::sync::Arc;

use super::value::{Class, row};
use super::*;
use crate::replay::client::RowMap;
use crate::replay::results::{Captured, Params};
use crate::sql::Facts;

/// The fingerprint of a statement (the remapper caches per fingerprint).
fn fp(normalized_sql: &str) -> i64 {
    crate::sql::shape(normalized_sql).fingerprint as i64
}

/// A captured statement of this normalised SQL.
fn stmt(normalized_sql: &str) -> Captured {
    Captured {
        fingerprint: fp(normalized_sql),
        facts: Arc::new(Facts::of(normalized_sql)),
        ..Default::default()
    }
}

fn data_row(cells: &[Option<&[u8]>]) -> Vec<u8> {
    let mut b = Vec::new();
    row(cells, &mut b);
    b
}

fn col(name: &str, type_oid: u32, table_oid: u32, format: i16) -> Column {
    Column {
        name: name.into(),
        type_oid,
        table_oid,
        attnum: if table_oid == 0 { 0 } else { 1 },
        format,
        type_name: None,
    }
}

/// `INSERT ... RETURNING id` captured as returning `ids`.
fn returning(ids: &[&str]) -> Captured {
    Captured {
        facts: Arc::new(Facts::of("INSERT INTO t (v) VALUES (?) RETURNING id")),
        fingerprint: fp("INSERT INTO t (v) VALUES (?) RETURNING id"),
        result_values: ids
            .iter()
            .map(|i| Some(data_row(&[Some(i.as_bytes())])))
            .collect(),
        ..Default::default()
    }
}

fn kept(cols: &[Column], rows: &[&[Option<&[u8]>]]) -> Vec<KeptRow> {
    let cols: Arc<[Column]> = cols.into();
    rows.iter().map(|r| (cols.clone(), data_row(r))).collect()
}

fn update(params: &[&[u8]], formats: &[i16], types: &[u32]) -> Captured {
    Captured {
        param_values: params.iter().map(|p| Some(*p)).collect::<Params>(),
        param_formats: formats.to_vec().into(),
        param_types: types.to_vec().into(),
        ..stmt("UPDATE t SET v = ? WHERE id = ?")
    }
}

#[test]
fn a_returned_id_is_substituted_in_text_and_binary_parameters() {
    let side = SideRemap::new(Mode::Session);
    let mut s = side.session();
    let id = col("id", 20, 16400, 0);
    assert!(s.learn(&returning(&["5"]), &kept(&[id], &[&[Some(b"1005")]])));
    let (p, n) = s.params(&update(&[b"x", b"5"], &[], &[])).unwrap();
    assert_eq!((p[1].as_deref(), n), (Some(&b"1005"[..]), 1));
    assert_eq!(p[0].as_deref(), Some(&b"x"[..]), "other values untouched");
    let five = 5i64.to_be_bytes();
    let (p, _) = s
        .params(&update(&[b"x", &five], &[0, 1], &[25, 20]))
        .unwrap();
    assert_eq!(p[1].as_deref(), Some(&1005i64.to_be_bytes()[..]));
    // An int4 parameter keeps its width.
    let five = 5i32.to_be_bytes();
    let (p, _) = s.params(&update(&[b"x", &five], &[1], &[0, 0])).unwrap();
    assert_eq!(p[1].as_deref(), Some(&1005i32.to_be_bytes()[..]));
    assert!(s.params(&update(&[b"x", b"6"], &[], &[])).is_none());
}

#[test]
fn expressions_are_not_learnt_and_equal_values_forget_old_mappings() {
    let side = SideRemap::new(Mode::Session);
    let mut s = side.session();
    let count = Captured {
        facts: Arc::new(Facts::of("SELECT count(*) FROM t")),
        fingerprint: fp("SELECT count(*) FROM t"),
        result_values: [Some(data_row(&[Some(b"3")]))].into_iter().collect(),
        ..Default::default()
    };
    // count(*) differs (a race), but it is no id: 3 must not become 4.
    assert!(!s.learn(&count, &kept(&[col("count", 20, 0, 0)], &[&[Some(b"4")]])));
    assert!(s.is_empty());
    let id = col("id", 20, 16400, 0);
    s.learn(
        &returning(&["5"]),
        &kept(std::slice::from_ref(&id), &[&[Some(b"1005")]]),
    );
    assert!(!s.is_empty());
    // Later the same id comes back unchanged: the old mapping is stale.
    assert!(s.learn(&returning(&["5"]), &kept(&[id], &[&[Some(b"5")]])));
    assert!(s.is_empty());
}

/// Regression: a materialized view's totals (a table column, read with
/// ORDER BY) raced on replay and taught 3 → 4; every later `org_id = 3`
/// was sent as 4.
#[test]
fn table_columns_are_learnt_only_once_a_returning_clause_handed_them_out() {
    let side = SideRemap::new(Mode::Global);
    let mut s = side.session();
    let totals = Captured {
        facts: Arc::new(Facts::of(
            "SELECT element, interactions FROM org_top_elements WHERE org_id = ? ORDER BY interactions DESC LIMIT ?",
        )),
        fingerprint: fp(
            "SELECT element, interactions FROM org_top_elements WHERE org_id = ? ORDER BY interactions DESC LIMIT ?",
        ),
        result_values: [Some(data_row(&[Some(b"a"), Some(b"3")]))]
            .into_iter()
            .collect(),
        ..Default::default()
    };
    let view = [
        col("element", 25, 16500, 0),
        col("interactions", 20, 16500, 0),
    ];
    assert!(!s.learn(&totals, &kept(&view, &[&[Some(b"a"), Some(b"4")]])));
    assert!(s.params(&update(&[b"3"], &[], &[])).is_none());
    // items.id handed out by RETURNING: read later by SELECT, it is an id.
    let id = col("id", 23, 16400, 0);
    s.learn(
        &returning(&["5"]),
        &kept(std::slice::from_ref(&id), &[&[Some(b"1005")]]),
    );
    let select = Captured {
        facts: Arc::new(Facts::of("SELECT id FROM items WHERE v = ?")),
        fingerprint: fp("SELECT id FROM items WHERE v = ?"),
        result_values: [Some(data_row(&[Some(b"6")]))].into_iter().collect(),
        ..Default::default()
    };
    assert!(s.learn(&select, &kept(&[id], &[&[Some(b"1006")]])));
    assert_eq!(
        s.forward(Class::Any, &Value::Int(6)),
        Some(Value::Int(1006))
    );
}

#[test]
fn several_rows_pair_up_only_in_a_fixed_order() {
    let side = SideRemap::new(Mode::Session);
    let id = col("id", 23, 16400, 0);
    let mut s = side.session();
    let unordered = Captured {
        facts: Arc::new(Facts::of("SELECT id FROM t WHERE v = ?")),
        fingerprint: fp("SELECT id FROM t WHERE v = ?"),
        ..returning(&["1", "2"])
    };
    let rows = kept(std::slice::from_ref(&id), &[&[Some(b"2")], &[Some(b"1")]]);
    assert!(!s.learn(&unordered, &rows), "rows in another order");
    assert!(
        s.learn(&returning(&["1", "2"]), &rows),
        "RETURNING keeps order"
    );
    assert_eq!(s.forward(Class::Any, &Value::Int(1)), Some(Value::Int(2)));
}

#[test]
fn global_mode_shares_a_sides_mappings_session_mode_does_not() {
    let id = col("id", 20, 16400, 0);
    for (mode, shared) in [
        (Mode::Global, true),
        (Mode::Session, false),
        (Mode::None, false),
    ] {
        let side = SideRemap::new(mode);
        let mut a = side.session();
        let mut b = side.session();
        a.learn(
            &returning(&["5"]),
            &kept(std::slice::from_ref(&id), &[&[Some(b"1005")]]),
        );
        assert_eq!(
            b.params(&update(&[b"5"], &[], &[])).is_some(),
            shared,
            "{mode:?}"
        );
        assert_eq!(
            a.params(&update(&[b"5"], &[], &[])).is_some(),
            mode != Mode::None
        );
    }
}

#[test]
fn catalog_oids_map_into_psql_literals_and_results_read_back_as_captured() {
    let side = SideRemap::new(Mode::Global);
    let mut s = side.session();
    // psql's \d: SELECT c.oid, n.nspname, c.relname FROM pg_catalog.pg_class c ...
    let lookup = Captured {
        facts: Arc::new(Facts::of(
            "SELECT c.oid, n.nspname, c.relname FROM pg_catalog.pg_class c ORDER BY ?, ?",
        )),
        result_values: [Some(data_row(&[
            Some(b"16385"),
            Some(b"public"),
            Some(b"t"),
        ]))]
        .into_iter()
        .collect(),
        ..Default::default()
    };
    let cols = [
        col("oid", 26, 1259, 0),
        col("nspname", 19, 2615, 0),
        col("relname", 19, 1259, 0),
    ];
    let replayed = kept(&cols, &[&[Some(b"16390"), Some(b"public"), Some(b"t")]]);
    assert!(s.learn(&lookup, &replayed));
    assert_eq!(
        s.sql("SELECT relchecks FROM pg_catalog.pg_class c WHERE c.oid = '16385'"),
        Some((
            "SELECT relchecks FROM pg_catalog.pg_class c WHERE c.oid = '16390'".into(),
            1
        ))
    );
    // The lookup's own result, read back as captured, hashes as captured.
    let rows = StatementRows {
        map: &s,
        how: Source::default(),
    };
    let mut out = Vec::new();
    assert!(rows.rewrite(&cols, &replayed[0].1, &mut out));
    assert_eq!(out, lookup.result_values.iter().next().unwrap().unwrap());
    // An expression (a count) holding the same number is left alone.
    let mut other = Vec::new();
    assert!(!rows.rewrite(
        &[col("count", 20, 0, 0)],
        &data_row(&[Some(b"16390")]),
        &mut other
    ));
}

#[test]
fn generators_are_learnt_from_any_column() {
    let side = SideRemap::new(Mode::Session);
    let mut s = side.session();
    let next = Captured {
        facts: Arc::new(Facts::of("SELECT nextval(?)")),
        fingerprint: fp("SELECT nextval(?)"),
        result_values: [Some(data_row(&[Some(b"7")]))].into_iter().collect(),
        ..Default::default()
    };
    assert!(s.learn(
        &next,
        &kept(&[col("nextval", 20, 0, 0)], &[&[Some(b"1007")]])
    ));
    assert_eq!(
        s.sql("DELETE FROM t WHERE id = 7"),
        Some(("DELETE FROM t WHERE id = 1007".into(), 1))
    );
}

/// Regression: session ids raced on replay (3 → 2) while `org_id = 3` had
/// been sent all along; mapping 3 turned every tenant-3 query into
/// tenant 2's. A value the session sent before it was handed out is not
/// mapped, and an int4 tenant is not an int8 id.
#[test]
fn a_value_sent_before_it_was_handed_out_is_ambiguous_and_not_mapped() {
    let side = SideRemap::new(Mode::Session);
    let mut a = side.session();
    // The session sent 3 (its tenant) and 50 (a LIMIT).
    assert!(a.params(&update(&[b"3", b"50"], &[], &[23, 20])).is_none());
    let id = col("session_id", 20, 16400, 0);
    for (captured, replayed) in [("3", "2"), ("50", "51"), ("7", "8"), ("9", "10")] {
        a.learn(
            &returning(&[captured]),
            &kept(std::slice::from_ref(&id), &[&[Some(replayed.as_bytes())]]),
        );
    }
    assert_eq!(a.forward(Class::Any, &Value::Int(3)), None);
    assert_eq!(a.forward(Class::Any, &Value::Int(50)), None);
    assert_eq!(a.forward(Class::I8, &Value::Int(7)), Some(Value::Int(8)));
    // A timestamp parameter is never taken for an id, nor an int4 for an int8.
    assert!(a.params(&update(&[b"7"], &[], &[1184])).is_none());
    assert!(a.params(&update(&[b"7"], &[], &[23])).is_none());
    assert!(a.params(&update(&[b"7"], &[], &[20])).is_some());
    assert!(
        a.params(&update(&[b"9"], &[], &[0])).is_some(),
        "untyped: any class"
    );
    // Another session's history is its own.
    let mut b = side.session();
    assert!(
        b.params(&update(&[b"7"], &[], &[20])).is_none(),
        "session scope"
    );
}
