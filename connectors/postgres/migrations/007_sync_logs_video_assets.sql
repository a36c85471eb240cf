-- The record's last two tables (ops-engine recorder): sync runs and video renders.
-- As in 005: idempotent upserts on the natural key; a record older than the stored one
-- changes nothing (the ordering columns below say what "older" means for each table).

-- One row per sync run (from sync.runs), its latest state. A run only moves forward:
-- pages_done grows while it is RUNNING, and it ends once (COMPLETED or FAILED, completed_at
-- set); the recorder keeps the record with the most pages done, and an ended run is final.
CREATE TABLE sync_logs (
  run_id text PRIMARY KEY,
  request_id text NOT NULL,
  store_id text NOT NULL,
  kind text NOT NULL,  -- the run's tier: HIGH, STANDARD, FULL, MANUAL
  status text NOT NULL CHECK (status IN ('RUNNING', 'COMPLETED', 'FAILED')),
  started_at timestamptz NOT NULL,
  completed_at timestamptz,  -- when it ended (COMPLETED or FAILED)
  duration interval GENERATED ALWAYS AS (completed_at - started_at) STORED,
  total integer NOT NULL,  -- tracked products the run fetches
  processed integer NOT NULL,  -- products done so far (fetched + failed)
  changed integer NOT NULL,
  failed integer NOT NULL,
  pages integer NOT NULL,
  pages_done integer NOT NULL,
  error text,
  recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sync_logs_store_started ON sync_logs (store_id, started_at DESC);

-- One row per video job (from video.status), its latest status. Records are ordered by
-- (attempt, occurred_at, stage, progress), stage 0 QUEUED, 1 PROCESSING, 2 ended: a later
-- attempt, or a later step of one attempt, wins; an older or repeated record changes nothing.
CREATE TABLE video_assets (
  video_id text PRIMARY KEY,
  store_id text NOT NULL,
  product_id text,
  status text NOT NULL CHECK (status IN ('QUEUED', 'PROCESSING', 'COMPLETED', 'FAILED', 'CANCELLED')),
  attempt integer NOT NULL,
  stage smallint NOT NULL,
  progress double precision NOT NULL,  -- percent of the current attempt's render
  retrying boolean NOT NULL,  -- FAILED, and the next attempt is queued
  failure_reason text,  -- the last failure's (kept while a retry is queued or runs)
  video_url text,
  thumbnail_url text,
  duration_s double precision,
  width integer,
  height integer,
  resolution text GENERATED ALWAYS AS (width::text || 'x' || height::text) STORED,
  format text,
  has_audio boolean,
  last_event_id text NOT NULL,
  updated_at timestamptz NOT NULL,  -- occurred_at of the record kept
  recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX video_assets_store_status ON video_assets (store_id, status);
