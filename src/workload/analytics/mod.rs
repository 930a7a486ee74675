//! `--profile analytics`: the multi-tenant analytics app of seeds 000–004.
//!
//! - this file: the choices — event mix, batch sizes, query mix, which
//!   tenant and parameters — made in due order from seeded RNGs.
//! - [`ingest`]: event writes, direct or through a Redis stream and workers.
//! - [`queries`]: tenant-scoped reads with cache-aside, session writes and
//!   the materialized-view refresh.

pub mod ingest;
pub mod queries;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::cache::Cache;
use super::setup::Sizes;
use super::stats::Recorder;

/// Seed 000's event mix, per mille.
pub const EVENT_MIX: [(&str, u32); 5] = [
    ("page_view", 600),
    ("click", 280),
    ("conversion", 100),
    ("signup", 15),
    ("purchase", 5),
];

pub const EVENT_TYPES: [&str; 5] = ["page_view", "click", "conversion", "signup", "purchase"];

const ELEMENTS: [&str; 8] = [
    "nav_home",
    "nav_pricing",
    "signup_button",
    "video_player",
    "like_button",
    "search_box",
    "checkout_button",
    "product_card",
];
const PATHS: [&str; 6] = ["/", "/pricing", "/docs", "/blog", "/product", "/checkout"];
const DEVICES: [&str; 3] = ["desktop", "mobile", "tablet"];

/// Share of ingest requests that are batches (seed 004: single events and
/// batches of up to 100), and their size range.
pub const BATCH_SHARE: f64 = 0.2;
pub const BATCH_SIZES: std::ops::RangeInclusive<usize> = 2..=100;

/// Events per ingest request on average: converts --events-per-second into
/// the request rate.
pub fn mean_events_per_request() -> f64 {
    let mean_batch = (*BATCH_SIZES.start() + *BATCH_SIZES.end()) as f64 / 2.0;
    (1.0 - BATCH_SHARE) + BATCH_SHARE * mean_batch
}

/// One event, as the SDK would send it.
#[derive(Debug, Clone)]
pub struct Event {
    pub org: i32,
    pub user: i64,
    pub event_type: &'static str,
    pub element: &'static str,
    pub duration_ms: f64,
    pub properties: String,
}

/// Chooses ingest requests: a tenant, then one event or a batch of them.
pub struct EventChooser {
    rng: SmallRng,
    sizes: Sizes,
}

impl EventChooser {
    pub fn new(seed: u64, sizes: Sizes) -> Self {
        EventChooser {
            rng: SmallRng::seed_from_u64(seed ^ 0xE7E7_0001),
            sizes,
        }
    }

    pub fn next_request(&mut self) -> Vec<Event> {
        let n = if self.rng.random_bool(BATCH_SHARE) {
            self.rng.random_range(BATCH_SIZES)
        } else {
            1
        };
        let org = self.rng.random_range(1..=self.sizes.organizations as i32);
        (0..n).map(|_| self.event(org)).collect()
    }

    fn event(&mut self, org: i32) -> Event {
        let r = self.rng.random_range(0..1000);
        let mut acc = 0;
        let event_type = EVENT_MIX
            .iter()
            .find(|(_, w)| {
                acc += w;
                r < acc
            })
            .map_or("page_view", |(t, _)| t);
        let user =
            org as i64 * 1_000_000 + self.rng.random_range(1..=self.sizes.users_per_org as i64);
        let path = PATHS[self.rng.random_range(0..PATHS.len())];
        let device = DEVICES[self.rng.random_range(0..DEVICES.len())];
        let properties = if event_type == "purchase" {
            let cents: u32 = self.rng.random_range(500..50_000);
            format!(
                r#"{{"path":"{path}","device":"{device}","amount":{}.{:02}}}"#,
                cents / 100,
                cents % 100
            )
        } else {
            format!(r#"{{"path":"{path}","device":"{device}"}}"#)
        };
        Event {
            org,
            user,
            event_type,
            element: ELEMENTS[self.rng.random_range(0..ELEMENTS.len())],
            duration_ms: (self.rng.random_range(50..120_000) as f64) / 10.0,
            properties,
        }
    }
}

/// Dashboard windows: tier and data source differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DashRange {
    LastHour,
    Days7,
    Days30,
    /// A user-picked historical range: `days_ago` back, `len` days long.
    Custom {
        days_ago: u16,
        len: u16,
    },
}

/// An app request (the --queries-per-second stream).
#[derive(Debug, Clone)]
pub enum AppRequest {
    Dashboard {
        org: i32,
        range: DashRange,
    },
    Filtered {
        org: i32,
        event_type: &'static str,
        days_ago: u16,
        user: Option<i64>,
    },
    EventList {
        org: i32,
        user: Option<i64>,
        pages: u8,
    },
    Realtime {
        org: i32,
    },
    SessionStart {
        org: i32,
        user: i64,
        device: &'static str,
    },
    SessionEnd {
        org: i32,
    },
}

/// Chooses app requests: reads vs session writes by --read-write-ratio; the
/// reads in seed 000's mix (70 % dashboard, 20 % filtered and lists, 10 %
/// real-time). Whether a read repeats a popular key or asks something new is
/// steered toward --cache-hit-target by the hit ratio observed so far.
pub struct RequestChooser {
    rng: SmallRng,
    sizes: Sizes,
    read_ratio: f64,
    target: f64,
    /// Probability that a cacheable read uses a popular ("hot") key.
    p_hot: f64,
    seen: (u64, u64),
    since_adjust: u32,
    rec: Arc<Recorder>,
}

/// Cacheable reads between two adjustments of `p_hot`, and the step.
const ADJUST_EVERY: u32 = 50;
const GAIN: f64 = 0.5;

impl RequestChooser {
    pub fn new(seed: u64, sizes: Sizes, read_ratio: f64, target: f64, rec: Arc<Recorder>) -> Self {
        RequestChooser {
            rng: SmallRng::seed_from_u64(seed ^ 0xA99_0002),
            sizes,
            read_ratio,
            target,
            p_hot: target,
            seen: (0, 0),
            since_adjust: 0,
            rec,
        }
    }

    fn org(&mut self) -> i32 {
        self.rng.random_range(1..=self.sizes.organizations as i32)
    }

    fn user(&mut self, org: i32) -> i64 {
        org as i64 * 1_000_000 + self.rng.random_range(1..=self.sizes.users_per_org as i64)
    }

    /// A proportional controller on the hit ratio of the last window.
    fn hot(&mut self) -> bool {
        self.since_adjust += 1;
        if self.since_adjust >= ADJUST_EVERY {
            self.since_adjust = 0;
            let hits = self.rec.live.cache_hits.load(Ordering::Relaxed);
            let misses = self.rec.live.cache_misses.load(Ordering::Relaxed);
            let (dh, dm) = (hits - self.seen.0, misses - self.seen.1);
            self.seen = (hits, misses);
            if dh + dm > 0 {
                let observed = dh as f64 / (dh + dm) as f64;
                self.p_hot = (self.p_hot + GAIN * (self.target - observed)).clamp(0.0, 1.0);
            }
        }
        // Drawn even when p_hot is 0 or 1 so the RNG sequence (the mix)
        // never depends on the controller.
        self.rng.random::<f64>() < self.p_hot
    }

    pub fn next_request(&mut self) -> AppRequest {
        let org = self.org();
        if !self.rng.random_bool(self.read_ratio) {
            return if self.rng.random_bool(0.5) {
                let user = self.user(org);
                let device = DEVICES[self.rng.random_range(0..DEVICES.len())];
                AppRequest::SessionStart { org, user, device }
            } else {
                AppRequest::SessionEnd { org }
            };
        }
        let r = self.rng.random_range(0..100);
        let hot = self.hot();
        // Popular requests come mostly from the big tenants (u³ skews toward
        // the low ids); the rest spread over all of them.
        let skew: f64 = self.rng.random();
        let n = self.sizes.organizations as f64;
        let org = if hot {
            1 + (n * skew.powi(3)).min(n - 1.0) as i32
        } else {
            org
        };
        let user = self.user(org);
        match r {
            0..70 => {
                let range = if hot {
                    match self.rng.random_range(0..10) {
                        0..2 => DashRange::LastHour,
                        2..6 => DashRange::Days7,
                        _ => DashRange::Days30,
                    }
                } else {
                    DashRange::Custom {
                        days_ago: self.rng.random_range(8..365),
                        len: self.rng.random_range(1..31),
                    }
                };
                AppRequest::Dashboard { org, range }
            }
            70..80 => AppRequest::Filtered {
                org,
                event_type: EVENT_TYPES[self.rng.random_range(0..EVENT_TYPES.len())],
                days_ago: self.rng.random_range(0..7),
                user: (!hot).then_some(user),
            },
            80..90 => AppRequest::EventList {
                org,
                user: (!hot).then_some(user),
                pages: self.rng.random_range(1..=3),
            },
            _ => AppRequest::Realtime { org },
        }
    }
}

/// What every analytics operation shares.
pub struct Ctx {
    pub pool: sqlx::PgPool,
    pub cache: Cache,
    pub rec: Arc<Recorder>,
    pub sizes: Sizes,
    pub copy: bool,
    /// Per tenant: when its live entries were last invalidated (ms since
    /// `epoch`), to coalesce invalidations to one a second per tenant.
    last_invalidated: Vec<AtomicU64>,
    epoch: Instant,
}

/// Live entries of a tenant are invalidated at most this often: a write
/// storm must not turn every dashboard load into a miss.
const INVALIDATE_EVERY_MS: u64 = 1000;

impl Ctx {
    pub fn new(
        pool: sqlx::PgPool,
        cache: Cache,
        rec: Arc<Recorder>,
        sizes: Sizes,
        copy: bool,
    ) -> Self {
        Ctx {
            pool,
            cache,
            rec,
            sizes,
            copy,
            last_invalidated: (0..=sizes.organizations)
                .map(|_| AtomicU64::new(0))
                .collect(),
            epoch: Instant::now(),
        }
    }

    /// Tag invalidation after a tenant's events were written.
    pub async fn events_written(&self, org: i32) {
        let Some(slot) = self.last_invalidated.get(org as usize) else {
            return;
        };
        let now = self.epoch.elapsed().as_millis() as u64 + INVALIDATE_EVERY_MS;
        let last = slot.load(Ordering::Relaxed);
        if now - last >= INVALIDATE_EVERY_MS
            && slot
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.cache.invalidate(&[live_tag(org)]).await;
        }
    }
}

pub fn tenant_tag(org: i32) -> String {
    format!("pgtape:tag:org:{org}")
}

pub fn live_tag(org: i32) -> String {
    format!("pgtape:tag:org:{org}:live")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_mix_follows_seed_000() {
        let mut c = EventChooser::new(
            7,
            Sizes {
                organizations: 5,
                users_per_org: 10,
            },
        );
        let mut counts = [0usize; 5];
        let mut n = 0;
        while n < 100_000 {
            for e in c.next_request() {
                counts[EVENT_TYPES.iter().position(|t| *t == e.event_type).unwrap()] += 1;
                n += 1;
                assert!((1..=5).contains(&e.org));
                assert_eq!(e.user / 1_000_000, e.org as i64);
            }
        }
        for (i, (_, per_mille)) in EVENT_MIX.iter().enumerate() {
            let share = counts[i] as f64 * 1000.0 / n as f64;
            assert!((share - *per_mille as f64).abs() < 6.0, "{i}: {share}");
        }
    }

    #[test]
    fn same_seed_same_requests() {
        let sizes = Sizes {
            organizations: 9,
            users_per_org: 100,
        };
        let a: Vec<_> = {
            let mut c = EventChooser::new(3, sizes);
            (0..50).map(|_| format!("{:?}", c.next_request())).collect()
        };
        let mut c = EventChooser::new(3, sizes);
        let b: Vec<_> = (0..50).map(|_| format!("{:?}", c.next_request())).collect();
        assert_eq!(a, b);
    }
}
