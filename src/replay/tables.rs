//! Which tables a statement uses, for the order of effects across sessions
//! (`--order commit` at the grain of tables; see [`super::order`]).
//!
//! The source's catalog is read once at start: ordinary and partitioned
//! tables without user triggers, rules or (non-partition) inheritance are
//! *plain* and get a dense id; a partitioned table shares its id with its
//! partitions, and tables joined by foreign keys share one (a write to a
//! child reads its parent, a delete from a parent touches its children).
//! Everything else (views, materialised views, catalogs, names created
//! during the capture) has no id.
//!
//! A statement's tables are resolved once per fingerprint from its
//! normalised SQL: the names in relation position (after FROM, JOIN, INTO,
//! UPDATE, TABLE, USING, and the comma lists after them; not functions, not
//! its own CTEs) must all be plain, else the statement is "any table"
//! (`None`); every other word that names a plain table is added, so a
//! subquery or a column-less reference is never missed. Being wrong in the
//! safe direction costs only waiting: a statement of unknown tables waits
//! for every earlier sync point, as with no tables at all.

use std::collections::BTreeSet;
use std::sync::Arc;

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::tokenizer::{Token, Tokenizer};

use super::client::{Client, Extended};
use super::conn_opts::ConnOpts;
use crate::fasthash::FastMap;
use crate::sql::relations::{cte_names, relation_names};

/// Dense ids of tables (or sequences); `None` is any.
pub type Ids = Option<Arc<[u32]>>;

/// The plain tables of the source, by every name a statement may use.
#[derive(Debug, Default)]
pub struct Catalog {
    /// `relname` and `schema.relname` → id; `None` when not plain or ambiguous.
    names: FastMap<String, Option<u32>>,
    ids: usize,
    /// A plain table's oid → its id, when the id is that table's alone (no
    /// foreign key joins it to another): its rows can be keyed.
    lone: FastMap<i64, u32>,
    /// The sequences tables draw from.
    pub sequences: super::sequences::Sequences,
    /// The unique keys of lone tables, for row scopes.
    pub keys: super::row_keys::RowKeys,
}

const RELATIONS: &str = "SELECT c.oid::int8, n.nspname, c.relname, \
    (c.relkind IN ('r', 'p') AND NOT c.relhasrules \
     AND NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = c.oid AND NOT t.tgisinternal) \
     AND NOT EXISTS (SELECT 1 FROM pg_inherits i JOIN pg_class ch ON ch.oid = i.inhrelid \
                     WHERE (i.inhrelid = c.oid OR i.inhparent = c.oid) AND NOT ch.relispartition))::text \
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') \
      AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'";
const FOREIGN_KEYS: &str =
    "SELECT conrelid::int8, confrelid::int8 FROM pg_constraint WHERE contype = 'f'";
/// Partitions and their parents: a partitioned table and its partitions
/// are one table to the order (a statement on either reaches the other's rows).
const PARTITIONS: &str = "SELECT i.inhrelid::int8, i.inhparent::int8 FROM pg_inherits i \
    JOIN pg_class c ON c.oid = i.inhrelid WHERE c.relispartition";

impl Catalog {
    /// Reads the catalog of the database `opts` points at.
    pub async fn load(opts: &ConnOpts) -> anyhow::Result<Catalog> {
        let mut c = Client::connect(opts, &opts.user, &[]).await?;
        let rels = query(&mut c, RELATIONS).await?;
        let fks = query(&mut c, FOREIGN_KEYS).await?;
        let parts = query(&mut c, PARTITIONS).await?;
        let seqs = query(&mut c, super::sequences::SEQUENCES).await?;
        let keys = query(&mut c, super::row_keys::UNIQUE_KEYS).await?;
        let columns = query(&mut c, super::row_keys::COLUMNS).await?;
        c.terminate().await;
        let seqs: Vec<(String, String, i64)> = seqs
            .into_iter()
            .filter_map(|r| match &r[..] {
                [Some(ns), Some(t), Some(s)] => Some((ns.clone(), t.clone(), s.parse().ok()?)),
                _ => None,
            })
            .collect();
        let rels: Vec<(i64, String, String, bool)> = rels
            .into_iter()
            .filter_map(|r| match &r[..] {
                [Some(oid), Some(ns), Some(name), Some(plain)] => {
                    Some((oid.parse().ok()?, ns.clone(), name.clone(), plain == "true"))
                }
                _ => None,
            })
            .collect();
        let pairs = |rows: Vec<Vec<Option<String>>>| -> Vec<(i64, i64)> {
            rows.into_iter()
                .filter_map(|r| match &r[..] {
                    [Some(a), Some(b)] => Some((a.parse().ok()?, b.parse().ok()?)),
                    _ => None,
                })
                .collect()
        };
        let mut catalog = Catalog::build(&rels, &pairs(fks), &pairs(parts));
        catalog.sequences = super::sequences::Sequences::build(&seqs);
        catalog.keys = super::row_keys::RowKeys::build(&catalog.lone, &keys, &columns);
        Ok(catalog)
    }

    /// The catalog from its relations (oid, schema, name, plain), foreign
    /// keys (referencing, referenced) and partitions (partition, parent).
    pub fn build(
        rels: &[(i64, String, String, bool)],
        fks: &[(i64, i64)],
        parts: &[(i64, i64)],
    ) -> Catalog {
        let index: FastMap<i64, usize> = rels.iter().enumerate().map(|(i, r)| (r.0, i)).collect();
        let mut parent: Vec<usize> = (0..rels.len()).collect();
        fn root(p: &mut [usize], mut i: usize) -> usize {
            while p[i] != i {
                p[i] = p[p[i]];
                i = p[i];
            }
            i
        }
        let mut plain: Vec<bool> = rels.iter().map(|r| r.3).collect();
        // Components joined by a foreign key: their rows cannot be keyed.
        let mut joined: Vec<bool> = vec![false; rels.len()];
        let partitions: std::collections::HashSet<i64> = parts.iter().map(|p| p.0).collect();
        for (fk, (a, b)) in fks
            .iter()
            .map(|e| (true, e))
            .chain(parts.iter().map(|e| (false, e)))
        {
            let (Some(&a), Some(&b)) = (index.get(a), index.get(b)) else {
                continue;
            };
            let (ra, rb) = (root(&mut parent, a), root(&mut parent, b));
            parent[ra] = rb;
            // A component with anything not plain in it is not plain.
            let p = plain[ra] && plain[rb];
            plain[rb] = p;
            let j = joined[ra] || joined[rb] || fk;
            joined[rb] = j;
        }
        let mut ids: FastMap<usize, u32> = FastMap::default();
        let mut names: FastMap<String, Option<u32>> = FastMap::default();
        // Members of each component that are not partitions.
        let mut members: FastMap<usize, u32> = FastMap::default();
        for (i, r) in rels.iter().enumerate() {
            let n = members.entry(root(&mut parent, i)).or_default();
            *n += u32::from(!partitions.contains(&r.0));
        }
        let mut lone = FastMap::default();
        for (i, (oid, ns, name, _)) in rels.iter().enumerate() {
            let r = root(&mut parent, i);
            let id = if plain[r] {
                let n = ids.len() as u32;
                Some(*ids.entry(r).or_insert(n))
            } else {
                None
            };
            if let (Some(id), 1, false, false) =
                (id, members[&r], joined[r], partitions.contains(oid))
            {
                lone.insert(*oid, id);
            }
            names.insert(format!("{ns}.{name}"), id);
            names
                .entry(name.clone())
                .and_modify(|e| {
                    if *e != id {
                        *e = None;
                    }
                })
                .or_insert(id);
        }
        Catalog {
            names,
            ids: ids.len(),
            lone,
            sequences: Default::default(),
            keys: Default::default(),
        }
    }

    /// Keys each lone table by what the capture's statements bind, and
    /// finds the tables whose writes commute (see
    /// [`super::row_keys::RowKeys::choose`]): `shapes` are the capture's.
    pub fn choose_keys(&mut self, shapes: &[&super::plan::ShapeSeen]) {
        let mut keys = std::mem::take(&mut self.keys);
        keys.choose(
            shapes.iter().map(|s| (&*s.facts.normalized, s.statements)),
            |name| self.id(name),
        );
        let resolved: Vec<_> = shapes
            .iter()
            .map(|s| {
                (
                    &*s.facts,
                    self.resolve(&s.facts.normalized),
                    s.first_us,
                    s.last_us,
                )
            })
            .collect();
        keys.find_commuting(resolved.iter().cloned(), |name| self.id(name));
        keys.find_unread(resolved, |name| self.id(name));
        self.keys = keys;
        let mut named: std::collections::BTreeMap<u32, &str> = Default::default();
        for (n, id) in &self.names {
            if let (true, Some(id)) = (n.contains('.'), id) {
                let e = named.entry(*id).or_insert(n);
                if (n.len(), n.as_str()) < (e.len(), *e) {
                    *e = n;
                }
            }
        }
        for (id, name) in named {
            if let Some(key) = self.keys.key_of(id).filter(|k| !k.is_empty()) {
                tracing::debug!(
                    table = name,
                    key = %key.join(", "),
                    commutes = self.keys.commutes(id),
                    observed = self.keys.observed(&super::order::scope::tables(&Some([id].into()))),
                    "statements keyed by"
                );
            }
        }
    }

    /// The id of the table `name` (as a statement writes it, unquoted
    /// names lower-cased), when it is plain and unambiguous.
    pub fn id(&self, name: &str) -> Option<u32> {
        self.names.get(name).copied().flatten()
    }

    /// Ids in use (the order's per-table sets).
    pub fn tables(&self) -> usize {
        self.ids
    }

    /// The tables `normalized` uses; `None` when it may use any.
    pub fn resolve(&self, normalized: &str) -> Ids {
        let dialect = PostgreSqlDialect {};
        let toks: Vec<Token> = Tokenizer::new(&dialect, normalized)
            .tokenize()
            .ok()?
            .into_iter()
            .filter(|t| !matches!(t, Token::Whitespace(_)))
            .collect();
        let ctes = cte_names(&toks);
        let mut ids = BTreeSet::new();
        for name in relation_names(&toks) {
            if ctes.contains(&name) {
                continue;
            }
            ids.insert(self.names.get(&name).copied().flatten()?);
        }
        for t in &toks {
            if let Token::Word(w) = t {
                if let Some(Some(id)) = self.names.get(&w.value.to_lowercase()) {
                    ids.insert(*id);
                }
            }
        }
        if ids.is_empty() {
            return None;
        }
        Some(ids.into_iter().collect::<Vec<_>>().into())
    }
}

async fn query(c: &mut Client, sql: &str) -> anyhow::Result<Vec<Vec<Option<String>>>> {
    let x = Extended {
        sql: sql.as_bytes(),
        param_oids: &[],
        param_formats: &[],
        params: &[],
        result_formats: &[],
        max_rows: 0,
        named: false,
    };
    match c.rows_text(&x, usize::MAX).await? {
        Ok((_, rows)) => Ok(rows),
        Err((code, msg)) => anyhow::bail!("reading the catalog: {code}: {msg}"),
    }
}

/// A catalog resolving every name to "any table" (no catalog could be read).
pub fn unknown() -> Arc<Catalog> {
    Arc::new(Catalog::default())
}

#[cfg(test)]
mod tests;
