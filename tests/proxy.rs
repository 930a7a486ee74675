//! The proxy against real PostgreSQL with real clients: what the client saw
//! and what the tap recorded, for every protocol path the issue names.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use pgtape::capture::TapEvent;
use pgtape::cluster::{Auth, ClusterOptions};
use pgtape::wire::messages::{decode_oids, parse_bind, parse_error};
use support::*;

#[test]
fn psql_simple_queries_are_forwarded_and_tapped() {
    let db = cluster(&ClusterOptions::default());
    let proxy = Proxy::start(&db.addr(), |_| {});
    let out = run_ok(&mut psql(
        proxy.port(),
        &[
            "-c",
            "SELECT 41 + 1 AS answer",
            "-c",
            "SELECT g, 'é' FROM generate_series(1, 3) g",
            "-c",
            "SELECT",
        ],
    ));
    assert_eq!(stdout(&out), "42\n1|é\n2|é\n3|é\n");
    let ev = proxy.collect_sessions(1);
    let connect = ev
        .iter()
        .find_map(|e| {
            if let TapEvent::Connect(c) = e {
                Some(c)
            } else {
                None
            }
        })
        .unwrap();
    assert_eq!(
        (connect.user.as_str(), connect.database.as_str()),
        ("postgres", "postgres")
    );
    assert_eq!(connect.application_name, "psql");
    assert!(connect.client_addr.starts_with("127.0.0.1:"));
    let st = statements(&ev);
    let answer = st
        .iter()
        .find(|s| sql(s) == "SELECT 41 + 1 AS answer")
        .expect("first statement tapped");
    assert_eq!(
        (tag(answer).as_str(), answer.rows, answer.tx_status),
        ("SELECT 1", 1, b'I')
    );
    let series = st
        .iter()
        .find(|s| sql(s).contains("generate_series"))
        .unwrap();
    assert_eq!((tag(series).as_str(), series.rows), ("SELECT 3", 3));
    assert_ne!(series.ordered_hash, series.unordered_hash);
    assert!(series.result_bytes > 0 && series.start_us > 0 && series.duration_us >= 0);
    let seqs: Vec<u64> = st
        .iter()
        .filter(|s| s.session_id == answer.session_id)
        .map(|s| s.seq)
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "sequence numbers are consecutive: {seqs:?}"
    );
}

#[test]
fn same_rows_in_another_order_share_only_the_unordered_hash() {
    let db = cluster(&ClusterOptions::default());
    let proxy = Proxy::start(&db.addr(), |_| {});
    run_ok(&mut psql(
        proxy.port(),
        &[
            "-c",
            "SELECT g FROM generate_series(1, 5) g ORDER BY g",
            "-c",
            "SELECT g FROM generate_series(1, 5) g ORDER BY g DESC",
        ],
    ));
    let ev = proxy.collect_sessions(1);
    let st = statements(&ev);
    let (a, b) = (
        st.iter().find(|s| sql(s).ends_with("ORDER BY g")).unwrap(),
        st.iter().find(|s| sql(s).ends_with("DESC")).unwrap(),
    );
    assert_eq!(a.unordered_hash, b.unordered_hash);
    assert_ne!(a.ordered_hash, b.ordered_hash);
}

#[test]
fn psql_copy_in_and_out_round_trip() {
    let db = cluster(&ClusterOptions::default());
    let proxy = Proxy::start(&db.addr(), |_| {});
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.csv");
    let rows: String = (1..=500)
        .map(|i| format!("{i},name {i} \u{00e9}\n"))
        .collect();
    std::fs::write(&input, &rows).unwrap();
    let output = dir.path().join("out.csv");
    run_ok(&mut psql(
        proxy.port(),
        &[
            "-c",
            "CREATE TABLE items (id int, name text)",
            "-c",
            &format!("\\copy items FROM '{}' WITH (FORMAT csv)", input.display()),
            "-c",
            &format!(
                "\\copy (SELECT * FROM items ORDER BY id) TO '{}' WITH (FORMAT csv)",
                output.display()
            ),
        ],
    ));
    assert_eq!(std::fs::read_to_string(&output).unwrap(), rows);
    let ev = proxy.collect_sessions(1);
    let copies: Vec<_> = statements(&ev)
        .into_iter()
        .filter(|s| sql(s).starts_with("COPY"))
        .collect();
    assert_eq!(copies.len(), 2, "{copies:#?}");
    assert!(
        copies
            .iter()
            .all(|c| tag(c) == "COPY 500" && c.rows == 500 && c.error.is_none())
    );
}

#[test]
fn cancelled_pg_sleep_reaches_the_backend_that_owns_the_key() {
    let db = cluster(&ClusterOptions::default());
    let proxy = Proxy::start(&db.addr(), |_| {});
    let rt = tokio::runtime::Runtime::new().unwrap();
    let err = rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(&conn_str(proxy.port()), tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn);
        let token = client.cancel_token();
        let sleeping = tokio::spawn(async move { client.simple_query("SELECT pg_sleep(30)").await });
        // Cancel once the backend is really sleeping.
        let (watch, conn2) = tokio_postgres::connect(&conn_str(proxy.port()), tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(conn2);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let n: i64 = watch
                .query_one("SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'", &[])
                .await
                .unwrap()
                .get(0);
            if n == 1 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "pg_sleep never started");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let started = std::time::Instant::now();
        token.cancel_query(tokio_postgres::NoTls).await.unwrap();
        let err = sleeping.await.unwrap().unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10), "the cancel did not interrupt pg_sleep");
        err
    });
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::QUERY_CANCELED)
    );
    let ev = proxy.collect_until(|ev| {
        statements(ev)
            .iter()
            .any(|s| sql(s) == "SELECT pg_sleep(30)")
    });
    let st = statements(&ev)
        .into_iter()
        .find(|s| sql(s) == "SELECT pg_sleep(30)")
        .unwrap();
    assert_eq!(sqlstate(st).as_deref(), Some("57014"));
}

fn pgbench_through_proxy(mode: &str) {
    let db = cluster(&ClusterOptions::default());
    // Initialise directly: the run below is what we count.
    run_ok(&mut pgbench(db.port(), &["-i", "-q", "-s", "1"]));
    let proxy = Proxy::start(&db.addr(), |_| {});
    let (clients, txns) = (4, 50);
    let out = run_ok(&mut pgbench(
        proxy.port(),
        &[
            "-n",
            "-M",
            mode,
            "-c",
            &clients.to_string(),
            "-j",
            "2",
            "-t",
            &txns.to_string(),
        ],
    ));
    let report = stdout(&out);
    assert!(
        report.contains(&format!(
            "number of transactions actually processed: {}/{}",
            clients * txns,
            clients * txns
        )),
        "{report}"
    );
    // pgbench opens one more session first, to read the scale.
    let ev = proxy.collect_sessions(clients + 1);
    assert_eq!(
        proxy
            .counters
            .dropped
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    let st = statements(&ev);
    // tpcb-like: BEGIN, 3 UPDATEs, SELECT, INSERT, END per transaction.
    let script: Vec<_> = st
        .iter()
        .filter(|s| s.error.is_none() && is_tpcb(&sql(s)))
        .collect();
    assert_eq!(
        script.len(),
        clients * txns * 7,
        "tapped statements vs pgbench's executed statements"
    );
    let selects: Vec<_> = script
        .iter()
        .filter(|s| sql(s).starts_with("SELECT abalance"))
        .collect();
    assert_eq!(selects.len(), clients * txns);
    assert!(
        selects
            .iter()
            .all(|s| s.rows == 1 && tag(s) == "SELECT 1" && s.tx_status == b'T')
    );
    let ends: Vec<_> = script.iter().filter(|s| sql(s) == "END;").collect();
    assert!(ends.iter().all(|s| s.tx_status == b'I'));
    let update = script
        .iter()
        .find(|s| sql(s).starts_with("UPDATE pgbench_accounts"))
        .unwrap();
    match mode {
        "simple" => assert!(update.bind.is_empty() && sql(update).contains("WHERE aid = ")),
        _ => {
            assert!(
                sql(update).contains("$1"),
                "extended SQL keeps its placeholders: {}",
                sql(update)
            );
            let bind = parse_bind(&update.bind).unwrap();
            assert_eq!(bind.params.len(), 2);
            let delta: i64 = std::str::from_utf8(bind.params[0].unwrap())
                .unwrap()
                .parse()
                .unwrap();
            assert!((-5000..=5000).contains(&delta));
            if mode == "prepared" {
                assert!(
                    !update.statement_name.is_empty(),
                    "prepared mode names its statements"
                );
            } else {
                assert!(update.statement_name.is_empty());
            }
        }
    }
}

fn is_tpcb(sql: &str) -> bool {
    [
        "BEGIN;",
        "END;",
        "UPDATE pgbench_",
        "SELECT abalance",
        "INSERT INTO pgbench_history",
    ]
    .iter()
    .any(|p| sql.starts_with(p))
}

#[test]
fn pgbench_simple_statement_count_matches_the_tap() {
    pgbench_through_proxy("simple");
}

#[test]
fn pgbench_extended_statement_count_matches_the_tap() {
    pgbench_through_proxy("extended");
}

#[test]
fn pgbench_prepared_statement_count_matches_the_tap() {
    pgbench_through_proxy("prepared");
}

#[test]
fn sqlx_prepared_statements_across_round_trips_resolve_their_sql() {
    use sqlx::Connection;
    let db = cluster(&ClusterOptions::default());
    let proxy = Proxy::start(&db.addr(), |_| {});
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let url = format!(
            "postgres://postgres:{}@127.0.0.1:{}/postgres",
            pgtape::cluster::PASSWORD,
            proxy.port()
        );
        let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
        for i in 0..20i32 {
            // Prepared once, executed by name in later round trips.
            let v: i32 = sqlx::query_scalar("SELECT $1::int4 * 2")
                .bind(i)
                .fetch_one(&mut conn)
                .await
                .unwrap();
            assert_eq!(v, i * 2);
        }
        conn.close().await.unwrap();
    });
    let ev = proxy.collect_sessions(1);
    let runs: Vec<_> = statements(&ev)
        .into_iter()
        .filter(|s| sql(s) == "SELECT $1::int4 * 2")
        .collect();
    assert_eq!(runs.len(), 20);
    for (i, s) in runs.iter().enumerate() {
        assert!(!s.statement_name.is_empty());
        assert_eq!(decode_oids(&s.param_oids), vec![23]);
        let b = parse_bind(&s.bind).unwrap();
        assert_eq!(b.params, vec![Some(&(i as i32).to_be_bytes()[..])]);
        assert_eq!(b.param_formats, vec![1]);
        assert_eq!(s.rows, 1);
    }
}

#[test]
fn tokio_postgres_pipelined_queries_and_portal_with_row_limit() {
    let db = cluster(&ClusterOptions::default());
    let proxy = Proxy::start(&db.addr(), |_| {});
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (mut client, conn) =
            tokio_postgres::connect(&conn_str(proxy.port()), tokio_postgres::NoTls)
                .await
                .unwrap();
        tokio::spawn(conn);
        // Pipelined: all queries are sent before the first reply is read.
        let stmt = client.prepare("SELECT $1::int8 + 1").await.unwrap();
        let values: Vec<i64> = (0..30).collect();
        let (client_ref, stmt_ref) = (&client, &stmt);
        let futs: Vec<_> = values
            .iter()
            .map(|i| async move { client_ref.query_one(stmt_ref, &[i]).await })
            .collect();
        let rows = pgtape::workers::join_all(futs).await;
        for (i, r) in rows.into_iter().enumerate() {
            assert_eq!(r.unwrap().get::<_, i64>(0), i as i64 + 1);
        }
        // A portal drained 7 rows at a time: one statement, 25 rows.
        let tx = client.transaction().await.unwrap();
        let portal = tx
            .bind("SELECT g FROM generate_series(1, 25) g", &[])
            .await
            .unwrap();
        let mut total = 0;
        loop {
            let chunk = tx.query_portal(&portal, 7).await.unwrap();
            total += chunk.len();
            if chunk.len() < 7 {
                break;
            }
        }
        assert_eq!(total, 25);
        tx.commit().await.unwrap();
    });
    let ev = proxy.collect_sessions(1);
    let st = statements(&ev);
    assert_eq!(
        st.iter()
            .filter(|s| sql(s) == "SELECT $1::int8 + 1")
            .count(),
        30
    );
    let portal: Vec<_> = st
        .iter()
        .filter(|s| sql(s).contains("generate_series(1, 25)"))
        .collect();
    assert_eq!(
        portal.len(),
        1,
        "portal suspensions make one statement: {portal:#?}"
    );
    assert_eq!((portal[0].rows, portal[0].max_rows), (25, 7));
    assert_eq!(portal[0].tx_status, b'T');
}

#[test]
fn transaction_with_an_error_then_rollback() {
    let db = cluster(&ClusterOptions::default());
    let proxy = Proxy::start(&db.addr(), |_| {});
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (client, conn) =
            tokio_postgres::connect(&conn_str(proxy.port()), tokio_postgres::NoTls)
                .await
                .unwrap();
        tokio::spawn(conn);
        client.batch_execute("BEGIN").await.unwrap();
        let err = client
            .query("SELECT 1 / $1::int4", &[&0i32])
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            Some(&tokio_postgres::error::SqlState::DIVISION_BY_ZERO)
        );
        let err = client.simple_query("SELECT 1").await.unwrap_err();
        assert_eq!(
            err.code(),
            Some(&tokio_postgres::error::SqlState::IN_FAILED_SQL_TRANSACTION)
        );
        client.batch_execute("ROLLBACK").await.unwrap();
        assert_eq!(
            client
                .query_one("SELECT 7", &[])
                .await
                .unwrap()
                .get::<_, i32>(0),
            7
        );
    });
    let ev = proxy.collect_sessions(1);
    let st = statements(&ev);
    let div = st.iter().find(|s| sql(s) == "SELECT 1 / $1::int4").unwrap();
    assert_eq!(
        (sqlstate(div).as_deref(), div.tx_status),
        (Some("22012"), b'E')
    );
    let aborted = st.iter().find(|s| sql(s) == "SELECT 1").unwrap();
    assert_eq!(sqlstate(aborted).as_deref(), Some("25P02"));
    let rollback = st.iter().find(|s| sql(s) == "ROLLBACK").unwrap();
    assert_eq!(
        (tag(rollback).as_str(), rollback.tx_status),
        ("ROLLBACK", b'I')
    );
    let after = st.iter().find(|s| sql(s) == "SELECT 7").unwrap();
    assert_eq!((after.rows, after.error.is_none()), (1, true));
}

#[test]
fn a_failed_parse_skips_until_sync_and_the_session_goes_on() {
    let db = cluster(&ClusterOptions::default());
    let proxy = Proxy::start(&db.addr(), |_| {});
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (client, conn) =
            tokio_postgres::connect(&conn_str(proxy.port()), tokio_postgres::NoTls)
                .await
                .unwrap();
        tokio::spawn(conn);
        let err = client.query("SELEC broken $1", &[&1i32]).await.unwrap_err();
        assert_eq!(
            err.code(),
            Some(&tokio_postgres::error::SqlState::SYNTAX_ERROR)
        );
        assert_eq!(
            client
                .query_one("SELECT $1::int4", &[&5i32])
                .await
                .unwrap()
                .get::<_, i32>(0),
            5
        );
    });
    let ev = proxy.collect_sessions(1);
    let st = statements(&ev);
    let ok = st.iter().find(|s| sql(s) == "SELECT $1::int4").unwrap();
    assert_eq!((ok.rows, ok.error.is_none()), (1, true));
}

fn auth_cluster_works(auth: Auth) {
    let db = cluster(&ClusterOptions {
        auth,
        ..Default::default()
    });
    let proxy = Proxy::start(&db.addr(), |_| {});
    let out = run_ok(&mut psql(
        proxy.port(),
        &["-c", "SELECT current_user, 6 * 7"],
    ));
    assert_eq!(stdout(&out), "postgres|42\n");
    let mut wrong = psql(proxy.port(), &["-c", "SELECT 1"]);
    wrong.env("PGPASSWORD", "wrong");
    let out = wrong.output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("password authentication failed"),
        "{out:?}"
    );
    let ev = proxy.collect_until(|ev| {
        statements(ev)
            .iter()
            .any(|s| sql(s) == "SELECT current_user, 6 * 7")
    });
    let st = statements(&ev);
    assert_eq!(
        st.len(),
        1,
        "authentication messages are never statements: {st:#?}"
    );
}

#[test]
fn scram_authentication_is_relayed() {
    auth_cluster_works(Auth::ScramSha256);
}

#[test]
fn md5_authentication_is_relayed() {
    auth_cluster_works(Auth::Md5);
}

#[test]
fn tls_to_the_client_with_scram_relayed() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let db = cluster(&ClusterOptions {
        auth: Auth::ScramSha256,
        ..Default::default()
    });
    let proxy = Proxy::start(&db.addr(), |cfg| {
        cfg.tls = Some(pgtape::wire::tls::server_config(&cert, &key).unwrap());
    });
    // TLS client leg, plain upstream: libpq's default channel_binding=prefer works.
    let mut cmd = psql(
        proxy.port(),
        &["-c", "SELECT 'over tls'", "-c", "\\conninfo"],
    );
    cmd.env("PGSSLMODE", "require");
    let out = stdout(&run_ok(&mut cmd));
    assert!(
        out.starts_with("over tls\n") && out.contains("SSL connection"),
        "client leg is TLS: {out}"
    );
    // A client that does not ask for TLS is still served.
    assert_eq!(
        stdout(&run_ok(&mut psql(proxy.port(), &["-c", "SELECT 'plain'"]))),
        "plain\n"
    );
    let ev = proxy.collect_sessions(2);
    let st = statements(&ev);
    assert!(
        st.iter().any(|s| sql(s) == "SELECT 'over tls'")
            && st.iter().any(|s| sql(s) == "SELECT 'plain'")
    );
}

#[test]
fn tls_on_both_legs_with_scram_offers_no_channel_binding() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let db = cluster(&ClusterOptions {
        auth: Auth::ScramSha256,
        tls: Some((cert.clone(), key.clone())),
        ..Default::default()
    });
    let proxy = Proxy::start(&db.addr(), |cfg| {
        cfg.tls = Some(pgtape::wire::tls::server_config(&cert, &key).unwrap());
        cfg.upstream_tls = pgtape::wire::startup::SslMode::Require;
    });
    // The server offers SCRAM-SHA-256-PLUS on its TLS leg; the client must not
    // see it (its TLS session ends at the proxy). A relaying proxy cannot make
    // channel binding work, so the client disables it, as with any TLS-terminating proxy.
    let mut cmd = psql(
        proxy.port(),
        &[
            "-c",
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            "-c",
            "\\conninfo",
        ],
    );
    cmd.env("PGSSLMODE", "require")
        .env("PGCHANNELBINDING", "disable");
    let out = stdout(&run_ok(&mut cmd));
    assert!(out.starts_with("t\n"), "upstream leg is TLS: {out}");
    assert!(out.contains("SSL connection"), "client leg is TLS: {out}");
    // What the client is offered: read the AuthenticationSASL frame over TLS.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mechanisms = rt.block_on(async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
        let mut ssl = 8u32.to_be_bytes().to_vec();
        ssl.extend(80877103u32.to_be_bytes());
        tcp.write_all(&ssl).await.unwrap();
        let mut answer = [0u8];
        tcp.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"S");
        let connector =
            tokio_rustls::TlsConnector::from(pgtape::wire::tls::client_config_insecure());
        let mut tls = connector
            .connect(pgtape::wire::tls::server_name("localhost"), tcp)
            .await
            .unwrap();
        tls.write_all(&startup(
            196608,
            &[("user", "postgres"), ("database", "postgres")],
        ))
        .await
        .unwrap();
        let mut hdr = [0u8; 5];
        tls.read_exact(&mut hdr).await.unwrap();
        let mut body = vec![0; u32::from_be_bytes([hdr[1], hdr[2], hdr[3], hdr[4]]) as usize - 4];
        tls.read_exact(&mut body).await.unwrap();
        assert_eq!(hdr[0], b'R');
        pgtape::wire::messages::sasl_mechanisms(&body)
            .iter()
            .map(|m| String::from_utf8_lossy(m).into_owned())
            .collect::<Vec<_>>()
    });
    assert_eq!(mechanisms, vec!["SCRAM-SHA-256".to_string()]);
}

/// Reads frames from a raw socket until `tag` arrives; returns all (tag, body).
fn read_until(sock: &mut TcpStream, tag: u8) -> Vec<(u8, Vec<u8>)> {
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut got = Vec::new();
    loop {
        let mut hdr = [0u8; 5];
        if sock.read_exact(&mut hdr).is_err() {
            return got;
        }
        let len = u32::from_be_bytes([hdr[1], hdr[2], hdr[3], hdr[4]]) as usize;
        let mut body = vec![0; len - 4];
        sock.read_exact(&mut body).unwrap();
        let t = hdr[0];
        got.push((t, body));
        if t == tag {
            return got;
        }
    }
}

fn startup(version: u32, params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = version.to_be_bytes().to_vec();
    for (k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut p = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    p.extend(body);
    p
}

fn error_code(frames: &[(u8, Vec<u8>)]) -> Option<String> {
    frames
        .iter()
        .find(|(t, _)| *t == b'E')
        .map(|(_, b)| String::from_utf8_lossy(parse_error(b).unwrap().code).into_owned())
}

#[test]
fn garbage_gets_08p01_while_pgbench_completes() {
    let db = cluster(&ClusterOptions::default());
    run_ok(&mut pgbench(db.port(), &["-i", "-q", "-s", "1"]));
    let proxy = Proxy::start(&db.addr(), |_| {});
    let port = proxy.port();
    let bench = std::thread::spawn(move || {
        run_ok(&mut pgbench(
            port,
            &["-n", "-S", "-c", "4", "-j", "2", "-t", "300"],
        ))
    });
    for round in 0..20 {
        // Garbage instead of a startup packet.
        let mut s = TcpStream::connect(proxy.addr).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: pgtape\r\n\r\n")
            .unwrap();
        assert_eq!(
            error_code(&read_until(&mut s, b'E')).as_deref(),
            Some("08P01"),
            "round {round}"
        );
        // A valid session that then sends a frame with an impossible length.
        let mut s = TcpStream::connect(proxy.addr).unwrap();
        s.write_all(&startup(
            196608,
            &[("user", "postgres"), ("database", "postgres")],
        ))
        .unwrap();
        assert!(read_until(&mut s, b'Z').iter().any(|(t, _)| *t == b'Z'));
        s.write_all(b"Q\x00\x00\x00\x02garbage").unwrap();
        assert_eq!(
            error_code(&read_until(&mut s, b'E')).as_deref(),
            Some("08P01"),
            "round {round}"
        );
        // And a Sync that claims to be a gigabyte.
        let mut s = TcpStream::connect(proxy.addr).unwrap();
        s.write_all(&startup(
            196608,
            &[("user", "postgres"), ("database", "postgres")],
        ))
        .unwrap();
        read_until(&mut s, b'Z');
        s.write_all(b"S\x3f\x00\x00\x00").unwrap();
        assert_eq!(
            error_code(&read_until(&mut s, b'E')).as_deref(),
            Some("08P01")
        );
    }
    let report = stdout(&bench.join().unwrap());
    assert!(
        report.contains("number of transactions actually processed: 1200/1200"),
        "{report}"
    );
    assert!(
        report.contains("number of failed transactions: 0"),
        "{report}"
    );
}

#[test]
fn protocol_3_2_startup_is_negotiated_by_the_server() {
    let db = cluster(&ClusterOptions::default());
    let proxy = Proxy::start(&db.addr(), |_| {});
    let mut s = TcpStream::connect(proxy.addr).unwrap();
    s.write_all(&startup(
        196610,
        &[("user", "postgres"), ("database", "postgres")],
    ))
    .unwrap();
    let frames = read_until(&mut s, b'Z');
    // PostgreSQL 15 answers a 3.2 request with NegotiateProtocolVersion and goes on in 3.0.
    assert!(
        frames.iter().any(|(t, _)| *t == b'v' || *t == b'K'),
        "{frames:?}"
    );
    assert_eq!(frames.last().map(|f| f.0), Some(b'Z'));
    let ev = proxy.collect_until(|ev| ev.iter().any(|e| matches!(e, TapEvent::Connect(_))));
    let TapEvent::Connect(c) = ev
        .iter()
        .find(|e| matches!(e, TapEvent::Connect(_)))
        .unwrap()
    else {
        unreachable!()
    };
    assert_eq!(c.protocol_version, "3.2");
}

#[test]
fn unreachable_upstream_gets_a_fatal_error_naming_it() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let proxy = Proxy::start(&closed.to_string(), |_| {});
    let out = psql(proxy.port(), &["-c", "SELECT 1"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot reach upstream {closed}")),
        "{err}"
    );
}

#[test]
fn notifications_and_notices_pass_at_any_time() {
    let db = cluster(&ClusterOptions::default());
    let proxy = Proxy::start(&db.addr(), |_| {});
    let out = run_ok(&mut psql(
        proxy.port(),
        &[
            "-c",
            "LISTEN pgtape_ch",
            "-c",
            "NOTIFY pgtape_ch, 'hello'",
            "-c",
            "DO $$ BEGIN RAISE NOTICE 'note'; END $$",
            "-c",
            "SELECT 1",
        ],
    ));
    let all = format!("{}{}", stdout(&out), String::from_utf8_lossy(&out.stderr));
    assert!(
        all.contains("notification \"pgtape_ch\" with payload \"hello\""),
        "{all}"
    );
    assert!(all.contains("NOTICE:  note"), "{all}");
    let ev = proxy.collect_sessions(1);
    assert_eq!(statements(&ev).len(), 4);
}

#[test]
fn function_call_protocol_passes_through() {
    // psql's \lo_import and \lo_export use the FunctionCall message.
    let db = cluster(&ClusterOptions::default());
    let proxy = Proxy::start(&db.addr(), |_| {});
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("blob.bin");
    let blob: Vec<u8> = (0..200_000u32).map(|i| (i * 31 % 251) as u8).collect();
    std::fs::write(&input, &blob).unwrap();
    run_ok(&mut psql(
        proxy.port(),
        &["-c", &format!("\\lo_import '{}'", input.display())],
    ));
    let out = run_ok(&mut psql(
        proxy.port(),
        &["-c", "SELECT oid FROM pg_largeobject_metadata"],
    ));
    let oid = stdout(&out).trim().to_string();
    let output = dir.path().join("blob.out");
    run_ok(&mut psql(
        proxy.port(),
        &["-c", &format!("\\lo_export {oid} '{}'", output.display())],
    ));
    assert_eq!(std::fs::read(&output).unwrap(), blob);
}

#[test]
fn sigterm_stops_accepting_and_exits_zero() {
    let db = cluster(&ClusterOptions::default());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pgtape"))
        .args([
            "proxy",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--upstream",
            &db.addr(),
            "--shutdown-grace",
            "5s",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let out = psql(port, &["-c", "SELECT 1"]).output().unwrap();
        if out.status.success() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "proxy never came up");
        std::thread::sleep(Duration::from_millis(50));
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "listener closed after shutdown"
    );
}
