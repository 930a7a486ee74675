//! The replayer's wire-level PostgreSQL client: trust, cleartext, md5 and
//! SCRAM-SHA-256 authentication (postgres-protocol's encoders and
//! ScramSha256), TLS per sslmode, and statements sent as the capture recorded
//! them: simple queries as captured, extended ones with the original parameter
//! type OIDs, formats and bytes, result formats and row limits.
//!
//! Results are reduced as they stream in (row hashes, columns, tag, error);
//! rows are never kept. Named statements are prepared once per connection
//! under a name derived from the SQL and parameter types, and prepared again
//! when the server lost them (DISCARD ALL, SQLSTATE 26000) or their plan
//! changed result type.
//!
//! [`connect`] holds the startup phase: TLS negotiation and authentication;
//! [`codec`] the messages built from captured bytes and RowDescription;
//! [`copy`] the captured COPY data sent back when the server asks for it;
//! [`types`] the names of user-defined result types;
//! [`rows`] the text-format re-run the diff shows differing rows with.

mod codec;
mod connect;
mod copy;
mod replies;
mod rows;
mod types;

use std::io;
use std::sync::Arc;

use bytes::{Buf, BytesMut};
pub use codec::statement_key;
use codec::{encode_bind, encode_parse, row_description, statement_name};
pub use connect::ConnectError;
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
pub use types::FIRST_USER_OID;

use crate::fasthash::{FastMap, FastSet};
use crate::wire::frame::{Direction, Frames, MAX_MESSAGE_LEN, put_frame};
use crate::wire::messages::parse_error;
use crate::wire::rowhash::RowHash;
use crate::wire::stream::Stream;

/// What the server replied to one statement, read off the wire and reduced
/// (tag, row hash, columns, error, the rows kept for remapping). The
/// replay writes it as a result row; the diff reads that row back as a
/// [`crate::replay::results::Outcome`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reply {
    /// Shared with the connection's previous statement when it is the same.
    pub command_tag: Arc<str>,
    pub hash: RowHash,
    /// The result columns from RowDescription (shared by every execution
    /// of a prepared statement).
    pub columns: Arc<[Column]>,
    /// SQLSTATE and message of the first error.
    pub error: Option<(String, String)>,
    /// The rows as this side returned them, with their columns, while the
    /// result stays within [`Extras::keep`]; `None` past it (or not asked).
    pub kept: Option<Vec<KeptRow>>,
    /// Values replaced by this side's before sending (see `remap`).
    pub remapped: u32,
    /// Rows as the tap counts them (see [`Reply::rows`]).
    rows: u64,
    /// DataRows counted up to the last CommandComplete.
    rows_mark: u64,
}

impl Reply {
    /// Rows as the tap counts them: per statement its DataRows, else its
    /// command tag's count; summed over the statements of a simple Query.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// A CommandComplete ended one statement.
    fn complete(&mut self, tag: &[u8]) {
        if self.hash.rows == self.rows_mark {
            self.rows += crate::wire::messages::tag_rows(tag).unwrap_or(0);
        } else {
            self.rows += self.hash.rows - self.rows_mark;
        }
        self.rows_mark = self.hash.rows;
    }
}

/// One result column, as RowDescription describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub type_oid: u32,
    /// The table the column comes from (0 for an expression), and its
    /// attribute number there.
    pub table_oid: u32,
    pub attnum: i16,
    /// 0 text, 1 binary.
    pub format: i16,
    /// A user-defined type's schema-qualified name, resolved on this
    /// connection (see [`types`]); `None` for built-in types (OID below
    /// 16384), whose OIDs are the same on every server.
    pub type_name: Option<Arc<str>>,
}

/// A DataRow body as a side returned it, with the columns it came under.
pub type KeptRow = (Arc<[Column]>, Vec<u8>);

/// Reads result rows as the capture holds them: a value this side returned
/// in place of a captured one is hashed as the captured one (see `remap`).
pub trait RowMap {
    /// Writes `body` with such values replaced into `out`; false (and `out`
    /// unspecified) when there were none.
    fn rewrite(&self, columns: &[Column], body: &[u8], out: &mut Vec<u8>) -> bool;
}

/// What a statement brings besides its SQL and parameters.
#[derive(Clone, Copy, Default)]
pub struct Extras<'a> {
    /// The COPY messages the client sent, as the capture keeps them (type
    /// byte, then body): sent, up to each CopyDone or CopyFail, each time the
    /// server asks for COPY data. `None`: none was captured.
    pub copy_in: Option<&'a [&'a [u8]]>,
    /// Rows hashed through this map.
    pub rows: Option<&'a (dyn RowMap + Sync)>,
    /// Keep the result's rows while it has at most this many rows and
    /// bytes of DataRow bodies ([`Reply::kept`]).
    pub keep: Option<(u64, usize)>,
}

/// An extended-protocol statement as captured.
#[derive(Debug, Clone, Copy)]
pub struct Extended<'a> {
    pub sql: &'a [u8],
    pub param_oids: &'a [u32],
    pub param_formats: &'a [i16],
    pub params: &'a [Option<&'a [u8]>],
    pub result_formats: &'a [i16],
    pub max_rows: i32,
    /// The client used a named statement (prepare once, execute by name).
    pub named: bool,
}

enum Stop {
    Ready,
    Suspended,
    Completed,
}

pub struct Client {
    stream: Stream,
    buf: BytesMut,
    out: BytesMut,
    prepared: FastSet<u64>,
    /// Result columns of prepared statements by (statement, result formats):
    /// described once per connection, as drivers do.
    described: FastMap<u64, Arc<[Column]>>,
    /// The last CommandComplete tag, reused while statements repeat it.
    last_tag: Arc<str>,
    /// The last RowDescription (as received, and parsed), reused while
    /// statements repeat it: simple queries are described every time.
    last_columns: (Vec<u8>, Arc<[Column]>),
    /// Names of the user-defined types this connection's results used.
    type_names: FastMap<u32, Arc<str>>,
    /// A DataRow rewritten through [`Extras::rows`].
    scratch: Vec<u8>,
    /// The backend's process id (BackendKeyData; 0 if the server sent none).
    pid: i32,
    /// Called once the server holds the next statement's snapshot (see
    /// [`Client::on_snapshot`]).
    snapshot_hook: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl Client {
    async fn flush_out(&mut self) -> io::Result<()> {
        self.stream.write_all(&self.out).await?;
        self.out.clear();
        Ok(())
    }

    /// One whole frame (startup phase only: allocates).
    async fn read_frame(&mut self) -> io::Result<(u8, Vec<u8>)> {
        loop {
            if let Some(Ok((tag, body))) =
                Frames::new(&self.buf, Direction::Backend, MAX_MESSAGE_LEN).next()
            {
                let frame = (tag, body.to_vec());
                self.buf.advance(body.len() + 5);
                return Ok(frame);
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// The backend's process id, as `pg_blocking_pids` names it.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Calls `hook` once the server has taken the next statement's snapshot,
    /// or as near as the protocol shows it: an extended statement asks for
    /// its BindComplete at once (a Flush after Bind; a SELECT's snapshot is
    /// taken at Bind), a simple query counts once it is sent. Called in any
    /// case before the statement returns, error or not.
    pub fn on_snapshot(&mut self, hook: Box<dyn FnOnce() + Send + Sync>) {
        self.snapshot_hook = Some(hook);
    }

    fn snapshot_taken(&mut self) {
        if let Some(h) = self.snapshot_hook.take() {
            h();
        }
    }

    /// A simple Query, as captured.
    pub async fn simple(&mut self, sql: &[u8]) -> io::Result<Reply> {
        self.simple_with(sql, &Extras::default()).await
    }

    /// A simple Query with what else its statements need.
    pub async fn simple_with(&mut self, sql: &[u8], ex: &Extras<'_>) -> io::Result<Reply> {
        let mut body = Vec::with_capacity(sql.len() + 1);
        body.extend_from_slice(sql);
        body.push(0);
        let mut frame = Vec::with_capacity(body.len() + 5);
        put_frame(&mut frame, b'Q', &body);
        let sent = self.stream.write_all(&frame).await;
        self.snapshot_taken();
        sent?;
        let mut out = Reply {
            kept: ex.keep.map(|_| Vec::new()),
            ..Default::default()
        };
        let mut copy = copy::Feed::new(ex.copy_in, copy::After::Nothing);
        while !matches!(
            self.read_until(&mut out, false, &mut copy, ex).await?,
            Stop::Ready
        ) {}
        self.name_types(&mut out).await?;
        Ok(out)
    }

    /// An extended-protocol statement; re-prepares once when the server lost
    /// the statement or its plan changed result type.
    pub async fn extended(&mut self, x: &Extended<'_>) -> io::Result<Reply> {
        self.extended_with(x, &Extras::default()).await
    }

    /// An extended-protocol statement with what else it needs.
    pub async fn extended_with(&mut self, x: &Extended<'_>, ex: &Extras<'_>) -> io::Result<Reply> {
        let out = self.extended_once(x, false, ex).await;
        self.snapshot_taken();
        let out = out?;
        let lost = out.error.as_ref().is_some_and(|(code, msg)| {
            code == "26000"
                || (code == "0A000" && msg.contains("cached plan must not change result type"))
        });
        if x.named && lost {
            self.extended_once(x, true, ex).await
        } else {
            Ok(out)
        }
    }

    async fn extended_once(
        &mut self,
        x: &Extended<'_>,
        reprepare: bool,
        ex: &Extras<'_>,
    ) -> io::Result<Reply> {
        let key = statement_key(x.sql, x.param_oids);
        let mut name_buf = [0u8; 23];
        let name = if x.named {
            statement_name(key, &mut name_buf)
        } else {
            ""
        };
        self.out.clear();
        let must_parse = !x.named || reprepare || !self.prepared.contains(&key);
        let shape = x
            .result_formats
            .iter()
            .fold(key, |h, f| h.rotate_left(7) ^ (*f as u16 as u64 + 1));
        if must_parse {
            self.described.remove(&shape);
            if x.named {
                // Closing a statement that does not exist is not an error.
                frontend::close(b'S', name, &mut self.out)?;
                self.prepared.insert(key);
            }
            encode_parse(name, x.sql, x.param_oids, &mut self.out);
        }
        encode_bind(name, x, x.result_formats, &mut self.out)?;
        if self.snapshot_hook.is_some() {
            frontend::flush(&mut self.out);
        }
        let known = if x.named {
            self.described.get(&shape).cloned()
        } else {
            None
        };
        if known.is_none() {
            frontend::describe(b'P', "", &mut self.out)?;
        }
        frontend::execute("", x.max_rows.max(0), &mut self.out)?;
        let paged = x.max_rows > 0;
        if paged {
            frontend::flush(&mut self.out)
        } else {
            frontend::sync(&mut self.out)
        }
        let batch = std::mem::take(&mut self.out);
        self.stream.write_all(&batch).await?;
        self.out = batch;
        let mut out = Reply {
            kept: ex.keep.map(|_| Vec::new()),
            ..Default::default()
        };
        // Described before: no RowDescription comes, the rows need columns.
        if let Some(cols) = &known {
            out.columns = cols.clone();
        }
        // The Sync sent with the Execute is ignored in copy-in mode: after
        // the data, a Sync of its own (paged, the Sync follows completion).
        let after = if paged {
            copy::After::Nothing
        } else {
            copy::After::Sync
        };
        let mut copy = copy::Feed::new(ex.copy_in, after);
        loop {
            match self.read_until(&mut out, paged, &mut copy, ex).await? {
                Stop::Ready => break,
                Stop::Suspended => {
                    self.out.clear();
                    frontend::execute("", x.max_rows, &mut self.out)?;
                    frontend::flush(&mut self.out);
                    self.flush_out().await?;
                }
                Stop::Completed => {
                    self.out.clear();
                    frontend::sync(&mut self.out);
                    self.flush_out().await?;
                }
            }
        }
        if out.error.is_some() && must_parse && x.named {
            self.prepared.remove(&key);
        }
        match known {
            Some(cols) => out.columns = cols,
            None if x.named && out.error.is_none() => {
                self.described.insert(shape, out.columns.clone());
            }
            None => {}
        }
        self.name_types(&mut out).await?;
        Ok(out)
    }

    /// Ends the session politely.
    pub async fn terminate(mut self) {
        self.out.clear();
        frontend::terminate(&mut self.out);
        let _ = self.flush_out().await;
        let _ = self.stream.shutdown().await;
    }
}
