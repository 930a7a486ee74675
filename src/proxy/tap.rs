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
//! session.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::admin::SessionEntry;
use super::event::{ConnectEvent, DisconnectEvent, Protocol, StatementEvent, TapEvent, TapSender};
use crate::wire::messages as msg;
use crate::wire::rowhash::RowHash;

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
    /// Statements seen (sent or not), for the session listing and metrics.
    pub statements_seen: u64,
    metrics: Option<Arc<crate::metrics::proxy::ProxyMetrics>>,
    entry: Option<Arc<SessionEntry>>,
}

impl Tap {
    pub fn new(session_id: u64, sender: Option<TapSender>, connect: ConnectEvent) -> Self {
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
            statements_seen: 0,
            metrics: None,
            entry: None,
        }
    }

    /// Counts completed statements into the proxy's metrics and the
    /// session's admin-console entry.
    pub fn observed(
        mut self,
        metrics: Arc<crate::metrics::proxy::ProxyMetrics>,
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
        })
    }

    /// A complete frame from the client. Never sees the startup packet or
    /// password messages (`p` is skipped).
    pub fn frontend(&mut self, tag: u8, body: &[u8], now: i64) {
        if !self.ready {
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
                self.ignoring_until_sync = false;
                self.queue.push_back(Expect::Sync);
            }
            b'F' => self.queue.push_back(Expect::FunctionCall),
            // Flush, Terminate, CopyData/Done/Fail, passwords and unknown types
            // expect no reply of their own.
            _ => {}
        }
    }

    /// A complete frame from the server.
    pub fn backend(&mut self, tag: u8, body: &[u8], now: i64) {
        match tag {
            b'D' => {
                if let Some(Expect::Execute(st) | Expect::Query(st)) = self.queue.front_mut() {
                    let mut h = RowHash {
                        rows: st.rows,
                        ordered: st.ordered_hash,
                        unordered: st.unordered_hash,
                        bytes: st.result_bytes,
                    };
                    h.add(body);
                    (st.rows, st.ordered_hash, st.unordered_hash, st.result_bytes) =
                        (h.rows, h.ordered, h.unordered, h.bytes);
                }
            }
            b'C' => {
                let tag = msg::parse_command_complete(body);
                match self.queue.front_mut() {
                    Some(Expect::Execute(_)) => {
                        if let Some(Expect::Execute(mut st)) = self.queue.pop_front() {
                            complete(&mut st, tag, now);
                            self.finish(st);
                        }
                    }
                    Some(Expect::Query(st)) => {
                        // Several statements in one Query: keep the last tag,
                        // sum the rows; the ReadyForQuery completes it.
                        let data_rows = st.result_bytes > 0;
                        if !data_rows {
                            st.rows += msg::tag_rows(tag).unwrap_or(0);
                        }
                        st.command_tag = Bytes::copy_from_slice(tag);
                    }
                    _ => {}
                }
            }
            b'I' => {
                if let Some(Expect::Execute(_)) = self.queue.front() {
                    if let Some(Expect::Execute(mut st)) = self.queue.pop_front() {
                        st.duration_us = now - st.start_us;
                        self.finish(st);
                    }
                }
            }
            b's' => {
                if let Some(Expect::Execute(_)) = self.queue.front() {
                    if let Some(Expect::Execute(st)) = self.queue.pop_front() {
                        let key = portal_name(&st.bind, b"");
                        self.suspended.insert(Bytes::copy_from_slice(key), st);
                    }
                }
            }
            b'1' | b'2' | b'3' | b'n' => {
                let matches = matches!(
                    (tag, self.queue.front()),
                    (b'1', Some(Expect::Parse { .. }))
                        | (b'2', Some(Expect::Bind))
                        | (b'3', Some(Expect::Close))
                        | (b'n', Some(Expect::Describe))
                );
                if matches {
                    self.queue.pop_front();
                }
            }
            b'T' => {
                if let Some(Expect::Describe) = self.queue.front() {
                    self.queue.pop_front();
                }
            }
            b'E' => self.error(body, now),
            b'Z' => self.ready_for_query(body.first().copied().unwrap_or(b'I'), now),
            _ => {}
        }
    }

    fn error(&mut self, body: &[u8], now: i64) {
        let Ok(f) = msg::parse_error(body) else {
            return;
        };
        let err = (
            Bytes::copy_from_slice(f.code),
            Bytes::copy_from_slice(f.message),
        );
        match self.queue.front_mut() {
            Some(Expect::Query(st)) => {
                st.error = Some(err);
                return;
            }
            None | Some(Expect::Sync) | Some(Expect::FunctionCall) => return,
            _ => {}
        }
        // Extended protocol: the failed message and everything up to Sync is
        // answered by this one error. The statement it cost is the failed
        // Execute, or the first Execute a failed Parse/Bind/Describe preceded.
        let mut charged = false;
        while let Some(front) = self.queue.front() {
            if matches!(front, Expect::Sync) {
                break;
            }
            match self.queue.pop_front() {
                Some(Expect::Execute(mut st)) if !charged => {
                    st.error = Some(err.clone());
                    st.duration_us = now - st.start_us;
                    charged = true;
                    self.finish(st);
                }
                Some(Expect::Parse {
                    name,
                    inserted: true,
                }) if !name.is_empty() => {
                    self.statements.remove(&name);
                }
                _ => {}
            }
        }
        if self.queue.is_empty() {
            self.ignoring_until_sync = true;
        }
    }

    fn ready_for_query(&mut self, status: u8, now: i64) {
        if !self.ready {
            self.ready = true;
            if let (Some(tx), Some(c)) = (&self.sender, self.connect.take()) {
                tx.send(TapEvent::Connect(c));
            }
        }
        // Pop through the message this ReadyForQuery answers; anything left
        // unanswered before it is settled now so the queue stays in step.
        while let Some(e) = self.queue.pop_front() {
            match e {
                Expect::Sync | Expect::FunctionCall => break,
                Expect::Query(mut st) => {
                    st.duration_us = now - st.start_us;
                    self.finish(st);
                    break;
                }
                Expect::Execute(mut st) => {
                    st.duration_us = now - st.start_us;
                    self.finish(st);
                }
                _ => {}
            }
        }
        if status == b'I' {
            // Portals do not outlive their transaction.
            self.portals.retain(|k, _| k.is_empty());
            self.suspended.clear();
        }
        let Some(tx) = &self.sender else {
            self.done.clear();
            return;
        };
        for mut st in self.done.drain(..) {
            st.tx_status = status;
            tx.send(TapEvent::Statement(st));
        }
    }

    fn finish(&mut self, st: Box<StatementEvent>) {
        self.statements_seen += 1;
        if let Some(m) = &self.metrics {
            m.statement(&st);
        }
        if let Some(e) = &self.entry {
            e.statements.fetch_add(1, Ordering::Relaxed);
        }
        if self.sender.is_some() {
            self.done.push(st);
        }
    }

    /// The session ended: flush what is pending and say why.
    pub fn disconnect(&mut self, reason: String, now: i64) {
        let Some(tx) = &self.sender else { return };
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

fn complete(st: &mut StatementEvent, tag: &[u8], now: i64) {
    st.command_tag = Bytes::copy_from_slice(tag);
    if st.rows == 0 {
        st.rows = msg::tag_rows(tag).unwrap_or(0);
    }
    st.duration_us = now - st.start_us;
}

/// The portal name at the start of a Bind body (or `default` if unreadable).
fn portal_name<'a>(bind: &'a [u8], default: &'a [u8]) -> &'a [u8] {
    msg::bind_names(bind).map(|(p, _)| p).unwrap_or(default)
}
