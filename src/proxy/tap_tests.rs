//! The tap's state machine driven by synthetic frames (encoded with
//! postgres-protocol), for orderings real clients rarely produce on demand.

use bytes::BytesMut;
use postgres_protocol::message::frontend;

use super::tap::Tap;
use crate::capture::event::{ConnectEvent, StatementEvent, TapEvent, tap_channel};

pub(super) fn body(f: impl FnOnce(&mut BytesMut)) -> Vec<u8> {
    let mut b = BytesMut::new();
    f(&mut b);
    b[5..].to_vec()
}

pub(super) fn ready_tap() -> (Tap, std::sync::mpsc::Receiver<TapEvent>) {
    let (tx, rx, _) = tap_channel(1024);
    let connect = ConnectEvent {
        session_id: 7,
        at_us: 0,
        user: "u".into(),
        database: "d".into(),
        application_name: String::new(),
        client_addr: String::new(),
        startup_params: vec![],
        protocol_version: "3.0".into(),
    };
    let mut tap = Tap::new(7, Some(tx), connect);
    tap.backend(b'Z', b"I", 0);
    assert!(matches!(rx.try_recv(), Ok(TapEvent::Connect(_))));
    (tap, rx)
}

pub(super) fn parse(name: &str, sql: &str) -> Vec<u8> {
    body(|b| frontend::parse(name, sql, [], b).unwrap())
}

pub(super) fn bind(portal: &str, stmt: &str) -> Vec<u8> {
    body(|b| {
        frontend::bind(
            portal,
            stmt,
            [] as [i16; 0],
            [] as [Option<&[u8]>; 0],
            |_, _| unreachable!(),
            [] as [i16; 0],
            b,
        )
        .map_err(|_| ())
        .unwrap()
    })
}

pub(super) fn execute(portal: &str, max: i32) -> Vec<u8> {
    body(|b| frontend::execute(portal, max, b).unwrap())
}

pub(super) fn error(code: &str) -> Vec<u8> {
    let f = crate::wire::messages::error_response("ERROR", code, "boom");
    f[5..].to_vec()
}

pub(super) fn drain(rx: &std::sync::mpsc::Receiver<TapEvent>) -> Vec<StatementEvent> {
    rx.try_iter()
        .filter_map(|e| match e {
            TapEvent::Statement(s) => Some(*s),
            _ => None,
        })
        .collect()
}

#[test]
fn pipelined_extended_statements_resolve_their_sql() {
    let (mut tap, rx) = ready_tap();
    for (i, sql) in ["SELECT 1", "SELECT 2"].iter().enumerate() {
        let name = format!("s{i}");
        tap.frontend(b'P', &parse(&name, sql), 10);
        tap.frontend(b'B', &bind("", &name), 10);
        tap.frontend(b'E', &execute("", 0), 10);
        tap.frontend(b'S', b"", 10);
    }
    for _ in 0..2 {
        for (tag, b) in [
            (b'1', &b""[..]),
            (b'2', b""),
            (b'D', b"\0\x01\0\0\0\x011"),
            (b'C', b"SELECT 1\0"),
            (b'Z', b"I"),
        ] {
            tap.backend(tag, b, 20);
        }
    }
    let st = drain(&rx);
    assert_eq!(
        st.iter()
            .map(|s| (s.seq, &s.sql[..], s.rows))
            .collect::<Vec<_>>(),
        vec![(1, &b"SELECT 1"[..], 1), (2, &b"SELECT 2"[..], 1)]
    );
    assert!(
        st.iter()
            .all(|s| s.duration_us == 10 && s.statement_name.starts_with(b"s"))
    );
}

#[test]
fn an_error_at_bind_is_charged_to_its_execute_and_skips_to_sync() {
    let (mut tap, rx) = ready_tap();
    tap.frontend(b'P', &parse("", "SELECT $1::int"), 0);
    tap.frontend(b'B', &bind("", ""), 0);
    tap.frontend(b'E', &execute("", 0), 0);
    tap.frontend(b'P', &parse("", "SELECT 'skipped'"), 0);
    tap.frontend(b'B', &bind("", ""), 0);
    tap.frontend(b'E', &execute("", 0), 0);
    tap.frontend(b'S', b"", 0);
    tap.backend(b'1', b"", 1);
    tap.backend(b'E', &error("08P01"), 2);
    tap.backend(b'Z', b"I", 3);
    // The session goes on in step.
    tap.frontend(b'Q', b"SELECT 3\0", 4);
    tap.backend(b'C', b"SELECT 1\0", 5);
    tap.backend(b'Z', b"I", 5);
    let st = drain(&rx);
    assert_eq!(st.len(), 2, "{st:#?}");
    assert_eq!(st[0].error.as_ref().map(|e| &e.0[..]), Some(&b"08P01"[..]));
    assert_eq!(&st[0].sql[..], b"SELECT $1::int");
    assert_eq!(
        (&st[1].sql[..], &st[1].command_tag[..]),
        (&b"SELECT 3"[..], &b"SELECT 1"[..])
    );
}

#[test]
fn messages_sent_after_an_error_before_sync_expect_no_reply() {
    let (mut tap, rx) = ready_tap();
    tap.frontend(b'P', &parse("", "SELEC"), 0);
    tap.frontend(b'H', b"", 0);
    tap.backend(b'E', &error("42601"), 1);
    // The client only now sends the rest of its pipeline: the server ignores it.
    tap.frontend(b'B', &bind("", ""), 2);
    tap.frontend(b'E', &execute("", 0), 2);
    tap.frontend(b'S', b"", 2);
    tap.backend(b'Z', b"I", 3);
    tap.frontend(b'Q', b"SELECT 1\0", 4);
    tap.backend(b'C', b"SELECT 1\0", 5);
    tap.backend(b'Z', b"I", 5);
    let st = drain(&rx);
    assert_eq!(st.len(), 1, "{st:#?}");
    assert_eq!(&st[0].sql[..], b"SELECT 1");
    assert!(st[0].error.is_none());
}

#[test]
fn portal_suspensions_sum_into_one_statement() {
    let (mut tap, rx) = ready_tap();
    tap.frontend(b'Q', b"BEGIN\0", 0);
    tap.backend(b'C', b"BEGIN\0", 0);
    tap.backend(b'Z', b"T", 0);
    tap.frontend(b'P', &parse("", "SELECT g FROM t"), 1);
    tap.frontend(b'B', &bind("c1", ""), 1);
    for round in 0..3 {
        tap.frontend(b'E', &execute("c1", 2), 1 + round);
        tap.frontend(b'S', b"", 1 + round);
        if round == 0 {
            tap.backend(b'1', b"", 2);
            tap.backend(b'2', b"", 2);
        }
        let rows = if round < 2 { 2 } else { 1 };
        for r in 0..rows {
            tap.backend(b'D', format!("\0\x01\0\0\0\x01{r}").as_bytes(), 2 + round);
        }
        if round < 2 {
            tap.backend(b's', b"", 2 + round);
        } else {
            tap.backend(b'C', b"SELECT 1\0", 10);
        }
        tap.backend(b'Z', b"T", 10);
    }
    let st = drain(&rx);
    assert_eq!(st.len(), 2, "{st:#?}");
    assert_eq!(
        (
            st[1].rows,
            st[1].max_rows,
            st[1].start_us,
            st[1].duration_us
        ),
        (5, 2, 1, 9)
    );
}

#[test]
fn a_named_statement_outlives_its_round_trip_until_closed() {
    let (mut tap, rx) = ready_tap();
    tap.frontend(b'P', &parse("q", "SELECT 42"), 0);
    tap.frontend(b'S', b"", 0);
    tap.backend(b'1', b"", 1);
    tap.backend(b'Z', b"I", 1);
    for _ in 0..2 {
        tap.frontend(b'B', &bind("", "q"), 2);
        tap.frontend(b'E', &execute("", 0), 2);
        tap.frontend(b'S', b"", 2);
        tap.backend(b'2', b"", 3);
        tap.backend(b'C', b"SELECT 1\0", 3);
        tap.backend(b'Z', b"I", 3);
    }
    tap.frontend(b'C', &body(|b| frontend::close(b'S', "q", b).unwrap()), 4);
    tap.frontend(b'B', &bind("", "q"), 4);
    tap.frontend(b'E', &execute("", 0), 4);
    tap.frontend(b'S', b"", 4);
    tap.backend(b'3', b"", 5);
    tap.backend(b'E', &error("26000"), 5);
    tap.backend(b'Z', b"I", 5);
    let st = drain(&rx);
    assert_eq!(st.len(), 3);
    assert!(
        st[..2]
            .iter()
            .all(|s| &s.sql[..] == b"SELECT 42" && &s.statement_name[..] == b"q")
    );
    assert!(st[2].sql.is_empty(), "a closed statement's SQL is unknown");
    assert_eq!(st[2].error.as_ref().map(|e| &e.0[..]), Some(&b"26000"[..]));
}
