//! What every command shares with the process it runs in: the exit codes
//! and the shutdown signals. A foundation, so that the layer that knows a
//! verdict or a stop can say how the process ends without reaching up to
//! the command line.

/// Exit codes, shared by every command.
pub mod exit {
    /// Success; for verdicts, the migration passes.
    pub const OK: i32 = 0;
    /// A verdict failed: a divergence or a latency regression over the threshold.
    pub const VERDICT_FAILED: i32 = 1;
    /// Bad input or a runtime error.
    pub const ERROR: i32 = 2;
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
