-- A cancel the supplier could not take when asked (down, 5xx, lookup failed) waits in the
-- row as CANCELLING, and the executor's reconciler tries it again: the command that asked
-- for it is done, so it no longer holds up the commands after it on its partition.
ALTER TABLE supplier_orders DROP CONSTRAINT IF EXISTS supplier_orders_status_check;
ALTER TABLE supplier_orders ADD CONSTRAINT supplier_orders_status_check
  CHECK (status IN ('CLAIMED','IN_FLIGHT','UNKNOWN','PLACED','FAILED','CANCELLING','CANCELLED'));
CREATE INDEX supplier_orders_cancelling ON supplier_orders (updated_at) WHERE status = 'CANCELLING';
