-- Notifications sent by the notifier (connectors/notify): one row per
-- notification id, claimed (SENDING) before the message goes to the SMTP server,
-- so a notification is sent at most once. A row left SENDING is an unknown
-- outcome (a crash mid-send) and is never sent again.
CREATE TABLE notifications_sent (
  notification_id text PRIMARY KEY,
  kind text NOT NULL,
  store_id text NOT NULL,
  recipient text NOT NULL,
  status text NOT NULL CHECK (status IN ('SENDING','SENT','FAILED')),
  error text,
  created_at timestamptz NOT NULL DEFAULT now(),
  sent_at timestamptz
);

-- Alert records waiting for (or told in) the digest of their store and window.
-- The key is the record's own identity (an alert is re-published with a new
-- updated_at at each status change), so a replayed record is stored once.
CREATE TABLE alert_digest_items (
  alert_id text NOT NULL,
  updated_at timestamptz NOT NULL,
  store_id text NOT NULL,
  window_start timestamptz NOT NULL,
  body jsonb NOT NULL,
  PRIMARY KEY (alert_id, updated_at)
);
CREATE INDEX alert_digest_items_window ON alert_digest_items (window_start, store_id);

-- The e-mail notification targets of each store (from store.settings; the
-- newest updated_at wins).
CREATE TABLE store_contacts (
  store_id text PRIMARY KEY,
  emails text[] NOT NULL,
  updated_at timestamptz NOT NULL
);
