use super::*;
use crate::replay::results::Captured;
use crate::replay::row_keys::Access;
use crate::sql::Facts;

fn stmt(sql: &str, read_only: bool, tx: u8, ts: i64) -> Captured {
    Captured {
        facts: Arc::new(Facts {
            read_only,
            ..Facts::of(sql)
        }),
        tx_status: tx,
        ts_us: ts,
        duration_us: 10,
        ..Default::default()
    }
}

fn t(ids: &[u32]) -> TableSet {
    scope::tables(&Some(ids.into()))
}

/// Writes and the end of a writing transaction are sync points, the end
/// on every table the transaction wrote; reads, BEGIN and the end of a
/// read-only transaction are not.
#[test]
fn sync_points_are_writes_locks_and_ends_of_writing_transactions() {
    let (mut txn, mut serial) = (Txn::default(), 0);
    let mut tag_of = |sql, ro, tx, tables: TableSet| {
        tag(
            &stmt(sql, ro, tx, 100),
            Access::whole(&tables),
            false,
            None,
            &mut TxnEnds::default(),
            &mut txn,
            &mut serial,
        )
    };
    assert_eq!(tag_of("BEGIN", true, b'T', None).sync, None);
    assert_eq!(tag_of("SELECT ?", true, b'T', t(&[0])).sync, None);
    assert_eq!(
        tag_of("COMMIT", true, b'I', None).sync,
        None,
        "read-only transaction"
    );
    tag_of("BEGIN", true, b'T', None);
    let u = tag_of("UPDATE t SET a = ?", false, b'T', t(&[1]));
    assert_eq!(
        (u.sync.map(|s| s.0), u.sync_tables.clone()),
        (Some(110), t(&[1]))
    );
    assert_eq!(u.publish, None, "not visible before its COMMIT");
    tag_of("SELECT ?", true, b'T', t(&[0]));
    tag_of("INSERT INTO u VALUES (?)", false, b'T', t(&[2]));
    let c = tag_of("COMMIT", true, b'I', None);
    assert_eq!(c.sync_tables, t(&[1, 2]), "what the transaction wrote");
    assert_eq!(
        (c.after, c.sent, c.publish),
        (None, None, Some(110)),
        "visible from its end"
    );
    let r = tag_of("SELECT ?", true, b'I', t(&[0]));
    assert_eq!(
        (r.sync, r.after, r.sent.map(|s| s.0)),
        (None, Some(100), Some(100))
    );
    let a = tag_of("INSERT INTO t VALUES (?)", false, b'I', t(&[1]));
    assert_eq!((a.sync_tables, a.publish), (t(&[1]), Some(110)));
    assert_eq!(
        a.sent.map(|s| s.0),
        Some(110),
        "sent before what ends after it"
    );
    let l = tag_of("SELECT pg_advisory_lock(?)", true, b'I', None);
    assert_eq!((l.sync.is_some(), l.sync_tables), (true, None));
    // A failed writing transaction rolled back is still a sync point:
    // its locks were held until then.
    tag_of("BEGIN", true, b'T', None);
    assert!(tag_of("DELETE FROM t", false, b'E', t(&[1])).sync.is_some());
    assert!(tag_of("ROLLBACK", true, b'I', None).sync.is_some());
    // A write of unknown tables makes its transaction's end "any table".
    tag_of("BEGIN", true, b'T', None);
    tag_of("SELECT f()", false, b'T', None);
    tag_of("UPDATE t SET a = ?", false, b'T', t(&[1]));
    assert_eq!(tag_of("COMMIT", true, b'I', None).sync_tables, None);
    // Transaction control sees no data and takes no lock: it waits for
    // nothing and need not be sent before anything.
    for sql in ["BEGIN", "COMMIT", "END", "SET x = ?", "ROLLBACK"] {
        let c = tag_of(sql, true, b'I', None);
        assert_eq!((c.after, c.sent), (None, None), "{sql}");
    }
}

/// A write that took longer than its fingerprint usually does waited
/// for a lock: it really ran at its end less the typical duration, and
/// waits for what completed until then. A read keeps its start.
#[test]
fn a_write_that_waited_in_the_capture_runs_after_what_it_waited_for() {
    let (mut txn, mut serial) = (Txn::default(), 0);
    let mut slow = stmt("UPDATE t SET a = ?", false, b'T', 1_000);
    slow.duration_us = 50_000;
    let w = tag(
        &slow,
        Access::whole(&t(&[0])),
        false,
        Some(200),
        &mut TxnEnds::default(),
        &mut txn,
        &mut serial,
    );
    assert_eq!(w.after, Some(1_000 + 50_000 - 200));
    assert_eq!(w.sent.map(|s| s.0), w.after);
    let quick = stmt("UPDATE t SET a = ?", false, b'T', 1_000);
    let w = tag(
        &quick,
        Access::whole(&t(&[0])),
        false,
        Some(200),
        &mut TxnEnds::default(),
        &mut txn,
        &mut serial,
    );
    assert_eq!(w.after, Some(1_000), "shorter than typical: its start");
    let mut near = stmt("UPDATE t SET a = ?", false, b'T', 1_000);
    near.duration_us = 230;
    let w = tag(
        &near,
        Access::whole(&t(&[0])),
        false,
        Some(200),
        &mut TxnEnds::default(),
        &mut txn,
        &mut serial,
    );
    assert_eq!(w.after, Some(1_000), "within the median's error: its start");
    // A quick write that ran while another transaction on its table
    // ended queued behind it; an insert did not.
    let mut ends = TxnEnds::default();
    ends.push(1_100, t(&[0]));
    let mut queued = stmt("UPDATE t SET a = ?", false, b'T', 1_000);
    queued.duration_us = 200;
    let w = tag(
        &queued,
        Access::whole(&t(&[0])),
        false,
        Some(200),
        &mut ends,
        &mut txn,
        &mut serial,
    );
    assert_eq!(w.after, Some(1_101));
    let mut insert = stmt("INSERT INTO t VALUES (?)", false, b'T', 1_000);
    insert.duration_us = 200;
    let w = tag(
        &insert,
        Access::whole(&t(&[0])),
        false,
        Some(200),
        &mut ends,
        &mut txn,
        &mut serial,
    );
    assert_eq!(w.after, Some(1_000));
    let mut read = stmt("SELECT ?", true, b'T', 1_000);
    read.duration_us = 50_000;
    let r = tag(
        &read,
        Access::whole(&t(&[0])),
        false,
        Some(200),
        &mut TxnEnds::default(),
        &mut txn,
        &mut serial,
    );
    assert_eq!(r.after, Some(1_000));
}
