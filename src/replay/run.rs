//! The replay run: connectivity checked before anything starts, then one
//! dispatcher thread streams the capture to per-session workers while a
//! writer thread per side writes the results files and keeps the summary.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::sync::{Semaphore, mpsc};

use super::args::resolve_time;
pub use super::args::{Format, Pace, ReplayArgs, ReplayConfig};
use super::client::Client;
use super::conn_opts::ConnOpts;
use super::plan::{self, Filter, Item, SessionKey};
use super::results::ResultWriter;
use super::summary::{ReplaySummary, SideStats};
use super::timer::{Clock, Timer};
use super::worker::{SessionSpec, SideCtx, run_session};
use crate::cli::exit;
use crate::fasthash::FastMap;
use crate::workers::{Spawner, WorkerPool};

/// `pgtape replay`: exit 0 when the replay ran (and, with a target, passed).
///
/// With a target, the replay ends with the diff: its verdict is printed
/// after the sides (and kept in the JSON), written to `--report`, and gives
/// the exit code, as `pgtape report RESULTS_DIR` would.
pub fn main(args: ReplayArgs) -> anyhow::Result<i32> {
    let cfg = ReplayConfig::from_args(&args)?;
    // Bad diff flags fail before anything is replayed.
    let diff = args.diff.config()?;
    if args.report.is_some() && cfg.target.is_none() {
        bail!("--report writes the verdict of source against target: add --target URL");
    }
    // Sessions run on their own workers; this runtime only watches them.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut summary = rt.block_on(replay(&cfg, crate::cli::shutdown_signal()))?;
    let mut code = exit::OK;
    if let Some(target) = &cfg.target {
        let v = rt.block_on(crate::diff::run_diff(
            &cfg.results,
            &diff,
            Some((&cfg.source, target)),
        ))?;
        if let Some(path) = &args.report {
            crate::report::verdict::write_report(&v, path)
                .with_context(|| format!("--report {}", path.display()))?;
        }
        code = v.exit_code;
        summary.verdict = Some(v);
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match args.format {
        Format::Table => {
            write!(out, "{}", summary.table())?;
            if let Some(v) = &summary.verdict {
                writeln!(out)?;
                crate::report::verdict::render(v, crate::report::Format::Table, &mut out)?;
            }
        }
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&summary)?)?,
    }
    out.flush()?;
    Ok(code)
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
        let writer = std::thread::Builder::new().name(format!("pgtape-results-{name}"));
        writers.push(writer.spawn(move || -> anyhow::Result<SideStats> {
            while let Some(rows) = rx.blocking_recv() {
                for row in rows {
                    stats.add(&row);
                    w.push(row)?;
                }
            }
            w.finish()?;
            Ok(stats)
        })?);
        sides.push(Arc::new(SideCtx {
            name,
            opts: opts.clone(),
            results: tx,
            connections: Arc::new(Semaphore::new(cfg.max_connections)),
            done: AtomicU64::new(0),
            recent: Default::default(),
            metrics: crate::metrics::replay::SideMetrics::new(name),
            remap: super::remap::SideRemap::new(cfg.remap),
        }));
    }
    // A short lead lets the first sessions connect on time.
    let lead = Duration::from_millis(50) + cfg.connect_ahead;
    let clock = Clock {
        timer: Timer::start(),
        t0: Instant::now() + lead,
        t0_wall_us: crate::proxy::pump::now_us() + lead.as_micros() as i64,
        capture_start_us: outline.start_us,
        speed: cfg.speed,
        connect_ahead: cfg.connect_ahead,
    };
    let blocked = outline
        .params_redacted
        .then_some("parameters were redacted at capture (--redact-params)");
    // Sessions run on their own thread-per-core workers (`--threads`), or on
    // the caller's runtime. The spawner outlives the dispatcher: it is
    // dropped (a pool's threads joined) once every session has ended.
    let spawner = Arc::new(match cfg.threads {
        Some(n) => Spawner::Pool(
            WorkerPool::start(n, "pgtape-replay").context("cannot start the replay threads")?,
        ),
        None => Spawner::Ambient(tokio::runtime::Handle::current()),
    });
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let dispatcher = {
        let (sides, clock, stop) = (sides.clone(), clock.clone(), stop.clone());
        let spawner = spawner.clone();
        let user_map = Arc::new(cfg.user_map.clone());
        let (filter, scale, pace) = (filter.clone(), cfg.scale, cfg.pace);
        let ro_sessions = outline.read_only_sessions.clone();
        let thread = std::thread::Builder::new().name("pgtape-dispatch".into());
        thread.spawn(move || -> anyhow::Result<()> {
            let mut sessions: FastMap<SessionKey, Vec<mpsc::Sender<Item>>> = FastMap::default();
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
                        spawner.spawn_task(async move {
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
                let item = item?;
                let key = match &item {
                    Item::Connect { key, .. }
                    | Item::Statement { key, .. }
                    | Item::Disconnect { key, .. } => key.clone(),
                };
                let disconnect = matches!(item, Item::Disconnect { .. });
                let senders = sessions.entry(key.clone()).or_insert_with(|| spawn(&key));
                // Blocks only when a session is far ahead of its schedule (or,
                // with --max-rate, of its server).
                if let Some((last, others)) = senders.split_last() {
                    for tx in others {
                        let _ = tx.blocking_send(item.clone());
                    }
                    let _ = last.blocking_send(item);
                }
                if disconnect {
                    sessions.remove(&key);
                }
            }
            drop(sessions);
            drop(alive_tx);
            Ok(())
        })?
    };
    let total = outline.statements * sides.len() as u64 + clones;
    let progress = super::progress::spawn(sides.clone(), total);
    tokio::select! {
        _ = alive_rx.recv() => {},
        _ = shutdown => {
            tracing::warn!("interrupted: finishing the statements in flight and writing results");
            stop.store(true, Ordering::Relaxed);
        }
    }
    progress.finish();
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
    // Every session has ended (their result channels are closed).
    tokio::task::spawn_blocking(move || drop(spawner)).await?;
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
