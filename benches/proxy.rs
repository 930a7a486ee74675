//! Side-by-side proxy benchmark: pgbench -S (simple and prepared, -c 8)
//! direct, through pgbouncer and through pgtape with the tap recording, in one
//! run against one throw-away cluster. Prints TPS and average latency with
//! ratios to direct and to pgbouncer, and the CPU time each proxy process
//! spent per transaction (user + system, all threads: the figure the noise
//! of a shared two-core machine moves least).
//!
//! The three paths are measured in interleaved rounds (direct, pgbouncer,
//! pgtape, then again) and each figure is the median of its rounds, so a
//! burst of background load does not land on one path only.
//!
//! Run: `cargo bench --bench proxy` (BENCH_SECONDS=10 per measurement,
//! BENCH_ROUNDS=3, BENCH_CLIENTS=8 by default). pgbouncer is Debian's
//! package `pgbouncer`. `BENCH_AB_BIN=/path/to/pgtape` adds a fifth path,
//! `pgtape-b`, another build of pgtape proxying the same way in the same
//! interleaved rounds: an A/B of two commits on one machine in one run.

use std::path::Path;
use std::process::{Command, Stdio};

use pgtape::cluster::{Cluster, ClusterOptions};

mod common;
use common::{Killed, free_port, median, wait_ready};

fn start_pgbouncer(dir: &Path, upstream: u16) -> Option<(Killed, u16)> {
    let bin = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
        .into_iter()
        .find(|p| Path::new(p).exists())?;
    let port = free_port();
    let ini = dir.join("pgbouncer.ini");
    std::fs::write(
        &ini,
        format!(
            "[databases]\n* = host=127.0.0.1 port={upstream}\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\n\
             auth_type = trust\nauth_file = {}/users.txt\npool_mode = session\nmax_client_conn = 100\n\
             default_pool_size = 20\nunix_socket_dir =\nlogfile = {}/pgbouncer.log\n",
            dir.display(),
            dir.display()
        ),
    )
    .unwrap();
    std::fs::write(dir.join("users.txt"), "\"postgres\" \"\"\n").unwrap();
    let mut cmd = Command::new(bin);
    // pgbouncer refuses to run as root.
    if unsafe { libc::geteuid() } == 0 {
        use std::os::unix::process::CommandExt;
        let pw = unsafe { libc::getpwnam(c"postgres".as_ptr()) };
        if !pw.is_null() {
            let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
            for f in ["pgbouncer.ini", "users.txt", ""] {
                std::os::unix::fs::chown(dir.join(f), Some(uid), Some(gid)).unwrap();
            }
            cmd.uid(uid).gid(gid);
        }
    }
    let child = cmd
        .arg(&ini)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    wait_ready(port);
    Some((Killed(child), port))
}

fn start_pgtape(bin: &str, dir: &Path, upstream: &str) -> (Killed, u16) {
    let port = free_port();
    let capture = dir.join("capture");
    let mut cmd = Command::new(bin);
    cmd.args([
        "proxy",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--upstream",
        upstream,
        "--upstream-tls",
        "disable",
    ]);
    if capture_supported(bin) {
        cmd.arg("--capture").arg(&capture);
    }
    let child = cmd
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_ready(port);
    (Killed(child), port)
}

fn capture_supported(bin: &str) -> bool {
    let out = Command::new(bin)
        .args(["proxy", "--help"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains("--capture")
}

/// CPU time (user + system, every thread) a process has used, in µs.
fn cpu_us(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map(|r| r.1).unwrap_or("");
    let f: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    f.iter().sum::<f64>() * 1e6 / hz
}

/// Runs pgbench -S and returns (tps, average latency ms, transactions).
fn pgbench(port: u16, mode: &str, clients: u32, seconds: u32) -> (f64, f64, f64) {
    let (clients, seconds) = (clients.to_string(), seconds.to_string());
    let text = common::pgbench(
        port,
        &["-S", "-M", mode, "-c", &clients, "-j", "2", "-T", &seconds],
    );
    let find = |prefix: &str| -> f64 {
        common::figure(&text, prefix)
            .unwrap_or_else(|| panic!("no {prefix:?} in pgbench output:\n{text}"))
    };
    (
        find("tps"),
        find("latency average"),
        common::transactions(&text),
    )
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing we need.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let env = |k: &str, d: u32| -> u32 {
        std::env::var(k)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(d)
    };
    let (seconds, clients, rounds) = (
        env("BENCH_SECONDS", 10),
        env("BENCH_CLIENTS", 8),
        env("BENCH_ROUNDS", 3).max(1),
    );
    let db = Cluster::start(&ClusterOptions::default()).expect("a throw-away cluster");
    let init = Command::new("pgbench")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &db.port().to_string(),
            "-U",
            "postgres",
            "-i",
            "-q",
            "-s",
            "10",
            "postgres",
        ])
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let bouncer = start_pgbouncer(dir.path(), db.port());
    const BIN: &str = env!("CARGO_BIN_EXE_pgtape");
    let (pgtape, pgtape_port) = start_pgtape(BIN, dir.path(), &db.addr());
    let ab_bin = std::env::var("BENCH_AB_BIN").ok().filter(|b| !b.is_empty());
    let ab_dir = tempfile::tempdir().unwrap();
    let ab = ab_bin
        .as_deref()
        .map(|b| start_pgtape(b, ab_dir.path(), &db.addr()));
    if let Some(b) = &ab_bin {
        println!("pgtape-b: {b}");
    }
    println!(
        "pgbench -S -c {clients} -j 2 -T {seconds}, scale 10, {} cores, median of {rounds} interleaved rounds; pgtape tap {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        if capture_supported(BIN) {
            "recording to Parquet"
        } else {
            "on (no capture sink)"
        }
    );
    println!(
        "{:<10} {:<10} {:>10} {:>12} {:>10} {:>12} {:>14}",
        "mode", "path", "tps", "latency ms", "vs direct", "vs pgbouncer", "proxy cpu/tx"
    );
    let mut paths: Vec<(&str, u16, Option<u32>)> = vec![("direct", db.port(), None)];
    if let Some((b, port)) = &bouncer {
        paths.push(("pgbouncer", *port, Some(b.0.id())));
    }
    paths.push(("pgtape", pgtape_port, Some(pgtape.0.id())));
    if let Some((b, port)) = &ab {
        paths.push(("pgtape-b", *port, Some(b.0.id())));
    }
    for mode in ["simple", "prepared"] {
        // Warm the cache once so the first measurement is not penalised.
        pgbench(db.port(), mode, clients, 2);
        let mut samples: Vec<(Vec<f64>, Vec<f64>, Vec<f64>)> =
            paths.iter().map(|_| Default::default()).collect();
        for _ in 0..rounds {
            for ((_, port, pid), s) in paths.iter().zip(samples.iter_mut()) {
                let before = pid.map(cpu_us);
                let (tps, lat, tx) = pgbench(*port, mode, clients, seconds);
                if let (Some(b), Some(pid)) = (before, pid) {
                    s.2.push((cpu_us(*pid) - b) / tx.max(1.0));
                }
                s.0.push(tps);
                s.1.push(lat);
            }
        }
        let rows: Vec<(&str, f64, f64, Option<f64>)> = paths
            .iter()
            .zip(samples)
            .map(|((name, ..), (tps, lat, cpu))| {
                let cpu = (!cpu.is_empty()).then(|| median(cpu));
                (*name, median(tps), median(lat), cpu)
            })
            .collect();
        let bouncer_tps = rows.iter().find(|r| r.0 == "pgbouncer").map(|r| r.1);
        for (path, tps, lat, cpu) in &rows {
            let vs_b = bouncer_tps
                .map(|b| format!("{:.2}x", tps / b))
                .unwrap_or_else(|| "-".into());
            let cpu = cpu
                .map(|c| format!("{c:.1} µs"))
                .unwrap_or_else(|| "-".into());
            println!(
                "{mode:<10} {path:<10} {tps:>10.0} {lat:>12.3} {:>9.2}x {vs_b:>12} {cpu:>14}",
                tps / rows[0].1
            );
        }
    }
}
