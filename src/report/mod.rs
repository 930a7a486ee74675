//! `pgtape report`: what a capture says about the workload, from the capture
//! alone (no database): volume and rate over time, latency percentiles,
//! errors, the top query fingerprints and breakdowns by statement type,
//! table and application, and the slow statements with their parameters.
//! Given a replay's results directory instead, it renders the diff's verdict.
//!
//! - [`model`]: the report's data ([`Summary`] and its parts).
//! - [`summary`]: the streaming passes that build a [`Summary`].
//! - [`slow`]: the slow statements pass (row filter on duration).
//! - [`table`], [`json`], [`html`]: the exporters, behind [`Exporter`].
//! - [`verdict`]: a replay's verdict: [`verdict_table`], [`verdict_json`],
//!   [`verdict_md`] and [`verdict_html`], behind [`verdict::VerdictExporter`].

pub mod html;
pub mod json;
pub mod model;
pub mod slow;
pub mod summary;
pub mod table;
pub mod verdict;
pub mod verdict_html;
pub mod verdict_json;
pub mod verdict_md;
pub mod verdict_table;

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::ValueEnum;

pub use summary::{Summary, SummaryOptions, summarize};

use crate::capture::Capture;

/// One output format of a summary.
pub trait Exporter {
    fn export(&self, summary: &Summary, out: &mut dyn Write) -> std::io::Result<()>;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned text tables for a terminal.
    Table,
    /// One JSON document (documented in the README).
    Json,
    /// One self-contained HTML page with inline SVG charts.
    Html,
    /// Markdown for a pull-request comment (replay results only).
    Markdown,
}

impl Format {
    pub fn exporter(self) -> Box<dyn Exporter> {
        match self {
            Format::Table => Box::new(table::TableExporter),
            Format::Json => Box::new(json::JsonExporter),
            Format::Html => Box::new(html::HtmlExporter),
            // `main` refuses Markdown for a capture; a table is the nearest form.
            Format::Markdown => Box::new(table::TableExporter),
        }
    }
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Given a results directory (written by `pgtape replay --results DIR`), renders the verdict \
                  and exits 0 when the migration passes, 1 when a verdict in --fail-on failed \
                  (divergence or latency regression, or coverage below --min-coverage), 2 on bad \
                  input or an error."
)]
pub struct ReportArgs {
    /// A capture directory written by `pgtape proxy --capture` (or one of its
    /// files), or a replay's results directory (`pgtape replay --results DIR`).
    #[arg(value_name = "CAPTURE_OR_RESULTS")]
    pub capture: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Write the report here instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Statements slower than this many milliseconds are listed with their parameters.
    #[arg(long, default_value_t = 1000.0)]
    pub slow_ms: f64,
    /// At most this many slow statements are listed.
    #[arg(long, default_value_t = 50)]
    pub slow_limit: usize,
    /// Fingerprints listed in each top list.
    #[arg(long, default_value_t = 20)]
    pub top: usize,
    /// Results directory only: the source database, to re-run diverging
    /// read-only statements for `--show-rows` evidence.
    #[arg(long, value_name = "URL", requires = "target")]
    pub source: Option<String>,
    /// Results directory only: the target database (with --source).
    #[arg(long, value_name = "URL", requires = "source")]
    pub target: Option<String>,
    #[command(flatten)]
    pub diff: crate::diff::DiffArgs,
}

/// Runs `pgtape report`.
pub fn main(args: ReportArgs) -> anyhow::Result<i32> {
    if crate::diff::is_results_dir(&args.capture) {
        return verdict_main(&args);
    }
    if args.format == Format::Markdown {
        anyhow::bail!(
            "--format markdown renders a replay's results directory; {} is a capture: use --format table, json or html",
            args.capture.display()
        );
    }
    if !(args.slow_ms >= 0.0) {
        anyhow::bail!("--slow-ms must be a number of milliseconds >= 0, e.g. --slow-ms 500");
    }
    let cap = Capture::open(&args.capture)
        .with_context(|| "cannot read the capture given to pgtape report; pass a directory written by `pgtape proxy --capture DIR`")?;
    for e in &cap.errors {
        tracing::warn!("skipping: {e}");
    }
    if cap.files.is_empty() {
        let why = if cap.errors.is_empty() {
            "it holds no .parquet capture files".to_string()
        } else {
            format!("none of its files can be read ({} bad)", cap.errors.len())
        };
        anyhow::bail!(
            "{}: {why}; pass a directory written by `pgtape proxy --capture DIR`",
            args.capture.display()
        );
    }
    let opts = SummaryOptions {
        top: args.top,
        slow_ms: args.slow_ms,
        slow_limit: args.slow_limit,
        ..Default::default()
    };
    let summary = summarize(&cap, &opts)?;
    let exporter = args.format.exporter();
    match &args.out {
        Some(path) => {
            let mut f = std::io::BufWriter::new(
                std::fs::File::create(path)
                    .with_context(|| format!("cannot create --out {}", path.display()))?,
            );
            exporter.export(&summary, &mut f)?;
            f.flush()?;
        }
        None => {
            let stdout = std::io::stdout();
            let mut lock = stdout.lock();
            exporter.export(&summary, &mut lock)?;
            lock.flush()?;
        }
    }
    Ok(crate::process::exit::OK)
}

/// `pgtape report RESULTS_DIR`: the diff's verdict, exit code included.
fn verdict_main(args: &ReportArgs) -> anyhow::Result<i32> {
    let cfg = args.diff.config()?;
    let conns = match (&args.source, &args.target) {
        (Some(s), Some(t)) => Some((
            crate::replay::conn_opts::ConnOpts::parse(s).context("--source")?,
            crate::replay::conn_opts::ConnOpts::parse(t).context("--target")?,
        )),
        _ => None,
    };
    let v =
        crate::diff::run_diff_blocking(&args.capture, &cfg, conns.as_ref().map(|(s, t)| (s, t)))?;
    match &args.out {
        Some(path) => {
            let mut f = std::io::BufWriter::new(
                std::fs::File::create(path)
                    .with_context(|| format!("cannot create --out {}", path.display()))?,
            );
            verdict::render(&v, args.format, &mut f)?;
            f.flush()?;
        }
        None => {
            let stdout = std::io::stdout();
            let mut lock = stdout.lock();
            verdict::render(&v, args.format, &mut lock)?;
            lock.flush()?;
        }
    }
    Ok(v.exit_code)
}
