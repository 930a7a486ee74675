//! Malformed client bytes of every kind the campaign tried, each on its own
//! connection while pgbench goes through the same proxy: every bad client
//! gets an `08P01` or a close (or PostgreSQL's own FATAL where the framing is
//! sound and the server judges the content), and pgbench loses nothing.

use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use pgtape::cluster::ClusterOptions;
use pgtape::wire::frame::{CANCEL_REQUEST_CODE, GSSENC_REQUEST_CODE, SSL_REQUEST_CODE};

use super::{Reply, frame, query, read_reply, request, startup, startup_postgres};
use crate::support::{Proxy, cluster, pgbench, run_ok, stdout};

/// What a malformed case must get.
#[derive(Debug, Clone, Copy)]
enum Answer {
    /// An ErrorResponse with this SQLSTATE.
    Code(&'static str),
    /// The connection closed (with or without an error first).
    Close,
}

struct Case {
    name: &'static str,
    /// Sent after a successful login instead of as the first bytes.
    after_login: bool,
    bytes: Vec<u8>,
    /// The client half-closes after sending (a torn frame cannot be
    /// answered before its sender gives up).
    then_close: bool,
    answer: Answer,
}

fn case(name: &'static str, after_login: bool, bytes: Vec<u8>, answer: Answer) -> Case {
    Case {
        name,
        after_login,
        bytes,
        then_close: false,
        answer,
    }
}

fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

/// A raw header: tag and a length field that need not match anything.
fn header(tag: u8, len: u32) -> Vec<u8> {
    let mut h = vec![tag];
    h.extend_from_slice(&len.to_be_bytes());
    h
}

fn startup_packet(len: u32, rest: &[u8]) -> Vec<u8> {
    let mut p = len.to_be_bytes().to_vec();
    p.extend_from_slice(rest);
    p
}

fn parse_unnamed(sql: &str) -> Vec<u8> {
    let mut b = vec![0];
    b.extend_from_slice(sql.as_bytes());
    b.extend_from_slice(&[0, 0, 0]);
    frame(b'P', &b)
}

fn cases() -> Vec<Case> {
    use Answer::*;
    let protocol = |major: u32| startup(major << 16, &[("user", "postgres")]);
    let mut torn_query = header(b'Q', 4096);
    torn_query.extend_from_slice(b"SELECT ");
    let mut torn_startup = startup_postgres();
    torn_startup.truncate(10);
    let v = vec![
        case(
            "an HTTP request",
            false,
            b"GET / HTTP/1.1\r\nHost: pgtape\r\n\r\n".to_vec(),
            Code("08P01"),
        ),
        case(
            "startup length 0",
            false,
            startup_packet(0, &[0; 8]),
            Code("08P01"),
        ),
        case(
            "startup length 7",
            false,
            startup_packet(7, &[0; 8]),
            Code("08P01"),
        ),
        case(
            "startup length 2^31-1",
            false,
            startup_packet(0x7fff_ffff, &[0; 8]),
            Code("08P01"),
        ),
        case(
            "startup length over 10000",
            false,
            startup_packet(10_001, &[0; 64]),
            Code("08P01"),
        ),
        case("protocol 1.0", false, protocol(1), Code("08P01")),
        case("protocol 4.0", false, protocol(4), Code("08P01")),
        case(
            "CancelRequest too short",
            false,
            startup_packet(
                12,
                &[&CANCEL_REQUEST_CODE.to_be_bytes()[..], &[0; 4]].concat(),
            ),
            Close,
        ),
        case(
            "SSLRequest then a Query in the same send",
            false,
            cat(&[request(SSL_REQUEST_CODE), query("SELECT 1")]),
            Code("08P01"),
        ),
        case(
            "two SSLRequests",
            false,
            cat(&[request(SSL_REQUEST_CODE), request(SSL_REQUEST_CODE)]),
            Code("08P01"),
        ),
        case(
            "two GSSENCRequests",
            false,
            cat(&[request(GSSENC_REQUEST_CODE), request(GSSENC_REQUEST_CODE)]),
            Code("08P01"),
        ),
        case(
            "startup parameters without their terminator",
            false,
            startup_packet(8 + 4, &[&196608u32.to_be_bytes()[..], b"user"].concat()),
            Code("08P01"),
        ),
        case(
            "startup without a user",
            false,
            startup(196608, &[("database", "postgres")]),
            Code("28000"),
        ),
        Case {
            then_close: true,
            ..case(
                "a torn startup packet, then a close",
                false,
                torn_startup,
                Close,
            )
        },
        case(
            "length field below 4",
            true,
            b"Q\x00\x00\x00\x02garbage".to_vec(),
            Code("08P01"),
        ),
        case(
            "a Sync of a gigabyte",
            true,
            header(b'S', 0x3f00_0000),
            Code("08P01"),
        ),
        case(
            "a Query over --max-message-size",
            true,
            header(b'Q', 10 << 20),
            Code("08P01"),
        ),
        case(
            "an unknown message type",
            true,
            frame(b'z', b"zzz"),
            Code("08P01"),
        ),
        case(
            "a Query without its NUL",
            true,
            frame(b'Q', b"SELECT 1"),
            Code("08P01"),
        ),
        case(
            "a truncated Parse",
            true,
            frame(b'P', b"s\0SELECT 1"),
            Code("08P01"),
        ),
        case(
            "a Bind with more formats than parameters",
            true,
            cat(&[
                parse_unnamed("SELECT 1"),
                frame(
                    b'B',
                    b"\0\0\x00\x02\x00\x00\x00\x00\x00\x01\x00\x00\x00\x01x\x00\x00",
                ),
                frame(b'S', b""),
            ]),
            Code("08P01"),
        ),
        case(
            "a Bind claiming 32767 parameters",
            true,
            cat(&[
                parse_unnamed("SELECT 1"),
                frame(b'B', b"\0\0\x00\x00\x7f\xff"),
                frame(b'S', b""),
            ]),
            Code("08P01"),
        ),
        case(
            "a Describe of kind X",
            true,
            cat(&[frame(b'D', b"X\0"), frame(b'S', b"")]),
            Code("08P01"),
        ),
        case(
            "a Close of kind X",
            true,
            cat(&[frame(b'C', b"X\0"), frame(b'S', b"")]),
            Code("08P01"),
        ),
        case(
            "a truncated Execute",
            true,
            cat(&[frame(b'E', b"\0"), frame(b'S', b"")]),
            Code("08P01"),
        ),
        case(
            "a FunctionCall of two bytes",
            true,
            frame(b'F', b"\0\0"),
            Code("08P01"),
        ),
        case(
            "a password message after login",
            true,
            frame(b'p', b"secret\0"),
            Code("08P01"),
        ),
        Case {
            then_close: true,
            ..case("a torn Query, then a close", true, torn_query, Close)
        },
    ];
    v
}

/// Runs one case on a fresh connection; returns what came back.
fn run_case(proxy: &Proxy, c: &Case) -> Reply {
    let mut s = TcpStream::connect(proxy.addr).unwrap();
    if c.after_login {
        s.write_all(&startup_postgres()).unwrap();
        let login = read_reply(&mut s, false, Duration::from_secs(20), |r| {
            r.count(b'Z') == 1
        });
        assert_eq!(login.count(b'Z'), 1, "{}: login failed: {login:?}", c.name);
    }
    // A peer that already closed may refuse part of the bytes: that is a close.
    let _ = s.write_all(&c.bytes);
    if c.then_close {
        let _ = s.shutdown(Shutdown::Write);
    }
    let encryption_answer = !c.after_login
        && c.bytes.get(4..8).is_some_and(|code| {
            code == SSL_REQUEST_CODE.to_be_bytes() || code == GSSENC_REQUEST_CODE.to_be_bytes()
        });
    read_reply(&mut s, encryption_answer, Duration::from_secs(20), |r| {
        r.count(b'E') > 0
    })
}

fn check(c: &Case, r: &Reply) -> Result<(), String> {
    match c.answer {
        Answer::Code(code) if r.error_code().as_deref() == Some(code) => Ok(()),
        Answer::Close if r.closed || r.error_code().as_deref() == Some("08P01") => Ok(()),
        _ => Err(format!("{}: expected {:?}, got {r:?}", c.name, c.answer)),
    }
}

#[test]
fn malformed_frames_of_each_kind_while_pgbench_runs() {
    let db = cluster(&ClusterOptions::default());
    run_ok(&mut pgbench(db.port(), &["-i", "-q", "-s", "1"]));
    let proxy = Proxy::start(&db.addr(), |cfg| cfg.max_message = 1 << 20);
    let port = proxy.port();
    let bench = std::thread::spawn(move || {
        run_ok(&mut pgbench(
            port,
            &["-n", "-c", "4", "-j", "2", "-t", "400"],
        ))
    });
    let cases = cases();
    let mut failures = Vec::new();
    for _round in 0..4 {
        for c in &cases {
            let r = run_case(&proxy, c);
            if let Err(e) = check(c, &r) {
                failures.push(e);
            }
        }
    }
    let report = stdout(&bench.join().unwrap());
    assert!(
        failures.is_empty(),
        "{} of {} answers were wrong:\n{}",
        failures.len(),
        cases.len() * 4,
        failures.join("\n")
    );
    assert!(
        report.contains("number of transactions actually processed: 1600/1600"),
        "{report}"
    );
    assert!(
        report.contains("number of failed transactions: 0"),
        "{report}"
    );
}
