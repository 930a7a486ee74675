//! `pgtape replay` as a command: the replay ([`crate::replay`]), then, with
//! a target, the diff of its results ([`crate::diff`]) and the verdict's
//! report ([`crate::report`]). The composition lives here, above the three,
//! so the replay itself never reaches up to the layers that judge it.

use std::io::Write;

use anyhow::{Context, bail};
use serde::Serialize;

use crate::diff::{DiffArgs, Verdict};
use crate::process::exit;
use crate::replay::args::Format;
use crate::replay::summary::ReplaySummary;
use crate::replay::{ReplayArgs, ReplayConfig, replay};

/// `pgtape replay`'s arguments: the replay's, then the diff's.
#[derive(Debug, clap::Args)]
pub struct ReplayCommand {
    #[command(flatten)]
    pub replay: ReplayArgs,
    #[command(flatten)]
    pub diff: DiffArgs,
}

/// The JSON `pgtape replay --format json` prints: the replay's summary and
/// the verdict of source against target (`null` with one side).
#[derive(Serialize)]
struct Output<'a> {
    #[serde(flatten)]
    summary: &'a ReplaySummary,
    verdict: Option<&'a Verdict>,
}

/// `pgtape replay`: exit 0 when the replay ran (and, with a target, passed).
///
/// With a target, the replay ends with the diff: its verdict is printed
/// after the sides (and kept in the JSON), written to `--report`, and gives
/// the exit code, as `pgtape report RESULTS_DIR` would.
pub fn main(args: ReplayCommand) -> anyhow::Result<i32> {
    let ReplayCommand { replay: args, diff } = args;
    let cfg = ReplayConfig::from_args(&args)?;
    // Bad diff flags fail before anything is replayed.
    let diff = diff.config()?;
    if args.report.is_some() && cfg.target.is_none() {
        bail!("--report writes the verdict of source against target: add --target URL");
    }
    // Sessions run on their own workers; this runtime only watches them.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let first_signal = async {
        crate::process::shutdown_signal().await;
        // A second signal does not wait for the grace.
        tokio::spawn(async {
            crate::process::shutdown_signal().await;
            eprintln!("pgtape replay: second signal, exiting at once");
            std::process::exit(exit::ERROR);
        });
    };
    let summary = rt.block_on(replay(&cfg, first_signal))?;
    let mut code = exit::OK;
    let mut verdict = None;
    if summary.interrupted {
        code = exit::ERROR;
    } else if let Some(target) = &cfg.target {
        let v = rt.block_on(crate::diff::run_diff(
            &cfg.results,
            &diff,
            Some((&cfg.source, target)),
        ))?;
        if let Some(path) = &args.report {
            crate::report::verdict::write_report(&v, path)
                .with_context(|| format!("--report {}", path.display()))?;
        }
        code = v.exit_code;
        verdict = Some(v);
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match args.format {
        Format::Table => {
            write!(out, "{}", summary.table())?;
            if let Some(v) = &verdict {
                writeln!(out)?;
                crate::report::verdict::render(v, crate::report::Format::Table, &mut out)?;
            }
        }
        Format::Json => {
            let output = Output {
                summary: &summary,
                verdict: verdict.as_ref(),
            };
            writeln!(out, "{}", serde_json::to_string_pretty(&output)?)?
        }
    }
    out.flush()?;
    Ok(code)
}
