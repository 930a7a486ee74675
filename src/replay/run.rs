//! The replay run: arguments validated into a configuration, connectivity
//! checked before anything starts, then one dispatcher thread streams the
//! capture to per-session workers while a writer thread per side writes the
//! results files and keeps the summary.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::ValueEnum;
use tokio::sync::{Semaphore, mpsc};

use super::client::Client;
use super::conn_opts::ConnOpts;
use super::plan::{self, Filter, Item, SessionKey};
use super::results::ResultWriter;
use super::summary::{ReplaySummary, SideStats};
use super::timer::Timer;
use super::worker::{Clock, SessionSpec, SideCtx, run_session};
use crate::cli::exit;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Pace {
    /// Each side follows the schedule on its own: a slow target does not change the source's load.
    Independent,
    /// Each statement goes to both sides; the session waits for both.
    Lockstep,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Capture directory written by `pgtape proxy --capture`.
    pub capture: PathBuf,
    /// The database that stands for production (a copy of its starting state).
    #[arg(long, env = "PGTAPE_SOURCE")]
    pub source: String,
    /// The migration candidate; without it the replay runs against the source only.
    #[arg(long, env = "PGTAPE_TARGET")]
    pub target: Option<String>,
    /// Replay speed: 2 replays twice as fast as recorded.
    #[arg(long, default_value_t = 1.0, conflicts_with = "max_rate")]
    pub speed: f64,
    /// Ignore recorded timing: each session as fast as it can, in order.
    #[arg(long)]
    pub max_rate: bool,
    /// Where result files go.
    #[arg(long, default_value = "pgtape-results")]
    pub results: PathBuf,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Replay only read-only statements (and transaction control).
    #[arg(long)]
    pub read_only: bool,
    /// Start at this time: RFC 3339, or an offset from the capture's start (`30s`).
    #[arg(long)]
    pub from: Option<String>,
    /// Stop at this time: RFC 3339, or an offset from the capture's start (`5m`).
    #[arg(long)]
    pub until: Option<String>,
    /// Only sessions of this application_name.
    #[arg(long)]
    pub application: Option<String>,
    /// Only these captured session ids (repeatable).
    #[arg(long = "session")]
    pub sessions: Vec<i64>,
    /// Replay each read-only session N times (clones start staggered).
    #[arg(long, default_value_t = 1)]
    pub scale: u32,
    /// Connections per side at most.
    #[arg(long, default_value_t = 100)]
    pub max_connections: usize,
    #[arg(long, value_enum, default_value_t = Pace::Independent)]
    pub pace: Pace,
    /// Map captured users to replay users: `app=replay_app,batch=replay_batch`.
    #[arg(long, value_delimiter = ',')]
    pub user_map: Vec<String>,
    /// Serve Prometheus metrics at /metrics and readiness at /health on this address.
    #[arg(long, env = "PGTAPE_METRICS")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Also write the verdict to this file: .html, .json, .md, or a text table.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    #[command(flatten)]
    pub diff: crate::diff::DiffArgs,
}

/// A validated replay.
#[derive(Debug, Clone)]
pub struct ReplayConfig {
    pub capture: PathBuf,
    pub source: ConnOpts,
    pub target: Option<ConnOpts>,
    pub speed: Option<f64>,
    pub results: PathBuf,
    pub filter: Filter,
    /// Raw --from/--until, resolved once the capture's start is known.
    pub window: (Option<String>, Option<String>),
    pub scale: u32,
    pub max_connections: usize,
    pub pace: Pace,
    pub user_map: Vec<(String, String)>,
    pub metrics: Option<std::net::SocketAddr>,
}

impl ReplayConfig {
    pub fn from_args(a: &ReplayArgs) -> anyhow::Result<ReplayConfig> {
        let source = ConnOpts::parse(&a.source).context("--source")?;
        let target = a
            .target
            .as_deref()
            .map(ConnOpts::parse)
            .transpose()
            .context("--target")?;
        if !a.max_rate && !(a.speed > 0.0 && a.speed.is_finite()) {
            bail!("--speed must be a positive number (e.g. --speed 2), or use --max-rate");
        }
        if a.scale == 0 {
            bail!("--scale must be at least 1");
        }
        if a.max_connections == 0 {
            bail!("--max-connections must be at least 1");
        }
        let user_map = a
            .user_map
            .iter()
            .map(|m| {
                m.split_once('=')
                    .map(|(f, t)| (f.to_string(), t.to_string()))
            })
            .collect::<Option<Vec<_>>>()
            .context("--user-map takes captured=replay pairs, e.g. --user-map app=replay_app")?;
        let filter = Filter {
            read_only: a.read_only,
            application: a.application.clone(),
            sessions: (!a.sessions.is_empty()).then(|| a.sessions.iter().copied().collect()),
            ..Default::default()
        };
        Ok(ReplayConfig {
            capture: a.capture.clone(),
            source,
            target,
            speed: (!a.max_rate).then_some(a.speed),
            results: a.results.clone(),
            filter,
            window: (a.from.clone(), a.until.clone()),
            scale: a.scale,
            max_connections: a.max_connections,
            pace: a.pace,
            user_map,
            metrics: a.metrics,
        })
    }
}

fn resolve_time(s: &str, start_us: i64, flag: &str) -> anyhow::Result<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_micros());
    }
    let d = crate::cli::parse_duration(s)
        .map_err(|_| anyhow::anyhow!("{flag} {s:?}: use an RFC 3339 time (2026-11-23T12:00:00Z) or an offset from the capture's start (30s, 5m)"))?;
    Ok(start_us + d.as_micros() as i64)
}

/// `pgtape replay`: exit 0 when the replay ran (verdicts come from the diff).
pub fn main(args: ReplayArgs) -> anyhow::Result<i32> {
    let cfg = ReplayConfig::from_args(&args)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let summary = rt.block_on(replay(&cfg, crate::cli::shutdown_signal()))?;
    match args.format {
        Format::Table => print!("{}", summary.table()),
        Format::Json => println!("{}", serde_json::to_string_pretty(&summary)?),
    }
    Ok(exit::OK)
}

/// Raises the open-file limit to what `needed` connections take, or says why not.
fn ensure_fds(needed: u64) -> anyhow::Result<()> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Ok(());
        }
        let want = (needed + 256).min(lim.rlim_max);
        if lim.rlim_cur < want {
            lim.rlim_cur = want;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
    if lim.rlim_max < needed + 64 {
        bail!(
            "replay needs {needed} connections but the open-file limit is {}; raise it (ulimit -n)",
            lim.rlim_max
        );
    }
    Ok(())
}

/// Runs a replay to the end (or until `shutdown`), returning its summary.
pub async fn replay(
    cfg: &ReplayConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<ReplaySummary> {
    let cap = plan::open(&cfg.capture)?;
    let mut filter = cfg.filter.clone();
    if cfg.window.0.is_some() || cfg.window.1.is_some() {
        let o = plan::outline(&cap, &Filter::default())?;
        filter.from_us = cfg
            .window
            .0
            .as_deref()
            .map(|s| resolve_time(s, o.start_us, "--from"))
            .transpose()?;
        filter.until_us = cfg
            .window
            .1
            .as_deref()
            .map(|s| resolve_time(s, o.start_us, "--until"))
            .transpose()?;
    }
    let outline = plan::outline(&cap, &filter)?;
    let clones = outline.read_only_sessions.len() as u64 * (cfg.scale as u64 - 1);
    let peak = outline.peak_sessions
        + if cfg.scale > 1 {
            outline.peak_sessions * (cfg.scale as u64 - 1)
        } else {
            0
        };
    if peak as usize > cfg.max_connections {
        bail!(
            "the capture has {} sessions open at once{}; this replay needs {peak} connections per side: \
             raise --max-connections to {peak}, or narrow it with --session, --application, --from/--until",
            outline.peak_sessions,
            if cfg.scale > 1 {
                format!(" (×{} with --scale)", cfg.scale)
            } else {
                String::new()
            }
        );
    }
    let sides_opts: Vec<(&'static str, ConnOpts)> = std::iter::once(("source", cfg.source.clone()))
        .chain(cfg.target.clone().map(|t| ("target", t)))
        .collect();
    ensure_fds(peak * sides_opts.len() as u64)?;
    let _exporter = match cfg.metrics {
        Some(addr) => {
            let (exporter, local) = crate::metrics::replay::install(addr).await?;
            for (name, opts) in &sides_opts {
                exporter
                    .health
                    .probe_postgres(name, opts.addr(), Duration::from_secs(2));
            }
            tracing::info!(metrics = %local, "serving /metrics and /health");
            crate::metrics::replay::planned(outline.statements);
            Some(exporter)
        }
        None => None,
    };
    // Fail fast, with the URL, before any session starts.
    for (_, opts) in &sides_opts {
        let c = Client::connect(opts, &opts.user, &[]).await?;
        c.terminate().await;
    }
    let meta = vec![
        (
            "pgtape.results.capture".to_string(),
            cfg.capture.display().to_string(),
        ),
        (
            "pgtape.results.speed".to_string(),
            cfg.speed
                .map(|s| s.to_string())
                .unwrap_or_else(|| "max".into()),
        ),
    ];
    let mut writers = Vec::new();
    let mut sides = Vec::new();
    for (name, opts) in &sides_opts {
        let (tx, mut rx) = mpsc::channel::<Vec<_>>(256);
        let mut w = ResultWriter::create(&cfg.results, name, &meta)?;
        let mut stats = SideStats::new(name, opts.display());
        writers.push(std::thread::spawn(move || -> anyhow::Result<SideStats> {
            while let Some(rows) = rx.blocking_recv() {
                for row in rows {
                    stats.add(&row);
                    w.push(row)?;
                }
            }
            w.finish()?;
            Ok(stats)
        }));
        sides.push(Arc::new(SideCtx {
            name,
            opts: opts.clone(),
            results: tx,
            connections: Arc::new(Semaphore::new(cfg.max_connections)),
            done: AtomicU64::new(0),
        }));
    }
    let clock = Clock {
        timer: Timer::start(),
        // A short lead lets the first sessions connect on time.
        t0: Instant::now() + Duration::from_millis(50),
        t0_wall_us: crate::proxy::pump::now_us() + 50_000,
        capture_start_us: outline.start_us,
        speed: cfg.speed,
    };
    let blocked = outline
        .params_redacted
        .then_some("parameters were redacted at capture (--redact-params)");
    let handle = tokio::runtime::Handle::current();
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let dispatcher = {
        let (sides, clock, stop) = (sides.clone(), clock.clone(), stop.clone());
        let user_map = Arc::new(cfg.user_map.clone());
        let (filter, scale, pace) = (filter.clone(), cfg.scale, cfg.pace);
        let ro_sessions = outline.read_only_sessions.clone();
        std::thread::spawn(move || -> anyhow::Result<()> {
            let mut sessions: HashMap<SessionKey, Vec<mpsc::Sender<Arc<Item>>>> = HashMap::new();
            let spawn = |key: &SessionKey| {
                let copies = if scale > 1 && ro_sessions.contains(key) {
                    scale
                } else {
                    1
                };
                let groups: Vec<Vec<Arc<SideCtx>>> = match pace {
                    Pace::Lockstep => vec![sides.clone()],
                    Pace::Independent => sides.iter().map(|s| vec![s.clone()]).collect(),
                };
                let mut senders = Vec::new();
                for clone in 0..copies {
                    for group in &groups {
                        let (tx, rx) = mpsc::channel(1024);
                        let spec = SessionSpec {
                            sides: group.clone(),
                            clock: clock.clone(),
                            clone: clone as i32,
                            delay: Duration::from_millis(50 * clone as u64),
                            user_map: user_map.clone(),
                            blocked,
                        };
                        let alive = alive_tx.clone();
                        handle.spawn(async move {
                            run_session(spec, rx).await;
                            drop(alive);
                        });
                        senders.push(tx);
                    }
                }
                senders
            };
            for item in plan::items(&cap, filter) {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let item = Arc::new(item?);
                let key = match &*item {
                    Item::Connect { key, .. }
                    | Item::Statement { key, .. }
                    | Item::Disconnect { key, .. } => key.clone(),
                };
                let senders = sessions.entry(key.clone()).or_insert_with(|| spawn(&key));
                for tx in senders.iter() {
                    // Blocks only when a session is far ahead of its schedule.
                    let _ = tx.blocking_send(item.clone());
                }
                if matches!(&*item, Item::Disconnect { .. }) {
                    sessions.remove(&key);
                }
            }
            drop(sessions);
            drop(alive_tx);
            Ok(())
        })
    };
    let total = outline.statements * sides.len() as u64 + clones;
    let progress = progress(sides.clone(), total);
    tokio::select! {
        _ = alive_rx.recv() => {},
        _ = shutdown => {
            tracing::warn!("interrupted: finishing the statements in flight and writing results");
            stop.store(true, Ordering::Relaxed);
        }
    }
    progress.abort();
    let dispatched = tokio::task::spawn_blocking(move || dispatcher.join()).await?;
    dispatched.map_err(|_| anyhow::anyhow!("the dispatcher panicked"))??;
    drop(sides);
    let mut summaries = Vec::new();
    for w in writers {
        let stats = tokio::task::spawn_blocking(move || w.join())
            .await?
            .map_err(|_| anyhow::anyhow!("a results writer panicked"))??;
        summaries.push(stats.finish());
    }
    Ok(ReplaySummary {
        capture: cfg.capture.display().to_string(),
        results: cfg.results.display().to_string(),
        speed: cfg.speed,
        pace: match cfg.pace {
            Pace::Independent => "independent",
            Pace::Lockstep => "lockstep",
        },
        sessions: outline.sessions,
        captured_statements: outline.statements,
        sides: summaries,
        verdict: None,
    })
}

/// A progress line on stderr when it is a terminal.
fn progress(sides: Vec<Arc<SideCtx>>, total: u64) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        use std::io::IsTerminal;
        let terminal = std::io::stderr().is_terminal();
        let started = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let done: u64 = sides.iter().map(|s| s.done.load(Ordering::Relaxed)).sum();
            crate::metrics::replay::progress(done, total);
            if !terminal || total == 0 {
                continue;
            }
            let secs = started.elapsed().as_secs_f64();
            let rate = done as f64 / secs.max(0.001);
            let eta = if rate > 0.0 {
                (total.saturating_sub(done)) as f64 / rate
            } else {
                0.0
            };
            let per_side: Vec<String> = sides
                .iter()
                .map(|s| format!("{} {}", s.name, s.done.load(Ordering::Relaxed)))
                .collect();
            eprint!(
                "\r{:>5.1}% {done}/{total} statements, {rate:.0}/s, ETA {eta:.0}s ({})   ",
                100.0 * done as f64 / total as f64,
                per_side.join(", ")
            );
        }
    })
}
