-- API keys: only a SHA-256 hash of the key is stored; the prefix helps people recognise a key.
CREATE TABLE api_keys (
  id          uuid PRIMARY KEY,
  tenant_id   text NOT NULL,
  name        text,
  key_hash    text NOT NULL UNIQUE,
  key_prefix  text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  revoked_at  timestamptz
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);

-- Jobs: the system of record. A job row exists before the API answers 202.
CREATE TABLE jobs (
  id               uuid PRIMARY KEY,
  tenant_id        text NOT NULL,
  api_key_id       uuid,
  status           text NOT NULL CHECK (status IN ('queued', 'in_progress', 'completed', 'failed', 'cancelled')),
  model            text NOT NULL,
  spec             jsonb NOT NULL,
  request_hash     text NOT NULL,
  idempotency_key  text,
  metadata         jsonb,
  attempts         integer NOT NULL DEFAULT 0,
  result           text,
  finish_reason    text,
  usage            jsonb,
  error            jsonb,
  -- The job's whole event stream, stored when the job ends, so SSE replay works after Redis dropped it.
  -- json, not jsonb: replay must give back the exact bytes (jsonb reorders keys).
  events           json,
  created_at       timestamptz NOT NULL DEFAULT now(),
  started_at       timestamptz,
  completed_at     timestamptz,
  updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX jobs_idempotency ON jobs (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
-- The reconciler scans unfinished jobs by age.
CREATE INDEX jobs_unfinished ON jobs (created_at) WHERE status IN ('queued', 'in_progress');
CREATE INDEX jobs_tenant_created ON jobs (tenant_id, created_at DESC);
