//! What the fidelity tests share: recording client traffic through the
//! proxy, replaying it onto copies of the starting state as `pgtape replay`
//! does, and reading result files back with full context on failure.

use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use pgtape::capture::{Recorder, RecorderConfig};
use pgtape::cluster::Cluster;
use pgtape::diff::{DiffConfig, Verdict};
use pgtape::replay::summary::ReplaySummary;
use pgtape::replay::{ReplayConfig, replay};

use super::support::Proxy;

/// Records whatever `clients` does through a proxy in front of `db`.
pub fn record(db: &Cluster, dir: &Path, clients: impl FnOnce(u16)) -> PathBuf {
    record_with(db, dir, |_| {}, clients)
}

/// [`record`] with the recorder configured by `tweak`.
pub fn record_with(
    db: &Cluster,
    dir: &Path,
    tweak: impl FnOnce(&mut RecorderConfig),
    clients: impl FnOnce(u16),
) -> PathBuf {
    let capture = dir.join("capture");
    let mut cfg = RecorderConfig::new(&capture, db.addr());
    tweak(&mut cfg);
    let rec = Recorder::start(cfg).unwrap();
    let sender = rec.sender();
    {
        let proxy = Proxy::start(&db.addr(), |cfg| cfg.tap = Some(sender));
        clients(proxy.port());
    }
    rec.close().unwrap();
    capture
}

/// `pgtape replay CAPTURE --source S [--target T] --results R EXTRA...`,
/// parsed as the binary parses it.
pub fn replay_args(
    capture: &Path,
    results: &Path,
    source: &Cluster,
    target: Option<&Cluster>,
    extra: &[&str],
) -> pgtape::cli::replay::ReplayCommand {
    let mut argv = vec![
        "pgtape".to_string(),
        "replay".into(),
        capture.display().to_string(),
    ];
    argv.extend(["--source".into(), source.url("postgres")]);
    if let Some(t) = target {
        argv.extend(["--target".into(), t.url("postgres")]);
    }
    argv.extend(["--results".into(), results.display().to_string()]);
    argv.extend(extra.iter().map(|s| s.to_string()));
    let cli = <pgtape::cli::Cli as clap::Parser>::try_parse_from(argv).unwrap();
    let pgtape::cli::Command::Replay(args) = cli.command else {
        panic!("replay args")
    };
    args
}

/// Replays `capture` onto `source` (and `target`), then diffs as `pgtape
/// replay` does (without re-running statements for evidence).
pub fn replay_and_diff(
    capture: &Path,
    results: &Path,
    source: &Cluster,
    target: Option<&Cluster>,
    extra: &[&str],
) -> (ReplaySummary, Option<Verdict>) {
    let args = replay_args(capture, results, source, target, extra);
    let cfg = ReplayConfig::from_args(&args.replay).unwrap();
    let summary = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(replay(&cfg, std::future::pending()))
        .unwrap();
    let verdict = target.map(|_| {
        let mut diff: DiffConfig = args.diff.config().unwrap();
        diff.show_rows = 0;
        if !extra.contains(&"--fail-on") {
            // These tests judge results. Two clusters sharing a loaded
            // two-core machine differ in latency by chance, so the gate on
            // latency stays out unless a test asks for it.
            diff.fail_on = vec![pgtape::diff::FailOn::Divergence];
        }
        pgtape::diff::run_diff_blocking(results, &diff, None).unwrap()
    });
    (summary, verdict)
}

/// One side's result rows, the columns the tests look at.
#[derive(Debug, Default)]
pub struct Side {
    pub session: Vec<i64>,
    pub seq: Vec<i64>,
    pub status: Vec<String>,
    pub reason: Vec<Option<String>>,
    pub sql: Vec<String>,
    pub tag: Vec<Option<String>>,
    pub captured_tag: Vec<Option<String>>,
    pub rows: Vec<i64>,
    pub captured_rows: Vec<i64>,
    pub oh: Vec<i64>,
    pub captured_oh: Vec<i64>,
    pub sqlstate: Vec<Option<String>>,
    pub captured_sqlstate: Vec<Option<String>>,
    /// Optional columns (newer results files).
    pub remapped: Vec<i64>,
}

impl Side {
    pub fn len(&self) -> usize {
        self.sql.len()
    }

    /// True when statement `i` returned what the capture recorded.
    pub fn matches_capture(&self, i: usize) -> bool {
        self.status[i] != "not_replayed"
            && self.sqlstate[i] == self.captured_sqlstate[i]
            && self.rows[i] == self.captured_rows[i]
            && self.oh[i] == self.captured_oh[i]
            && verb(&self.tag[i]) == verb(&self.captured_tag[i])
    }

    /// Statement `i` with what it returned and what was captured.
    pub fn show(&self, i: usize) -> String {
        format!(
            "session {} seq {} [{}{}] {}\n    replayed {:?} rows {} hash {:x} error {:?}\n    captured {:?} rows {} hash {:x} error {:?}",
            self.session[i],
            self.seq[i],
            self.status[i],
            self.reason[i]
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default(),
            self.sql[i],
            self.tag[i],
            self.rows[i],
            self.oh[i],
            self.sqlstate[i],
            self.captured_tag[i],
            self.captured_rows[i],
            self.captured_oh[i],
            self.captured_sqlstate[i]
        )
    }

    /// Every statement whose result differs from the capture, shown.
    pub fn mismatches(&self) -> Vec<String> {
        (0..self.len())
            .filter(|&i| !self.matches_capture(i))
            .map(|i| self.show(i))
            .collect()
    }
}

fn verb(tag: &Option<String>) -> &str {
    tag.as_deref().unwrap_or("")
}

pub fn read_side(path: &Path) -> Side {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
        .unwrap()
        .build()
        .unwrap();
    let mut s = Side::default();
    for b in reader {
        let b: RecordBatch = b.unwrap();
        let i64s = |n: &str| {
            b.column_by_name(n)
                .map(|c| c.as_primitive::<Int64Type>().values().to_vec())
                .unwrap_or_else(|| vec![0; b.num_rows()])
        };
        let strs = |n: &str| {
            let a = b.column_by_name(n).unwrap().as_string::<i32>();
            (0..a.len())
                .map(|i| (!a.is_null(i)).then(|| a.value(i).to_string()))
                .collect::<Vec<_>>()
        };
        s.session.extend(i64s("session_id"));
        s.seq.extend(i64s("seq"));
        s.status
            .extend(strs("status").into_iter().map(Option::unwrap_or_default));
        s.reason.extend(strs("reason"));
        s.sql
            .extend(strs("sql").into_iter().map(Option::unwrap_or_default));
        s.tag.extend(strs("command_tag"));
        s.captured_tag.extend(strs("captured_command_tag"));
        s.rows.extend(i64s("rows"));
        s.captured_rows.extend(i64s("captured_rows"));
        s.oh.extend(i64s("ordered_hash"));
        s.captured_oh.extend(i64s("captured_ordered_hash"));
        s.sqlstate.extend(strs("sqlstate"));
        s.captured_sqlstate.extend(strs("captured_sqlstate"));
        match b.column_by_name("remapped") {
            Some(c) => s.remapped.extend(
                c.as_primitive::<arrow::datatypes::Int32Type>()
                    .values()
                    .iter()
                    .map(|v| *v as i64),
            ),
            None => s.remapped.extend(std::iter::repeat_n(0, b.num_rows())),
        }
    }
    s
}

/// Both sides of a results directory.
pub fn sides(results: &Path) -> [(&'static str, Side); 2] {
    ["source", "target"].map(|n| (n, read_side(&results.join(format!("{n}.parquet")))))
}

/// `sql` on `db`, its output, panicking with the server log on failure.
pub fn query(db: &Cluster, sql: &str) -> String {
    db.psql("postgres", sql)
        .unwrap_or_else(|e| panic!("{sql}: {e}\n{}", db.log()))
}
