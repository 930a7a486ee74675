//! Values a session got back and sends again, mapped per side. A session
//! sends back what the database gave it: the id of `INSERT ... RETURNING id`
//! in the next `UPDATE ... WHERE id = $1`, the OID of psql's first `\d`
//! query inlined in the next. On a side whose sequences, OIDs or transaction
//! ids differ from the capture's, those values must be that side's.
//!
//! How: the capture keeps the values of small results; after a statement
//! runs, each captured value is paired with the value the side returned at
//! the same place ([`SessionRemap::learn`]), and later statements have the
//! captured value replaced by the side's where they send it: bind
//! parameters, text or binary ([`SessionRemap::params`]), and whole-token
//! literals of simple-query SQL ([`SessionRemap::sql`]). Results are hashed
//! with mapped values read back as the captured ones ([`StatementRows`]), so
//! a result whose only difference is a mapped value matches its capture.
//!
//! What is learnt: only values a session is handed, as the column says: a
//! type the database hands out (oid, xid, reg*, uuid: `SELECT oid FROM
//! pg_class`), any column of a statement calling a generator (`nextval`,
//! `txid_current`, `lo_creat`, ...), a table column a RETURNING clause
//! returned (`INSERT ... RETURNING id`), and that same table column wherever
//! it is read later (`SELECT id FROM t ...`, psql's `\gset`). Never another
//! column: a count, a sum or a materialized view's totals differ between
//! runs when sessions race, and such a difference is no identity (mapping
//! the count 3 to 4 would turn every later `org_id = 3` into 4). Several
//! rows are paired by position only when their order is fixed (an outer
//! ORDER BY, RETURNING). Values are of a class (int2, int4, int8, oid, xid,
//! uuid, text: the int4 tenant 3 is not the int8 session id 3); a literal or
//! an untyped parameter matches any. A value the session itself sent before
//! it was handed out is ambiguous and not mapped (the `50` of `LIMIT 50` is
//! not the 50th session id): its own history is the session's capture
//! order, the same on both sides. A value seen equal on both sides drops any
//! older mapping of it; the latest pairing wins.
//!
//! Scope (`--remap`): `session` (the default) maps within a replayed
//! session; `global` also across the sessions of a side, as values pass
//! between the connections of a pool, at a cost: whether another session's
//! value is its own constant or one handed out depends on how sessions
//! interleave on replay, so a race can map a value it should not; `none`
//! maps nothing.

mod rows;
pub mod sql;
pub mod value;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use super::client::{Column, KeptRow};
use super::results::Captured;
use crate::fasthash::FastMap;
pub use rows::{Source, StatementRows, generates};
use rows::{cell_value, rows_align};
use value::{Class, Kind, Value, cells, class, kind};

/// `--remap`: where a value learnt in one statement is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Mode {
    /// Map nothing: statements are sent exactly as captured.
    None,
    /// Within each replayed session.
    #[default]
    Session,
    /// Within each session, and across the sessions of a side.
    Global,
}

/// Mappings a side keeps at most (memory stays bounded; past it, new
/// values are not learnt).
const MAX_GLOBAL: usize = 1 << 20;
const MAX_SESSION: usize = 1 << 16;

type Key = (Class, Value);

#[derive(Debug, Default)]
struct Maps {
    /// Captured value → this side's.
    forward: FastMap<Key, Value>,
    /// This side's value → the captured one (results hashed as captured).
    reverse: FastMap<Key, Value>,
}

impl Maps {
    /// Pairs `captured` with `replayed`; true when the reverse map changed.
    fn learn(&mut self, cl: Class, captured: &Value, replayed: &Value, cap: usize) -> bool {
        let (captured, replayed) = ((cl, captured.clone()), (cl, replayed.clone()));
        if captured.1 == replayed.1 {
            // The same on this side: an older mapping of it is stale.
            return match self.forward.remove(&captured) {
                Some(old) => {
                    self.reverse.remove(&(cl, old));
                    true
                }
                None => false,
            };
        }
        if self.forward.get(&captured) == Some(&replayed.1) {
            return false;
        }
        if self.forward.len() >= cap && !self.forward.contains_key(&captured) {
            return false;
        }
        if let Some(old) = self.forward.insert(captured.clone(), replayed.1.clone()) {
            self.reverse.remove(&(cl, old));
        }
        self.reverse.insert(replayed, captured.1);
        true
    }

    fn get(map: &FastMap<Key, Value>, cl: Class, v: &Value) -> Option<Value> {
        if cl != Class::Any {
            return map.get(&(cl, v.clone())).cloned();
        }
        Class::TYPED
            .iter()
            .find_map(|c| map.get(&(*c, v.clone())).cloned())
    }
}

#[derive(Debug, Default)]
struct Shared {
    maps: RwLock<Maps>,
    /// Mappings held: lookups skip the lock while there are none.
    len: AtomicUsize,
}

/// One side's table columns (table OID, attribute number) that handed out
/// values through RETURNING: a fact of the side's schema, shared by all its
/// sessions whatever the mode.
#[derive(Debug, Default)]
struct IdColumns {
    set: RwLock<crate::fasthash::FastSet<(u32, i16)>>,
    /// Columns held: no lock is taken while there are none (a workload
    /// without RETURNING never takes one).
    len: AtomicUsize,
}

impl IdColumns {
    fn contains(&self, c: &Column) -> bool {
        self.len.load(Ordering::Relaxed) > 0
            && self
                .set
                .read()
                .is_ok_and(|s| s.contains(&(c.table_oid, c.attnum)))
    }

    fn insert(&self, c: &Column) {
        if self.contains(c) {
            return;
        }
        if let Ok(mut s) = self.set.write() {
            if s.len() < MAX_SESSION {
                s.insert((c.table_oid, c.attnum));
                self.len.store(s.len(), Ordering::Relaxed);
            }
        }
    }
}

/// One side's mappings shared by its sessions, and the mode.
#[derive(Debug, Clone, Default)]
pub struct SideRemap {
    mode: Mode,
    shared: Arc<Shared>,
    ids: Arc<IdColumns>,
}

impl SideRemap {
    pub fn new(mode: Mode) -> Self {
        SideRemap {
            mode,
            ..Default::default()
        }
    }

    /// The mappings of one replayed session on this side.
    pub fn session(&self) -> SessionRemap {
        SessionRemap {
            mode: self.mode,
            local: Maps::default(),
            shared: (self.mode == Mode::Global).then(|| self.shared.clone()),
            ids: self.ids.clone(),
            sent: Default::default(),
            sources: FastMap::default(),
        }
    }
}

/// One replayed session's mappings on one side (and the side's, in
/// `global` mode).
#[derive(Debug, Default)]
pub struct SessionRemap {
    mode: Mode,
    local: Maps,
    shared: Option<Arc<Shared>>,
    ids: Arc<IdColumns>,
    /// Hashes of the values this session sent as captured (its own
    /// history, in capture order on either side); full, nothing more is
    /// learnt.
    sent: crate::fasthash::FastSet<u64>,
    /// How each fingerprint hands out values, read once from its SQL.
    sources: FastMap<i64, Source>,
}

impl SessionRemap {
    /// How `c` can hand out values (cached per fingerprint).
    pub fn source(&mut self, c: &Captured) -> Source {
        if let Some(s) = self.sources.get(&c.fingerprint) {
            return *s;
        }
        let s = Source::of(&c.facts.normalized);
        if self.sources.len() < MAX_SESSION {
            self.sources.insert(c.fingerprint, s);
        }
        s
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    fn shared(&self) -> Option<&Shared> {
        self.shared
            .as_deref()
            .filter(|s| s.len.load(Ordering::Relaxed) > 0)
    }

    /// True when some value is mapped (nothing to do otherwise).
    pub fn is_empty(&self) -> bool {
        self.local.forward.is_empty() && self.shared().is_none()
    }

    /// This side's value for a captured one of class `cl`.
    pub fn forward(&self, cl: Class, v: &Value) -> Option<Value> {
        if let Some(to) = Maps::get(&self.local.forward, cl, v) {
            return Some(to);
        }
        let s = self.shared()?;
        Maps::get(&s.maps.read().ok()?.forward, cl, v)
    }

    /// The captured value for one of this side's of class `cl`.
    pub fn reverse(&self, cl: Class, v: &Value) -> Option<Value> {
        if let Some(to) = Maps::get(&self.local.reverse, cl, v) {
            return Some(to);
        }
        let s = self.shared()?;
        Maps::get(&s.maps.read().ok()?.reverse, cl, v)
    }

    /// Remembers a captured value as sent by this session.
    fn note_sent(&mut self, v: &Value) {
        if self.sent.len() < MAX_SESSION {
            self.sent.insert(value::hash(v));
        }
    }

    /// The session sent `v` itself (or sent too much to tell).
    fn sent_before(&self, v: &Value) -> bool {
        self.sent.len() >= MAX_SESSION || self.sent.contains(&value::hash(v))
    }

    /// `c`'s parameters with mapped values replaced, and how many were;
    /// `None` when none was. Remembers the captured values as sent.
    pub fn params(&mut self, c: &Captured) -> Option<(Vec<Option<Vec<u8>>>, u32)> {
        if self.mode == Mode::None || c.param_values.is_empty() {
            return None;
        }
        let empty = self.is_empty();
        let formats = &c.param_formats;
        let mut out: Option<Vec<Option<Vec<u8>>>> = None;
        let mut n = 0;
        for (i, p) in c.param_values.iter().enumerate() {
            let format = match formats.len() {
                0 => 0,
                1 => formats[0],
                _ => formats.get(i).copied().unwrap_or(0),
            };
            let ty = c.param_types.get(i).copied().unwrap_or(0);
            let mapped = p.and_then(|b| self.map_cell(b, format, ty, empty));
            if let Some(m) = mapped {
                let out = out.get_or_insert_with(|| {
                    c.param_values
                        .iter()
                        .map(|p| p.map(<[u8]>::to_vec))
                        .collect()
                });
                out[i] = Some(m);
                n += 1;
            }
        }
        out.map(|o| (o, n))
    }

    /// One value in `format` of type `ty`: remembered as sent, and mapped
    /// unless `empty`; `None` if not mapped.
    fn map_cell(&mut self, b: &[u8], format: i16, ty: u32, empty: bool) -> Option<Vec<u8>> {
        // A timestamp, a number with a fraction, JSON: never an id.
        if ty != 0 && kind(ty).is_none() {
            return None;
        }
        let binary = format == 1 && kind(ty) != Some(Kind::Text);
        let v = if binary {
            Value::from_binary(b, ty)?
        } else {
            Value::from_text(b)?
        };
        self.note_sent(&v);
        if empty {
            return None;
        }
        let to = self.forward(class(ty), &v)?;
        if binary {
            to.binary(b.len())
        } else {
            Some(to.text())
        }
    }

    /// A simple query's SQL with mapped literals replaced, and how many
    /// were. Remembers the captured literals as sent.
    pub fn sql(&mut self, sql: &str) -> Option<(String, u32)> {
        if self.mode == Mode::None {
            return None;
        }
        let empty = self.is_empty();
        let mut sent = Vec::new();
        let out = sql::substitute(sql, |v| {
            sent.push(value::hash(v));
            // A literal's type is the server's to infer: any class.
            if empty {
                None
            } else {
                self.forward(Class::Any, v)
            }
        });
        for h in sent {
            if self.sent.len() < MAX_SESSION {
                self.sent.insert(h);
            }
        }
        out
    }

    /// Pairs the values `c` returned at capture with those this side
    /// returned (`kept`, with their columns). True when a mapping changed,
    /// so the result's hash must be taken again.
    pub fn learn(&mut self, c: &Captured, kept: &[KeptRow]) -> bool {
        if self.mode == Mode::None || c.result_values.is_empty() {
            return false;
        }
        let captured: Vec<&[u8]> = c.result_values.iter().flatten().collect();
        if captured.len() != kept.len() || (kept.len() > 1 && !rows_align(&c.facts.normalized)) {
            return false;
        }
        let how = self.source(c);
        let mut changed = false;
        for ((cols, replayed), captured) in kept.iter().zip(captured) {
            let (Some(r), Some(c)) = (cells(replayed), cells(captured)) else {
                continue;
            };
            if r.len() != c.len() || r.len() != cols.len() {
                continue;
            }
            for ((col, r), c) in cols.iter().zip(r).zip(c) {
                let (Some(r), Some(c)) = (r, c) else { continue };
                if r == c && self.is_empty() && !how.returning {
                    // The usual case: the same value, nothing mapped yet.
                    continue;
                }
                if !self.candidate(col, how) {
                    continue;
                }
                if how.returning && col.table_oid != 0 {
                    self.ids.insert(col);
                }
                let (Some(rv), Some(cv)) = (cell_value(col, r), cell_value(col, c)) else {
                    continue;
                };
                if rv != cv && self.sent_before(&cv) {
                    // Sent before it was handed out: another value's twin.
                    continue;
                }
                let cl = class(col.type_oid);
                changed |= self.local.learn(cl, &cv, &rv, MAX_SESSION);
                if rv == cv && self.shared().is_none() {
                    continue;
                }
                if let Some(s) = &self.shared {
                    if let Ok(mut m) = s.maps.write() {
                        changed |= m.learn(cl, &cv, &rv, MAX_GLOBAL);
                        s.len.store(m.forward.len(), Ordering::Relaxed);
                    }
                }
            }
        }
        changed
    }
}

#[cfg(test)]
mod tests;
