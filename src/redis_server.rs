//! Throw-away `redis-server` processes: a free port on 127.0.0.1, a temp
//! working directory, no persistence (`--save "" --appendonly no`). Used by the
//! workload tests and by `pgtape demo`; the process is killed and its
//! directory removed on drop.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum RedisServerError {
    #[error(
        "cannot run redis-server ({0}); install it, e.g. `apt-get install redis-server` on Debian or Ubuntu"
    )]
    NotInstalled(std::io::Error),
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("redis-server on port {port} did not answer PING within {waited:?}: {detail}")]
    NotReady {
        port: u16,
        waited: Duration,
        detail: String,
    },
}

/// A running throw-away Redis.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    dir: PathBuf,
    port: u16,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(63790)
}

/// One `PING` over a fresh socket; `Ok` once the server answers `+PONG`.
fn ping(port: u16) -> std::io::Result<()> {
    let mut s = TcpStream::connect_timeout(
        &format!("127.0.0.1:{port}")
            .parse()
            .expect("literal address"),
        Duration::from_millis(200),
    )?;
    s.set_read_timeout(Some(Duration::from_millis(500)))?;
    s.write_all(b"PING\r\n")?;
    let mut buf = [0u8; 16];
    let n = s.read(&mut buf)?;
    if buf[..n].starts_with(b"+PONG") {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "unexpected reply {:?}",
            String::from_utf8_lossy(&buf[..n])
        )))
    }
}

impl RedisServer {
    /// Starts `redis-server` on a free port and waits until it answers PING.
    pub fn start() -> Result<RedisServer, RedisServerError> {
        use rand::Rng;
        let tag: u64 = rand::rng().random();
        let dir = std::env::temp_dir().join(format!("pgtape-redis-{tag:016x}"));
        std::fs::create_dir_all(&dir).map_err(|source| RedisServerError::Io {
            path: dir.clone(),
            source,
        })?;
        let mut last = String::new();
        // Another process may take the port between the probe and the bind.
        for _ in 0..3 {
            let port = free_port();
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
                .arg("--dir")
                .arg(&dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(RedisServerError::NotInstalled)?;
            let mut server = RedisServer {
                child: Some(child),
                dir: dir.clone(),
                port,
            };
            match server.wait_ready(Duration::from_secs(5)) {
                Ok(()) => return Ok(server),
                Err(e) => {
                    last = e.to_string();
                    server.kill();
                }
            }
        }
        Err(RedisServerError::NotReady {
            port: 0,
            waited: Duration::from_secs(15),
            detail: last,
        })
    }

    /// Readiness is polled: redis-server has no "ready" signal we can wait on.
    fn wait_ready(&mut self, limit: Duration) -> Result<(), RedisServerError> {
        let start = Instant::now();
        loop {
            let err = match ping(self.port) {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || start.elapsed() > limit {
                return Err(RedisServerError::NotReady {
                    port: self.port,
                    waited: start.elapsed(),
                    detail: match exited {
                        Some(status) => format!("redis-server exited with {status}"),
                        None => err.to_string(),
                    },
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's process id (benchmarks read its CPU time).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the server now (tests of the Redis-down fallback).
    pub fn stop(&mut self) {
        self.kill();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
