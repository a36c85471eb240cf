-- The reconciliation's mark per storefront shop, for every platform
-- (connectors/storefront/reconcile.py): orders modified after pulled_until
-- have not been pulled yet. It replaces 006's shopify_reconcile (its rows are
-- kept, as platform SHOPIFY): one table and one pull routine for Shopify shops
-- and WooCommerce sites alike. A process pulls a shop under an advisory lock;
-- pulled_at says when it was last done.
CREATE TABLE storefront_reconcile (
  platform text NOT NULL,          -- SHOPIFY | WOOCOMMERCE
  shop text NOT NULL,              -- the shop domain, or the WooCommerce site's host
  pulled_until timestamptz NOT NULL,
  pulled_at timestamptz NOT NULL,
  orders_pulled bigint NOT NULL DEFAULT 0,
  PRIMARY KEY (platform, shop)
);

INSERT INTO storefront_reconcile (platform, shop, pulled_until, pulled_at, orders_pulled)
SELECT 'SHOPIFY', shop_domain, pulled_until, pulled_at, orders_pulled FROM shopify_reconcile;

DROP TABLE shopify_reconcile;
