//! The analytics app's cache-aside layer (seed 003): entries expire by TTL
//! tier and are also filed under tags (Redis sets), so a write invalidates
//! exactly the entries it made stale without `KEYS *`. When Redis is
//! unreachable the same API runs on an in-process map (seed 004's fallback),
//! unless Redis is required.
//!
//! Cache errors at run time never fail a request: they count as a miss and
//! the query goes to PostgreSQL, as the app would.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::WorkloadError;
use super::args::mask_url;

/// TTL tiers by the age of the data an entry summarises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// Includes the last hour: 30 s.
    Realtime,
    /// Within the last 7 days: 5 min.
    Recent,
    /// Older: 1 h.
    Historical,
}

impl Tier {
    pub fn ttl(self) -> Duration {
        Duration::from_secs(match self {
            Tier::Realtime => 30,
            Tier::Recent => 300,
            Tier::Historical => 3600,
        })
    }
}

/// Tag sets outlive every entry they point to.
const TAG_TTL_SECS: u64 = 3600;
/// The in-process cache's bound; past it, expired entries go, then all.
const MEMORY_MAX_ENTRIES: usize = 200_000;

pub struct Cache {
    backend: Backend,
    warned: AtomicBool,
}

enum Backend {
    Redis(ConnectionManager),
    Memory(Mutex<MemoryCache>),
}

#[derive(Default)]
struct MemoryCache {
    entries: HashMap<String, (Instant, Vec<u8>)>,
    tags: HashMap<String, HashSet<String>>,
}

impl Cache {
    /// Connects to Redis at `url`; on failure falls back to memory with a
    /// warning, or fails when `required`. `None` means memory from the start.
    pub async fn connect(url: Option<&str>, required: bool) -> Result<Cache, WorkloadError> {
        let Some(url) = url else {
            return Ok(Cache::memory());
        };
        match connect_redis(url).await {
            Ok(con) => Ok(Cache {
                backend: Backend::Redis(con),
                warned: AtomicBool::new(false),
            }),
            Err(cause) if required => Err(WorkloadError::RedisUnreachable {
                url: mask_url(url),
                cause,
            }),
            Err(cause) => {
                tracing::warn!(
                    redis = %mask_url(url), %cause,
                    "Redis unreachable: caching in process instead (pass --redis-required to fail instead)"
                );
                Ok(Cache::memory())
            }
        }
    }

    pub fn memory() -> Cache {
        Cache {
            backend: Backend::Memory(Mutex::new(MemoryCache::default())),
            warned: AtomicBool::new(false),
        }
    }

    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Redis(_) => "redis",
            Backend::Memory(_) => "memory",
        }
    }

    /// The Redis connection, for the event stream.
    pub fn redis(&self) -> Option<ConnectionManager> {
        match &self.backend {
            Backend::Redis(c) => Some(c.clone()),
            Backend::Memory(_) => None,
        }
    }

    fn runtime_error(&self, e: redis::RedisError) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(error = %e, "Redis cache error: treating as a miss (logged once)");
        }
    }

    pub async fn get(&self, key: &str) -> Option<Vec<u8>> {
        match &self.backend {
            Backend::Redis(con) => {
                let t = Instant::now();
                let r: redis::RedisResult<Option<Vec<u8>>> = redis::cmd("GET")
                    .arg(key)
                    .query_async(&mut con.clone())
                    .await;
                super::metrics::redis("get", t.elapsed());
                r.map_err(|e| self.runtime_error(e)).ok().flatten()
            }
            Backend::Memory(m) => {
                let m = m.lock().unwrap_or_else(|e| e.into_inner());
                m.entries
                    .get(key)
                    .filter(|(exp, _)| *exp > Instant::now())
                    .map(|(_, v)| v.clone())
            }
        }
    }

    pub async fn set(&self, key: &str, value: &[u8], tier: Tier, tags: &[String]) {
        match &self.backend {
            Backend::Redis(con) => {
                let mut p = redis::pipe();
                p.cmd("SET")
                    .arg(key)
                    .arg(value)
                    .arg("EX")
                    .arg(tier.ttl().as_secs())
                    .ignore();
                for t in tags {
                    p.cmd("SADD").arg(t).arg(key).ignore();
                    p.cmd("EXPIRE").arg(t).arg(TAG_TTL_SECS).ignore();
                }
                let t = Instant::now();
                let r: redis::RedisResult<()> = p.query_async(&mut con.clone()).await;
                super::metrics::redis("set", t.elapsed());
                if let Err(e) = r {
                    self.runtime_error(e);
                }
            }
            Backend::Memory(m) => {
                let mut m = m.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                if m.entries.len() >= MEMORY_MAX_ENTRIES {
                    m.entries.retain(|_, (exp, _)| *exp > now);
                    if m.entries.len() >= MEMORY_MAX_ENTRIES {
                        m.entries.clear();
                        m.tags.clear();
                    }
                }
                m.entries
                    .insert(key.to_string(), (now + tier.ttl(), value.to_vec()));
                for t in tags {
                    m.tags.entry(t.clone()).or_default().insert(key.to_string());
                }
            }
        }
    }

    /// Drops every entry filed under any of `tags`; returns how many.
    pub async fn invalidate(&self, tags: &[String]) -> usize {
        match &self.backend {
            Backend::Redis(con) => {
                let mut con = con.clone();
                let mut p = redis::pipe();
                for t in tags {
                    p.cmd("SMEMBERS").arg(t);
                }
                let t = Instant::now();
                let members = p.query_async::<Vec<Vec<String>>>(&mut con).await;
                super::metrics::redis("invalidate", t.elapsed());
                let members: Vec<Vec<String>> = match members {
                    Ok(m) => m,
                    Err(e) => {
                        self.runtime_error(e);
                        return 0;
                    }
                };
                let keys: Vec<&String> = members.iter().flatten().collect();
                let mut del = redis::cmd("DEL");
                del.arg(&keys).arg(tags);
                let r: redis::RedisResult<usize> = del.query_async(&mut con).await;
                r.map_err(|e| self.runtime_error(e)).unwrap_or(0)
            }
            Backend::Memory(m) => {
                let mut m = m.lock().unwrap_or_else(|e| e.into_inner());
                let mut n = 0;
                for t in tags {
                    for k in m.tags.remove(t).unwrap_or_default() {
                        n += usize::from(m.entries.remove(&k).is_some());
                    }
                }
                n
            }
        }
    }
}

/// A connection that answered PING within two seconds.
pub async fn connect_redis(url: &str) -> Result<ConnectionManager, String> {
    let client = redis::Client::open(url).map_err(|e| format!("invalid Redis URL: {e}"))?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(5)))
        .set_number_of_retries(1);
    let connect = async {
        let mut con = ConnectionManager::new_with_config(client, config).await?;
        redis::cmd("PING").query_async::<String>(&mut con).await?;
        Ok::<_, redis::RedisError>(con)
    };
    match tokio::time::timeout(Duration::from_secs(3), connect).await {
        Ok(Ok(con)) => Ok(con),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer within 3 s".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_cache_invalidates_by_tag_only() {
        let c = Cache::memory();
        c.set("a", b"1", Tier::Recent, &["t1".into()]).await;
        c.set("b", b"2", Tier::Recent, &["t2".into()]).await;
        assert_eq!(c.get("a").await.as_deref(), Some(&b"1"[..]));
        assert_eq!(c.invalidate(&["t1".into()]).await, 1);
        assert_eq!(c.get("a").await, None);
        assert_eq!(c.get("b").await.as_deref(), Some(&b"2"[..]));
    }
}
