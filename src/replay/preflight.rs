//! Everything a replay checks and loads before its first session starts,
//! so a bad flag, an unreachable side or a capture too wide for
//! `--max-connections` fails at once, naming the fix: the capture opened
//! and filtered (`--from` / `--until` resolved against its start), its
//! outline, the open-file limit, the metrics exporter, a connection to each
//! side, and the source's catalog for `--order commit`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;

use super::args::{OrderMode, ReplayConfig, resolve_time};
use super::client::Client;
use super::conn_opts::ConnOpts;
use super::plan::{self, Filter, Outline};
use super::tables::{self, Catalog};
use crate::capture::Capture;
use crate::metrics::Exporter;

/// What the checks found, for the run to start from.
pub(super) struct Preflight {
    pub cap: Capture,
    pub filter: Filter,
    pub outline: Outline,
    /// `source`, then `target` if given.
    pub sides: Vec<(&'static str, ConnOpts)>,
    /// Serving `/metrics` while it lives (`--metrics`).
    pub exporter: Option<Exporter>,
    pub catalog: Arc<Catalog>,
}

/// Opens, checks and connects, in that order; the first failure ends it.
pub(super) async fn preflight(cfg: &ReplayConfig) -> anyhow::Result<Preflight> {
    let cap = plan::open(&cfg.capture)?;
    let filter = resolve_filter(cfg, &cap)?;
    let outline = plan::outline(&cap, &filter)?;
    let peak = outline.peak_sessions * cfg.scale as u64;
    if peak as usize > cfg.max_connections {
        bail!(
            "the capture has {} sessions open at once{}; this replay needs {peak} connections per side: \
             raise --max-connections to {peak}, or narrow it with --session, --application, --from/--until",
            outline.peak_sessions,
            if cfg.scale > 1 {
                format!(" (×{} with --scale)", cfg.scale)
            } else {
                String::new()
            }
        );
    }
    let sides: Vec<(&'static str, ConnOpts)> = std::iter::once(("source", cfg.source.clone()))
        .chain(cfg.target.clone().map(|t| ("target", t)))
        .collect();
    ensure_fds(peak * sides.len() as u64 + 2)?;
    let exporter = match cfg.metrics {
        Some(addr) => {
            let (exporter, local) = crate::metrics::replay::install(addr).await?;
            for (name, opts) in &sides {
                exporter
                    .health
                    .probe_postgres(name, opts.addr(), Duration::from_secs(2));
            }
            tracing::info!(metrics = %local, "serving /metrics and /health");
            crate::metrics::replay::planned(outline.statements);
            Some(exporter)
        }
        None => None,
    };
    // Fail fast, with the URL, before any session starts.
    for (_, opts) in &sides {
        let c = Client::connect(opts, &opts.user, &[]).await?;
        c.terminate().await;
    }
    // Statements map to tables through the source's catalog, which stands
    // for production's (the target's may be the migration's new schema).
    let catalog = match cfg.order {
        OrderMode::Commit => match Catalog::load(&cfg.source).await {
            Ok(mut c) => {
                c.choose_keys(&outline.shapes.values().collect::<Vec<_>>());
                Arc::new(c)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the source's catalog: every statement waits for every earlier sync point");
                tables::unknown()
            }
        },
        OrderMode::Session => tables::unknown(),
    };
    Ok(Preflight {
        cap,
        filter,
        outline,
        sides,
        exporter,
        catalog,
    })
}

/// Raises the open-file limit to what `needed` connections take, or says why not.
fn ensure_fds(needed: u64) -> anyhow::Result<()> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Ok(());
        }
        let want = (needed + 256).min(lim.rlim_max);
        if lim.rlim_cur < want {
            lim.rlim_cur = want;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
    if lim.rlim_max < needed + 64 {
        bail!(
            "replay needs {needed} connections but the open-file limit is {}; raise it (ulimit -n)",
            lim.rlim_max
        );
    }
    Ok(())
}

/// The filter with `--from` / `--until` resolved against the capture's start.
fn resolve_filter(cfg: &ReplayConfig, cap: &Capture) -> anyhow::Result<Filter> {
    let mut filter = cfg.filter.clone();
    if cfg.window.0.is_some() || cfg.window.1.is_some() {
        let o = plan::outline(cap, &Filter::default())?;
        let resolve = |s: &Option<String>, flag| {
            s.as_deref()
                .map(|s| resolve_time(s, o.start_us, flag))
                .transpose()
        };
        filter.from_us = resolve(&cfg.window.0, "--from")?;
        filter.until_us = resolve(&cfg.window.1, "--until")?;
    }
    Ok(filter)
}
