//! The console's `SHOW` result sets.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use pgwire::api::Type;
use pgwire::api::results::Response;

use super::admin::{CaptureView, SessionEntry, Val, table};

fn ts(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f+00").to_string())
        .unwrap_or_default()
}

pub(super) fn sessions(list: &[Arc<SessionEntry>]) -> Response {
    let cols = [
        ("session_id", Type::INT8),
        ("user", Type::TEXT),
        ("database", Type::TEXT),
        ("application_name", Type::TEXT),
        ("client_addr", Type::TEXT),
        ("connected_at", Type::TEXT),
        ("statements", Type::INT8),
    ];
    let rows = list
        .iter()
        .map(|s| {
            vec![
                Val::Int(s.session_id as i64),
                Val::Text(s.user.clone()),
                Val::Text(s.database.clone()),
                Val::Text(s.application_name.clone()),
                Val::Text(s.client_addr.clone()),
                Val::Text(ts(s.started_at_us)),
                Val::Int(s.statements.load(Ordering::Relaxed) as i64),
            ]
        })
        .collect();
    table(&cols, rows)
}

pub(super) fn capture(cap: Option<&CaptureView>) -> Response {
    let cols = [
        ("state", Type::TEXT),
        ("capture_id", Type::TEXT),
        ("directory", Type::TEXT),
        ("open_segment", Type::TEXT),
        ("segments", Type::INT8),
        ("files", Type::INT8),
        ("last_file", Type::TEXT),
        ("records", Type::INT8),
        ("dropped", Type::INT8),
        ("skipped_while_paused", Type::INT8),
        ("queue_depth", Type::INT8),
    ];
    let Some(c) = cap else {
        let mut row = vec![Val::Text("off".into())];
        row.extend((1..cols.len()).map(|_| Val::Null));
        return table(&cols, vec![row]);
    };
    let l = &c.live;
    let name = |p: &Option<std::path::PathBuf>| match p {
        Some(p) => Val::Text(
            p.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
        ),
        None => Val::Null,
    };
    let open = name(&l.open_segment.lock().unwrap_or_else(|e| e.into_inner()));
    let last = name(&l.last_file.lock().unwrap_or_else(|e| e.into_inner()));
    let state = if !l.alive.load(Ordering::Relaxed) {
        "stopped"
    } else if c.counters.paused.load(Ordering::Relaxed) {
        "paused"
    } else {
        "recording"
    };
    let sent = c.counters.sent.load(Ordering::Relaxed);
    let dropped =
        c.counters.dropped.load(Ordering::Relaxed) + l.write_dropped.load(Ordering::Relaxed);
    let row = vec![
        Val::Text(state.into()),
        Val::Text(c.info.capture_id.clone()),
        Val::Text(c.dir.display().to_string()),
        open,
        Val::Int(l.segments.load(Ordering::Relaxed) as i64),
        Val::Int(l.files.load(Ordering::Relaxed) as i64),
        last,
        Val::Int(l.rows.load(Ordering::Relaxed) as i64),
        Val::Int(dropped as i64),
        Val::Int(c.counters.paused_skipped.load(Ordering::Relaxed) as i64),
        Val::Int(sent.saturating_sub(l.events.load(Ordering::Relaxed)) as i64),
    ];
    table(&cols, vec![row])
}

/// Top fingerprints by total time among the statements recorded so far.
pub(super) fn stats(cap: Option<&CaptureView>) -> Response {
    let cols = [
        ("fingerprint", Type::TEXT),
        ("calls", Type::INT8),
        ("total_ms", Type::FLOAT8),
        ("mean_ms", Type::FLOAT8),
        ("max_ms", Type::FLOAT8),
        ("rows", Type::INT8),
        ("errors", Type::INT8),
        ("query", Type::TEXT),
    ];
    let top = cap
        .map(|c| c.live.top.lock().unwrap_or_else(|e| e.into_inner()).top(20))
        .unwrap_or_default();
    let rows = top
        .into_iter()
        .map(|s| {
            vec![
                Val::Text(format!("{:016x}", s.fingerprint)),
                Val::Int(s.calls as i64),
                Val::Float(s.total_us as f64 / 1e3),
                Val::Float(s.total_us as f64 / 1e3 / s.calls.max(1) as f64),
                Val::Float(s.max_us as f64 / 1e3),
                Val::Int(s.rows as i64),
                Val::Int(s.errors as i64),
                Val::Text(s.normalized.to_string()),
            ]
        })
        .collect();
    table(&cols, rows)
}
