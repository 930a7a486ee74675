//! Which sequences a statement draws from, for the order of effects across
//! sessions ([`super::order::Gate::Seq`]): concurrent inserts into a table
//! with a serial or identity column race for its ids on replay unless they
//! draw in the capture's order.
//!
//! The source's catalog is read once at start with the tables: every
//! table's column defaults that call `nextval` on a sequence, and its
//! identity columns' sequences, each sequence a dense id. A statement draws
//! when it is an `INSERT INTO` or a `COPY ... FROM` whose target table has
//! such a column; a table name that is ambiguous or unknown draws from
//! nothing known (explicit `nextval()` calls are not followed).

use std::collections::BTreeSet;
use std::sync::Arc;

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::tokenizer::{Token, Tokenizer};

use super::tables::Ids;
use crate::fasthash::FastMap;
use crate::sql::relations::{is_kw, qualified_name};

/// Tables and the sequences their columns draw from: (schema, table,
/// sequence oid) for column defaults and identity columns.
pub const SEQUENCES: &str = "\
    SELECT n.nspname, c.relname, s.oid::int8 FROM pg_attrdef ad \
    JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid \
      AND d.refclassid = 'pg_class'::regclass \
    JOIN pg_class s ON s.oid = d.refobjid AND s.relkind = 'S' \
    JOIN pg_class c ON c.oid = ad.adrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
    UNION \
    SELECT n.nspname, c.relname, s.oid::int8 FROM pg_depend d \
    JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' \
    JOIN pg_class c ON c.oid = d.refobjid JOIN pg_namespace n ON n.oid = c.relnamespace \
    WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass \
      AND d.deptype = 'i'";

/// Tables by every name a statement may use, and the sequences they draw from.
#[derive(Debug, Default)]
pub struct Sequences {
    /// `relname` and `schema.relname` → sequence ids; `None` when ambiguous.
    names: FastMap<String, Option<Arc<[u32]>>>,
    ids: usize,
}

impl Sequences {
    /// From (schema, table, sequence oid) rows.
    pub fn build(rows: &[(String, String, i64)]) -> Sequences {
        let mut ids: FastMap<i64, u32> = FastMap::default();
        let mut by_table: FastMap<(&str, &str), BTreeSet<u32>> = FastMap::default();
        for (ns, table, seq) in rows {
            let n = ids.len() as u32;
            let id = *ids.entry(*seq).or_insert(n);
            by_table.entry((ns, table)).or_default().insert(id);
        }
        let mut names: FastMap<String, Option<Arc<[u32]>>> = FastMap::default();
        for ((ns, table), seqs) in by_table {
            let seqs: Arc<[u32]> = seqs.into_iter().collect::<Vec<_>>().into();
            names.insert(format!("{ns}.{table}"), Some(seqs.clone()));
            names
                .entry(table.to_string())
                .and_modify(|e| *e = None)
                .or_insert(Some(seqs));
        }
        Sequences {
            names,
            ids: ids.len(),
        }
    }

    /// Sequences known (the order's sets of [`super::order::Gate::Seq`]).
    pub fn count(&self) -> usize {
        self.ids
    }

    /// The sequences `normalized` draws from, when it is an INSERT or a
    /// COPY FROM into a known table that has any.
    pub fn resolve(&self, normalized: &str) -> Ids {
        if self.ids == 0 {
            return None;
        }
        let dialect = PostgreSqlDialect {};
        let toks: Vec<Token> = Tokenizer::new(&dialect, normalized)
            .tokenize()
            .ok()?
            .into_iter()
            .filter(|t| !matches!(t, Token::Whitespace(_)))
            .collect();
        let at = if is_kw(toks.first(), "INSERT") && is_kw(toks.get(1), "INTO") {
            2
        } else if is_kw(toks.first(), "COPY")
            && toks
                .iter()
                .any(|t| matches!(t, Token::Word(w) if w.value.eq_ignore_ascii_case("FROM")))
        {
            1
        } else {
            return None;
        };
        let (name, _) = qualified_name(&toks, at);
        self.names.get(&name).cloned().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seqs() -> Sequences {
        let r = |ns: &str, t: &str, s| (ns.to_string(), t.to_string(), s);
        Sequences::build(&[
            r("public", "events", 10),
            r("public", "orders", 11),
            r("public", "orders", 12),
            r("other", "orders", 13),
        ])
    }

    fn ids(s: &Sequences, sql: &str) -> Option<Vec<u32>> {
        s.resolve(sql).map(|v| v.to_vec())
    }

    #[test]
    fn inserts_and_copies_into_a_table_with_a_sequence_draw_from_it() {
        let s = seqs();
        assert_eq!(s.count(), 4);
        let events = ids(&s, "INSERT INTO events (tenant_id, kind) VALUES (?, ?)").unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(
            ids(&s, "copy events (a, b) from stdin"),
            Some(events.clone())
        );
        assert_eq!(
            ids(&s, "INSERT INTO public.events SELECT * FROM x"),
            Some(events)
        );
        assert_eq!(
            ids(&s, "INSERT INTO public.orders VALUES (?)").map(|v| v.len()),
            Some(2)
        );
        // Ambiguous, unknown, not an insert, COPY TO.
        assert_eq!(ids(&s, "INSERT INTO orders VALUES (?)"), None);
        assert_eq!(ids(&s, "INSERT INTO history VALUES (?)"), None);
        assert_eq!(ids(&s, "UPDATE events SET kind = ?"), None);
        assert_eq!(ids(&s, "SELECT * FROM events"), None);
        assert_eq!(ids(&s, "copy events to stdout"), None);
    }
}
