//! How a gate's scopes map to its sets: set 0 holds every entry (what a
//! statement of unknown tables waits on), set 1 the entries of unknown
//! tables (what every statement waits on), then per table the sets below.

use super::{TableSet, scope};

pub(super) const ALL: usize = 0;
pub(super) const ANY: usize = 1;

/// A set of a gate: fixed (by index), or a row's (by its scope).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SetId {
    Fixed(usize),
    Row(u64),
}

/// How a gate's scopes map to its sets.
///
/// Plain (sequences): a scope is an id with one set. Keyed (tables, with
/// rows): per table `t`, a *whole* set of every entry of `t` and a *wide*
/// set of its entries of unknown rows, and a set per row (key) that has
/// entries. An entry of a row is in its table's whole set and its row's;
/// an entry of the whole table in the whole and the wide sets. A statement
/// of a row waits on the wide set and its row's (what touched its row or
/// may have); a statement of the whole table on the whole set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Layout {
    keyed: bool,
    pub(super) ids: usize,
}

impl Layout {
    pub fn keyed(ids: usize) -> Layout {
        Layout { keyed: true, ids }
    }

    pub fn plain(ids: usize) -> Layout {
        Layout { keyed: false, ids }
    }

    /// Fixed sets a gate has.
    pub fn sets(self) -> usize {
        2 + self.ids * if self.keyed { 2 } else { 1 }
    }

    pub(super) fn whole(self, t: usize) -> usize {
        if self.keyed { 2 + 2 * t } else { 2 + t }
    }

    /// Calls `f` with each set an entry of `tables` belongs to besides
    /// [`ALL`], which is the gate's map of entries itself (a set may come
    /// twice).
    pub(super) fn entry_sets(self, tables: &TableSet, mut f: impl FnMut(SetId)) {
        let Some(ts) = tables else {
            return f(SetId::Fixed(ANY));
        };
        for s in ts.iter() {
            if !self.keyed {
                f(SetId::Fixed(self.whole(*s as usize)));
                continue;
            }
            let (t, row) = scope::split(*s);
            let whole = self.whole(t);
            f(SetId::Fixed(whole));
            f(if row {
                SetId::Row(*s)
            } else {
                SetId::Fixed(whole + 1)
            });
        }
    }

    /// The first set a statement of `tables` waits on that `held` says
    /// holds it.
    pub fn find_wait_set(self, tables: &TableSet, held: impl Fn(SetId) -> bool) -> Option<SetId> {
        let find = |s: SetId| held(s).then_some(s);
        let Some(ts) = tables else {
            return find(SetId::Fixed(ALL));
        };
        if let Some(s) = find(SetId::Fixed(ANY)) {
            return Some(s);
        }
        ts.iter().find_map(|s| {
            if !self.keyed {
                return find(SetId::Fixed(self.whole(*s as usize)));
            }
            let (t, row) = scope::split(*s);
            let whole = self.whole(t);
            if row {
                find(SetId::Fixed(whole + 1)).or_else(|| find(SetId::Row(*s)))
            } else {
                find(SetId::Fixed(whole))
            }
        })
    }

    /// Calls `f` with every set a statement of `tables` waits on.
    pub fn wait_sets(self, tables: &TableSet, mut f: impl FnMut(SetId)) {
        let Some(ts) = tables else {
            return f(SetId::Fixed(ALL));
        };
        f(SetId::Fixed(ANY));
        for s in ts.iter() {
            if !self.keyed {
                f(SetId::Fixed(self.whole(*s as usize)));
                continue;
            }
            let (t, row) = scope::split(*s);
            let whole = self.whole(t);
            if row {
                f(SetId::Fixed(whole + 1));
                f(SetId::Row(*s));
            } else {
                f(SetId::Fixed(whole));
            }
        }
    }

    /// Whether waits on `tables` may be held by a row's set (read only
    /// under the side's lock).
    pub fn has_rows(self, tables: &TableSet) -> bool {
        self.keyed
            && tables
                .as_deref()
                .is_some_and(|ts| ts.iter().any(|s| scope::split(*s).1))
    }
}
