//! The startup phase: bytes pipelined behind the StartupMessage, the login
//! deadline, repeated encryption requests.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use pgtape::capture::TapEvent;
use pgtape::cluster::{Auth, ClusterOptions};
use pgtape::wire::frame::{GSSENC_REQUEST_CODE, SSL_REQUEST_CODE};

use super::{query, read_reply, read_to_close, request, startup_postgres};
use crate::support::{Proxy, cluster, psql, run_ok, sql, statements, stdout};

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

/// A proxy whose login deadline is `ms` milliseconds.
fn proxy_with_login_timeout(upstream: &str, ms: u64) -> Proxy {
    Proxy::start(upstream, |cfg| {
        cfg.login_timeout = Duration::from_millis(ms)
    })
}

/// Reads until the proxy closes; asserts the close came with the login
/// timeout's FATAL and well within the test's bound.
fn assert_closed_for_login_timeout(s: &mut TcpStream, byte_first: bool, what: &str) {
    let t = Instant::now();
    let reply = read_reply(s, byte_first, Duration::from_secs(20), |_| false);
    assert!(reply.closed, "{what}: {reply:?}");
    assert_eq!(
        reply.error_code().as_deref(),
        Some("08P01"),
        "{what}: {reply:?}"
    );
    let text = String::from_utf8_lossy(&reply.frames.last().unwrap().1).into_owned();
    assert!(text.contains("--login-timeout"), "{what}: {text}");
    assert!(t.elapsed() < Duration::from_secs(10), "{what}: closed late");
}

// Issue 16, defect 2: a socket that sent nothing, 4 bytes of a startup
// packet, or an SSLRequest and nothing more stayed open forever.
#[test]
fn silent_and_half_started_clients_were_never_closed() {
    let db = cluster(&ClusterOptions::default());
    let proxy = proxy_with_login_timeout(&db.addr(), 300);

    let mut silent = TcpStream::connect(proxy.addr).unwrap();
    assert_closed_for_login_timeout(&mut silent, false, "nothing sent");

    let mut partial = TcpStream::connect(proxy.addr).unwrap();
    partial.write_all(&startup_postgres()[..4]).unwrap();
    assert_closed_for_login_timeout(&mut partial, false, "4 bytes of a startup packet");

    let mut ssl = TcpStream::connect(proxy.addr).unwrap();
    ssl.write_all(&request(SSL_REQUEST_CODE)).unwrap();
    let t = Instant::now();
    let reply = read_reply(&mut ssl, true, Duration::from_secs(20), |_| false);
    assert_eq!(reply.frames.first().map(|f| f.0), Some(b'N'), "{reply:?}");
    assert!(reply.closed && reply.count(b'E') == 1, "{reply:?}");
    assert!(t.elapsed() < Duration::from_secs(10));
}

// Issue 16, defect 2: the deadline covers authentication too (up to the
// first ReadyForQuery), as PostgreSQL's authentication_timeout does ...
#[test]
fn client_that_never_answers_the_password_request_was_never_closed() {
    let db = cluster(&ClusterOptions {
        auth: Auth::ScramSha256,
        ..Default::default()
    });
    let proxy = proxy_with_login_timeout(&db.addr(), 500);
    let mut s = TcpStream::connect(proxy.addr).unwrap();
    s.write_all(&startup_postgres()).unwrap();
    let asked = read_reply(&mut s, false, Duration::from_secs(20), |r| {
        r.count(b'R') == 1
    });
    assert_eq!(asked.frames.len(), 1, "{asked:?}");
    assert_closed_for_login_timeout(&mut s, false, "no SASL answer");
}

// ... and ends there: a logged-in session outlives it.
#[test]
fn login_timeout_leaves_logged_in_sessions_alone() {
    let db = cluster(&ClusterOptions::default());
    let proxy = proxy_with_login_timeout(&db.addr(), 300);
    let out = run_ok(&mut psql(
        proxy.port(),
        &["-c", "SELECT pg_sleep(1)", "-c", "SELECT 'still here'"],
    ));
    assert!(stdout(&out).contains("still here"));
}

// Issue 16, defect 8: a second SSLRequest was answered `N` again; PostgreSQL
// refuses it with a FATAL.
#[test]
fn second_ssl_request_was_answered_again() {
    let db = cluster(&ClusterOptions::default());
    let proxy = Proxy::start(&db.addr(), |_| {});
    for code in [SSL_REQUEST_CODE, GSSENC_REQUEST_CODE] {
        let mut s = TcpStream::connect(proxy.addr).unwrap();
        s.write_all(&request(code)).unwrap();
        let first = read_reply(&mut s, true, Duration::from_secs(20), |r| {
            !r.frames.is_empty()
        });
        assert_eq!(first.frames[0].0, b'N');
        s.write_all(&request(code)).unwrap();
        let reply = read_to_close(&mut s);
        assert_eq!(
            reply.error_code().as_deref(),
            Some("08P01"),
            "{code}: {reply:?}"
        );
    }
    // One of each is fine, in either order.
    let mut s = TcpStream::connect(proxy.addr).unwrap();
    s.write_all(&request(GSSENC_REQUEST_CODE)).unwrap();
    s.write_all(&request(SSL_REQUEST_CODE)).unwrap();
    let mut answers = [0u8; 2];
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.read_exact(&mut answers).unwrap();
    assert_eq!(&answers, b"NN");
    s.write_all(&startup_postgres()).unwrap();
    let reply = read_reply(&mut s, false, Duration::from_secs(20), |r| {
        r.count(b'Z') == 1
    });
    assert_eq!(reply.count(b'E'), 0, "{reply:?}");
}
