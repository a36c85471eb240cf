-- The Shopify reconciliation's mark per shop (connectors/shopify/reconcile.py):
-- orders updated after pulled_until have not been pulled yet. Kept here so it
-- survives restarts and is shared by every storefront process (a process pulls
-- a shop under an advisory lock; pulled_at says when it was last done).
CREATE TABLE shopify_reconcile (
  shop_domain text PRIMARY KEY,
  pulled_until timestamptz NOT NULL,
  pulled_at timestamptz NOT NULL,
  orders_pulled bigint NOT NULL DEFAULT 0
);
