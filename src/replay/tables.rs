//! Which tables a statement uses, for the order of effects across sessions
//! (`--order commit` at the grain of tables; see [`super::order`]).
//!
//! The source's catalog is read once at start: ordinary tables without user
//! triggers, rules, partitions or inheritance are *plain* and get a dense id;
//! tables joined by foreign keys share one (a write to a child reads its
//! parent, a delete from a parent touches its children). Everything else
//! (views, materialised views, partitioned tables, catalogs, names created
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
use super::order::TableSet;
use crate::fasthash::FastMap;

/// The plain tables of the source, by every name a statement may use.
#[derive(Debug, Default)]
pub struct Catalog {
    /// `relname` and `schema.relname` → id; `None` when not plain or ambiguous.
    names: FastMap<String, Option<u32>>,
    ids: usize,
    /// The sequences tables draw from.
    pub sequences: super::sequences::Sequences,
}

const RELATIONS: &str = "SELECT c.oid::int8, n.nspname, c.relname, \
    (c.relkind = 'r' AND NOT c.relispartition AND NOT c.relhasrules \
     AND NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = c.oid AND NOT t.tgisinternal) \
     AND NOT EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid OR i.inhparent = c.oid))::text \
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') \
      AND n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_%'";
const FOREIGN_KEYS: &str =
    "SELECT conrelid::int8, confrelid::int8 FROM pg_constraint WHERE contype = 'f'";

impl Catalog {
    /// Reads the catalog of the database `opts` points at.
    pub async fn load(opts: &ConnOpts) -> anyhow::Result<Catalog> {
        let mut c = Client::connect(opts, &opts.user, &[]).await?;
        let rels = query(&mut c, RELATIONS).await?;
        let fks = query(&mut c, FOREIGN_KEYS).await?;
        let seqs = query(&mut c, super::sequences::SEQUENCES).await?;
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
        let fks: Vec<(i64, i64)> = fks
            .into_iter()
            .filter_map(|r| match &r[..] {
                [Some(a), Some(b)] => Some((a.parse().ok()?, b.parse().ok()?)),
                _ => None,
            })
            .collect();
        let mut catalog = Catalog::build(&rels, &fks);
        catalog.sequences = super::sequences::Sequences::build(&seqs);
        Ok(catalog)
    }

    /// The catalog from its relations (oid, schema, name, plain) and
    /// foreign keys (referencing, referenced).
    pub fn build(rels: &[(i64, String, String, bool)], fks: &[(i64, i64)]) -> Catalog {
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
        for (a, b) in fks {
            let (Some(&a), Some(&b)) = (index.get(a), index.get(b)) else {
                continue;
            };
            let (ra, rb) = (root(&mut parent, a), root(&mut parent, b));
            parent[ra] = rb;
            // A component with anything not plain in it is not plain.
            let p = plain[ra] && plain[rb];
            plain[rb] = p;
        }
        let mut ids: FastMap<usize, u32> = FastMap::default();
        let mut names: FastMap<String, Option<u32>> = FastMap::default();
        for (i, (_, ns, name, _)) in rels.iter().enumerate() {
            let r = root(&mut parent, i);
            let id = if plain[r] {
                let n = ids.len() as u32;
                Some(*ids.entry(r).or_insert(n))
            } else {
                None
            };
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
            sequences: Default::default(),
        }
    }

    /// Ids in use (the order's per-table sets).
    pub fn tables(&self) -> usize {
        self.ids
    }

    /// The tables `normalized` uses; `None` when it may use any.
    pub fn resolve(&self, normalized: &str) -> TableSet {
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

pub(super) fn is_kw(t: Option<&Token>, kw: &str) -> bool {
    matches!(t, Some(Token::Word(w)) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(kw))
}

/// Names defined by the statement's WITH clauses (`name AS (` and
/// `name AS [NOT] MATERIALIZED (`).
fn cte_names(toks: &[Token]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for i in 0..toks.len() {
        let Token::Word(w) = &toks[i] else { continue };
        if !is_kw(toks.get(i + 1), "AS") {
            continue;
        }
        let mut j = i + 2;
        while is_kw(toks.get(j), "NOT") || is_kw(toks.get(j), "MATERIALIZED") {
            j += 1;
        }
        if matches!(toks.get(j), Some(Token::LParen)) {
            out.insert(w.value.to_lowercase());
        }
    }
    out
}

/// Names in relation position: after FROM, JOIN, INTO, UPDATE, TABLE,
/// USING, and each comma of the list that follows. Not relations: a name
/// followed by `(` after FROM, JOIN or USING (a function: `unnest(...)`),
/// FROM inside `extract(...)`, `substring(...)` and the like, `FOR UPDATE`,
/// `DO UPDATE`, `COPY ... FROM STDIN`.
fn relation_names(toks: &[Token]) -> Vec<String> {
    const LEAD: &[&str] = &["FROM", "JOIN", "INTO", "UPDATE", "TABLE", "USING"];
    const SKIP: &[&str] = &["ONLY", "IF", "NOT", "EXISTS", "LATERAL"];
    const FROM_FUNCS: &[&str] = &["EXTRACT", "SUBSTRING", "TRIM", "OVERLAY", "POSITION"];
    let mut out = Vec::new();
    // Per open parenthesis: whether it is the argument list of a function
    // whose arguments use FROM.
    let mut parens: Vec<bool> = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        match &toks[i] {
            Token::LParen => {
                let f = matches!(i.checked_sub(1).and_then(|j| toks.get(j)), Some(Token::Word(w))
                    if FROM_FUNCS.iter().any(|k| w.value.eq_ignore_ascii_case(k)));
                parens.push(f);
                i += 1;
                continue;
            }
            Token::RParen => {
                parens.pop();
                i += 1;
                continue;
            }
            _ => {}
        }
        let Some(lead) = LEAD.iter().find(|k| is_kw(toks.get(i), k)) else {
            i += 1;
            continue;
        };
        let prev = i.checked_sub(1).and_then(|j| toks.get(j));
        let not_relation = (*lead == "FROM" && parens.last() == Some(&true))
            || (*lead == "UPDATE"
                && (is_kw(prev, "FOR") || is_kw(prev, "KEY") || is_kw(prev, "DO")));
        i += 1;
        if not_relation {
            continue;
        }
        loop {
            while SKIP.iter().any(|k| is_kw(toks.get(i), k)) {
                i += 1;
            }
            let (name, next) = qualified_name(toks, i);
            i = next;
            if name.is_empty() {
                break;
            }
            let call = matches!(toks.get(i), Some(Token::LParen))
                && matches!(*lead, "FROM" | "JOIN" | "USING");
            let stdio = *lead == "FROM" && (name == "stdin" || name == "stdout");
            if !call && !stdio {
                out.push(name);
            }
            if call {
                break;
            }
            // An alias, then maybe a comma and the next relation.
            if is_kw(toks.get(i), "AS") {
                i += 1;
            }
            if let Some(Token::Word(w)) = toks.get(i) {
                if w.quote_style.is_some() || !is_clause(&w.value) {
                    i += 1;
                }
            }
            if matches!(toks.get(i), Some(Token::Comma)) {
                i += 1;
                continue;
            }
            break;
        }
    }
    out
}

/// Words that end a relation list rather than alias a relation.
fn is_clause(w: &str) -> bool {
    const CLAUSE: &[&str] = &[
        "WHERE",
        "GROUP",
        "ORDER",
        "LIMIT",
        "OFFSET",
        "HAVING",
        "WINDOW",
        "UNION",
        "EXCEPT",
        "INTERSECT",
        "JOIN",
        "INNER",
        "LEFT",
        "RIGHT",
        "FULL",
        "CROSS",
        "NATURAL",
        "ON",
        "USING",
        "SET",
        "VALUES",
        "SELECT",
        "RETURNING",
        "DEFAULT",
        "FOR",
        "FETCH",
        "TABLESAMPLE",
        "AS",
        "DO",
        "OVERRIDING",
    ];
    CLAUSE.iter().any(|k| w.eq_ignore_ascii_case(k))
}

/// A possibly schema-qualified name at `i`, and the index after it.
pub(super) fn qualified_name(toks: &[Token], mut i: usize) -> (String, usize) {
    let mut name = String::new();
    while let Some(Token::Word(w)) = toks.get(i) {
        if w.quote_style.is_none() && is_clause(&w.value) && name.is_empty() {
            break;
        }
        name.push_str(&match w.quote_style {
            Some(_) => w.value.clone(),
            None => w.value.to_lowercase(),
        });
        if matches!(toks.get(i + 1), Some(Token::Period)) {
            name.push('.');
            i += 2;
        } else {
            i += 1;
            break;
        }
    }
    (name, i)
}

/// A catalog resolving every name to "any table" (no catalog could be read).
pub fn unknown() -> Arc<Catalog> {
    Arc::new(Catalog::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        let rel = |oid, name: &str, plain| (oid, "public".to_string(), name.to_string(), plain);
        Catalog::build(
            &[
                rel(1, "accounts", true),
                rel(2, "branches", true),
                rel(3, "orders", true),
                rel(4, "order_items", true),
                rel(5, "recent", false),
                rel(6, "events", true),
            ],
            &[(4, 3)],
        )
    }

    fn ids(c: &Catalog, sql: &str) -> Option<Vec<u32>> {
        c.resolve(sql).map(|s| s.to_vec())
    }

    #[test]
    fn relations_resolve_to_plain_tables_or_any() {
        let c = catalog();
        let a = ids(
            &c,
            "UPDATE accounts SET abalance = abalance + ? WHERE aid = ?",
        )
        .unwrap();
        let b = ids(&c, "SELECT * FROM branches WHERE bid = ?").unwrap();
        assert_eq!(a.len(), 1);
        assert_ne!(a, b);
        // Comma joins, aliases, schema-qualified names.
        let j = ids(
            &c,
            "SELECT * FROM public.accounts a, branches AS b WHERE a.x = b.y",
        )
        .unwrap();
        assert_eq!(j.len(), 2);
        // Foreign keys join parent and child.
        assert_eq!(
            ids(&c, "INSERT INTO order_items(order_id) VALUES (?)"),
            ids(&c, "DELETE FROM orders WHERE id = ?")
        );
        // A view, a name the catalog does not know, no table at all: any.
        assert_eq!(ids(&c, "SELECT * FROM recent"), None);
        assert_eq!(
            ids(&c, "SELECT * FROM accounts JOIN created_later USING (id)"),
            None
        );
        assert_eq!(ids(&c, "SELECT now()"), None);
        assert_eq!(ids(&c, "CREATE INDEX ON accounts (aid)"), Some(a.clone()));
        // Functions in FROM and the statement's own CTEs are not tables.
        assert_eq!(
            ids(
                &c,
                "INSERT INTO events(a, b) SELECT o, u FROM unnest(?::int[], ?::int[]) AS x(o, u)"
            )
            .map(|v| v.len()),
            Some(1)
        );
        assert_eq!(
            ids(
                &c,
                "WITH r AS (SELECT * FROM accounts) SELECT * FROM r JOIN branches ON true"
            )
            .map(|v| v.len()),
            Some(2)
        );
        // FROM inside extract() is no relation; FOR UPDATE, COPY FROM STDIN neither.
        assert_eq!(
            ids(
                &c,
                "SELECT extract(epoch FROM started) FROM accounts FOR UPDATE"
            )
            .map(|v| v.len()),
            Some(1)
        );
        assert_eq!(ids(&c, "COPY events FROM STDIN").map(|v| v.len()), Some(1));
        // A subquery's table is found wherever it is.
        assert_eq!(
            ids(&c, "UPDATE accounts SET x = (SELECT max(y) FROM branches)").map(|v| v.len()),
            Some(2)
        );
    }

    #[test]
    fn an_ambiguous_name_is_any_table() {
        let c = Catalog::build(
            &[
                (1, "a".into(), "t".into(), true),
                (2, "b".into(), "t".into(), true),
            ],
            &[],
        );
        assert_eq!(c.resolve("SELECT * FROM t"), None);
        assert!(c.resolve("SELECT * FROM a.t").is_some());
    }
}
