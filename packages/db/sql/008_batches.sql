-- OpenAI Files and Batches. A batch's input is an uploaded JSONL file; each of its lines becomes
-- an ordinary job on the batch tier (batch_requests maps line and custom_id to the job), and the
-- outputs are files again. Ids are OpenAI-shaped and random (128 bits): "file-<hex>", "batch_<hex>".

-- Files live in Postgres: bounded in size by the API (FILE_UPLOAD_MAX_BYTES, and per tenant
-- FILE_STORAGE_MAX_BYTES), read whole by one worker when a batch is validated.
CREATE TABLE files (
  id           text PRIMARY KEY,
  tenant_id    text NOT NULL,
  -- The key that uploaded it; null for files llmq wrote (batch outputs).
  api_key_id   uuid,
  purpose      text NOT NULL CHECK (purpose IN ('batch', 'batch_output')),
  filename     text NOT NULL,
  bytes        integer NOT NULL CHECK (bytes >= 0),
  content      bytea NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX files_tenant_created ON files (tenant_id, created_at DESC, id DESC);

CREATE TABLE batches (
  id                 text PRIMARY KEY,
  tenant_id          text NOT NULL,
  -- The key that created it: its jobs are recorded under this key (usage ledger, usage reports).
  api_key_id         uuid,
  status             text NOT NULL CHECK (status IN ('validating', 'failed', 'in_progress', 'finalizing',
                       'completed', 'expired', 'cancelling', 'cancelled')),
  endpoint           text NOT NULL,
  completion_window  text NOT NULL,
  -- No foreign key: an input file may be deleted while its batch is kept (as OpenAI allows).
  input_file_id      text NOT NULL,
  output_file_id     text,
  error_file_id      text,
  -- Why validation failed: [{code, message, line, param}], line numbers of the input file.
  errors             jsonb,
  metadata           jsonb,
  created_at         timestamptz NOT NULL DEFAULT now(),
  in_progress_at     timestamptz,
  expires_at         timestamptz NOT NULL,
  finalizing_at      timestamptz,
  completed_at       timestamptz,
  failed_at          timestamptz,
  -- Set when the completion window passed with requests still queued (they are cancelled then);
  -- the batch ends as 'expired' once its running requests have finished.
  expired_at         timestamptz,
  cancelling_at      timestamptz,
  cancelled_at       timestamptz
);
CREATE INDEX batches_tenant_created ON batches (tenant_id, created_at DESC, id DESC);
-- Open batches: the per-tenant limit and the workers' sweep read only these.
CREATE INDEX batches_open ON batches (tenant_id)
  WHERE status IN ('validating', 'in_progress', 'finalizing', 'cancelling');

CREATE TABLE batch_requests (
  batch_id   text NOT NULL REFERENCES batches (id) ON DELETE CASCADE,
  -- The line of the input file (1-based, blank lines counted), so outputs keep the input's order.
  line       integer NOT NULL,
  custom_id  text NOT NULL,
  job_id     uuid NOT NULL UNIQUE REFERENCES jobs (id) ON DELETE CASCADE,
  PRIMARY KEY (batch_id, line),
  UNIQUE (batch_id, custom_id)
);
