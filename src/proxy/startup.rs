//! The startup phase of a client connection, before anything reaches the
//! upstream: SSLRequest and GSSENCRequest answered (each at most once, as
//! PostgreSQL allows), a CancelRequest relayed, and the StartupMessage read.
//!
//! What must stay true: bytes the client sent behind its StartupMessage stay
//! in the caller's buffer (they are the session's first frames); nothing here
//! waits without a bound (the caller runs it under `--login-timeout`).

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::ProxyConfig;
use super::session::{SessionError, connect_upstream};
use crate::wire::frame::{
    CANCEL_REQUEST_CODE, GSSENC_REQUEST_CODE, SSL_REQUEST_CODE, peek_startup,
};
use crate::wire::stream::Stream;

/// How the startup phase ended.
pub enum Negotiated {
    /// A StartupMessage (protocol 3.x), whole.
    Startup(BytesMut),
    /// A CancelRequest, relayed; the connection has nothing more to do.
    Cancelled,
}

/// Reads one untagged startup-phase packet.
async fn read_packet(s: &mut Stream, buf: &mut BytesMut) -> Result<BytesMut, SessionError> {
    loop {
        if let Some(len) = peek_startup(buf)? {
            return Ok(buf.split_to(len));
        }
        if s.read_buf(buf).await? == 0 {
            return Err(SessionError::ClosedDuringStartup);
        }
    }
}

pub fn code_of(packet: &[u8]) -> u32 {
    u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]])
}

/// Runs the startup phase on `client` (upgraded to TLS in place when asked
/// and configured) until a StartupMessage or a CancelRequest.
pub async fn negotiate(
    client: &mut Stream,
    buf: &mut BytesMut,
    cfg: &ProxyConfig,
    session_id: u64,
) -> Result<Negotiated, SessionError> {
    // PostgreSQL answers one SSLRequest and one GSSENCRequest; a second is a
    // protocol violation (and no encryption request once TLS is up).
    let mut ssl_done = false;
    let mut gss_done = false;
    loop {
        let packet = read_packet(client, buf).await?;
        match code_of(&packet) {
            SSL_REQUEST_CODE if ssl_done => {
                return Err(SessionError::RepeatedRequest("SSLRequest"));
            }
            GSSENC_REQUEST_CODE if gss_done => {
                return Err(SessionError::RepeatedRequest("GSSENCRequest"));
            }
            SSL_REQUEST_CODE => {
                ssl_done = true;
                match (&cfg.tls, &*client) {
                    (Some(tls), Stream::Tcp(_)) => {
                        if !buf.is_empty() {
                            return Err(SessionError::DataAfterSslRequest);
                        }
                        client.write_all(b"S").await?;
                        let Stream::Tcp(tcp) = std::mem::replace(client, Stream::Taken) else {
                            unreachable!("checked above")
                        };
                        let acceptor = tokio_rustls::TlsAcceptor::from(tls.clone());
                        let tls = acceptor
                            .accept(tcp)
                            .await
                            .map_err(SessionError::ClientTls)?;
                        *client = Stream::ServerTls(Box::new(tls));
                        gss_done = true;
                    }
                    _ => client.write_all(b"N").await?,
                }
            }
            GSSENC_REQUEST_CODE => {
                gss_done = true;
                client.write_all(b"N").await?;
            }
            CANCEL_REQUEST_CODE => {
                // Relayed as is: the key belongs to the upstream backend, which
                // the client learnt from the BackendKeyData we passed through.
                let mut up = connect_upstream(cfg).await?;
                up.write_all(&packet).await?;
                let _ = up.shutdown().await;
                tracing::debug!(session_id, "cancel request forwarded");
                return Ok(Negotiated::Cancelled);
            }
            code if code >> 16 == 3 => return Ok(Negotiated::Startup(packet)),
            code => return Err(SessionError::Version((code >> 16) as u16, code as u16)),
        }
    }
}
