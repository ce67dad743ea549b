export { chunkText } from './chunker';
export type { Chunk, ChunkOptions } from './chunker';
export { Embedder, EmbeddingDimensionError } from './embedder';
export type { EmbedderOptions } from './embedder';
export { buildRagPrompt } from './context';
export type { RagPrompt, Source } from './context';
export { RagRepository, vectorLiteral } from './repository';
export type {
  Collection,
  DocumentRecord,
  Ingestion,
  IngestionStatus,
  MetadataValue,
  NewDocument,
  Reader,
  SearchHit,
  StoredChunk,
} from './repository';
export { Retrieval, RetrievalError } from './retrieval';
export type { RetrievalOptions } from './retrieval';

/** The dimension of the `vector` columns (migrations 004 and 006): the embeddings model must match. */
export const EMBEDDING_DIMENSIONS = 384;
