//! Choosing each table's key from the capture, and finding the tables
//! whose writes commute (see [`super`]).

use super::values::canonical_type;
use super::{RowKeys, key_slots};
use crate::fasthash::FastMap;
use crate::replay::tables::Ids;
use crate::sql::Facts;
use crate::sql::row_key::{RowOp, row_target};

impl RowKeys {
    /// The table a blind increment (by key, no RETURNING) of `sql` writes.
    pub(super) fn blind_increment(
        &self,
        sql: &str,
        ids: &Ids,
        id: &impl Fn(&str) -> Option<u32>,
    ) -> Option<u32> {
        let Some(&[t]) = ids.as_deref() else {
            return None;
        };
        let keys = self.tables.get(&t)?;
        let rt = row_target(sql)?;
        let blind = rt.op == RowOp::Update && rt.increments && !rt.returning;
        let moves = rt
            .assigned
            .iter()
            .any(|c| keys.key.contains(c) || keys.unique_column(c));
        (blind && !moves && id(&rt.table) == Some(t) && key_slots(keys, &rt).is_some()).then_some(t)
    }

    /// Finds the tables nothing reads once they are written: after the
    /// first write of such a table, no captured statement reads it (by its
    /// plan: an insert that no unique index can reject, an increment of a
    /// commuting table), and no statement of unknown tables comes. Their
    /// sync points are waited on by no one, so none is registered (see
    /// [`Self::observed`]). Call after [`Self::find_commuting`]: plans
    /// depend on it. `shapes` as there.
    pub fn find_unread<'a>(
        &mut self,
        shapes: impl IntoIterator<Item = (&'a Facts, Ids, i64, i64)>,
        id: impl Fn(&str) -> Option<u32>,
    ) {
        let shapes: Vec<_> = shapes.into_iter().collect();
        let mut first_write: FastMap<u32, i64> = FastMap::default();
        for (f, ids, first, _) in &shapes {
            if f.read_only {
                continue;
            }
            for t in ids.iter().flat_map(|ts| ts.iter()) {
                let f = first_write.entry(*t).or_insert(*first);
                *f = (*f).min(*first);
            }
        }
        let mut read = std::collections::HashSet::new();
        for (f, ids, _, last) in &shapes {
            let plan = self.plan(ids, &f.normalized, &id);
            for (t, first) in &first_write {
                let reads = match ids {
                    None => !f.control,
                    Some(_) => plan.reads(*t, ids),
                };
                if reads && last >= first {
                    read.insert(*t);
                }
            }
        }
        self.unread = first_write
            .into_keys()
            .filter(|t| self.tables.contains_key(t) && !read.contains(t))
            .collect();
    }

    /// Finds the tables whose writes commute: every captured statement on
    /// them, from the first write on, is an increment by key that returns
    /// nothing (`SET n = n + $1 WHERE id = $2`). The order such updates run
    /// in changes no result (each counts one row) and no final state, so
    /// they wait for no other sync point (their own still hold statements
    /// that may read the table, which by then are none but those of unknown
    /// tables). `shapes` are (the facts of a normalised text, its tables as the catalog
    /// resolves them, first and last captured start).
    pub fn find_commuting<'a>(
        &mut self,
        shapes: impl IntoIterator<Item = (&'a Facts, Ids, i64, i64)>,
        id: impl Fn(&str) -> Option<u32>,
    ) {
        let shapes: Vec<_> = shapes.into_iter().collect();
        let mut first_write: FastMap<u32, i64> = FastMap::default();
        let mut blind = vec![false; shapes.len()];
        for (i, (f, ids, first, _)) in shapes.iter().enumerate() {
            if let Some(t) = self.blind_increment(&f.normalized, ids, &id) {
                blind[i] = true;
                let f = first_write.entry(t).or_insert(*first);
                *f = (*f).min(*first);
            }
        }
        let mut spoiled = std::collections::HashSet::new();
        for (i, (f, ids, _, last)) in shapes.iter().enumerate() {
            if blind[i] {
                continue;
            }
            for (t, first) in &first_write {
                let touches = match ids {
                    Some(ts) => ts.contains(t),
                    // Unknown tables may be any, but control reads none.
                    None => !f.control,
                };
                if touches && last >= first {
                    spoiled.insert(*t);
                }
            }
        }
        self.commuting = first_write
            .into_keys()
            .filter(|t| !spoiled.contains(t))
            .collect();
    }

    /// Keys each table by the column set that the most of the capture's
    /// statements bind: `shapes` are (normalised SQL, statements), `id`
    /// resolves a table name. A unique index wins a tie.
    pub fn choose<'a>(
        &mut self,
        shapes: impl IntoIterator<Item = (&'a str, u64)>,
        id: impl Fn(&str) -> Option<u32>,
    ) {
        let mut votes: FastMap<u32, FastMap<Vec<String>, u64>> = FastMap::default();
        for (sql, n) in shapes {
            let Some(rt) = row_target(sql) else { continue };
            let Some(t) = id(&rt.table) else { continue };
            let Some(keys) = self.tables.get(&t) else {
                continue;
            };
            let bound: Vec<&String> = rt.bound.iter().map(|(c, _)| c).collect();
            let v = votes.entry(t).or_default();
            for u in &keys.uniques {
                if u.cols.iter().all(|c| bound.contains(&c)) {
                    *v.entry(u.cols.clone()).or_default() += n;
                }
            }
            for c in bound {
                *v.entry(vec![c.clone()]).or_default() += n;
            }
        }
        for (t, v) in votes {
            let keys = self.tables.get_mut(&t).expect("voted tables exist");
            let typed = |cols: &[String]| {
                cols.iter()
                    .all(|c| keys.types.get(c).is_some_and(|ty| canonical_type(*ty)))
            };
            let best = v
                .into_iter()
                .filter(|(cols, _)| typed(cols))
                .max_by_key(|(cols, n)| {
                    let unique = keys.uniques.iter().any(|u| &u.cols == cols);
                    // Deterministic on ties: unique first, then the fewest
                    // columns, then by name.
                    (
                        *n,
                        unique,
                        std::cmp::Reverse(cols.len()),
                        std::cmp::Reverse(cols.clone()),
                    )
                });
            if let Some((cols, _)) = best {
                keys.key = cols;
            }
        }
    }
}
