import { z } from 'zod';

export const RAG_LIMITS = {
  maxTopK: 50,
  maxFilterKeys: 16,
  maxDocumentsPerRequest: 100,
  maxDocumentChars: 2_000_000,
  maxQueryChars: 8_000,
} as const;

/** Collection names: what may appear in a URL path segment without escaping. */
export const collectionNameSchema = z
  .string()
  .regex(/^[A-Za-z0-9._-]{1,64}$/, 'collection names are 1-64 letters, digits, dots, dashes or underscores');

const metadataValue = z.union([z.string().max(256), z.number(), z.boolean()]);

/** Chunk metadata to match exactly (JSON containment): `{"lang": "en", "year": 2024}`. */
export const metadataFilterSchema = z
  .record(z.string().min(1).max(64), metadataValue)
  .refine((f) => Object.keys(f).length <= RAG_LIMITS.maxFilterKeys, {
    message: `at most ${RAG_LIMITS.maxFilterKeys} filter keys`,
  });
export type MetadataFilter = z.infer<typeof metadataFilterSchema>;

/** A document's metadata, copied to its chunks so that searches can filter on it. */
export const documentMetadataSchema = z
  .record(z.string().min(1).max(64), metadataValue)
  .refine((m) => Object.keys(m).length <= 32, { message: 'at most 32 metadata keys' });

/** The primary's WAL position a write returned: reads carrying it see that write. */
export const consistencyTokenSchema = z
  .string()
  .regex(
    /^[0-9A-F]{1,8}\/[0-9A-F]{1,8}$/i,
    'a consistency token as an ingestion returned it (e.g. "0/16B3748")',
  );

/** `rag` on a generation request: answer from the tenant's collection. */
export const ragOptionsSchema = z.strictObject({
  collection: collectionNameSchema,
  topK: z.number().int().min(1).max(RAG_LIMITS.maxTopK).default(5),
  /** Least cosine similarity a chunk needs to be used. */
  minScore: z.number().min(-1).max(1).default(0),
  filter: metadataFilterSchema.optional(),
  consistencyToken: consistencyTokenSchema.optional(),
});
export type RagOptions = z.output<typeof ragOptionsSchema>;

/** A chunk an answer was built from, as the job shows it. */
export interface SourceView {
  documentId: string;
  chunkId: string;
  title: string | null;
  seq: number;
  score: number;
}

export const documentInputSchema = z.strictObject({
  text: z.string().min(1).max(RAG_LIMITS.maxDocumentChars),
  title: z.string().min(1).max(256).optional(),
  metadata: documentMetadataSchema.optional(),
});

export const chunkingSchema = z
  .strictObject({
    maxTokens: z.number().int().min(16).max(8192).default(512),
    overlapTokens: z.number().int().min(0).max(4096).default(64),
  })
  .refine((c) => c.overlapTokens < c.maxTokens / 2, {
    message: 'overlapTokens must be under half of maxTokens',
    path: ['overlapTokens'],
  });

/** `POST /api/collections/:name/documents` as JSON. */
export const ingestRequestSchema = z.strictObject({
  documents: z.array(documentInputSchema).min(1).max(RAG_LIMITS.maxDocumentsPerRequest),
  chunking: chunkingSchema.optional(),
});
export type IngestRequest = z.infer<typeof ingestRequestSchema>;
