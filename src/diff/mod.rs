//! The diff and verdict of a replay: source and target results joined per
//! statement, classed, noise cancelled, latency compared per fingerprint,
//! and one verdict with an exit code a CI job can gate a migration on.
//!
//! - [`load`]: reading a results directory (projected columns, compact rows).
//! - [`detail`]: the full rows of the example statements a report shows.
//! - [`engine`]: the hash join on (session_id, seq, clone).
//! - [`classify`]: divergence classes.
//! - [`noise`]: per-fingerprint accounting and noise cancellation (Diffy's rule).
//! - [`coverage`]: the share of the traffic the verdict compared (`--min-coverage`).
//! - [`latency`]: HdrHistogram per fingerprint per side, latency classes, charts.
//! - [`evidence`]: `--show-rows`, the first differing rows of a re-run.
//! - [`verdict`]: groups, examples, sorting, exit code.
//! - [`model`]: the [`Verdict`] every exporter renders (the JSON interface).
//! - [`fixture`]: the deterministic results directory behind the report tests.

pub mod classify;
pub mod coverage;
pub mod detail;
pub mod engine;
pub mod evidence;
pub mod fixture;
pub mod latency;
pub mod load;
pub mod model;
pub mod noise;
pub mod verdict;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use clap::ValueEnum;
use thiserror::Error;

pub use load::is_results_dir;
pub use model::Verdict;

use crate::replay::conn_opts::ConnOpts;

#[derive(Debug, Error)]
pub enum DiffError {
    #[error(
        "cannot read {}: {why}; pass a results directory written by `pgtape replay --results DIR`",
        path.display()
    )]
    Missing { path: PathBuf, why: String },
    #[error(
        "{} is not a pgtape results file (no pgtape.results.version metadata); pass a directory written by `pgtape replay --results DIR`",
        path.display()
    )]
    NotResults { path: PathBuf },
    #[error(
        "{} has results schema version {found}, newer than this pgtape reads; upgrade pgtape",
        path.display()
    )]
    Version { path: PathBuf, found: String },
    #[error(
        "{} is not a readable Parquet results file ({source}); pass a directory written by `pgtape replay --results DIR`",
        path.display()
    )]
    Parquet {
        path: PathBuf,
        source: parquet::errors::ParquetError,
    },
    #[error("{}: not a readable results file: {why}", path.display())]
    Schema { path: PathBuf, why: String },
    #[error("{0}")]
    Flag(String),
}

impl DiffError {
    fn parquet(path: &Path, source: parquet::errors::ParquetError) -> Self {
        DiffError::Parquet {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// What makes the verdict fail (exit code 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    /// Any divergence after noise cancellation.
    Divergence,
    /// Any fingerprint whose latency class is `degraded`.
    Regression,
    /// Never fail (report only).
    None,
}

impl FailOn {
    pub fn as_str(self) -> &'static str {
        match self {
            FailOn::Divergence => "divergence",
            FailOn::Regression => "regression",
            FailOn::None => "none",
        }
    }
}

/// The diff's flags, shared by `pgtape replay` and `pgtape report`.
#[derive(Debug, Clone, clap::Args)]
pub struct DiffArgs {
    /// Re-run each diverging read-only statement on both sides after the
    /// replay and show its first N differing rows (0: do not re-run).
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub show_rows: usize,
    /// Latency percentile compared per fingerprint (0 < P <= 100).
    #[arg(long, default_value_t = 95.0, value_name = "P")]
    pub latency_percentile: f64,
    /// A fingerprint is degraded when target/source latency at the percentile
    /// exceeds this ratio (improved below its inverse).
    #[arg(long, default_value_t = 1.2, value_name = "RATIO")]
    pub regression_threshold: f64,
    /// ...and the percentile moved by at least this many milliseconds.
    #[arg(long, default_value_t = 0.5, value_name = "MS")]
    pub regression_min_delta_ms: f64,
    /// Fingerprints executed fewer times per side cannot be evaluated.
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub min_executions: u64,
    /// What fails the verdict (exit code 1), comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "divergence,regression"
    )]
    pub fail_on: Vec<FailOn>,
    /// In a noisy fingerprint, value differences are divergences only when the
    /// target's difference rate is at least this multiple of the source's noise rate...
    #[arg(long, default_value_t = 2.0, value_name = "FACTOR")]
    pub noise_relative: f64,
    /// ...and exceeds it by at least this share of the fingerprint's statements.
    #[arg(long, default_value_t = 0.05, value_name = "SHARE")]
    pub noise_absolute: f64,
    /// Example statements kept per divergence class and fingerprint.
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub examples: usize,
    /// Fail the verdict when less than this percent of the statements were
    /// compared (the rest noise, not replayed or unmatched); 0 turns it off.
    #[arg(long, default_value = "95", value_name = "PERCENT", value_parser = coverage::parse_percent)]
    pub min_coverage: f64,
}

impl Default for DiffArgs {
    fn default() -> Self {
        DiffConfig::default().into()
    }
}

/// The validated diff configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct DiffConfig {
    pub show_rows: usize,
    pub latency_percentile: f64,
    pub regression_threshold: f64,
    pub regression_min_delta_ms: f64,
    pub min_executions: u64,
    pub fail_on: Vec<FailOn>,
    pub noise_relative: f64,
    pub noise_absolute: f64,
    pub examples: usize,
    /// Percent of statements compared below which the verdict fails (0: off).
    pub min_coverage: f64,
}

impl Default for DiffConfig {
    fn default() -> Self {
        DiffConfig {
            show_rows: 3,
            latency_percentile: 95.0,
            regression_threshold: 1.2,
            regression_min_delta_ms: 0.5,
            min_executions: 10,
            fail_on: vec![FailOn::Divergence, FailOn::Regression],
            noise_relative: 2.0,
            noise_absolute: 0.05,
            examples: 3,
            // A verdict that set aside more than one statement in twenty
            // says too little about the traffic to pass a migration.
            min_coverage: 95.0,
        }
    }
}

impl From<DiffConfig> for DiffArgs {
    fn from(c: DiffConfig) -> Self {
        DiffArgs {
            show_rows: c.show_rows,
            latency_percentile: c.latency_percentile,
            regression_threshold: c.regression_threshold,
            regression_min_delta_ms: c.regression_min_delta_ms,
            min_executions: c.min_executions,
            fail_on: c.fail_on,
            noise_relative: c.noise_relative,
            noise_absolute: c.noise_absolute,
            examples: c.examples,
            min_coverage: c.min_coverage,
        }
    }
}

impl DiffArgs {
    /// Validates the flags; errors name the flag and a valid value.
    pub fn config(&self) -> Result<DiffConfig, DiffError> {
        let bad = |m: &str| Err(DiffError::Flag(m.into()));
        if !(self.latency_percentile > 0.0 && self.latency_percentile <= 100.0) {
            return bad("--latency-percentile must be in (0, 100], e.g. --latency-percentile 95");
        }
        if !(self.regression_threshold >= 1.0 && self.regression_threshold.is_finite()) {
            return bad(
                "--regression-threshold must be a ratio >= 1, e.g. --regression-threshold 1.2",
            );
        }
        if self.regression_min_delta_ms.is_nan() || self.regression_min_delta_ms < 0.0 {
            return bad(
                "--regression-min-delta-ms must be >= 0, e.g. --regression-min-delta-ms 0.5",
            );
        }
        if self.noise_relative.is_nan() || self.noise_relative < 1.0 {
            return bad("--noise-relative must be >= 1, e.g. --noise-relative 2");
        }
        if !(0.0..=1.0).contains(&self.noise_absolute) {
            return bad("--noise-absolute must be a share in [0, 1], e.g. --noise-absolute 0.05");
        }
        let mut fail_on = self.fail_on.clone();
        if fail_on.contains(&FailOn::None) {
            fail_on.clear();
        }
        fail_on.dedup();
        Ok(DiffConfig {
            show_rows: self.show_rows,
            latency_percentile: self.latency_percentile,
            regression_threshold: self.regression_threshold,
            regression_min_delta_ms: self.regression_min_delta_ms,
            min_executions: self.min_executions,
            fail_on,
            noise_relative: self.noise_relative,
            noise_absolute: self.noise_absolute,
            examples: self.examples,
            min_coverage: self.min_coverage,
        })
    }
}

impl DiffConfig {
    pub fn thresholds(&self) -> latency::Thresholds {
        latency::Thresholds {
            percentile: self.latency_percentile,
            ratio: self.regression_threshold,
            min_delta_us: self.regression_min_delta_ms * 1000.0,
            min_executions: self.min_executions,
        }
    }

    pub fn noise(&self) -> noise::NoiseThresholds {
        noise::NoiseThresholds {
            relative: self.noise_relative,
            absolute: self.noise_absolute,
        }
    }
}

/// Diffs a results directory into a [`Verdict`]. With `evidence` (source and
/// target connections) and `show_rows > 0`, diverging read-only statements
/// are re-run on both sides for their first differing rows.
pub async fn run_diff(
    results_dir: &Path,
    cfg: &DiffConfig,
    evidence: Option<(&ConnOpts, &ConnOpts)>,
) -> Result<Verdict, DiffError> {
    let (v, details) = diff_files(results_dir, cfg)?;
    let mut v = v;
    if let Some((source, target)) = evidence {
        evidence::collect(&mut v, &details, source, target, &cfg.fail_on).await;
    }
    Ok(v)
}

/// [`run_diff`] for callers outside an async runtime.
pub fn run_diff_blocking(
    results_dir: &Path,
    cfg: &DiffConfig,
    evidence: Option<(&ConnOpts, &ConnOpts)>,
) -> Result<Verdict, DiffError> {
    if evidence.is_none() || cfg.show_rows == 0 {
        return Ok(diff_files(results_dir, cfg)?.0);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| DiffError::Flag(format!("cannot start a runtime: {e}")))?;
    rt.block_on(run_diff(results_dir, cfg, evidence))
}

type SourceDetails = std::collections::HashMap<load::Key, detail::Detail>;

fn diff_files(dir: &Path, cfg: &DiffConfig) -> Result<(Verdict, SourceDetails), DiffError> {
    let files = load::ResultsDir::open(dir)?;
    let mut joined = engine::join(&files, cfg.examples)?;
    for acc in joined.fingerprints.values_mut() {
        acc.settle(&cfg.noise());
    }
    let keys: HashSet<load::Key> = verdict::example_keys(&joined).into_iter().collect();
    let details = verdict::Details {
        source: detail::details(&files.source, &keys)?,
        target: detail::details(&files.target, &keys)?,
    };
    let v = verdict::build(dir.display().to_string(), &joined, cfg, &details);
    Ok((v, details.source))
}
