//! The long fault campaign of issue 16, kept as a bench: the seeded mutation
//! fuzzer of `tests/faults/mutate.rs` for a million cases, and a soak of a
//! thousand clients for ten minutes, each against the proxy binary recording
//! a capture of a throw-away cluster. Prints the cases run and how they
//! ended, the proxy's RSS at start and end, statements executed and
//! captured, and drops; exits non-zero if a case hung or a figure is off.
//!
//! Run: `cargo bench --bench faults` (FUZZ_CASES=1000000, FUZZ_SEED=0;
//! SOAK_SECONDS=600, SOAK_CLIENTS=1000, SOAK_RATE=5 statements per client
//! per second; FAULTS=fuzz or FAULTS=soak runs one half).

#[path = "../tests/faults/mutate.rs"]
mod mutate;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray};
use pgtape::capture::{Capture, col};
use pgtape::cluster::{Cluster, ClusterOptions};

mod common;
use common::free_port;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `pgtape proxy --capture` as a child process.
struct Proxy {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Proxy {
    fn start(upstream: &str, capture: &Path, log: &Path) -> Proxy {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_pgtape"))
            .args(["proxy", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--upstream", upstream, "--login-timeout", "10s"])
            .arg("--capture")
            .arg(capture)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the proxy did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Proxy {
            child,
            port,
            log: log.to_path_buf(),
        }
    }

    /// Resident set size, MiB.
    fn rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0.0);
        kib / 1024.0
    }

    /// SIGTERM; true if it exited 0 and never logged a panic.
    fn stop(mut self) -> bool {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let ok = self.child.wait().unwrap().success();
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        if log.contains("panicked") {
            eprintln!("the proxy panicked:\n{log}");
        }
        ok && !log.contains("panicked")
    }
}

/// Statement rows containing `marker`: (without error, with error); drops.
fn captured(dir: &Path, marker: &str) -> (u64, u64, u64) {
    let cap = Capture::open(dir).unwrap();
    assert!(cap.errors.is_empty(), "{:?}", cap.errors);
    let (mut ok, mut failed) = (0, 0);
    for b in cap.scan(&[col::KIND, col::SQL, col::SQLSTATE]) {
        let b = b.unwrap();
        let kind = b.column_by_name(col::KIND).unwrap().as_string::<i32>();
        let sql = b.column_by_name(col::SQL).unwrap().as_string::<i32>();
        let state = b.column_by_name(col::SQLSTATE).unwrap();
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
    (ok, failed, cap.dropped())
}

fn fuzz(db: &Cluster, tmp: &Path) -> bool {
    let (cases, seed) = (env_u64("FUZZ_CASES", 1_000_000), env_u64("FUZZ_SEED", 0));
    db.psql("postgres", mutate::SETUP_SQL).unwrap();
    let proxy = Proxy::start(&db.addr(), &tmp.join("fuzz"), &tmp.join("fuzz.log"));
    let addr = format!("127.0.0.1:{}", proxy.port).parse().unwrap();
    let rss_start = proxy.rss_mib();
    let mut rss_max = rss_start;
    let started = Instant::now();
    let (mut answered, mut closed, mut failed) = (0, 0, 0);
    let step = 50_000.min(cases.max(1));
    let mut done = 0;
    while done < cases {
        let n = step.min(cases - done);
        let t = mutate::run_many(addr, seed + done, n, 8, Duration::from_secs(30));
        (answered, closed, failed) = (answered + t.answered, closed + t.closed, failed + t.failed);
        for f in &t.failures {
            eprintln!("seed {}: {}\n  bytes {}", f.0, f.1, f.2);
        }
        done += n;
        rss_max = rss_max.max(proxy.rss_mib());
        eprintln!(
            "fuzz: {done}/{cases} cases, {:.0}/s, proxy RSS {:.1} MiB",
            done as f64 / started.elapsed().as_secs_f64(),
            proxy.rss_mib()
        );
    }
    let rss_end = proxy.rss_mib();
    // Still serving after it all.
    let alive = std::net::TcpStream::connect(addr).is_ok();
    let clean = proxy.stop();
    let readable = Capture::open(&tmp.join("fuzz")).is_ok_and(|c| c.errors.is_empty());
    println!(
        "fuzz: {cases} cases from seed {seed} in {:.0} s: {answered} answered, {closed} closed, {failed} neither; \
         proxy RSS {rss_start:.1} MiB at start, {rss_end:.1} MiB at the end ({rss_max:.1} max); \
         serving after: {alive}, clean exit: {clean}, capture readable: {readable}",
        started.elapsed().as_secs_f64()
    );
    failed == 0 && alive && clean && readable
}

fn soak(db: &Cluster, tmp: &Path) -> bool {
    let clients = env_u64("SOAK_CLIENTS", 1000) as usize;
    let seconds = env_u64("SOAK_SECONDS", 600);
    let rate = env_u64("SOAK_RATE", 5).max(1);
    db.psql(
        "postgres",
        "CREATE TABLE IF NOT EXISTS soak_log (client int, n bigint)",
    )
    .unwrap();
    let dir = tmp.join("soak");
    let proxy = Proxy::start(&db.addr(), &dir, &tmp.join("soak.log"));
    let rss_idle = proxy.rss_mib();
    let conn = format!(
        "host=127.0.0.1 port={} user=postgres password={} dbname=postgres",
        proxy.port,
        pgtape::cluster::PASSWORD
    );
    let executed = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (rss_start, rss_max, rss_end) = rt.block_on(async {
        // Every client connects, then the clock starts for all at once.
        let all_in = Arc::new(tokio::sync::Barrier::new(clients + 1));
        let go = Arc::new(tokio::sync::Barrier::new(clients + 1));
        let deadline = Arc::new(std::sync::OnceLock::<tokio::time::Instant>::new());
        let mut tasks = tokio::task::JoinSet::new();
        for c in 0..clients {
            let (conn, all_in, go, deadline) =
                (conn.clone(), all_in.clone(), go.clone(), deadline.clone());
            let (executed, errors) = (executed.clone(), errors.clone());
            tasks.spawn(async move {
                let client = match tokio_postgres::connect(&conn, tokio_postgres::NoTls).await {
                    Ok((client, connection)) => {
                        tokio::spawn(connection);
                        Some(client)
                    }
                    Err(e) => {
                        eprintln!("client {c} cannot connect: {e}");
                        errors.fetch_add(1, Ordering::Relaxed);
                        None
                    }
                };
                all_in.wait().await;
                go.wait().await;
                let Some(client) = client else { return };
                let end = *deadline.get().expect("set before the barrier opens");
                let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut n = 0i64;
                while tokio::time::Instant::now() < end {
                    tick.tick().await;
                    n += 1;
                    let r = match n % 3 {
                        0 => client
                            .simple_query(&format!("SELECT /*soak*/ {c}, {n}"))
                            .await
                            .map(|_| ()),
                        1 => client
                            .simple_query(&format!("INSERT INTO soak_log VALUES ({c}, {n}) /*soak*/"))
                            .await
                            .map(|_| ()),
                        _ => client
                            .query("SELECT $1::int + $2::bigint /*soak*/", &[&(c as i32), &n])
                            .await
                            .map(|_| ()),
                    };
                    match r {
                        Ok(()) => executed.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            eprintln!("client {c}: {e}");
                            errors.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            });
        }
        let connecting = Instant::now();
        all_in.wait().await;
        eprintln!("soak: {clients} clients connected in {:.1?}", connecting.elapsed());
        deadline
            .set(tokio::time::Instant::now() + Duration::from_secs(seconds))
            .unwrap();
        go.wait().await;
        let rss_start = proxy.rss_mib();
        let mut rss_max = rss_start;
        let mut sample = tokio::time::interval(Duration::from_secs(30));
        loop {
            tokio::select! {
                r = tasks.join_next() => match r {
                    Some(r) => r.unwrap(),
                    None => break,
                },
                _ = sample.tick() => {
                    rss_max = rss_max.max(proxy.rss_mib());
                    eprintln!("soak: {} executed, proxy RSS {:.1} MiB", executed.load(Ordering::Relaxed), proxy.rss_mib());
                }
            }
        }
        let rss_end = proxy.rss_mib();
        (rss_start, rss_max.max(rss_end), rss_end)
    });
    let clean = proxy.stop();
    let executed = executed.load(Ordering::Relaxed);
    let errors = errors.load(Ordering::Relaxed);
    let (ok, failed, dropped) = captured(&dir, "/*soak*/");
    println!(
        "soak: {clients} clients for {seconds} s at {rate}/s each: {executed} statements executed, {errors} errors; \
         {ok} captured ({failed} captured as failed), {dropped} dropped; proxy RSS {rss_idle:.1} MiB idle, \
         {rss_start:.1} MiB with every client connected, {rss_end:.1} MiB at the end ({rss_max:.1} max); clean exit: {clean}"
    );
    errors == 0 && ok == executed && dropped == 0 && clean
}

fn main() {
    // `cargo bench` passes --bench; nothing else is taken from the command line.
    let which = std::env::var("FAULTS").unwrap_or_else(|_| "fuzz,soak".into());
    let clients = env_u64("SOAK_CLIENTS", 1000);
    let db = Cluster::start(&ClusterOptions {
        settings: vec![format!("max_connections = {}", clients + 50)],
        ..Default::default()
    })
    .expect("a throw-away PostgreSQL cluster");
    let tmp = tempfile::tempdir().unwrap();
    let mut ok = true;
    if which.contains("fuzz") {
        ok &= fuzz(&db, tmp.path());
    }
    if which.contains("soak") {
        ok &= soak(&db, tmp.path());
    }
    std::process::exit(if ok { 0 } else { 1 });
}
