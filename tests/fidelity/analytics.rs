//! The analytics workload (events and queries at once, 30 s) recorded
//! through the proxy and replayed onto two copies of its starting state:
//! what a new user tries first.

use std::time::Duration;

use pgtape::cluster::ClusterOptions;
use pgtape::workload::{self, Profile, SetupConfig, WorkloadConfig};

use super::harness::{record, replay_and_diff, sides};
use super::support::cluster;

/// With commit-order replay, inserts drawing sequence ids in the capture's
/// order: coverage 99.4 %, 0 divergences, and 98.9 % (source) / 99.35 %
/// (target) of statements return the captured result where this asks
/// 99.9 % (95.5 % before sequence draws were ordered). What is left is
/// reads of windows relative to `now()` (`occurred_at > now() - interval
/// '15 minutes'`): the replay runs a minute after the capture, and rows
/// leave the window meanwhile, alike on both sides (the verdict counts them
/// as noise). `cargo test --test fidelity analytics -- --ignored
/// --nocapture` prints the figures.
#[test]
#[ignore = "reads of now()-relative windows return other rows a minute later (98.9 % / 99.35 % match, 99.9 % asked)"]
fn the_analytics_workload_replays_with_the_captured_results_on_both_sides() {
    let mut a = cluster(&ClusterOptions::default());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(workload::setup(&SetupConfig::new(
        a.url("postgres"),
        Profile::Analytics,
        3,
        50,
    )))
    .unwrap_or_else(|e| panic!("setup: {e}"));
    let source = a.duplicate().unwrap();
    let target = a.duplicate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let capture = record(&a, dir.path(), |port| {
        let url = format!(
            "postgres://postgres:{}@127.0.0.1:{port}/postgres",
            pgtape::cluster::PASSWORD
        );
        let mut cfg = WorkloadConfig::new(url, Profile::Analytics);
        cfg.duration = Duration::from_secs(30);
        cfg.events_per_second = 400.0;
        cfg.queries_per_second = 500.0;
        cfg.connections = 8;
        cfg.refresh_interval = Duration::from_secs(10);
        cfg.seed = 42;
        let s = rt
            .block_on(workload::run(&cfg, std::future::pending()))
            .unwrap_or_else(|e| panic!("workload: {e}"));
        assert_eq!(s.failed, 0, "{}", s.to_text());
    });
    let results = dir.path().join("results");
    let (summary, v) = replay_and_diff(
        &capture,
        &results,
        &source,
        Some(&target),
        &["--speed", "1"],
    );
    let v = v.unwrap();
    let mut report = Vec::new();
    pgtape::report::verdict::render(&v, pgtape::report::Format::Table, &mut report).unwrap();
    let report = String::from_utf8(report).unwrap();
    // Figures first, for both sides; then the checks.
    let sides = sides(&results);
    let mut failures = Vec::new();
    for (name, side) in &sides {
        let mismatches = side.mismatches();
        let share = 1.0 - mismatches.len() as f64 / side.len() as f64;
        let remapped = summary
            .sides
            .iter()
            .find(|s| s.side == *name)
            .unwrap()
            .remapped;
        println!(
            "{name}: {} statements, {:.3} % return the captured result, {remapped} values remapped",
            side.len(),
            share * 100.0
        );
        assert!(side.len() > 5_000, "{name}: {} statements", side.len());
        if share < 0.999 {
            failures.push(format!(
                "{name}: {:.3} % return the captured result; the first that do not:\n{}",
                share * 100.0,
                mismatches
                    .iter()
                    .take(15)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("\n")
            ));
        }
    }
    println!(
        "coverage {:.1} %, {} divergences",
        v.coverage.percent, v.counts.divergences
    );
    assert!(failures.is_empty(), "{}\n{report}", failures.join("\n"));
    assert_eq!(v.counts.divergences, 0, "{report}");
    assert!(v.coverage.percent >= 99.0, "{report}");
    assert!(v.passed, "{report}");
}
