//! The forwarding loop of one direction of a session: read what arrived,
//! let the tap look at every complete frame, write the same bytes on.
//!
//! What must stay true: bytes are forwarded exactly as read, in whole frames,
//! as soon as they are complete (no waiting for Sync); the read buffer is
//! reused, so a steady session allocates nothing per message; the tap lock is
//! per session and never held across an await.

use std::sync::Mutex;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

use super::tap::Tap;
use crate::clock::now_us;
use crate::wire::frame::{Direction, FrameError, Frames, peek_frame};
use crate::wire::messages as msg;
use crate::wire::stream::{ReadHalf, WriteHalf};

const READ_CHUNK: usize = 16 * 1024;

/// Why a pump stopped.
#[derive(Debug)]
pub enum End {
    /// The reading side closed cleanly.
    Eof,
    /// The other pump asked us to stop.
    Stopped,
    Io(std::io::Error),
    Malformed(FrameError),
}

/// What one pump needs besides its sockets.
pub struct PumpCtx<'a> {
    pub dir: Direction,
    pub tap: &'a Mutex<Tap>,
    pub max_message: usize,
    /// Rewrite AuthenticationSASL to drop `-PLUS` mechanisms (TLS terminated).
    pub strip_sasl_plus: bool,
    /// Bytes read in this direction: one atomic add per read chunk.
    pub bytes: &'a metrics::Counter,
}

/// Pumps `rd` into `wr` until EOF, an error, or a stop message (an optional
/// final frame to write, e.g. an ErrorResponse for the client).
pub async fn pump(
    rd: &mut ReadHalf,
    wr: &mut WriteHalf,
    buf: &mut BytesMut,
    ctx: &PumpCtx<'_>,
    stop: &mut oneshot::Receiver<Option<Vec<u8>>>,
) -> End {
    // The other pump drops its sender without a word when its reading side
    // ends cleanly: a client's half-close must not stop the replies still
    // on their way to it, so a closed channel only disarms the stop.
    let mut stop_armed = true;
    loop {
        // Frames already buffered go first: on the first pass these are the
        // bytes a client sent together with its StartupMessage (a pipelined
        // first query), which must not wait for the client's next send.
        if let Err(end) = forward_frames(wr, buf, ctx).await {
            return end;
        }
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        let n = tokio::select! {
            // Polled in order, with no random draw per read: a stop from the
            // other pump first, so the error it carries (08P01 for a
            // malformed client frame) reaches the client even when the
            // upstream's EOF, which that stop caused, is already readable.
            biased;
            last = &mut *stop, if stop_armed => {
                let Ok(last) = last else {
                    stop_armed = false;
                    continue;
                };
                if let Some(frame) = last {
                    let _ = wr.write_all(&frame).await;
                }
                let _ = wr.shutdown().await;
                return End::Stopped;
            }
            r = rd.read_buf(buf) => match r {
                Ok(n) => n,
                Err(e) => return End::Io(e),
            },
        };
        if n == 0 {
            // Complete frames were forwarded above; a torn last frame is
            // dropped, as the server would drop it at EOF.
            let _ = wr.shutdown().await;
            return End::Eof;
        }
        ctx.bytes.increment(n as u64);
    }
}

/// Shows every complete frame in `buf` to the tap and writes them on, leaving
/// a partial frame at the front of `buf`.
async fn forward_frames(
    wr: &mut WriteHalf,
    buf: &mut BytesMut,
    ctx: &PumpCtx<'_>,
) -> Result<(), End> {
    if buf.is_empty() {
        return Ok(());
    }
    let now = now_us();
    let (end, rewrite) = {
        let mut tap = ctx.tap.lock().unwrap_or_else(|e| e.into_inner());
        let rewrite = ctx.strip_sasl_plus && !tap.is_ready();
        let mut frames = Frames::new(buf, ctx.dir, ctx.max_message);
        for f in frames.by_ref() {
            match f {
                Ok((tag, body)) => match ctx.dir {
                    Direction::Frontend => tap.frontend(tag, body, now),
                    Direction::Backend => tap.backend(tag, body, now),
                },
                Err(e) => return Err(End::Malformed(e)),
            }
        }
        (frames.consumed(), rewrite)
    };
    if end > 0 {
        let written = if rewrite {
            wr.write_all(&rewrite_sasl(&buf[..end], ctx.max_message))
                .await
        } else {
            wr.write_all(&buf[..end]).await
        };
        written.map_err(End::Io)?;
        buf.advance(end);
    }
    // A frame larger than the buffer: grow once to hold it whole.
    if let Ok(Some(f)) = peek_frame(buf, ctx.dir, ctx.max_message) {
        if f.total > buf.capacity() {
            buf.reserve(f.total - buf.len());
        }
    }
    Ok(())
}

/// Copies a chunk of backend frames, replacing any AuthenticationSASL offer of
/// channel binding: the client's TLS session ends at the proxy, so
/// `SCRAM-SHA-256-PLUS` could never verify.
fn rewrite_sasl(chunk: &[u8], max: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(chunk.len());
    let mut pos = 0;
    for (tag, body) in Frames::new(chunk, Direction::Backend, max).flatten() {
        let total = body.len() + 5;
        if tag == b'R' && body.get(..4) == Some(&10i32.to_be_bytes()[..]) {
            out.extend_from_slice(&msg::sasl_without_plus(body));
        } else {
            out.extend_from_slice(&chunk[pos..pos + total]);
        }
        pos += total;
    }
    out
}
