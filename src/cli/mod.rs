//! The command line (clap derive). Each command's arguments are validated
//! into its configuration before any I/O; errors name the flag and the fix.
//!
//! - [`replay`]: `pgtape replay`, the replay then the diff and its verdict.

use clap::{Parser, Subcommand};

pub mod replay;

use crate::logging::LogFormat;

/// The exit codes, documented in `--help` below.
pub use crate::process::exit;

#[derive(Debug, Parser)]
#[command(
    name = "pgtape",
    version,
    about = "Record PostgreSQL traffic at the wire level and replay it against a source and a target at once",
    after_help = "Exit codes: 0 success (the migration passes), 1 a verdict failed (divergence, regression \
                  or coverage below --min-coverage), \
                  2 bad input or a runtime error."
)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "PGTAPE_LOG_FORMAT")]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Transparent proxy in front of PostgreSQL that records every statement.
    Proxy(crate::proxy::ProxyArgs),
    /// Synthetic traffic: the analytics app or the order workflow (`workload setup` creates the schema).
    Workload(crate::workload::WorkloadArgs),
    /// The whole story on this machine: clusters, proxy, workload, replay, verdict.
    Demo(crate::demo::DemoArgs),
    /// Re-issue a capture against a source and a target database at once.
    Replay(replay::ReplayCommand),
    /// Summarise a capture: top fingerprints, latency percentiles, errors, slow statements.
    Report(crate::report::ReportArgs),
}

/// An error and its causes on one line, each said once: a message that
/// already shows its cause (`{path}: {source}`) is not followed by it again.
pub fn error_text(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{}: {source}", path)]
    struct Shows {
        path: String,
        source: std::io::Error,
    }

    // Issue 16, defect 8: "(os error 2): No such file or directory (os error 2)".
    #[test]
    fn error_text_repeated_a_cause_its_message_already_shows() {
        let io = || std::io::Error::from(std::io::ErrorKind::NotFound);
        let e = anyhow::Error::new(Shows {
            path: "/x".into(),
            source: io(),
        })
        .context("cannot read /x");
        assert_eq!(error_text(&e), format!("cannot read /x: /x: {}", io()));
        // A cause the message does not show is still given.
        let e = anyhow::Error::new(io()).context("cannot open the capture");
        assert_eq!(error_text(&e), format!("cannot open the capture: {}", io()));
    }
}
