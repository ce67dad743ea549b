-- Per-key limits and budgets. NULL takes the configured default; 0 means no limit.
-- Buckets: capacity (burst) and refill per minute, for requests and for tokens.
ALTER TABLE api_keys ADD COLUMN requests_per_minute integer CHECK (requests_per_minute >= 0);
ALTER TABLE api_keys ADD COLUMN request_burst integer CHECK (request_burst >= 0);
ALTER TABLE api_keys ADD COLUMN tokens_per_minute integer CHECK (tokens_per_minute >= 0);
ALTER TABLE api_keys ADD COLUMN token_burst integer CHECK (token_burst >= 0);
ALTER TABLE api_keys ADD COLUMN daily_budget_usd numeric(14, 6) CHECK (daily_budget_usd >= 0);
ALTER TABLE api_keys ADD COLUMN monthly_budget_usd numeric(14, 6) CHECK (monthly_budget_usd >= 0);

-- Per-tenant overrides of tenant-wide limits (jobs queued + running at once).
CREATE TABLE tenant_limits (
  tenant_id        text PRIMARY KEY,
  max_active_jobs  integer CHECK (max_active_jobs >= 0),
  updated_at       timestamptz NOT NULL DEFAULT now()
);

-- Priority tier: interactive work has its own queue and worker capacity.
ALTER TABLE jobs ADD COLUMN priority text NOT NULL DEFAULT 'interactive'
  CHECK (priority IN ('interactive', 'batch'));

-- The usage ledger: one row per upstream attempt (kind 'attempt': what the providers were asked
-- and answered) and one per finished job (kind 'job': what the key is charged, exactly once).
CREATE TABLE usage_ledger (
  id                 bigserial PRIMARY KEY,
  kind               text NOT NULL CHECK (kind IN ('attempt', 'job')),
  job_id             uuid NOT NULL,
  api_key_id         uuid,
  tenant_id          text NOT NULL,
  model              text NOT NULL,
  backend_id         text,
  prompt_tokens      integer NOT NULL DEFAULT 0,
  completion_tokens  integer NOT NULL DEFAULT 0,
  cost_usd           numeric(14, 6) NOT NULL DEFAULT 0,
  latency_ms         integer,
  ttft_ms            integer,
  -- miss | exact | semantic | coalesced (answered by an identical job in flight)
  cache_status       text NOT NULL,
  -- job rows: completed | failed | cancelled; attempt rows: ok or the error code
  outcome            text NOT NULL,
  created_at         timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX usage_ledger_job_once ON usage_ledger (job_id) WHERE kind = 'job';
CREATE INDEX usage_ledger_key_time ON usage_ledger (api_key_id, created_at) WHERE kind = 'job';
CREATE INDEX usage_ledger_job ON usage_ledger (job_id);
