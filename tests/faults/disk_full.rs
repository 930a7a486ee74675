//! The capture directory on a full filesystem: a 2 MiB tmpfs, mounted when
//! the suite runs as root (skipped with a printed reason otherwise), filled
//! to the last page while pgbench goes through the proxy, then freed.

use std::process::Stdio;
use std::time::Duration;

use pgtape::capture::Capture;
use pgtape::cluster::ClusterOptions;

use super::{ProxyProcess, Tmpfs, files_ending, fill, wait_for};
use crate::support::{cluster, pgbench, run_ok, stdout};

fn pgbench_report(port: u16, args: &[&str]) -> String {
    stdout(&run_ok(&mut pgbench(port, args)))
}

fn assert_no_failed_transactions(report: &str) {
    assert!(
        report.contains("number of failed transactions: 0"),
        "{report}"
    );
}

// Issue 16, defect 7: on a full disk the recorder opened a new 0-byte
// segment every 200 ms (74 files in 26 s), and segments that failed to close
// stayed `.arrows` until a restart.
#[test]
fn full_disk_opened_a_segment_every_200ms_and_converted_nothing_after() {
    let tmp = tempfile::tempdir().unwrap();
    let fs = match Tmpfs::mount(&tmp.path().join("fs"), "2m") {
        Ok(fs) => fs,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let db = cluster(&ClusterOptions::default());
    run_ok(&mut pgbench(db.port(), &["-i", "-q", "-s", "1"]));
    let dir = fs.0.join("cap");
    let capture = dir.display().to_string();
    let proxy = ProxyProcess::start(
        &db.addr(),
        &["--capture", &capture, "--rotate-interval", "2s"],
        &tmp.path().join("proxy.log"),
    );

    // A segment with batches in it, then the disk fills before it rotates:
    // it closes, but its conversion has no room.
    assert_no_failed_transactions(&pgbench_report(proxy.port, &["-n", "-c", "2", "-t", "50"]));
    wait_for(
        Duration::from_secs(30),
        "a batch in the open segment",
        || {
            files_ending(&dir, ".arrows")
                .iter()
                .any(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > 4096))
        },
    );
    let closed = files_ending(&dir, ".arrows");
    let filler = fs.0.join("filler");
    fill(&filler);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !proxy.log_text().contains("cannot convert segment") {
        assert!(
            std::time::Instant::now() < deadline,
            "no conversion failed; files {:?}\n{}",
            files_ending(&dir, ""),
            proxy.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // Full: clients go on, rows are dropped, files are not churned.
    let load = pgbench(proxy.port, &["-n", "-c", "4", "-j", "2", "-T", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut load = load;
    let mut most_segments = 0;
    let mut empty_segments = Vec::new();
    while load.try_wait().unwrap().is_none() {
        let segs = files_ending(&dir, ".arrows");
        most_segments = most_segments.max(segs.len());
        empty_segments.extend(
            segs.into_iter()
                .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.len() == 0)),
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = load.wait_with_output().unwrap();
    assert_no_failed_transactions(&String::from_utf8_lossy(&out.stdout));
    assert!(
        most_segments <= 2 && empty_segments.is_empty(),
        "a full disk churned segments: up to {most_segments} at once, empty: {empty_segments:?}\n{}",
        proxy.log_text()
    );
    assert_eq!(
        files_ending(&dir, ".arrows"),
        closed,
        "the closed segment waits"
    );

    // Space again: the same run converts what waited, and writes again.
    // At a bounded rate: unbounded, a fast machine fills the 2 MiB again
    // before the next rotation converts anything.
    std::fs::remove_file(&filler).unwrap();
    let mut load = pgbench(proxy.port, &["-n", "-c", "2", "-R", "100", "-T", "120"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(
        Duration::from_secs(90),
        "conversions once space returned",
        || {
            let parquet = files_ending(&dir, ".parquet");
            closed
                .iter()
                .all(|c| parquet.contains(&c.with_extension("parquet")))
                && parquet.len() > closed.len()
        },
    );
    unsafe { libc::kill(load.id() as i32, libc::SIGINT) };
    let _ = load.wait();
    let log = proxy.log_text();
    assert!(proxy.stop().success(), "{log}");

    assert!(files_ending(&dir, ".arrows").is_empty());
    assert!(files_ending(&dir, ".tmp").is_empty());
    let cap = Capture::open(&dir).unwrap();
    assert!(cap.errors.is_empty(), "{:?}", cap.errors);
    assert!(cap.dropped() > 0, "rows lost to the full disk are counted");
    assert!(cap.total_rows() > 0);
}
