-- The tracking poller also watches placed orders until the supplier reports them delivered.
ALTER TABLE supplier_orders ADD COLUMN delivered_at timestamptz;
DROP INDEX IF EXISTS supplier_orders_awaiting_tracking;
CREATE INDEX supplier_orders_tracking_due ON supplier_orders (tracking_checked_at NULLS FIRST)
  WHERE status = 'PLACED' AND delivered_at IS NULL;
