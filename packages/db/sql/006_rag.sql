-- Retrieval-augmented generation: collections of documents per tenant, their chunks with
-- embeddings (pgvector, HNSW on cosine distance), and the ingestion jobs that fill them.

CREATE TABLE collections (
  id                uuid PRIMARY KEY,
  tenant_id         text NOT NULL,
  name              text NOT NULL,
  embedding_model   text NOT NULL,
  dimensions        integer NOT NULL,
  created_at        timestamptz NOT NULL DEFAULT now(),
  UNIQUE (tenant_id, name)
);

CREATE TABLE ingestions (
  id                 uuid PRIMARY KEY,
  tenant_id          text NOT NULL,
  collection_id      uuid NOT NULL REFERENCES collections (id) ON DELETE CASCADE,
  status             text NOT NULL CHECK (status IN ('queued', 'in_progress', 'completed', 'failed')),
  chunk_tokens       integer NOT NULL,
  chunk_overlap      integer NOT NULL,
  documents_total    integer NOT NULL,
  documents_done     integer NOT NULL DEFAULT 0,
  chunks_done        integer NOT NULL DEFAULT 0,
  -- The primary's WAL position once the chunks are written: reads carrying it see them.
  consistency_token  text,
  error              jsonb,
  created_at         timestamptz NOT NULL DEFAULT now(),
  completed_at       timestamptz
);
CREATE INDEX ingestions_tenant ON ingestions (tenant_id, created_at DESC);

CREATE TABLE documents (
  id             uuid PRIMARY KEY,
  tenant_id      text NOT NULL,
  collection_id  uuid NOT NULL REFERENCES collections (id) ON DELETE CASCADE,
  ingestion_id   uuid NOT NULL,
  title          text,
  content_type   text NOT NULL,
  content        text NOT NULL,
  metadata       jsonb NOT NULL DEFAULT '{}',
  status         text NOT NULL CHECK (status IN ('pending', 'ready', 'failed')),
  chunks         integer NOT NULL DEFAULT 0,
  created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX documents_collection ON documents (collection_id, created_at);
CREATE INDEX documents_ingestion ON documents (ingestion_id);

-- Chunks are partitioned by tenant: every query names its tenant, so it reads one partition,
-- and the HNSW index of each partition holds one slice of tenants' vectors.
CREATE TABLE chunks (
  tenant_id      text NOT NULL,
  id             bigserial,
  collection_id  uuid NOT NULL,
  document_id    uuid NOT NULL,
  seq            integer NOT NULL,
  content        text NOT NULL,
  tokens         integer NOT NULL,
  metadata       jsonb NOT NULL DEFAULT '{}',
  embedding      vector(384) NOT NULL,
  PRIMARY KEY (tenant_id, id)
) PARTITION BY HASH (tenant_id);
CREATE TABLE chunks_p0 PARTITION OF chunks FOR VALUES WITH (MODULUS 8, REMAINDER 0);
CREATE TABLE chunks_p1 PARTITION OF chunks FOR VALUES WITH (MODULUS 8, REMAINDER 1);
CREATE TABLE chunks_p2 PARTITION OF chunks FOR VALUES WITH (MODULUS 8, REMAINDER 2);
CREATE TABLE chunks_p3 PARTITION OF chunks FOR VALUES WITH (MODULUS 8, REMAINDER 3);
CREATE TABLE chunks_p4 PARTITION OF chunks FOR VALUES WITH (MODULUS 8, REMAINDER 4);
CREATE TABLE chunks_p5 PARTITION OF chunks FOR VALUES WITH (MODULUS 8, REMAINDER 5);
CREATE TABLE chunks_p6 PARTITION OF chunks FOR VALUES WITH (MODULUS 8, REMAINDER 6);
CREATE TABLE chunks_p7 PARTITION OF chunks FOR VALUES WITH (MODULUS 8, REMAINDER 7);
CREATE INDEX chunks_embedding ON chunks USING hnsw (embedding vector_cosine_ops);
CREATE INDEX chunks_document ON chunks (tenant_id, document_id, seq);
CREATE INDEX chunks_collection ON chunks (tenant_id, collection_id);

-- The sources a RAG answer was built from, returned with the job.
ALTER TABLE jobs ADD COLUMN sources jsonb;

-- Filtered HNSW searches (a tenant, a collection, metadata) must not come back short: pgvector's
-- iterative scan keeps walking the graph until enough rows pass the filter. Set for every new
-- session of this database (replicas included, the setting replicates), and for this one.
DO $$
BEGIN
  EXECUTE format('ALTER DATABASE %I SET hnsw.iterative_scan = relaxed_order', current_database());
  EXECUTE format('ALTER DATABASE %I SET hnsw.ef_search = 100', current_database());
EXCEPTION WHEN insufficient_privilege THEN
  RAISE NOTICE 'not allowed to set hnsw defaults on the database; set hnsw.iterative_scan = relaxed_order for the role instead';
END $$;
SET hnsw.iterative_scan = relaxed_order;
SET hnsw.ef_search = 100;
