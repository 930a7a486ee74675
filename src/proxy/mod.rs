//! `pgtape proxy`: a transparent PostgreSQL proxy with a statement tap.
//!
//! - [`server`]: listener, accept loop, graceful shutdown.
//! - [`startup`]: the startup phase: SSL/GSSENC requests, CancelRequest, StartupMessage.
//! - [`session`]: one connection: login deadline, upstream connection, the two pumps.
//! - [`pump`]: the forwarding loop of one direction.
//! - [`tap`]: pairs requests with replies and emits statement events.
//! - [`admin`]: the admin console (database `pgtape`), served with pgwire.
//! - [`metrics`]: the proxy's pre-registered metric handles (atomics on the hot path).

pub mod admin;
mod admin_show;
pub mod metrics;
pub mod pump;
pub mod server;
pub mod session;
pub mod startup;
pub mod tap;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

pub use server::serve;

use crate::capture::TapSender;
use crate::clock::parse_duration;
use crate::wire::frame::MAX_MESSAGE_LEN;
use crate::wire::startup::SslMode;

#[derive(Debug, clap::Args)]
pub struct ProxyArgs {
    /// Address to accept clients on.
    #[arg(long, default_value = "127.0.0.1:6432", env = "PGTAPE_LISTEN")]
    pub listen: String,
    /// The PostgreSQL server to forward to (host:port).
    #[arg(long, env = "PGTAPE_UPSTREAM")]
    pub upstream: String,
    /// PEM certificate presented to clients that ask for TLS (with --tls-key).
    #[arg(long, requires = "tls_key", env = "PGTAPE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert", env = "PGTAPE_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// TLS to the upstream: disable, prefer (use it if offered) or require.
    #[arg(long, value_enum, default_value_t = SslMode::Prefer, env = "PGTAPE_UPSTREAM_TLS")]
    pub upstream_tls: SslMode,
    /// CA certificates (PEM) to verify the upstream's certificate and host name;
    /// without it the upstream certificate is not verified (libpq's `require`).
    #[arg(long, env = "PGTAPE_UPSTREAM_CA")]
    pub upstream_ca: Option<PathBuf>,
    /// Give up connecting to the upstream after this long.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// Close a client that has not finished its startup and authentication
    /// (up to its first ReadyForQuery) within this long, as PostgreSQL's
    /// `authentication_timeout` does.
    #[arg(long, default_value = "60s", value_parser = parse_duration, env = "PGTAPE_LOGIN_TIMEOUT")]
    pub login_timeout: Duration,
    /// On SIGTERM/SIGINT, let sessions finish for this long before exiting.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    /// Threads forwarding traffic, each serving its own share of the sessions
    /// (default: half the cores, at least one; the kernel's network work and
    /// the recorder need the rest).
    #[arg(long, env = "PGTAPE_THREADS")]
    pub threads: Option<usize>,
    /// Largest message accepted from a client, in bytes (PostgreSQL's own limit by default).
    #[arg(long, default_value_t = MAX_MESSAGE_LEN)]
    pub max_message_size: usize,
    /// Serve Prometheus metrics at /metrics and readiness at /health on this address.
    #[arg(long, env = "PGTAPE_METRICS")]
    pub metrics: Option<SocketAddr>,
    /// Users allowed on the admin console (database `pgtape`), comma-separated;
    /// without it only loopback connections are.
    #[arg(long, value_delimiter = ',', env = "PGTAPE_ADMIN_USERS")]
    pub admin_users: Vec<String>,
    #[command(flatten)]
    pub capture: crate::capture::CaptureArgs,
}

/// Everything a session needs, validated once at start.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub upstream: String,
    pub upstream_tls: SslMode,
    pub upstream_tls_config: Arc<rustls::ClientConfig>,
    /// Client-side TLS, when a certificate was given.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub max_message: usize,
    pub connect_timeout: Duration,
    /// Startup and authentication must end (first ReadyForQuery) within this.
    pub login_timeout: Duration,
    /// Where statement events go; `None` taps nothing out.
    pub tap: Option<TapSender>,
    /// Pre-registered metric handles (no-ops without `--metrics`).
    pub metrics: Arc<self::metrics::ProxyMetrics>,
    /// The admin console's state: access list, capture, session list.
    pub console: Arc<admin::Console>,
}

impl ProxyConfig {
    /// A plain configuration for `upstream` (tests, demo).
    pub fn new(upstream: impl Into<String>) -> Self {
        ProxyConfig {
            upstream: upstream.into(),
            upstream_tls: SslMode::Prefer,
            upstream_tls_config: crate::wire::tls::client_config_insecure(),
            tls: None,
            max_message: MAX_MESSAGE_LEN,
            connect_timeout: Duration::from_secs(5),
            login_timeout: Duration::from_secs(60),
            tap: None,
            metrics: Arc::new(self::metrics::ProxyMetrics::noop()),
            console: Arc::new(admin::Console::default()),
        }
    }

    /// Validates every flag before any I/O (name lookups aside): a proxy
    /// that cannot work refuses to start, naming the flag and the fix.
    pub fn from_args(args: &ProxyArgs) -> anyhow::Result<Self> {
        let mut cfg = ProxyConfig::new(args.upstream.clone());
        check_address("--upstream", &args.upstream, 5432, false)?;
        check_address("--listen", &args.listen, 6432, true)?;
        args.capture.check().map_err(anyhow::Error::msg)?;
        cfg.upstream_tls = args.upstream_tls;
        if let Some(ca) = &args.upstream_ca {
            cfg.upstream_tls_config = crate::wire::tls::client_config_verified(ca)?;
        }
        if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
            cfg.tls = Some(crate::wire::tls::server_config(cert, key)?);
        }
        if args.max_message_size < 1024 || args.max_message_size > MAX_MESSAGE_LEN {
            anyhow::bail!("--max-message-size must be between 1024 and {MAX_MESSAGE_LEN} bytes");
        }
        cfg.max_message = args.max_message_size;
        cfg.connect_timeout = args.connect_timeout;
        if args.login_timeout.is_zero() {
            anyhow::bail!("--login-timeout must be more than 0, e.g. --login-timeout 60s");
        }
        cfg.login_timeout = args.login_timeout;
        Ok(cfg)
    }
}

/// Checks a `host:port` flag: a port (0 only where `zero_ok`, to let the
/// system pick), and a host that resolves.
fn check_address(flag: &str, value: &str, example: u16, zero_ok: bool) -> anyhow::Result<()> {
    let Some((host, port)) = value.rsplit_once(':') else {
        anyhow::bail!("{flag} {value:?} needs a port, e.g. {flag} {value}:{example}");
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host_or = if host.is_empty() { "127.0.0.1" } else { host };
    let port = match port.parse::<u16>() {
        Ok(p) if p > 0 || zero_ok => p,
        _ => anyhow::bail!(
            "{flag} {value:?}: {port:?} is not a port (1 to 65535), e.g. {flag} {host_or}:{example}"
        ),
    };
    if host.is_empty() {
        anyhow::bail!("{flag} {value:?} needs a host, e.g. {flag} 127.0.0.1:{port}");
    }
    use std::net::ToSocketAddrs;
    match (host, port).to_socket_addrs().map(|mut a| a.next()) {
        Ok(Some(_)) => Ok(()),
        Ok(None) => anyhow::bail!("{flag} {value:?}: host {host:?} has no address; check the name"),
        Err(e) => anyhow::bail!(
            "{flag} {value:?}: cannot resolve host {host:?} ({e}); check the name, or give an IP address"
        ),
    }
}

/// Runs `pgtape proxy` until SIGTERM or SIGINT.
pub fn main(args: ProxyArgs) -> anyhow::Result<i32> {
    let mut cfg = ProxyConfig::from_args(&args)?;
    let threads = match args.threads {
        Some(0) => anyhow::bail!("--threads must be at least 1"),
        Some(n) => n,
        None => crate::workers::default_threads(),
    };
    let workers = crate::workers::Spawner::Pool(
        crate::workers::WorkerPool::start(threads, "pgtape-fwd")
            .context("cannot start the forwarding threads")?,
    );
    // The acceptor, the metrics endpoint and the shutdown signal.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // From here a SIGTERM ends the proxy cleanly, even one sent while it
    // converts leftovers or binds its ports.
    let shutdown = {
        let _in_runtime = rt.enter();
        crate::process::shutdown_signal_from_now()
    };
    // Started before the listener so leftovers of a killed run are converted
    // before a client can connect; closed after `serve` so the open segment
    // is converted on SIGTERM.
    let created_dir = args.capture.capture.clone().filter(|d| !d.exists());
    let recorder = match args.capture.recorder_config(&cfg.upstream) {
        Some(rc) => {
            let dir = rc.dir.clone();
            let r = crate::capture::Recorder::start(rc).with_context(|| {
                format!("cannot start recording to --capture {}", dir.display())
            })?;
            tracing::info!(capture = %dir.display(), capture_id = %r.info().capture_id, "recording");
            cfg.tap = Some(r.sender());
            Some(r)
        }
        None => None,
    };
    let exporter = args.metrics.map(|_| crate::metrics::Exporter::new("proxy"));
    let bound = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on --listen {}; pick a free address or stop what holds it",
                    args.listen
                )
            })?;
        if let (Some(exp), Some(addr)) = (&exporter, args.metrics) {
            exp.serve(addr).await?;
        }
        Ok::<_, anyhow::Error>(listener)
    });
    let listener = match bound {
        Ok(l) => l,
        Err(e) => {
            // A proxy that never ran leaves no empty capture directory.
            if let Some(r) = recorder {
                let _ = r.close();
            }
            if let Some(dir) = created_dir {
                let _ = std::fs::remove_dir(dir);
            }
            return Err(e);
        }
    };
    let capture = recorder
        .as_ref()
        .zip(args.capture.capture.as_ref())
        .map(|(r, dir)| admin::CaptureView::of(r, dir));
    cfg.console = Arc::new(admin::Console::new(
        args.admin_users.clone(),
        capture.clone(),
    ));
    if let Some(exp) = &exporter {
        let m = Arc::new(self::metrics::ProxyMetrics::new(exp));
        cfg.metrics = m.clone();
        if let Some(c) = capture {
            self::metrics::watch_capture(exp, m, c);
        }
    }
    rt.block_on(async {
        if let Some(exp) = &exporter {
            exp.health
                .probe_postgres("upstream", cfg.upstream.clone(), Duration::from_secs(2));
        }
        tracing::info!(listen = %listener.local_addr()?, upstream = %cfg.upstream, threads, "proxy ready");
        server::serve_on(
            &workers,
            listener,
            Arc::new(cfg),
            shutdown,
            args.shutdown_grace,
        )
        .await?;
        Ok::<_, anyhow::Error>(())
    })?;
    // Closes what outlived the grace period before the capture is sealed.
    drop(workers);
    if let Some(r) = recorder {
        let stats = r.close()?;
        tracing::info!(
            events = stats.events,
            rows = stats.rows,
            dropped = stats.dropped,
            files = stats.files.len(),
            "capture closed"
        );
    }
    Ok(crate::process::exit::OK)
}

#[cfg(test)]
mod tap_copy_tests;
#[cfg(test)]
mod tap_tests;
