//! One replayed session: connects when the capture says it connected, runs
//! each statement at its scheduled time (never before the previous one
//! finished), after the sync points it depends on (`--order commit`), on
//! one side, or on both at once in lockstep, and sends one result row per
//! statement per side. A statement error never stops the session; a lost
//! connection marks the rest of it not replayed, with the reason.
//!
//! Stopping: once `stop` is cancelled no statement starts (waits for the
//! clock or for order end at once), and what is left is reported
//! `not_replayed` / `interrupted`; once `abort` is cancelled the statements
//! in flight are abandoned too. Every sync point a statement carries is
//! completed on every side whatever happened to it, so no other session
//! waits for a statement that will never run.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::client::Client;
use super::conn_opts::ConnOpts;
use super::order::{Gate, SideOrder, Slot, Waited, task_key};
use super::plan::{Item, OrderTag};
use super::queue::SessionQueue;
use super::results::{Captured, ResultRow};
use super::timer::Clock;

mod report;
use report::{Run, Timing, flush, not_replayed, report, run_on};

/// One side of the replay.
pub struct SideCtx {
    pub name: &'static str,
    pub opts: ConnOpts,
    /// Result rows go to the side's writer in batches (one wake-up per batch).
    pub results: mpsc::Sender<Vec<ResultRow>>,
    /// Connections this side may hold at once (`--max-connections`).
    pub connections: Arc<Semaphore>,
    pub done: AtomicU64,
    /// The worst lag and delay since the progress line's last tick.
    pub recent: super::progress::Recent,
    pub metrics: crate::metrics::replay::SideMetrics,
    /// The order of effects across sessions (`--order commit`).
    pub order: Option<Arc<SideOrder>>,
    /// Values mapped on this side (`--remap`); each session takes its own.
    pub remap: super::remap::SideRemap,
}

/// What a session worker is told at spawn.
pub struct SessionSpec {
    pub sides: Vec<Arc<SideCtx>>,
    pub clock: Clock,
    /// The captured session's index (the dispatcher's), for the order's
    /// bookkeeping.
    pub index: u32,
    pub clone: i32,
    /// Clones start this much later than the original session.
    pub delay: Duration,
    pub user_map: Arc<Vec<(String, String)>>,
    /// Why statements cannot be replayed faithfully at all (redacted parameters).
    pub blocked: Option<&'static str>,
    /// No statement starts once cancelled.
    pub stop: CancellationToken,
    /// Statements in flight are abandoned once cancelled.
    pub abort: CancellationToken,
}

struct Conn {
    client: Option<Client>,
    /// Rows not yet handed to the writer.
    pending: Vec<ResultRow>,
    dead: Option<String>,
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
    /// This session on the side's order (its backend, whether it waits).
    slot: Arc<Slot>,
    remap: super::remap::SessionRemap,
}

const INTERRUPTED: &str = "interrupted: the replay was stopped (SIGTERM or SIGINT)";

pub async fn run_session(spec: SessionSpec, queue: Arc<SessionQueue>) {
    let task = task_key(spec.index, spec.clone);
    let mut conns: Vec<Conn> = spec
        .sides
        .iter()
        .map(|side| Conn {
            client: None,
            pending: Vec::new(),
            dead: None,
            _permit: None,
            slot: side
                .order
                .as_ref()
                .map_or_else(Default::default, |o| o.register(task)),
            remap: side.remap.session(),
        })
        .collect();
    let mut startup: Option<(String, Vec<(String, String)>)> = None;
    // When the session could next send: its previous statement (or its
    // connect) done. A statement starts at this or when due, whichever is
    // later; what passes beyond that is the replayer's own delay.
    let mut ready = Instant::now();
    // Whether the session may hold locks others wait for (inside a
    // transaction, or after an advisory lock): only then does it make the
    // dispatcher read ahead for it when its queue runs dry.
    let (mut in_txn, mut advisory) = (false, false);
    'items: while let Some(run) = queue.next_run(in_txn || advisory).await {
        let run = match run {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot read a session's items back from the replay spool");
                break;
            }
        };
        for item in run {
            match item {
                Item::Connect {
                    ts_us,
                    user,
                    params,
                    ..
                } => {
                    let at = spec.clock.connect_due(ts_us, spec.delay);
                    if !until(&spec.stop, spec.clock.wait(at)).await {
                        continue;
                    }
                    startup = Some((user, params));
                    for (side, conn) in spec.sides.iter().zip(conns.iter_mut()) {
                        connect(side, conn, &spec, startup.as_ref()).await;
                    }
                    ready = Instant::now();
                }
                Item::Statement {
                    captured,
                    named,
                    order,
                    ..
                } => {
                    in_txn = captured.tx_status != b'I';
                    advisory |= captured.facts.advisory;
                    let s = Statement {
                        captured: &captured,
                        named,
                        order: &order,
                    };
                    statement(&spec, &mut conns, s, &mut ready, startup.as_ref()).await;
                }
                Item::Disconnect { .. } => break 'items,
            }
        }
    }
    for (side, mut conn) in spec.sides.iter().zip(conns) {
        flush(side, &mut conn.pending).await;
        if let Some(o) = &side.order {
            o.unregister(task);
        }
        // Held since a connect succeeded, whether the connection is still
        // open, was lost, or was abandoned.
        if conn._permit.is_some() {
            crate::metrics::replay::session(side.name, -1.0);
        }
        if let Some(c) = conn.client {
            c.terminate().await;
        }
    }
}

/// Runs `fut` unless `stop` comes first; whether it ran.
async fn until(stop: &CancellationToken, fut: impl std::future::Future<Output = ()>) -> bool {
    tokio::select! {
        biased;
        _ = stop.cancelled() => false,
        _ = fut => true,
    }
}

struct Statement<'a> {
    captured: &'a Arc<Captured>,
    named: bool,
    order: &'a OrderTag,
}

/// One statement on every side of the session, from its schedule to its
/// result rows; its sync point completed on every side whatever happened.
async fn statement(
    spec: &SessionSpec,
    conns: &mut [Conn],
    s: Statement<'_>,
    ready: &mut Instant,
    startup: Option<&(String, Vec<(String, String)>)>,
) {
    let due = spec.clock.due(s.captured.ts_us, spec.delay);
    let interrupted = || Some(Cow::Borrowed(INTERRUPTED));
    let skip = if spec.stop.is_cancelled() {
        interrupted()
    } else {
        for (side, conn) in spec.sides.iter().zip(conns.iter_mut()) {
            if conn.client.is_none() && conn.dead.is_none() {
                connect(side, conn, spec, startup).await;
                *ready = Instant::now();
            }
        }
        spec.blocked
            .map(Cow::Borrowed)
            .or_else(|| super::exec::skip_reason(s.captured))
    };
    let skip = match skip {
        Some(r) => Some(r),
        None if !until(&spec.stop, spec.clock.wait(due)).await => interrupted(),
        None => None,
    };
    // Per side: how the wait for order went, and when it ended.
    let mut waits: Vec<(Waited, Duration, Instant)> = Vec::with_capacity(conns.len());
    let mut skip = skip;
    if skip.is_none() {
        for (side, conn) in spec.sides.iter().zip(conns.iter()) {
            let t = Instant::now();
            let w = match &side.order {
                Some(o) if conn.client.is_some() => {
                    tokio::select! {
                        biased;
                        _ = spec.stop.cancelled() => None,
                        w = wait_order(o, s.order, &conn.slot) => Some(w),
                    }
                }
                _ => Some(Waited::default()),
            };
            match w {
                Some(w) => {
                    let waited = if w.waited {
                        t.elapsed()
                    } else {
                        Duration::ZERO
                    };
                    waits.push((w, waited, Instant::now()));
                }
                None => {
                    skip = interrupted();
                    break;
                }
            }
        }
    }
    // The original session (not a clone) settles its own entries.
    let own = spec.clone == 0;
    match skip {
        Some(reason) => {
            for (side, conn) in spec.sides.iter().zip(conns.iter_mut()) {
                not_replayed(side, conn, spec, s.captured, due, reason.to_string()).await;
            }
        }
        None => {
            // Later commits of its tables may go once each side holds the
            // statement's snapshot (sent, at the least).
            if let (true, Some(key)) = (own, s.order.sent) {
                for (side, conn) in spec.sides.iter().zip(conns.iter_mut()) {
                    match (&side.order, conn.client.as_mut()) {
                        (Some(o), Some(c)) => {
                            let o = o.clone();
                            c.on_snapshot(Box::new(move || o.remove(Gate::Sent, key)));
                        }
                        (Some(o), None) => o.remove(Gate::Sent, key),
                        _ => {}
                    }
                }
            }
            let could_start = due.map_or(*ready, |d| d.max(*ready));
            run_statement(spec, conns, &s, due, could_start, &waits).await;
            *ready = Instant::now();
        }
    }
    if own {
        let entries = [
            (Gate::Sent, s.order.sent),
            (Gate::Done, s.order.sync),
            (Gate::Seq, s.order.seq),
        ];
        for side in &spec.sides {
            if let Some(o) = &side.order {
                o.remove_all(&entries);
            }
        }
    }
}

/// Waits on one side until the statement may be sent: it sees what it saw
/// (sync points before it ran), and, ending a writing transaction, is seen
/// by no statement that started before it (they have been sent).
async fn wait_order(o: &SideOrder, tag: &OrderTag, slot: &Slot) -> Waited {
    let mut w = Waited::default();
    for (gate, after, tables) in [
        (Gate::Done, tag.after, &tag.tables),
        (Gate::Sent, tag.publish, &tag.sync_tables),
        (Gate::Seq, tag.seq.map(|k| k.0), &tag.seq_tables),
    ] {
        if let Some(after) = after {
            let x = o.wait(gate, after, tables, slot).await;
            w.waited |= x.waited;
            w.released |= x.released;
        }
    }
    w
}

async fn connect(
    side: &SideCtx,
    conn: &mut Conn,
    spec: &SessionSpec,
    startup: Option<&(String, Vec<(String, String)>)>,
) {
    let permit = side
        .connections
        .clone()
        .acquire_owned()
        .await
        .expect("semaphore never closed");
    let captured_user = startup.map(|s| s.0.as_str()).unwrap_or("");
    let user = spec
        .user_map
        .iter()
        .find(|(from, _)| from == captured_user)
        .map(|(_, to)| to.as_str())
        .unwrap_or(&side.opts.user);
    let params = startup.map(|s| s.1.as_slice()).unwrap_or(&[]);
    match Client::connect(&side.opts, user, params).await {
        Ok(c) => {
            crate::metrics::replay::session(side.name, 1.0);
            conn.slot
                .pid
                .store(c.pid(), std::sync::atomic::Ordering::Relaxed);
            conn.client = Some(c);
            conn._permit = Some(permit);
        }
        Err(e) => conn.dead = Some(format!("connect failed: {e}")),
    }
}

/// Runs one statement on every live side at once and reports each.
async fn run_statement(
    spec: &SessionSpec,
    conns: &mut [Conn],
    s: &Statement<'_>,
    due: Option<Instant>,
    could_start: Instant,
    waits: &[(Waited, Duration, Instant)],
) {
    let due = due.unwrap_or_else(Instant::now);
    let timing = |i: usize| {
        let (w, waited, at) = waits[i];
        Timing {
            due,
            // Time spent waiting for order is the capture's, not the replayer's.
            could_start: if w.waited {
                could_start.max(at)
            } else {
                could_start
            },
            order: w,
            order_wait: waited,
        }
    };
    let (captured, named) = (&**s.captured, s.named);
    if let [conn] = conns {
        // One side (independent pacing): no joining, nothing to allocate.
        let run = tokio::select! {
            biased;
            r = run_on(conn, captured, named) => r,
            _ = spec.abort.cancelled() => abandon(conn),
        };
        return report(spec, &spec.sides[0], conn, s.captured, timing(0), run).await;
    }
    let runs = conns.iter_mut().map(|c| run_on(c, captured, named));
    let results: Option<Vec<Run>> = tokio::select! {
        biased;
        r = crate::workers::join_all(runs.collect()) => Some(r),
        _ = spec.abort.cancelled() => None,
    };
    let results = results.unwrap_or_else(|| conns.iter_mut().map(abandon).collect());
    for (i, ((side, conn), run)) in spec
        .sides
        .iter()
        .zip(conns.iter_mut())
        .zip(results)
        .enumerate()
    {
        report(spec, side, conn, s.captured, timing(i), run).await;
    }
}

/// A statement in flight when the grace ran out: the connection is closed
/// (its protocol state is unknown) and the statement not replayed.
fn abandon(conn: &mut Conn) -> Run {
    conn.client = None;
    conn.dead = Some(INTERRUPTED.to_string());
    (Instant::now(), Err(INTERRUPTED.to_string()))
}
