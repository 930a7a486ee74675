//! A proxy killed mid-capture: the restart converts its leftover, marked
//! recovered, losing at most the batch being written; a replay of a capture
//! whose segment was cut mid-batch replays what is readable and names it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use arrow::array::{Array, AsArray};
use pgtape::capture::schema::meta;
use pgtape::capture::{Capture, col};
use pgtape::cluster::{Cluster, ClusterOptions};

use super::{ProxyProcess, files_ending, wait_for};
use crate::support::{cluster, pgbench, psql, run_ok};

/// Complete batches and their rows in an Arrow IPC segment, however it ends.
fn segment_batches(path: &Path) -> (usize, usize) {
    let Ok(f) = std::fs::File::open(path) else {
        return (0, 0);
    };
    let Ok(r) = arrow::ipc::reader::StreamReader::try_new_buffered(f, None) else {
        return (0, 0);
    };
    r.map_while(Result::ok)
        .fold((0, 0), |(b, n), batch| (b + 1, n + batch.num_rows()))
}

/// The SQL of every statement row in `dir` that did not fail (Parquet files
/// only).
fn captured_sql(dir: &Path) -> Vec<String> {
    let cap = Capture::open(dir).unwrap();
    assert!(cap.errors.is_empty(), "{:?}", cap.errors);
    let mut out = Vec::new();
    for b in cap.scan(&[col::KIND, col::SQL, col::SQLSTATE]) {
        let b = b.unwrap();
        let kind = b.column_by_name(col::KIND).unwrap().as_string::<i32>();
        let sql = b.column_by_name(col::SQL).unwrap().as_string::<i32>();
        let state = b.column_by_name(col::SQLSTATE).unwrap();
        for i in 0..b.num_rows() {
            if kind.value(i) == "statement" && state.is_null(i) {
                out.push(sql.value(i).to_string());
            }
        }
    }
    out
}

/// A proxy recording to `dir`, killed with SIGKILL once two sessions'
/// batches are in its open segment: returns that leftover segment.
fn leftover_of_a_killed_proxy(db: &Cluster, dir: &Path) -> PathBuf {
    let capture = dir.display().to_string();
    let log = dir.with_extension("log");
    let proxy = ProxyProcess::start(&db.addr(), &["--capture", &capture], &log);
    for (round, batches) in [("one", 1), ("two", 2)] {
        run_ok(&mut psql(proxy.port, &["-c", &format!("SELECT '{round}'")]));
        wait_for(
            Duration::from_secs(30),
            "a batch in the open segment",
            || {
                files_ending(dir, ".arrows")
                    .first()
                    .is_some_and(|p| segment_batches(p).0 >= batches)
            },
        );
    }
    drop(proxy); // SIGKILL
    let left = files_ending(dir, ".arrows");
    assert_eq!(left.len(), 1, "{left:?}");
    left[0].clone()
}

// Issue 16, defect 3: after kill -9 and a restart the converted file had no
// pgtape.capture.recovered unless its last batch happened to be torn.
#[test]
fn leftover_converted_after_kill_9_was_not_marked_recovered() {
    let db = cluster(&ClusterOptions::default());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cap");
    let segment = leftover_of_a_killed_proxy(&db, &dir);
    assert!(segment_batches(&segment).0 >= 2);
    let capture = dir.display().to_string();
    let restarted = ProxyProcess::start(
        &db.addr(),
        &["--capture", &capture],
        &tmp.path().join("2.log"),
    );
    assert!(restarted.stop().success());
    let cap = Capture::open(&dir).unwrap();
    let recovered = cap
        .files
        .iter()
        .find(|f| f.path == segment.with_extension("parquet"))
        .expect("the leftover became Parquet");
    assert_eq!(
        recovered.metadata.get(meta::RECOVERED).map(String::as_str),
        Some("true"),
        "{:?}",
        recovered.metadata
    );
    assert!(
        cap.files
            .iter()
            .filter(|f| f.path != recovered.path)
            .all(|f| !f.metadata.contains_key(meta::RECOVERED)),
        "the restarted run's own file is not recovered"
    );
    let sql = captured_sql(&dir);
    assert!(sql.contains(&"SELECT 'one'".to_string()) && sql.contains(&"SELECT 'two'".to_string()));
}

// Issue 16, defect 6: `pgtape replay` skipped a `.arrows` segment cut
// mid-batch without a word and exited 0.
#[test]
fn replay_skipped_a_segment_cut_mid_batch_without_a_word() {
    let db = cluster(&ClusterOptions::default());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cap");
    let segment = leftover_of_a_killed_proxy(&db, &dir);
    // Cut the second batch short, as a copy interrupted mid-file would.
    let len = std::fs::metadata(&segment).unwrap().len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap();
    f.set_len(len - 16).unwrap();
    assert_eq!(segment_batches(&segment).0, 1);

    let results = tmp.path().join("results");
    let out = Command::new(env!("CARGO_BIN_EXE_pgtape"))
        .arg("replay")
        .arg(&dir)
        .args([
            "--source",
            &db.url("postgres"),
            "--max-rate",
            "--format",
            "json",
        ])
        .arg("--results")
        .arg(&results)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stderr}\n{stdout}");
    let name = segment.file_name().unwrap().to_string_lossy();
    assert!(
        stderr.contains(&*name) && stderr.contains("torn last batch is left out"),
        "the replay names the segment: {stderr}"
    );
    // The first session's statement, in the readable batch, was replayed.
    let summary: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("JSON summary: {e}\n{stdout}"));
    assert_eq!(summary["captured_statements"], 1, "{summary:#}");
    let source = &summary["sides"][0];
    assert_eq!(
        (&source["replayed"], &source["ok"]),
        (&1.into(), &1.into()),
        "{summary:#}"
    );
}

#[test]
fn sigkill_under_pgbench_loses_at_most_one_batch_and_the_restart_recovers_it() {
    let db = cluster(&ClusterOptions::default());
    run_ok(&mut pgbench(db.port(), &["-i", "-q", "-s", "1"]));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cap");
    let capture = dir.display().to_string();
    let mut proxy = ProxyProcess::start(
        &db.addr(),
        &["--capture", &capture, "--rotate-interval", "1s"],
        &tmp.path().join("1.log"),
    );
    let mut load = pgbench(
        proxy.port,
        &["-n", "-M", "prepared", "-c", "4", "-j", "2", "-T", "60"],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    // Killed with closed files behind it and batches in the open segment.
    wait_for(
        Duration::from_secs(60),
        "a converted file and a written batch",
        || {
            !files_ending(&dir, ".parquet").is_empty()
                && files_ending(&dir, ".arrows")
                    .iter()
                    .any(|p| segment_batches(p).0 > 0)
        },
    );
    proxy.signal(libc::SIGKILL);
    proxy.child.wait().unwrap();
    let _ = load.wait();
    let before = files_ending(&dir, ".parquet");
    let left = files_ending(&dir, ".arrows");
    assert!(!left.is_empty(), "the killed run leaves its open segment");
    let cap = Capture::open(&dir).unwrap();
    assert!(
        cap.errors.is_empty(),
        "every earlier file is readable: {:?}",
        cap.errors
    );

    // The restart converts the leftover before it accepts clients.
    let restarted = ProxyProcess::start(
        &db.addr(),
        &["--capture", &capture],
        &tmp.path().join("2.log"),
    );
    assert!(
        files_ending(&dir, ".arrows").is_empty(),
        "leftover converted at start"
    );
    assert!(restarted.stop().success());
    let cap = Capture::open(&dir).unwrap();
    assert!(cap.errors.is_empty(), "{:?}", cap.errors);
    for f in &cap.files {
        let recovered = f.metadata.get(meta::RECOVERED).map(String::as_str);
        if left.contains(&f.path.with_extension("arrows")) {
            assert_eq!(recovered, Some("true"), "{}", f.path.display());
        } else {
            assert!(
                before.contains(&f.path),
                "{} survives the restart",
                f.path.display()
            );
            assert_eq!(recovered, None, "{}", f.path.display());
        }
    }

    // Every committed pgbench transaction inserted one history row; all but
    // at most one batch (8192 rows) of its seven statements are captured.
    let committed: usize = db
        .psql("postgres", "SELECT count(*) FROM pgbench_history")
        .unwrap()
        .parse()
        .unwrap();
    let captured = captured_sql(&dir)
        .iter()
        .filter(|s| s.starts_with("INSERT INTO pgbench_history"))
        .count();
    let lost = committed.saturating_sub(captured) * 7;
    eprintln!(
        "kill -9: {committed} committed transactions, {captured} captured inserts, ~{lost} statements lost"
    );
    assert!(committed > 0 && captured > 0);
    assert!(lost <= 8192, "lost {lost} statements: more than one batch");
}
