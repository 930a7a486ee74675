//! The clauses of a single-table statement, read from sqlparser's tokens:
//! its table and alias, a WHERE clause's equality bindings, SET's
//! assignments, plain values. What [`super::row_target`] is built from.

use sqlparser::tokenizer::Token;

use super::Slot;
use crate::sql::relations::is_kw;
pub(super) struct Parser<'a> {
    pub toks: &'a [Token],
}

/// An unquoted word, upper-cased.
pub(super) fn keyword(t: &Token) -> Option<String> {
    match t {
        Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
        _ => None,
    }
}

/// A name as PostgreSQL folds it.
pub(super) fn ident(t: Option<&Token>) -> Option<String> {
    match t {
        Some(Token::Word(w)) => Some(match w.quote_style {
            Some(_) => w.value.clone(),
            None => w.value.to_lowercase(),
        }),
        _ => None,
    }
}

/// Words after a table name that start a clause rather than alias it.
const CLAUSES: &[&str] = &[
    "WHERE",
    "SET",
    "VALUES",
    "RETURNING",
    "ON",
    "OVERRIDING",
    "DEFAULT",
    "ORDER",
    "LIMIT",
    "OFFSET",
    "FOR",
    "GROUP",
    "HAVING",
    "WINDOW",
    "FETCH",
];

/// Words that end a WHERE clause's conditions.
const AFTER_WHERE: &[&str] = &[
    "ORDER",
    "LIMIT",
    "OFFSET",
    "FOR",
    "RETURNING",
    "GROUP",
    "HAVING",
    "WINDOW",
    "FETCH",
];

impl Parser<'_> {
    pub(super) fn at(&self, i: usize) -> Option<&Token> {
        self.toks.get(i)
    }

    pub(super) fn returning(&self) -> bool {
        self.toks.iter().any(|t| is_kw(Some(t), "RETURNING"))
    }

    /// A possibly qualified table name at `i` (after ONLY), then an
    /// optional alias: the name and the index after both.
    pub(super) fn table(&self, mut i: usize) -> Option<(String, usize)> {
        if is_kw(self.at(i), "ONLY") {
            i += 1;
        }
        let mut name = ident(self.at(i))?;
        i += 1;
        while matches!(self.at(i), Some(Token::Period)) {
            name.push('.');
            name.push_str(&ident(self.at(i + 1))?);
            i += 2;
        }
        if is_kw(self.at(i), "AS") {
            ident(self.at(i + 1))?;
            i += 2;
        } else if let Some(Token::Word(w)) = self.at(i) {
            let clause =
                w.quote_style.is_none() && CLAUSES.iter().any(|c| w.value.eq_ignore_ascii_case(c));
            if !clause {
                i += 1;
            }
        }
        Some((name, i))
    }

    /// The index of the first token at or after `i`, at parenthesis depth
    /// 0, that `stop` accepts (or the end).
    pub(super) fn until(&self, mut i: usize, stop: impl Fn(&Token) -> bool) -> usize {
        let mut depth = 0i32;
        while let Some(t) = self.at(i) {
            match t {
                t if depth == 0 && stop(t) => return i,
                Token::LParen => depth += 1,
                Token::RParen => depth -= 1,
                _ => {}
            }
            i += 1;
        }
        i
    }

    /// The conditions of a WHERE clause from `i`: the columns bound by
    /// equality, and whether every condition is one; `None` on a top-level OR.
    pub(super) fn conditions(&self, i: usize) -> Option<(Vec<(String, Slot)>, bool)> {
        let end = self.until(i, |t| {
            keyword(t).is_some_and(|w| AFTER_WHERE.contains(&w.as_str()))
        });
        let mut bound = Vec::new();
        let mut only = true;
        let mut start = i;
        while start < end {
            let stop = self
                .until(start, |t| {
                    keyword(t).is_some_and(|w| w == "AND" || w == "OR")
                })
                .min(end);
            if stop < end && is_kw(self.at(stop), "OR") {
                return None;
            }
            match self.equality(&self.toks[start..stop]) {
                Some(b) => bound.push(b),
                None => only = false,
            }
            start = stop + 1;
        }
        Some((bound, only))
    }

    /// `column = value` or `value = column` (either with a `::type` cast
    /// on the value), the column possibly qualified.
    pub(super) fn equality(&self, toks: &[Token]) -> Option<(String, Slot)> {
        let eq = toks.iter().position(|t| matches!(t, Token::Eq))?;
        let (l, r) = (&toks[..eq], &toks[eq + 1..]);
        match (column(l), value(r)) {
            (Some(c), Some(v)) => Some((c, v)),
            _ => Some((column(r)?, value(l)?)),
        }
    }

    /// Whether every assignment of `SET` from `i` up to `end` is
    /// `c = c + value` or `c = c - value`.
    pub(super) fn increments(&self, mut i: usize, end: usize) -> bool {
        while i < end {
            let stop = self.until(i, |t| matches!(t, Token::Comma)).min(end);
            let ok = match &self.toks[i..stop] {
                [c, Token::Eq, c2, Token::Plus | Token::Minus, v @ ..] => {
                    ident(Some(c)).is_some()
                        && ident(Some(c)) == ident(Some(c2))
                        && value(v).is_some()
                }
                _ => false,
            };
            if !ok {
                return false;
            }
            i = stop + 1;
        }
        true
    }

    /// `SET a = ..., (b, c) = ...` from `i` up to `end`: the columns assigned.
    pub(super) fn assignments(&self, mut i: usize, end: usize) -> Option<Vec<String>> {
        let mut cols = Vec::new();
        while i < end {
            match self.at(i) {
                Some(Token::LParen) => {
                    i += 1;
                    while !matches!(self.at(i), Some(Token::RParen)) {
                        cols.push(ident(self.at(i))?);
                        i += 1;
                        if matches!(self.at(i), Some(Token::Comma)) {
                            i += 1;
                        }
                    }
                    i += 1;
                }
                t => {
                    cols.push(ident(t)?);
                    i += 1;
                }
            }
            if !matches!(self.at(i), Some(Token::Eq)) {
                return None;
            }
            i = self.until(i + 1, |t| matches!(t, Token::Comma)).min(end) + 1;
        }
        Some(cols)
    }
}

/// A column reference: `c` or `q.c` (the last name is the column).
pub(super) fn column(toks: &[Token]) -> Option<String> {
    match toks {
        [c] => ident(Some(c)).filter(|_| keyword(c).is_none_or(|w| !is_reserved(&w))),
        [q, Token::Period, c] => {
            ident(Some(q))?;
            ident(Some(c))
        }
        _ => None,
    }
}

/// Words that are no column (`WHERE NOT = ...` is no binding).
fn is_reserved(w: &str) -> bool {
    matches!(w, "NOT" | "NULL" | "TRUE" | "FALSE" | "DEFAULT")
}

/// A plain value: a parameter or a literal, maybe negative, maybe cast.
pub(super) fn value(toks: &[Token]) -> Option<Slot> {
    let toks = match toks {
        [rest @ .., Token::DoubleColon, Token::Word(_)] => rest,
        t => t,
    };
    match toks {
        [Token::Placeholder(p)] => p.strip_prefix('$')?.parse().ok().map(Slot::Param),
        // Normalised text's `?`: a value whose place is not known.
        [Token::Question] => Some(Slot::Param(0)),
        [Token::Number(n, _)] => Some(Slot::Literal(n.clone())),
        [Token::Minus, Token::Number(n, _)] => Some(Slot::Literal(format!("-{n}"))),
        [Token::SingleQuotedString(s)] | [Token::EscapedStringLiteral(s)] => {
            Some(Slot::Literal(s.clone()))
        }
        _ => None,
    }
}
