//! Side-by-side proxy benchmark: pgbench -S (simple and prepared, -c 8)
//! direct, through pgbouncer and through pgtape with the tap recording, in one
//! run against one throw-away cluster. Prints TPS and average latency with
//! ratios to direct and to pgbouncer.
//!
//! Run: `cargo bench --bench proxy` (BENCH_SECONDS=10 per measurement by
//! default; BENCH_CLIENTS=8). pgbouncer is Debian's package `pgbouncer`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pgtape::cluster::{Cluster, ClusterOptions};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_ready(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listening on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

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

fn start_pgtape(dir: &Path, upstream: &str) -> (Killed, u16) {
    let port = free_port();
    let capture = dir.join("capture");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgtape"));
    cmd.args([
        "proxy",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--upstream",
        upstream,
        "--upstream-tls",
        "disable",
    ]);
    if capture_supported() {
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

fn capture_supported() -> bool {
    let out = Command::new(env!("CARGO_BIN_EXE_pgtape"))
        .args(["proxy", "--help"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains("--capture")
}

/// Runs pgbench and returns (tps, average latency ms).
fn pgbench(port: u16, mode: &str, clients: u32, seconds: u32) -> (f64, f64) {
    let out = Command::new("pgbench")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            "-n",
            "-S",
            "-M",
            mode,
        ])
        .args([
            "-c",
            &clients.to_string(),
            "-j",
            "2",
            "-T",
            &seconds.to_string(),
            "postgres",
        ])
        .env("PGSSLMODE", "disable")
        .output()
        .expect("pgbench runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "pgbench failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let find = |prefix: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.split(['=', ' ']).filter_map(|w| w.parse().ok()).next())
            .unwrap_or_else(|| panic!("no {prefix:?} in pgbench output:\n{text}"))
    };
    (find("tps"), find("latency average"))
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing we need.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let seconds: u32 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let clients: u32 = std::env::var("BENCH_CLIENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
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
    let (_pgtape, pgtape_port) = start_pgtape(dir.path(), &db.addr());
    println!(
        "pgbench -S -c {clients} -j 2 -T {seconds}, scale 10, {} cores; pgtape tap {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        if capture_supported() {
            "recording to Parquet"
        } else {
            "on (no capture sink)"
        }
    );
    println!(
        "{:<10} {:<10} {:>10} {:>12} {:>10} {:>12}",
        "mode", "path", "tps", "latency ms", "vs direct", "vs pgbouncer"
    );
    for mode in ["simple", "prepared"] {
        let mut rows: Vec<(&str, f64, f64)> = Vec::new();
        // Warm the cache once so the first measurement is not penalised.
        pgbench(db.port(), mode, clients, 2);
        let measure = |port| pgbench(port, mode, clients, seconds);
        let direct = measure(db.port());
        rows.push(("direct", direct.0, direct.1));
        if let Some((_, port)) = &bouncer {
            let b = measure(*port);
            rows.push(("pgbouncer", b.0, b.1));
        }
        let t = measure(pgtape_port);
        rows.push(("pgtape", t.0, t.1));
        let bouncer_tps = rows.iter().find(|r| r.0 == "pgbouncer").map(|r| r.1);
        for (path, tps, lat) in &rows {
            let vs_b = bouncer_tps
                .map(|b| format!("{:.2}x", tps / b))
                .unwrap_or_else(|| "-".into());
            println!(
                "{mode:<10} {path:<10} {tps:>10.0} {lat:>12.3} {:>9.2}x {vs_b:>12}",
                tps / rows[0].1
            );
        }
    }
}
