//! The startup phase: bytes pipelined behind the StartupMessage.

use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use pgtape::cluster::ClusterOptions;
use pgtape::proxy::TapEvent;

use super::{query, read_reply, read_to_close, startup_postgres};
use crate::support::{Proxy, cluster, sql, statements};

// Issue 16, defect 1: a Query sent in the same write as the StartupMessage
// waited for the client's next send.
#[test]
fn query_pipelined_with_the_startup_message_was_held_back() {
    let db = cluster(&ClusterOptions::default());
    let proxy = Proxy::start(&db.addr(), |_| {});
    let mut s = TcpStream::connect(proxy.addr).unwrap();
    let mut first_send = startup_postgres();
    first_send.extend(query("SELECT 42"));
    s.write_all(&first_send).unwrap();
    let reply = read_reply(&mut s, false, Duration::from_secs(20), |r| {
        r.count(b'Z') == 2
    });
    assert_eq!(reply.first_values(), vec!["42".to_string()], "{reply:?}");
    // The tap paired it with its answer, after the startup's ReadyForQuery.
    drop(s);
    let ev = proxy.collect_sessions(1);
    let st = statements(&ev);
    assert_eq!(st.len(), 1, "{ev:#?}");
    assert_eq!(sql(st[0]), "SELECT 42");
    assert_eq!((st[0].rows, &st[0].command_tag[..]), (1, &b"SELECT 1"[..]));
    assert!(matches!(ev[0], TapEvent::Connect(_)), "connect first");
}

// Issue 16, defect 1: with a half-close after that send the proxy closed
// without answering at all.
#[test]
fn query_pipelined_with_the_startup_message_then_half_close_was_lost() {
    let db = cluster(&ClusterOptions::default());
    let proxy = Proxy::start(&db.addr(), |_| {});
    let mut s = TcpStream::connect(proxy.addr).unwrap();
    let mut first_send = startup_postgres();
    first_send.extend(query("SELECT 7"));
    s.write_all(&first_send).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let reply = read_to_close(&mut s);
    assert!(reply.closed);
    assert_eq!(reply.first_values(), vec!["7".to_string()], "{reply:?}");
    assert_eq!(reply.count(b'C'), 1, "{reply:?}");
}
