//! The app's reads and session writes, every one scoped to a tenant
//! (`org_id = $1`, seed 003). Dashboards, filtered counts and the first page
//! of event lists go through the cache (cache-aside, TTL by tier, tagged by
//! tenant and by "live" when they cover the last hour); real-time stats never
//! do. The dashboards' materialized views are refreshed on their own clock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgConnection;

use super::{AppRequest, Ctx, DashRange, live_tag, tenant_tag};
use crate::workload::cache::Tier;
use crate::workload::stats::{OpError, OpKind, Timing};

const DASH_LIVE: &str = "SELECT event_type, count(*)::bigint, count(DISTINCT user_id)::bigint, avg(duration_ms) \
     FROM events WHERE org_id = $1 AND occurred_at >= $2 GROUP BY event_type ORDER BY event_type";
const DASH_DAYS: &str = "SELECT event_type, sum(events)::bigint, sum(users)::bigint, avg(avg_duration_ms) \
     FROM org_daily_stats WHERE org_id = $1 AND day >= $2 AND day < $3 GROUP BY event_type ORDER BY event_type";
const FILTERED: &str = "SELECT count(*)::bigint, count(DISTINCT user_id)::bigint, avg(duration_ms) FROM events \
     WHERE org_id = $1 AND event_type = $2 AND occurred_at >= $3 AND occurred_at < $4";
const FILTERED_USER: &str = "SELECT count(*)::bigint, count(DISTINCT user_id)::bigint, avg(duration_ms) FROM events \
     WHERE org_id = $1 AND event_type = $2 AND occurred_at >= $3 AND occurred_at < $4 AND user_id = $5";
const LIST_FIRST: &str = "SELECT id, user_id, event_type, element, duration_ms, occurred_at FROM events \
     WHERE org_id = $1 AND occurred_at >= $2 AND ($3::bigint IS NULL OR user_id = $3) \
     ORDER BY occurred_at DESC, id DESC LIMIT $4";
const LIST_NEXT: &str = "SELECT id, user_id, event_type, element, duration_ms, occurred_at FROM events \
     WHERE org_id = $1 AND occurred_at >= $2 AND ($3::bigint IS NULL OR user_id = $3) \
       AND (occurred_at, id) < ($5, $6) \
     ORDER BY occurred_at DESC, id DESC LIMIT $4";
const ACTIVE_USERS: &str = "SELECT count(DISTINCT user_id)::bigint FROM events \
     WHERE org_id = $1 AND occurred_at > now() - interval '5 minutes'";
const EVENTS_PER_MINUTE: &str = "SELECT date_trunc('minute', occurred_at) AS minute, count(*)::bigint FROM events \
     WHERE org_id = $1 AND occurred_at > now() - interval '1 hour' GROUP BY 1 ORDER BY 1";
const AVG_DURATION: &str = "SELECT avg(duration_ms) FROM events \
     WHERE org_id = $1 AND occurred_at > now() - interval '15 minutes'";
const TOP_ELEMENTS: &str = "SELECT element, interactions FROM org_top_elements \
     WHERE org_id = $1 ORDER BY interactions DESC LIMIT 10";
const SESSION_START: &str =
    "INSERT INTO sessions (org_id, user_id, device) VALUES ($1, $2, $3) RETURNING session_id";
const SESSION_END: &str = "UPDATE sessions SET ended_at = now(), \
         duration_ms = extract(epoch FROM now() - started_at) * 1000 \
     WHERE session_id = (SELECT session_id FROM sessions WHERE org_id = $1 AND ended_at IS NULL \
                         ORDER BY started_at LIMIT 1 FOR UPDATE SKIP LOCKED)";
const PAGE_SIZE: i64 = 50;

type Agg = (String, i64, i64, Option<f64>);
type ListRow = (i64, i64, String, String, Option<f64>, DateTime<Utc>);

pub async fn execute(ctx: &Ctx, req: AppRequest, due: Instant) {
    let kind = match req {
        AppRequest::Dashboard { .. } => OpKind::Dashboard,
        AppRequest::Filtered { .. } => OpKind::Filtered,
        AppRequest::EventList { .. } => OpKind::EventList,
        AppRequest::Realtime { .. } => OpKind::Realtime,
        AppRequest::SessionStart { .. } | AppRequest::SessionEnd { .. } => OpKind::SessionWrite,
    };
    let mut t = Timing::start(due);
    let result = match req {
        AppRequest::Dashboard { org, range } => dashboard(ctx, &mut t, org, range).await,
        AppRequest::Filtered {
            org,
            event_type,
            days_ago,
            user,
        } => filtered(ctx, &mut t, org, event_type, days_ago, user).await,
        AppRequest::EventList { org, user, pages } => {
            event_list(ctx, &mut t, org, user, pages).await
        }
        AppRequest::Realtime { org } => realtime(ctx, &mut t, org).await,
        AppRequest::SessionStart { org, user, device } => {
            session_start(ctx, &mut t, org, user, device).await
        }
        AppRequest::SessionEnd { org } => session_end(ctx, &mut t, org).await,
    };
    t.finish(&ctx.rec, kind, result);
}

/// Cache-aside lookup; `None` on a miss. Counts the lookup.
async fn lookup(ctx: &Ctx, key: &str, due: Instant) -> Option<Vec<u8>> {
    let hit = ctx.cache.get(key).await;
    ctx.rec.cache_lookup(hit.is_some(), due);
    hit
}

async fn store<T: serde::Serialize>(ctx: &Ctx, key: &str, value: &T, tier: Tier, org: i32) {
    let tags = if tier == Tier::Realtime {
        vec![tenant_tag(org), live_tag(org)]
    } else {
        vec![tenant_tag(org)]
    };
    let bytes = serde_json::to_vec(value).expect("rows serialize");
    ctx.cache.set(key, &bytes, tier, &tags).await;
}

/// Today minus `days_ago` (negative: days ahead, for exclusive ends).
fn day(days_ago: i64) -> NaiveDate {
    let today = Utc::now().date_naive();
    if days_ago >= 0 {
        today - chrono::Days::new(days_ago as u64)
    } else {
        today + chrono::Days::new(days_ago.unsigned_abs())
    }
}

fn day_start(d: NaiveDate) -> DateTime<Utc> {
    d.and_hms_opt(0, 0, 0).expect("midnight").and_utc()
}

async fn dashboard(ctx: &Ctx, t: &mut Timing, org: i32, range: DashRange) -> Result<u64, OpError> {
    let (key, tier) = match range {
        DashRange::LastHour => (format!("pgtape:dash:{org}:1h"), Tier::Realtime),
        DashRange::Days7 => (format!("pgtape:dash:{org}:7d"), Tier::Recent),
        DashRange::Days30 => (format!("pgtape:dash:{org}:30d"), Tier::Historical),
        DashRange::Custom { days_ago, len } => (
            format!("pgtape:dash:{org}:{}:{len}", day(days_ago as i64)),
            Tier::Historical,
        ),
    };
    if lookup(ctx, &key, t.due).await.is_some() {
        return Ok(0);
    }
    let mut c = t.conn(&ctx.pool).await?;
    let rows: Vec<Agg> = match range {
        DashRange::LastHour => {
            sqlx::query_as(DASH_LIVE)
                .bind(org)
                .bind(Utc::now() - Duration::from_secs(3600))
                .fetch_all(&mut *c)
                .await?
        }
        _ => {
            let (from, to) = match range {
                DashRange::Days7 => (day(7), day(-1)),
                DashRange::Days30 => (day(30), day(-1)),
                DashRange::Custom { days_ago, len } => {
                    (day(days_ago as i64), day(days_ago as i64 - len as i64))
                }
                DashRange::LastHour => unreachable!("handled above"),
            };
            sqlx::query_as(DASH_DAYS)
                .bind(org)
                .bind(from)
                .bind(to)
                .fetch_all(&mut *c)
                .await?
        }
    };
    drop(c);
    store(ctx, &key, &rows, tier, org).await;
    Ok(0)
}

async fn filtered(
    ctx: &Ctx,
    t: &mut Timing,
    org: i32,
    event_type: &str,
    days_ago: u16,
    user: Option<i64>,
) -> Result<u64, OpError> {
    let d = day(days_ago as i64);
    let key = format!("pgtape:filter:{org}:{event_type}:{d}:{}", user.unwrap_or(0));
    if lookup(ctx, &key, t.due).await.is_some() {
        return Ok(0);
    }
    let (from, to) = (day_start(d), day_start(d + chrono::Days::new(1)));
    let mut c = t.conn(&ctx.pool).await?;
    let q = match user {
        None => sqlx::query_as(FILTERED),
        Some(_) => sqlx::query_as(FILTERED_USER),
    };
    let q = q.bind(org).bind(event_type).bind(from).bind(to);
    let row: (i64, i64, Option<f64>) = match user {
        None => q.fetch_one(&mut *c).await?,
        Some(u) => q.bind(u).fetch_one(&mut *c).await?,
    };
    drop(c);
    let tier = if days_ago == 0 {
        Tier::Realtime
    } else {
        Tier::Recent
    };
    store(ctx, &key, &row, tier, org).await;
    Ok(0)
}

/// Keyset pagination over the last 7 days (seed 003); only page one is cached.
async fn event_list(
    ctx: &Ctx,
    t: &mut Timing,
    org: i32,
    user: Option<i64>,
    pages: u8,
) -> Result<u64, OpError> {
    let key = format!("pgtape:list:{org}:{}", user.unwrap_or(0));
    let cached = lookup(ctx, &key, t.due).await.is_some();
    if cached && pages == 1 {
        return Ok(0);
    }
    let since = Utc::now() - Duration::from_secs(7 * 86_400);
    let mut c = t.conn(&ctx.pool).await?;
    let mut page: Vec<ListRow> = sqlx::query_as(LIST_FIRST)
        .bind(org)
        .bind(since)
        .bind(user)
        .bind(PAGE_SIZE)
        .fetch_all(&mut *c)
        .await?;
    if !cached {
        let json: Vec<_> = page
            .iter()
            .map(|(id, u, ty, el, d, at)| (id, u, ty, el, d, at.timestamp_micros()))
            .collect();
        store(ctx, &key, &json, Tier::Realtime, org).await;
    }
    for _ in 1..pages {
        let Some((id, _, _, _, _, at)) = page.last().cloned() else {
            break;
        };
        page = sqlx::query_as(LIST_NEXT)
            .bind(org)
            .bind(since)
            .bind(user)
            .bind(PAGE_SIZE)
            .bind(at)
            .bind(id)
            .fetch_all(&mut *c)
            .await?;
    }
    Ok(0)
}

/// Seed 002's /metrics: four live aggregates on one connection, never cached.
async fn realtime(ctx: &Ctx, t: &mut Timing, org: i32) -> Result<u64, OpError> {
    let mut c = t.conn(&ctx.pool).await?;
    let _: (i64,) = sqlx::query_as(ACTIVE_USERS)
        .bind(org)
        .fetch_one(&mut *c)
        .await?;
    let _: Vec<(DateTime<Utc>, i64)> = sqlx::query_as(EVENTS_PER_MINUTE)
        .bind(org)
        .fetch_all(&mut *c)
        .await?;
    let _: (Option<f64>,) = sqlx::query_as(AVG_DURATION)
        .bind(org)
        .fetch_one(&mut *c)
        .await?;
    let _: Vec<(String, i64)> = sqlx::query_as(TOP_ELEMENTS)
        .bind(org)
        .fetch_all(&mut *c)
        .await?;
    Ok(0)
}

async fn session_start(
    ctx: &Ctx,
    t: &mut Timing,
    org: i32,
    user: i64,
    device: &str,
) -> Result<u64, OpError> {
    let mut c = t.conn(&ctx.pool).await?;
    let _: (i64,) = sqlx::query_as(SESSION_START)
        .bind(org)
        .bind(user)
        .bind(device)
        .fetch_one(&mut *c)
        .await?;
    Ok(0)
}

async fn session_end(ctx: &Ctx, t: &mut Timing, org: i32) -> Result<u64, OpError> {
    let mut c = t.conn(&ctx.pool).await?;
    sqlx::query(SESSION_END).bind(org).execute(&mut *c).await?;
    Ok(0)
}

/// Refreshes the dashboards' views every `every` until `end` or stop.
pub async fn refresh_loop(
    ctx: Arc<Ctx>,
    every: Duration,
    end: Instant,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut due = Instant::now() + every;
    while due < end {
        tokio::select! {
            _ = tokio::time::sleep_until(due.into()) => {}
            _ = stop.changed() => return,
        }
        let mut t = Timing::start(due);
        let result = refresh(&ctx, &mut t).await;
        t.finish(&ctx.rec, OpKind::RefreshViews, result);
        due += every;
    }
}

async fn refresh(ctx: &Ctx, t: &mut Timing) -> Result<u64, OpError> {
    let mut c = t.conn(&ctx.pool).await?;
    refresh_views(&mut c).await?;
    Ok(0)
}

pub async fn refresh_views(c: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("REFRESH MATERIALIZED VIEW CONCURRENTLY org_daily_stats")
        .execute(&mut *c)
        .await?;
    sqlx::query("REFRESH MATERIALIZED VIEW CONCURRENTLY org_top_elements")
        .execute(&mut *c)
        .await?;
    Ok(())
}
