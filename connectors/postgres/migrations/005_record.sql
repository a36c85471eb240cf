-- The durable, queryable record of what the engine's topics say (ops-engine recorder).
-- Every row is written by an idempotent upsert keyed by its natural key, so a replay
-- writes nothing twice; "newer wins" rows keep the record with the latest time.

-- Each store product's current state (from inventory.changes).
CREATE TABLE products (
  store_id text NOT NULL,
  product_id text NOT NULL,
  variant_id text NOT NULL DEFAULT '',  -- '' when the product has no variant
  provider text NOT NULL,
  source_id text NOT NULL,
  status text NOT NULL,
  available boolean NOT NULL,
  stock integer NOT NULL,
  cost_price numeric(24, 6) NOT NULL,
  shipping_cost numeric(24, 6) NOT NULL,
  currency text NOT NULL,
  selling_price numeric(24, 6) NOT NULL,
  compare_at_price numeric(24, 6),
  captured_at timestamptz NOT NULL,
  last_change_id text NOT NULL,
  sync_run_id text,
  recorded_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (store_id, product_id, variant_id)
);

-- Every alert with its latest status (from alerts).
CREATE TABLE alerts (
  alert_id text PRIMARY KEY,
  store_id text NOT NULL,
  product_id text,
  variant_id text,
  type text NOT NULL,
  severity text NOT NULL,
  status text NOT NULL,
  title text NOT NULL,
  message text NOT NULL,
  metadata jsonb NOT NULL,
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL,
  acknowledged_at timestamptz,
  resolved_at timestamptz
);
CREATE INDEX alerts_store_status ON alerts (store_id, status);

-- Every order's latest state (from the orders table's changelog).
CREATE TABLE orders (
  order_id text PRIMARY KEY,
  store_id text NOT NULL,
  status text NOT NULL,
  order_number text,
  paid boolean NOT NULL,
  currency text,
  total numeric(24, 6),
  redacted boolean NOT NULL,
  created_at timestamptz,
  updated_at timestamptz NOT NULL,
  state jsonb NOT NULL  -- the order as GET /orders/{id} shows it (personal data until redacted)
);
CREATE INDEX orders_store_status ON orders (store_id, status);

-- Each line of an order's history (append-only: seq is its place).
CREATE TABLE order_history (
  order_id text NOT NULL,
  seq integer NOT NULL,
  at timestamptz NOT NULL,
  event_id text NOT NULL,
  event text NOT NULL,
  from_status text,
  to_status text,
  note text,
  PRIMARY KEY (order_id, seq)
);

-- Every webhook the ingress stored (from webhooks.inbound): ids and times, never the body.
CREATE TABLE processed_webhook_events (
  dedup_key text PRIMARY KEY,
  source text NOT NULL,
  provider text,
  topic text,
  shop_domain text,
  delivery_id text NOT NULL,
  received_at timestamptz NOT NULL
);
