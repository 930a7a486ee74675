//! What makes two runs of one statement return different results although
//! both are right: no ORDER BY on the outermost query (rows in any order),
//! functions of the clock, randomness or sequences. Read from the
//! normalised SQL; the diff uses it to tell a benign or noisy difference
//! from a divergence.

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Token, Tokenizer};

/// True when the statement's outermost query ends with an ORDER BY (one at
/// parenthesis depth 0 of the normalised SQL; ORDER BY inside a subquery or
/// a window does not order the result).
pub fn has_order_by(normalized_sql: &str) -> bool {
    let dialect = PostgreSqlDialect {};
    let Ok(tokens) = Tokenizer::new(&dialect, normalized_sql).tokenize() else {
        // Untokenizable SQL: assume ordered, so an order change is not hidden.
        return true;
    };
    let mut depth = 0i32;
    let mut prev_order = false;
    for t in tokens {
        match &t {
            Token::Whitespace(_) => continue,
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            Token::Word(w) if depth == 0 && w.quote_style.is_none() => {
                if prev_order && w.keyword == Keyword::BY {
                    return true;
                }
                prev_order = w.keyword == Keyword::ORDER;
                continue;
            }
            _ => {}
        }
        prev_order = false;
    }
    false
}

/// SQL whose result depends on when or how often it runs: the clock
/// (`now() - interval '5 minutes'` windows), random values, sequences.
pub fn is_volatile(normalized_sql: &str) -> bool {
    let sql = normalized_sql.to_ascii_lowercase();
    [
        "now()",
        "current_timestamp",
        "current_date",
        "current_time",
        "localtimestamp",
        "localtime",
        "clock_timestamp",
        "statement_timestamp",
        "transaction_timestamp",
        "timeofday",
        "random(",
        "gen_random_uuid",
        "uuid_generate",
        "nextval(",
    ]
    .iter()
    .any(|f| sql.contains(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_by_only_at_the_outermost_level() {
        assert!(has_order_by("SELECT a FROM t ORDER BY a"));
        assert!(has_order_by("select a from t order by a limit ?"));
        assert!(!has_order_by("SELECT a FROM t"));
        assert!(!has_order_by(
            "SELECT * FROM (SELECT a FROM t ORDER BY a) s"
        ));
        assert!(!has_order_by(
            "SELECT row_number() OVER (ORDER BY a) FROM t"
        ));
        assert!(has_order_by(
            "SELECT row_number() OVER(ORDER BY a) FROM t ORDER BY ?"
        ));
        assert!(!has_order_by("SELECT \"order by\" FROM t"));
    }

    #[test]
    fn clock_and_random_sql_is_volatile() {
        assert!(is_volatile(
            "SELECT count(DISTINCT user_id)::bigint FROM events WHERE occurred_at > now() - INTERVAL ?"
        ));
        assert!(is_volatile("SELECT CURRENT_TIMESTAMP"));
        assert!(is_volatile("SELECT random() * ?"));
        assert!(!is_volatile("SELECT id, name FROM users WHERE id = ?"));
    }
}
