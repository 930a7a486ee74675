//! One replayed session: connects when the capture says it connected, runs
//! each statement at its scheduled time (never before the previous one
//! finished) on one side, or on both at once in lockstep, and sends one result
//! row per statement per side. A statement error never stops the session; a
//! lost connection marks the rest of it not replayed, with the reason.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc};

use super::client::{Client, Outcome};
use super::conn_opts::ConnOpts;
use super::plan::Item;
use super::results::{Captured, ResultRow, Status};
use super::timer::Clock;

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
    /// Values mapped on this side (`--remap`); each session takes its own.
    pub remap: super::remap::SideRemap,
}

/// What a session worker is told at spawn.
pub struct SessionSpec {
    pub sides: Vec<Arc<SideCtx>>,
    pub clock: Clock,
    pub clone: i32,
    /// Clones start this much later than the original session.
    pub delay: Duration,
    pub user_map: Arc<Vec<(String, String)>>,
    /// Why statements cannot be replayed faithfully at all (redacted parameters).
    pub blocked: Option<&'static str>,
}

struct Conn {
    client: Option<Client>,
    /// Rows not yet handed to the writer.
    pending: Vec<ResultRow>,
    dead: Option<String>,
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
    remap: super::remap::SessionRemap,
}

/// Most items a session takes from its channel at once.
const ITEM_RUN: usize = 64;

/// The session's next item. Items are taken from the channel in runs: one
/// wake-up of the session, and of a dispatcher waiting for room, per run
/// rather than per statement. `queued` holds a run in reverse order.
async fn next_item(rx: &mut mpsc::Receiver<Item>, queued: &mut Vec<Item>) -> Option<Item> {
    if queued.is_empty() && rx.recv_many(queued, ITEM_RUN).await > 0 {
        queued.reverse();
    }
    queued.pop()
}

pub async fn run_session(spec: SessionSpec, mut rx: mpsc::Receiver<Item>) {
    let mut conns: Vec<Conn> = spec
        .sides
        .iter()
        .map(|side| Conn {
            client: None,
            pending: Vec::new(),
            dead: None,
            _permit: None,
            remap: side.remap.session(),
        })
        .collect();
    let mut startup: Option<(String, Vec<(String, String)>)> = None;
    let mut queued = Vec::with_capacity(ITEM_RUN);
    // When the session could next send: its previous statement (or its
    // connect) done. A statement starts at this or when due, whichever is
    // later; what passes beyond that is the replayer's own delay.
    let mut ready = Instant::now();
    while let Some(item) = next_item(&mut rx, &mut queued).await {
        match &item {
            Item::Connect {
                ts_us,
                user,
                params,
                ..
            } => {
                let at = spec.clock.connect_due(*ts_us, spec.delay);
                spec.clock.wait(at).await;
                startup = Some((user.clone(), params.clone()));
                for (side, conn) in spec.sides.iter().zip(conns.iter_mut()) {
                    connect(side, conn, &spec, startup.as_ref()).await;
                }
                ready = Instant::now();
            }
            Item::Statement {
                captured, named, ..
            } => {
                let due = spec.clock.due(captured.ts_us, spec.delay);
                for (side, conn) in spec.sides.iter().zip(conns.iter_mut()) {
                    if conn.client.is_none() && conn.dead.is_none() {
                        connect(side, conn, &spec, startup.as_ref()).await;
                        ready = Instant::now();
                    }
                }
                let skip = spec
                    .blocked
                    .map(Into::into)
                    .or_else(|| super::exec::skip_reason(captured));
                if let Some(reason) = skip {
                    for (side, conn) in spec.sides.iter().zip(conns.iter_mut()) {
                        not_replayed(side, conn, &spec, captured, due, reason.to_string()).await;
                    }
                    continue;
                }
                spec.clock.wait(due).await;
                run_statement(&spec, &mut conns, captured, *named, due, ready).await;
                ready = Instant::now();
            }
            Item::Disconnect { .. } => break,
        }
    }
    for (side, mut conn) in spec.sides.iter().zip(conns) {
        flush(side, &mut conn.pending).await;
        if let Some(c) = conn.client {
            crate::metrics::replay::session(side.name, -1.0);
            c.terminate().await;
        }
    }
}

const RESULT_BATCH: usize = 256;

async fn flush(side: &SideCtx, pending: &mut Vec<ResultRow>) {
    if !pending.is_empty() {
        let _ = side
            .results
            .send(std::mem::replace(pending, Vec::with_capacity(RESULT_BATCH)))
            .await;
    }
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
            conn.client = Some(c);
            conn._permit = Some(permit);
        }
        Err(e) => conn.dead = Some(format!("connect failed: {e}")),
    }
}

async fn not_replayed(
    side: &SideCtx,
    conn: &mut Conn,
    spec: &SessionSpec,
    captured: &Arc<Captured>,
    due: Option<Instant>,
    reason: String,
) {
    let now = Instant::now();
    let at = due.unwrap_or(now);
    let row = row(
        side,
        spec,
        captured,
        at,
        now,
        0,
        Status::NotReplayed,
        Some(reason),
        None,
    );
    send(side, &mut conn.pending, row).await;
}

async fn send(side: &SideCtx, pending: &mut Vec<ResultRow>, row: ResultRow) {
    side.done.fetch_add(1, Ordering::Relaxed);
    pending.push(row);
    if pending.len() >= RESULT_BATCH {
        flush(side, pending).await;
    }
}

#[allow(clippy::too_many_arguments)]
fn row(
    side: &SideCtx,
    spec: &SessionSpec,
    captured: &Arc<Captured>,
    due: Instant,
    started: Instant,
    duration_us: i64,
    status: Status,
    reason: Option<String>,
    outcome: Option<Outcome>,
) -> ResultRow {
    let clock = &spec.clock;
    let started_us = clock.offset_us(started);
    let o = outcome.unwrap_or_default();
    let rows = o.rows() as i64;
    ResultRow {
        side: side.name,
        clone: spec.clone,
        captured: captured.clone(),
        scheduled_us: if clock.speed.is_some() {
            clock.offset_us(due)
        } else {
            started_us
        },
        started_us,
        started_at_us: clock.t0_wall_us + started_us,
        delay_us: 0,
        duration_us,
        status,
        reason,
        command_tag: (!o.command_tag.is_empty()).then_some(o.command_tag),
        rows,
        ordered_hash: o.hash.ordered as i64,
        unordered_hash: o.hash.unordered as i64,
        result_bytes: o.hash.bytes as i64,
        columns: o.columns,
        error: o.error,
        remapped: o.remapped,
    }
}

type Run = (Instant, Result<(Outcome, Duration), String>);

/// Runs the statement on one side's connection (unless it is lost).
async fn run_on(conn: &mut Conn, captured: &Captured, named: bool) -> Run {
    let Some(client) = conn.client.as_mut() else {
        return (Instant::now(), Err(conn.dead.clone().unwrap_or_default()));
    };
    let started = Instant::now();
    match super::exec::execute(client, captured, named, &mut conn.remap).await {
        Ok(o) => (started, Ok((o, started.elapsed()))),
        Err(e) => {
            let reason = format!("connection lost: {e}");
            conn.client = None;
            conn.dead = Some(reason.clone());
            (started, Err(reason))
        }
    }
}

/// Runs one statement on every live side at once and reports each.
async fn run_statement(
    spec: &SessionSpec,
    conns: &mut [Conn],
    captured: &Arc<Captured>,
    named: bool,
    due: Option<Instant>,
    ready: Instant,
) {
    let could_start = due.map_or(ready, |d| d.max(ready));
    let due = due.unwrap_or_else(Instant::now);
    if let [conn] = conns {
        // One side (independent pacing): no joining, nothing to allocate.
        let run = run_on(conn, captured, named).await;
        return report(
            spec,
            &spec.sides[0],
            conn,
            captured,
            (due, could_start),
            run,
        )
        .await;
    }
    let runs = conns.iter_mut().map(|c| run_on(c, captured, named));
    let results: Vec<Run> = crate::workers::join_all(runs.collect()).await;
    for ((side, conn), run) in spec.sides.iter().zip(conns.iter_mut()).zip(results) {
        report(spec, side, conn, captured, (due, could_start), run).await;
    }
}

/// Turns one side's run into its result row.
async fn report(
    spec: &SessionSpec,
    side: &SideCtx,
    conn: &mut Conn,
    captured: &Arc<Captured>,
    (due, could_start): (Instant, Instant),
    (started, r): Run,
) {
    let delay = started.saturating_duration_since(could_start);
    let mut row = match r {
        Ok((o, took)) => {
            let lag = started.saturating_duration_since(due);
            side.recent.record(lag, delay);
            side.metrics
                .statement(took, (lag, delay), o.error.as_ref().map(|e| e.0.as_bytes()));
            let status = if o.error.is_some() {
                Status::Error
            } else {
                Status::Ok
            };
            row(
                side,
                spec,
                captured,
                due,
                started,
                took.as_micros() as i64,
                status,
                None,
                Some(o),
            )
        }
        Err(reason) => row(
            side,
            spec,
            captured,
            due,
            started,
            0,
            Status::NotReplayed,
            Some(reason),
            None,
        ),
    };
    row.delay_us = delay.as_micros() as i64;
    send(side, &mut conn.pending, row).await;
}
