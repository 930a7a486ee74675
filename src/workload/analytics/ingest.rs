//! Event ingestion. Direct: one prepared INSERT per single event, one
//! prepared multi-row INSERT over UNNEST'd arrays per batch (the same
//! statement whatever the batch size, as a tuned app does). Stream (seed
//! 002): the request only XADDs to a Redis stream; workers in a consumer
//! group drain it into PostgreSQL in batches, by INSERT or by COPY, then
//! acknowledge.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use redis::aio::ConnectionManager;
use redis::streams::StreamReadReply;

use super::{Ctx, Event};
use crate::workload::stats::{OpError, OpKind, Timing};

pub const STREAM: &str = "pgtape:events";
pub const GROUP: &str = "pgtape-ingest";
/// Entries a worker takes per read, i.e. the largest batch it writes.
const DRAIN_BATCH: usize = 500;

const INSERT_ONE: &str = "INSERT INTO events (org_id, user_id, event_type, element, duration_ms, properties, occurred_at) \
     VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7)";
const INSERT_MANY: &str = "INSERT INTO events (org_id, user_id, event_type, element, duration_ms, properties, occurred_at) \
     SELECT o, u, t, e, d, p::jsonb, ts \
     FROM UNNEST($1::int[], $2::bigint[], $3::text[], $4::text[], $5::float8[], $6::text[], $7::timestamptz[]) \
          AS x(o, u, t, e, d, p, ts)";
const COPY_IN: &str = "COPY events (org_id, user_id, event_type, element, duration_ms, properties, occurred_at) FROM STDIN";

/// Writes one ingest request directly.
pub async fn direct(ctx: &Ctx, events: Vec<Event>, due: Instant) {
    let kind = if events.len() == 1 {
        OpKind::IngestSingle
    } else {
        OpKind::IngestBatch
    };
    let mut t = Timing::start(due);
    let org = events[0].org;
    let result = async {
        let mut conn = t.conn(&ctx.pool).await?;
        let now = Utc::now();
        if let [e] = events.as_slice() {
            sqlx::query(INSERT_ONE)
                .bind(e.org)
                .bind(e.user)
                .bind(e.event_type)
                .bind(e.element)
                .bind(e.duration_ms)
                .bind(&e.properties)
                .bind(now)
                .execute(&mut *conn)
                .await?;
        } else {
            insert_many(&mut conn, &events, &vec![now; events.len()]).await?;
        }
        Ok::<_, OpError>(events.len() as u64)
    }
    .await;
    if result.is_ok() {
        ctx.events_written(org).await;
    }
    t.finish(&ctx.rec, kind, result);
}

async fn insert_many(
    conn: &mut sqlx::PgConnection,
    events: &[Event],
    at: &[DateTime<Utc>],
) -> Result<(), sqlx::Error> {
    sqlx::query(INSERT_MANY)
        .bind(events.iter().map(|e| e.org).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.user).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.event_type).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.element).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.duration_ms).collect::<Vec<_>>())
        .bind(
            events
                .iter()
                .map(|e| e.properties.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(at)
        .execute(conn)
        .await?;
    Ok(())
}

/// The COPY text format: tab-separated, `\`-escaped.
fn copy_text(events: &[Event], at: &[DateTime<Utc>]) -> Vec<u8> {
    let esc = |s: &str| {
        s.replace('\\', "\\\\")
            .replace('\t', "\\t")
            .replace('\n', "\\n")
    };
    let mut out = String::with_capacity(events.len() * 128);
    for (e, ts) in events.iter().zip(at) {
        out.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
            e.org,
            e.user,
            e.event_type,
            e.element,
            e.duration_ms,
            esc(&e.properties),
            ts.to_rfc3339()
        ));
    }
    out.into_bytes()
}

/// Stream entries: one field, tab-separated (org, user, type, element,
/// duration, occurred_at µs, properties last as it is free text).
fn encode(e: &Event, at: DateTime<Utc>) -> String {
    format!(
        "{}\t{}\t{}\t{}\t{}\t{}\t{}",
        e.org,
        e.user,
        e.event_type,
        e.element,
        e.duration_ms,
        at.timestamp_micros(),
        e.properties
    )
}

fn decode(s: &str) -> Option<(Event, DateTime<Utc>)> {
    let mut f = s.splitn(7, '\t');
    let org = f.next()?.parse().ok()?;
    let user = f.next()?.parse().ok()?;
    let ty = f.next()?;
    let event_type = super::EVENT_TYPES.into_iter().find(|t| *t == ty)?;
    let el = f.next()?;
    let element = super::ELEMENTS.into_iter().find(|x| *x == el)?;
    let duration_ms = f.next()?.parse().ok()?;
    let at = DateTime::from_timestamp_micros(f.next()?.parse().ok()?)?;
    let properties = f.next()?.to_string();
    Some((
        Event {
            org,
            user,
            event_type,
            element,
            duration_ms,
            properties,
        },
        at,
    ))
}

/// Creates the consumer group (and the stream) unless it exists.
pub async fn create_group(con: &mut ConnectionManager) -> redis::RedisResult<()> {
    let r: redis::RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(STREAM)
        .arg(GROUP)
        .arg("$")
        .arg("MKSTREAM")
        .query_async(con)
        .await;
    match r {
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        r => r,
    }
}

/// The request side of stream ingestion: XADD every event.
pub async fn publish(ctx: &Ctx, mut con: ConnectionManager, events: Vec<Event>, due: Instant) {
    let t = Timing::start(due);
    let now = Utc::now();
    let mut p = redis::pipe();
    for e in &events {
        p.cmd("XADD")
            .arg(STREAM)
            .arg("*")
            .arg("e")
            .arg(encode(e, now))
            .ignore();
    }
    let r: redis::RedisResult<()> = p.query_async(&mut con).await;
    // Published, not yet stored: the drain counts the events.
    let result = r.map(|_| 0).map_err(OpError::from);
    t.finish(&ctx.rec, OpKind::StreamPublish, result);
}

/// A stream worker: reads batches until `stop` is set and the stream is
/// empty for it, writes each batch, acknowledges and deletes the entries.
pub async fn drain_worker(
    ctx: Arc<Ctx>,
    mut con: ConnectionManager,
    consumer: String,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let reply: redis::RedisResult<Option<StreamReadReply>> = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg(GROUP)
            .arg(&consumer)
            .arg("COUNT")
            .arg(DRAIN_BATCH)
            .arg("BLOCK")
            .arg(100)
            .arg("STREAMS")
            .arg(STREAM)
            .arg(">")
            .query_async(&mut con)
            .await;
        let due = Instant::now();
        let entries: Vec<_> = match reply {
            Ok(r) => r
                .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect())
                .unwrap_or_default(),
            Err(e) => {
                ctx.rec.error(OpKind::StreamDrain, e.to_string());
                if *stop.borrow() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        if entries.is_empty() {
            if *stop.borrow() {
                return;
            }
            continue;
        }
        let ids: Vec<String> = entries.iter().map(|e| e.id.clone()).collect();
        let (events, at): (Vec<Event>, Vec<DateTime<Utc>>) = entries
            .iter()
            .filter_map(|e| decode(&e.get::<String>("e")?))
            .unzip();
        let mut t = Timing::start(due);
        let result = async {
            let mut conn = t.conn(&ctx.pool).await?;
            if ctx.copy {
                let mut copy = conn.copy_in_raw(COPY_IN).await?;
                copy.send(copy_text(&events, &at)).await?;
                copy.finish().await?;
            } else {
                insert_many(&mut conn, &events, &at).await?;
            }
            Ok::<_, OpError>(events.len() as u64)
        }
        .await;
        if result.is_ok() {
            let mut p = redis::pipe();
            p.cmd("XACK").arg(STREAM).arg(GROUP).arg(&ids).ignore();
            p.cmd("XDEL").arg(STREAM).arg(&ids).ignore();
            if let Err(e) = p.query_async::<()>(&mut con).await {
                ctx.rec.error(OpKind::StreamDrain, e.to_string());
            }
            for org in events.iter().map(|e| e.org).collect::<BTreeSet<_>>() {
                ctx.events_written(org).await;
            }
        }
        t.finish(&ctx.rec, OpKind::StreamDrain, result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_entries_round_trip() {
        let e = Event {
            org: 3,
            user: 3_000_042,
            event_type: "purchase",
            element: "checkout_button",
            duration_ms: 12.5,
            properties: r#"{"path":"/","amount":5.00}"#.into(),
        };
        let at = DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap();
        let (d, t) = decode(&encode(&e, at)).unwrap();
        assert_eq!(
            (d.org, d.user, d.event_type, d.element),
            (3, 3_000_042, "purchase", "checkout_button")
        );
        assert_eq!((d.duration_ms, d.properties, t), (12.5, e.properties, at));
    }
}
