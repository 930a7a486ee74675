//! The command line (clap derive). Each command's arguments are validated
//! into its configuration before any I/O; errors name the flag and the fix.

use clap::{Parser, Subcommand};

use crate::logging::LogFormat;

/// Exit codes, shared by every command.
pub mod exit {
    /// Success; for verdicts, the migration passes.
    pub const OK: i32 = 0;
    /// A verdict failed: a divergence or a latency regression over the threshold.
    pub const VERDICT_FAILED: i32 = 1;
    /// Bad input or a runtime error.
    pub const ERROR: i32 = 2;
}

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
    Replay(crate::replay::ReplayArgs),
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

/// Parses `500ms`, `30s`, `5m`, `1h` or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(
        s.find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len()),
    );
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: use e.g. 500ms, 30s, 5m, 1h"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "" | "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("invalid duration unit in {s:?}: use ms, s, m or h")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("invalid duration {s:?}"));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    shutdown_signal_from_now().await
}

/// Installs the SIGTERM and SIGINT handlers at once (call it inside a
/// runtime), so a signal that arrives before the returned future is first
/// polled (during start-up) still ends the command cleanly.
pub fn shutdown_signal_from_now() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
    }
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
