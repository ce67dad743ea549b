-- The second cache layer: longer-lived than Redis, survives its restarts. Keys are hashes of the
-- canonical request including its scope (the tenant unless a shared scope is configured).
CREATE TABLE cache_entries (
  key            text PRIMARY KEY,
  scope          text NOT NULL,
  model          text NOT NULL,
  result         text NOT NULL,
  finish_reason  text,
  usage          jsonb,
  created_at     timestamptz NOT NULL DEFAULT now(),
  expires_at     timestamptz NOT NULL
);
CREATE INDEX cache_entries_expires ON cache_entries (expires_at);
CREATE INDEX cache_entries_scope_model ON cache_entries (scope, model);
