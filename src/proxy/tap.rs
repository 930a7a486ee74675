//! The statement tap: a per-session state machine fed with every complete
//! frame in both directions, which pairs client requests with server replies
//! through one queue of expected replies and emits one event per executed
//! statement.
//!
//! What must stay true: the tap only reads frames (it never changes what is
//! forwarded), it never blocks (events go out with `try_send`), and it stays
//! in step with the server across pipelining, portal suspension, COPY and the
//! ignore-until-Sync that follows an error. Whenever a ReadyForQuery arrives
//! the queue is resynchronised, so a surprise can cost a record, never the
//! session. The client half is here; the server half in [`backend`].

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;

use super::admin::SessionEntry;
use crate::capture::event::{
    ConnectEvent, DisconnectEvent, Protocol, StatementEvent, TapEvent, TapLimits, TapSender,
};
use crate::wire::messages as msg;

mod backend;
mod copy;

/// A statement the server has (or is about to have) prepared.
#[derive(Debug, Clone, Default)]
struct Prepared {
    sql: Bytes,
    oids: Bytes,
}

/// A bound portal, ready to Execute.
#[derive(Debug, Clone, Default)]
struct Portal {
    sql: Bytes,
    oids: Bytes,
    statement_name: Bytes,
    bind: Bytes,
}

/// What the client's next unanswered message expects from the server.
#[derive(Debug)]
enum Expect {
    Parse { name: Bytes, inserted: bool },
    Bind,
    Describe,
    Close,
    Execute(Box<StatementEvent>),
    Sync,
    Query(Box<StatementEvent>),
    FunctionCall,
}

pub struct Tap {
    session_id: u64,
    sender: Option<TapSender>,
    seq: u64,
    statements: HashMap<Bytes, Prepared>,
    portals: HashMap<Bytes, Portal>,
    /// Executions interrupted by PortalSuspended, continued by the next Execute.
    suspended: HashMap<Bytes, Box<StatementEvent>>,
    queue: VecDeque<Expect>,
    /// Completed statements waiting for the ReadyForQuery that gives their
    /// transaction status.
    done: Vec<Box<StatementEvent>>,
    /// After an extended-protocol error the server ignores everything up to Sync.
    ignoring_until_sync: bool,
    connect: Option<ConnectEvent>,
    ready: bool,
    /// What statements keep besides their shape; `None` without a recorder.
    limits: Option<TapLimits>,
    /// The server is in copy-in mode for an Execute: it ignores Sync until
    /// the client's CopyDone or CopyFail (see [`copy`]).
    copy_in_open: bool,
    /// DataRows of the front Query counted up to its last CommandComplete:
    /// each statement of a Query counts its own rows.
    rows_mark: u64,
    /// Statements seen (sent or not), for the session listing and metrics.
    pub statements_seen: u64,
    metrics: Option<Arc<crate::proxy::metrics::ProxyMetrics>>,
    entry: Option<Arc<SessionEntry>>,
}

impl Tap {
    pub fn new(session_id: u64, sender: Option<TapSender>, connect: ConnectEvent) -> Self {
        let limits = sender.as_ref().map(TapSender::limits);
        Tap {
            session_id,
            sender,
            seq: 0,
            statements: HashMap::new(),
            portals: HashMap::new(),
            suspended: HashMap::new(),
            queue: VecDeque::new(),
            done: Vec::new(),
            ignoring_until_sync: false,
            connect: Some(connect),
            ready: false,
            limits,
            copy_in_open: false,
            rows_mark: 0,
            statements_seen: 0,
            metrics: None,
            entry: None,
        }
    }

    /// Counts completed statements into the proxy's metrics and the
    /// session's admin-console entry.
    pub fn observed(
        mut self,
        metrics: Arc<crate::proxy::metrics::ProxyMetrics>,
        entry: Arc<SessionEntry>,
    ) -> Self {
        self.metrics = Some(metrics);
        self.entry = Some(entry);
        self
    }

    /// True once the server sent its first ReadyForQuery (authentication over).
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    fn new_statement(&mut self, protocol: Protocol, now: i64) -> Box<StatementEvent> {
        self.seq += 1;
        Box::new(StatementEvent {
            session_id: self.session_id,
            seq: self.seq,
            start_us: now,
            duration_us: 0,
            protocol,
            sql: Bytes::new(),
            statement_name: Bytes::new(),
            param_oids: Bytes::new(),
            bind: Bytes::new(),
            max_rows: 0,
            command_tag: Bytes::new(),
            rows: 0,
            ordered_hash: 0,
            unordered_hash: 0,
            result_bytes: 0,
            error: None,
            tx_status: b'I',
            copy_in: None,
            // Kept only while the result stays small (and with a recorder).
            result_values: self
                .limits
                .filter(|l| !l.redact && l.result_rows > 0)
                .map(|_| Vec::new()),
        })
    }

    /// A complete frame from the client. Never sees the startup packet;
    /// password messages (`p`) are skipped. Other messages before the first
    /// ReadyForQuery were pipelined behind the StartupMessage: the server
    /// answers them after that ReadyForQuery, so they are queued as usual.
    pub fn frontend(&mut self, tag: u8, body: &[u8], now: i64) {
        if !self.ready && tag == b'p' {
            return;
        }
        if self.ignoring_until_sync
            && tag != b'S'
            && matches!(tag, b'P' | b'B' | b'D' | b'C' | b'E')
        {
            // The server discards these; they get no reply.
            return;
        }
        match tag {
            b'Q' => {
                let mut st = self.new_statement(Protocol::Simple, now);
                st.sql = Bytes::copy_from_slice(msg::parse_query(body));
                self.queue.push_back(Expect::Query(st));
            }
            b'P' => {
                let Ok((name, sql, oids)) = msg::parse_parse(body) else {
                    return;
                };
                let name = Bytes::copy_from_slice(name);
                // A named statement that exists makes the server fail the Parse.
                let inserted = name.is_empty() || !self.statements.contains_key(&name);
                if inserted {
                    let p = Prepared {
                        sql: Bytes::copy_from_slice(sql),
                        oids: Bytes::copy_from_slice(oids),
                    };
                    self.statements.insert(name.clone(), p);
                }
                self.queue.push_back(Expect::Parse { name, inserted });
            }
            b'B' => {
                let Ok((portal, stmt)) = msg::bind_names(body) else {
                    return;
                };
                let p = self.statements.get(stmt).cloned().unwrap_or_default();
                let key = Bytes::copy_from_slice(portal);
                let portal = Portal {
                    sql: p.sql,
                    oids: p.oids,
                    statement_name: Bytes::copy_from_slice(stmt),
                    bind: Bytes::copy_from_slice(body),
                };
                self.suspended.remove(&key);
                self.portals.insert(key, portal);
                self.queue.push_back(Expect::Bind);
            }
            b'E' => {
                let Ok((portal, max_rows)) = msg::parse_execute(body) else {
                    return;
                };
                let st = match self.suspended.remove(portal) {
                    Some(st) => st,
                    None => {
                        let mut st = self.new_statement(Protocol::Extended, now);
                        if let Some(p) = self.portals.get(portal) {
                            st.sql = p.sql.clone();
                            st.param_oids = p.oids.clone();
                            st.statement_name = p.statement_name.clone();
                            st.bind = p.bind.clone();
                        }
                        st.max_rows = max_rows;
                        st
                    }
                };
                self.queue.push_back(Expect::Execute(st));
            }
            b'D' => self.queue.push_back(Expect::Describe),
            b'C' => {
                if let Ok((kind, name)) = msg::parse_target(body, "Close") {
                    if kind == b'S' {
                        self.statements.remove(name);
                    } else {
                        self.portals.remove(name);
                        self.suspended.remove(name);
                    }
                }
                self.queue.push_back(Expect::Close);
            }
            b'S' => {
                if self.copy_in_open {
                    // Ignored by a server in copy-in mode: no reply to expect.
                    return;
                }
                self.ignoring_until_sync = false;
                self.queue.push_back(Expect::Sync);
            }
            b'd' | b'c' | b'f' => self.copy_message(tag, body),
            b'F' => self.queue.push_back(Expect::FunctionCall),
            // Flush, Terminate, passwords and unknown types expect no reply
            // of their own.
            _ => {}
        }
    }

    /// True while a request of the client is unanswered.
    pub fn awaits_replies(&self) -> bool {
        !self.queue.is_empty()
    }

    /// The session ended: flush what is pending and say why. Once: the tap
    /// records nothing after it.
    pub fn disconnect(&mut self, reason: String, now: i64) {
        let Some(tx) = self.sender.take() else { return };
        if !self.ready {
            return;
        }
        // Statements the session ended in (a FATAL error, a lost
        // connection) are recorded with what they got so far.
        while let Some(e) = self.queue.pop_front() {
            if let Expect::Execute(mut st) | Expect::Query(mut st) = e {
                st.duration_us = now - st.start_us;
                self.done.push(st);
            }
        }
        for st in self.done.drain(..) {
            tx.send(TapEvent::Statement(st));
        }
        tx.send(TapEvent::Disconnect(DisconnectEvent {
            session_id: self.session_id,
            at_us: now,
            reason,
        }));
    }
}

/// The portal name at the start of a Bind body (or `default` if unreadable).
fn portal_name<'a>(bind: &'a [u8], default: &'a [u8]) -> &'a [u8] {
    msg::bind_names(bind).map(|(p, _)| p).unwrap_or(default)
}
