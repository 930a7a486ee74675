//! `pgtape demo` end to end, as a user runs it: throw-away clusters, Redis,
//! the proxy, the workload, the replay and the verdict.

use std::process::Command;

/// One demo at a time: each starts three clusters and measures latency, which
/// a second demo on the same two cores would drown in noise.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn demo(args: &[&str], out: &std::path::Path) -> (i32, String, String) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let o = Command::new(env!("CARGO_BIN_EXE_pgtape"))
        .arg("demo")
        .args(args)
        .arg("--out")
        .arg(out)
        .env("RUST_LOG", "warn")
        .output()
        .expect("pgtape demo runs");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

#[test]
fn demo_catches_the_lost_index_and_the_changed_column_type() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let (code, stdout, stderr) = demo(&["--duration", "10s"], &out);
    assert_eq!(code, 0, "--- stdout\n{stdout}\n--- stderr\n{stderr}");
    assert!(stdout.contains("VERDICT: FAIL"), "{stdout}");
    // The column type change: the event lists now return real, not double precision.
    assert!(
        stdout.contains("[different_columns]") && stdout.contains("duration_ms:700"),
        "{stdout}"
    );
    // The lost index: the event list fingerprints are degraded.
    let degraded: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains(" degraded "))
        .collect();
    assert!(
        degraded
            .iter()
            .any(|l| l.contains("SELECT id, user_id, event_type, element, duration_ms")),
        "{stdout}"
    );
    // What stays behind, and how to open it.
    let files: Vec<_> = std::fs::read_dir(out.join("capture"))
        .unwrap()
        .flatten()
        .collect();
    assert!(
        files
            .iter()
            .any(|f| f.path().extension().is_some_and(|e| e == "parquet"))
    );
    assert!(
        out.join("results/source.parquet").exists() && out.join("results/target.parquet").exists()
    );
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("FAIL"));
    assert!(stdout.contains("duckdb -c"), "{stdout}");
    for step in 1..=7 {
        assert!(
            stderr.contains(&format!("[{step}/7]")),
            "step {step} shown: {stderr}"
        );
    }
}

#[test]
fn demo_of_an_identical_target_passes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let (code, stdout, stderr) = demo(&["--duration", "10s", "--scenario", "identical"], &out);
    assert_eq!(code, 0, "--- stdout\n{stdout}\n--- stderr\n{stderr}");
    assert!(stdout.contains("VERDICT: PASS"), "{stdout}");
    assert!(stdout.contains(" 0 divergent"), "{stdout}");
}
