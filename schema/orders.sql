-- pgtape workload --profile orders: seed 001's order workflow (the
-- "Brickhouse Brands" data model), in its own schema so it can share a
-- database with the analytics profile. Idempotent.

CREATE TABLE IF NOT EXISTS pgtape_workload (
    profile       text PRIMARY KEY,
    organizations integer NOT NULL,
    users_per_org integer NOT NULL,
    seeded_at     timestamptz NOT NULL DEFAULT now()
);

CREATE SCHEMA IF NOT EXISTS brickhouse;

CREATE TABLE IF NOT EXISTS brickhouse.stores (
    store_id   integer PRIMARY KEY,
    name       text NOT NULL,
    region     text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS brickhouse.products (
    product_id integer PRIMARY KEY,
    sku        text NOT NULL UNIQUE,
    name       text NOT NULL,
    case_price numeric(10, 2) NOT NULL
);

CREATE TABLE IF NOT EXISTS brickhouse.users (
    user_id integer PRIMARY KEY,
    email   text NOT NULL UNIQUE,
    role    text NOT NULL CHECK (role IN ('store_manager', 'approver', 'warehouse'))
);

-- Status moves pending_review -> approved -> fulfilled, or to cancelled
-- from pending_review; the workload's updates only make those moves.
CREATE TABLE IF NOT EXISTS brickhouse.orders (
    order_id       bigserial PRIMARY KEY,
    order_number   text NOT NULL,
    to_store_id    integer NOT NULL REFERENCES brickhouse.stores,
    product_id     integer NOT NULL REFERENCES brickhouse.products,
    quantity_cases integer NOT NULL CHECK (quantity_cases > 0),
    order_status   text NOT NULL DEFAULT 'pending_review'
                   CHECK (order_status IN ('pending_review', 'approved', 'fulfilled', 'cancelled')),
    requested_by   integer NOT NULL REFERENCES brickhouse.users,
    approved_by    integer REFERENCES brickhouse.users,
    order_date     timestamptz NOT NULL DEFAULT now(),
    approved_date  timestamptz,
    fulfilled_date timestamptz
);
CREATE UNIQUE INDEX IF NOT EXISTS orders_order_number_key ON brickhouse.orders (order_number);
CREATE INDEX IF NOT EXISTS orders_status_idx ON brickhouse.orders (order_status);
CREATE INDEX IF NOT EXISTS orders_store_idx ON brickhouse.orders (to_store_id);
