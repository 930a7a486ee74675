//! The listener: accepts clients, runs each session on its own task, and on
//! shutdown stops accepting and waits (up to a grace period) for sessions to
//! finish. Sessions share nothing but the immutable configuration and the tap
//! channel.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::ProxyConfig;
use super::session;
use crate::workers::Spawner;

/// Serves `listener` on the current runtime until `shutdown` resolves, then
/// drains sessions for at most `grace`.
pub async fn serve(
    listener: TcpListener,
    cfg: Arc<ProxyConfig>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> std::io::Result<()> {
    serve_on(
        &Spawner::Ambient(tokio::runtime::Handle::current()),
        listener,
        cfg,
        shutdown,
        grace,
    )
    .await
}

/// As [`serve`], running each session where `spawner` puts it.
pub async fn serve_on(
    spawner: &Spawner,
    listener: TcpListener,
    cfg: Arc<ProxyConfig>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> std::io::Result<()> {
    // Every session holds a clone; recv() returns None once all are dropped.
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let cfg = cfg.clone();
                    let alive = alive_tx.clone();
                    spawner.spawn(tcp, move |tcp| async move {
                        session::serve(tcp, peer, cfg).await;
                        drop(alive);
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    drop(alive_tx);
    info!(grace = ?grace, "shutting down: no new connections, waiting for sessions");
    if tokio::time::timeout(grace, alive_rx.recv()).await.is_err() {
        warn!("sessions still open after the grace period; closing them");
    }
    Ok(())
}
