//! The seeded mutation fuzzer ([`super::mutate`]) against the real proxy
//! binary recording a capture: every case answered or closed, the proxy up,
//! unharmed and serving afterwards, its capture readable. `FUZZ_CASES` (3000
//! by default) and `FUZZ_SEED` (the first case's seed, 0 by default) set
//! the run; the million-case campaign is `cargo bench --bench faults`.

use std::time::{Duration, Instant};

use pgtape::capture::Capture;
use pgtape::cluster::ClusterOptions;

use super::mutate::{SETUP_SQL, run_many};
use super::{ProxyProcess, rss_kib};
use crate::support::{cluster, psql, run_ok, stdout};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn mutated_client_streams_are_answered_or_closed_and_the_proxy_stays_up() {
    let (cases, seed) = (env_u64("FUZZ_CASES", 3000), env_u64("FUZZ_SEED", 0));
    let db = cluster(&ClusterOptions::default());
    db.psql("postgres", SETUP_SQL).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let capture = tmp.path().join("cap").display().to_string();
    let proxy = ProxyProcess::start(
        &db.addr(),
        &["--capture", &capture, "--login-timeout", "10s"],
        &tmp.path().join("proxy.log"),
    );
    let addr = format!("127.0.0.1:{}", proxy.port).parse().unwrap();
    let rss_start = proxy.rss_kib();
    let t = Instant::now();
    let tally = run_many(addr, seed, cases, 8, Duration::from_secs(30));
    eprintln!(
        "fuzz: {} cases from seed {seed} in {:.1?}: {} answered, {} closed, {} failed; proxy RSS {rss_start} -> {} KiB",
        tally.cases,
        t.elapsed(),
        tally.answered,
        tally.closed,
        tally.failed,
        rss_kib(proxy.child.id()),
    );
    assert!(
        tally.failures.is_empty(),
        "{} cases were neither answered nor closed; replay one with FUZZ_SEED=<seed> FUZZ_CASES=1:\n{:#?}",
        tally.failed,
        tally.failures
    );
    assert_eq!(tally.cases, cases);
    assert!(
        tally.answered > cases / 2,
        "most cases reach a server: {tally:?}"
    );
    // Up, unharmed, serving.
    let out = run_ok(&mut psql(proxy.port, &["-c", "SELECT 'after the fuzz'"]));
    assert!(stdout(&out).contains("after the fuzz"));
    let log = proxy.log_text();
    assert!(!log.contains("panicked"), "{log}");
    assert!(proxy.stop().success(), "{log}");
    let cap = Capture::open(std::path::Path::new(&capture)).unwrap();
    assert!(cap.errors.is_empty(), "{:?}", cap.errors);
    assert!(cap.pending_segments.is_empty());
}
