import type { JobRepository } from '@llmq/db';
import { JOB_CATALOG, type CancelBus, type EventStream, type Redis, type SingleFlight } from '@llmq/queue';
import { Worker } from 'bullmq';
import type { ResponseCache } from '@llmq/cache';
import type { LlmClient } from '@llmq/llm';
import type { Logger } from 'pino';
import { createGenerateProcessor, recordQueueFailure } from './pipeline';

export interface WorkerDeps {
  connection: Redis;
  prefix: string;
  jobs: JobRepository;
  events: EventStream;
  cancels: CancelBus;
  logger: Logger;
  llm: LlmClient;
  maxJobWaitMs: number;
  cache: ResponseCache | null;
  flights: SingleFlight | null;
  concurrency: number;
  lockDurationMs: number;
  stalledIntervalMs: number;
  maxStalledCount: number;
  tokenCoalesceMs: number;
}

/** The BullMQ consumer of the generate queue. */
export function createWorker(deps: WorkerDeps): Worker {
  const processor = createGenerateProcessor(deps);
  const worker = new Worker(JOB_CATALOG.generate.queue, processor, {
    connection: deps.connection,
    prefix: deps.prefix,
    concurrency: deps.concurrency,
    lockDuration: deps.lockDurationMs,
    stalledInterval: deps.stalledIntervalMs,
    maxStalledCount: deps.maxStalledCount,
    autorun: false,
  });
  worker.on('error', (err) => deps.logger.warn({ err }, 'worker error'));
  worker.on('stalled', (jobId) => deps.logger.warn({ jobId }, 'job stalled; it will run again'));
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
      .catch((e: unknown) => deps.logger.warn({ err: e, jobId: job.id }, 'could not record a failed job'));
  });
  return worker;
}
