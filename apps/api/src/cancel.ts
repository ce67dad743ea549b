import { isTerminal } from '@llmq/contracts';
import type { JobRecord } from '@llmq/db';
import type { Logger } from 'pino';
import type { ApiDeps } from './deps';
import { HttpError, serviceUnavailable } from './errors';

/**
 * Cancels a tenant's job, from any transport (DELETE, a disconnected OpenAI client, a WebSocket
 * CANCEL): a waiting job leaves the queue, a running one is aborted upstream, the key is
 * charged nothing and the stream ends with `cancelled`. Returns the job as it is now; a job
 * cancelled already is returned as it is, a finished one is a 409.
 */
export async function cancelJob(deps: ApiDeps, job: JobRecord, log: Logger): Promise<JobRecord> {
  const { jobs, redis, producer, cancels, events } = deps;
  if (job.status === 'cancelled') return job;
  if (isTerminal(job.status)) {
    throw new HttpError(409, 'job_not_cancellable', `the job is already ${job.status}`);
  }
  if (redis.status !== 'ready') throw serviceUnavailable('the job queue is unavailable; retry shortly');
  const previous = await jobs.cancel(job.id, job.tenantId);
  if (previous === null) {
    const now = await jobs.getForTenant(job.id, job.tenantId);
    if (now?.status === 'cancelled') return now;
    throw new HttpError(409, 'job_not_cancellable', `the job is already ${now?.status ?? 'gone'}`);
  }
  let removed = false;
  if (previous === 'queued') {
    // A waiting job is taken out of the queue; one a worker has just locked cannot be, so it is aborted.
    removed = await producer
      .queueFor(job.priority)
      .remove(job.id)
      .then((n) => n === 1)
      .catch(() => false);
  }
  if (!removed) await cancels.publish(redis, job.id);
  // A cancelled job is charged nothing and frees its tenant's slot now (a worker that was
  // running it finds it charged already).
  await deps.accounting
    .finish(job.tenantId, {
      jobId: job.id,
      model: job.model,
      backendId: null,
      promptTokens: 0,
      completionTokens: 0,
      costUsd: 0,
      latencyMs: null,
      ttftMs: null,
      cacheStatus: 'miss',
      outcome: 'cancelled',
    })
    .catch((err: unknown) => log.warn({ err }, 'could not account a cancelled job'));
  log.info({ tenant: job.tenantId, previous, removedFromQueue: removed }, 'job cancelled');
  await events.append(job.id, { type: 'cancelled', reason: 'cancelled by the client' });
  await jobs.storeEvents(job.id, await events.read(job.id));
  return (await jobs.getForTenant(job.id, job.tenantId)) ?? job;
}
