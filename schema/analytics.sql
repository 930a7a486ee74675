-- pgtape workload --profile analytics: the multi-tenant analytics app of
-- seeds 000, 002, 003 and 004. Idempotent: `pgtape workload setup` runs it on
-- every call. Monthly partitions of `events` are created by setup (they
-- depend on today's date); rows outside them land in events_default.

CREATE TABLE IF NOT EXISTS pgtape_workload (
    profile       text PRIMARY KEY,
    organizations integer NOT NULL,
    users_per_org integer NOT NULL,
    seeded_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS organizations (
    org_id     integer PRIMARY KEY,
    name       text NOT NULL,
    plan       text NOT NULL CHECK (plan IN ('free', 'pro', 'enterprise')),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- user_id = org_id * 1000000 + n: a tenant's users are one id range, so the
-- generator picks valid users without reading the table.
CREATE TABLE IF NOT EXISTS users (
    user_id    bigint PRIMARY KEY,
    org_id     integer NOT NULL REFERENCES organizations,
    email      text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (org_id, email)
);
CREATE INDEX IF NOT EXISTS users_org_idx ON users (org_id);

CREATE TABLE IF NOT EXISTS sessions (
    session_id  bigserial PRIMARY KEY,
    org_id      integer NOT NULL,
    user_id     bigint NOT NULL,
    device      text NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    ended_at    timestamptz,
    duration_ms double precision
);
CREATE INDEX IF NOT EXISTS sessions_org_started_idx ON sessions (org_id, started_at DESC);
-- Closing a session looks for the tenant's oldest open one.
CREATE INDEX IF NOT EXISTS sessions_open_idx ON sessions (org_id, started_at) WHERE ended_at IS NULL;

-- No foreign keys on the hot ingestion path, as high-volume event tables
-- usually have none.
CREATE TABLE IF NOT EXISTS events (
    id          bigserial,
    org_id      integer NOT NULL,
    user_id     bigint NOT NULL,
    event_type  text NOT NULL
                CHECK (event_type IN ('page_view', 'click', 'conversion', 'signup', 'purchase')),
    element     text NOT NULL,
    duration_ms double precision,
    properties  jsonb NOT NULL DEFAULT '{}',
    occurred_at timestamptz NOT NULL,
    PRIMARY KEY (id, occurred_at)
) PARTITION BY RANGE (occurred_at);
CREATE TABLE IF NOT EXISTS events_default PARTITION OF events DEFAULT;

-- Every query is scoped to a tenant and a time range.
CREATE INDEX IF NOT EXISTS events_org_time_idx ON events (org_id, occurred_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS events_org_type_time_idx ON events (org_id, event_type, occurred_at DESC);
CREATE INDEX IF NOT EXISTS events_org_user_time_idx ON events (org_id, user_id, occurred_at DESC);

-- Dashboards read pre-aggregated days; refreshed CONCURRENTLY, hence the
-- unique indexes.
CREATE MATERIALIZED VIEW IF NOT EXISTS org_daily_stats AS
SELECT org_id,
       (occurred_at AT TIME ZONE 'UTC')::date AS day,
       event_type,
       count(*)::bigint                 AS events,
       count(DISTINCT user_id)::bigint  AS users,
       avg(duration_ms)                 AS avg_duration_ms
FROM events
GROUP BY 1, 2, 3;
CREATE UNIQUE INDEX IF NOT EXISTS org_daily_stats_key ON org_daily_stats (org_id, day, event_type);

CREATE MATERIALIZED VIEW IF NOT EXISTS org_top_elements AS
SELECT org_id, element, count(*)::bigint AS interactions
FROM events
WHERE event_type IN ('click', 'conversion', 'purchase')
  AND occurred_at > now() - interval '30 days'
GROUP BY 1, 2;
CREATE UNIQUE INDEX IF NOT EXISTS org_top_elements_key ON org_top_elements (org_id, element);
