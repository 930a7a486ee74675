//! The spool's compact binary form of an item: what `encode` writes,
//! `decode` reads back as the queue's session's. Not a file format kept
//! across runs: one replay writes and reads it. A statement's facts (its
//! normalised text and what it is) stay in memory, once per block in a
//! [`FactsTable`]; the item holds their index.

use std::io;
use std::sync::Arc;

use crate::capture::event::Protocol;
use crate::fasthash::FastMap;
use crate::replay::fidelity::{CopyIn, Messages};
use crate::replay::order::{SyncKey, TableSet};
use crate::replay::plan::{Item, OrderTag, SessionKey};
use crate::replay::results::{Captured, Params};
use crate::sql::Facts;

/// The distinct facts of one block's statements, in the order first met.
#[derive(Default)]
pub(super) struct FactsTable {
    pub list: Vec<Arc<Facts>>,
    at: FastMap<usize, u32>,
}

impl FactsTable {
    fn index(&mut self, f: &Arc<Facts>) -> u32 {
        let key = Arc::as_ptr(f) as usize;
        if let Some(i) = self.at.get(&key) {
            return *i;
        }
        let i = self.list.len() as u32;
        self.list.push(f.clone());
        self.at.insert(key, i);
        i
    }

    /// The block's list, leaving the table empty for the next block.
    pub fn take(&mut self) -> Vec<Arc<Facts>> {
        self.at.clear();
        std::mem::take(&mut self.list)
    }
}

pub(super) fn put_u32(b: &mut Vec<u8>, v: u32) {
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

pub(super) fn encode(it: &Item, b: &mut Vec<u8>, facts: &mut FactsTable) {
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
            put_u32(b, facts.index(&c.facts));
            put_bytes(b, c.sql.as_bytes());
            b.push((c.protocol == Protocol::Simple) as u8);
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

pub(super) struct Dec<'a> {
    b: &'a [u8],
    at: usize,
}

fn corrupt() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "replay spool block is corrupt")
}

impl<'a> Dec<'a> {
    pub(super) fn new(b: &'a [u8]) -> Dec<'a> {
        Dec { b, at: 0 }
    }

    fn take(&mut self, n: usize) -> io::Result<&'a [u8]> {
        let s = self.b.get(self.at..self.at + n).ok_or_else(corrupt)?;
        self.at += n;
        Ok(s)
    }
    fn u8(&mut self) -> io::Result<u8> {
        Ok(self.take(1)?[0])
    }
    pub(super) fn u32(&mut self) -> io::Result<u32> {
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

pub(super) fn decode(r: &mut Dec, key: &SessionKey, facts: &[Arc<Facts>]) -> io::Result<Item> {
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
            c.facts = facts.get(r.u32()? as usize).cloned().ok_or_else(corrupt)?;
            c.sql = r.opt_str()?.ok_or_else(corrupt)?;
            c.protocol = if r.u8()? == 1 {
                Protocol::Simple
            } else {
                Protocol::Extended
            };
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
