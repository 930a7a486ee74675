//! Where a statement names relations: the names in relation position
//! (after FROM, JOIN, INTO, UPDATE, TABLE, USING, and the comma lists
//! after them; not functions, not `FOR UPDATE`, not `COPY ... FROM STDIN`)
//! and the names its own WITH clauses define, read from sqlparser's tokens.
//! The replay resolves them against the source's catalog (which tables a
//! statement uses, which sequences it draws from).

use std::collections::BTreeSet;

use sqlparser::tokenizer::Token;

/// Whether `t` is the unquoted keyword `kw`.
pub fn is_kw(t: Option<&Token>, kw: &str) -> bool {
    matches!(t, Some(Token::Word(w)) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(kw))
}

/// Names defined by the statement's WITH clauses (`name AS (` and
/// `name AS [NOT] MATERIALIZED (`).
pub fn cte_names(toks: &[Token]) -> BTreeSet<String> {
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
pub fn relation_names(toks: &[Token]) -> Vec<String> {
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
pub fn qualified_name(toks: &[Token], mut i: usize) -> (String, usize) {
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
