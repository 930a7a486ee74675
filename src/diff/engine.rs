//! The join: a hash join of source and target on (session_id, seq, clone)
//! built on the smaller file's compact rows, probed by streaming the larger
//! one, so memory holds one small record per statement of one side (and
//! per-fingerprint histograms), never SQL text or result lists.

use std::collections::{BTreeMap, HashMap};

use super::DiffError;
use super::load::{Key, ResultsDir, SideRow, Status, read_side};
use super::noise::{FpAcc, SideAcc};

/// Everything the streaming pass gathers.
#[derive(Debug, Default)]
pub struct Joined {
    pub fingerprints: BTreeMap<i64, FpAcc>,
    pub source: SideAcc,
    pub target: SideAcc,
    pub pairs: u64,
    pub not_replayed: u64,
    /// Not-replayed pairs that the other side ran.
    pub one_sided: u64,
    /// Not-replayed pairs per fingerprint, with its normalised SQL.
    pub not_replayed_by_fp: BTreeMap<i64, (u64, String)>,
    pub unmatched_source: u64,
    pub unmatched_target: u64,
}

impl Joined {
    fn pair(&mut self, s: SideRow, t: SideRow, normalized: &HashMap<i64, String>, examples: usize) {
        self.pairs += 1;
        let (sn, tn) = (
            s.outcome.status == Status::NotReplayed,
            t.outcome.status == Status::NotReplayed,
        );
        if sn || tn {
            self.not_replayed += 1;
            self.one_sided += (sn != tn) as u64;
            self.not_replayed_by_fp
                .entry(s.fingerprint)
                .or_insert_with(|| {
                    let sql = normalized.get(&s.fingerprint).cloned().unwrap_or_default();
                    (0, sql)
                })
                .0 += 1;
            return;
        }
        let acc = self.fingerprints.entry(s.fingerprint).or_insert_with(|| {
            FpAcc::new(
                normalized.get(&s.fingerprint).cloned().unwrap_or_default(),
                s.read_only,
            )
        });
        acc.source.record(s.duration_us);
        acc.target.record(t.duration_us);
        acc.add(&s, &t, examples);
    }
}

/// Joins both files of `dir`, keeping up to `examples` example keys per
/// (fingerprint, class).
pub fn join(dir: &ResultsDir, examples: usize) -> Result<Joined, DiffError> {
    let normalized = normalized_sql(dir)?;
    let mut j = Joined::default();
    let build_source = dir.source_rows <= dir.target_rows;
    let (build_path, probe_path) = if build_source {
        (&dir.source, &dir.target)
    } else {
        (&dir.target, &dir.source)
    };
    let mut table: HashMap<Key, SideRow> = HashMap::new();
    let mut build_acc = SideAcc::default();
    read_side(build_path, |r| {
        build_acc.add(&r);
        table.insert(r.key, r);
    })?;
    let mut probe_acc = SideAcc::default();
    let mut unmatched_probe = 0;
    read_side(probe_path, |r| {
        probe_acc.add(&r);
        match table.remove(&r.key) {
            Some(b) if build_source => j.pair(b, r, &normalized, examples),
            Some(b) => j.pair(r, b, &normalized, examples),
            None => unmatched_probe += 1,
        }
    })?;
    let unmatched_build = table.len() as u64;
    if build_source {
        (j.source, j.target) = (build_acc, probe_acc);
        (j.unmatched_source, j.unmatched_target) = (unmatched_build, unmatched_probe);
    } else {
        (j.source, j.target) = (probe_acc, build_acc);
        (j.unmatched_source, j.unmatched_target) = (unmatched_probe, unmatched_build);
    }
    Ok(j)
}

/// The normalised SQL of each fingerprint (one string per fingerprint).
fn normalized_sql(dir: &ResultsDir) -> Result<HashMap<i64, String>, DiffError> {
    use crate::replay::results::col;
    use arrow::array::AsArray;
    use arrow::datatypes::Int64Type;
    let mut out = HashMap::new();
    super::load::scan(&dir.source, &[col::FINGERPRINT, col::NORMALIZED_SQL], |b| {
        let fp = b
            .column_by_name(col::FINGERPRINT)
            .unwrap()
            .as_primitive::<Int64Type>();
        let sql = b
            .column_by_name(col::NORMALIZED_SQL)
            .unwrap()
            .as_string::<i32>();
        for i in 0..b.num_rows() {
            out.entry(fp.value(i))
                .or_insert_with(|| sql.value(i).to_string());
        }
        Ok(())
    })?;
    Ok(out)
}
