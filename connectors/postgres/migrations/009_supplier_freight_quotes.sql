-- The syncer's freight quotes (connectors/sync/quote_store.py): the cheapest delivery a
-- supplier quoted for one unit of a product variant to a country, and when. AliExpress's
-- and CJ's product answers carry no freight fee; the syncer asks their freight calls at
-- most every OPS_FREIGHT_MAX_AGE_S per key and keeps the answers here, so that a restart
-- neither asks again nor leaves the products without their shipping.
-- A quote replaces the row only when it is newer (fetched_at); rows are never deleted.
CREATE TABLE supplier_freight_quotes (
  provider text NOT NULL,
  source_id text NOT NULL,
  variant text NOT NULL DEFAULT '',  -- the supplier's variant id; '' for a product-level item
  country text NOT NULL CHECK (country ~ '^[A-Z]{2}$'),  -- ISO 3166-1 alpha-2 destination
  amount numeric CHECK (amount >= 0),  -- NULL: the supplier offers no delivery there
  currency text NOT NULL,
  service text,  -- the cheapest option's service name
  fetched_at timestamptz NOT NULL,
  PRIMARY KEY (provider, source_id, variant, country)
);
