//! Writes a synthetic capture for benchmarks: `cargo run --release --example
//! synth_capture -- DIR STATEMENTS [SESSIONS]`. Same arguments, same files.

use pgtape::capture::CaptureInfo;
use pgtape::capture::synth::{Synth, events, write_capture};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(dir), Some(n)) = (args.get(1), args.get(2).and_then(|n| n.parse().ok())) else {
        eprintln!("usage: synth_capture DIR STATEMENTS [SESSIONS]");
        std::process::exit(2);
    };
    let sessions = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(64);
    let synth = Synth {
        statements: n,
        sessions,
        gap_us: 100,
        ..Default::default()
    };
    let info = CaptureInfo {
        capture_id: "00000000synth000".into(),
        upstream: "127.0.0.1:5432".into(),
        started_at_us: synth.start_us,
        params_redacted: false,
        max_copy_bytes: pgtape::capture::event::TapLimits::MAX_COPY_BYTES,
    };
    // ~1 M rows per file, as a 128 MiB segment of real traffic would hold.
    let files = write_capture(
        std::path::Path::new(dir),
        &info,
        events(&synth),
        8192,
        1_000_000,
    )
    .unwrap_or_else(|e| {
        eprintln!("synth_capture: {e}");
        std::process::exit(2);
    });
    let bytes: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .sum();
    println!(
        "{} files, {} statements, {} bytes, {:.1} B/statement",
        files.len(),
        n,
        bytes,
        bytes as f64 / n as f64
    );
}
