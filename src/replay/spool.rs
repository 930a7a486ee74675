//! The spool: where a session's items go when it is far behind the capture
//! reader, so the reader never waits for a session and memory stays flat.
//!
//! One file per replay, in the results directory (the user's disk, not a
//! tmpfs), unlinked as soon as it is opened so nothing is left behind, even
//! after `kill -9`. Only the dispatcher appends; sessions read their blocks
//! back with positioned reads from their own threads, and a block's space is
//! given back to the file system (a punched hole) once every queue holding
//! it has read it. Items are encoded in a compact binary form of their own;
//! the session they belong to is the queue's, so it is not repeated.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::Arc;

use super::fidelity::{CopyIn, Messages};
use super::order::{SyncKey, TableSet};
use super::plan::{Item, OrderTag, SessionKey};
use super::results::{Captured, Params};
use crate::capture::event::Protocol;

/// The spool file, owned by the dispatcher.
pub struct Spool {
    file: Arc<File>,
    end: u64,
    scratch: Vec<u8>,
}

/// Encoded items in the spool, shared by the queues that hold them.
pub struct Block {
    file: Arc<File>,
    offset: u64,
    len: usize,
}

impl Spool {
    /// Creates the spool in `dir` and unlinks it at once.
    pub fn create(dir: &Path) -> io::Result<Spool> {
        let path = dir.join(format!(".pgtape-spool-{}", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        std::fs::remove_file(&path)?;
        Ok(Spool {
            file: Arc::new(file),
            end: 0,
            scratch: Vec::new(),
        })
    }

    /// Appends `items` as one block.
    pub fn append(&mut self, items: &[Item]) -> io::Result<Arc<Block>> {
        self.scratch.clear();
        put_u32(&mut self.scratch, items.len() as u32);
        for it in items {
            encode(it, &mut self.scratch);
        }
        self.file.write_all_at(&self.scratch, self.end)?;
        let block = Block {
            file: self.file.clone(),
            offset: self.end,
            len: self.scratch.len(),
        };
        self.end += self.scratch.len() as u64;
        Ok(Arc::new(block))
    }
}

impl Block {
    /// Reads the block's items back, as session `key`'s.
    pub fn read(&self, key: &SessionKey) -> io::Result<Vec<Item>> {
        let mut buf = vec![0u8; self.len];
        self.file.read_exact_at(&mut buf, self.offset)?;
        let mut r = Dec { b: &buf, at: 0 };
        let n = r.u32()? as usize;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(decode(&mut r, key)?);
        }
        Ok(out)
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        // SAFETY: fallocate only changes the allocation of our own open file;
        // failure (a file system without hole punching) just keeps the space.
        unsafe {
            libc::fallocate(
                self.file.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                self.offset as libc::off_t,
                self.len as libc::off_t,
            );
        }
    }
}

fn put_u32(b: &mut Vec<u8>, v: u32) {
    b.extend_from_slice(&v.to_le_bytes());
}
fn put_i64(b: &mut Vec<u8>, v: i64) {
    b.extend_from_slice(&v.to_le_bytes());
}
fn put_bytes(b: &mut Vec<u8>, v: &[u8]) {
    put_u32(b, v.len() as u32);
    b.extend_from_slice(v);
}
fn put_opt(b: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        None => put_u32(b, u32::MAX),
        Some(v) => put_bytes(b, v),
    }
}

fn put_time(b: &mut Vec<u8>, t: Option<i64>) {
    match t {
        None => b.push(0),
        Some(t) => {
            b.push(1);
            put_i64(b, t);
        }
    }
}
fn put_key(b: &mut Vec<u8>, k: Option<SyncKey>) {
    match k {
        None => b.push(0),
        Some((t, serial)) => {
            b.push(1);
            put_i64(b, t);
            put_i64(b, serial as i64);
        }
    }
}
fn put_tables(b: &mut Vec<u8>, t: &TableSet) {
    match t {
        None => put_u32(b, u32::MAX),
        Some(ids) => {
            put_u32(b, ids.len() as u32);
            for id in ids.iter() {
                put_i64(b, *id as i64);
            }
        }
    }
}

fn encode(it: &Item, b: &mut Vec<u8>) {
    match it {
        Item::Connect {
            ts_us,
            user,
            params,
            ..
        } => {
            b.push(0);
            put_i64(b, *ts_us);
            put_bytes(b, user.as_bytes());
            put_u32(b, params.len() as u32);
            for (k, v) in params {
                put_bytes(b, k.as_bytes());
                put_bytes(b, v.as_bytes());
            }
        }
        Item::Statement {
            captured: c,
            named,
            order,
            ..
        } => {
            b.push(1);
            b.push(*named as u8);
            put_time(b, order.after);
            put_tables(b, &order.tables);
            put_key(b, order.sync);
            put_tables(b, &order.sync_tables);
            put_key(b, order.sent);
            put_time(b, order.publish);
            put_key(b, order.seq);
            put_tables(b, &order.seq_tables);
            for v in [c.session_id, c.seq, c.ts_us, c.duration_us, c.fingerprint] {
                put_i64(b, v);
            }
            put_bytes(b, c.normalized_sql.as_bytes());
            put_bytes(b, c.sql.as_bytes());
            b.push((c.protocol == Protocol::Simple) as u8);
            b.push(c.read_only as u8);
            b.push(c.tx_status);
            put_u32(b, c.param_types.len() as u32);
            for t in c.param_types.iter() {
                put_u32(b, *t);
            }
            put_u32(b, c.param_formats.len() as u32);
            for f in c.param_formats.iter() {
                b.extend_from_slice(&f.to_le_bytes());
            }
            put_u32(b, c.param_values.len() as u32);
            for v in c.param_values.iter() {
                put_opt(b, v);
            }
            put_u32(b, c.result_formats.len() as u32);
            for f in c.result_formats.iter() {
                b.extend_from_slice(&f.to_le_bytes());
            }
            b.extend_from_slice(&c.max_rows.to_le_bytes());
            put_opt(b, c.command_tag.as_deref().map(str::as_bytes));
            for v in [c.rows, c.ordered_hash, c.unordered_hash] {
                put_i64(b, v);
            }
            put_opt(b, c.sqlstate.as_deref().map(str::as_bytes));
            match &c.copy_in {
                CopyIn::Unknown => b.push(0),
                CopyIn::None => b.push(1),
                CopyIn::Messages(m) => {
                    b.push(2);
                    put_u32(b, m.iter().count() as u32);
                    for msg in m.iter() {
                        put_bytes(b, msg);
                    }
                }
                CopyIn::OverLimit { bytes, limit } => {
                    b.push(3);
                    put_i64(b, *bytes as i64);
                    put_time(b, limit.map(|l| l as i64));
                }
            }
            put_u32(b, c.result_values.len() as u32);
            for v in c.result_values.iter() {
                put_opt(b, v);
            }
        }
        Item::Disconnect { ts_us, .. } => {
            b.push(2);
            put_i64(b, *ts_us);
        }
    }
}

struct Dec<'a> {
    b: &'a [u8],
    at: usize,
}

fn corrupt() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "replay spool block is corrupt")
}

impl<'a> Dec<'a> {
    fn take(&mut self, n: usize) -> io::Result<&'a [u8]> {
        let s = self.b.get(self.at..self.at + n).ok_or_else(corrupt)?;
        self.at += n;
        Ok(s)
    }
    fn u8(&mut self) -> io::Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> io::Result<u32> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn i16(&mut self) -> io::Result<i16> {
        Ok(i16::from_le_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }
    fn i32(&mut self) -> io::Result<i32> {
        Ok(i32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn i64(&mut self) -> io::Result<i64> {
        Ok(i64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn opt(&mut self) -> io::Result<Option<&'a [u8]>> {
        match self.u32()? {
            u32::MAX => Ok(None),
            n => self.take(n as usize).map(Some),
        }
    }
    fn bytes(&mut self) -> io::Result<&'a [u8]> {
        self.opt()?.ok_or_else(corrupt)
    }
    fn string(&mut self) -> io::Result<String> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| corrupt())
    }
    fn time(&mut self) -> io::Result<Option<i64>> {
        Ok(match self.u8()? {
            0 => None,
            _ => Some(self.i64()?),
        })
    }
    fn key(&mut self) -> io::Result<Option<SyncKey>> {
        Ok(match self.u8()? {
            0 => None,
            _ => Some((self.i64()?, self.i64()? as u64)),
        })
    }
    fn tables(&mut self) -> io::Result<TableSet> {
        Ok(match self.u32()? {
            u32::MAX => None,
            n => Some(
                (0..n)
                    .map(|_| self.i64().map(|v| v as u64))
                    .collect::<io::Result<Vec<_>>>()?
                    .into(),
            ),
        })
    }
    fn opt_str(&mut self) -> io::Result<Option<Arc<str>>> {
        self.opt()?
            .map(|b| std::str::from_utf8(b).map(Arc::from).map_err(|_| corrupt()))
            .transpose()
    }
}

fn decode(r: &mut Dec, key: &SessionKey) -> io::Result<Item> {
    let key = key.clone();
    Ok(match r.u8()? {
        0 => {
            let ts_us = r.i64()?;
            let user = r.string()?;
            let n = r.u32()? as usize;
            let mut params = Vec::with_capacity(n);
            for _ in 0..n {
                params.push((r.string()?, r.string()?));
            }
            Item::Connect {
                key,
                ts_us,
                user,
                params,
            }
        }
        1 => {
            let named = r.u8()? != 0;
            let order = OrderTag {
                after: r.time()?,
                tables: r.tables()?,
                sync: r.key()?,
                sync_tables: r.tables()?,
                sent: r.key()?,
                publish: r.time()?,
                seq: r.key()?,
                seq_tables: r.tables()?,
            };
            let mut c = Captured {
                session_id: r.i64()?,
                seq: r.i64()?,
                ts_us: r.i64()?,
                duration_us: r.i64()?,
                fingerprint: r.i64()?,
                ..Default::default()
            };
            c.normalized_sql = r.opt_str()?.ok_or_else(corrupt)?;
            c.sql = r.opt_str()?.ok_or_else(corrupt)?;
            c.protocol = if r.u8()? == 1 {
                Protocol::Simple
            } else {
                Protocol::Extended
            };
            c.read_only = r.u8()? != 0;
            c.tx_status = r.u8()?;
            let n = r.u32()? as usize;
            c.param_types = (0..n)
                .map(|_| r.u32())
                .collect::<io::Result<Vec<_>>>()?
                .into();
            let n = r.u32()? as usize;
            c.param_formats = (0..n)
                .map(|_| r.i16())
                .collect::<io::Result<Vec<_>>>()?
                .into();
            let n = r.u32()? as usize;
            let values = (0..n).map(|_| r.opt()).collect::<io::Result<Vec<_>>>()?;
            c.param_values = values.into_iter().collect::<Params>();
            let n = r.u32()? as usize;
            c.result_formats = (0..n)
                .map(|_| r.i16())
                .collect::<io::Result<Vec<_>>>()?
                .into();
            c.max_rows = r.i32()?;
            c.command_tag = r.opt_str()?;
            c.rows = r.i64()?;
            c.ordered_hash = r.i64()?;
            c.unordered_hash = r.i64()?;
            c.sqlstate = r.opt_str()?;
            c.copy_in = match r.u8()? {
                0 => CopyIn::Unknown,
                1 => CopyIn::None,
                2 => {
                    let n = r.u32()? as usize;
                    let msgs = (0..n).map(|_| r.bytes()).collect::<io::Result<Vec<_>>>()?;
                    CopyIn::Messages(Messages::from_messages(msgs))
                }
                3 => CopyIn::OverLimit {
                    bytes: r.i64()? as u64,
                    limit: r.time()?.map(|l| l as u64),
                },
                _ => return Err(corrupt()),
            };
            let n = r.u32()? as usize;
            let values = (0..n).map(|_| r.opt()).collect::<io::Result<Vec<_>>>()?;
            c.result_values = values.into_iter().collect::<Params>();
            Item::Statement {
                key,
                captured: Arc::new(c),
                named,
                order,
            }
        }
        2 => Item::Disconnect {
            key,
            ts_us: r.i64()?,
        },
        _ => return Err(corrupt()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field of every kind of item comes back as it went in.
    #[test]
    fn items_round_trip_through_the_spool() {
        let dir = tempfile::tempdir().unwrap();
        let key: SessionKey = (Arc::from("abc"), 42);
        let c = Captured {
            session_id: 42,
            seq: 7,
            ts_us: 1_700_000_000_000_123,
            duration_us: 456,
            fingerprint: -99,
            normalized_sql: Arc::from("SELECT ? FROM t WHERE a = ?"),
            sql: Arc::from("SELECT $1 FROM t WHERE a = $2"),
            protocol: Protocol::Extended,
            read_only: true,
            tx_status: b'T',
            param_types: vec![23u32, 0].into(),
            param_formats: vec![1i16].into(),
            param_values: [Some(&b"\x00\x00\x00\x01"[..]), None].into_iter().collect(),
            result_formats: vec![0i16, 1].into(),
            max_rows: 10,
            command_tag: Some(Arc::from("SELECT 1")),
            rows: 1,
            ordered_hash: 5,
            unordered_hash: -6,
            sqlstate: None,
            copy_in: CopyIn::Messages(Messages::from_messages([&b"d1,2\n"[..], b"c"])),
            result_values: [Some(&b"\x00\x01"[..])].into_iter().collect(),
        };
        let items = vec![
            Item::Connect {
                key: key.clone(),
                ts_us: 1,
                user: "app".into(),
                params: vec![("application_name".into(), "x".into())],
            },
            Item::Statement {
                key: key.clone(),
                captured: Arc::new(c),
                named: true,
                order: OrderTag {
                    after: Some(1_700_000_000_000_000),
                    tables: Some(vec![3u64, 1 << 41 | 9].into()),
                    sync: Some((1_700_000_000_000_579, 12)),
                    sync_tables: None,
                    sent: Some((1_700_000_000_000_000, 13)),
                    publish: Some(5),
                    seq: Some((1_700_000_000_000_000, 14)),
                    seq_tables: Some(vec![1u64].into()),
                },
            },
            Item::Disconnect {
                key: key.clone(),
                ts_us: 3,
            },
        ];
        let mut spool = Spool::create(dir.path()).unwrap();
        let _other = spool.append(&items[..1]).unwrap();
        let block = spool.append(&items).unwrap();
        let back = block.read(&key).unwrap();
        assert_eq!(format!("{back:?}"), format!("{items:?}"));
        assert!(
            std::fs::read_dir(dir.path()).unwrap().next().is_none(),
            "the spool is unlinked at once"
        );
    }
}
