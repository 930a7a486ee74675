//! Test harness shared by the integration tests: a real PostgreSQL cluster,
//! the proxy running in-process on a free port with its tap channel, and
//! helpers that run real clients and print full context on failure.
#![allow(dead_code)]

pub mod replay;

use std::net::SocketAddr;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use pgtape::capture::event::{StatementEvent, TapCounters};
use pgtape::capture::{TapEvent, tap_channel};
use pgtape::cluster::{Cluster, ClusterOptions};
use pgtape::proxy::ProxyConfig;
use tokio::sync::oneshot;

/// A proxy serving on 127.0.0.1:<port> inside the test process.
pub struct Proxy {
    pub addr: SocketAddr,
    pub events: Receiver<TapEvent>,
    pub counters: Arc<TapCounters>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    /// Starts a proxy in front of `upstream`, customised by `tweak`.
    pub fn start(upstream: &str, tweak: impl FnOnce(&mut ProxyConfig)) -> Proxy {
        let (tx, events, counters) = tap_channel(1 << 20);
        let mut cfg = ProxyConfig::new(upstream);
        cfg.tap = Some(tx);
        tweak(&mut cfg);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let shutdown = async {
                    let _ = stop_rx.await;
                };
                pgtape::proxy::serve(listener, Arc::new(cfg), shutdown, Duration::from_secs(1))
                    .await
                    .unwrap();
            });
        });
        Proxy {
            addr,
            events,
            counters,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Collects events until `done` says the collection is complete, or fails
    /// after 30 s showing what arrived.
    pub fn collect_until(&self, mut done: impl FnMut(&[TapEvent]) -> bool) -> Vec<TapEvent> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut got = Vec::new();
        while !done(&got) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self
                .events
                .recv_timeout(left.min(Duration::from_millis(200)))
            {
                Ok(e) => got.push(e),
                Err(_) if Instant::now() >= deadline => {
                    panic!(
                        "timed out waiting for tap events; got {} events:\n{:#?}",
                        got.len(),
                        tail(&got)
                    )
                }
                Err(_) => {}
            }
        }
        got
    }

    /// Collects until `n` sessions have disconnected.
    pub fn collect_sessions(&self, n: usize) -> Vec<TapEvent> {
        self.collect_until(|ev| {
            ev.iter()
                .filter(|e| matches!(e, TapEvent::Disconnect(_)))
                .count()
                >= n
        })
    }
}

fn tail(ev: &[TapEvent]) -> &[TapEvent] {
    &ev[ev.len().saturating_sub(20)..]
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub fn cluster(opts: &ClusterOptions) -> Cluster {
    Cluster::start(opts).unwrap_or_else(|e| panic!("cannot start a PostgreSQL cluster: {e}"))
}

/// The statement events, in arrival order.
pub fn statements(ev: &[TapEvent]) -> Vec<&StatementEvent> {
    ev.iter()
        .filter_map(|e| match e {
            TapEvent::Statement(s) => Some(&**s),
            _ => None,
        })
        .collect()
}

pub fn sql(s: &StatementEvent) -> String {
    String::from_utf8_lossy(&s.sql).into_owned()
}

pub fn tag(s: &StatementEvent) -> String {
    String::from_utf8_lossy(&s.command_tag).into_owned()
}

pub fn sqlstate(s: &StatementEvent) -> Option<String> {
    s.error
        .as_ref()
        .map(|(c, _)| String::from_utf8_lossy(c).into_owned())
}

/// Runs a command and returns its output, panicking with both streams on failure.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{cmd:?} failed ({})\n--- stdout\n{}\n--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// psql against the proxy over TCP (no .psqlrc, quiet, unaligned, tuples only).
pub fn psql(port: u16, args: &[&str]) -> Command {
    let mut c = Command::new("psql");
    c.args([
        "-X",
        "-q",
        "-A",
        "-t",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
    ]);
    c.args(["-U", "postgres", "-d", "postgres"]);
    c.env("PGPASSWORD", pgtape::cluster::PASSWORD)
        .env("PGSSLMODE", "disable")
        .env("PGCONNECT_TIMEOUT", "10");
    c.args(args);
    c
}

pub fn pgbench(port: u16, args: &[&str]) -> Command {
    let mut c = Command::new("pgbench");
    c.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"]);
    c.env("PGPASSWORD", pgtape::cluster::PASSWORD)
        .env("PGSSLMODE", "disable");
    c.args(args);
    c.arg("postgres");
    c
}

/// tokio-postgres connection string for the proxy.
pub fn conn_str(port: u16) -> String {
    format!(
        "host=127.0.0.1 port={port} user=postgres password={} dbname=postgres",
        pgtape::cluster::PASSWORD
    )
}

/// A self-signed certificate and key for 127.0.0.1/localhost, written to `dir`.
pub fn self_signed(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    (cert, key)
}
