//! The client's startup phase: TCP, TLS per sslmode, the StartupMessage with
//! the captured parameters, and authentication (trust, cleartext, md5,
//! SCRAM-SHA-256 with postgres-protocol's ScramSha256).

use std::time::Duration;

use bytes::BytesMut;
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use postgres_protocol::message::frontend;
use thiserror::Error;
use tokio::net::TcpStream;

use super::Client;
use crate::replay::conn_opts::ConnOpts;
use crate::wire::messages::{Reader, parse_error, sasl_mechanisms};
use crate::wire::startup::{StartError, start_tls};
use crate::wire::stream::Stream;

#[derive(Debug, Error)]
pub enum ConnectError {
    #[error("cannot connect to {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{url} rejected the connection: {code} {message}")]
    Rejected {
        url: String,
        code: String,
        message: String,
    },
    #[error("{url} asked for a password; put it in the URL (postgres://user:password@host/db)")]
    NoPassword { url: String },
    #[error("{url}: {reason}")]
    Protocol { url: String, reason: String },
}

impl Client {
    /// Connects and authenticates; `params` are extra startup parameters
    /// (the captured ones: client_encoding, DateStyle, application_name, ...).
    pub async fn connect(
        opts: &ConnOpts,
        user: &str,
        params: &[(String, String)],
    ) -> Result<Client, ConnectError> {
        let url = opts.display();
        let unreachable = |reason: String| ConnectError::Unreachable {
            url: url.clone(),
            reason,
        };
        let tcp =
            match tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(opts.addr()))
                .await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return Err(unreachable(e.to_string())),
                Err(_) => return Err(unreachable("no answer within 10 s".into())),
            };
        let _ = tcp.set_nodelay(true);
        let stream = negotiate_tls(tcp, opts).await.map_err(unreachable)?;
        let mut c = Client {
            stream,
            buf: BytesMut::with_capacity(16 * 1024),
            out: BytesMut::new(),
            prepared: Default::default(),
            described: Default::default(),
            last_tag: Default::default(),
            last_columns: Default::default(),
            pid: 0,
            snapshot_hook: None,
            type_names: Default::default(),
            scratch: Vec::new(),
        };
        let mut startup: Vec<(&str, &str)> = vec![("user", user), ("database", &opts.database)];
        for (k, v) in params {
            if !matches!(k.as_str(), "user" | "database" | "replication") {
                startup.push((k, v));
            }
        }
        if let Some(app) = &opts.application_name {
            startup.retain(|(k, _)| *k != "application_name");
            startup.push(("application_name", app));
        }
        frontend::startup_message(startup.iter().copied(), &mut c.out)
            .map_err(|e| unreachable(e.to_string()))?;
        c.flush_out()
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        c.authenticate(opts, user).await?;
        Ok(c)
    }

    async fn authenticate(&mut self, opts: &ConnOpts, user: &str) -> Result<(), ConnectError> {
        let url = opts.display();
        let proto = |reason: String| ConnectError::Protocol {
            url: url.clone(),
            reason,
        };
        let password = || {
            opts.password
                .clone()
                .ok_or_else(|| ConnectError::NoPassword { url: url.clone() })
        };
        let mut scram: Option<ScramSha256> = None;
        loop {
            let (tag, body) = self.read_frame().await.map_err(|e| proto(e.to_string()))?;
            match tag {
                b'R' => {
                    let mut r = Reader::new(&body, "Authentication");
                    let code = r.i32().map_err(|e| proto(e.to_string()))?;
                    match code {
                        0 => {}
                        3 => frontend::password_message(password()?.as_bytes(), &mut self.out)
                            .map_err(|e| proto(e.to_string()))?,
                        5 => {
                            let salt: [u8; 4] = r
                                .bytes(4)
                                .map_err(|e| proto(e.to_string()))?
                                .try_into()
                                .expect("4 bytes");
                            let hash = md5_hash(user.as_bytes(), password()?.as_bytes(), salt);
                            frontend::password_message(hash.as_bytes(), &mut self.out)
                                .map_err(|e| proto(e.to_string()))?;
                        }
                        10 => {
                            if !sasl_mechanisms(&body).contains(&&b"SCRAM-SHA-256"[..]) {
                                return Err(proto(
                                    "server offers no SASL mechanism pgtape supports".into(),
                                ));
                            }
                            let s = ScramSha256::new(
                                password()?.as_bytes(),
                                ChannelBinding::unsupported(),
                            );
                            frontend::sasl_initial_response(
                                "SCRAM-SHA-256",
                                s.message(),
                                &mut self.out,
                            )
                            .map_err(|e| proto(e.to_string()))?;
                            scram = Some(s);
                        }
                        11 => {
                            let s = scram
                                .as_mut()
                                .ok_or_else(|| proto("SASLContinue without SASL".into()))?;
                            s.update(r.rest()).map_err(|e| proto(e.to_string()))?;
                            frontend::sasl_response(s.message(), &mut self.out)
                                .map_err(|e| proto(e.to_string()))?;
                        }
                        12 => {
                            let s = scram
                                .as_mut()
                                .ok_or_else(|| proto("SASLFinal without SASL".into()))?;
                            s.finish(r.rest())
                                .map_err(|e| proto(format!("server signature: {e}")))?;
                        }
                        other => {
                            return Err(proto(format!(
                                "unsupported authentication request {other}"
                            )));
                        }
                    }
                    self.flush_out().await.map_err(|e| proto(e.to_string()))?;
                }
                b'E' => {
                    let f = parse_error(&body).map_err(|e| proto(e.to_string()))?;
                    return Err(ConnectError::Rejected {
                        url,
                        code: String::from_utf8_lossy(f.code).into_owned(),
                        message: String::from_utf8_lossy(f.message).into_owned(),
                    });
                }
                b'Z' => return Ok(()),
                b'K' => {
                    self.pid = Reader::new(&body, "BackendKeyData")
                        .i32()
                        .map_err(|e| proto(e.to_string()))?;
                }
                _ => {} // ParameterStatus, NegotiateProtocolVersion, notices
            }
        }
    }
}

async fn negotiate_tls(tcp: TcpStream, opts: &ConnOpts) -> Result<Stream, String> {
    let config = crate::wire::tls::client_config_insecure();
    start_tls(tcp, opts.sslmode, config, &opts.host, None)
        .await
        .map_err(|e| match e {
            StartError::Io(e) => e.to_string(),
            StartError::NoAnswer => "no answer to SSLRequest".into(),
            StartError::Handshake(e) => format!("TLS handshake failed: {e}"),
            StartError::TlsRefused => "the server does not accept TLS and sslmode=require".into(),
        })
}
