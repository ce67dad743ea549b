import { randomUUID } from 'node:crypto';
import type { Pool, QueryResult, QueryResultRow } from 'pg';
import { inTransaction } from '@llmq/db';

/** Where reads go: the primary, or a replica pool that honours a consistency token. */
export interface Reader {
  query<R extends QueryResultRow>(
    text: string,
    values?: unknown[],
    options?: { minLsn?: string | null },
  ): Promise<QueryResult<R>>;
}

export interface Collection {
  id: string;
  tenantId: string;
  name: string;
  embeddingModel: string;
  dimensions: number;
  createdAt: Date;
}

export interface NewDocument {
  title: string | null;
  contentType: string;
  content: string;
  metadata: Record<string, MetadataValue>;
}

export type MetadataValue = string | number | boolean;

export interface DocumentRecord {
  id: string;
  title: string | null;
  contentType: string;
  content: string;
  metadata: Record<string, MetadataValue>;
  status: 'pending' | 'ready' | 'failed';
  chunks: number;
}

export type IngestionStatus = 'queued' | 'in_progress' | 'completed' | 'failed';

export interface Ingestion {
  id: string;
  tenantId: string;
  collectionId: string;
  collection: string;
  status: IngestionStatus;
  chunkTokens: number;
  chunkOverlap: number;
  documentsTotal: number;
  documentsDone: number;
  chunksDone: number;
  consistencyToken: string | null;
  error: { code: string; message: string } | null;
  createdAt: Date;
  completedAt: Date | null;
}

/** One retrieved chunk, best first; `score` is the cosine similarity (1 = same direction). */
export interface SearchHit {
  chunkId: string;
  documentId: string;
  title: string | null;
  seq: number;
  content: string;
  tokens: number;
  metadata: Record<string, MetadataValue>;
  score: number;
}

export interface StoredChunk {
  seq: number;
  content: string;
  tokens: number;
  embedding: number[];
}

/** An ingestion writing at least this many chunks refreshes the planner's statistics. */
const ANALYZE_AFTER_CHUNKS = 500;

/** pgvector's text form of a vector. */
export const vectorLiteral = (v: number[]) => `[${v.join(',')}]`;

const COLLECTION_COLUMNS = 'id, tenant_id, name, embedding_model, dimensions, created_at';
const INGESTION_COLUMNS = `i.id, i.tenant_id, i.collection_id, c.name AS collection, i.status, i.chunk_tokens,
  i.chunk_overlap, i.documents_total, i.documents_done, i.chunks_done, i.consistency_token, i.error,
  i.created_at, i.completed_at`;

interface CollectionRow {
  id: string;
  tenant_id: string;
  name: string;
  embedding_model: string;
  dimensions: number;
  created_at: Date;
}

interface IngestionRow {
  id: string;
  tenant_id: string;
  collection_id: string;
  collection: string;
  status: IngestionStatus;
  chunk_tokens: number;
  chunk_overlap: number;
  documents_total: number;
  documents_done: number;
  chunks_done: number;
  consistency_token: string | null;
  error: { code: string; message: string } | null;
  created_at: Date;
  completed_at: Date | null;
}

const toCollection = (r: CollectionRow): Collection => ({
  id: r.id,
  tenantId: r.tenant_id,
  name: r.name,
  embeddingModel: r.embedding_model,
  dimensions: r.dimensions,
  createdAt: r.created_at,
});

const toIngestion = (r: IngestionRow): Ingestion => ({
  id: r.id,
  tenantId: r.tenant_id,
  collectionId: r.collection_id,
  collection: r.collection,
  status: r.status,
  chunkTokens: r.chunk_tokens,
  chunkOverlap: r.chunk_overlap,
  documentsTotal: r.documents_total,
  documentsDone: r.documents_done,
  chunksDone: r.chunks_done,
  consistencyToken: r.consistency_token,
  error: r.error,
  createdAt: r.created_at,
  completedAt: r.completed_at,
});

/** The primary's WAL position now: a read carrying it sees everything committed before. */
async function walPosition(pool: Pool): Promise<string | null> {
  try {
    const { rows } = await pool.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
    return rows[0]?.lsn ?? null;
  } catch {
    return null; // a server without WAL functions (none we know of) has no replicas either
  }
}

/**
 * Collections, documents, chunks and ingestions. Every method takes the tenant and every query
 * names it: there is no way to read or change another tenant's data through this class, whatever
 * the other arguments (collection names, ids, metadata filters) say. Writes go to the primary;
 * searches go to the reader (replicas), with the consistency token of the caller's last write.
 */
export class RagRepository {
  private readonly reader: Reader;

  /** Without a reader (no replicas), reads go to the primary. */
  constructor(
    private readonly primary: Pool,
    reader?: Reader,
  ) {
    // pg's Pool.query takes a callback as its third argument: never hand it the read options.
    this.reader = reader ?? { query: (text, values) => primary.query(text, values) };
  }

  async getCollection(tenantId: string, name: string, minLsn?: string | null): Promise<Collection | null> {
    const { rows } = await this.reader.query<CollectionRow>(
      `SELECT ${COLLECTION_COLUMNS} FROM collections WHERE tenant_id = $1 AND name = $2`,
      [tenantId, name],
      { minLsn: minLsn ?? null },
    );
    return rows[0] ? toCollection(rows[0]) : null;
  }

  /** The collection, created with this embedding model if it does not exist yet. */
  async ensureCollection(
    tenantId: string,
    name: string,
    embeddingModel: string,
    dimensions: number,
  ): Promise<Collection> {
    await this.primary.query(
      `INSERT INTO collections (id, tenant_id, name, embedding_model, dimensions) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (tenant_id, name) DO NOTHING`,
      [randomUUID(), tenantId, name, embeddingModel, dimensions],
    );
    const { rows } = await this.primary.query<CollectionRow>(
      `SELECT ${COLLECTION_COLUMNS} FROM collections WHERE tenant_id = $1 AND name = $2`,
      [tenantId, name],
    );
    return toCollection(rows[0] as CollectionRow);
  }

  /** The tenant's collections with their document and chunk counts. */
  async listCollections(tenantId: string): Promise<(Collection & { documents: number; chunks: number })[]> {
    const { rows } = await this.reader.query<CollectionRow & { documents: string; chunks: string }>(
      `SELECT ${COLLECTION_COLUMNS.split(', ')
        .map((c) => `c.${c}`)
        .join(', ')},
              (SELECT count(*) FROM documents d WHERE d.collection_id = c.id) AS documents,
              (SELECT coalesce(sum(d.chunks), 0) FROM documents d WHERE d.collection_id = c.id) AS chunks
       FROM collections c WHERE c.tenant_id = $1 ORDER BY c.name`,
      [tenantId],
    );
    return rows.map((r) => ({
      ...toCollection(r),
      documents: Number(r.documents),
      chunks: Number(r.chunks),
    }));
  }

  /** Records an ingestion and its documents in one transaction. */
  async createIngestion(
    collection: Collection,
    documents: NewDocument[],
    chunking: { maxTokens: number; overlapTokens: number },
  ): Promise<{ ingestion: Ingestion; documentIds: string[] }> {
    const id = randomUUID();
    const documentIds = documents.map(() => randomUUID());
    await inTransaction(this.primary, async (client) => {
      await client.query(
        `INSERT INTO ingestions (id, tenant_id, collection_id, status, chunk_tokens, chunk_overlap, documents_total)
         VALUES ($1, $2, $3, 'queued', $4, $5, $6)`,
        [
          id,
          collection.tenantId,
          collection.id,
          chunking.maxTokens,
          chunking.overlapTokens,
          documents.length,
        ],
      );
      await client.query(
        `INSERT INTO documents (id, tenant_id, collection_id, ingestion_id, title, content_type, content, metadata, status)
         SELECT d.id, $1, $2, $3, d.title, d.content_type, d.content, d.metadata, 'pending'
         FROM unnest($4::uuid[], $5::text[], $6::text[], $7::text[], $8::jsonb[])
           AS d(id, title, content_type, content, metadata)`,
        [
          collection.tenantId,
          collection.id,
          id,
          documentIds,
          documents.map((d) => d.title),
          documents.map((d) => d.contentType),
          documents.map((d) => d.content),
          documents.map((d) => JSON.stringify(d.metadata)),
        ],
      );
    });
    return { ingestion: (await this.getIngestion(collection.tenantId, id))!, documentIds };
  }

  /** An ingestion of the tenant, read from the primary (progress must not go backwards). */
  async getIngestion(tenantId: string, id: string): Promise<Ingestion | null> {
    const { rows } = await this.primary.query<IngestionRow>(
      `SELECT ${INGESTION_COLUMNS} FROM ingestions i JOIN collections c ON c.id = i.collection_id
       WHERE i.tenant_id = $1 AND i.id = $2`,
      [tenantId, id],
    );
    return rows[0] ? toIngestion(rows[0]) : null;
  }

  /** Marks an ingestion started; returns its documents still to do (a re-run skips finished ones). */
  async startIngestion(tenantId: string, id: string): Promise<DocumentRecord[]> {
    await this.primary.query(
      `UPDATE ingestions SET status = 'in_progress' WHERE tenant_id = $1 AND id = $2 AND status IN ('queued', 'in_progress')`,
      [tenantId, id],
    );
    const { rows } = await this.primary.query<{
      id: string;
      title: string | null;
      content_type: string;
      content: string;
      metadata: Record<string, MetadataValue>;
      status: DocumentRecord['status'];
      chunks: number;
    }>(
      `SELECT id, title, content_type, content, metadata, status, chunks FROM documents
       WHERE tenant_id = $1 AND ingestion_id = $2 AND status = 'pending' ORDER BY created_at, id`,
      [tenantId, id],
    );
    return rows.map((r) => ({
      id: r.id,
      title: r.title,
      contentType: r.content_type,
      content: r.content,
      metadata: r.metadata,
      status: r.status,
      chunks: r.chunks,
    }));
  }

  /**
   * Stores one document's chunks and marks it ready, in one transaction; a document stored
   * before (a re-run after a crash) is replaced, never doubled.
   */
  async storeChunks(
    tenantId: string,
    ingestionId: string,
    collectionId: string,
    document: DocumentRecord,
    chunks: StoredChunk[],
  ): Promise<void> {
    await inTransaction(this.primary, async (client) => {
      await client.query(`DELETE FROM chunks WHERE tenant_id = $1 AND document_id = $2`, [
        tenantId,
        document.id,
      ]);
      if (chunks.length > 0) {
        await client.query(
          `INSERT INTO chunks (tenant_id, collection_id, document_id, seq, content, tokens, metadata, embedding)
           SELECT $1, $2, $3, c.seq, c.content, c.tokens, $4::jsonb, c.embedding::vector
           FROM unnest($5::int[], $6::text[], $7::int[], $8::text[]) AS c(seq, content, tokens, embedding)`,
          [
            tenantId,
            collectionId,
            document.id,
            JSON.stringify(document.metadata),
            chunks.map((c) => c.seq),
            chunks.map((c) => c.content),
            chunks.map((c) => c.tokens),
            chunks.map((c) => vectorLiteral(c.embedding)),
          ],
        );
      }
      const { rowCount } = await client.query(
        `UPDATE documents SET status = 'ready', chunks = $3 WHERE tenant_id = $1 AND id = $2 AND status = 'pending'`,
        [tenantId, document.id, chunks.length],
      );
      if (rowCount === 1) {
        await client.query(
          `UPDATE ingestions SET documents_done = documents_done + 1, chunks_done = chunks_done + $3
           WHERE tenant_id = $1 AND id = $2`,
          [tenantId, ingestionId, chunks.length],
        );
      }
    });
  }

  /** Completes an ingestion with the primary's WAL position, the token that reads its chunks. */
  async finishIngestion(
    tenantId: string,
    id: string,
    options: { chunksWritten?: number } = {},
  ): Promise<string | null> {
    // Until the planner has statistics it sorts every chunk instead of using the HNSW index (the
    // bench found searches exact and seconds long at 100k chunks). Autovacuum analyzes in time on
    // a real server, not on PGlite, and not right after a big load: a big ingestion does it now.
    if ((options.chunksWritten ?? 0) >= ANALYZE_AFTER_CHUNKS) {
      await this.primary.query('ANALYZE chunks').catch(() => undefined); // needs ownership; best effort
    }
    const token = await walPosition(this.primary);
    await this.primary.query(
      `UPDATE ingestions SET status = 'completed', consistency_token = $3, completed_at = now()
       WHERE tenant_id = $1 AND id = $2`,
      [tenantId, id, token],
    );
    return token;
  }

  async failIngestion(tenantId: string, id: string, error: { code: string; message: string }): Promise<void> {
    await this.primary.query(
      `UPDATE ingestions SET status = 'failed', error = $3, completed_at = now() WHERE tenant_id = $1 AND id = $2`,
      [tenantId, id, JSON.stringify(error)],
    );
    await this.primary.query(
      `UPDATE documents SET status = 'failed' WHERE tenant_id = $1 AND ingestion_id = $2 AND status = 'pending'`,
      [tenantId, id],
    );
  }

  /**
   * Deletes a document and its chunks. Returns null when the tenant's collection has no such
   * document (nothing is changed), else the consistency token of the delete.
   */
  async deleteDocument(
    tenantId: string,
    collectionId: string,
    documentId: string,
  ): Promise<{ consistencyToken: string | null } | null> {
    const deleted = await inTransaction(this.primary, async (client) => {
      const { rowCount } = await client.query(
        `DELETE FROM documents WHERE tenant_id = $1 AND collection_id = $2 AND id = $3`,
        [tenantId, collectionId, documentId],
      );
      if (rowCount !== 1) return false;
      await client.query(`DELETE FROM chunks WHERE tenant_id = $1 AND document_id = $2`, [
        tenantId,
        documentId,
      ]);
      return true;
    });
    return deleted ? { consistencyToken: await walPosition(this.primary) } : null;
  }

  /** Deletes a collection with its documents, chunks and ingestions; null when there was none. */
  async deleteCollection(
    tenantId: string,
    name: string,
  ): Promise<{ consistencyToken: string | null } | null> {
    const deleted = await inTransaction(this.primary, async (client) => {
      const { rows } = await client.query<{ id: string }>(
        `DELETE FROM collections WHERE tenant_id = $1 AND name = $2 RETURNING id`,
        [tenantId, name],
      );
      const id = rows[0]?.id;
      if (!id) return false;
      await client.query(`DELETE FROM chunks WHERE tenant_id = $1 AND collection_id = $2`, [tenantId, id]);
      return true;
    });
    return deleted ? { consistencyToken: await walPosition(this.primary) } : null;
  }

  /**
   * The k chunks of the tenant's collection nearest to the query embedding (cosine, HNSW),
   * optionally only those whose metadata contains `filter`, each with its document's title.
   */
  async search(
    tenantId: string,
    collectionId: string,
    embedding: number[],
    options: { k: number; minScore?: number; filter?: Record<string, MetadataValue>; minLsn?: string | null },
  ): Promise<SearchHit[]> {
    const filter = options.filter && Object.keys(options.filter).length > 0 ? options.filter : null;
    const { rows } = await this.reader.query<{
      id: string;
      document_id: string;
      title: string | null;
      seq: number;
      content: string;
      tokens: number;
      metadata: Record<string, MetadataValue>;
      distance: number;
    }>(
      `SELECT s.id, s.document_id, d.title, s.seq, s.content, s.tokens, s.metadata, s.distance
       FROM (
         SELECT c.id::text AS id, c.document_id, c.seq, c.content, c.tokens, c.metadata,
                c.embedding <=> $3::vector AS distance
         FROM chunks c
         WHERE c.tenant_id = $1 AND c.collection_id = $2 AND ($5::jsonb IS NULL OR c.metadata @> $5::jsonb)
         ORDER BY c.embedding <=> $3::vector
         LIMIT $4
       ) s
       JOIN documents d ON d.id = s.document_id AND d.tenant_id = $1
       ORDER BY s.distance, s.id`,
      [
        tenantId,
        collectionId,
        vectorLiteral(embedding),
        options.k,
        filter === null ? null : JSON.stringify(filter),
      ],
      { minLsn: options.minLsn ?? null },
    );
    const minScore = options.minScore ?? -1;
    return rows
      .map((r) => ({
        chunkId: r.id,
        documentId: r.document_id,
        title: r.title,
        seq: r.seq,
        content: r.content,
        tokens: r.tokens,
        metadata: r.metadata,
        score: 1 - Number(r.distance),
      }))
      .filter((h) => h.score >= minScore);
  }
}
