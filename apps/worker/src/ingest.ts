import { JOB_CATALOG } from '@llmq/queue';
import { EmbeddingDimensionError, chunkText, type Embedder, type RagRepository } from '@llmq/rag';
import { UnrecoverableError, type Job } from 'bullmq';
import type { Logger } from 'pino';

export interface IngestDeps {
  rag: RagRepository;
  embedder: Embedder;
  logger: Logger;
}

/**
 * Runs one ingestion: each pending document is chunked (token-aware), embedded in batches, and
 * its chunks written on the primary in one transaction with its `ready` mark, so a run that dies
 * half-way resumes with the documents not yet done, and none is stored twice. The ingestion ends
 * with the primary's WAL position: the consistency token that reads of its chunks carry.
 */
export function createIngestProcessor(deps: IngestDeps) {
  return async function processIngest(job: Job): Promise<{ status: string; chunks?: number }> {
    const { ingestionId, tenantId } = JOB_CATALOG.ingest.payload.parse(job.data);
    const log = deps.logger.child({ ingestionId });
    const ingestion = await deps.rag.getIngestion(tenantId, ingestionId);
    if (!ingestion || ingestion.status === 'completed' || ingestion.status === 'failed') {
      return { status: 'skipped' };
    }
    try {
      const documents = await deps.rag.startIngestion(tenantId, ingestionId);
      let chunks = 0;
      for (const document of documents) {
        const pieces = chunkText(document.content, {
          maxTokens: ingestion.chunkTokens,
          overlapTokens: ingestion.chunkOverlap,
        });
        const embeddings = await deps.embedder.embedMany(pieces.map((p) => p.content));
        await deps.rag.storeChunks(
          tenantId,
          ingestionId,
          ingestion.collectionId,
          document,
          pieces.map((p, i) => ({ ...p, embedding: embeddings[i]! })),
        );
        chunks += pieces.length;
        await job.updateProgress({ documentId: document.id, chunks: pieces.length }).catch(() => undefined);
      }
      const token = await deps.rag.finishIngestion(tenantId, ingestionId, { chunksWritten: chunks });
      log.info({ documents: documents.length, chunks, token }, 'ingestion completed');
      return { status: 'completed', chunks };
    } catch (error) {
      // A wrong embedding dimension does not heal by retrying; anything else gets BullMQ's attempts.
      const final =
        error instanceof EmbeddingDimensionError || job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
      log.warn({ err: error, attempt: job.attemptsMade + 1, final }, 'ingestion attempt failed');
      if (!final) throw error;
      const message = error instanceof Error ? error.message : String(error);
      const code =
        error instanceof EmbeddingDimensionError ? 'embedding_dimension_mismatch' : 'ingestion_failed';
      await deps.rag.failIngestion(tenantId, ingestionId, { code, message });
      throw new UnrecoverableError(message);
    }
  };
}
