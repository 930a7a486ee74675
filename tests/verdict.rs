//! The diff and verdict of a replay: report rendering from the committed
//! deterministic results fixture (snapshots, stable JSON, exit codes), the
//! HTML in headless Chromium, and seeded defects on real target clusters,
//! each caught and classed right.

#[path = "verdict/chromium.rs"]
mod chromium;
#[path = "verdict/defects.rs"]
mod defects;
mod support;

use std::path::{Path, PathBuf};

use clap::Parser;
use pgtape::cli::{Cli, Command};
use pgtape::diff::{DiffConfig, FailOn, Verdict, run_diff_blocking};
use pgtape::report::Format;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/results-small")
}

fn fixture_verdict(cfg: &DiffConfig) -> Verdict {
    run_diff_blocking(&fixture(), cfg, None).expect("the fixture diffs")
}

fn render(v: &Verdict, f: Format) -> String {
    let mut out = Vec::new();
    pgtape::report::verdict::render(v, f, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

/// Runs `pgtape <args>` in-process (the shared binary may be another branch's).
fn pgtape(args: &[&str]) -> anyhow::Result<i32> {
    let mut argv = vec!["pgtape"];
    argv.extend_from_slice(args);
    let cli = Cli::try_parse_from(argv).map_err(|e| anyhow::anyhow!("{e}"))?;
    match cli.command {
        Command::Report(a) => pgtape::report::main(a),
        _ => unreachable!("only report is tested here"),
    }
}

#[test]
fn fixture_verdict_classes_every_seeded_difference() {
    let v = fixture_verdict(&DiffConfig::default());
    let class = |c: &str| {
        v.divergence_classes
            .iter()
            .find(|x| x.class == c)
            .map(|x| x.count)
            .unwrap_or(0)
    };
    assert_eq!(class("new_error"), 3, "{:#?}", v.divergence_classes);
    assert_eq!(class("resolved_error"), 2);
    assert_eq!(class("different_sqlstate"), 1);
    assert_eq!(class("different_columns"), 10);
    assert_eq!(class("different_row_count"), 1);
    assert_eq!(class("different_order"), 6);
    assert_eq!(class("different_rows"), 2);
    assert_eq!(v.counts.benign_order, 12);
    // now() (20) and the unordered LIMIT within noise thresholds (6).
    assert_eq!(v.counts.noise, 26, "{:#?}", v.noise);
    assert_eq!(v.counts.regressions, 1);
    let degraded = &v.fingerprints[0];
    assert_eq!(degraded.class, "degraded");
    assert!(degraded.normalized_sql.contains("customer_id"));
    assert_eq!(v.fingerprints.last().unwrap().class, "cannot_evaluate");
    assert_eq!((v.verdict.as_str(), v.exit_code), ("fail", 1));
}

#[test]
fn report_table_of_the_results_fixture() {
    insta::assert_snapshot!(render(
        &fixture_verdict(&DiffConfig::default()),
        Format::Table
    ));
}

#[test]
fn report_json_of_the_results_fixture_is_stable() {
    let json = render(&fixture_verdict(&DiffConfig::default()), Format::Json);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    // The documented top-level fields (README): add, never rename.
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    let mut want = vec![
        "version",
        "results_dir",
        "verdict",
        "passed",
        "exit_code",
        "fail_on",
        "reasons",
        "settings",
        "counts",
        "coverage",
        "latency",
        "fingerprints",
        "divergence_classes",
        "divergences",
        "noise",
        "charts",
    ];
    want.sort();
    assert_eq!(keys, want);
    let json = json.replace(&fixture().display().to_string(), "fixtures/results-small");
    insta::assert_snapshot!(json);
}

#[test]
fn report_markdown_of_the_results_fixture() {
    insta::assert_snapshot!(render(
        &fixture_verdict(&DiffConfig::default()),
        Format::Markdown
    ));
}

#[test]
fn report_html_of_the_results_fixture() {
    let html = render(&fixture_verdict(&DiffConfig::default()), Format::Html)
        .replace(&fixture().display().to_string(), "fixtures/results-small");
    assert!(!html.contains("http://") && !html.contains("https://"));
    insta::assert_snapshot!(html);
}

#[test]
fn exit_codes_for_pass_divergence_regression_and_bad_input() {
    let dir = fixture();
    let d = dir.to_str().unwrap();
    let out = tempfile::tempdir().unwrap();
    let o = out.path().join("r.txt");
    let o = o.to_str().unwrap();
    // Both kinds of failure present.
    assert_eq!(pgtape(&["report", d, "--out", o]).unwrap(), 1);
    assert_eq!(
        pgtape(&["report", d, "--out", o, "--fail-on", "divergence"]).unwrap(),
        1
    );
    assert_eq!(
        pgtape(&["report", d, "--out", o, "--fail-on", "regression"]).unwrap(),
        1
    );
    // A looser threshold clears the regression.
    assert_eq!(
        pgtape(&[
            "report",
            d,
            "--out",
            o,
            "--fail-on",
            "regression",
            "--regression-threshold",
            "20"
        ])
        .unwrap(),
        0
    );
    assert_eq!(
        pgtape(&["report", d, "--out", o, "--fail-on", "none"]).unwrap(),
        0
    );
    // Bad input: not a results directory, bad flags (main turns Err into 2).
    let empty = tempfile::tempdir().unwrap();
    std::fs::write(empty.path().join("source.parquet"), b"not parquet").unwrap();
    let e = run_diff_blocking(empty.path(), &DiffConfig::default(), None).unwrap_err();
    assert!(e.to_string().contains("pgtape replay --results"), "{e}");
    assert!(pgtape(&["report", d, "--latency-percentile", "0"]).is_err());
    assert!(pgtape(&["report", d, "--fail-on", "sometimes"]).is_err());
    let cfg = DiffConfig {
        fail_on: vec![FailOn::Divergence],
        ..Default::default()
    };
    assert_eq!(fixture_verdict(&cfg).exit_code, 1);
}

#[test]
fn report_markdown_of_a_capture_is_refused_with_the_fix() {
    let cap = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/capture-small");
    let e = pgtape(&["report", cap.to_str().unwrap(), "--format", "markdown"]).unwrap_err();
    assert!(
        e.to_string().contains("--format table, json or html"),
        "{e}"
    );
}

#[test]
fn report_html_of_the_results_fixture_renders_in_headless_chromium() {
    chromium::assert_renders(&fixture_verdict(&DiffConfig::default()), "fixture");
}

#[test]
fn report_help_documents_the_exit_codes_and_diff_flags() {
    let e = Cli::try_parse_from(["pgtape", "report", "--help"]).unwrap_err();
    let help = e.to_string();
    for s in [
        "exits 0 when the migration passes",
        "--fail-on",
        "--show-rows",
        "--latency-percentile",
        "--regression-threshold",
        "--min-executions",
        "markdown",
    ] {
        assert!(help.contains(s), "{s} missing from:\n{help}");
    }
}

/// A single diverging statement whose re-run gave the same rows on both
/// sides (a read that raced a write) leaves the gate as noise; the verdict
/// is decided again without it.
#[test]
fn a_divergence_the_rerun_cannot_reproduce_is_settled_as_noise() {
    let cfg = DiffConfig::default();
    let mut v = fixture_verdict(&cfg);
    let before = v.clone();
    let g = v
        .divergences
        .iter_mut()
        .find(|g| g.class == "different_row_count" && g.count == 1)
        .expect("the fixture has one row-count divergence");
    let fingerprint = g.fingerprint.clone();
    g.examples[0].evidence = Some(pgtape::diff::model::Evidence {
        transient: true,
        ..Default::default()
    });
    pgtape::diff::verdict::settle_transient(&mut v, &cfg.fail_on);
    assert_eq!(v.counts.divergences, before.counts.divergences - 1);
    assert_eq!(v.counts.noise, before.counts.noise + 1);
    assert!(
        !v.divergence_classes
            .iter()
            .any(|c| c.class == "different_row_count")
    );
    let settled = v
        .noise
        .iter()
        .find(|n| n.fingerprint == fingerprint)
        .unwrap();
    assert_eq!(settled.why, "re-run matched on both sides");
    assert!(v.reasons[0].starts_with(&format!("{} divergent", v.counts.divergences)));
    // Evidence that differs keeps its group.
    let mut w = before.clone();
    w.divergences[0].examples[0].evidence = Some(Default::default());
    let expected = w.clone();
    pgtape::diff::verdict::settle_transient(&mut w, &cfg.fail_on);
    assert!(w == expected, "an untouched verdict");
}
