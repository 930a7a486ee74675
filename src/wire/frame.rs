//! Framing of the PostgreSQL wire protocol: the 5-byte header (`tag`, `len`) of
//! regular messages and the untagged startup packets.
//!
//! The proxy never re-encodes what it forwards: these functions only *measure*
//! frames inside a read buffer so that whole frames can be inspected by the tap
//! and the original bytes written on unchanged. An incomplete frame is a state
//! (`Ok(None)`), not an error.

use thiserror::Error;

/// Largest message PostgreSQL itself accepts (`PQ_LARGE_MESSAGE_LIMIT`, 1 GiB - 1).
pub const MAX_MESSAGE_LEN: usize = 0x3fff_ffff;
/// Largest startup packet PostgreSQL accepts (`MAX_STARTUP_PACKET_LENGTH`).
pub const MAX_STARTUP_LEN: usize = 10_000;
/// Limit PostgreSQL applies to frontend messages that never carry data
/// (`PQ_SMALL_MESSAGE_LIMIT`): Sync, Flush, Describe, Close, Execute, ...
pub const SMALL_MESSAGE_LEN: usize = 10_000;

pub const SSL_REQUEST_CODE: u32 = 80_877_103;
pub const GSSENC_REQUEST_CODE: u32 = 80_877_104;
pub const CANCEL_REQUEST_CODE: u32 = 80_877_102;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("invalid message length {len} for message type {tag:?}")]
    BadLength { tag: char, len: u32 },
    #[error("message type {tag:?} of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge { tag: char, len: usize, limit: usize },
    #[error("invalid startup packet length {0}")]
    BadStartupLength(u32),
}

/// Where a complete regular frame sits in a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameInfo {
    pub tag: u8,
    /// Total length including the tag byte (the bytes to forward).
    pub total: usize,
}

impl FrameInfo {
    /// Offset of the body (after tag and length).
    pub const BODY: usize = 5;
}

/// Which side sent the frame: the limits differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Frontend,
    Backend,
}

/// Per-type size limit for frontend messages, mirroring PostgreSQL's own
/// `SocketBackend`: only messages that carry data may be large. Unknown types
/// pass through with the large limit (the server answers them itself).
pub fn frontend_limit(tag: u8, max: usize) -> usize {
    match tag {
        b'S' | b'H' | b'C' | b'D' | b'E' | b'X' | b'c' => SMALL_MESSAGE_LEN.min(max),
        _ => max,
    }
}

/// Measures the frame at the start of `buf`.
///
/// Returns `Ok(None)` when fewer than 5 bytes are buffered. A frame whose
/// header is valid but whose body is still arriving is returned with its
/// `total`, so the caller can compare it to `buf.len()`.
pub fn peek_frame(buf: &[u8], dir: Direction, max: usize) -> Result<Option<FrameInfo>, FrameError> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let tag = buf[0];
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    if len < 4 {
        return Err(FrameError::BadLength {
            tag: tag as char,
            len,
        });
    }
    let limit = match dir {
        Direction::Frontend => frontend_limit(tag, max),
        Direction::Backend => max,
    };
    if len as usize > limit {
        return Err(FrameError::TooLarge {
            tag: tag as char,
            len: len as usize,
            limit,
        });
    }
    Ok(Some(FrameInfo {
        tag,
        total: len as usize + 1,
    }))
}

/// Measures the untagged startup-phase packet at the start of `buf`
/// (StartupMessage, SSLRequest, GSSENCRequest, CancelRequest): returns its
/// total length once complete.
pub fn peek_startup(buf: &[u8]) -> Result<Option<usize>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if !(8..=MAX_STARTUP_LEN as u32).contains(&len) {
        return Err(FrameError::BadStartupLength(len));
    }
    if buf.len() < len as usize {
        return Ok(None);
    }
    Ok(Some(len as usize))
}

/// Iterates the complete frames at the start of a buffer, stopping at the
/// first incomplete one. `consumed()` is where the complete frames end.
pub struct Frames<'a> {
    buf: &'a [u8],
    pos: usize,
    dir: Direction,
    max: usize,
}

impl<'a> Frames<'a> {
    pub fn new(buf: &'a [u8], dir: Direction, max: usize) -> Self {
        Frames {
            buf,
            pos: 0,
            dir,
            max,
        }
    }

    pub fn consumed(&self) -> usize {
        self.pos
    }
}

impl<'a> Iterator for Frames<'a> {
    /// `(tag, body)` of each complete frame, or the framing error.
    type Item = Result<(u8, &'a [u8]), FrameError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = &self.buf[self.pos..];
        match peek_frame(rest, self.dir, self.max) {
            Ok(Some(f)) if f.total <= rest.len() => {
                self.pos += f.total;
                Some(Ok((f.tag, &rest[FrameInfo::BODY..f.total])))
            }
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        }
    }
}

/// Appends a regular frame (`tag`, length, `body`) to `out` (a `Vec<u8>`
/// or a `BytesMut`). Used only for messages pgtape itself originates
/// (errors to clients, the replayer's client, rows the tap rebuilds).
pub fn put_frame(out: &mut impl bytes::BufMut, tag: u8, body: &[u8]) {
    out.put_u8(tag);
    out.put_u32((body.len() + 4) as u32);
    out.put_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        put_frame(&mut v, tag, body);
        v
    }

    #[test]
    fn every_message_type_round_trips() {
        // Every tag byte, including unknown ones, frames the same way.
        for tag in 0u8..=255 {
            let body: Vec<u8> = (0..tag as usize).map(|i| (i * 7) as u8).collect();
            let wire = frame(tag, &body);
            let frames: Vec<_> = Frames::new(&wire, Direction::Backend, MAX_MESSAGE_LEN).collect();
            assert_eq!(frames.len(), 1, "tag {tag}");
            let (t, b) = frames[0].as_ref().unwrap();
            assert_eq!((*t, *b), (tag, &body[..]));
        }
    }

    #[test]
    fn split_and_coalesced_reads_give_the_same_frames() {
        let mut stream = Vec::new();
        for (i, tag) in [b'Q', b'P', b'B', b'E', b'S', b'd', b'D', b'Z']
            .iter()
            .enumerate()
        {
            stream.extend(frame(*tag, &vec![i as u8 ^ 0xff; i * 301]));
        }
        let whole: Vec<(u8, Vec<u8>)> = Frames::new(&stream, Direction::Backend, MAX_MESSAGE_LEN)
            .map(|f| f.map(|(t, b)| (t, b.to_vec())).unwrap())
            .collect();
        assert_eq!(whole.len(), 8);
        // Feed the same bytes in every chunk size, buffering like the pump does.
        for chunk in [1usize, 2, 3, 5, 7, 64, 1000] {
            let mut buf: Vec<u8> = Vec::new();
            let mut got = Vec::new();
            for piece in stream.chunks(chunk) {
                buf.extend_from_slice(piece);
                let mut it = Frames::new(&buf, Direction::Backend, MAX_MESSAGE_LEN);
                for f in it.by_ref() {
                    let (t, b) = f.unwrap();
                    got.push((t, b.to_vec()));
                }
                let used = it.consumed();
                buf.drain(..used);
            }
            assert!(buf.is_empty());
            assert_eq!(got, whole, "chunk size {chunk}");
        }
    }

    #[test]
    fn non_utf8_and_large_bodies_pass() {
        let body = vec![0xffu8; 1 << 20];
        let wire = frame(b'd', &body);
        let f = peek_frame(&wire, Direction::Frontend, MAX_MESSAGE_LEN)
            .unwrap()
            .unwrap();
        assert_eq!(f.total, wire.len());
    }

    #[test]
    fn malformed_lengths_are_errors() {
        assert_eq!(
            peek_frame(b"Q\0\0\0\x02", Direction::Frontend, MAX_MESSAGE_LEN),
            Err(FrameError::BadLength { tag: 'Q', len: 2 })
        );
        // A Sync claiming 1 MiB is not a Sync.
        let err = peek_frame(b"S\0\x10\0\0", Direction::Frontend, MAX_MESSAGE_LEN).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { tag: 'S', .. }));
        // Garbage whose length field is beyond 1 GiB.
        assert!(
            peek_frame(
                b"\xde\xad\xbe\xef\x00",
                Direction::Frontend,
                MAX_MESSAGE_LEN
            )
            .is_err()
        );
        assert_eq!(
            peek_frame(b"Q\0\0", Direction::Frontend, MAX_MESSAGE_LEN),
            Ok(None)
        );
    }

    #[test]
    fn startup_packets() {
        let mut ssl = Vec::new();
        ssl.extend(8u32.to_be_bytes());
        ssl.extend(SSL_REQUEST_CODE.to_be_bytes());
        assert_eq!(peek_startup(&ssl), Ok(Some(8)));
        assert_eq!(peek_startup(&ssl[..6]), Ok(None));
        assert_eq!(
            peek_startup(b"GET / HTTP/1.1"),
            Err(FrameError::BadStartupLength(0x47455420))
        );
    }
}
