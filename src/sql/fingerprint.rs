//! Query shapes: the normalised SQL of a statement and its fingerprint, so
//! `SELECT * FROM t WHERE id = 1` and `select *  from t where id = $1` count
//! as one query in reports and in the replayer's latency comparison.
//!
//! Normalisation runs sqlparser's PostgreSQL tokenizer (no regexes): literals
//! and parameter placeholders become `?`, an IN-list of them collapses to
//! `(...)` and repeated VALUES rows to one, comments and whitespace go,
//! keywords are upper-cased and unquoted identifiers lower-cased (PostgreSQL
//! folds them so). The fingerprint is xxh3-64 of the normalised text: stable
//! across runs, machines and pgtape versions as long as this file's rules do
//! not change (a rule change bumps the capture schema version).

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Token, Tokenizer};
use xxhash_rust::xxh3::xxh3_64;

/// The normalised SQL and its fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape {
    pub normalized: String,
    pub fingerprint: u64,
}

/// Normalises `sql` and fingerprints it. SQL the tokenizer rejects (an
/// unterminated quote) falls back to its whitespace-collapsed text, so every
/// statement gets a fingerprint.
pub fn shape(sql: &str) -> Shape {
    let normalized =
        normalize(sql).unwrap_or_else(|| sql.split_whitespace().collect::<Vec<_>>().join(" "));
    let fingerprint = xxh3_64(normalized.as_bytes());
    Shape {
        normalized,
        fingerprint,
    }
}

/// One normalised token.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Lit,
    Keyword(String),
    Other(String),
}

impl Tok {
    fn text(&self) -> &str {
        match self {
            Tok::Lit => "?",
            Tok::Keyword(s) | Tok::Other(s) => s,
        }
    }
    fn is(&self, s: &str) -> bool {
        self.text() == s
    }
}

fn normalize(sql: &str) -> Option<String> {
    let dialect = PostgreSqlDialect {};
    let tokens = Tokenizer::new(&dialect, sql).tokenize().ok()?;
    let mut out: Vec<Tok> = Vec::with_capacity(tokens.len());
    for t in tokens {
        let tok = match t {
            Token::Whitespace(_) | Token::EOF => continue,
            Token::Word(w) => match (w.quote_style, w.keyword) {
                (Some(q), _) => Tok::Other(format!("{q}{}{q}", w.value)),
                (None, Keyword::NoKeyword) => Tok::Other(w.value.to_lowercase()),
                (None, _) => {
                    let up = w.value.to_uppercase();
                    if CLAUSE_KEYWORDS.contains(&up.as_str()) {
                        Tok::Keyword(up)
                    } else {
                        // Non-reserved words (`id`, `name`, `count`, `int4`) read as names.
                        Tok::Other(w.value.to_lowercase())
                    }
                }
            },
            Token::Number(..)
            | Token::SingleQuotedString(_)
            | Token::DollarQuotedString(_)
            | Token::NationalStringLiteral(_)
            | Token::EscapedStringLiteral(_)
            | Token::UnicodeStringLiteral(_)
            | Token::HexStringLiteral(_)
            | Token::SingleQuotedByteStringLiteral(_)
            | Token::Placeholder(_) => Tok::Lit,
            other => Tok::Other(other.to_string()),
        };
        // `- 5` after an operator or `(` is a negative literal, not a subtraction.
        if tok == Tok::Lit
            && out.last().is_some_and(|t| t.is("-"))
            && (out.len() < 2 || is_operator_like(&out[out.len() - 2]))
        {
            out.pop();
        }
        out.push(tok);
    }
    collapse_lists(&mut out);
    Some(render(&out))
}

/// Keywords shown upper-case in normalised SQL; every other unquoted word is
/// lower-cased. Either way the shape is case-insensitive, as PostgreSQL is.
const CLAUSE_KEYWORDS: &[&str] = &[
    "ALL",
    "ALTER",
    "AND",
    "ANY",
    "AS",
    "ASC",
    "BEGIN",
    "BETWEEN",
    "BY",
    "CASE",
    "CAST",
    "COMMIT",
    "CREATE",
    "CROSS",
    "DEFAULT",
    "DELETE",
    "DESC",
    "DISTINCT",
    "DO",
    "DROP",
    "ELSE",
    "END",
    "EXCEPT",
    "EXISTS",
    "FALSE",
    "FETCH",
    "FOR",
    "FROM",
    "FULL",
    "GROUP",
    "HAVING",
    "ILIKE",
    "IN",
    "INDEX",
    "INNER",
    "INSERT",
    "INTERSECT",
    "INTO",
    "IS",
    "JOIN",
    "LATERAL",
    "LEFT",
    "LIKE",
    "LIMIT",
    "NOT",
    "NULL",
    "OFFSET",
    "ON",
    "OR",
    "ORDER",
    "OUTER",
    "RETURNING",
    "RIGHT",
    "ROLLBACK",
    "SELECT",
    "SET",
    "SOME",
    "TABLE",
    "THEN",
    "TRUE",
    "TRUNCATE",
    "UNION",
    "UPDATE",
    "USING",
    "VALUES",
    "WHEN",
    "WHERE",
    "WITH",
];

fn is_operator_like(t: &Tok) -> bool {
    match t {
        Tok::Lit => false,
        Tok::Keyword(k) => !matches!(k.as_str(), "NULL" | "TRUE" | "FALSE"),
        Tok::Other(s) => !s
            .chars()
            .next()
            .is_some_and(|c| c.is_alphanumeric() || c == '"' || c == '_' || c == ')'),
    }
}

/// `IN (?, ?, ?)` → `IN (...)`; `VALUES (?, ?), (?, ?)` → `VALUES (?, ?)`.
fn collapse_lists(toks: &mut Vec<Tok>) {
    let mut out: Vec<Tok> = Vec::with_capacity(toks.len());
    let mut i = 0;
    while i < toks.len() {
        let t = &toks[i];
        if t.is("IN") && toks.get(i + 1).is_some_and(|t| t.is("(")) {
            if let Some(end) = literal_group_end(toks, i + 1) {
                out.push(toks[i].clone());
                out.push(Tok::Other("(...)".into()));
                i = end + 1;
                continue;
            }
        }
        if t.is("VALUES") && toks.get(i + 1).is_some_and(|t| t.is("(")) {
            if let Some(end) = literal_group_end(toks, i + 1) {
                // NULL and booleans in a row of literals are values like any other.
                out.extend(toks[i..=end].iter().map(|t| match t {
                    Tok::Keyword(_) if !t.is("VALUES") => Tok::Lit,
                    t => t.clone(),
                }));
                let width = end - i;
                let mut j = end + 1;
                while toks.get(j).is_some_and(|t| t.is(",")) {
                    match literal_group_end(toks, j + 1) {
                        Some(e) if e - j == width => j = e + 1,
                        _ => break,
                    }
                }
                i = j;
                continue;
            }
        }
        out.push(t.clone());
        i += 1;
    }
    *toks = out;
}

/// If `toks[open]` is `(` starting a list of only literals and commas, the
/// index of its `)`.
fn literal_group_end(toks: &[Tok], open: usize) -> Option<usize> {
    if !toks.get(open)?.is("(") {
        return None;
    }
    let mut j = open + 1;
    let mut expect_lit = true;
    loop {
        let t = toks.get(j)?;
        match (expect_lit, t) {
            (true, Tok::Lit) => expect_lit = false,
            (true, Tok::Keyword(k)) if matches!(k.as_str(), "NULL" | "TRUE" | "FALSE") => {
                expect_lit = false
            }
            (false, t) if t.is(",") => expect_lit = true,
            (false, t) if t.is(")") => return Some(j),
            _ => return None,
        }
        j += 1;
    }
}

fn render(toks: &[Tok]) -> String {
    let mut s = String::with_capacity(toks.len() * 6);
    let mut prev: Option<&Tok> = None;
    for t in toks {
        let text = t.text();
        let glue = match prev {
            None => true,
            Some(p) => {
                matches!(p.text(), "(" | "." | "::" | "[")
                    || matches!(text, ")" | "," | "." | "::" | ";" | "]" | "(...)")
                        && !(text == "(...)" && matches!(p, Tok::Keyword(_)))
                    // A call: `count(`, not `IN (` or `VALUES (`.
                    || (text == "(" && is_name(p))
            }
        };
        if !glue {
            s.push(' ');
        }
        s.push_str(text);
        prev = Some(t);
    }
    s
}

/// A name a `(` binds to without a space: an identifier (`count(`, `t(a, b)`)
/// or a call-like keyword (`ANY(`), not a clause keyword (`IN (`, `VALUES (`).
fn is_name(t: &Tok) -> bool {
    match t {
        Tok::Other(s) => s.starts_with(|c: char| c.is_alphanumeric() || c == '_' || c == '"'),
        Tok::Keyword(k) => matches!(k.as_str(), "ANY" | "SOME" | "CAST" | "EXISTS"),
        Tok::Lit => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(sql: &str) -> String {
        shape(sql).normalized
    }

    #[test]
    fn literals_and_placeholders_become_one_shape() {
        let a = shape("SELECT * FROM t WHERE id = 1 AND name = 'x'");
        let b = shape("select *\n  from T where ID = $1 and name = $2 -- lookup");
        assert_eq!(a, b);
        assert_eq!(a.normalized, "SELECT * FROM t WHERE id = ? AND name = ?");
    }

    #[test]
    fn in_lists_collapse_whatever_their_length() {
        let a = shape("SELECT 1 FROM t WHERE id IN (1, 2, 3)");
        let b = shape("SELECT 1 FROM t WHERE id IN ($1)");
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_eq!(a.normalized, "SELECT ? FROM t WHERE id IN (...)");
    }

    #[test]
    fn multi_row_values_collapse() {
        assert_eq!(
            n("INSERT INTO t (a, b) VALUES (1, 'x'), (2, 'y'), (-3, NULL)"),
            n("insert into t (a, b) values ($1, $2)")
        );
        assert_eq!(
            n("INSERT INTO t (a, b) VALUES (1, 2)"),
            "INSERT INTO t(a, b) VALUES (?, ?)"
        );
    }

    #[test]
    fn negative_numbers_are_literals_but_subtraction_stays() {
        assert_eq!(
            n("SELECT a - 1 FROM t WHERE b = -5"),
            "SELECT a - ? FROM t WHERE b = ?"
        );
    }

    #[test]
    fn quoted_identifiers_keep_their_case() {
        assert_ne!(n(r#"SELECT "Id" FROM t"#), n("SELECT id FROM t"));
        assert_eq!(n(r#"SELECT "Id" FROM t"#), r#"SELECT "Id" FROM t"#);
    }

    #[test]
    fn casts_and_calls_render_compactly() {
        assert_eq!(
            n("SELECT count(*), $1::int4 FROM s.t"),
            "SELECT count(*), ?::int4 FROM s.t"
        );
    }

    #[test]
    fn the_fingerprint_is_stable_across_builds() {
        // A change here changes every stored fingerprint: bump the schema version.
        assert_eq!(
            format!("{:016x}", shape("SELECT 1").fingerprint),
            format!("{:016x}", xxh3_64(b"SELECT ?"))
        );
    }

    #[test]
    fn unterminated_quote_still_gets_a_shape() {
        assert_eq!(n("SELECT 'oops"), "SELECT 'oops");
    }
}
