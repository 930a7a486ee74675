//! Divergence classes: how one statement's result on one side differs from
//! another's (source vs target, or captured vs source for noise), checked
//! from the most to the least structural difference so each pair gets the
//! one class that explains it best. Whether rows in another order are a
//! divergence or benign is the statement's ORDER BY ([`crate::sql`]).

use serde::Serialize;

use super::load::{Outcome, Status};

/// Why two results differ. The order of the variants is the report's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// The target fails where the source succeeded.
    NewError,
    /// The target succeeds where the source failed.
    ResolvedError,
    /// Both fail, with different SQLSTATEs.
    DifferentSqlstate,
    /// Different column names or types.
    DifferentColumns,
    /// Different command tag (other than its row count).
    DifferentCommandTag,
    /// Different number of rows returned or affected.
    DifferentRowCount,
    /// The same rows in another order, for a statement with ORDER BY.
    DifferentOrder,
    /// Different rows.
    DifferentRows,
}

impl Class {
    pub const ALL: [Class; 8] = [
        Class::NewError,
        Class::ResolvedError,
        Class::DifferentSqlstate,
        Class::DifferentColumns,
        Class::DifferentCommandTag,
        Class::DifferentRowCount,
        Class::DifferentOrder,
        Class::DifferentRows,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Class::NewError => "new_error",
            Class::ResolvedError => "resolved_error",
            Class::DifferentSqlstate => "different_sqlstate",
            Class::DifferentColumns => "different_columns",
            Class::DifferentCommandTag => "different_command_tag",
            Class::DifferentRowCount => "different_row_count",
            Class::DifferentOrder => "different_order",
            Class::DifferentRows => "different_rows",
        }
    }

    /// Structural classes are divergences even in a noisy fingerprint:
    /// non-determinism changes values, not errors or result types.
    pub fn structural(self) -> bool {
        matches!(
            self,
            Class::NewError
                | Class::ResolvedError
                | Class::DifferentSqlstate
                | Class::DifferentColumns
        )
    }
}

/// The command tag without its trailing row count (`INSERT 0 5` → `INSERT 0`).
fn tag_verb(tag: &Option<String>) -> &str {
    let t = tag.as_deref().unwrap_or("");
    match t.rsplit_once(' ') {
        Some((verb, n)) if n.bytes().all(|b| b.is_ascii_digit()) => verb,
        _ => t,
    }
}

/// How `b` differs from `a`; `None` when they are the same. Order-only
/// differences come back as [`Class::DifferentOrder`] whatever the SQL; the
/// caller decides with [`crate::sql::has_order_by`] whether that matters. Unknown
/// facts (no column list, no hashes in the capture) are not compared.
pub fn classify(a: &Outcome, b: &Outcome) -> Option<Class> {
    match (a.status, b.status) {
        (Status::Ok, Status::Error) => return Some(Class::NewError),
        (Status::Error, Status::Ok) => return Some(Class::ResolvedError),
        (Status::Error, Status::Error) => {
            return (a.sqlstate != b.sqlstate).then_some(Class::DifferentSqlstate);
        }
        _ => {}
    }
    if let (Some(x), Some(y)) = (a.columns, b.columns)
        && x != y
    {
        return Some(Class::DifferentColumns);
    }
    if tag_verb(&a.command_tag) != tag_verb(&b.command_tag) {
        return Some(Class::DifferentCommandTag);
    }
    if a.rows != b.rows {
        return Some(Class::DifferentRowCount);
    }
    let known = |o: &Outcome| o.rows == 0 || o.ordered_hash != 0 || o.unordered_hash != 0;
    if !known(a) || !known(b) {
        return None;
    }
    if a.unordered_hash != b.unordered_hash {
        return Some(Class::DifferentRows);
    }
    (a.ordered_hash != b.ordered_hash).then_some(Class::DifferentOrder)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(tag: &str, rows: i64, o: i64, u: i64) -> Outcome {
        Outcome {
            command_tag: Some(tag.into()),
            rows,
            ordered_hash: o,
            unordered_hash: u,
            columns: Some(1),
            ..Default::default()
        }
    }

    #[test]
    fn classes_from_most_to_least_structural() {
        let a = ok("SELECT 2", 2, 10, 20);
        assert_eq!(classify(&a, &a), None);
        let err = |s: &str| Outcome {
            status: Status::Error,
            sqlstate: Some(s.into()),
            ..Default::default()
        };
        assert_eq!(classify(&a, &err("23514")), Some(Class::NewError));
        assert_eq!(classify(&err("42P01"), &a), Some(Class::ResolvedError));
        assert_eq!(
            classify(&err("23505"), &err("23503")),
            Some(Class::DifferentSqlstate)
        );
        assert_eq!(classify(&err("23505"), &err("23505")), None);
        let mut c = a.clone();
        c.columns = Some(2);
        assert_eq!(classify(&a, &c), Some(Class::DifferentColumns));
        assert_eq!(
            classify(&a, &ok("SELECT 1", 1, 1, 1)),
            Some(Class::DifferentRowCount)
        );
        assert_eq!(
            classify(&ok("DELETE 1", 1, 0, 0), &ok("UPDATE 1", 1, 0, 0)),
            Some(Class::DifferentCommandTag)
        );
        assert_eq!(
            classify(&a, &ok("SELECT 2", 2, 10, 21)),
            Some(Class::DifferentRows)
        );
        assert_eq!(
            classify(&a, &ok("SELECT 2", 2, 11, 20)),
            Some(Class::DifferentOrder)
        );
    }

    #[test]
    fn unknown_captured_hashes_are_not_compared() {
        let mut captured = ok("SELECT 2", 2, 0, 0);
        captured.columns = None;
        assert_eq!(classify(&captured, &ok("SELECT 2", 2, 10, 20)), None);
    }
}
