//! What the side-by-side benchmarks share (`mod common;` in each): free
//! ports, waiting for a listener, child processes stopped on drop, pgbench
//! runs and the figures read from their output, and medians of interleaved
//! rounds. Not every bench uses every helper.

#![allow(dead_code)]

use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// A port nothing listens on (the kernel's pick for a bound-then-closed socket).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits (up to 20 s) until something accepts connections on `port`.
pub fn wait_ready(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listening on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child process sent SIGTERM and waited for when dropped.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

/// The median of `v` (the upper one for an even count).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Runs pgbench against the `postgres` database on `port` as `postgres`,
/// without vacuum (`-n`) and without TLS, with `args`; returns its stdout.
pub fn pgbench(port: u16, args: &[&str]) -> String {
    let out = Command::new("pgbench")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            "-n",
        ])
        .args(args)
        .arg("postgres")
        .env("PGSSLMODE", "disable")
        .output()
        .expect("pgbench runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "pgbench failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// The first number on pgbench's output line starting with `prefix`
/// (`tps`, `latency average`).
pub fn figure(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.split(['=', ' ']).filter_map(|w| w.parse().ok()).next())
}

/// The transactions pgbench reports it processed (0 when it does not say).
pub fn transactions(text: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with("number of transactions actually processed"))
        .and_then(|l| l.split([':', '/']).nth(1))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0.0)
}
