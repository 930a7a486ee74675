//! Faults a replay must survive. The target stops mid-replay: the source
//! runs to its end, the target's remaining statements are `not_replayed`
//! with the reason, and the verdict says the replay is incomplete and fails.
//! The results directory's disk fills: exit 2 naming the directory, no file
//! cut before its footer left behind, the capture untouched.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pgtape::cluster::{Cluster, ClusterOptions};

use super::{Tmpfs, files_ending, fill};
use crate::support::replay::{read_side, record};
use crate::support::{cluster, pgbench, psql, run_ok};

/// `pgtape replay CAPTURE --source S [--target T] --results R`, paced at
/// the capture's speed, its output piped.
fn spawn_replay(capture: &Path, results: &Path, source: &Cluster, target: &Cluster) -> Child {
    Command::new(env!("CARGO_BIN_EXE_pgtape"))
        .arg("replay")
        .arg(capture)
        .args(["--source", &source.url("postgres")])
        .args(["--target", &target.url("postgres")])
        .arg("--results")
        .arg(results)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for the replay to exit, failing the test if it runs past `limit`.
fn wait_bounded(mut child: Child, limit: Duration) -> (Option<i32>, String, Duration) {
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "the replay hung for {limit:?}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = started.elapsed();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text, took)
}

/// Every file under `dir` with its length and contents' hash, sorted.
fn snapshot(dir: &Path) -> Vec<(String, u64, u64)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let bytes = std::fs::read(&p).unwrap();
            let hash = bytes.iter().fold(0xcbf29ce484222325u64, |h, b| {
                (h ^ *b as u64).wrapping_mul(0x100000001b3)
            });
            (p.display().to_string(), bytes.len() as u64, hash)
        })
        .collect();
    files.sort();
    files
}

// Issue 16, replay faults: a target that stopped mid-replay must not hang
// the replay nor pass the verdict.
#[test]
fn a_target_stopped_mid_replay_leaves_its_rest_not_replayed_and_the_verdict_incomplete() {
    let mut prod = cluster(&ClusterOptions::default());
    let source = prod.duplicate().unwrap();
    let mut target = prod.duplicate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let capture = record(&prod, dir.path(), |port| {
        run_ok(&mut psql(
            port,
            &[
                "-c",
                "CREATE TABLE t (i int)",
                "-c",
                "INSERT INTO t VALUES (1)",
                "-c",
                "SELECT pg_sleep(2)",
                "-c",
                "INSERT INTO t VALUES (2)",
                "-c",
                "SELECT count(*) FROM t",
            ],
        ));
        // A session that connects once the target is down.
        run_ok(&mut psql(port, &["-c", "SELECT sum(i) FROM t"]));
    });
    let results = dir.path().join("results");
    let child = spawn_replay(&capture, &results, &source, &target);
    // Until the target is inside pg_sleep(2), then stop it the hard way.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = target
            .psql(
                "postgres",
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query = 'SELECT pg_sleep(2)'",
            )
            .unwrap();
        if n.trim() == "1" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the replay never reached pg_sleep(2) on the target"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    target.stop_immediate().unwrap();

    let (code, out, _) = wait_bounded(child, Duration::from_secs(60));
    assert_eq!(code, Some(1), "the verdict fails\n{out}");

    let s = read_side(&results.join("source.parquet"));
    assert_eq!(s.sql.len(), 6, "{:?}", s.sql);
    assert!(
        s.status.iter().all(|st| st == "ok"),
        "the source ran to its end: {:?}",
        s.status
    );
    let t = read_side(&results.join("target.parquet"));
    for (i, q) in t.sql.iter().enumerate() {
        let before = q.starts_with("CREATE") || q == "INSERT INTO t VALUES (1)";
        let reason = t.reason[i].clone().unwrap_or_default();
        if before {
            assert_eq!(t.status[i], "ok", "{q}");
        } else {
            assert!(
                t.status[i] == "not_replayed" && !reason.is_empty(),
                "{q}: {} {reason:?}",
                t.status[i]
            );
        }
    }
    let one_sided = t.status.iter().filter(|s| *s == "not_replayed").count();
    assert_eq!(one_sided, 4, "{:?}", t.sql);
    assert!(
        out.contains(&format!(
            "incomplete: {one_sided} statement(s) ran on one side only"
        )),
        "the verdict says why\n{out}"
    );
    let reasons: Vec<_> = t.reason.iter().flatten().collect();
    assert!(
        reasons.iter().any(|r| r.starts_with("connection lost")),
        "the statement in flight lost its connection: {reasons:?}"
    );
}

// Issue 16, replay faults: the results directory's disk fills during the
// replay.
#[test]
fn a_full_results_disk_exits_2_naming_the_directory_and_leaves_the_capture_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let fs = match Tmpfs::mount(&tmp.path().join("fs"), "1m") {
        Ok(fs) => fs,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let mut prod = cluster(&ClusterOptions::default());
    run_ok(&mut pgbench(prod.port(), &["-i", "-q", "-s", "1"]));
    let source = prod.duplicate().unwrap();
    let target = prod.duplicate().unwrap();
    let capture = record(&prod, tmp.path(), |port| {
        run_ok(&mut pgbench(
            port,
            &["-n", "-c", "2", "-T", "3", "-R", "200"],
        ));
    });
    let before = snapshot(&capture);
    assert!(!before.is_empty());

    let results = fs.0.join("results");
    let child = spawn_replay(&capture, &results, &source, &target);
    let deadline = Instant::now() + Duration::from_secs(30);
    while files_ending(&results, ".parquet.tmp").len() < 2 {
        assert!(Instant::now() < deadline, "no results file was opened");
        std::thread::sleep(Duration::from_millis(10));
    }
    fill(&fs.0.join("filler"));

    let (code, out, _) = wait_bounded(child, Duration::from_secs(60));
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains(&format!(
            "cannot write the replay's results in {}",
            results.display()
        )) && out.contains("No space left on device")
            && out.contains("--results"),
        "the error names the directory, the cause and the fix\n{out}"
    );
    assert_eq!(
        files_ending(&results, ".tmp"),
        Vec::<std::path::PathBuf>::new(),
        "files cut before their footer are removed"
    );
    assert_eq!(snapshot(&capture), before, "the capture is untouched");
}
