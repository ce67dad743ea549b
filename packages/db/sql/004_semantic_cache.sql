-- The semantic cache layer: prompt embeddings per scope and model, searched by cosine distance
-- (HNSW). The dimension is the embedding model's; another model needs a new column.
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE cache_embeddings (
  key         text PRIMARY KEY REFERENCES cache_entries (key) ON DELETE CASCADE,
  scope       text NOT NULL,
  model       text NOT NULL,
  embedding   vector(384) NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cache_embeddings_hnsw ON cache_embeddings USING hnsw (embedding vector_cosine_ops);
CREATE INDEX cache_embeddings_scope_model ON cache_embeddings (scope, model);
