//! Row-level evidence (`--show-rows N`, as pt-upgrade does): after the
//! replay, the first example of each diverging read-only statement is run
//! again on both sides with text results, and the first N differing rows
//! are shown: position by position when the statement has ORDER BY, as
//! multisets (rows only one side returned) when it has not. Rows that
//! differ only in the last digits of floating-point values (an `avg()` over
//! rows read in another physical order on each side: float addition does
//! not associate) are no divergence: the re-run settles them as noise.

use std::collections::HashMap;

use super::detail::Detail;
use super::load::Key;
use super::model::{Evidence, RowDiff, Verdict};
use crate::replay::client::{Client, Extended};
use crate::replay::conn_opts::ConnOpts;

/// Rows read per side at most; evidence past them is not looked for.
const READ_LIMIT: usize = 100_000;
/// Divergence groups that get evidence at most.
const MAX_GROUPS: usize = 20;

type Row = Vec<Option<String>>;

/// The first `n` differing rows of two results.
pub fn differing_rows(source: &[Row], target: &[Row], ordered: bool, n: usize) -> Vec<RowDiff> {
    if ordered {
        return (0..source.len().max(target.len()))
            .filter(|&i| source.get(i) != target.get(i))
            .take(n)
            .map(|i| RowDiff {
                position: Some(i as u64),
                source: source.get(i).cloned(),
                target: target.get(i).cloned(),
            })
            .collect();
    }
    let mut counts: HashMap<&Row, i64> = HashMap::new();
    for r in source {
        *counts.entry(r).or_default() += 1;
    }
    for r in target {
        *counts.entry(r).or_default() -= 1;
    }
    let mut out = Vec::new();
    let mut left = counts.clone();
    for r in source {
        let c = left.get_mut(r).expect("counted");
        if *c > 0 && out.len() < n {
            *c -= 1;
            out.push(RowDiff {
                position: None,
                source: Some(r.clone()),
                target: None,
            });
        }
    }
    let mut left = counts;
    for r in target {
        let c = left.get_mut(r).expect("counted");
        if *c < 0 && out.len() < 2 * n {
            *c += 1;
            out.push(RowDiff {
                position: None,
                source: None,
                target: Some(r.clone()),
            });
        }
    }
    out
}

/// Relative difference under which two decimal texts are one value.
const ROUNDING: f64 = 1e-9;

/// Whether two results are the same but for floating-point rounding:
/// the same rows (in order when `ordered`, else once sorted with numbers
/// masked), each cell equal or both numbers within [`ROUNDING`].
pub fn same_but_rounding(source: &[Row], target: &[Row], ordered: bool) -> bool {
    if source.len() != target.len() {
        return false;
    }
    let number = |c: &Option<String>| c.as_deref().and_then(|v| v.parse::<f64>().ok());
    let close = |a: &Option<String>, b: &Option<String>| {
        a == b
            || match (number(a), number(b)) {
                (Some(x), Some(y)) => {
                    (x - y).abs() <= ROUNDING * x.abs().max(y.abs()) || (x.is_nan() && y.is_nan())
                }
                _ => false,
            }
    };
    let rows_close =
        |a: &Row, b: &Row| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| close(x, y));
    if ordered {
        return source.iter().zip(target).all(|(a, b)| rows_close(a, b));
    }
    let masked = |r: &Row| -> Vec<Option<String>> {
        r.iter()
            .map(|c| if number(c).is_some() { None } else { c.clone() })
            .collect()
    };
    let (mut s, mut t): (Vec<&Row>, Vec<&Row>) = (source.iter().collect(), target.iter().collect());
    s.sort_by_key(|r| masked(r));
    t.sort_by_key(|r| masked(r));
    s.into_iter().zip(t).all(|(a, b)| rows_close(a, b))
}

async fn run(opts: &ConnOpts, d: &Detail) -> Result<(Vec<String>, Vec<Row>), String> {
    let mut c = Client::connect(opts, &opts.user, &[])
        .await
        .map_err(|e| e.to_string())?;
    let params: Vec<Option<&[u8]>> = d.param_values.iter().map(|v| v.as_deref()).collect();
    let x = Extended {
        sql: d.sql.as_bytes(),
        param_oids: &d.param_types,
        param_formats: &d.param_formats,
        params: &params,
        result_formats: &[],
        max_rows: 0,
        named: false,
    };
    let r = c.rows_text(&x, READ_LIMIT).await;
    c.terminate().await;
    match r {
        Ok(Ok(v)) => Ok(v),
        Ok(Err((code, msg))) => Err(format!("{} ({code}): {msg}", opts.display())),
        Err(e) => Err(format!("{}: {e}", opts.display())),
    }
}

/// Adds evidence to the first example of each diverging read-only group,
/// then settles the groups the re-run could not reproduce
/// ([`super::verdict::settle_transient`]).
pub async fn collect(
    v: &mut Verdict,
    details: &HashMap<Key, Detail>,
    source: &ConnOpts,
    target: &ConnOpts,
    fail_on: &[super::FailOn],
) {
    let n = v.settings.show_rows;
    if n == 0 {
        return;
    }
    let groups = v
        .divergences
        .iter_mut()
        .filter(|g| {
            matches!(
                g.class.as_str(),
                "different_columns" | "different_row_count" | "different_order" | "different_rows"
            )
        })
        .take(MAX_GROUPS);
    for g in groups {
        let ordered = g.has_order_by;
        let read_only = g.read_only;
        let Some(ex) = g.examples.first_mut() else {
            continue;
        };
        let key = (ex.session_id, ex.seq, ex.clone);
        let mut e = Evidence {
            mode: if ordered { "ordered" } else { "unordered" }.into(),
            ..Default::default()
        };
        match details.get(&key) {
            _ if !read_only => e.note = Some("not re-run: the statement writes".into()),
            None => e.note = Some("statement details not found".into()),
            Some(d) => match (run(source, d).await, run(target, d).await) {
                (Ok((cols, s)), Ok((_, t))) => {
                    e.columns = cols;
                    e.rows = differing_rows(&s, &t, ordered, n);
                    if e.rows.is_empty() {
                        e.note = Some(
                            "re-run returned the same rows on both sides (changed since the replay?)"
                                .into(),
                        );
                        e.transient = true;
                    } else if same_but_rounding(&s, &t, ordered) {
                        e.note = Some(
                            "the sides differ only in the last digits of floating-point values \
                             (rounding of sums over rows read in another order)"
                                .into(),
                        );
                        e.transient = true;
                    }
                }
                (Err(x), _) | (_, Err(x)) => e.note = Some(format!("re-run failed: {x}")),
            },
        }
        ex.evidence = Some(e);
    }
    super::verdict::settle_transient(v, fail_on);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(v: &[&str]) -> Row {
        v.iter().map(|s| Some(s.to_string())).collect()
    }

    #[test]
    fn ordered_rows_differ_by_position_unordered_by_multiset() {
        let s = vec![r(&["a"]), r(&["b"]), r(&["c"])];
        let t = vec![r(&["b"]), r(&["a"]), r(&["c"])];
        let d = differing_rows(&s, &t, true, 3);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].position, Some(0));
        assert!(differing_rows(&s, &t, false, 3).is_empty());
        // An avg() summed in another order on each side is no divergence;
        // another value, or another row, is.
        let avg = |v: &str| vec![r(&["page_view", v])];
        assert!(same_but_rounding(
            &avg("537.5599999999999"),
            &avg("537.56"),
            true
        ));
        assert!(!same_but_rounding(&avg("537.55"), &avg("537.56"), true));
        assert!(!same_but_rounding(&avg("1"), &[], true));
        let many = |a: &str, b: &str| vec![r(&["click", a]), r(&["view", b])];
        assert!(same_but_rounding(
            &many("0.30000000000000004", "2"),
            &[r(&["view", "2"]), r(&["click", "0.3"])],
            false
        ));
        assert!(!same_but_rounding(
            &many("0.3", "2"),
            &[r(&["view", "2"]), r(&["kick", "0.3"])],
            false
        ));
        let t = vec![r(&["a"]), r(&["c"]), r(&["d"])];
        let d = differing_rows(&s, &t, false, 3);
        assert_eq!(d[0].source, Some(r(&["b"])));
        assert_eq!(d[1].target, Some(r(&["d"])));
    }
}
