//! Load faults: a thousand clients at once through one proxy, every
//! statement they executed in the capture; and the upstream restarted under
//! traffic, the proxy serving the clients that come back.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use arrow::array::{Array, AsArray};
use pgtape::capture::{Capture, col};
use pgtape::cluster::ClusterOptions;

use super::{ProxyProcess, wait_for};
use crate::support::{cluster, conn_str};

/// Statement rows whose SQL contains `marker`: (without error, with error).
fn captured_with(dir: &Path, marker: &str) -> (u64, u64) {
    let cap = Capture::open(dir).unwrap();
    assert!(cap.errors.is_empty(), "{:?}", cap.errors);
    let (mut ok, mut failed) = (0, 0);
    for b in cap.scan(&[col::KIND, col::SQL, col::SQLSTATE]) {
        let b = b.unwrap();
        let kind = b.column_by_name(col::KIND).unwrap().as_string::<i32>();
        let sql = b.column_by_name(col::SQL).unwrap().as_string::<i32>();
        let state = b.column_by_name(col::SQLSTATE).unwrap().as_string::<i32>();
        for i in 0..b.num_rows() {
            if kind.value(i) == "statement" && sql.value(i).contains(marker) {
                if state.is_null(i) {
                    ok += 1;
                } else {
                    failed += 1;
                }
            }
        }
    }
    (ok, failed)
}

/// Raises the open-files limit to what `need` sockets take, if it can.
fn enough_files(need: u64) -> Result<(), String> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    if lim.rlim_cur >= need {
        return Ok(());
    }
    lim.rlim_cur = need.min(lim.rlim_max);
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    if lim.rlim_cur < need {
        return Err(format!("open files limited to {}", lim.rlim_max));
    }
    Ok(())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

const CLIENTS: usize = 1000;
const PER_CLIENT: u64 = 10;

#[test]
fn a_thousand_concurrent_clients_are_all_captured() {
    // The proxy holds two sockets per client, the clients one each.
    if let Err(why) = enough_files(4 * CLIENTS as u64) {
        eprintln!("skipped: {why}");
        return;
    }
    let db = cluster(&ClusterOptions {
        settings: vec![format!("max_connections = {}", CLIENTS + 50)],
        ..Default::default()
    });
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cap");
    let capture = dir.display().to_string();
    let proxy = ProxyProcess::start(
        &db.addr(),
        &["--capture", &capture],
        &tmp.path().join("proxy.log"),
    );
    let port = proxy.port;
    let executed = runtime().block_on(async move {
        // Every client connected before any runs its statements: a thousand
        // sessions open at once.
        let all_in = Arc::new(tokio::sync::Barrier::new(CLIENTS));
        let mut clients = tokio::task::JoinSet::new();
        for i in 0..CLIENTS {
            let all_in = all_in.clone();
            clients.spawn(async move {
                let (client, conn) =
                    tokio_postgres::connect(&conn_str(port), tokio_postgres::NoTls).await?;
                tokio::spawn(conn);
                all_in.wait().await;
                for j in 0..PER_CLIENT {
                    client
                        .simple_query(&format!("SELECT 'thousand', {i}, {j}"))
                        .await?;
                }
                Ok::<u64, tokio_postgres::Error>(PER_CLIENT)
            });
        }
        let run = async {
            let mut executed = 0;
            while let Some(r) = clients.join_next().await {
                executed += r
                    .unwrap()
                    .unwrap_or_else(|e| panic!("a client failed: {e}"));
            }
            executed
        };
        tokio::time::timeout(Duration::from_secs(300), run)
            .await
            .expect("a thousand clients done within 5 minutes")
    });
    assert_eq!(executed, CLIENTS as u64 * PER_CLIENT);
    let log = proxy.log_text();
    assert!(proxy.stop().success(), "{log}");
    let cap = Capture::open(&dir).unwrap();
    assert_eq!(cap.dropped(), 0, "nothing dropped");
    assert_eq!(
        captured_with(&dir, "'thousand'"),
        (executed, 0),
        "captured = executed"
    );
}

#[test]
fn upstream_restart_under_traffic_and_clients_come_back() {
    let mut db = cluster(&ClusterOptions::default());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cap");
    let capture = dir.display().to_string();
    let proxy = ProxyProcess::start(
        &db.addr(),
        &["--capture", &capture],
        &tmp.path().join("proxy.log"),
    );
    let port = proxy.port;
    let ok = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let rt = runtime();
    // Clients that reconnect whenever their session breaks.
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let (ok, errors, stop) = (ok.clone(), errors.clone(), stop.clone());
            rt.spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let Ok((client, conn)) =
                        tokio_postgres::connect(&conn_str(port), tokio_postgres::NoTls).await
                    else {
                        errors.fetch_add(1, Ordering::Relaxed);
                        // The upstream is down: the proxy said so at once.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    };
                    tokio::spawn(conn);
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let sql = format!("SELECT 'restart', {c}, {n}");
                        match tokio::time::timeout(
                            Duration::from_secs(30),
                            client.simple_query(&sql),
                        )
                        .await
                        {
                            Ok(Ok(_)) => ok.fetch_add(1, Ordering::Relaxed),
                            Ok(Err(_)) => {
                                errors.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                            Err(_) => panic!("a statement hung across the restart"),
                        };
                    }
                }
            })
        })
        .collect();
    wait_for(
        Duration::from_secs(60),
        "traffic before the restart",
        || ok.load(Ordering::Relaxed) >= 500,
    );
    db.stop().unwrap();
    db.restart().unwrap();
    let at_restart = ok.load(Ordering::Relaxed);
    wait_for(Duration::from_secs(60), "traffic after the restart", || {
        ok.load(Ordering::Relaxed) >= at_restart + 500
    });
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        rt.block_on(c).unwrap();
    }
    assert!(
        errors.load(Ordering::Relaxed) > 0,
        "the restart cut sessions"
    );
    let log = proxy.log_text();
    assert!(!log.contains("panicked"), "{log}");
    assert!(proxy.stop().success(), "{log}");
    let (captured_ok, _) = captured_with(&dir, "'restart'");
    assert_eq!(
        captured_ok,
        ok.load(Ordering::Relaxed),
        "captured = executed"
    );
}
