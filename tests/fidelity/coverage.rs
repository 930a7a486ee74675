//! The verdict states how much it compared: a replay whose noise exceeds
//! what `--min-coverage` allows fails with that reason, passes with the
//! check off, and every report format shows the figure.

use clap::Parser;
use pgtape::cli::{Cli, Command};
use pgtape::cluster::ClusterOptions;

use super::harness::{record, replay_args};
use super::support::{cluster, psql, run_ok};

fn report(args: &[&str]) -> i32 {
    let mut argv = vec!["pgtape", "report"];
    argv.extend_from_slice(args);
    let Command::Report(a) = Cli::try_parse_from(argv).unwrap().command else {
        unreachable!()
    };
    pgtape::report::main(a).unwrap()
}

#[test]
fn a_verdict_mostly_noise_fails_on_coverage_and_every_format_shows_it() {
    let mut a = cluster(&ClusterOptions::default());
    let b = a.duplicate().unwrap();
    let c = a.duplicate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let capture = record(&a, dir.path(), |port| {
        let mut args = Vec::new();
        for i in 0..10 {
            // Noise: the clock differs from the capture on every side.
            args.extend(["-c".to_string(), "SELECT clock_timestamp()".into()]);
            args.extend(["-c".to_string(), format!("SELECT {i} AS n")]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_ok(&mut psql(port, &args));
    });
    let results = dir.path().join("results");
    let json = dir.path().join("verdict.json");
    let replay = |extra: &[&str]| -> i32 {
        // Latency on a shared machine is no part of this test.
        let mut e = vec![
            "--max-rate",
            "--fail-on",
            "divergence",
            "--report",
            json.to_str().unwrap(),
        ];
        e.extend_from_slice(extra);
        pgtape::cli::replay::main(replay_args(&capture, &results, &b, Some(&c), &e)).unwrap()
    };
    assert_eq!(
        replay(&[]),
        1,
        "half the statements are noise: coverage 50 %"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["coverage"]["percent"], 50.0, "{:#}", v["coverage"]);
    assert_eq!(
        (
            &v["coverage"]["compared"],
            &v["coverage"]["total"],
            &v["coverage"]["below_min"]
        ),
        (&10.into(), &20.into(), &true.into())
    );
    assert_eq!(
        v["counts"]["divergences"], 0,
        "no divergence: coverage alone fails it"
    );
    let reasons = v["reasons"].to_string();
    assert!(reasons.contains("below --min-coverage 95 %"), "{reasons}");
    assert_eq!(
        v["coverage"]["unjudged"][0]["normalized_sql"],
        "SELECT clock_timestamp()"
    );

    assert_eq!(replay(&["--min-coverage", "0"]), 0, "the check off");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(
        (&v["passed"], &v["coverage"]["percent"]),
        (&true.into(), &50.0.into())
    );

    let r = results.to_str().unwrap();
    for (format, figure) in [
        (
            "table",
            "coverage 50.0 % (10 of 20 compared; min 95 %, BELOW)",
        ),
        ("json", "\"percent\": 50.0"),
        (
            "markdown",
            "coverage 50.0 % (10 of 20 compared; min 95 %, BELOW)",
        ),
        (
            "html",
            "coverage 50.0 % (10 of 20 compared; min 95 %, BELOW)",
        ),
    ] {
        let out = dir.path().join(format!("report.{format}"));
        let code = report(&[
            r,
            "--format",
            format,
            "--fail-on",
            "divergence",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_eq!(code, 1, "{format}");
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(text.contains(figure), "{format} shows {figure:?}:\n{text}");
        assert!(
            text.contains("SELECT clock_timestamp()"),
            "{format} names the fingerprint it could not judge"
        );
    }
}
