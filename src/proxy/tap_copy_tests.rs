//! The tap on COPY, multi-statement Queries and result values, driven by
//! synthetic frames in the orderings real clients produce.

use super::tap_tests::{bind, drain, execute, parse, ready_tap};
use crate::capture::event::TapLimits;
use crate::wire::frame::{Direction, Frames};

/// The frames of a kept COPY stream, as (type, body).
fn frames(buf: &[u8]) -> Vec<(u8, Vec<u8>)> {
    Frames::new(buf, Direction::Backend, usize::MAX)
        .map(|f| f.map(|(t, b)| (t, b.to_vec())).unwrap())
        .collect()
}

/// tokio-postgres' `copy_in`: Bind, Execute, Sync, then (after
/// CopyInResponse) the data, CopyDone and a second Sync. The server ignores
/// the first Sync: one ReadyForQuery answers both, and the session stays in
/// step (regression: the tap expected two and lost every later statement).
#[test]
fn copy_in_over_the_extended_protocol_keeps_its_data_and_the_queue_in_step() {
    let (mut tap, rx) = ready_tap();
    tap.frontend(b'P', &parse("s", "COPY t FROM STDIN (FORMAT binary)"), 0);
    tap.frontend(b'S', b"", 0);
    tap.backend(b'1', b"", 1);
    tap.backend(b'Z', b"I", 1);
    tap.frontend(b'B', &bind("", "s"), 2);
    tap.frontend(b'E', &execute("", 0), 2);
    tap.frontend(b'S', b"", 2);
    tap.backend(b'2', b"", 3);
    tap.backend(b'G', b"\x01\0\x01\0\x01", 3);
    tap.frontend(b'd', b"chunk one", 4);
    tap.frontend(b'd', b"chunk two", 4);
    tap.frontend(b'c', b"", 4);
    tap.frontend(b'S', b"", 4);
    tap.backend(b'C', b"COPY 2\0", 5);
    tap.backend(b'Z', b"I", 5);
    tap.frontend(b'Q', b"SELECT 1\0", 6);
    tap.backend(b'D', b"\0\x01\0\0\0\x011", 7);
    tap.backend(b'C', b"SELECT 1\0", 7);
    tap.backend(b'Z', b"I", 7);
    let st = drain(&rx);
    assert_eq!(st.len(), 2, "{st:#?}");
    let copy = st[0].copy_in.as_ref().expect("the COPY's data is kept");
    assert_eq!(
        frames(&copy.frames),
        vec![
            (b'd', b"chunk one".to_vec()),
            (b'd', b"chunk two".to_vec()),
            (b'c', vec![])
        ]
    );
    assert_eq!((copy.bytes, copy.over_limit), (18, false));
    assert_eq!((st[0].rows, st[0].duration_us), (2, 3));
    assert_eq!((&st[1].sql[..], st[1].rows), (&b"SELECT 1"[..], 1));
    assert!(st[1].copy_in.is_none());
}

/// A COPY inside a multi-statement Query, from stdout (PostgreSQL reads it
/// as FROM STDIN): the data is the Query's, whatever the SQL says.
#[test]
fn copy_in_a_multi_statement_query_and_its_failure_are_kept_in_order() {
    let (mut tap, rx) = ready_tap();
    tap.frontend(
        b'Q',
        b"CREATE TABLE t (a int); copy t from stdout; COPY t FROM STDIN\0",
        0,
    );
    tap.backend(b'C', b"CREATE TABLE\0", 1);
    tap.backend(b'G', b"\0\0\x01\0\0", 1);
    tap.frontend(b'd', b"1\n2\n", 2);
    tap.frontend(b'c', b"", 2);
    tap.backend(b'C', b"COPY 2\0", 3);
    tap.backend(b'G', b"\0\0\x01\0\0", 3);
    tap.frontend(b'f', b"user gave up\0", 4);
    tap.backend(b'E', &super::tap_tests::error("57014"), 5);
    tap.backend(b'Z', b"I", 5);
    let st = drain(&rx);
    assert_eq!(st.len(), 1);
    let copy = st[0].copy_in.as_ref().unwrap();
    assert_eq!(
        frames(&copy.frames),
        vec![
            (b'd', b"1\n2\n".to_vec()),
            (b'c', vec![]),
            (b'f', b"user gave up\0".to_vec())
        ]
    );
    assert_eq!(st[0].rows, 2);
    assert_eq!(st[0].error.as_ref().map(|e| &e.0[..]), Some(&b"57014"[..]));
}

#[test]
fn copy_data_over_the_limit_is_counted_not_kept() {
    let (tx, rx, _) = crate::capture::event::tap_channel(16);
    let tx = tx.with_limits(TapLimits {
        max_copy_bytes: 10,
        ..Default::default()
    });
    // A tap whose recorder keeps 10 bytes of COPY data.
    let connect = crate::capture::event::ConnectEvent {
        session_id: 8,
        at_us: 0,
        user: "u".into(),
        database: "d".into(),
        application_name: String::new(),
        client_addr: String::new(),
        startup_params: vec![],
        protocol_version: "3.0".into(),
    };
    let mut tap = super::tap::Tap::new(8, Some(tx), connect);
    tap.backend(b'Z', b"I", 0);
    tap.frontend(b'Q', b"COPY t FROM STDIN\0", 0);
    tap.backend(b'G', b"\0\0\0", 1);
    tap.frontend(b'd', b"0123456", 2);
    tap.frontend(b'd', b"789ab", 2);
    tap.frontend(b'c', b"", 2);
    tap.backend(b'C', b"COPY 1\0", 3);
    tap.backend(b'Z', b"I", 3);
    let st = drain(&rx);
    let copy = st[0].copy_in.as_ref().unwrap();
    assert_eq!((copy.bytes, copy.over_limit), (12, true));
    assert!(copy.frames.is_empty());
}

/// COPY TO STDOUT: its data is hashed as rows are, its count is the tag's.
#[test]
fn copy_out_data_is_hashed_and_counted_by_its_tag() {
    let (mut tap, rx) = ready_tap();
    for data in [&b"1\n"[..], b"2\n"] {
        tap.frontend(b'Q', b"COPY t TO STDOUT\0", 0);
        tap.backend(b'H', b"\0\0\x01\0\0", 1);
        tap.backend(b'd', b"1\n", 1);
        tap.backend(b'd', data, 1);
        tap.backend(b'c', b"", 1);
        tap.backend(b'C', b"COPY 2\0", 1);
        tap.backend(b'Z', b"I", 1);
    }
    let st = drain(&rx);
    assert_eq!((st[0].rows, st[1].rows), (2, 2));
    assert_ne!(st[0].ordered_hash, 0);
    assert_ne!(
        st[0].ordered_hash, st[1].ordered_hash,
        "other data, other hash"
    );
    assert!(
        st[0].result_values.as_ref().is_none_or(|v| v.is_empty()),
        "COPY data is not a result value"
    );
}

/// One definition of rows for a Query of several statements: the sum of
/// each statement's rows (its DataRows, else its tag's count), whatever
/// the order (regression: `select ...; insert ...` counted the SELECT only).
#[test]
fn a_multi_statement_query_sums_each_statements_rows() {
    let (mut tap, rx) = ready_tap();
    for (sql, replies) in [
        (
            &b"INSERT INTO t SELECT 1; SELECT 1 UNION SELECT 2\0"[..],
            &[
                (b'C', &b"INSERT 0 3\0"[..]),
                (b'D', b"\0\x01\0\0\0\x011"),
                (b'D', b"\0\x01\0\0\0\x012"),
                (b'C', b"SELECT 2\0"),
            ][..],
        ),
        (
            b"SELECT 1 UNION SELECT 2; INSERT INTO t SELECT 1\0",
            &[
                (b'D', &b"\0\x01\0\0\0\x011"[..]),
                (b'D', b"\0\x01\0\0\0\x012"),
                (b'C', b"SELECT 2\0"),
                (b'C', b"INSERT 0 3\0"),
            ],
        ),
        (
            b"SHOW work_mem; BEGIN\0",
            &[
                (b'D', &b"\0\x01\0\0\0\x034MB"[..]),
                (b'C', b"SHOW\0"),
                (b'C', b"BEGIN\0"),
            ],
        ),
    ] {
        tap.frontend(b'Q', sql, 0);
        for (tag, body) in replies {
            tap.backend(*tag, body, 1);
        }
        tap.backend(b'Z', b"I", 1);
    }
    let rows: Vec<u64> = drain(&rx).iter().map(|s| s.rows).collect();
    assert_eq!(rows, vec![5, 5, 1]);
}

/// Small results keep their DataRows (replay maps the values sessions send
/// back); a result past the limits keeps none.
#[test]
fn small_results_keep_their_values_large_ones_do_not() {
    let (mut tap, rx) = ready_tap();
    let row = |v: &str| {
        let mut b = vec![0, 1];
        b.extend_from_slice(&(v.len() as i32).to_be_bytes());
        b.extend_from_slice(v.as_bytes());
        b
    };
    tap.frontend(b'Q', b"INSERT INTO t VALUES (1) RETURNING id\0", 0);
    tap.backend(b'D', &row("42"), 1);
    tap.backend(b'C', b"INSERT 0 1\0", 1);
    tap.backend(b'Z', b"I", 1);
    tap.frontend(b'Q', b"SELECT g FROM generate_series(1, 100) g\0", 2);
    for i in 1..=TapLimits::RESULT_ROWS + 1 {
        tap.backend(b'D', &row(&i.to_string()), 3);
    }
    tap.backend(b'C', b"SELECT 17\0", 3);
    tap.backend(b'Z', b"I", 3);
    let st = drain(&rx);
    let kept = st[0].result_values.as_deref().unwrap();
    assert_eq!(frames(kept), vec![(b'D', row("42"))]);
    assert!(st[1].result_values.is_none());
}

/// `--redact-params` keeps no values: no COPY data (its size is kept) and no
/// result values.
#[test]
fn redaction_keeps_no_copy_data_and_no_result_values() {
    let (tx, rx, _) = crate::capture::event::tap_channel(16);
    let tx = tx.with_limits(TapLimits {
        redact: true,
        ..Default::default()
    });
    let connect = crate::capture::event::ConnectEvent {
        session_id: 9,
        at_us: 0,
        user: "u".into(),
        database: "d".into(),
        application_name: String::new(),
        client_addr: String::new(),
        startup_params: vec![],
        protocol_version: "3.0".into(),
    };
    let mut tap = super::tap::Tap::new(9, Some(tx), connect);
    tap.backend(b'Z', b"I", 0);
    tap.frontend(b'Q', b"COPY t FROM STDIN; SELECT 42\0", 0);
    tap.backend(b'G', b"\0\0\0", 1);
    tap.frontend(b'd', b"secret\n", 2);
    tap.frontend(b'c', b"", 2);
    tap.backend(b'C', b"COPY 1\0", 3);
    tap.backend(b'D', b"\0\x01\0\0\0\x0242", 3);
    tap.backend(b'C', b"SELECT 1\0", 3);
    tap.backend(b'Z', b"I", 3);
    let st = drain(&rx);
    let copy = st[0].copy_in.as_ref().unwrap();
    assert_eq!((copy.bytes, copy.frames.is_empty()), (7, true));
    assert!(st[0].result_values.is_none());
    assert_eq!(st[0].rows, 2);
}
