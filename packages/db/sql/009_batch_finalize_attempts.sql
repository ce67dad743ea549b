-- A batch whose finalization keeps failing (its outputs cannot be built or stored) is retried
-- with a growing wait, then failed, instead of being retried by every sweep for ever while it
-- holds one of its tenant's open-batch slots.
ALTER TABLE batches
  -- Failed finalizations so far.
  ADD COLUMN finalize_attempts integer NOT NULL DEFAULT 0,
  -- Not finalized again before this (null: at once).
  ADD COLUMN next_finalize_at timestamptz;
