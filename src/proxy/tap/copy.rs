//! COPY in the tap: the CopyData, CopyDone and CopyFail messages a client
//! streams for `COPY ... FROM STDIN` are kept with their statement (up to
//! `--max-copy-bytes`), and the server's copy-in mode is followed so the
//! queue of expected replies stays in step.
//!
//! Which statement the data belongs to: the newest Query or Execute the
//! client sent before it. A client streams data only after CopyInResponse,
//! so that is the statement in copy-in mode, whatever its SQL says (`copy t
//! from stdout` is a COPY FROM STDIN too, and a COPY can sit inside a
//! multi-statement Query): the tap never guesses from the SQL.
//!
//! What must stay true: in copy-in mode the server ignores Sync (and Flush)
//! until CopyDone or CopyFail. Drivers that send Bind, Execute, Sync before
//! the data (tokio-postgres' `copy_in`) and another Sync after CopyDone get
//! one ReadyForQuery for the two; the ignored Sync must not be expected.

use bytes::BufMut;

use super::{Expect, Tap};
use crate::capture::event::CopyIn;
use crate::wire::frame::{Direction, Frames};

impl Tap {
    /// A CopyData (`d`), CopyDone (`c`) or CopyFail (`f`) from the client.
    pub(super) fn copy_message(&mut self, tag: u8, body: &[u8]) {
        if tag != b'd' {
            self.copy_in_open = false;
        }
        let Some(limits) = self.limits else { return };
        let Some(st) = self.queue.iter_mut().rev().find_map(|e| match e {
            Expect::Execute(st) | Expect::Query(st) => Some(st),
            _ => None,
        }) else {
            return;
        };
        let copy = st.copy_in.get_or_insert_with(Box::default);
        if tag == b'd' {
            copy.bytes += body.len() as u64;
            if copy.bytes > limits.max_copy_bytes || limits.redact {
                // Counted, not kept: the statement is recorded without data.
                copy.over_limit = !limits.redact;
                copy.frames = Vec::new();
            }
        }
        if copy.over_limit || limits.redact {
            return;
        }
        put_frame(copy, tag, body);
    }

    /// CopyInResponse: the front statement is in copy-in mode. Syncs the
    /// client sent after it and before its data are ignored by the server.
    pub(super) fn copy_in_response(&mut self) {
        let ended = match self.queue.front() {
            Some(Expect::Execute(st)) => st
                .copy_in
                .as_ref()
                .is_some_and(|c| ends_with_copy_end(&c.frames)),
            // A simple Query: clients send no Sync in it.
            _ => return,
        };
        if ended {
            // The client streamed data before the server asked (pipelined):
            // where its Syncs fell is not known; the next ReadyForQuery
            // settles the queue.
            return;
        }
        let first = (1..self.queue.len())
            .find(|&i| !matches!(self.queue[i], Expect::Sync))
            .unwrap_or(self.queue.len());
        self.queue.drain(1..first);
        self.copy_in_open = true;
    }
}

fn put_frame(copy: &mut CopyIn, tag: u8, body: &[u8]) {
    copy.frames.reserve(body.len() + 5);
    copy.frames.put_u8(tag);
    copy.frames.put_u32(body.len() as u32 + 4);
    copy.frames.put_slice(body);
}

/// True when the last frame kept is a CopyDone or CopyFail.
fn ends_with_copy_end(frames: &[u8]) -> bool {
    let last = Frames::new(frames, Direction::Backend, usize::MAX)
        .map_while(Result::ok)
        .last();
    matches!(last, Some((b'c' | b'f', _)))
}
