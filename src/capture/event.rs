//! The tap event contract, owned by the capture that records it: what the
//! proxy's statement tap hands to the recorder, one event per connect,
//! executed statement and disconnect, and the bounded, never-blocking
//! channel they travel on (made here, filled by the proxy).
//!
//! Events carry raw protocol bytes (the SQL, the Parse OID array, the Bind
//! body) copied once from the frame; decoding them into columns happens on the
//! recorder thread, off the forwarding path. Passwords, SASL messages and
//! cancel keys are never part of an event.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use bytes::Bytes;

/// How a statement reached the server: the capture's and the result
/// files' `protocol` column, written with [`Protocol::as_str`] and read
/// with [`Protocol::parse`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Protocol {
    /// A Query message (possibly several statements in one string).
    Simple,
    /// Parse/Bind/Execute.
    #[default]
    Extended,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Simple => "simple",
            Protocol::Extended => "extended",
        }
    }

    /// The protocol a file spells `s`; anything but `simple` is extended.
    pub fn parse(s: &str) -> Protocol {
        match s {
            "simple" => Protocol::Simple,
            _ => Protocol::Extended,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectEvent {
    pub session_id: u64,
    /// UTC microseconds since the Unix epoch when the startup packet arrived.
    pub at_us: i64,
    pub user: String,
    pub database: String,
    pub application_name: String,
    pub client_addr: String,
    /// Every startup parameter the client sent (user and database included).
    pub startup_params: Vec<(String, String)>,
    /// Protocol version the client asked for (`3.0`, `3.2`, ...).
    pub protocol_version: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementEvent {
    pub session_id: u64,
    /// 1-based, per session, in the order the client sent the statements.
    pub seq: u64,
    /// UTC microseconds when the Query or (first) Execute arrived from the client.
    pub start_us: i64,
    /// Until the statement's CommandComplete / EmptyQueryResponse / ErrorResponse
    /// (for a simple query: its ReadyForQuery).
    pub duration_us: i64,
    pub protocol: Protocol,
    /// SQL text as sent (not necessarily UTF-8).
    pub sql: Bytes,
    /// Prepared-statement name; empty for the unnamed statement and for simple queries.
    pub statement_name: Bytes,
    /// Parameter type OIDs from the Parse message, raw big-endian u32s.
    pub param_oids: Bytes,
    /// The Bind message body (formats, values, result formats); empty for simple queries.
    pub bind: Bytes,
    /// Execute's row limit (0 = all rows). With portal suspension, the first limit.
    pub max_rows: i32,
    /// Last CommandComplete tag; empty if none (error, empty query).
    pub command_tag: Bytes,
    /// DataRows received, summed across portal suspensions; for commands without
    /// rows, the count in the command tag.
    pub rows: u64,
    /// Hash over the DataRow bodies in order (each row's xxh3 seeded with the previous).
    pub ordered_hash: u64,
    /// Wrapping sum of the DataRow bodies' xxh3: equal for the same rows in any order.
    pub unordered_hash: u64,
    /// Bytes of DataRow messages received.
    pub result_bytes: u64,
    /// SQLSTATE and message when the statement failed.
    pub error: Option<(Bytes, Bytes)>,
    /// Transaction status from the ReadyForQuery that followed: `I`, `T` or `E`.
    pub tx_status: u8,
    /// COPY FROM STDIN: what the client streamed for this statement; `None`
    /// when it streamed nothing (not a COPY FROM STDIN, or one that failed
    /// before the server asked for data).
    pub copy_in: Option<Box<CopyIn>>,
    /// The DataRow frames (headers included) of a small result, within
    /// [`TapLimits`]; `None` when the result was larger or there is no
    /// recorder. Replay learns from them which values a session got back.
    pub result_values: Option<Vec<u8>>,
}

/// The COPY messages a client sent for one statement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyIn {
    /// CopyData, CopyDone and CopyFail frames as sent (headers included), in
    /// order; empty when `over_limit`. A Query with several COPY FROM STDIN
    /// holds each one's messages in turn, each ended by its CopyDone or CopyFail.
    pub frames: Vec<u8>,
    /// Bytes of CopyData payload the client sent (counted past the limit too).
    pub bytes: u64,
    /// The data passed [`TapLimits::max_copy_bytes`] and was not kept.
    pub over_limit: bool,
}

/// What the tap keeps of a statement besides its shape, set by the recorder
/// (`--max-copy-bytes`, `--redact-params`) and read by every session's tap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TapLimits {
    /// COPY FROM STDIN data kept per statement at most.
    pub max_copy_bytes: u64,
    /// Results of at most this many rows ...
    pub result_rows: u64,
    /// ... and this many bytes of DataRow bodies keep their values.
    pub result_bytes: usize,
    /// Keep no values at all (COPY data, result values): `--redact-params`.
    pub redact: bool,
}

impl TapLimits {
    /// `--max-copy-bytes` default: a COPY of a few hundred thousand rows.
    pub const MAX_COPY_BYTES: u64 = 64 << 20;
    /// Result values are kept for results of up to 16 rows ...
    pub const RESULT_ROWS: u64 = 16;
    /// ... and 2 KiB: enough for ids, OIDs and psql's catalog lookups.
    pub const RESULT_BYTES: usize = 2048;
}

impl Default for TapLimits {
    fn default() -> Self {
        TapLimits {
            max_copy_bytes: Self::MAX_COPY_BYTES,
            result_rows: Self::RESULT_ROWS,
            result_bytes: Self::RESULT_BYTES,
            redact: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisconnectEvent {
    pub session_id: u64,
    pub at_us: i64,
    /// Empty for a clean Terminate; otherwise why the session ended.
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TapEvent {
    Connect(ConnectEvent),
    Statement(Box<StatementEvent>),
    Disconnect(DisconnectEvent),
}

impl TapEvent {
    pub fn session_id(&self) -> u64 {
        match self {
            TapEvent::Connect(c) => c.session_id,
            TapEvent::Statement(s) => s.session_id,
            TapEvent::Disconnect(d) => d.session_id,
        }
    }
}

/// Counters shared by every session's sender: atomics, never a lock.
#[derive(Debug, Default)]
pub struct TapCounters {
    pub sent: AtomicU64,
    pub dropped: AtomicU64,
    /// While set (`PAUSE CAPTURE`), statements are not sent; connects and
    /// disconnects still are, so every session in the capture is whole.
    pub paused: AtomicBool,
    /// Statements not sent because capture was paused.
    pub paused_skipped: AtomicU64,
}

/// The sending end every session holds. `send` never blocks: when the
/// recorder falls behind the event is dropped and counted.
#[derive(Debug, Clone)]
pub struct TapSender {
    tx: SyncSender<TapEvent>,
    counters: Arc<TapCounters>,
    limits: TapLimits,
}

impl TapSender {
    pub fn send(&self, event: TapEvent) {
        if matches!(event, TapEvent::Statement(_)) && self.counters.paused.load(Ordering::Relaxed) {
            self.counters.paused_skipped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        match self.tx.try_send(event) {
            Ok(()) => {
                self.counters.sent.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub fn counters(&self) -> &Arc<TapCounters> {
        &self.counters
    }

    pub fn limits(&self) -> TapLimits {
        self.limits
    }

    /// The same channel, keeping statements' values within `limits`.
    pub fn with_limits(mut self, limits: TapLimits) -> Self {
        self.limits = limits;
        self
    }
}

/// A bounded tap channel of `capacity` events.
pub fn tap_channel(capacity: usize) -> (TapSender, Receiver<TapEvent>, Arc<TapCounters>) {
    let (tx, rx) = sync_channel(capacity);
    let counters = Arc::new(TapCounters::default());
    (
        TapSender {
            tx,
            counters: counters.clone(),
            limits: TapLimits::default(),
        },
        rx,
        counters,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_channel_drops_and_counts_without_blocking() {
        let (tx, rx, counters) = tap_channel(2);
        for i in 0..5 {
            tx.send(TapEvent::Disconnect(DisconnectEvent {
                session_id: i,
                at_us: 0,
                reason: String::new(),
            }));
        }
        assert_eq!(counters.sent.load(Ordering::Relaxed), 2);
        assert_eq!(counters.dropped.load(Ordering::Relaxed), 3);
        assert_eq!(
            rx.try_iter().map(|e| e.session_id()).collect::<Vec<_>>(),
            vec![0, 1]
        );
    }
}
