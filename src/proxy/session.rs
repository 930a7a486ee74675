//! One client connection: the startup phase ([`super::startup`]), the
//! upstream connection, then the two pumps until either side ends.
//!
//! What must stay true: everything up to the first ReadyForQuery (startup,
//! TLS handshake, authentication relayed) ends within `--login-timeout`, as
//! PostgreSQL's `authentication_timeout` bounds it, so a socket that sends
//! nothing, or half a startup packet, cannot hold a connection forever.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::ProxyConfig;
use super::admin::{self, SessionEntry};
use super::pump::{End, PumpCtx, pump};
use super::startup::{Negotiated, code_of, negotiate};
use super::tap::Tap;
use crate::capture::event::ConnectEvent;
use crate::clock::now_us;
use crate::wire::frame::{Direction, FrameError};
use crate::wire::messages::{error_response, startup_params};
use crate::wire::startup::{StartError, start_tls};
use crate::wire::stream::Stream;

static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("client sent a malformed startup packet: {0}")]
    Startup(#[from] FrameError),
    #[error("client asked for unsupported protocol version {0}.{1}")]
    Version(u16, u16),
    #[error("client sent data after SSLRequest before the TLS handshake")]
    DataAfterSslRequest,
    #[error("client sent a second {0}; it may be sent once, before the StartupMessage")]
    RepeatedRequest(&'static str),
    #[error(
        "client did not finish its login within {0:?}; raise --login-timeout if clients are that slow"
    )]
    LoginTimeout(Duration),
    #[error("client closed the connection during startup")]
    ClosedDuringStartup,
    #[error("TLS handshake with client failed: {0}")]
    ClientTls(std::io::Error),
    #[error(
        "cannot reach upstream {upstream}: {reason}; check --upstream and that the server is running"
    )]
    Upstream { upstream: String, reason: String },
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl SessionError {
    /// The ErrorResponse to send the client, if it can still read one.
    fn to_client(&self) -> Option<Vec<u8>> {
        let text = format!("pgtape: {self}");
        match self {
            SessionError::Startup(_)
            | SessionError::Version(..)
            | SessionError::DataAfterSslRequest
            | SessionError::RepeatedRequest(_)
            | SessionError::LoginTimeout(_) => Some(error_response("FATAL", "08P01", &text)),
            SessionError::Upstream { .. } => Some(error_response("FATAL", "08001", &text)),
            _ => None,
        }
    }
}

/// Serves one client connection to the end.
pub async fn serve(tcp: TcpStream, peer: SocketAddr, cfg: Arc<ProxyConfig>) {
    let _ = tcp.set_nodelay(true);
    let mut client = Stream::Tcp(tcp);
    let session_id = NEXT_SESSION.fetch_add(1, Ordering::Relaxed);
    let m = &cfg.metrics;
    m.client_connections_total.increment(1);
    m.client_connections.increment(1.0);
    let login_deadline = Instant::now() + cfg.login_timeout;
    let result = run(&mut client, peer, session_id, &cfg, login_deadline).await;
    m.client_connections.decrement(1.0);
    if let Err(e) = result {
        match &e {
            SessionError::ClosedDuringStartup => debug!(session_id, %peer, "{e}"),
            _ => warn!(session_id, %peer, "{e}"),
        }
        if let Some(frame) = e.to_client() {
            let _ = client.write_all(&frame).await;
            let _ = client.shutdown().await;
        }
    }
}

async fn run(
    client: &mut Stream,
    peer: SocketAddr,
    session_id: u64,
    cfg: &ProxyConfig,
    login_deadline: Instant,
) -> Result<(), SessionError> {
    let mut buf = BytesMut::with_capacity(1024);
    let negotiated =
        tokio::time::timeout_at(login_deadline, negotiate(client, &mut buf, cfg, session_id))
            .await
            .map_err(|_| SessionError::LoginTimeout(cfg.login_timeout))??;
    let startup = match negotiated {
        Negotiated::Startup(packet) => packet,
        Negotiated::Cancelled => return Ok(()),
    };
    let code = code_of(&startup);
    let params = startup_params(&startup[8..]);
    let get = |k: &str| {
        params
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let user = get("user");
    let database = match get("database") {
        d if d.is_empty() => user.clone(),
        d => d,
    };
    let connect = ConnectEvent {
        session_id,
        at_us: now_us(),
        application_name: get("application_name"),
        user,
        database,
        client_addr: peer.to_string(),
        protocol_version: format!("{}.{}", code >> 16, code & 0xffff),
        startup_params: params,
    };
    if connect.database == admin::DATABASE {
        if let Some(why) = cfg.console.refuse(&connect.user, &peer) {
            cfg.metrics.admin_refused.increment(1);
            warn!(session_id, %peer, user = %connect.user, "admin console refused");
            client
                .write_all(&error_response("FATAL", "28000", &why))
                .await?;
            let _ = client.shutdown().await;
            return Ok(());
        }
        cfg.metrics.admin_accepted.increment(1);
        info!(session_id, %peer, user = %connect.user, "admin console session");
        let mut read = startup;
        read.unsplit(buf);
        let stream = std::mem::replace(client, Stream::Taken);
        admin::serve(stream, peer, read, cfg.console.clone()).await;
        return Ok(());
    }
    let mut upstream = match connect_upstream(cfg).await {
        Ok(u) => u,
        Err(e) => {
            cfg.metrics.upstream_connect_errors.increment(1);
            return Err(e);
        }
    };
    cfg.metrics.upstream_connections.increment(1.0);
    let _upstream_open = Decrement(&cfg.metrics.upstream_connections);
    upstream.write_all(&startup).await?;
    debug!(session_id, %peer, user = %connect.user, database = %connect.database, "session started");
    let strip_sasl_plus = client.is_tls() || upstream.is_tls();
    let registered = cfg.console.register(SessionEntry {
        session_id,
        user: connect.user.clone(),
        database: connect.database.clone(),
        application_name: connect.application_name.clone(),
        client_addr: connect.client_addr.clone(),
        started_at_us: connect.at_us,
        statements: AtomicU64::new(0),
    });
    let tap = Tap::new(session_id, cfg.tap.clone(), connect)
        .observed(cfg.metrics.clone(), registered.entry.clone());
    let tap = Mutex::new(tap);

    let client_stream = std::mem::replace(client, Stream::Taken);
    let (mut cr, mut cw) = client_stream.split();
    let (mut ur, mut uw) = upstream.split();
    // Whatever the client sent after its StartupMessage goes first.
    let mut up_buf = buf;
    let mut down_buf = BytesMut::with_capacity(16 * 1024);
    let (stop_up_tx, mut stop_up) = oneshot::channel();
    let (stop_down_tx, mut stop_down) = oneshot::channel();
    let up_ctx = PumpCtx {
        dir: Direction::Frontend,
        tap: &tap,
        max_message: cfg.max_message,
        strip_sasl_plus: false,
        bytes: &cfg.metrics.bytes_from_client,
    };
    let down_ctx = PumpCtx {
        dir: Direction::Backend,
        tap: &tap,
        max_message: cfg.max_message,
        strip_sasl_plus,
        bytes: &cfg.metrics.bytes_from_upstream,
    };

    let up = async {
        let end = pump(&mut cr, &mut uw, &mut up_buf, &up_ctx, &mut stop_up).await;
        match &end {
            End::Malformed(e) => {
                let text = format!("pgtape: invalid message from client: {e}");
                let _ = stop_down_tx.send(Some(error_response("FATAL", "08P01", &text)));
                let _ = uw.shutdown().await;
            }
            End::Io(_) => {
                let _ = stop_down_tx.send(None);
            }
            // The client closed. With nothing left to answer (it sent
            // Terminate, or just left) the session ends now, so its
            // disconnect is not recorded after the next session's connect;
            // replies still owed to a half-closed client are awaited.
            End::Eof => {
                let mut tap = tap.lock().unwrap_or_else(|e| e.into_inner());
                if !tap.awaits_replies() {
                    tap.disconnect(String::new(), now_us());
                }
            }
            End::Stopped => {}
        }
        end
    };
    let down = async {
        let end = pump(&mut ur, &mut cw, &mut down_buf, &down_ctx, &mut stop_down).await;
        let _ = stop_up_tx.send(None);
        end
    };
    // Authentication is relayed by the pumps: the login deadline holds until
    // the tap has seen the first ReadyForQuery.
    let login = async {
        tokio::time::sleep_until(login_deadline).await;
        if tap.lock().unwrap_or_else(|e| e.into_inner()).is_ready() {
            std::future::pending::<()>().await;
        }
    };
    let ends = tokio::select! {
        biased;
        ends = async { tokio::join!(up, down) } => Some(ends),
        () = login => None,
    };
    let Some((up_end, down_end)) = ends else {
        let e = SessionError::LoginTimeout(cfg.login_timeout);
        warn!(session_id, %peer, "{e}");
        if let Some(frame) = e.to_client() {
            let _ = cw.write_all(&frame).await;
        }
        let _ = cw.shutdown().await;
        let _ = uw.shutdown().await;
        return Ok(());
    };
    let reason = match (&up_end, &down_end) {
        (End::Malformed(e), _) => format!("malformed client message: {e}"),
        (End::Io(e), _) => format!("client I/O error: {e}"),
        (_, End::Io(e)) => format!("upstream I/O error: {e}"),
        (End::Stopped, End::Eof) => "upstream closed the connection".to_string(),
        _ => String::new(),
    };
    let mut tap = tap.into_inner().unwrap_or_else(|e| e.into_inner());
    tap.disconnect(reason.clone(), now_us());
    if let End::Malformed(_) = up_end {
        warn!(session_id, %peer, "{reason}");
    }
    debug!(session_id, statements = tap.statements_seen, reason = %reason, "session ended");
    Ok(())
}

/// Decrements a gauge when dropped (an open connection closing).
struct Decrement<'a>(&'a metrics::Gauge);

impl Drop for Decrement<'_> {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// Opens the upstream connection, negotiating TLS as `--upstream-tls` says.
pub(super) async fn connect_upstream(cfg: &ProxyConfig) -> Result<Stream, SessionError> {
    let fail = |reason: String| SessionError::Upstream {
        upstream: cfg.upstream.clone(),
        reason,
    };
    let tcp =
        match tokio::time::timeout(cfg.connect_timeout, TcpStream::connect(&cfg.upstream)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(fail(e.to_string())),
            Err(_) => return Err(fail(format!("no answer within {:?}", cfg.connect_timeout))),
        };
    let _ = tcp.set_nodelay(true);
    let host = cfg
        .upstream
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or(&cfg.upstream);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let config = cfg.upstream_tls_config.clone();
    start_tls(
        tcp,
        cfg.upstream_tls,
        config,
        host,
        Some(Duration::from_secs(10)),
    )
    .await
    .map_err(|e| match e {
        StartError::Io(e) => fail(e.to_string()),
        StartError::NoAnswer => fail("no answer to SSLRequest".into()),
        StartError::Handshake(e) => fail(format!("TLS handshake failed: {e}")),
        StartError::TlsRefused => {
            fail("server does not accept TLS and --upstream-tls is require".into())
        }
    })
}
