//! COPY FROM STDIN on replay: when the server answers a statement with
//! CopyInResponse, the client sends the messages the capture kept for it
//! (CopyData in the client's own chunks, then its CopyDone or CopyFail),
//! byte for byte and in order. A Query with several COPYs is asked once per
//! COPY and gets each one's messages in turn.
//!
//! What must stay true: the server never waits on the client. With nothing
//! (left) captured, the COPY is ended with a CopyFail naming why; in the
//! extended protocol the Sync sent with the Execute was ignored in copy-in
//! mode, so one follows the data.

use std::io;

use postgres_protocol::message::frontend;

use super::Client;
use crate::wire::frame::put_frame;

/// What follows a COPY's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum After {
    Nothing,
    Sync,
}

/// A statement's captured COPY messages and how far they were sent.
pub(super) struct Feed<'a> {
    items: Option<&'a [&'a [u8]]>,
    next: usize,
    after: After,
}

impl<'a> Feed<'a> {
    pub(super) fn new(items: Option<&'a [&'a [u8]]>, after: After) -> Self {
        Feed {
            items,
            next: 0,
            after,
        }
    }
}

/// Sends are batched up to this many bytes (CopyData chunks are often 8 KiB).
const SEND_BATCH: usize = 256 << 10;

impl Client {
    /// The server is in copy-in mode: send the next COPY's messages.
    pub(super) async fn copy_in(&mut self, feed: &mut Feed<'_>) -> io::Result<()> {
        self.out.clear();
        let mut ended = false;
        if let Some(items) = feed.items {
            while let Some(item) = items.get(feed.next) {
                feed.next += 1;
                let Some((&tag, body)) = item.split_first() else {
                    continue;
                };
                put_frame(&mut self.out, tag, body);
                if matches!(tag, b'c' | b'f') {
                    ended = true;
                    break;
                }
                if self.out.len() >= SEND_BATCH {
                    self.flush_out().await?;
                }
            }
        }
        if !ended {
            let why: &[u8] = if feed.items.is_some() {
                b"pgtape: the capture ends inside this COPY\0"
            } else {
                b"pgtape: COPY data was not captured\0"
            };
            put_frame(&mut self.out, b'f', why);
        }
        if feed.after == After::Sync {
            frontend::sync(&mut self.out);
        }
        self.flush_out().await
    }
}
