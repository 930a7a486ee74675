//! The recorder path on one core: tap events → Arrow batches → zstd IPC
//! segment → Parquet, through the same code the recorder thread runs
//! (`synth::write_capture`). Reports events per second.
//!
//! `cargo bench --bench capture`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pgtape::capture::CaptureInfo;
use pgtape::capture::TapEvent;
use pgtape::capture::synth::{Synth, events, write_capture};

fn recorder_path(c: &mut Criterion) {
    let n = 100_000u64;
    let synth = Synth {
        statements: n,
        sessions: 16,
        ..Default::default()
    };
    let evs: Vec<TapEvent> = events(&synth).collect();
    let info = CaptureInfo {
        capture_id: "0000000000bench0".into(),
        upstream: "127.0.0.1:5432".into(),
        started_at_us: 1_714_564_800_000_000,
        params_redacted: false,
        max_copy_bytes: pgtape::capture::event::TapLimits::MAX_COPY_BYTES,
    };
    let mut g = c.benchmark_group("recorder");
    g.throughput(Throughput::Elements(evs.len() as u64));
    g.sample_size(10);
    g.bench_function("events_to_ipc_to_parquet", |b| {
        b.iter(|| {
            let tmp = tempfile::tempdir().unwrap();
            let files =
                write_capture(tmp.path(), &info, evs.iter().cloned(), 8192, u64::MAX).unwrap();
            black_box(files);
        })
    });
    g.finish();
}

criterion_group!(benches, recorder_path);
criterion_main!(benches);
