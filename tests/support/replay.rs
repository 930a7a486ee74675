//! Replay helpers shared by the replay and order tests: record through a
//! real proxy, replay as the binary parses its arguments, read a side's
//! results file back.

use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use pgtape::capture::{Recorder, RecorderConfig};
use pgtape::cluster::Cluster;
use pgtape::replay::ReplayConfig;

use super::Proxy;

/// Records whatever `clients` does through a proxy in front of `db`.
pub fn record(db: &Cluster, dir: &Path, clients: impl FnOnce(u16)) -> PathBuf {
    let capture = dir.join("capture");
    let rec = Recorder::start(RecorderConfig::new(&capture, db.addr())).unwrap();
    let sender = rec.sender();
    {
        let proxy = Proxy::start(&db.addr(), |cfg| cfg.tap = Some(sender));
        clients(proxy.port());
    }
    rec.close().unwrap();
    capture
}

pub struct SideRows {
    pub session: Vec<i64>,
    pub seq: Vec<i64>,
    pub status: Vec<String>,
    pub sql: Vec<String>,
    pub oh: Vec<i64>,
    pub captured_oh: Vec<i64>,
    pub rows: Vec<i64>,
    pub captured_rows: Vec<i64>,
    pub started: Vec<i64>,
    pub scheduled: Vec<i64>,
    pub lag: Vec<i64>,
    pub delay: Vec<i64>,
    pub captured_ts: Vec<i64>,
    pub clone: Vec<i32>,
    pub tag: Vec<Option<String>>,
    pub captured_tag: Vec<Option<String>>,
    pub uh: Vec<i64>,
    pub captured_uh: Vec<i64>,
    pub reason: Vec<Option<String>>,
    pub order_wait: Vec<i64>,
    pub order_released: Vec<bool>,
}

impl SideRows {
    /// Rows whose command tag, row count and both result hashes are the captured ones.
    pub fn matching(&self) -> usize {
        (0..self.status.len())
            .filter(|&i| {
                self.tag[i] == self.captured_tag[i]
                    && self.rows[i] == self.captured_rows[i]
                    && self.oh[i] == self.captured_oh[i]
                    && self.uh[i] == self.captured_uh[i]
            })
            .count()
    }

    /// The statements that differ from the capture, by SQL, most first (for failure messages).
    pub fn misses(&self) -> Vec<(usize, String)> {
        let mut by: std::collections::BTreeMap<String, usize> = Default::default();
        for i in 0..self.status.len() {
            if self.tag[i] != self.captured_tag[i]
                || self.rows[i] != self.captured_rows[i]
                || self.oh[i] != self.captured_oh[i]
            {
                let q: String = self.sql[i].chars().take(90).collect();
                *by.entry(format!("{} {q}", self.status[i])).or_default() += 1;
            }
        }
        let mut v: Vec<(usize, String)> = by.into_iter().map(|(q, n)| (n, q)).collect();
        v.sort_by(|a, b| b.cmp(a));
        v.truncate(12);
        v
    }
}

pub fn read_side(path: &Path) -> SideRows {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
        .unwrap()
        .build()
        .unwrap();
    let mut s = SideRows {
        session: vec![],
        seq: vec![],
        status: vec![],
        sql: vec![],
        oh: vec![],
        captured_oh: vec![],
        rows: vec![],
        captured_rows: vec![],
        started: vec![],
        scheduled: vec![],
        lag: vec![],
        delay: vec![],
        captured_ts: vec![],
        clone: vec![],
        tag: vec![],
        captured_tag: vec![],
        uh: vec![],
        captured_uh: vec![],
        reason: vec![],
        order_wait: vec![],
        order_released: vec![],
    };
    for b in reader {
        let b = b.unwrap();
        let i64s = |n: &str| {
            b.column_by_name(n)
                .unwrap()
                .as_primitive::<Int64Type>()
                .values()
                .to_vec()
        };
        let strs = |n: &str| {
            let a = b.column_by_name(n).unwrap().as_string::<i32>();
            (0..a.len())
                .map(|i| a.value(i).to_string())
                .collect::<Vec<_>>()
        };
        let opt_strs = |n: &str| {
            let a = b.column_by_name(n).unwrap().as_string::<i32>();
            (0..a.len())
                .map(|i| (!a.is_null(i)).then(|| a.value(i).to_string()))
                .collect::<Vec<_>>()
        };
        s.tag.extend(opt_strs("command_tag"));
        s.captured_tag.extend(opt_strs("captured_command_tag"));
        s.reason.extend(opt_strs("reason"));
        s.uh.extend(i64s("unordered_hash"));
        s.captured_uh.extend(i64s("captured_unordered_hash"));
        s.order_wait.extend(i64s("order_wait_us"));
        let released = b.column_by_name("order_released").unwrap().as_boolean();
        s.order_released
            .extend((0..released.len()).map(|i| released.value(i)));
        s.session.extend(i64s("session_id"));
        s.seq.extend(i64s("seq"));
        s.status.extend(strs("status"));
        s.sql.extend(strs("sql"));
        s.oh.extend(i64s("ordered_hash"));
        s.captured_oh.extend(i64s("captured_ordered_hash"));
        s.rows.extend(i64s("rows"));
        s.captured_rows.extend(i64s("captured_rows"));
        s.started.extend(i64s("started_us"));
        s.scheduled.extend(i64s("scheduled_us"));
        s.lag.extend(i64s("lag_us"));
        s.delay.extend(i64s("delay_us"));
        let ts = b
            .column_by_name("captured_ts")
            .unwrap()
            .as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
        s.captured_ts.extend(ts.values().iter().copied());
        s.clone.extend(
            b.column_by_name("clone")
                .unwrap()
                .as_primitive::<arrow::datatypes::Int32Type>()
                .values()
                .iter()
                .copied(),
        );
    }
    s
}

/// `pgtape replay CAPTURE --source S [--target T] --results R EXTRA...`,
/// parsed as the binary parses it.
pub fn replay_args(
    capture: &Path,
    results: &Path,
    source: &str,
    target: Option<&str>,
    extra: &[&str],
) -> pgtape::cli::replay::ReplayCommand {
    let mut argv = vec![
        "pgtape".to_string(),
        "replay".into(),
        capture.display().to_string(),
    ];
    argv.extend(["--source".into(), source.to_string()]);
    if let Some(t) = target {
        argv.extend(["--target".into(), t.to_string()]);
    }
    argv.extend(["--results".into(), results.display().to_string()]);
    argv.extend(extra.iter().map(|s| s.to_string()));
    let cli = <pgtape::cli::Cli as clap::Parser>::try_parse_from(argv).unwrap();
    let pgtape::cli::Command::Replay(args) = cli.command else {
        panic!("replay args")
    };
    args
}

pub fn config(
    capture: &Path,
    results: &Path,
    source: &Cluster,
    target: Option<&Cluster>,
    extra: &[&str],
) -> ReplayConfig {
    let target = target.map(|t| t.url("postgres"));
    let args = replay_args(
        capture,
        results,
        &source.url("postgres"),
        target.as_deref(),
        extra,
    );
    ReplayConfig::from_args(&args.replay).unwrap()
}
