//! Literals in simple-query SQL: psql's `\d` inlines the OID a catalog
//! query returned (`WHERE c.oid = '16385'`), scripts inline ids. A number or
//! a plain quoted string equal to a mapped value, as a whole token, is
//! replaced; everything else is left byte for byte.
//!
//! A small lexer of its own (not the fingerprint's tokenizer) because it
//! must hand back byte spans and never fail: it skips comments, quoted
//! identifiers, dollar-quoted strings and prefixed strings (`E'...'`,
//! `B'...'`, `U&'...'`), whose escapes or meaning it does not interpret.

use super::value::Value;

/// A literal's span in the SQL and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Literal {
    pub start: usize,
    pub end: usize,
    /// A quoted string (replaced quoted) or a number (replaced bare).
    pub quoted: bool,
    pub value: Value,
}

fn ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

/// The whole-token integer and plain-string literals of `sql`.
pub fn literals(sql: &[u8]) -> Vec<Literal> {
    let mut out = Vec::new();
    let mut i = 0;
    let n = sql.len();
    while i < n {
        let c = sql[i];
        match c {
            b'-' if sql.get(i + 1) == Some(&b'-') => {
                while i < n && sql[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if sql.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                while i < n {
                    if sql[i..].starts_with(b"/*") {
                        depth += 1;
                        i += 2;
                    } else if sql[i..].starts_with(b"*/") {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            b'"' => i = skip_quoted(sql, i, b'"'),
            b'\'' => {
                let prefixed = i > 0 && ident(sql[i - 1]);
                let end = skip_quoted(sql, i, b'\'');
                if !prefixed && end <= n && sql[end - 1] == b'\'' {
                    let body = &sql[i + 1..end - 1];
                    let text = unquote(body);
                    if let Some(value) = Value::from_text(&text) {
                        out.push(Literal {
                            start: i,
                            end,
                            quoted: true,
                            value,
                        });
                    }
                }
                i = end;
            }
            b'$' if i == 0 || !ident(sql[i - 1]) => i = skip_dollar(sql, i),
            b'0'..=b'9' if i == 0 || !(ident(sql[i - 1]) || sql[i - 1] == b'.') => {
                let mut end = i;
                while end < n && sql[end].is_ascii_digit() {
                    end += 1;
                }
                // 1.5, 1e3, 0x1f, 12abc: not a whole integer token.
                let whole = end == n || !(ident(sql[end]) || sql[end] == b'.');
                let signed = i > 0 && matches!(sql[i - 1], b'-' | b'+');
                if whole && !signed {
                    if let Some(value @ Value::Int(_)) = Value::from_text(&sql[i..end]) {
                        out.push(Literal {
                            start: i,
                            end,
                            quoted: false,
                            value,
                        });
                    }
                }
                i = end;
            }
            _ if ident(c) => {
                while i < n && ident(sql[i]) {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    out
}

/// The end (one past the closing quote) of the quoted token at `at`.
fn skip_quoted(sql: &[u8], at: usize, q: u8) -> usize {
    let mut i = at + 1;
    while i < sql.len() {
        if sql[i] == q {
            if sql.get(i + 1) == Some(&q) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    sql.len()
}

/// Past a dollar-quoted string (`$tag$ ... $tag$`), or past a lone `$`
/// (a positional parameter `$1`).
fn skip_dollar(sql: &[u8], at: usize) -> usize {
    let tag_end = sql[at + 1..]
        .iter()
        .position(|&c| !(c.is_ascii_alphanumeric() || c == b'_'))
        .map(|p| at + 1 + p);
    match tag_end {
        Some(e) if sql[e] == b'$' && !sql[at + 1..e].first().is_some_and(u8::is_ascii_digit) => {
            let tag = &sql[at..=e];
            let body = e + 1;
            sql[body..]
                .windows(tag.len())
                .position(|w| w == tag)
                .map_or(sql.len(), |p| body + p + tag.len())
        }
        _ => {
            let mut i = at + 1;
            while i < sql.len() && sql[i].is_ascii_digit() {
                i += 1;
            }
            i
        }
    }
}

fn unquote(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        out.push(body[i]);
        i += if body[i] == b'\'' { 2 } else { 1 };
    }
    out
}

/// `sql` with each literal `map` gives a value for replaced; `None` when
/// nothing was. Returns the substitutions made.
pub fn substitute(
    sql: &str,
    mut map: impl FnMut(&Value) -> Option<Value>,
) -> Option<(String, u32)> {
    let b = sql.as_bytes();
    let mut out = Vec::with_capacity(b.len() + 16);
    let mut last = 0;
    let mut n = 0;
    for lit in literals(b) {
        let Some(to) = map(&lit.value) else { continue };
        out.extend_from_slice(&b[last..lit.start]);
        let text = to.text();
        if lit.quoted {
            out.push(b'\'');
            for &c in &text {
                if c == b'\'' {
                    out.push(b'\'');
                }
                out.push(c);
            }
            out.push(b'\'');
        } else if matches!(to, Value::Int(_)) {
            out.extend_from_slice(&text);
        } else {
            // A number mapped to something else cannot stay a bare token.
            out.extend_from_slice(&b[lit.start..lit.end]);
            last = lit.end;
            continue;
        }
        last = lit.end;
        n += 1;
    }
    if n == 0 {
        return None;
    }
    out.extend_from_slice(&b[last..]);
    // Only whole ASCII-delimited tokens were replaced by UTF-8 text.
    Some((String::from_utf8(out).ok()?, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(sql: &str) -> Vec<(String, bool)> {
        literals(sql.as_bytes())
            .into_iter()
            .map(|l| (sql[l.start..l.end].to_string(), l.quoted))
            .collect()
    }

    #[test]
    fn whole_integer_and_plain_string_tokens_only() {
        assert_eq!(
            values("SELECT * FROM t1 WHERE c.oid = '16385' AND id = 42 AND x = 1.5 AND y = 1e3"),
            vec![("'16385'".into(), true), ("42".into(), false)]
        );
        assert_eq!(
            values(
                "SELECT $1, -5, 'it''s', E'\\x41', $$ 7 $$, $q$ 'x' $q$, \"col 9\", /* 8 */ 10 -- 11"
            ),
            vec![("'it''s'".into(), true), ("10".into(), false)]
        );
        assert_eq!(values("SELECT 'unterminated"), vec![]);
    }

    #[test]
    fn mapped_literals_are_replaced_in_place() {
        let map = |v: &Value| match v {
            Value::Int(16385) => Some(Value::Int(16390)),
            Value::Text(t) if &**t == b"ann" => Some(Value::Text((*b"o'neil").into())),
            _ => None,
        };
        assert_eq!(
            substitute(
                "SELECT a FROM c WHERE c.oid = '16385' OR id IN (16385, 163850) OR n = 'ann'",
                map
            ),
            Some((
                "SELECT a FROM c WHERE c.oid = '16390' OR id IN (16390, 163850) OR n = 'o''neil'"
                    .into(),
                3
            ))
        );
        assert_eq!(substitute("SELECT 1", map), None);
    }
}
