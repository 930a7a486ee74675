//! What a query shape is about: its statement type (SELECT, INSERT, UPDATE,
//! DELETE, DDL, other), the tables it names, whether it changes nothing (a
//! read-only replay keeps it) and whether it is a COPY that reads its data
//! from the client. Worked out once per fingerprint from the normalised
//! SQL, with sqlparser's tokenizer where words matter, never per row. Tables are the names after FROM, JOIN, INTO, UPDATE and TABLE: good
//! for a breakdown, not a full resolution (CTE names count as tables).

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::tokenizer::{Token, Tokenizer};

/// What a statement does, by its main keyword. Its string ([`Self::as_str`])
/// is what reports print and write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatementType {
    /// SELECT, VALUES, TABLE, SHOW.
    Select,
    /// INSERT and COPY.
    Insert,
    /// UPDATE and MERGE.
    Update,
    Delete,
    /// CREATE, ALTER, DROP, TRUNCATE, COMMENT, GRANT, REVOKE, REINDEX, REFRESH.
    Ddl,
    /// Anything else: transaction and session control, EXPLAIN, ...
    Other,
}

impl StatementType {
    pub fn as_str(self) -> &'static str {
        match self {
            StatementType::Select => "SELECT",
            StatementType::Insert => "INSERT",
            StatementType::Update => "UPDATE",
            StatementType::Delete => "DELETE",
            StatementType::Ddl => "DDL",
            StatementType::Other => "other",
        }
    }
}

/// The statement type of normalised SQL, by its first keyword (the
/// statement after WITH for a CTE: `WITH ... INSERT` is an INSERT).
pub fn statement_type(normalized: &str) -> StatementType {
    let words = words(normalized);
    let first = words.first().map(String::as_str).unwrap_or("");
    let kind = |w: &str| match w {
        "SELECT" | "VALUES" | "TABLE" | "SHOW" => Some(StatementType::Select),
        "INSERT" | "COPY" => Some(StatementType::Insert),
        "UPDATE" => Some(StatementType::Update),
        "DELETE" => Some(StatementType::Delete),
        "MERGE" => Some(StatementType::Update),
        "CREATE" | "ALTER" | "DROP" | "TRUNCATE" | "COMMENT" | "GRANT" | "REVOKE" | "REINDEX"
        | "REFRESH" => Some(StatementType::Ddl),
        _ => None,
    };
    if first == "WITH" {
        // The main statement follows the last CTE's closing parenthesis at depth 0.
        return main_after_with(normalized).unwrap_or(StatementType::Select);
    }
    kind(first).unwrap_or(StatementType::Other)
}

fn main_after_with(sql: &str) -> Option<StatementType> {
    let dialect = PostgreSqlDialect {};
    let toks = Tokenizer::new(&dialect, sql).tokenize().ok()?;
    let mut depth = 0i32;
    let mut seen_paren = false;
    for t in toks {
        match t {
            Token::LParen => {
                depth += 1;
                seen_paren = true;
            }
            Token::RParen => depth -= 1,
            Token::Word(w) if depth == 0 && seen_paren => match w.value.to_uppercase().as_str() {
                "SELECT" => return Some(StatementType::Select),
                "INSERT" => return Some(StatementType::Insert),
                "UPDATE" => return Some(StatementType::Update),
                "DELETE" => return Some(StatementType::Delete),
                _ => {}
            },
            _ => {}
        }
    }
    None
}

fn words(sql: &str) -> Vec<String> {
    let dialect = PostgreSqlDialect {};
    let Ok(toks) = Tokenizer::new(&dialect, sql).tokenize() else {
        return sql
            .split_whitespace()
            .take(1)
            .map(|w| w.to_uppercase())
            .collect();
    };
    toks.into_iter()
        .filter_map(|t| match t {
            Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_uppercase()),
            _ => None,
        })
        .take(1)
        .collect()
}

/// Table names (lower-case, schema-qualified as written) the SQL reads or writes.
pub fn tables(normalized: &str) -> Vec<String> {
    let dialect = PostgreSqlDialect {};
    let Ok(toks) = Tokenizer::new(&dialect, normalized).tokenize() else {
        return Vec::new();
    };
    let toks: Vec<Token> = toks
        .into_iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .collect();
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let after = matches!(&toks[i], Token::Word(w) if w.quote_style.is_none()
            && matches!(w.value.to_uppercase().as_str(), "FROM" | "JOIN" | "INTO" | "UPDATE" | "TABLE"));
        i += 1;
        if !after {
            continue;
        }
        // Skip ONLY / IF [NOT] EXISTS.
        while let Some(Token::Word(w)) = toks.get(i) {
            if matches!(
                w.value.to_uppercase().as_str(),
                "ONLY" | "IF" | "NOT" | "EXISTS"
            ) && w.quote_style.is_none()
            {
                i += 1;
            } else {
                break;
            }
        }
        let mut name = String::new();
        while let Some(Token::Word(w)) = toks.get(i) {
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
        if !name.is_empty() && !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

/// Transaction and session control: sees no other session's data, takes
/// no lock, so it waits for nothing.
pub fn is_control(normalized: &str) -> bool {
    let first = normalized
        .trim_start()
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("");
    const CONTROL: &[&str] = &[
        "BEGIN",
        "START",
        "COMMIT",
        "END",
        "ROLLBACK",
        "ABORT",
        "SAVEPOINT",
        "RELEASE",
        "SET",
        "SHOW",
        "RESET",
        "DISCARD",
        "DEALLOCATE",
    ];
    // COMMIT PREPARED / ROLLBACK PREPARED act on another transaction.
    CONTROL.iter().any(|w| first.eq_ignore_ascii_case(w)) && !normalized.contains("PREPARED")
}

/// True for statements that change nothing: reads, and session or
/// transaction control (which a read-only replay keeps).
pub fn is_read_only(normalized: &str) -> bool {
    let upper = normalized.trim_start().to_ascii_uppercase();
    let first = upper
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("");
    match first {
        "BEGIN" | "START" | "COMMIT" | "END" | "ROLLBACK" | "SAVEPOINT" | "RELEASE" | "SET"
        | "SHOW" | "RESET" | "DISCARD" | "DEALLOCATE" | "EXPLAIN" => !upper.contains("ANALYZE"),
        _ => {
            statement_type(normalized) == StatementType::Select
                && ![
                    " FOR UPDATE",
                    " FOR SHARE",
                    " FOR NO KEY",
                    " FOR KEY SHARE",
                    " INTO ",
                    "NEXTVAL",
                    "SETVAL",
                ]
                .iter()
                .any(|w| upper.contains(w))
        }
    }
}

/// True for a COPY that reads its data from the client (`COPY ... FROM
/// STDIN`): the statement a replay must send CopyData for.
pub fn copy_from_stdin(normalized: &str) -> bool {
    let n = normalized.as_bytes();
    let copy = n.get(..4).is_some_and(|w| w.eq_ignore_ascii_case(b"COPY"));
    copy && n.windows(10).any(|w| w.eq_ignore_ascii_case(b"FROM STDIN"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_by_first_keyword() {
        assert_eq!(statement_type("SELECT ? FROM t"), StatementType::Select);
        assert_eq!(
            statement_type("INSERT INTO t VALUES (?)"),
            StatementType::Insert
        );
        assert_eq!(
            statement_type("WITH x AS (SELECT ?) DELETE FROM t"),
            StatementType::Delete
        );
        assert_eq!(statement_type("CREATE TABLE t(a int)"), StatementType::Ddl);
        assert_eq!(statement_type("BEGIN"), StatementType::Other);
    }

    #[test]
    fn tables_after_from_join_into_update() {
        assert_eq!(
            tables("SELECT * FROM public.a JOIN b ON a.id = b.id WHERE x IN (SELECT ? FROM c)"),
            vec!["public.a", "b", "c"]
        );
        assert_eq!(
            tables("UPDATE pgbench_accounts SET abalance = ?"),
            vec!["pgbench_accounts"]
        );
        assert_eq!(tables("INSERT INTO h(a) VALUES (?)"), vec!["h"]);
        assert!(tables("BEGIN").is_empty());
    }

    #[test]
    fn copy_from_stdin_reads_from_the_client_only() {
        assert!(copy_from_stdin("COPY t (a, b) FROM STDIN"));
        assert!(copy_from_stdin("copy t from stdin with (format csv)"));
        assert!(!copy_from_stdin("COPY t TO STDOUT"));
        assert!(!copy_from_stdin("SELECT ? FROM stdin_log"));
    }
}
