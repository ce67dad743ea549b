import type { JobError } from '@llmq/contracts';
import type { JobRepository } from '@llmq/db';
import { JOB_CATALOG, type CancelBus, type EventStream } from '@llmq/queue';
import { UnrecoverableError, type Job } from 'bullmq';
import type { Logger } from 'pino';
import { TokenCoalescer } from './coalescer';
import { ProviderError, streamChat } from './provider';

export interface PipelineDeps {
  jobs: JobRepository;
  events: EventStream;
  cancels: CancelBus;
  logger: Logger;
  provider: { baseUrl: string; apiKey?: string; timeoutMs: number };
  tokenCoalesceMs: number;
}

/**
 * Runs one attempt of a generation job. Every side effect is idempotent, because BullMQ is
 * at-least-once: the result write only succeeds on an unfinished job, and the event stream
 * accepts one terminal event.
 */
export function createGenerateProcessor(deps: PipelineDeps) {
  const { jobs, events, cancels, logger } = deps;

  return async function processGenerate(job: Job): Promise<{ status: string }> {
    const payload = JOB_CATALOG.generate.payload.parse(job.data);
    const { jobId } = payload;
    const log = logger.child({ jobId });
    const controller = cancels.register(jobId);
    let tokens: TokenCoalescer | null = null;
    try {
      // Independent reads in parallel: every round trip here is time to first token.
      const [started, earlier] = await Promise.all([jobs.startAttempt(jobId), events.read(jobId)]);
      if (!started) {
        // Already finished (cancelled while queued, or a run that stored its result and then stalled).
        await closeStream(deps, jobId);
        return { status: 'skipped' };
      }
      log.info({ attempt: started.attempts }, 'attempt started');
      const restarted = earlier.some((e) => e.type === 'token');
      // The upstream call does not wait for the status event; token events queue behind it.
      const status = events.append(jobId, {
        type: 'status',
        status: 'in_progress',
        attempt: started.attempts,
        restarted,
      });
      const stream = new TokenCoalescer(
        deps.tokenCoalesceMs,
        (text) => events.append(jobId, { type: 'token', text }),
        status,
      );
      tokens = stream;

      const result = await streamChat({
        ...deps.provider,
        spec: payload.spec,
        signal: controller.signal,
        onDelta: (text) => stream.push(text),
      });
      await stream.flush();
      const outcome = { result: result.text, finishReason: result.finishReason, usage: result.usage };
      if (await jobs.complete(jobId, outcome)) {
        await events.append(jobId, { type: 'completed', ...outcome });
        await jobs.storeEvents(jobId, await events.read(jobId));
      } else {
        await closeStream(deps, jobId); // finished another way meanwhile (cancelled, or a twin run)
      }
      return { status: 'completed' };
    } catch (error) {
      tokens?.discard();
      if (controller.signal.aborted && !(error instanceof ProviderError)) {
        log.info('job cancelled while running; upstream request aborted');
        await closeStream(deps, jobId).catch(() => undefined);
        return { status: 'cancelled' };
      }
      const jobError = toJobError(error);
      const attemptsAllowed = job.opts.attempts ?? 1;
      const final = !jobError.retryable || job.attemptsMade + 1 >= attemptsAllowed;
      log.warn({ err: error, attempt: job.attemptsMade + 1, final }, 'generation attempt failed');
      if (final) {
        if (await jobs.fail(jobId, jobError)) await events.append(jobId, { type: 'failed', error: jobError });
        await closeStream(deps, jobId);
        throw new UnrecoverableError(jobError.message);
      }
      await jobs.requeue(jobId);
      await events.append(jobId, { type: 'status', status: 'queued', error: jobError });
      throw error;
    } finally {
      cancels.unregister(jobId, controller);
    }
  };
}

/**
 * For jobs BullMQ failed without our processor deciding it: a job that stalled more often than
 * `maxStalledCount` (its workers kept dying) is moved to failed by BullMQ directly. The record
 * must say so too, or the job would show `in_progress` forever.
 */
export async function recordQueueFailure(deps: PipelineDeps, jobId: string, reason: string): Promise<void> {
  const error: JobError = { code: 'job_stalled', message: reason, retryable: false };
  if (await deps.jobs.fail(jobId, error)) await deps.events.append(jobId, { type: 'failed', error });
  await closeStream(deps, jobId);
}

/**
 * Makes sure a finished job's stream is closed and stored in Postgres. Safe to repeat: a crash
 * between the result write and this step is repaired by the next attempt.
 */
async function closeStream(deps: PipelineDeps, jobId: string): Promise<void> {
  const job = await deps.jobs.get(jobId);
  if (!job || job.events) return;
  switch (job.status) {
    case 'completed':
      await deps.events.append(jobId, {
        type: 'completed',
        result: job.result ?? '',
        finishReason: job.finishReason,
        usage: job.usage,
      });
      break;
    case 'failed':
      await deps.events.append(jobId, {
        type: 'failed',
        error: job.error ?? { code: 'failed', message: 'failed' },
      });
      break;
    case 'cancelled':
      await deps.events.append(jobId, { type: 'cancelled', reason: 'cancelled by the client' });
      break;
    case 'queued':
    case 'in_progress':
      return;
  }
  await deps.jobs.storeEvents(jobId, await deps.events.read(jobId));
}

function toJobError(error: unknown): JobError {
  if (error instanceof ProviderError) {
    return {
      code: error.code,
      message: error.message,
      retryable: error.retryable,
      ...(error.status !== undefined ? { status: error.status } : {}),
    };
  }
  return {
    code: 'internal_error',
    message: error instanceof Error ? error.message : String(error),
    retryable: true,
  };
}
