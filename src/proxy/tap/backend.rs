//! The server half of the tap: replies matched to the queue of what the
//! client's messages expect, statements completed and sent to the recorder.

use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::{Expect, Tap, portal_name};
use crate::capture::event::{StatementEvent, TapEvent, TapLimits};
use crate::wire::frame::{Direction, Frames};
use crate::wire::messages as msg;
use crate::wire::rowhash::RowHash;

impl Tap {
    /// A complete frame from the server.
    pub fn backend(&mut self, tag: u8, body: &[u8], now: i64) {
        match tag {
            b'D' | b'd' => {
                if let Some(Expect::Execute(st) | Expect::Query(st)) = self.queue.front_mut() {
                    let mut h = RowHash {
                        rows: st.rows,
                        ordered: st.ordered_hash,
                        unordered: st.unordered_hash,
                        bytes: st.result_bytes,
                    };
                    if tag == b'D' {
                        h.add(body);
                        if let Some(limits) = self.limits {
                            keep_values(st, &limits, body);
                        }
                    } else {
                        // COPY TO STDOUT: its data is the result, hashed as rows
                        // are; its count is the command tag's.
                        h.add_copy(body);
                    }
                    (st.rows, st.ordered_hash, st.unordered_hash, st.result_bytes) =
                        (h.rows, h.ordered, h.unordered, h.bytes);
                }
            }
            b'G' => self.copy_in_response(),
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
                        // Several statements in one Query: keep the last tag;
                        // rows are summed over the statements, each counting
                        // its DataRows or else its tag's count, as a statement
                        // of its own does. The ReadyForQuery completes it.
                        if st.rows == self.rows_mark {
                            st.rows += msg::tag_rows(tag).unwrap_or(0);
                        }
                        self.rows_mark = st.rows;
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
            b'E' => {
                self.copy_in_open = false;
                self.error(body, now)
            }
            b'Z' => {
                self.copy_in_open = false;
                self.rows_mark = 0;
                self.ready_for_query(body.first().copied().unwrap_or(b'I'), now)
            }
            _ => {}
        }
    }

    pub(super) fn error(&mut self, body: &[u8], now: i64) {
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
            // This one ends the startup; what the client pipelined behind its
            // StartupMessage is still queued and answered after it.
            return;
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

    pub(super) fn finish(&mut self, st: Box<StatementEvent>) {
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
}

/// Keeps a DataRow of a result still within the limits; drops the values of
/// one that outgrew them.
fn keep_values(st: &mut StatementEvent, limits: &TapLimits, body: &[u8]) {
    let Some(v) = &mut st.result_values else {
        return;
    };
    // At most a few rows of a few KiB are kept: counting them again is cheap.
    let (rows, bytes) = Frames::new(v, Direction::Backend, usize::MAX)
        .map_while(Result::ok)
        .fold((1u64, body.len()), |(n, b), (_, row)| {
            (n + 1, b + row.len())
        });
    if rows > limits.result_rows || bytes > limits.result_bytes {
        st.result_values = None;
        return;
    }
    crate::wire::frame::put_frame(v, b'D', body);
}

pub(super) fn complete(st: &mut StatementEvent, tag: &[u8], now: i64) {
    st.command_tag = Bytes::copy_from_slice(tag);
    if st.rows == 0 {
        st.rows = msg::tag_rows(tag).unwrap_or(0);
    }
    st.duration_us = now - st.start_us;
}
