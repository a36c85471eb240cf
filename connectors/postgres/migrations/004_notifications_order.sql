-- Which order a notification was about, so that a redaction (Shopify customers/redact,
-- shop/redact) can remove the customer's address from the notifier's records.
-- Rows written before this migration carry no order and are not found by a redaction.
ALTER TABLE notifications_sent ADD COLUMN order_id text;
CREATE INDEX notifications_sent_order ON notifications_sent (order_id) WHERE order_id IS NOT NULL;
