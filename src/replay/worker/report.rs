//! A session's statement on one side, run and turned into its result row:
//! timing (lag, the replayer's own delay, the wait for order), status, and
//! the rows handed to the side's writer in batches.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{Conn, SessionSpec, SideCtx};
use crate::replay::client::Reply;
use crate::replay::order::Waited;
use crate::replay::results::{Captured, ResultRow, Status};

const RESULT_BATCH: usize = 256;

pub(super) async fn flush(side: &SideCtx, pending: &mut Vec<ResultRow>) {
    if !pending.is_empty() {
        let _ = side
            .results
            .send(std::mem::replace(pending, Vec::with_capacity(RESULT_BATCH)))
            .await;
    }
}

async fn send(side: &SideCtx, pending: &mut Vec<ResultRow>, row: ResultRow) {
    side.done.fetch_add(1, Ordering::Relaxed);
    pending.push(row);
    if pending.len() >= RESULT_BATCH {
        flush(side, pending).await;
    }
}

pub(super) async fn not_replayed(
    side: &SideCtx,
    conn: &mut Conn,
    spec: &SessionSpec,
    captured: &Arc<Captured>,
    due: Option<Instant>,
    reason: String,
) {
    let now = Instant::now();
    let at = due.unwrap_or(now);
    let mut row = row(side, spec, captured, at, now, Status::NotReplayed, None);
    row.reason = Some(reason);
    send(side, &mut conn.pending, row).await;
}

fn row(
    side: &SideCtx,
    spec: &SessionSpec,
    captured: &Arc<Captured>,
    due: Instant,
    started: Instant,
    status: Status,
    outcome: Option<Reply>,
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
        order_wait_us: 0,
        order_released: false,
        duration_us: 0,
        status,
        reason: None,
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

pub(super) type Run = (Instant, Result<(Reply, Duration), String>);

/// Runs the statement on one side's connection (unless it is lost).
pub(super) async fn run_on(conn: &mut Conn, captured: &Captured, named: bool) -> Run {
    let Some(client) = conn.client.as_mut() else {
        return (Instant::now(), Err(conn.dead.clone().unwrap_or_default()));
    };
    let started = Instant::now();
    conn.slot.running.store(true, Ordering::Relaxed);
    let r = crate::replay::exec::execute(client, captured, named, &mut conn.remap).await;
    conn.slot.running.store(false, Ordering::Relaxed);
    match r {
        Ok(o) => (started, Ok((o, started.elapsed()))),
        Err(e) => {
            let reason = format!("connection lost: {e}");
            conn.client = None;
            conn.dead = Some(reason.clone());
            (started, Err(reason))
        }
    }
}

/// When a statement was due, when it could have started, and its wait for order.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timing {
    pub due: Instant,
    /// Due, its session's previous statement done, and its order satisfied.
    pub could_start: Instant,
    pub order: Waited,
    pub order_wait: Duration,
}

/// Turns one side's run into its result row.
pub(super) async fn report(
    spec: &SessionSpec,
    side: &SideCtx,
    conn: &mut Conn,
    captured: &Arc<Captured>,
    t: Timing,
    (started, r): Run,
) {
    let delay = started.saturating_duration_since(t.could_start);
    let mut row = match r {
        Ok((o, took)) => {
            let lag = started.saturating_duration_since(t.due);
            side.recent.record(lag, delay);
            side.metrics
                .statement(took, (lag, delay), o.error.as_ref().map(|e| e.0.as_bytes()));
            let status = if o.error.is_some() {
                Status::Error
            } else {
                Status::Ok
            };
            let mut row = row(side, spec, captured, t.due, started, status, Some(o));
            row.duration_us = took.as_micros() as i64;
            row
        }
        Err(reason) => {
            let mut row = row(
                side,
                spec,
                captured,
                t.due,
                started,
                Status::NotReplayed,
                None,
            );
            row.reason = Some(reason);
            row
        }
    };
    if t.order.waited {
        side.metrics.order_wait(t.order_wait, t.order.released);
    }
    row.delay_us = delay.as_micros() as i64;
    row.order_wait_us = t.order_wait.as_micros() as i64;
    row.order_released = t.order.released;
    send(side, &mut conn.pending, row).await;
}
