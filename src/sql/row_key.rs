//! Which rows of its one table a statement can touch, as far as its text
//! tells: the columns its WHERE clause binds by equality (`aid = $2`), the
//! values an INSERT gives each column, and the columns an UPDATE assigns.
//! The replay's order of effects keys statements by row with it (with the
//! table's unique key from the catalog, `--order commit`), so two sessions
//! that touch different rows of one table do not wait for each other.
//!
//! Only shapes whose rows the text fully tells are recognised: one
//! statement (a trailing `;` aside), one table, no join, no subquery, no
//! CTE, no set operation, no `OR` among the WHERE clause's conditions, one
//! VALUES row. Anything else is `None`, which costs only waiting: the
//! statement then counts for its whole tables. Conditions other than
//! `column = value` are ignored, which is safe: ANDed, they only narrow
//! the rows the bound columns select. Raw SQL is read, not the normalised
//! text, because the values are the point (`$n` or a literal).

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::tokenizer::{Token, Tokenizer};

mod clauses;

use super::relations::is_kw;
use clauses::{Parser, ident, keyword, value};

/// What the statement does to its table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowOp {
    Select,
    Update,
    Delete,
    Insert,
}

/// Where a bound column's value is: a bind parameter (1-based, as `$n`;
/// 0 for normalised text's `?`) or a literal in the text (a string's
/// quotes and escapes undone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Slot {
    Param(u16),
    Literal(String),
}

/// The recognised shape of a single-table statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowTarget {
    pub op: RowOp,
    /// The table as written (`public.t` or `t`), unquoted names lower-cased.
    pub table: String,
    /// Columns bound by `column = value` (WHERE), or given a plain value
    /// (INSERT's column list; a column given an expression is not here).
    pub bound: Vec<(String, Slot)>,
    /// Columns an INSERT names (bound or not): the others take their default.
    pub listed: Vec<String>,
    /// Columns an UPDATE (or an INSERT's ON CONFLICT DO UPDATE) assigns.
    pub assigned: Vec<String>,
    /// INSERT ... ON CONFLICT.
    pub on_conflict: bool,
    /// INSERT ... SELECT reading no table (`unnest($1)`, a VALUES list):
    /// rows the text does not tell, none read.
    pub from_query: bool,
    /// It returns rows (RETURNING).
    pub returning: bool,
    /// An UPDATE whose every assignment adds to or subtracts from the
    /// column a value (`c = c + $1`) and whose every condition binds a
    /// column: its result (the row count) and its effect do not depend on
    /// the order it runs in with other such updates.
    pub increments: bool,
}

impl RowTarget {
    /// The slot bound to `column`, if any.
    pub fn slot(&self, column: &str) -> Option<&Slot> {
        self.bound.iter().find(|(c, _)| c == column).map(|(_, s)| s)
    }
}

/// The shape of `sql`, when it is one the module recognises.
pub fn row_target(sql: &str) -> Option<RowTarget> {
    let dialect = PostgreSqlDialect {};
    let mut toks: Vec<Token> = Tokenizer::new(&dialect, sql)
        .tokenize()
        .ok()?
        .into_iter()
        .filter(|t| !matches!(t, Token::Whitespace(_) | Token::EOF))
        .collect();
    if matches!(toks.last(), Some(Token::SemiColon)) {
        toks.pop();
    }
    let mut selects = 0;
    for t in &toks {
        if matches!(t, Token::SemiColon) {
            return None;
        }
        if let Some(w) = keyword(t) {
            if w == "SELECT" {
                selects += 1;
            }
            if matches!(
                w.as_str(),
                "WITH" | "UNION" | "INTERSECT" | "EXCEPT" | "JOIN" | "USING"
            ) {
                return None;
            }
        }
    }
    let p = Parser { toks: &toks };
    match keyword(toks.first()?)?.as_str() {
        "SELECT" if selects == 1 => p.select(),
        "UPDATE" if selects == 0 => p.update(),
        "DELETE" if selects == 0 => p.delete(),
        "INSERT" => p.insert(selects),
        _ => None,
    }
}

impl Parser<'_> {
    fn select(&self) -> Option<RowTarget> {
        let from = self.until(1, |t| is_kw(Some(t), "FROM"));
        let (table, i) = self.table(from + 1)?;
        if !is_kw(self.at(i), "WHERE") {
            return None;
        }
        let (bound, _) = self.conditions(i + 1)?;
        Some(RowTarget {
            op: RowOp::Select,
            table,
            bound,
            listed: Vec::new(),
            assigned: Vec::new(),
            on_conflict: false,
            from_query: false,
            returning: self.returning(),
            increments: false,
        })
    }

    fn update(&self) -> Option<RowTarget> {
        let (table, i) = self.table(1)?;
        if !is_kw(self.at(i), "SET") {
            return None;
        }
        let wh = self.until(i + 1, |t| {
            keyword(t).is_some_and(|w| matches!(w.as_str(), "WHERE" | "FROM" | "RETURNING"))
        });
        if !is_kw(self.at(wh), "WHERE") {
            return None;
        }
        let assigned = self.assignments(i + 1, wh)?;
        let (bound, only_bindings) = self.conditions(wh + 1)?;
        Some(RowTarget {
            op: RowOp::Update,
            table,
            bound,
            listed: Vec::new(),
            assigned,
            on_conflict: false,
            from_query: false,
            returning: self.returning(),
            increments: only_bindings && self.increments(i + 1, wh),
        })
    }

    fn delete(&self) -> Option<RowTarget> {
        if !is_kw(self.at(1), "FROM") {
            return None;
        }
        let (table, i) = self.table(2)?;
        if !is_kw(self.at(i), "WHERE") {
            return None;
        }
        let (bound, _) = self.conditions(i + 1)?;
        Some(RowTarget {
            op: RowOp::Delete,
            table,
            bound,
            listed: Vec::new(),
            assigned: Vec::new(),
            on_conflict: false,
            from_query: false,
            returning: self.returning(),
            increments: false,
        })
    }

    fn insert(&self, selects: usize) -> Option<RowTarget> {
        if !is_kw(self.at(1), "INTO") {
            return None;
        }
        let (table, mut i) = self.table(2)?;
        let mut listed = Vec::new();
        if matches!(self.at(i), Some(Token::LParen)) {
            i += 1;
            loop {
                listed.push(ident(self.at(i))?);
                i += 1;
                match self.at(i) {
                    Some(Token::Comma) => i += 1,
                    Some(Token::RParen) => break,
                    _ => return None,
                }
            }
            i += 1;
        }
        if is_kw(self.at(i), "OVERRIDING") {
            i += 3;
        }
        if is_kw(self.at(i), "SELECT") && selects == 1 && !listed.is_empty() {
            // Rows from a query: it must read no relation but the target.
            let names = super::relations::relation_names(self.toks);
            if names.len() != 1 || names[0] != table {
                return None;
            }
            return Some(RowTarget {
                op: RowOp::Insert,
                table,
                bound: Vec::new(),
                listed,
                assigned: Vec::new(),
                on_conflict: self.toks[i..].iter().any(|t| is_kw(Some(t), "CONFLICT")),
                from_query: true,
                returning: self.returning(),
                increments: false,
            });
        }
        if selects > 0
            || !is_kw(self.at(i), "VALUES")
            || !matches!(self.at(i + 1), Some(Token::LParen))
        {
            return None;
        }
        let mut bound = Vec::new();
        let mut item = i + 2;
        let mut column = 0;
        let close = loop {
            let stop = self.until(item, |t| matches!(t, Token::Comma | Token::RParen));
            if let (Some(c), Some(v)) = (listed.get(column), value(&self.toks[item..stop])) {
                bound.push((c.clone(), v));
            }
            column += 1;
            match self.at(stop) {
                Some(Token::Comma) => item = stop + 1,
                Some(Token::RParen) => break stop,
                _ => return None,
            }
        };
        if listed.is_empty() || column != listed.len() {
            // Values by position need the table's column order: not from text.
            bound.clear();
            listed.clear();
        }
        let i = close + 1;
        if matches!(self.at(i), Some(Token::Comma)) {
            return None;
        }
        let mut assigned = Vec::new();
        let on_conflict = is_kw(self.at(i), "ON");
        if on_conflict {
            let set = self.until(i, |t| is_kw(Some(t), "SET") || is_kw(Some(t), "RETURNING"));
            if is_kw(self.at(set), "SET") {
                let end = self.until(set + 1, |t| {
                    keyword(t).is_some_and(|w| w == "WHERE" || w == "RETURNING")
                });
                assigned = self.assignments(set + 1, end)?;
            }
        }
        if listed.is_empty() {
            return None;
        }
        Some(RowTarget {
            op: RowOp::Insert,
            table,
            bound,
            listed,
            assigned,
            on_conflict,
            from_query: false,
            returning: self.returning(),
            increments: false,
        })
    }
}

#[cfg(test)]
mod tests;
