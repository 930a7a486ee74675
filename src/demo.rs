//! `pgtape demo`: the whole story on one machine. Throw-away clusters for
//! production, a copy of its starting state (the source) and a migrated
//! target; Redis when a redis-server binary exists; the proxy recording in
//! front of production while the analytics workload runs through it; then the
//! replay against source and target and the verdict. Everything started is
//! stopped on exit, Ctrl-C included (each part stops when dropped).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::ValueEnum;

use crate::capture::{Recorder, RecorderConfig};
use crate::cluster::{Cluster, ClusterOptions};
use crate::proxy::ProxyConfig;
use crate::replay::ReplayConfig;
use crate::replay::conn_opts::ConnOpts;
use crate::workload::{Profile, SetupConfig, WorkloadConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// A realistic migration with two defects to catch: an index lost
    /// (latency regression) and a column whose type changed (divergence).
    Migration,
    /// Source and target identical: the verdict must pass.
    Identical,
}

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// How long the workload runs through the proxy.
    #[arg(long, default_value = "30s", value_parser = crate::clock::parse_duration)]
    pub duration: Duration,
    /// Replay speed.
    #[arg(long, default_value_t = 2.0)]
    pub speed: f64,
    #[arg(long, value_enum, default_value_t = Scenario::Migration)]
    pub scenario: Scenario,
    /// Where the capture, the results and the report stay.
    #[arg(long, default_value = "pgtape-demo")]
    pub out: PathBuf,
    /// Tenants seeded (seed 000's ORGANIZATIONS).
    /// Few tenants with a long history each: the lost index then costs a
    /// sort of thousands of events per request, plain to see.
    #[arg(long, default_value_t = 20)]
    pub organizations: u32,
    /// Users per tenant (seed 000's USERS_PER_ORG); the seeded history scales with it.
    #[arg(long, default_value_t = 2500)]
    pub users_per_org: u32,
    #[arg(long, default_value_t = 100.0, env = "EVENTS_PER_SECOND")]
    pub events_per_second: f64,
    #[arg(long, default_value_t = 200.0, env = "QUERIES_PER_SECOND")]
    pub queries_per_second: f64,
}

struct Steps {
    n: usize,
    total: usize,
    started: Instant,
}

impl Steps {
    fn next(&mut self, what: &str) {
        self.n += 1;
        eprintln!(
            "[{}/{}] {what} ({:.1}s)",
            self.n,
            self.total,
            self.started.elapsed().as_secs_f64()
        );
    }
}

/// The migration applied to the target: the column type change first (the
/// views over it are rebuilt by re-running the idempotent schema), then the
/// lost index.
fn migrate(target: &Cluster, scenario: Scenario) -> anyhow::Result<()> {
    if scenario == Scenario::Identical {
        return Ok(());
    }
    let db = "postgres";
    target.psql(
        db,
        "DROP MATERIALIZED VIEW IF EXISTS org_daily_stats, org_top_elements; \
         ALTER TABLE events ALTER COLUMN duration_ms TYPE real",
    )?;
    target.psql(db, crate::workload::setup::ANALYTICS_SQL)?;
    target.psql(db, "DROP INDEX events_org_time_idx; ANALYZE events")?;
    Ok(())
}

pub fn main(args: DemoArgs) -> anyhow::Result<i32> {
    anyhow::ensure!(
        args.speed > 0.0 && args.speed.is_finite(),
        "--speed must be a positive number, e.g. --speed 2"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        tokio::select! {
            r = run(&args) => r,
            _ = crate::process::shutdown_signal() => {
                eprintln!("interrupted: stopping every process the demo started");
                Ok(crate::process::exit::ERROR)
            }
        }
    })
}

async fn run(args: &DemoArgs) -> anyhow::Result<i32> {
    let mut steps = Steps {
        n: 0,
        total: 7,
        started: Instant::now(),
    };
    let out = &args.out;
    for sub in ["capture", "results"] {
        let p = out.join(sub);
        if p.exists() {
            std::fs::remove_dir_all(&p).with_context(|| format!("cannot clear {}", p.display()))?;
        }
    }
    std::fs::create_dir_all(out)
        .with_context(|| format!("cannot create --out {}", out.display()))?;

    steps.next("starting PostgreSQL for production and seeding the analytics schema");
    let mut production =
        tokio::task::spawn_blocking(|| Cluster::start(&ClusterOptions::default())).await??;
    let setup = SetupConfig::new(
        production.url("postgres"),
        Profile::Analytics,
        args.organizations,
        args.users_per_org,
    );
    let seeded = crate::workload::setup(&setup).await?;
    eprintln!(
        "      {} events seeded for {} tenants",
        seeded.rows, args.organizations
    );

    steps.next(
        "copying production's starting state to the source and the target, migrating the target",
    );
    let (production, source, target) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let source = production.duplicate()?;
        let target = production.duplicate()?;
        Ok((production, source, target))
    })
    .await??;
    migrate(&target, args.scenario)?;
    if args.scenario == Scenario::Migration {
        eprintln!(
            "      target: events.duration_ms double precision -> real, index events_org_time_idx dropped"
        );
    }

    steps.next("starting Redis and the proxy in front of production, recording");
    let redis = match crate::redis_server::RedisServer::start() {
        Ok(r) => Some(r),
        Err(e) => {
            eprintln!("      no Redis ({e}); the workload uses its in-process cache");
            None
        }
    };
    let capture_dir = out.join("capture");
    let recorder = Recorder::start(RecorderConfig::new(&capture_dir, production.addr()))?;
    let mut proxy_cfg = ProxyConfig::new(production.addr());
    proxy_cfg.tap = Some(recorder.sender());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let proxy_addr = listener.local_addr()?;
    let (stop_proxy, stopped) = tokio::sync::oneshot::channel::<()>();
    let proxy = tokio::spawn(crate::proxy::serve(
        listener,
        Arc::new(proxy_cfg),
        async {
            let _ = stopped.await;
        },
        Duration::from_secs(5),
    ));

    steps.next(&format!(
        "running the analytics workload through the proxy for {:?}",
        args.duration
    ));
    let url = format!(
        "postgres://{}:{}@{proxy_addr}/postgres",
        crate::cluster::SUPERUSER,
        crate::cluster::PASSWORD
    );
    let mut wl = WorkloadConfig::new(url, Profile::Analytics);
    wl.redis_url = redis.as_ref().map(|r| r.url());
    wl.duration = args.duration;
    wl.warmup = Duration::ZERO;
    wl.events_per_second = args.events_per_second;
    wl.queries_per_second = args.queries_per_second;
    wl.refresh_interval = Duration::from_secs(3600);
    wl.progress = false;
    let summary = crate::workload::run(&wl, std::future::pending()).await?;
    eprintln!(
        "      {} operations, {} failed",
        summary.total, summary.failed
    );
    let _ = stop_proxy.send(());
    proxy.await??;
    let stats = tokio::task::spawn_blocking(move || recorder.close()).await??;
    eprintln!(
        "      captured {} events in {} files ({} dropped)",
        stats.rows,
        stats.files.len(),
        stats.dropped
    );

    steps.next(&format!(
        "replaying the capture against source and target at {}x",
        args.speed
    ));
    let results = out.join("results");
    let cfg = ReplayConfig {
        capture: capture_dir.clone(),
        source: ConnOpts::parse(&format!("{}?sslmode=disable", source.url("postgres")))?,
        target: Some(ConnOpts::parse(&format!(
            "{}?sslmode=disable",
            target.url("postgres")
        ))?),
        speed: Some(args.speed),
        results: results.clone(),
        filter: Default::default(),
        window: (None, None),
        scale: 1,
        max_connections: 200,
        threads: None,
        connect_ahead: Duration::ZERO,
        pace: crate::replay::run::Pace::Independent,
        order: crate::replay::run::OrderMode::Commit,
        order_timeout: Duration::from_secs(10),
        lock_check: true,
        shutdown_grace: Duration::from_secs(5),
        user_map: vec![],
        metrics: None,
        remap: Default::default(),
    };
    let replayed = crate::replay::replay(&cfg, std::future::pending()).await?;
    for s in &replayed.sides {
        eprintln!(
            "      {}: {} statements, {:.0}/s, lag p99 {:.2} ms (replayer's delay p99 {:.2} ms)",
            s.side,
            s.replayed,
            s.rate_per_s,
            s.lag_us.p99 as f64 / 1000.0,
            s.delay_us.p99 as f64 / 1000.0
        );
    }

    steps.next("comparing results and latency");
    let diff = crate::diff::DiffConfig::default();
    let verdict = crate::diff::run_diff(
        &results,
        &diff,
        Some((&cfg.source, cfg.target.as_ref().expect("target"))),
    )
    .await?;
    let report = out.join("report.html");
    crate::report::verdict::write_report(&verdict, &report)?;
    crate::report::verdict::write_report(&verdict, &out.join("report.md"))?;

    steps.next("verdict");
    let mut stdout = std::io::stdout().lock();
    crate::report::verdict::render(&verdict, crate::report::Format::Table, &mut stdout)?;
    use std::io::Write;
    writeln!(stdout)?;
    writeln!(stdout, "capture: {}", capture_dir.display())?;
    writeln!(stdout, "results: {}", results.display())?;
    writeln!(stdout, "report:  {} (and report.md)", report.display())?;
    writeln!(
        stdout,
        "open the capture: duckdb -c \"SELECT normalized_sql, count(*) FROM read_parquet('{}/*.parquet') \
         WHERE kind = 'statement' GROUP BY 1 ORDER BY 2 DESC LIMIT 10\"",
        capture_dir.display()
    )?;
    drop((production, source, target, redis));
    Ok(crate::process::exit::OK)
}
