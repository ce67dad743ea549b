import type { JobRepository } from '@llmq/db';
import { JOB_CATALOG, type CancelBus, type EventStream, type Redis } from '@llmq/queue';
import { Worker } from 'bullmq';
import type { Logger } from 'pino';
import { createGenerateProcessor } from './pipeline';

export interface WorkerDeps {
  connection: Redis;
  prefix: string;
  jobs: JobRepository;
  events: EventStream;
  cancels: CancelBus;
  logger: Logger;
  provider: { baseUrl: string; apiKey?: string; timeoutMs: number };
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
  return worker;
}
