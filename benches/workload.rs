//! The analytics profile at seed 004's target (10,000 events/s) against a
//! throw-away local cluster and redis-server: achieved rate, p99, and the CPU
//! the generator itself used next to the CPU PostgreSQL and Redis used, so a
//! shortfall can be pinned on the right side.
//!
//! `cargo bench --bench workload` (env: BENCH_EVENTS, BENCH_QUERIES,
//! BENCH_SECS, BENCH_CONNECTIONS). Results go in benches/WORKLOAD_RESULTS.md.

use std::time::{Duration, Instant};

use pgtape::cluster::{Cluster, ClusterOptions};
use pgtape::redis_server::RedisServer;
use pgtape::workload::{self, IngestMode, Profile, SetupConfig, WorkloadConfig};

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU seconds (user + system) of this process.
fn self_cpu() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

/// CPU seconds of `root`, its live children and its reaped children
/// (postmaster + backends).
fn tree_cpu(root: u32) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let mut total = 0.0;
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // Fields after the parenthesised command name.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let pid: u32 = e
            .file_name()
            .to_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let ppid: u32 = f.get(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let field = |i: usize| f.get(i).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
        if ppid == root {
            total += (field(11) + field(12)) / tick;
        } else if pid == root {
            // utime, stime, and the reaped children's (backends that exited
            // when the run closed its pool).
            total += (field(11) + field(12) + field(13) + field(14)) / tick;
        }
    }
    total
}

fn postmaster_pid(c: &Cluster) -> u32 {
    let pidfile =
        std::fs::read_to_string(c.data_dir().join("postmaster.pid")).expect("postmaster.pid");
    pidfile
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .expect("pid")
}

fn main() {
    // `cargo bench` passes --bench; nothing else to parse.
    let events: f64 = env("BENCH_EVENTS", 10_000.0);
    let queries: f64 = env("BENCH_QUERIES", 200.0);
    let secs: u64 = env("BENCH_SECS", 20);
    let connections: u32 = env("BENCH_CONNECTIONS", 20);
    let cluster = Cluster::start(&ClusterOptions {
        settings: vec![
            "max_wal_size = 4GB".into(),
            "checkpoint_timeout = 30min".into(),
        ],
        ..Default::default()
    })
    .expect("start a cluster");
    let redis = RedisServer::start().expect("start redis-server");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let url = cluster.url("postgres");
    let t = Instant::now();
    rt.block_on(workload::setup(&SetupConfig::new(
        &url,
        Profile::Analytics,
        50,
        1000,
    )))
    .expect("setup");
    eprintln!("setup: {:.1} s", t.elapsed().as_secs_f64());
    let pg = postmaster_pid(&cluster);
    let redis_pid = redis.pid().expect("redis pid");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "| ingest | events/s target | achieved | queries/s achieved | p99 ingest (ms) | p99 all (ms) | failed | generator CPU | PostgreSQL CPU | Redis CPU |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (name, ingest, copy) in [
        ("direct", IngestMode::Direct, false),
        ("stream+COPY", IngestMode::Stream, true),
    ] {
        let mut cfg = WorkloadConfig::new(&url, Profile::Analytics);
        cfg.redis_url = Some(redis.url());
        cfg.redis_required = true;
        cfg.events_per_second = events;
        cfg.queries_per_second = queries;
        cfg.connections = connections;
        cfg.duration = Duration::from_secs(secs);
        cfg.warmup = Duration::from_secs(3);
        cfg.refresh_interval = Duration::from_secs(10);
        cfg.ingest = ingest;
        cfg.copy = copy;
        let (gen0, pg0, rd0, wall0) = (
            self_cpu(),
            tree_cpu(pg),
            tree_cpu(redis_pid),
            Instant::now(),
        );
        let s = rt
            .block_on(workload::run(&cfg, std::future::pending()))
            .expect("run");
        let wall = wall0.elapsed().as_secs_f64();
        let pct = |cpu: f64| format!("{:.0} %", 100.0 * cpu / wall);
        let p99_ingest = s
            .operations
            .iter()
            .filter(|o| {
                use pgtape::workload::stats::OpKind::*;
                matches!(o.kind, IngestSingle | IngestBatch | StreamPublish)
            })
            .map(|o| o.latency.p99_ms)
            .fold(0.0, f64::max);
        println!(
            "| {name} | {events:.0} | {:.0} | {:.0} | {p99_ingest:.1} | {:.1} | {} | {} | {} | {} |",
            s.rates.events.achieved,
            s.rates.queries.achieved,
            s.latency.p99_ms,
            s.failed,
            pct(self_cpu() - gen0),
            pct(tree_cpu(pg) - pg0),
            pct(tree_cpu(redis_pid) - rd0),
        );
        eprintln!("{}", s.to_text());
    }
    println!("\n{cores} cores; CPU columns are percent of one core over the run's wall time.");
}
