import {
  RAG_LIMITS,
  chunkingSchema,
  collectionNameSchema,
  consistencyTokenSchema,
  documentMetadataSchema,
  ingestRequestSchema,
  metadataFilterSchema,
} from '@llmq/contracts';
import type { Ingestion, NewDocument } from '@llmq/rag';
import { EMBEDDING_DIMENSIONS } from '@llmq/rag';
import busboy from 'busboy';
import { Router, json, type Request, type Response } from 'express';
import { z } from 'zod';
import type { ApiDeps } from '../deps';
import { HttpError, fromZod, notFound, serviceUnavailable } from '../errors';
import { isJobId } from './views';

const TEXT_TYPES = new Set(['text/plain', 'text/markdown', 'text/x-markdown']);
const TEXT_EXTENSIONS = /\.(txt|md|markdown|text)$/i;

function parseOr400<S extends z.ZodType>(schema: S, value: unknown, field?: string): z.output<S> {
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    if (field) {
      throw new HttpError(400, 'invalid_request', parsed.error.issues[0]?.message ?? 'invalid', { field });
    }
    throw fromZod(parsed.error);
  }
  return parsed.data;
}

const collectionName = (req: Request) => parseOr400(collectionNameSchema, req.params.name, 'name');

function ingestionView(i: Ingestion) {
  return {
    ingestionId: i.id,
    collection: i.collection,
    status: i.status,
    documentsTotal: i.documentsTotal,
    documentsDone: i.documentsDone,
    chunks: i.chunksDone,
    consistencyToken: i.consistencyToken,
    error: i.error,
    createdAt: i.createdAt.toISOString(),
    completedAt: i.completedAt?.toISOString() ?? null,
    pollUrl: `/api/ingestions/${i.id}`,
  };
}

/** The consistency token a read carries: `LLMQ-Consistency-Token`, or `?consistencyToken=`. */
function consistencyToken(req: Request): string | null {
  const raw = req.get('LLMQ-Consistency-Token') ?? req.query.consistencyToken;
  if (raw === undefined || raw === '') return null;
  return parseOr400(consistencyTokenSchema, raw, 'consistencyToken');
}

/**
 * Collections of documents per tenant, for retrieval-augmented generation. Uploads are queued as
 * ingestion jobs (chunked and embedded by workers); searches read replicas, fresh up to the
 * consistency token an ingestion or delete returned.
 */
export function collectionsRouter(deps: ApiDeps): Router {
  const router = Router();
  const parseJson = json({ limit: deps.settings.ingestBodyLimitBytes, strict: true });

  router.post('/collections/:name/documents', async (req, res) => {
    const name = collectionName(req);
    if (!deps.embedder) {
      throw new HttpError(
        422,
        'rag_unavailable',
        'no embeddings provider is configured (EMBEDDINGS_BASE_URL)',
      );
    }
    if (req.is('multipart/form-data')) {
      const upload = await readUpload(req, deps.settings.ingestBodyLimitBytes);
      return ingest(deps, req, res, name, upload.documents, upload.chunking);
    }
    if (!req.is('application/json')) {
      throw new HttpError(
        415,
        'unsupported_media_type',
        'send application/json ({documents: [...]}) or multipart/form-data (text or markdown files)',
      );
    }
    await new Promise<void>((resolve, reject) =>
      parseJson(req, res, (err?: unknown) => (err ? reject(err as Error) : resolve())),
    );
    const body = parseOr400(ingestRequestSchema, req.body);
    const documents = body.documents.map((d) => ({
      title: d.title ?? null,
      contentType: 'text/plain',
      content: d.text,
      metadata: d.metadata ?? {},
    }));
    return ingest(deps, req, res, name, documents, body.chunking);
  });

  router.get('/ingestions/:id', async (req, res) => {
    const id = String(req.params.id);
    const ingestion = isJobId(id) ? await deps.rag.getIngestion(req.principal!.tenantId, id) : null;
    if (!ingestion) throw notFound('ingestion');
    res.json(ingestionView(ingestion));
  });

  router.get('/collections', async (req, res) => {
    const list = await deps.rag.listCollections(req.principal!.tenantId);
    res.json({
      data: list.map((c) => ({
        name: c.name,
        embeddingModel: c.embeddingModel,
        dimensions: c.dimensions,
        documents: c.documents,
        chunks: c.chunks,
        createdAt: c.createdAt.toISOString(),
      })),
    });
  });

  router.get('/collections/:name/search', async (req, res) => {
    const name = collectionName(req);
    const q = parseOr400(z.string().min(1).max(RAG_LIMITS.maxQueryChars), req.query.q, 'q');
    const k = parseOr400(z.coerce.number().int().min(1).max(RAG_LIMITS.maxTopK).default(5), req.query.k, 'k');
    const minScore = parseOr400(z.coerce.number().min(-1).max(1).optional(), req.query.minScore, 'minScore');
    let filter: Record<string, string | number | boolean> | undefined;
    if (req.query.filter !== undefined) {
      let raw: unknown;
      try {
        raw = JSON.parse(String(req.query.filter));
      } catch {
        throw new HttpError(400, 'invalid_request', 'filter must be a JSON object', { field: 'filter' });
      }
      filter = parseOr400(metadataFilterSchema, raw, 'filter');
    }
    const minLsn = consistencyToken(req);
    if (!deps.embedder) {
      throw new HttpError(
        422,
        'rag_unavailable',
        'no embeddings provider is configured (EMBEDDINGS_BASE_URL)',
      );
    }
    const tenantId = req.principal!.tenantId;
    const collection = await deps.rag.getCollection(tenantId, name, minLsn);
    if (!collection) throw notFound('collection');
    const embedding = await deps.embedder.embed(q).catch((err: unknown) => {
      req.log.warn({ err }, 'embeddings provider failed for a search');
      throw serviceUnavailable('the embeddings provider is unavailable; retry shortly');
    });
    const hits = await deps.rag.search(tenantId, collection.id, embedding, {
      k,
      ...(minScore !== undefined ? { minScore } : {}),
      ...(filter ? { filter } : {}),
      minLsn,
    });
    res.json({
      collection: name,
      data: hits.map((h) => ({
        chunkId: h.chunkId,
        documentId: h.documentId,
        title: h.title,
        seq: h.seq,
        score: Math.round(h.score * 1e4) / 1e4,
        content: h.content,
        metadata: h.metadata,
      })),
    });
  });

  router.delete('/collections/:name/documents/:id', async (req, res) => {
    const name = collectionName(req);
    const tenantId = req.principal!.tenantId;
    const id = String(req.params.id);
    const collection = await deps.rag.getCollection(tenantId, name);
    const deleted =
      collection && isJobId(id) ? await deps.rag.deleteDocument(tenantId, collection.id, id) : null;
    if (!deleted) throw notFound('document');
    res.json({ deleted: true, ...deleted });
  });

  router.delete('/collections/:name', async (req, res) => {
    const deleted = await deps.rag.deleteCollection(req.principal!.tenantId, collectionName(req));
    if (!deleted) throw notFound('collection');
    res.json({ deleted: true, ...deleted });
  });

  return router;
}

async function ingest(
  deps: ApiDeps,
  req: Request,
  res: Response,
  name: string,
  documents: NewDocument[],
  chunkingInput: unknown,
): Promise<void> {
  const chunking = parseOr400(chunkingSchema, chunkingInput ?? {}, 'chunking');
  const tenantId = req.principal!.tenantId;
  const collection = await deps.rag.ensureCollection(
    tenantId,
    name,
    deps.settings.embeddingsModel,
    EMBEDDING_DIMENSIONS,
  );
  const { ingestion, documentIds } = await deps.rag.createIngestion(collection, documents, chunking);
  try {
    await deps.producer.enqueue('ingest', ingestion.id, { ingestionId: ingestion.id, tenantId });
  } catch (error) {
    req.log.warn({ err: error, ingestionId: ingestion.id }, 'enqueue of an ingestion failed');
    await deps.rag
      .failIngestion(tenantId, ingestion.id, {
        code: 'enqueue_failed',
        message: 'the job queue was unavailable',
      })
      .catch(() => undefined);
    throw serviceUnavailable('the job queue is unavailable; retry shortly');
  }
  res
    .status(202)
    .location(`/api/ingestions/${ingestion.id}`)
    .json({
      ...ingestionView(ingestion),
      documents: documentIds.map((documentId, i) => ({ documentId, title: documents[i]!.title })),
    });
}

/** Text and markdown files from a multipart form; `metadata` and `chunking` fields as JSON. */
async function readUpload(
  req: Request,
  limitBytes: number,
): Promise<{ documents: NewDocument[]; chunking: unknown }> {
  const files: { name: string | null; type: string; data: Buffer[]; size: number; truncated: boolean }[] = [];
  const fields = new Map<string, string>();
  await new Promise<void>((resolve, reject) => {
    let bb: busboy.Busboy;
    try {
      bb = busboy({
        headers: req.headers,
        limits: {
          files: RAG_LIMITS.maxDocumentsPerRequest,
          fileSize: Math.min(limitBytes, RAG_LIMITS.maxDocumentChars * 4),
          fields: 8,
          fieldSize: 64 * 1024,
        },
      });
    } catch (error) {
      reject(new HttpError(400, 'invalid_multipart', (error as Error).message));
      return;
    }
    let total = 0;
    bb.on('file', (_field, stream, info) => {
      const file = {
        name: info.filename ?? null,
        type: info.mimeType,
        data: [] as Buffer[],
        size: 0,
        truncated: false,
      };
      files.push(file);
      stream.on('data', (chunk: Buffer) => {
        total += chunk.length;
        file.size += chunk.length;
        if (total > limitBytes) {
          file.truncated = true;
          stream.resume();
          return;
        }
        file.data.push(chunk);
      });
      stream.on('limit', () => {
        file.truncated = true;
      });
    });
    bb.on('field', (fieldName, value) => fields.set(fieldName, value));
    bb.on('filesLimit', () =>
      reject(
        new HttpError(413, 'too_many_files', `at most ${RAG_LIMITS.maxDocumentsPerRequest} files per upload`),
      ),
    );
    bb.on('error', (error: Error) => reject(new HttpError(400, 'invalid_multipart', error.message)));
    bb.on('close', () => resolve());
    req.pipe(bb);
  });
  if (files.length === 0) {
    throw new HttpError(400, 'invalid_request', 'the form has no file', { field: 'file' });
  }
  const json = (field: string): unknown => {
    const raw = fields.get(field);
    if (raw === undefined) return undefined;
    try {
      return JSON.parse(raw);
    } catch {
      throw new HttpError(400, 'invalid_request', `${field} must be JSON`, { field });
    }
  };
  const metadata = parseOr400(documentMetadataSchema.optional(), json('metadata'), 'metadata') ?? {};
  const decoder = new TextDecoder('utf-8', { fatal: true });
  const documents = files.map((f) => {
    if (f.truncated)
      throw new HttpError(413, 'body_too_large', `file "${f.name ?? ''}" exceeds the size limit`);
    const textual = TEXT_TYPES.has(f.type) || (f.name !== null && TEXT_EXTENSIONS.test(f.name));
    if (!textual) {
      throw new HttpError(
        415,
        'unsupported_media_type',
        `file "${f.name ?? ''}" is ${f.type}; text/plain and text/markdown are accepted`,
        { field: 'file' },
      );
    }
    let content: string;
    try {
      content = decoder.decode(Buffer.concat(f.data));
    } catch {
      throw new HttpError(422, 'invalid_encoding', `file "${f.name ?? ''}" is not UTF-8 text`, {
        field: 'file',
      });
    }
    if (content.trim() === '') {
      throw new HttpError(422, 'empty_document', `file "${f.name ?? ''}" is empty`, { field: 'file' });
    }
    if (content.length > RAG_LIMITS.maxDocumentChars) {
      throw new HttpError(
        413,
        'document_too_large',
        `file "${f.name ?? ''}" has more than ${RAG_LIMITS.maxDocumentChars} characters`,
      );
    }
    const markdown = f.type.includes('markdown') || /\.(md|markdown)$/i.test(f.name ?? '');
    return {
      title: f.name ? f.name.slice(0, 256) : null,
      contentType: markdown ? 'text/markdown' : 'text/plain',
      content,
      metadata,
    };
  });
  return { documents, chunking: json('chunking') };
}
