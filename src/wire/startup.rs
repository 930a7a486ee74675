//! The client's side of a connection's start: the SSLRequest exchange and
//! the TLS handshake that follows it, as libpq's `sslmode` asks. One helper
//! for the proxy's upstream connection, the replayer's client and the
//! health check's probe, so the request is written and the answer read in
//! one place.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::frame::SSL_REQUEST_CODE;
use super::stream::Stream;

/// TLS to a server, as libpq's `sslmode`: `--upstream-tls` for the proxy,
/// `?sslmode=` in the replayer's URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
}

/// Why a connection could not start as its [`SslMode`] asked. Each caller
/// words it for its own flag.
#[derive(Debug)]
pub enum StartError {
    /// Writing the request or reading the answer failed.
    Io(std::io::Error),
    /// No answer to the SSLRequest within the time given.
    NoAnswer,
    /// The server does not accept TLS and the mode is `require`.
    TlsRefused,
    /// The server accepted TLS and the handshake failed.
    Handshake(std::io::Error),
}

/// Sends an SSLRequest and returns the server's one-byte answer: `S` (go
/// ahead with TLS), `N` (plain), anything else is not PostgreSQL.
pub async fn ssl_request<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S) -> std::io::Result<u8> {
    let mut req = [0u8; 8];
    req[..4].copy_from_slice(&8u32.to_be_bytes());
    req[4..].copy_from_slice(&SSL_REQUEST_CODE.to_be_bytes());
    s.write_all(&req).await?;
    let mut answer = [0u8; 1];
    s.read_exact(&mut answer).await?;
    Ok(answer[0])
}

/// Starts TLS on `tcp` as `mode` asks: nothing for `disable`; otherwise an
/// SSLRequest (answered within `answer_within`, if given) and, when the
/// server accepts, a handshake with `config` for `host`. A server that
/// refuses is used in plain text unless the mode is `require`.
pub async fn start_tls(
    mut tcp: TcpStream,
    mode: SslMode,
    config: Arc<rustls::ClientConfig>,
    host: &str,
    answer_within: Option<Duration>,
) -> Result<Stream, StartError> {
    if mode == SslMode::Disable {
        return Ok(Stream::Tcp(tcp));
    }
    let answer = match answer_within {
        Some(t) => tokio::time::timeout(t, ssl_request(&mut tcp))
            .await
            .map_err(|_| StartError::NoAnswer)?,
        None => ssl_request(&mut tcp).await,
    }
    .map_err(StartError::Io)?;
    match (answer, mode) {
        (b'S', _) => {
            let connector = tokio_rustls::TlsConnector::from(config);
            let tls = connector
                .connect(super::tls::server_name(host), tcp)
                .await
                .map_err(StartError::Handshake)?;
            Ok(Stream::ClientTls(Box::new(tls)))
        }
        (_, SslMode::Require) => Err(StartError::TlsRefused),
        _ => Ok(Stream::Tcp(tcp)),
    }
}
