-- Conversations kept server-side: each request naming a conversation adds a turn. A turn is a
-- job (its messages are the job's spec, its reply the job's result), so history needs no copy.
-- `next_seq` hands out turn numbers under the conversation row's lock: turns are numbered in
-- the order they commit, and workers run them in that order.

CREATE TABLE conversations (
  tenant_id   text NOT NULL,
  id          text NOT NULL,
  next_seq    integer NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id)
);

CREATE TABLE conversation_turns (
  tenant_id        text NOT NULL,
  conversation_id  text NOT NULL,
  seq              integer NOT NULL,
  job_id           uuid NOT NULL UNIQUE REFERENCES jobs (id) ON DELETE CASCADE,
  PRIMARY KEY (tenant_id, conversation_id, seq),
  FOREIGN KEY (tenant_id, conversation_id) REFERENCES conversations (tenant_id, id) ON DELETE CASCADE
);
