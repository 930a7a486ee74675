//! `--profile orders`: seed 001's order workflow. Reads by primary key in
//! realistic id ranges (mostly recent orders), inserts with generated order
//! numbers (retry on a unique violation, UUID fallback), and the workflow
//! updates — approve, fulfil, adjust quantity, cancel — each of which can
//! only make a valid move (the status is in the WHERE clause, the row is
//! claimed with SKIP LOCKED like a work queue).

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use sqlx::PgPool;
use sqlx::types::Uuid;

use super::args::QueryType;
use super::stats::{OpError, OpKind, Recorder, Timing};

const SELECT: &str = "SELECT order_id, order_number, to_store_id, product_id, quantity_cases, order_status, \
            requested_by, approved_by, order_date, approved_date, fulfilled_date \
     FROM brickhouse.orders WHERE order_id = $1";
const INSERT: &str = "INSERT INTO brickhouse.orders (order_number, to_store_id, product_id, quantity_cases, requested_by) \
     VALUES ($1, $2, $3, $4, $5) RETURNING order_id";
const APPROVE: &str = "UPDATE brickhouse.orders SET order_status = 'approved', approved_by = $2, approved_date = now() \
     WHERE order_id = (SELECT order_id FROM brickhouse.orders WHERE to_store_id = $1 AND order_status = 'pending_review' \
                       ORDER BY order_id LIMIT 1 FOR UPDATE SKIP LOCKED) \
       AND order_status = 'pending_review'";
const FULFIL: &str = "UPDATE brickhouse.orders SET order_status = 'fulfilled', fulfilled_date = now() \
     WHERE order_id = (SELECT order_id FROM brickhouse.orders WHERE to_store_id = $1 AND order_status = 'approved' \
                       ORDER BY order_id LIMIT 1 FOR UPDATE SKIP LOCKED) \
       AND order_status = 'approved'";
const ADJUST: &str = "UPDATE brickhouse.orders SET quantity_cases = $2 \
     WHERE order_id = (SELECT order_id FROM brickhouse.orders WHERE to_store_id = $1 AND order_status = 'pending_review' \
                       ORDER BY order_id DESC LIMIT 1 FOR UPDATE SKIP LOCKED) \
       AND order_status = 'pending_review'";
const CANCEL: &str = "UPDATE brickhouse.orders SET order_status = 'cancelled' \
     WHERE order_id = (SELECT order_id FROM brickhouse.orders WHERE to_store_id = $1 AND order_status = 'pending_review' \
                       ORDER BY order_id DESC LIMIT 1 FOR UPDATE SKIP LOCKED) \
       AND order_status = 'pending_review'";

/// Order-number attempts before the UUID fallback.
const NUMBER_ATTEMPTS: usize = 3;
/// The random part of an order number: small enough that a busy day meets
/// a conflict now and then, as seed 001's generator does.
const NUMBER_SPACE: u32 = 100_000;

#[derive(Debug, Clone)]
pub enum OrderOp {
    Select { id: i64 },
    Insert(NewOrder),
    Approve { store: i32, approver: i32 },
    Fulfil { store: i32 },
    Adjust { store: i32, quantity: i32 },
    Cancel { store: i32 },
}

#[derive(Debug, Clone)]
pub struct NewOrder {
    pub store: i32,
    pub product: i32,
    pub quantity: i32,
    pub requested_by: i32,
    pub numbers: [u32; NUMBER_ATTEMPTS],
    pub fallback: Uuid,
}

/// What the database holds, read once at start.
#[derive(Debug, Clone, Copy)]
pub struct OrdersShape {
    pub stores: i32,
    pub products: i32,
    pub staff: i32,
    pub min_id: i64,
    pub max_id: i64,
}

pub async fn shape(pool: &PgPool) -> Result<OrdersShape, sqlx::Error> {
    let (stores, products, staff, min_id, max_id): (i64, i64, i64, Option<i64>, Option<i64>) =
        sqlx::query_as(
            "SELECT (SELECT count(*) FROM brickhouse.stores), (SELECT count(*) FROM brickhouse.products), \
                    (SELECT count(*) FROM brickhouse.users), \
                    (SELECT min(order_id) FROM brickhouse.orders), (SELECT max(order_id) FROM brickhouse.orders)",
        )
        .fetch_one(pool)
        .await?;
    Ok(OrdersShape {
        stores: stores.max(1) as i32,
        products: products.max(1) as i32,
        staff: staff.max(1) as i32,
        min_id: min_id.unwrap_or(1),
        max_id: max_id.unwrap_or(1),
    })
}

/// Chooses order operations by --query-type (mixed: 60/25/15).
pub struct OrderChooser {
    rng: SmallRng,
    query_type: QueryType,
    shape: OrdersShape,
    /// Orders this run will have inserted: keeps reads on ids that exist
    /// without asking the database (so the choice stays deterministic).
    inserted: i64,
}

impl OrderChooser {
    pub fn new(seed: u64, query_type: QueryType, shape: OrdersShape) -> Self {
        OrderChooser {
            rng: SmallRng::seed_from_u64(seed ^ 0x0DE5_0003),
            query_type,
            shape,
            inserted: 0,
        }
    }

    pub fn next_op(&mut self) -> OrderOp {
        let kind = match self.query_type {
            QueryType::Select => 0,
            QueryType::Insert => 60,
            QueryType::Update => 85,
            QueryType::Mixed => self.rng.random_range(0..100),
        };
        let store = self.rng.random_range(1..=self.shape.stores);
        match kind {
            0..60 => {
                // 80 % of reads hit the newest fifth of the orders.
                let (lo, hi) = (self.shape.min_id, self.shape.max_id + self.inserted);
                let recent = hi - (hi - lo) / 5;
                let id = if self.rng.random_bool(0.8) {
                    self.rng.random_range(recent..=hi)
                } else {
                    self.rng.random_range(lo..=hi)
                };
                OrderOp::Select { id }
            }
            60..85 => {
                self.inserted += 1;
                let mut numbers = [0; NUMBER_ATTEMPTS];
                numbers
                    .iter_mut()
                    .for_each(|n| *n = self.rng.random_range(0..NUMBER_SPACE));
                OrderOp::Insert(NewOrder {
                    store,
                    product: self.rng.random_range(1..=self.shape.products),
                    quantity: self.rng.random_range(1..=50),
                    requested_by: self.rng.random_range(1..=self.shape.staff),
                    numbers,
                    fallback: uuid_v4(self.rng.random()),
                })
            }
            _ => match self.rng.random_range(0..100) {
                0..40 => OrderOp::Approve {
                    store,
                    approver: self.rng.random_range(1..=self.shape.staff),
                },
                40..75 => OrderOp::Fulfil { store },
                75..95 => OrderOp::Adjust {
                    store,
                    quantity: self.rng.random_range(1..=50),
                },
                _ => OrderOp::Cancel { store },
            },
        }
    }
}

pub async fn execute(pool: &PgPool, rec: &Arc<Recorder>, op: OrderOp, due: Instant) {
    let kind = match op {
        OrderOp::Select { .. } => OpKind::OrderSelect,
        OrderOp::Insert(_) => OpKind::OrderInsert,
        _ => OpKind::OrderUpdate,
    };
    let mut t = Timing::start(due);
    let result = run(pool, &mut t, op).await;
    t.finish(rec, kind, result);
}

async fn run(pool: &PgPool, t: &mut Timing, op: OrderOp) -> Result<u64, OpError> {
    let mut c = t.conn(pool).await?;
    let (sql, store, arg) = match op {
        OrderOp::Select { id } => {
            sqlx::query(SELECT).bind(id).fetch_optional(&mut *c).await?;
            return Ok(0);
        }
        OrderOp::Insert(o) => return insert(&mut c, &o).await,
        OrderOp::Approve { store, approver } => (APPROVE, store, Some(approver)),
        OrderOp::Fulfil { store } => (FULFIL, store, None),
        OrderOp::Adjust { store, quantity } => (ADJUST, store, Some(quantity)),
        OrderOp::Cancel { store } => (CANCEL, store, None),
    };
    let q = sqlx::query(sql).bind(store);
    match arg {
        Some(a) => q.bind(a).execute(&mut *c).await?,
        None => q.execute(&mut *c).await?,
    };
    Ok(0)
}

/// A version-4 UUID from seeded bytes (RFC 9562 version and variant bits).
fn uuid_v4(mut b: [u8; 16]) -> Uuid {
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    Uuid::from_bytes(b)
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("23505"))
}

async fn insert(c: &mut sqlx::PgConnection, o: &NewOrder) -> Result<u64, OpError> {
    let today = Utc::now().format("%Y%m%d");
    let candidates = o
        .numbers
        .iter()
        .map(|n| format!("ORD-{today}-{n:05}"))
        .chain(std::iter::once(format!("ORD-{}", o.fallback)));
    let mut last = None;
    for number in candidates {
        let r: Result<(i64,), _> = sqlx::query_as(INSERT)
            .bind(&number)
            .bind(o.store)
            .bind(o.product)
            .bind(o.quantity)
            .bind(o.requested_by)
            .fetch_one(&mut *c)
            .await;
        match r {
            Ok(_) => return Ok(0),
            Err(e) if is_unique_violation(&e) => last = Some(e),
            Err(e) => return Err(e.into()),
        }
    }
    Err(last.expect("at least one attempt").into())
}
