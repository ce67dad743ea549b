import type { Priority } from '@llmq/contracts';
import type { JobRepository } from '@llmq/db';
import type { Accounting } from '@llmq/rate-limit';
import type { Retrieval } from '@llmq/rag';
import {
  JOB_CATALOG,
  generateQueueName,
  type CancelBus,
  type EventStream,
  type Redis,
  type SingleFlight,
} from '@llmq/queue';
import { Worker } from 'bullmq';
import type { ResponseCache } from '@llmq/cache';
import type { LlmClient } from '@llmq/llm';
import type { Logger } from 'pino';
import { createBatchProcessor, type BatchDeps } from './batches';
import type { ConversationHistory } from './conversation';
import { createIngestProcessor, type IngestDeps } from './ingest';
import { createGenerateProcessor, recordQueueFailure, type JobMetrics } from './pipeline';
import { withJobSpan } from './job-span';

export interface WorkerDeps {
  connection: Redis;
  prefix: string;
  jobs: JobRepository;
  events: EventStream;
  cancels: CancelBus;
  logger: Logger;
  llm: LlmClient;
  /** How long a job may wait, from its submission, for provider capacity, per tier. */
  maxJobWaitMs: Record<Priority, number>;
  cache: ResponseCache | null;
  flights: SingleFlight | null;
  /** The priority tiers this process consumes; each gets a BullMQ worker of its own. */
  queues: readonly Priority[];
  /** Jobs run at once, per tier. Tiers never share slots, so batch work cannot hold up interactive work. */
  concurrency: Record<Priority, number>;
  lockDurationMs: number;
  stalledIntervalMs: number;
  maxStalledCount: number;
  tokenCoalesceMs: number;
  /** The usage ledger and the settlement of the key's limits. */
  accounting: Accounting;
  /** RAG context for jobs that ask for it; null when no embeddings provider is configured. */
  retrieval: Retrieval | null;
  /** History of conversation turns; null: turns run with their own messages only. */
  conversations: ConversationHistory | null;
  /** How long a turn waits before it looks again whether the turn before it has finished. */
  turnWaitMs: number;
  /** Ingestion (chunking and embedding documents) in this process; null: not here. */
  ingest: { deps: IngestDeps; concurrency: number } | null;
  /** Control jobs of OpenAI batches (validation and expansion) in this process; null: not here. */
  batches: { deps: BatchDeps; concurrency: number } | null;
  /** Run and stall metrics; none when not given. */
  metrics?: JobMetrics;
  /**
   * Names this process' BullMQ workers (e.g. `host:pid`), so the API's scaling report counts a
   * process consuming several queues once.
   */
  name?: string;
}

/** The consumers of one process: a BullMQ worker per consumed priority tier, started and closed together. */
export interface WorkerGroup {
  readonly workers: ReadonlyMap<Priority, Worker>;
  /** The consumer of the ingest queue, when this process ingests. */
  readonly ingest: Worker | null;
  /** Starts every worker; resolves once all of them have stopped. */
  run(): Promise<void>;
  /** Stops taking jobs on every queue and waits for the running ones to finish (the drain). */
  close(): Promise<void>;
}

/** The BullMQ consumers of the generate queues this process is configured for. */
export function createWorker(deps: WorkerDeps): WorkerGroup {
  if (deps.queues.length === 0) throw new Error('a worker must consume at least one queue');
  const processor = createGenerateProcessor(deps);
  const workers = new Map<Priority, Worker>();
  for (const priority of new Set(deps.queues)) {
    workers.set(priority, consumer(deps, priority, processor));
  }
  const ingest = deps.ingest ? ingestConsumer(deps, deps.ingest) : null;
  const batches = deps.batches
    ? bullWorker(
        deps,
        JOB_CATALOG.batch.queues.batch,
        createBatchProcessor(deps.batches.deps),
        deps.batches.concurrency,
      )
    : null;
  const all = [...workers.values(), ...(ingest ? [ingest] : []), ...(batches ? [batches] : [])];
  return {
    workers,
    ingest,
    run: async () => {
      await Promise.all(all.map((w) => w.run()));
    },
    close: async () => {
      await Promise.all(all.map((w) => w.close()));
    },
  };
}

function ingestConsumer(deps: WorkerDeps, ingest: NonNullable<WorkerDeps['ingest']>): Worker {
  return bullWorker(
    deps,
    JOB_CATALOG.ingest.queues.batch,
    createIngestProcessor(ingest.deps),
    ingest.concurrency,
  );
}

/**
 * A BullMQ worker of one queue with this process's lock and stall settings, traced, logging its
 * errors and counting its stalls. Not started: the group runs its workers together.
 */
function bullWorker(
  deps: WorkerDeps,
  queue: string,
  processor: Parameters<typeof withJobSpan>[1],
  concurrency: number,
): Worker {
  const logger = deps.logger.child({ queue });
  const worker = new Worker(queue, withJobSpan(queue, processor), {
    connection: deps.connection,
    prefix: deps.prefix,
    concurrency,
    lockDuration: deps.lockDurationMs,
    stalledInterval: deps.stalledIntervalMs,
    maxStalledCount: deps.maxStalledCount,
    ...(deps.name ? { name: deps.name } : {}),
    autorun: false,
  });
  worker.on('error', (err) => logger.warn({ err }, 'worker error'));
  worker.on('stalled', (jobId) => {
    deps.metrics?.stalled({ queue });
    logger.warn({ jobId }, 'job stalled; it will run again');
  });
  return worker;
}

function consumer(
  deps: WorkerDeps,
  priority: Priority,
  processor: ReturnType<typeof createGenerateProcessor>,
): Worker {
  const queue = generateQueueName(priority);
  const logger = deps.logger.child({ queue });
  const worker = bullWorker(deps, queue, processor, deps.concurrency[priority]);
  worker.on('failed', (job, err) => {
    if (!job) return;
    // Only jobs that are really finished in BullMQ; a failed attempt that will be retried is not.
    void job
      .getState()
      .then(async (state) => {
        if (state !== 'failed') return;
        const payload = JOB_CATALOG.generate.payload.safeParse(job.data);
        if (payload.success) await recordQueueFailure(deps, payload.data.jobId, err.message);
      })
      .catch((e: unknown) => logger.warn({ err: e, jobId: job.id }, 'could not record a failed job'));
  });
  return worker;
}
