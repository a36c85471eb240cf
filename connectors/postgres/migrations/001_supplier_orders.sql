CREATE TABLE supplier_orders (
  idempotency_key text PRIMARY KEY,
  order_id text NOT NULL,
  store_id text NOT NULL,
  group_id text NOT NULL,
  provider text NOT NULL,
  reference text NOT NULL,
  status text NOT NULL CHECK (status IN ('CLAIMED','IN_FLIGHT','UNKNOWN','PLACED','FAILED','CANCELLED')),
  supplier_order_id text,
  attempts integer NOT NULL DEFAULT 0,
  last_error text,
  tracking_number text,
  carrier text,
  tracking_url text,
  tracking_checked_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX supplier_orders_order ON supplier_orders (order_id);
CREATE INDEX supplier_orders_awaiting_tracking ON supplier_orders (tracking_checked_at) WHERE status = 'PLACED' AND tracking_number IS NULL;
