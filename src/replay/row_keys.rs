//! Row scopes for the order of effects (`--order commit`): a statement
//! that touches only rows of a table with a given key waits only for what
//! touched rows of that key (or may have), not for every commit of the
//! table; two tenants, two accounts, do not wait for each other.
//!
//! A table's *key* is a set of its columns chosen once per replay from the
//! capture ([`RowKeys::choose`]): of its unique indexes' column sets and
//! its single columns, the one that the most captured statements bind by
//! equality (`aid = $2`, `org_id = $1`, an INSERT's value), a unique index
//! on a tie. Statements binding every key column get the scope of the key's
//! values (hashed into one of [`scope::BUCKETS`] per table), read in the
//! columns' types so `42`, `'42'` and a binary int8 are one key. Keys
//! exist only for tables no foreign key joins to another (a child's write
//! reads its parent's row, whose key the child's text does not tell);
//! statement shapes come from [`crate::sql::row_key`].
//!
//! - SELECT, DELETE binding the key: read and write its scope. UPDATE too,
//!   unless it assigns a key column or a column of a unique index (the row
//!   may move to another key, or collide with another row).
//! - INSERT: writes its key's scope if it binds the key, else the whole
//!   table (rows of keys not known before it runs). It reads nothing where
//!   no unique index can reject its rows (each has a generated column it
//!   leaves to its default, or there is none), its scope where one can but
//!   only within the key (the index holds every key column), else the
//!   whole table. Ids drawn from sequences are ordered by the Seq gate.
//! - An UPDATE that only increments by key (`n = n + $1`, no RETURNING) a
//!   table whose every statement from the first such write on is one
//!   ([`RowKeys::find_commuting`]: pgbench's branches and tellers, a
//!   counter nothing reads back) reads nothing: such updates commute.
//! - Anything else counts for its whole tables, as without keys.

use std::sync::Arc;

use super::order::{TableSet, scope};
use super::results::Captured;
use super::tables::Ids;
use crate::fasthash::FastMap;
use crate::sql::row_key::{RowOp, RowTarget, Slot, row_target};

mod choose;
mod values;

/// One row per (unique index, column): index oid, table oid, primary,
/// column position, column name, filled by a sequence or identity.
pub const UNIQUE_KEYS: &str = "\
    SELECT i.indexrelid::int8, i.indrelid::int8, i.indisprimary::text, k.n::int8, a.attname, \
      (a.attidentity <> '' OR \
        COALESCE(pg_get_expr(d.adbin, d.adrelid) LIKE 'nextval(%', false))::text \
    FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, n) \
    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
    JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace ns ON ns.oid = c.relnamespace \
    WHERE i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL \
      AND ns.nspname <> 'information_schema' AND ns.nspname NOT LIKE 'pg\\_%'";

/// Every column of the user's tables: table oid, name, type oid.
pub const COLUMNS: &str = "\
    SELECT a.attrelid::int8, a.attname, a.atttypid::int8 FROM pg_attribute a \
    JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace ns ON ns.oid = c.relnamespace \
    WHERE c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped \
      AND ns.nspname <> 'information_schema' AND ns.nspname NOT LIKE 'pg\\_%'";

#[derive(Debug, Clone)]
struct Unique {
    cols: Vec<String>,
    /// Per column: filled by a sequence or identity when left out.
    generated: Vec<bool>,
}

/// What the order knows of a lone table.
#[derive(Debug, Clone, Default)]
struct TableKeys {
    /// Column → type oid.
    types: FastMap<String, u32>,
    /// The primary key first, then the narrowest.
    uniques: Vec<Unique>,
    /// The columns statements are keyed by; empty: none.
    key: Vec<String>,
}

impl TableKeys {
    fn unique_column(&self, c: &str) -> bool {
        self.uniques.iter().any(|u| u.cols.iter().any(|x| x == c))
    }

    /// Whether some unique index could reject rows an INSERT listing
    /// `listed` writes: `(within the key, across keys)`.
    fn conflicts(&self, listed: &[String], binds_key: bool) -> (bool, bool) {
        let (mut within, mut across) = (false, false);
        for u in &self.uniques {
            let fresh = u
                .cols
                .iter()
                .zip(&u.generated)
                .any(|(c, g)| *g && !listed.contains(c));
            if fresh {
                continue;
            }
            if binds_key && !self.key.is_empty() && self.key.iter().all(|k| u.cols.contains(k)) {
                within = true;
            } else {
                across = true;
            }
        }
        (within, across)
    }
}

/// The keys of the source's lone tables, by table id.
#[derive(Debug, Default)]
pub struct RowKeys {
    tables: FastMap<u32, TableKeys>,
    /// Tables whose writes commute ([`RowKeys::find_commuting`]).
    commuting: std::collections::HashSet<u32>,
    /// Tables nothing reads once written ([`RowKeys::find_unread`]).
    unread: std::collections::HashSet<u32>,
}

/// How a statement's shape maps to scopes (per fingerprint).
#[derive(Debug, Clone)]
pub enum Plan {
    /// Its whole tables.
    Whole,
    /// The same scopes for every statement of the shape.
    Fixed(Access),
    /// The scope of its key's values.
    Keyed(Arc<KeyedPlan>),
}

#[derive(Debug)]
pub struct KeyedPlan {
    table: u32,
    /// Key columns and their types.
    key: Vec<(String, u32)>,
    /// It reads no row (an INSERT no unique index can reject).
    reads_none: bool,
    /// The text the plan was made from, and its key's slots there: a
    /// statement of the same text (prepared, with parameters) reuses them.
    sql: Arc<str>,
    slots: Vec<Slot>,
}

/// A statement's scopes: what it waits for, what waits for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub reads: TableSet,
    pub writes: TableSet,
}

impl Access {
    /// Both its whole tables.
    pub fn whole(tables: &TableSet) -> Access {
        Access {
            reads: tables.clone(),
            writes: tables.clone(),
        }
    }
}

impl RowKeys {
    /// From [`UNIQUE_KEYS`]' and [`COLUMNS`]' rows, for the lone tables
    /// (`oid → id`). Each table is keyed by its primary key (else its
    /// narrowest unique index) until [`Self::choose`] looks at the capture.
    pub fn build(
        lone: &FastMap<i64, u32>,
        uniques: &[Vec<Option<String>>],
        columns: &[Vec<Option<String>>],
    ) -> RowKeys {
        let mut tables: FastMap<u32, TableKeys> =
            lone.values().map(|t| (*t, TableKeys::default())).collect();
        for r in columns {
            let [Some(rel), Some(name), Some(ty)] = &r[..] else {
                continue;
            };
            let (Ok(rel), Ok(ty)) = (rel.parse::<i64>(), ty.parse::<u32>()) else {
                continue;
            };
            if let Some(t) = lone.get(&rel).and_then(|id| tables.get_mut(id)) {
                t.types.insert(name.clone(), ty);
            }
        }
        // index oid → (table, primary, (position, column, generated))
        let mut indexes: FastMap<i64, (u32, bool, Vec<(i64, String, bool)>)> = FastMap::default();
        for r in uniques {
            let [Some(ix), Some(rel), Some(pk), Some(n), Some(name), Some(g)] = &r[..] else {
                continue;
            };
            let (Ok(ix), Ok(rel), Ok(n)) = (ix.parse::<i64>(), rel.parse::<i64>(), n.parse())
            else {
                continue;
            };
            let Some(&table) = lone.get(&rel) else {
                continue;
            };
            indexes
                .entry(ix)
                .or_insert_with(|| (table, pk == "true", Vec::new()))
                .2
                .push((n, name.clone(), g == "true"));
        }
        let mut order: Vec<_> = indexes.into_iter().collect();
        order.sort_by_key(|(ix, (_, primary, cols))| (!*primary, cols.len(), *ix));
        for (_, (table, _, mut cols)) in order {
            cols.sort_by_key(|c| c.0);
            let t = tables.entry(table).or_default();
            t.uniques.push(Unique {
                cols: cols.iter().map(|c| c.1.clone()).collect(),
                generated: cols.iter().map(|c| c.2).collect(),
            });
        }
        for t in tables.values_mut() {
            t.key = t
                .uniques
                .first()
                .map(|u| u.cols.clone())
                .unwrap_or_default();
        }
        RowKeys {
            tables,
            commuting: Default::default(),
            unread: Default::default(),
        }
    }

    /// The key columns chosen for table `t` (for the log and tests).
    pub fn key_of(&self, t: u32) -> Option<&[String]> {
        self.tables.get(&t).map(|k| k.key.as_slice())
    }

    /// Whether table `t`'s writes commute (for the log and tests).
    pub fn commutes(&self, t: u32) -> bool {
        self.commuting.contains(&t)
    }

    /// Whether a sync point of `scopes` can be waited on by anything: it
    /// cannot when each of its scopes is of a table nothing reads once
    /// written.
    pub fn observed(&self, scopes: &TableSet) -> bool {
        match scopes {
            None => true,
            Some(ss) => {
                ss.is_empty()
                    || ss
                        .iter()
                        .any(|s| !self.unread.contains(&(scope::split(*s).0 as u32)))
            }
        }
    }

    /// The plan of a statement whose whole tables are `ids` (dense ids, as
    /// the catalog resolves its normalised text) and whose text is `sql`;
    /// `id` resolves a table name.
    pub fn plan(&self, ids: &Ids, sql: &Arc<str>, id: impl Fn(&str) -> Option<u32>) -> Plan {
        let Some([t]) = ids.as_deref() else {
            return Plan::Whole;
        };
        let Some(keys) = self.tables.get(t) else {
            return Plan::Whole;
        };
        let Some(rt) = row_target(sql) else {
            return Plan::Whole;
        };
        if id(&rt.table) != Some(*t) {
            return Plan::Whole;
        }
        let slots = key_slots(keys, &rt);
        let moves = |assigned: &[String]| {
            assigned
                .iter()
                .any(|c| keys.key.contains(c) || keys.unique_column(c))
        };
        let keyed = |slots: Vec<Slot>, reads_none| {
            Plan::Keyed(Arc::new(KeyedPlan {
                table: *t,
                key: keys
                    .key
                    .iter()
                    .map(|c| (c.clone(), keys.types.get(c).copied().unwrap_or(0)))
                    .collect(),
                reads_none,
                sql: sql.clone(),
                slots,
            }))
        };
        let blind = rt.increments && !rt.returning && self.commuting.contains(t);
        match rt.op {
            RowOp::Update if moves(&rt.assigned) => Plan::Whole,
            RowOp::Update if blind => slots.map_or(Plan::Whole, |s| keyed(s, true)),
            RowOp::Select | RowOp::Update | RowOp::Delete => {
                slots.map_or(Plan::Whole, |s| keyed(s, false))
            }
            RowOp::Insert if rt.on_conflict && moves(&rt.assigned) => Plan::Whole,
            RowOp::Insert => {
                let binds = slots.is_some() && !rt.from_query;
                match (keys.conflicts(&rt.listed, binds), slots) {
                    ((_, true), _) => Plan::Whole,
                    ((within, false), Some(s)) if binds => keyed(s, !within),
                    _ => Plan::Fixed(Access {
                        reads: Some(Arc::from([])),
                        writes: Some(Arc::from([scope::table(*t)])),
                    }),
                }
            }
        }
    }
}

/// The slots of the key's columns in `rt`, when it binds them all.
fn key_slots(keys: &TableKeys, rt: &RowTarget) -> Option<Vec<Slot>> {
    if keys.key.is_empty() {
        return None;
    }
    keys.key.iter().map(|c| rt.slot(c).cloned()).collect()
}

impl Plan {
    /// Whether statements of the plan read table `t`; `ids` are their
    /// whole tables.
    pub fn reads(&self, t: u32, ids: &Ids) -> bool {
        match self {
            Plan::Whole => ids.as_deref().is_none_or(|ts| ts.contains(&t)),
            Plan::Fixed(a) => a
                .reads
                .as_deref()
                .is_none_or(|ss| ss.iter().any(|s| scope::split(*s).0 == t as usize)),
            Plan::Keyed(p) => p.table == t && !p.reads_none,
        }
    }

    /// The scopes of one statement of the plan's fingerprint; `whole` is
    /// its whole tables' scopes.
    pub fn access(&self, whole: &TableSet, c: &Captured) -> Access {
        match self {
            Plan::Whole => Access::whole(whole),
            Plan::Fixed(a) => a.clone(),
            Plan::Keyed(p) => match p.hash(c) {
                Some(h) => {
                    let key: TableSet = Some(Arc::from([scope::row(p.table, h)]));
                    Access {
                        reads: if p.reads_none {
                            Some(Arc::from([]))
                        } else {
                            key.clone()
                        },
                        writes: key,
                    }
                }
                None => Access::whole(whole),
            },
        }
    }
}

#[cfg(test)]
mod tests;
