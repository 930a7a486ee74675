//! The admin console: a client that connects with database `pgtape` reaches
//! a small PostgreSQL-protocol server (the `pgwire` crate) instead of the
//! upstream, in the manner of pgbouncer's console:
//! `SHOW SESSIONS | CAPTURE | STATS | VERSION | HELP`, `PAUSE CAPTURE`,
//! `RESUME CAPTURE`.
//!
//! The session reads the StartupMessage itself, checks access, and hands the
//! stream to pgwire with the already-read bytes in its codec's read buffer,
//! so pgwire sees the startup as if it had read it. Access: the users of
//! `--admin-users`, or without that flag connections from loopback only.
//! The user name is not authenticated: expose the console only where the
//! listen address is trusted.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::BytesMut;
use futures_util::StreamExt;
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::query::SimpleQueryHandler;
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::store::PortalStore;
use pgwire::api::{
    ClientInfo, ClientPortalStore, DefaultClient, NoopHandler, PgWireConnectionState, Type,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireFrontendMessage;
use pgwire::tokio::server::{PgWireMessageServerCodec, process_error, process_message};
use tokio_util::codec::{Framed, FramedParts};

use crate::capture::CaptureInfo;
use crate::capture::event::TapCounters;
use crate::capture::live::RecorderLive;
use crate::wire::stream::Stream;

/// The database name that reaches the console.
pub const DATABASE: &str = "pgtape";

/// A recorder as the console sees it.
#[derive(Debug, Clone)]
pub struct CaptureView {
    pub info: CaptureInfo,
    pub dir: PathBuf,
    pub counters: Arc<TapCounters>,
    pub live: Arc<RecorderLive>,
}

impl CaptureView {
    pub fn of(recorder: &crate::capture::Recorder, dir: impl Into<PathBuf>) -> Self {
        CaptureView {
            info: recorder.info().clone(),
            dir: dir.into(),
            counters: recorder.counters().clone(),
            live: recorder.live().clone(),
        }
    }
}

/// One proxied session, for `SHOW SESSIONS`.
#[derive(Debug)]
pub struct SessionEntry {
    pub session_id: u64,
    pub user: String,
    pub database: String,
    pub application_name: String,
    pub client_addr: String,
    pub started_at_us: i64,
    /// Statements completed, counted by the session's tap.
    pub statements: AtomicU64,
}

/// What the console serves; shared by every session of one proxy.
#[derive(Debug, Default)]
pub struct Console {
    /// `--admin-users`; empty means loopback connections only.
    pub admin_users: Vec<String>,
    pub capture: Option<CaptureView>,
    /// Registered once at session start and removed at its end; never
    /// touched while a session forwards traffic.
    sessions: Mutex<HashMap<u64, Arc<SessionEntry>>>,
}

/// Removes its session from the console's list when dropped.
pub struct Registered<'a> {
    console: &'a Console,
    pub entry: Arc<SessionEntry>,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.console
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.entry.session_id);
    }
}

impl Console {
    pub fn new(admin_users: Vec<String>, capture: Option<CaptureView>) -> Self {
        Console {
            admin_users,
            capture,
            sessions: Mutex::default(),
        }
    }

    /// Why `user` connecting from `peer` may not use the console, if not.
    pub fn refuse(&self, user: &str, peer: &SocketAddr) -> Option<String> {
        if self.admin_users.is_empty() {
            return (!peer.ip().is_loopback()).then(|| {
                format!(
                    "pgtape admin console: connections from {} are not allowed; only loopback \
                     connections are, unless the proxy lists users with --admin-users",
                    peer.ip()
                )
            });
        }
        (!self.admin_users.iter().any(|u| u == user)).then(|| {
            format!(
                "pgtape admin console: user {user:?} is not an admin; add it to --admin-users \
                 (PGTAPE_ADMIN_USERS)"
            )
        })
    }

    pub fn register(&self, entry: SessionEntry) -> Registered<'_> {
        let entry = Arc::new(entry);
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(entry.session_id, entry.clone());
        Registered {
            console: self,
            entry,
        }
    }

    fn sessions(&self) -> Vec<Arc<SessionEntry>> {
        let mut v: Vec<_> = self
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        v.sort_by_key(|s| s.session_id);
        v
    }
}

/// Serves the console on `client` until it disconnects. `read` holds the
/// StartupMessage and whatever followed it.
pub async fn serve(client: Stream, peer: SocketAddr, read: BytesMut, console: Arc<Console>) {
    let handler = Arc::new(Admin { console });
    let noop = Arc::new(NoopHandler);
    let codec = PgWireMessageServerCodec::new(DefaultClient::new(peer, client.is_tls()));
    let mut parts = FramedParts::new::<pgwire::messages::PgWireBackendMessage>(client, codec);
    parts.read_buf = read;
    let mut socket = Framed::from_parts(parts);
    socket.set_state(PgWireConnectionState::AwaitingStartup);
    while let Some(Ok(msg)) = socket.next().await {
        if matches!(msg, PgWireFrontendMessage::Terminate(_)) {
            break;
        }
        let extended = msg.is_extended_query();
        let r = process_message(
            msg,
            &mut socket,
            handler.clone(),
            handler.clone(),
            noop.clone(),
            noop.clone(),
            noop.clone(),
        )
        .await;
        if let Err(e) = r {
            let fatal = e.is_fatal();
            if process_error(&mut socket, e, extended).await.is_err() || fatal {
                break;
            }
        }
    }
}

struct Admin {
    console: Arc<Console>,
}

#[async_trait]
impl NoopStartupHandler for Admin {}

#[async_trait]
impl SimpleQueryHandler for Admin {
    async fn do_query<C>(&self, _client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
    {
        let words: Vec<String> = query
            .trim()
            .trim_end_matches(';')
            .split_whitespace()
            .map(|w| w.to_ascii_uppercase())
            .collect();
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        let c = &self.console;
        let response = match words.as_slice() {
            [] => Response::EmptyQuery,
            ["SHOW", "SESSIONS"] => super::admin_show::sessions(&c.sessions()),
            ["SHOW", "CAPTURE"] => super::admin_show::capture(c.capture.as_ref()),
            ["SHOW", "STATS"] => super::admin_show::stats(c.capture.as_ref()),
            ["SHOW", "VERSION"] => table(
                &[("version", Type::TEXT)],
                vec![vec![Val::Text(format!(
                    "pgtape {}",
                    env!("CARGO_PKG_VERSION")
                ))]],
            ),
            ["SHOW", "HELP"] | ["HELP"] => table(
                &[("command", Type::TEXT)],
                COMMANDS
                    .iter()
                    .map(|c| vec![Val::Text(c.to_string())])
                    .collect(),
            ),
            ["PAUSE", "CAPTURE"] | ["RESUME", "CAPTURE"] => {
                let pause = words[0] == "PAUSE";
                let Some(cap) = &c.capture else {
                    return Err(user_error(
                        "55000",
                        "this proxy is not recording: start it with --capture DIR",
                    ));
                };
                let was = cap.counters.paused.swap(pause, Ordering::SeqCst);
                if was != pause {
                    tracing::info!(
                        paused = pause,
                        "capture {}",
                        if pause { "paused" } else { "resumed" }
                    );
                }
                Response::Execution(Tag::new(words[0]))
            }
            _ => {
                return Err(user_error(
                    "42601",
                    &format!(
                        "pgtape admin console: unknown command {:?}; try {}",
                        query.trim(),
                        COMMANDS.join(", ")
                    ),
                ));
            }
        };
        Ok(vec![response])
    }
}

const COMMANDS: &[&str] = &[
    "SHOW SESSIONS",
    "SHOW CAPTURE",
    "SHOW STATS",
    "SHOW VERSION",
    "PAUSE CAPTURE",
    "RESUME CAPTURE",
];

fn user_error(code: &str, message: &str) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        code.into(),
        message.into(),
    )))
}

/// One cell of a console result.
pub(super) enum Val {
    Int(i64),
    Float(f64),
    Text(String),
    Null,
}

/// A result set of `cols` (name, type: INT8, FLOAT8 or TEXT) and `rows`.
pub(super) fn table(cols: &[(&str, Type)], rows: Vec<Vec<Val>>) -> Response {
    let schema = Arc::new(
        cols.iter()
            .map(|(n, t)| FieldInfo::new(n.to_string(), None, None, t.clone(), FieldFormat::Text))
            .collect::<Vec<_>>(),
    );
    let mut encoded = Vec::with_capacity(rows.len());
    let mut enc = DataRowEncoder::new(schema.clone());
    'rows: for row in rows {
        for v in row {
            let r = match v {
                Val::Int(i) => enc.encode_field(&i),
                Val::Float(f) => enc.encode_field(&f),
                Val::Text(s) => enc.encode_field(&s),
                Val::Null => enc.encode_field(&None::<String>),
            };
            if let Err(e) = r {
                encoded.push(Err(e));
                break 'rows;
            }
        }
        encoded.push(Ok(enc.take_row()));
    }
    Response::Query(QueryResponse::new(
        schema,
        futures_util::stream::iter(encoded),
    ))
}
