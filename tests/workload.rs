//! `pgtape workload` against real PostgreSQL clusters and a real
//! redis-server, both started here on free ports. Load runs are a few
//! seconds on small data; statistical checks use tolerances of about four
//! standard deviations, so they do not flake yet fail on a wrong mix.

use std::time::Duration;
use tokio::sync::Mutex;

use pgtape::cluster::{Cluster, ClusterOptions};
use pgtape::redis_server::RedisServer;
use pgtape::workload::stats::OpKind;
use pgtape::workload::{self, IngestMode, Profile, SetupConfig, Summary, WorkloadConfig};

/// Load runs one at a time: on a 2-core machine parallel runs would starve
/// each other and test the machine, not the workload.
static LOAD: Mutex<()> = Mutex::const_new(());

async fn load_lock() -> tokio::sync::MutexGuard<'static, ()> {
    LOAD.lock().await
}

fn cluster() -> Cluster {
    Cluster::start(&ClusterOptions::default()).expect("start a throw-away cluster")
}

fn config(c: &Cluster, profile: Profile, secs: u64) -> WorkloadConfig {
    let mut cfg = WorkloadConfig::new(c.url("postgres"), profile);
    cfg.duration = Duration::from_secs(secs);
    cfg.warmup = Duration::from_secs(1);
    cfg.connections = 8;
    cfg.seed = 42;
    cfg
}

async fn setup(c: &Cluster, profile: Profile, orgs: u32, users: u32) -> workload::SetupReport {
    workload::setup(&SetupConfig::new(c.url("postgres"), profile, orgs, users))
        .await
        .unwrap_or_else(|e| panic!("setup failed: {e}\nserver log:\n{}", c.log()))
}

async fn run(cfg: &WorkloadConfig) -> Summary {
    workload::run(cfg, std::future::pending())
        .await
        .unwrap_or_else(|e| panic!("run failed: {e}"))
}

fn count(s: &Summary, kinds: &[OpKind]) -> u64 {
    s.operations
        .iter()
        .filter(|o| kinds.contains(&o.kind))
        .map(|o| o.total)
        .sum()
}

/// `observed` is within four standard deviations of `p` over `n` draws.
fn assert_share(what: &str, k: u64, n: u64, p: f64, context: &str) {
    assert!(n > 0, "{what}: nothing counted\n{context}");
    let observed = k as f64 / n as f64;
    let tol = 4.0 * (p * (1.0 - p) / n as f64).sqrt() + 0.002;
    assert!(
        (observed - p).abs() <= tol,
        "{what}: {observed:.4} observed, {p} expected ± {tol:.4} over {n}\n{context}"
    );
}

fn psql(c: &Cluster, sql: &str) -> String {
    c.psql("postgres", sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_event_mix_query_mix_and_cache_hit_ratio() {
    let c = cluster();
    let redis = RedisServer::start().expect("start redis-server");
    let first = setup(&c, Profile::Analytics, 3, 50).await;
    // Setup again: nothing is added twice.
    let again = setup(&c, Profile::Analytics, 3, 50).await;
    assert!(first.rows > 0);
    assert_eq!(first.rows, again.rows, "setup is idempotent");

    let _g = load_lock().await;
    let mut cfg = config(&c, Profile::Analytics, 4);
    cfg.redis_url = Some(redis.url());
    cfg.redis_required = true;
    cfg.events_per_second = 400.0;
    cfg.queries_per_second = 400.0;
    cfg.cache_hit_target = 0.60;
    cfg.refresh_interval = Duration::from_secs(2);
    let s = run(&cfg).await;
    let ctx = s.to_text();

    assert_eq!(s.failed, 0, "{ctx}");
    assert_eq!(s.succeeded + s.failed, s.total, "{ctx}");
    assert_eq!(s.cache.backend, "redis", "{ctx}");
    assert!(
        count(&s, &[OpKind::RefreshViews]) >= 1,
        "views refreshed\n{ctx}"
    );

    // Query mix (seed 000): 70 % dashboard, 20 % filtered + lists, 10 % real-time.
    let reads = count(
        &s,
        &[
            OpKind::Dashboard,
            OpKind::Filtered,
            OpKind::EventList,
            OpKind::Realtime,
        ],
    );
    assert!(reads > 800, "{ctx}");
    assert_share(
        "dashboard",
        count(&s, &[OpKind::Dashboard]),
        reads,
        0.70,
        &ctx,
    );
    assert_share(
        "filtered",
        count(&s, &[OpKind::Filtered, OpKind::EventList]),
        reads,
        0.20,
        &ctx,
    );
    assert_share(
        "realtime",
        count(&s, &[OpKind::Realtime]),
        reads,
        0.10,
        &ctx,
    );
    let app = reads + count(&s, &[OpKind::SessionWrite]);
    assert_share("reads (--read-write-ratio 80)", reads, app, 0.80, &ctx);

    // Cache hit ratio once warm (the summary excludes the warmup).
    assert!(
        (s.cache.hit_ratio_pct - 60.0).abs() <= 10.0,
        "hit ratio {:.1} % for a 60 % target\n{ctx}",
        s.cache.hit_ratio_pct
    );

    // Event mix (seed 000), counted in PostgreSQL over the run's events.
    let rows = psql(
        &c,
        "SELECT event_type, count(*) FROM events WHERE NOT properties ? 'seeded' GROUP BY 1",
    );
    let mut by_type = std::collections::HashMap::new();
    for line in rows.lines() {
        let (t, n) = line.split_once('|').unwrap();
        by_type.insert(t.to_string(), n.parse::<u64>().unwrap());
    }
    let n: u64 = by_type.values().sum();
    assert!(
        n >= s.events_written,
        "every measured event is stored\n{ctx}"
    );
    assert!(n > 1000, "{n} events\n{ctx}");
    for (t, per_mille) in pgtape::workload::analytics::EVENT_MIX {
        let k = by_type.get(t).copied().unwrap_or(0);
        assert_share(t, k, n, per_mille as f64 / 1000.0, &ctx);
    }
    // Singles and batches both happen (seed 004).
    assert!(
        count(&s, &[OpKind::IngestSingle]) > 0 && count(&s, &[OpKind::IngestBatch]) > 0,
        "{ctx}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_falls_back_to_the_in_process_cache() {
    let c = cluster();
    setup(&c, Profile::Analytics, 3, 50).await;
    // A port with nothing listening: redis-server started and stopped.
    let mut redis = RedisServer::start().expect("start redis-server");
    redis.stop();

    let _g = load_lock().await;
    let mut cfg = config(&c, Profile::Analytics, 3);
    cfg.redis_url = Some(redis.url());
    cfg.events_per_second = 100.0;
    cfg.queries_per_second = 400.0;
    cfg.cache_hit_target = 0.90;
    let s = run(&cfg).await;
    let ctx = s.to_text();
    assert_eq!(s.cache.backend, "memory", "{ctx}");
    assert_eq!(s.failed, 0, "{ctx}");
    assert!(s.cache.hits + s.cache.misses > 300, "{ctx}");
    assert!(
        (s.cache.hit_ratio_pct - 90.0).abs() <= 10.0,
        "hit ratio {:.1} % for a 90 % target\n{ctx}",
        s.cache.hit_ratio_pct
    );

    // Required Redis: the run refuses, naming the URL.
    cfg.redis_required = true;
    let err = workload::run(&cfg, std::future::pending())
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&redis.url()) && msg.contains("--redis-required"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_ingestion_drains_every_event_with_copy() {
    let c = cluster();
    let redis = RedisServer::start().expect("start redis-server");
    setup(&c, Profile::Analytics, 3, 50).await;
    let before: u64 = psql(&c, "SELECT count(*) FROM events").parse().unwrap();

    let _g = load_lock().await;
    let mut cfg = config(&c, Profile::Analytics, 3);
    cfg.redis_url = Some(redis.url());
    cfg.ingest = IngestMode::Stream;
    cfg.copy = true;
    cfg.warmup = Duration::ZERO;
    cfg.events_per_second = 500.0;
    cfg.queries_per_second = 50.0;
    let s = run(&cfg).await;
    let ctx = s.to_text();
    assert_eq!(s.failed, 0, "{ctx}");
    assert!(count(&s, &[OpKind::StreamPublish]) > 0, "{ctx}");
    assert!(count(&s, &[OpKind::StreamDrain]) > 0, "{ctx}");
    let after: u64 = psql(&c, "SELECT count(*) FROM events").parse().unwrap();
    // No warmup: every published event was drained and counted.
    assert!(s.events_written > 1000, "{ctx}");
    assert_eq!(after - before, s.events_written, "{ctx}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_make_only_valid_transitions_and_unique_numbers() {
    let c = cluster();
    setup(&c, Profile::Orders, 3, 200).await;
    // Test-only audit of every status change the workload makes.
    psql(
        &c,
        "CREATE TABLE transitions (old text, new text); \
         CREATE FUNCTION log_transition() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           IF OLD.order_status IS DISTINCT FROM NEW.order_status THEN \
             INSERT INTO transitions VALUES (OLD.order_status, NEW.order_status); END IF; \
           RETURN NEW; END $$; \
         CREATE TRIGGER log_transition AFTER UPDATE ON brickhouse.orders \
           FOR EACH ROW EXECUTE FUNCTION log_transition();",
    );
    let orders_before: u64 = psql(&c, "SELECT count(*) FROM brickhouse.orders")
        .parse()
        .unwrap();

    let _g = load_lock().await;
    let mut cfg = config(&c, Profile::Orders, 3);
    cfg.queries_per_second = 600.0;
    let s = run(&cfg).await;
    let ctx = s.to_text();
    assert_eq!(s.failed, 0, "{ctx}");
    let ops = count(
        &s,
        &[
            OpKind::OrderSelect,
            OpKind::OrderInsert,
            OpKind::OrderUpdate,
        ],
    );
    assert_share("select", count(&s, &[OpKind::OrderSelect]), ops, 0.60, &ctx);
    assert_share("insert", count(&s, &[OpKind::OrderInsert]), ops, 0.25, &ctx);
    assert_share("update", count(&s, &[OpKind::OrderUpdate]), ops, 0.15, &ctx);

    let moves = psql(
        &c,
        "SELECT old || '->' || new, count(*) FROM transitions GROUP BY 1 ORDER BY 1",
    );
    assert!(!moves.is_empty(), "the run changed no status");
    for line in moves.lines() {
        let (m, _) = line.split_once('|').unwrap();
        assert!(
            [
                "approved->fulfilled",
                "pending_review->approved",
                "pending_review->cancelled"
            ]
            .contains(&m),
            "invalid transition {m}:\n{moves}"
        );
    }
    let dups = psql(
        &c,
        "SELECT count(*) FROM (SELECT order_number FROM brickhouse.orders GROUP BY 1 HAVING count(*) > 1) d",
    );
    assert_eq!(dups, "0");
    let orders_after: u64 = psql(&c, "SELECT count(*) FROM brickhouse.orders")
        .parse()
        .unwrap();
    // Warmup inserts count too; measured inserts are a lower bound.
    assert!(
        orders_after - orders_before >= count(&s, &[OpKind::OrderInsert]),
        "{ctx}"
    );
    let inconsistent = psql(
        &c,
        "SELECT count(*) FROM brickhouse.orders WHERE \
           (order_status IN ('approved', 'fulfilled') AND approved_date IS NULL) \
           OR (order_status = 'fulfilled' AND fulfilled_date IS NULL)",
    );
    assert_eq!(inconsistent, "0", "statuses match their dates");
}

/// Parses a command line as `pgtape` does (in process: the shared build
/// directory's binary may belong to another branch's build).
fn parse(args: &[&str]) -> workload::WorkloadArgs {
    use clap::Parser;
    let cli =
        pgtape::cli::Cli::try_parse_from(std::iter::once("pgtape").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    match cli.command {
        pgtape::cli::Command::Workload(w) => w,
        other => panic!("{other:?}"),
    }
}

/// What `pgtape workload ...` would do: its error message (the binary
/// prints it and exits 2) or success.
fn pgtape(args: &[&str]) -> Result<i32, String> {
    workload::main(parse(args)).map_err(|e| format!("{e:#}"))
}

#[test]
fn json_summary_from_the_command_line_is_consistent() {
    let c = cluster();
    let url = c.url("postgres");
    let setup_args = [
        "workload",
        "setup",
        "--url",
        &url,
        "--profile",
        "orders",
        "--organizations",
        "2",
        "--users-per-org",
        "100",
    ];
    assert_eq!(pgtape(&setup_args), Ok(0));

    let _g = LOAD.blocking_lock();
    let args = parse(&[
        "workload",
        "--url",
        &url,
        "--profile",
        "orders",
        "--queries-per-second",
        "300",
        "--duration",
        "2s",
        "--warmup",
        "0s",
        "--connections",
        "4",
        "--measure-network",
        "--format",
        "json",
    ]);
    assert!(args.action.is_none());
    let cfg = WorkloadConfig::from_args(&args.run).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let summary = rt
        .block_on(workload::run(&cfg, std::future::pending()))
        .unwrap();
    let out = workload::render(&summary, args.run.format);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let n = |p: &str| {
        v.pointer(p)
            .and_then(|x| x.as_f64())
            .unwrap_or_else(|| panic!("{p} missing in {v:#}"))
    };
    assert!(n("/total") > 300.0, "{v:#}");
    assert_eq!(n("/succeeded") + n("/failed"), n("/total"));
    assert!((n("/success_rate_pct") - 100.0 * n("/succeeded") / n("/total")).abs() < 1e-6);
    for p in [
        "/duration_s",
        "/rates/operations",
        "/rates/queries/achieved",
        "/rates/queries/target",
        "/connections/concurrent_sessions",
        "/connections/acquire_avg_ms",
        "/connections/exec_avg_ms",
        "/latency/min_ms",
        "/latency/avg_ms",
        "/latency/p50_ms",
        "/latency/p95_ms",
        "/latency/p99_ms",
        "/latency/max_ms",
        "/cache/hit_ratio_pct",
        "/network/round_trip/p50_ms",
    ] {
        n(p);
    }
    assert!(
        n("/latency/min_ms") <= n("/latency/p50_ms")
            && n("/latency/p99_ms") <= n("/latency/max_ms")
    );
    let per_kind: f64 = v["operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["total"].as_f64().unwrap())
        .sum();
    assert_eq!(per_kind, n("/total"));
}

#[test]
fn bad_input_fails_naming_the_url_without_its_password() {
    // Nothing listens on a port a stopped redis-server had.
    let dead = {
        let mut r = RedisServer::start().expect("start redis-server");
        r.stop();
        r.port()
    };
    let url = format!("postgres://app:hunter2@127.0.0.1:{dead}/db");
    let err = pgtape(&["workload", "--url", &url, "--duration", "1s"]).unwrap_err();
    assert!(
        err.contains(&format!("postgres://app:***@127.0.0.1:{dead}/db")),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");

    // Schema missing: the message says to run setup.
    let c = cluster();
    let err = pgtape(&["workload", "--url", &c.url("postgres"), "--duration", "1s"]).unwrap_err();
    assert!(err.contains("pgtape workload setup"), "{err}");

    // Redis required but down.
    let setup = [
        "workload",
        "setup",
        "--url",
        &c.url("postgres"),
        "--organizations",
        "1",
        "--users-per-org",
        "5",
    ];
    assert_eq!(pgtape(&setup), Ok(0));
    let redis = format!("redis://:pw@127.0.0.1:{dead}/");
    let err = pgtape(&[
        "workload",
        "--url",
        &c.url("postgres"),
        "--redis",
        &redis,
        "--redis-required",
        "--duration",
        "1s",
    ])
    .unwrap_err();
    assert!(
        err.contains(&format!("redis://:***@127.0.0.1:{dead}/")),
        "{err}"
    );

    // A flag out of range names the flag.
    let err = pgtape(&[
        "workload",
        "--url",
        &c.url("postgres"),
        "--cache-hit-target",
        "150",
    ])
    .unwrap_err();
    assert!(err.contains("--cache-hit-target"), "{err}");
}
