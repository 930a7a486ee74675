//! The replay run: once `preflight.rs` has checked and loaded what the run
//! needs (the capture, connectivity, the catalog), the
//! [`super::dispatch`] thread streams the capture to per-session workers,
//! an order watchdog per side breaks replay-made lock cycles
//! (`--order commit`), and a writer thread per side writes the results
//! files and keeps the summary.
//!
//! Stopping (SIGTERM, SIGINT): the dispatcher stops reading and no
//! statement starts; those in flight get `--shutdown-grace`, then are
//! abandoned; every statement handed to a session and not run is written
//! `not_replayed` / `interrupted`, the results files are closed readable,
//! and `pgtape replay` ([`crate::cli::replay`]) exits 2. A second signal
//! exits at once.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

pub use super::args::{Format, OrderMode, Pace, ReplayArgs, ReplayConfig};
use super::conn_opts::ConnOpts;
use super::dispatch::{Dispatcher, ReadAhead, Spawn};
use super::order::SideOrder;
use super::plan::{self, SessionKey};
use super::preflight::{Preflight, preflight};
use super::queue::{Pressure, SessionQueue};
use super::results::{ResultWriter, ResultsError};
use super::spool::Spool;
use super::summary::{ReplaySummary, SideStats, SideSummary};
use super::timer::{Clock, Timer};
use super::watchdog::Watchdog;
use super::worker::{SessionSpec, SideCtx, run_session};
use crate::workers::{Spawner, WorkerPool};

/// Runs a replay to the end (or until `shutdown`), returning its summary.
pub async fn replay(
    cfg: &ReplayConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<ReplaySummary> {
    let Preflight {
        cap,
        filter,
        outline,
        sides: sides_opts,
        exporter: _exporter,
        catalog,
    } = preflight(cfg).await?;
    let pressure = Arc::new(Pressure::default());
    let stop = CancellationToken::new();
    let abort = CancellationToken::new();
    let (sides, writers) = start_sides(
        cfg,
        &sides_opts,
        (catalog.tables(), catalog.sequences.count()),
        &pressure,
        (&stop, &abort),
    )?;
    let outline = Arc::new(outline);
    // A short lead lets the first sessions connect on time.
    let lead = Duration::from_millis(50) + cfg.connect_ahead;
    let clock = Clock {
        timer: Timer::start(),
        t0: Instant::now() + lead,
        t0_wall_us: crate::clock::now_us() + lead.as_micros() as i64,
        capture_start_us: outline.start_us,
        speed: cfg.speed,
        connect_ahead: cfg.connect_ahead,
    };
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
    let dispatcher = {
        let d = Dispatcher {
            items: plan::items(&cap, filter),
            order: (cfg.order == OrderMode::Commit).then(|| {
                sides
                    .iter()
                    .map(|s| s.order.clone().expect("order state with --order commit"))
                    .collect()
            }),
            pressure: pressure.clone(),
            read_ahead: match cfg.speed {
                Some(speed) => ReadAhead::Paced {
                    clock: clock.clone(),
                    horizon: Duration::from_secs(2).max(Duration::from_micros(
                        ((outline.max_lateness_us as f64 + 1e6) / speed) as u64,
                    )),
                },
                None => ReadAhead::MaxRate { budget: READ_AHEAD },
            },
            stop: stop.clone(),
            catalog,
            outline: outline.clone(),
            spool: match Spool::create(&cfg.results) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(dir = %cfg.results.display(), error = %e, "cannot create the replay spool; sessions far behind will be held in memory");
                    None
                }
            },
            spawn: spawn_sessions(
                cfg,
                &outline,
                &sides,
                &clock,
                (&stop, &abort),
                spawner.clone(),
                pressure.clone(),
                alive_tx,
            ),
        };
        let thread = std::thread::Builder::new().name("pgtape-dispatch".into());
        thread.spawn(move || d.run())?
    };
    let watchdogs: Vec<_> = sides
        .iter()
        .filter_map(|s| {
            let order = s.order.clone()?;
            Some(tokio::spawn(
                Watchdog {
                    side: s.name,
                    order,
                    opts: s.opts.clone(),
                    detect: cfg.lock_check,
                    timeout: cfg.order_timeout,
                    stop: stop.clone(),
                }
                .run(),
            ))
        })
        .collect();
    let total = outline.statements * sides.len() as u64;
    let progress = super::progress::spawn(sides.clone(), total);
    let interrupted = wait_for_sessions(&mut alive_rx, shutdown, &stop, &abort, cfg).await;
    stop.cancel();
    progress.finish();
    for s in &sides {
        if let Some(o) = &s.order {
            o.close();
        }
    }
    for w in watchdogs {
        let _ = w.await;
    }
    let dispatched = tokio::task::spawn_blocking(move || dispatcher.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the dispatcher panicked"))??;
    tracing::debug!(?dispatched, "capture dispatched");
    let releases: Vec<(u64, u64)> = sides
        .iter()
        .map(|s| s.order.as_ref().map_or((0, 0), |o| o.releases()))
        .collect();
    drop(sides);
    let sides = join_writers(writers, releases, spawner, cfg).await?;
    Ok(ReplaySummary {
        capture: cfg.capture.display().to_string(),
        results: cfg.results.display().to_string(),
        speed: cfg.speed,
        pace: match cfg.pace {
            Pace::Independent => "independent",
            Pace::Lockstep => "lockstep",
        },
        order: match cfg.order {
            OrderMode::Session => "session",
            OrderMode::Commit => "commit",
        },
        interrupted,
        sessions: outline.sessions,
        captured_statements: outline.statements,
        sides,
    })
}

/// Waits for each side's results writer and finishes its summary with the
/// order releases its side counted; then drops the spawner (every session
/// has ended: their result channels are closed). A writer that could not
/// write fails the replay, naming --results.
async fn join_writers(
    writers: Vec<Writer>,
    releases: Vec<(u64, u64)>,
    spawner: Arc<Spawner>,
    cfg: &ReplayConfig,
) -> anyhow::Result<Vec<SideSummary>> {
    let mut summaries = Vec::new();
    let mut failed = None;
    for (w, (cycles, timeouts)) in writers.into_iter().zip(releases) {
        let stats = tokio::task::spawn_blocking(move || w.join())
            .await?
            .map_err(|_| anyhow::anyhow!("a results writer panicked"))?;
        match stats {
            Ok(stats) => {
                let mut s = stats.finish();
                s.order.released_cycles = cycles;
                s.order.released_timeouts = timeouts;
                summaries.push(s);
            }
            Err(e) => failed = failed.or(Some(e)),
        }
    }
    tokio::task::spawn_blocking(move || drop(spawner)).await?;
    if let Some(e) = failed {
        return Err(anyhow::anyhow!(
            "cannot write the replay's results in {}: {e}; free space there or pass another directory with --results",
            cfg.results.display()
        ));
    }
    Ok(summaries)
}

/// Items the dispatcher keeps in memory ahead of `--max-rate` sessions
/// (more only while a session has run dry).
const READ_AHEAD: i64 = 16 * 1024;

type Writer = std::thread::JoinHandle<Result<SideStats, ResultsError>>;

/// Each side's context and its results writer thread.
fn start_sides(
    cfg: &ReplayConfig,
    sides_opts: &[(&'static str, ConnOpts)],
    tables: (usize, usize),
    pressure: &Arc<Pressure>,
    (stop, abort): (&CancellationToken, &CancellationToken),
) -> anyhow::Result<(Vec<Arc<SideCtx>>, Vec<Writer>)> {
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
    for (name, opts) in sides_opts {
        let (tx, mut rx) = mpsc::channel::<Vec<_>>(256);
        let mut w = ResultWriter::create(&cfg.results, name, &meta).with_context(|| {
            format!(
                "cannot write the replay's results in {}; free space there or pass another directory with --results",
                cfg.results.display()
            )
        })?;
        let tmp = w.tmp_path().to_path_buf();
        let mut stats = SideStats::new(name, opts.display());
        let writer = std::thread::Builder::new().name(format!("pgtape-results-{name}"));
        let (stop, abort) = (stop.clone(), abort.clone());
        writers.push(writer.spawn(move || -> Result<SideStats, ResultsError> {
            let written = (|| {
                while let Some(rows) = rx.blocking_recv() {
                    for row in rows {
                        stats.add(&row);
                        w.push(row)?;
                    }
                }
                w.finish()
            })();
            if let Err(e) = &written {
                // Results that cannot be written are not worth running
                // for: the replay stops at once, statements in flight too.
                tracing::error!(error = %e, "cannot write the results: stopping the replay");
                stop.cancel();
                abort.cancel();
                // A file cut before its footer is unreadable: free its space.
                let _ = std::fs::remove_file(&tmp);
            }
            written.map(|_| stats)
        })?);
        sides.push(Arc::new(SideCtx {
            name,
            opts: opts.clone(),
            results: tx,
            connections: Arc::new(Semaphore::new(cfg.max_connections)),
            done: AtomicU64::new(0),
            recent: Default::default(),
            metrics: crate::metrics::replay::SideMetrics::new(name),
            order: (cfg.order == OrderMode::Commit)
                .then(|| Arc::new(SideOrder::new(tables.0, tables.1, pressure.clone()))),
            remap: super::remap::SideRemap::new(cfg.remap),
        }));
    }
    Ok((sides, writers))
}

/// What the dispatcher calls for each new captured session: its queues,
/// one per replayed copy (clones of read-only sessions with `--scale`) and
/// side group (both sides together in lockstep, one each otherwise), each
/// with its session task spawned.
#[allow(clippy::too_many_arguments)]
fn spawn_sessions(
    cfg: &ReplayConfig,
    outline: &plan::Outline,
    sides: &[Arc<SideCtx>],
    clock: &Clock,
    (stop, abort): (&CancellationToken, &CancellationToken),
    spawner: Arc<Spawner>,
    pressure: Arc<Pressure>,
    alive: mpsc::Sender<()>,
) -> Spawn {
    let groups: Vec<Vec<Arc<SideCtx>>> = match cfg.pace {
        Pace::Lockstep => vec![sides.to_vec()],
        Pace::Independent => sides.iter().map(|s| vec![s.clone()]).collect(),
    };
    let user_map = Arc::new(cfg.user_map.clone());
    let blocked = outline
        .params_redacted
        .then_some("parameters were redacted at capture (--redact-params)");
    let ro_sessions = outline.read_only_sessions.clone();
    let (scale, clock, stop, abort) = (cfg.scale, clock.clone(), stop.clone(), abort.clone());
    Box::new(move |key: &SessionKey, index: u32| {
        let copies = if scale > 1 && ro_sessions.contains(key) {
            scale
        } else {
            1
        };
        let mut queues = Vec::new();
        for clone in 0..copies {
            for group in &groups {
                let queue = SessionQueue::new(key.clone(), pressure.clone());
                let spec = SessionSpec {
                    sides: group.clone(),
                    clock: clock.clone(),
                    index,
                    clone: clone as i32,
                    delay: Duration::from_millis(50 * clone as u64),
                    user_map: user_map.clone(),
                    blocked,
                    stop: stop.clone(),
                    abort: abort.clone(),
                };
                let alive = alive.clone();
                let q = queue.clone();
                spawner.spawn_task(async move {
                    run_session(spec, q).await;
                    drop(alive);
                });
                queues.push(queue);
            }
        }
        queues
    })
}

/// Waits until every session has ended, or the replay is stopped: then no
/// statement starts, those in flight get the grace, and the rest are
/// abandoned. Returns whether the replay was interrupted.
async fn wait_for_sessions(
    alive: &mut mpsc::Receiver<()>,
    shutdown: impl std::future::Future<Output = ()>,
    stop: &CancellationToken,
    abort: &CancellationToken,
    cfg: &ReplayConfig,
) -> bool {
    tokio::select! {
        _ = alive.recv() => return false,
        _ = shutdown => {}
    }
    tracing::warn!(
        grace_s = cfg.shutdown_grace.as_secs_f64(),
        "interrupted: no statement starts; those in flight get the grace, then the results are written"
    );
    stop.cancel();
    if tokio::time::timeout(cfg.shutdown_grace, alive.recv())
        .await
        .is_err()
    {
        tracing::warn!("the grace is over: abandoning the statements still in flight");
        abort.cancel();
        let _ = alive.recv().await;
    }
    true
}
