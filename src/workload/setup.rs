//! `pgtape workload setup`: creates a profile's schema (`schema/*.sql`) and
//! seeds its data, sized by `--organizations` and `--users-per-org`. Running
//! it again adds what is missing and keeps what exists. Also owns the
//! connection pool and the "is the schema there" check every run starts with.

use std::time::{Duration, Instant};

use chrono::{Datelike, Months, NaiveDate, Utc};
use serde::Serialize;
use sqlx::postgres::{PgPool, PgPoolOptions};

use super::WorkloadError;
use super::args::{Profile, SetupConfig, mask_url};

pub const ANALYTICS_SQL: &str = include_str!("../../schema/analytics.sql");
pub const ORDERS_SQL: &str = include_str!("../../schema/orders.sql");

/// Historical events seeded per user, and the cap per tenant, so dashboards
/// have history without making setup slow.
const EVENTS_PER_USER: i64 = 5;
const MAX_SEED_EVENTS_PER_ORG: i64 = 20_000;
const PRODUCTS: i32 = 200;

/// The sizes setup seeded (read back by every run).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sizes {
    pub organizations: u32,
    pub users_per_org: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct SetupReport {
    pub profile: Profile,
    pub sizes: Sizes,
    /// Rows the profile's main table had after setup.
    pub rows: i64,
    pub seconds: f64,
}

/// A pool of `max` connections; fails with the masked URL and the cause.
pub async fn connect_pool(url: &str, max: u32) -> Result<PgPool, WorkloadError> {
    let pool = PgPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(10))
        .connect(url)
        .await
        .map_err(|e| WorkloadError::Unreachable {
            url: mask_url(url),
            cause: e.to_string(),
        })?;
    Ok(pool)
}

pub async fn setup(cfg: &SetupConfig) -> Result<SetupReport, WorkloadError> {
    let started = Instant::now();
    let pool = connect_pool(&cfg.url, 2).await?;
    let prev = seeded_sizes(&pool, cfg.profile).await.ok().flatten();
    let sizes = Sizes {
        organizations: cfg.organizations.max(prev.map_or(0, |p| p.organizations)),
        users_per_org: cfg.users_per_org.max(prev.map_or(0, |p| p.users_per_org)),
    };
    let rows = match cfg.profile {
        Profile::Analytics => {
            sqlx::raw_sql(ANALYTICS_SQL).execute(&pool).await?;
            create_partitions(&pool).await?;
            seed_analytics(&pool, cfg, prev).await?
        }
        Profile::Orders => {
            sqlx::raw_sql(ORDERS_SQL).execute(&pool).await?;
            seed_orders(&pool, cfg).await?
        }
    };
    sqlx::query(
        "INSERT INTO pgtape_workload (profile, organizations, users_per_org) VALUES ($1, $2, $3) \
         ON CONFLICT (profile) DO UPDATE SET organizations = $2, users_per_org = $3, seeded_at = now()",
    )
    .bind(profile_name(cfg.profile))
    .bind(sizes.organizations as i32)
    .bind(sizes.users_per_org as i32)
    .execute(&pool)
    .await?;
    pool.close().await;
    Ok(SetupReport {
        profile: cfg.profile,
        sizes,
        rows,
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn profile_name(p: Profile) -> &'static str {
    match p {
        Profile::Analytics => "analytics",
        Profile::Orders => "orders",
    }
}

async fn seeded_sizes(pool: &PgPool, profile: Profile) -> Result<Option<Sizes>, sqlx::Error> {
    let row: Option<(i32, i32)> = sqlx::query_as(
        "SELECT organizations, users_per_org FROM pgtape_workload WHERE profile = $1",
    )
    .bind(profile_name(profile))
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(o, u)| Sizes {
        organizations: o as u32,
        users_per_org: u as u32,
    }))
}

/// The sizes setup recorded; a missing schema says how to create it.
pub async fn check_schema(
    pool: &PgPool,
    profile: Profile,
    url: &str,
) -> Result<Sizes, WorkloadError> {
    let missing = || WorkloadError::SchemaMissing {
        url: mask_url(url),
        profile: profile_name(profile),
    };
    match seeded_sizes(pool, profile).await {
        Ok(Some(s)) => Ok(s),
        Ok(None) => Err(missing()),
        // 42P01: undefined table.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => Err(missing()),
        Err(e) => Err(e.into()),
    }
}

/// Monthly partitions from a year back to three months ahead.
async fn create_partitions(pool: &PgPool) -> Result<(), WorkloadError> {
    let today = Utc::now().date_naive();
    let first = NaiveDate::from_ymd_opt(today.year(), today.month(), 1).expect("valid date");
    for back in -13i32..=3 {
        let from = if back < 0 {
            first - Months::new(back.unsigned_abs())
        } else {
            first + Months::new(back as u32)
        };
        let to = from + Months::new(1);
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS events_y{}m{:02} PARTITION OF events \
             FOR VALUES FROM ('{from}') TO ('{to}')",
            from.year(),
            from.month()
        );
        // Fails only when events_default already holds rows of that month
        // (setup not run for months): those rows stay in the default.
        if let Err(e) = sqlx::raw_sql(&sql).execute(pool).await {
            tracing::warn!(partition = %from, error = %e, "partition not created");
        }
    }
    Ok(())
}

async fn seed_analytics(
    pool: &PgPool,
    cfg: &SetupConfig,
    prev: Option<Sizes>,
) -> Result<i64, WorkloadError> {
    let orgs = cfg.organizations as i32;
    let users = cfg.users_per_org as i64;
    sqlx::query(
        "INSERT INTO organizations (org_id, name, plan) \
         SELECT g, 'org-' || g, (ARRAY['free', 'pro', 'enterprise'])[1 + g % 3] \
         FROM generate_series(1, $1) g ON CONFLICT DO NOTHING",
    )
    .bind(orgs)
    .execute(pool)
    .await?;
    sqlx::query(
        "INSERT INTO users (user_id, org_id, email) \
         SELECT o::bigint * 1000000 + u, o, 'user' || u || '@org' || o || '.example' \
         FROM generate_series(1, $1) o, generate_series(1, $2::bigint) u ON CONFLICT DO NOTHING",
    )
    .bind(orgs)
    .bind(users)
    .execute(pool)
    .await?;
    // History for tenants that have none yet, in seed 000's mix, over the
    // last 30 days (ending an hour ago so "today" starts with live traffic).
    let first_new = prev.map_or(1, |p| p.organizations as i32 + 1);
    let per_org = (users * EVENTS_PER_USER).min(MAX_SEED_EVENTS_PER_ORG);
    sqlx::query(
        "INSERT INTO events (org_id, user_id, event_type, element, duration_ms, properties, occurred_at) \
         SELECT o, o::bigint * 1000000 + 1 + (i * 7919) % $3, \
                CASE WHEN h < 600 THEN 'page_view' WHEN h < 880 THEN 'click' \
                     WHEN h < 980 THEN 'conversion' WHEN h < 995 THEN 'signup' ELSE 'purchase' END, \
                (ARRAY['nav_home', 'nav_pricing', 'signup_button', 'video_player', 'like_button', \
                       'search_box', 'checkout_button', 'product_card'])[1 + (i * 31 + o) % 8], \
                ((i * 104729) % 120000) / 10.0, \
                jsonb_build_object('seeded', true), \
                now() - interval '1 hour' - ((i * 2654435761) % 2592000) * interval '1 second' \
         FROM generate_series($1, $2) o, generate_series(1, $4::bigint) i, \
              LATERAL (SELECT ((i * 48271 + o * 16807) % 1000) AS h) x",
    )
    .bind(first_new)
    .bind(orgs)
    .bind(users)
    .bind(per_org)
    .execute(pool)
    .await?;
    sqlx::raw_sql("REFRESH MATERIALIZED VIEW org_daily_stats; REFRESH MATERIALIZED VIEW org_top_elements; ANALYZE")
        .execute(pool)
        .await?;
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM events")
        .fetch_one(pool)
        .await?;
    Ok(n)
}

async fn seed_orders(pool: &PgPool, cfg: &SetupConfig) -> Result<i64, WorkloadError> {
    let stores = cfg.organizations as i32;
    let staff = (stores * 4).max(12);
    let orders = cfg.organizations as i64 * cfg.users_per_org as i64;
    sqlx::query(
        "INSERT INTO brickhouse.stores (store_id, name, region) \
         SELECT g, 'Store #' || g, (ARRAY['west', 'central', 'east', 'south'])[1 + g % 4] \
         FROM generate_series(1, $1) g ON CONFLICT DO NOTHING",
    )
    .bind(stores)
    .execute(pool)
    .await?;
    sqlx::query(
        "INSERT INTO brickhouse.products (product_id, sku, name, case_price) \
         SELECT g, 'SKU-' || lpad(g::text, 5, '0'), 'Beverage ' || g, 12 + (g * 37 % 400) / 10.0 \
         FROM generate_series(1, $1) g ON CONFLICT DO NOTHING",
    )
    .bind(PRODUCTS)
    .execute(pool)
    .await?;
    sqlx::query(
        "INSERT INTO brickhouse.users (user_id, email, role) \
         SELECT g, 'staff' || g || '@brickhouse.example', \
                (ARRAY['store_manager', 'approver', 'warehouse'])[1 + g % 3] \
         FROM generate_series(1, $1) g ON CONFLICT DO NOTHING",
    )
    .bind(staff)
    .execute(pool)
    .await?;
    // Orders only into an empty table: history is seeded once. Statuses are
    // consistent with their dates (approved ones have approved_date, ...).
    sqlx::query(
        "INSERT INTO brickhouse.orders (order_number, to_store_id, product_id, quantity_cases, \
                order_status, requested_by, approved_by, order_date, approved_date, fulfilled_date) \
         SELECT 'ORD-' || to_char(d, 'YYYYMMDD') || '-' || lpad(((i / 90) % 100000)::text, 5, '0'), \
                1 + i % $2, 1 + (i * 7) % $3, 1 + (i * 13) % 50, s, 1 + i % $4, \
                CASE WHEN s IN ('approved', 'fulfilled') THEN 1 + (i * 3) % $4 END, \
                d, \
                CASE WHEN s IN ('approved', 'fulfilled') THEN d + interval '2 hours' END, \
                CASE WHEN s = 'fulfilled' THEN d + interval '1 day' END \
         FROM generate_series(1, $1::bigint) i, \
              LATERAL (SELECT now() - (i % 90) * interval '1 day' - (i % 3600) * interval '1 second' AS d, \
                              CASE WHEN i % 20 < 12 THEN 'fulfilled' WHEN i % 20 < 15 THEN 'approved' \
                                   WHEN i % 20 < 19 THEN 'pending_review' ELSE 'cancelled' END AS s) x \
         WHERE NOT EXISTS (SELECT 1 FROM brickhouse.orders) \
         ON CONFLICT (order_number) DO NOTHING",
    )
    .bind(orders)
    .bind(stores as i64)
    .bind(PRODUCTS as i64)
    .bind(staff as i64)
    .execute(pool)
    .await?;
    sqlx::raw_sql("ANALYZE brickhouse.orders")
        .execute(pool)
        .await?;
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM brickhouse.orders")
        .fetch_one(pool)
        .await?;
    Ok(n)
}
