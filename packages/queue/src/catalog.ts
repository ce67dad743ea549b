import { DEFAULT_PRIORITY, generationSpecSchema, prioritySchema, type Priority } from '@llmq/contracts';
import type { JobsOptions } from 'bullmq';
import { z } from 'zod';

/**
 * The generate queue of each priority tier. Interactive keeps the original name, so jobs
 * queued before tiers existed are still consumed; batch has its own queue, and workers give each
 * queue its own concurrency, so batch work can never occupy an interactive slot.
 */
export const GENERATE_QUEUES = {
  interactive: 'generate',
  batch: 'generate-batch',
} as const satisfies Record<Priority, string>;

/** The BullMQ queue a generate job of this priority goes to. @defaultValue priority "interactive" */
export function generateQueueName(priority: Priority = DEFAULT_PRIORITY): string {
  return GENERATE_QUEUES[priority];
}

/** Ingestions and batch control jobs: nobody waits on them, so they retry more and longer. */
const BACKGROUND_JOB_OPTIONS = {
  attempts: 5,
  backoff: { type: 'exponential', delay: 2000 },
  removeOnComplete: { age: 3600, count: 1000 },
  removeOnFail: { age: 24 * 3600, count: 5000 },
} as const satisfies JobsOptions;

/**
 * The one catalog of jobs: name → payload schema, queues (one per priority tier) and retry
 * policy, used by the API (producer) and the worker (consumer) alike so the two cannot drift.
 */
export const JOB_CATALOG = {
  generate: {
    queues: GENERATE_QUEUES,
    payload: z.object({
      jobId: z.uuid(),
      tenantId: z.string(),
      spec: generationSpecSchema,
      /** Picks the queue. Jobs queued before tiers existed have none: they are interactive. */
      priority: prioritySchema.default(DEFAULT_PRIORITY),
      /** Where to store the answer in the response cache, when it may be stored. */
      cache: z
        .object({ key: z.string(), scope: z.string(), embedding: z.array(z.number()).max(8192).optional() })
        .optional(),
      /** For a RAG job whose answer may be cached: the scope; the worker keys the prompt it builds. */
      ragCacheScope: z.string().optional(),
      /** W3C trace context of the submission, so the worker's span joins the request's trace. */
      trace: z
        .object({ traceparent: z.string().max(128), tracestate: z.string().max(512).optional() })
        .optional(),
    }),
    options: {
      attempts: 3,
      backoff: { type: 'exponential', delay: 1000 },
      // The job row in Postgres is the record; BullMQ keeps only a short tail.
      removeOnComplete: { age: 3600, count: 1000 },
      removeOnFail: { age: 24 * 3600, count: 5000 },
    } satisfies JobsOptions,
  },
  /** Chunking and embedding the documents of one ingestion; one queue, whatever the priority. */
  ingest: {
    queues: { interactive: 'ingest', batch: 'ingest' },
    payload: z.object({
      ingestionId: z.uuid(),
      tenantId: z.string(),
      priority: prioritySchema.default('batch'),
    }),
    options: BACKGROUND_JOB_OPTIONS,
  },
  /**
   * The control job of an OpenAI batch (its BullMQ id is the batch id): validates the input file
   * and expands its lines into `generate` jobs of the batch tier, off the API's request path.
   * Idempotent: a batch already expanded only has its queued jobs enqueued again.
   */
  batch: {
    queues: { interactive: 'batches', batch: 'batches' },
    payload: z.object({
      batchId: z.string().regex(/^batch_[0-9a-f]{32}$/),
      tenantId: z.string(),
      priority: prioritySchema.default('batch'),
    }),
    options: BACKGROUND_JOB_OPTIONS,
  },
} as const;

export type JobName = keyof typeof JOB_CATALOG;
/** What a producer passes to `enqueue` (defaults such as `priority` may be left out). */
export type JobPayload<N extends JobName> = z.input<(typeof JOB_CATALOG)[N]['payload']>;
/** A queued job's data after parsing, as a consumer sees it (defaults filled in). */
export type JobData<N extends JobName> = z.output<(typeof JOB_CATALOG)[N]['payload']>;
