//! A deterministic synthetic workload of tap events, for the committed test
//! fixture, the recorder benchmark and the 10 M-statement report benchmark:
//! the same seed gives the same events, byte for byte, on every machine.
//! It imitates an application (a few query shapes with skewed frequencies,
//! extended protocol with text parameters, a little simple protocol, errors
//! and one slow outlier per ~100 000 statements); it is not traffic.

use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::CaptureError;
use super::convert::convert_segment;
use super::rows::RowsBuilder;
use super::schema::CaptureInfo;
use super::segment::Segment;
use crate::capture::event::{ConnectEvent, DisconnectEvent, Protocol, StatementEvent, TapEvent};

/// xorshift64*: tiny, seedable, stable across platforms and crate versions.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

const SHAPES: &[(&str, u32)] = &[
    ("SELECT abalance FROM pgbench_accounts WHERE aid = $1", 40),
    (
        "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2",
        20,
    ),
    (
        "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP)",
        15,
    ),
    (
        "SELECT o.id, o.total FROM orders o JOIN customers c ON c.id = o.customer_id WHERE c.tenant_id = $1 ORDER BY o.created_at DESC LIMIT 20",
        10,
    ),
    ("DELETE FROM sessions WHERE expires_at < $1", 5),
    ("BEGIN", 5),
    ("COMMIT", 5),
];

/// Parameters of [`events`].
#[derive(Debug, Clone)]
pub struct Synth {
    pub seed: u64,
    pub sessions: u64,
    pub statements: u64,
    pub start_us: i64,
    /// Mean gap between statements across all sessions, µs.
    pub gap_us: i64,
}

impl Default for Synth {
    fn default() -> Self {
        Synth {
            seed: 42,
            sessions: 4,
            statements: 1000,
            start_us: 1_714_564_800_000_000,
            gap_us: 500,
        }
    }
}

fn bind(params: &[String]) -> Bytes {
    let mut b = Vec::with_capacity(16 + params.len() * 12);
    b.extend_from_slice(b"\0\0"); // unnamed portal, unnamed statement
    b.extend_from_slice(&0i16.to_be_bytes()); // all text
    b.extend_from_slice(&(params.len() as i16).to_be_bytes());
    for p in params {
        b.extend_from_slice(&(p.len() as i32).to_be_bytes());
        b.extend_from_slice(p.as_bytes());
    }
    b.extend_from_slice(&0i16.to_be_bytes());
    Bytes::from(b)
}

/// The events of a synthetic run: connects, statements, disconnects.
pub fn events(s: &Synth) -> impl Iterator<Item = TapEvent> + use<> {
    let s = s.clone();
    let total_weight: u32 = SHAPES.iter().map(|x| x.1).sum();
    let apps = ["web", "worker", "psql"];
    let mut rng = Rng::new(s.seed);
    let mut seqs = vec![0u64; s.sessions as usize];
    let mut t = s.start_us;
    let mut i = 0u64;
    let connects = (0..s.sessions).map(move |sid| {
        TapEvent::Connect(ConnectEvent {
            session_id: sid + 1,
            at_us: s.start_us - 1000 + sid as i64,
            user: "app".into(),
            database: "shop".into(),
            application_name: apps[(sid % 3) as usize].into(),
            client_addr: format!("10.0.0.{}:{}", sid % 250 + 1, 40000 + sid),
            startup_params: vec![
                ("user".into(), "app".into()),
                ("database".into(), "shop".into()),
            ],
            protocol_version: "3.0".into(),
        })
    });
    let end_us = s.start_us + s.statements as i64 * s.gap_us + 1000;
    let disconnects = (0..s.sessions).map(move |sid| {
        TapEvent::Disconnect(DisconnectEvent {
            session_id: sid + 1,
            at_us: end_us + sid as i64,
            reason: String::new(),
        })
    });
    let stmts = std::iter::from_fn(move || {
        if i >= s.statements {
            return None;
        }
        i += 1;
        let sid = rng.below(s.sessions.max(1));
        seqs[sid as usize] += 1;
        t += 1 + rng.below(2 * s.gap_us.max(1) as u64) as i64;
        let mut w = rng.below(total_weight as u64) as u32;
        let shape = SHAPES
            .iter()
            .position(|x| {
                if w < x.1 {
                    true
                } else {
                    w -= x.1;
                    false
                }
            })
            .unwrap_or(0);
        let sql = SHAPES[shape].0;
        let n_params = sql.matches('$').count();
        let params: Vec<String> = (0..n_params)
            .map(|_| (rng.below(100_000) as i64 - 5000).to_string())
            .collect();
        // Log-normal-ish durations: mostly 100 µs–2 ms, rare outliers.
        let mut duration = 80 + rng.below(400) as i64 * (1 + rng.below(4) as i64);
        if rng.below(100_000) == 0 {
            duration = 1_500_000 + rng.below(500_000) as i64;
        }
        let error = (shape == 2 && rng.below(200) == 0).then(|| {
            (
                Bytes::from_static(b"23505"),
                Bytes::from_static(b"duplicate key value violates unique constraint"),
            )
        });
        let simple = shape >= 5;
        let rows = if error.is_some() {
            0
        } else if shape == 3 {
            rng.below(21)
        } else {
            1
        };
        let tag = match shape {
            0 | 3 => format!("SELECT {rows}"),
            1 => "UPDATE 1".into(),
            2 => "INSERT 0 1".into(),
            4 => format!("DELETE {}", rng.below(5)),
            5 => "BEGIN".into(),
            _ => "COMMIT".into(),
        };
        Some(TapEvent::Statement(Box::new(StatementEvent {
            session_id: sid + 1,
            seq: seqs[sid as usize],
            start_us: t,
            duration_us: duration,
            protocol: if simple {
                Protocol::Simple
            } else {
                Protocol::Extended
            },
            sql: Bytes::from_static(sql.as_bytes()),
            statement_name: Bytes::new(),
            param_oids: Bytes::new(),
            bind: if simple { Bytes::new() } else { bind(&params) },
            max_rows: 0,
            command_tag: if error.is_some() {
                Bytes::new()
            } else {
                Bytes::from(tag)
            },
            rows,
            ordered_hash: if rows > 0 { rng.next() } else { 0 },
            unordered_hash: if rows > 0 { rng.next() } else { 0 },
            result_bytes: rows * 23,
            error,
            tx_status: if shape == 5 { b'T' } else { b'I' },
            copy_in: None,
            result_values: None,
        })))
    });
    connects.chain(stmts).chain(disconnects)
}

/// Writes `events` as a capture in `dir` (segments of `segment_rows` rows,
/// each converted to Parquet) through the same code as the recorder. The
/// segment names come from `info.started_at_us`, so a run is reproducible.
pub fn write_capture(
    dir: &Path,
    info: &CaptureInfo,
    events: impl Iterator<Item = TapEvent>,
    batch_rows: usize,
    segment_rows: u64,
) -> Result<Vec<PathBuf>, CaptureError> {
    std::fs::create_dir_all(dir).map_err(|e| CaptureError::io(dir, e))?;
    let mut rows = RowsBuilder::new(info);
    let mut files = Vec::new();
    let mut n = 0u64;
    let mut seg: Option<Segment> = None;
    let close = |seg: Segment, files: &mut Vec<PathBuf>| -> Result<(), CaptureError> {
        let path = seg.close()?;
        if let Some(c) = convert_segment(&path, &[("pgtape.capture.dropped".into(), "0".into())])? {
            files.push(c.parquet);
        }
        Ok(())
    };
    let mut events = events.peekable();
    while events.peek().is_some() {
        for ev in events.by_ref().take(batch_rows) {
            rows.push(&ev);
        }
        let batch = rows.finish().map_err(|e| CaptureError::arrow(dir, e))?;
        if seg.is_none() {
            n += 1;
            seg = Some(Segment::create(
                dir,
                info,
                info.started_at_us + n as i64,
                n,
            )?);
        }
        let s = seg.as_mut().expect("opened above");
        s.write(&batch)?;
        if s.rows() >= segment_rows {
            close(seg.take().expect("open"), &mut files)?;
        }
    }
    if let Some(s) = seg {
        close(s, &mut files)?;
    }
    Ok(files)
}
