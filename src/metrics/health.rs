//! Readiness: named checks evaluated when `/health` is asked. A check is a
//! closure (the recorder thread is alive) or the last result of a background
//! probe (the upstream answers).

use std::sync::{Arc, Mutex};
use std::time::Duration;

type Check = Box<dyn Fn() -> Result<(), String> + Send + Sync>;

/// The checks of one process; ready when all pass.
#[derive(Default)]
pub struct Health {
    checks: Mutex<Vec<(String, Check)>>,
}

impl Health {
    /// Adds a check; `name` prefixes its failure reason.
    pub fn check(&self, name: &str, f: impl Fn() -> Result<(), String> + Send + Sync + 'static) {
        self.checks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((name.to_string(), Box::new(f)));
    }

    /// `Ok` when ready, else one reason per failing check.
    pub fn status(&self) -> Result<(), Vec<String>> {
        let checks = self.checks.lock().unwrap_or_else(|e| e.into_inner());
        let failed: Vec<String> = checks
            .iter()
            .filter_map(|(name, f)| f().err().map(|why| format!("{name}: {why}")))
            .collect();
        if failed.is_empty() {
            Ok(())
        } else {
            Err(failed)
        }
    }

    /// Probes the PostgreSQL server at `addr` (host:port) every `interval` on
    /// the current runtime and adds a check named `name` that fails while the
    /// last probe failed. The probe sends an SSLRequest and reads the answer,
    /// so the server logs nothing for it.
    pub fn probe_postgres(self: &Arc<Self>, name: &str, addr: String, interval: Duration) {
        let last: Arc<Mutex<Result<(), String>>> =
            Arc::new(Mutex::new(Err("not probed yet".into())));
        let seen = last.clone();
        self.check(name, move || {
            seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
        });
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let r =
                    match tokio::time::timeout(interval.max(Duration::from_secs(1)), probe(&addr))
                        .await
                    {
                        Ok(r) => r,
                        Err(_) => Err(format!("{addr} did not answer within {interval:?}")),
                    };
                *last.lock().unwrap_or_else(|e| e.into_inner()) = r;
            }
        });
    }
}

async fn probe(addr: &str) -> Result<(), String> {
    let mut tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let answer = crate::wire::startup::ssl_request(&mut tcp)
        .await
        .map_err(|e| format!("{addr} closed the connection: {e}"))?;
    match answer {
        b'S' | b'N' => Ok(()),
        other => Err(format!(
            "{addr} is not PostgreSQL (answered {other:#04x} to SSLRequest)"
        )),
    }
}
