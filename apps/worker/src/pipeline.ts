import type { JobError, Priority, SourceView, Usage } from '@llmq/contracts';
import type { ResponseCache } from '@llmq/cache';
import type { AttemptEntry, CacheStatus, JobRecord, JobRepository } from '@llmq/db';
import type { Accounting } from '@llmq/rate-limit';
import { RetrievalError, type Retrieval } from '@llmq/rag';
import { cacheKey, isDeterministic } from '@llmq/cache';
import {
  JOB_CATALOG,
  LeaderFailedError,
  type CancelBus,
  type EventStream,
  type SingleFlight,
} from '@llmq/queue';
import {
  AttemptsExhaustedError,
  ProviderError,
  RetryLaterError,
  StreamBrokenError,
  type LlmClient,
} from '@llmq/llm';
import { DelayedError, UnrecoverableError, type Job } from 'bullmq';
import type { Logger } from 'pino';
import { TokenCoalescer } from './coalescer';
import { ConversationError, type ConversationHistory } from './conversation';

export interface PipelineDeps {
  jobs: JobRepository;
  events: EventStream;
  cancels: CancelBus;
  logger: Logger;
  llm: LlmClient;
  tokenCoalesceMs: number;
  /** How long a job may wait, from its submission, for provider capacity (delayed runs), per tier. */
  maxJobWaitMs: Record<Priority, number>;
  /** The response cache; null when caching is off. */
  cache: ResponseCache | null;
  /** Coalescing of identical cacheable jobs in flight; null when caching is off. */
  flights: SingleFlight | null;
  /** The usage ledger and the settlement of the key's limits. */
  accounting: Accounting;
  /** RAG context for jobs that ask for it; null when no embeddings provider is configured. */
  retrieval: Retrieval | null;
  /** History of conversation turns; null: turns run with their own messages only. */
  conversations: ConversationHistory | null;
  /** How long a turn waits before it looks again whether the turn before it has finished. */
  turnWaitMs: number;
  /** Metrics of runs; none when not given. */
  metrics?: JobMetrics;
}

/** How a run ended, for metrics: `retry` and `delayed` put the job back in the queue. */
export type RunOutcome = 'completed' | 'failed' | 'cancelled' | 'retry' | 'delayed' | 'superseded';

/** What the pipeline reports for metrics. Labels stay bounded: queue and model names only. */
export interface JobMetrics {
  /** A run began; `waitedMs` (submission to start) on a job's first run only. */
  runStarted(e: { queue: string; waitedMs: number | null }): void;
  runEnded(e: {
    queue: string;
    model: string;
    outcome: RunOutcome;
    durationMs: number;
    ttftMs: number | null;
  }): void;
  /** BullMQ found a job stalled (its worker lost the lock); it runs again. */
  stalled(e: { queue: string }): void;
  /** An answer fetched from a provider by this run (not from the cache or a coalesced twin). */
  upstreamUsage(e: { model: string; promptTokens: number; completionTokens: number; costUsd: number }): void;
}

/** What a run produced, from the provider, a leader it followed, or the cache. */
interface RunResult {
  text: string;
  finishReason: string | null;
  usage: Usage | null;
  model: string;
  backendId: string | null;
  costUsd: number;
  /** Whether this run's answer should be stored in the cache (only answers it fetched itself). */
  fresh: boolean;
  cacheStatus: CacheStatus;
}

/**
 * Runs one attempt of a generation job. Every side effect is idempotent, because BullMQ is
 * at-least-once: the result write only succeeds on an unfinished job, and the event stream
 * accepts one terminal event.
 */
export function createGenerateProcessor(deps: PipelineDeps) {
  const { jobs, events, cancels, logger } = deps;

  return async function processGenerate(job: Job, token?: string): Promise<{ status: string }> {
    const payload = JOB_CATALOG.generate.payload.parse(job.data);
    const { jobId } = payload;
    const log = logger.child({ jobId });
    const controller = cancels.register(jobId);
    let tokens: TokenCoalescer | null = null;
    let leading: string | null = null;
    const attempts: AttemptEntry[] = [];
    const startedAt = performance.now();
    let firstTokenAt: number | null = null;
    let runOutcome: RunOutcome | null = null;
    const ran = (o: RunOutcome) => {
      runOutcome = o;
    };
    let model = payload.spec.model;
    try {
      // A conversation's turns run in order: this one waits (delayed, holding no slot) until the
      // turn before it has finished, then runs with the history in front of its messages.
      let spec = payload.spec;
      if (spec.conversation && deps.conversations) {
        const waitingFor = await deps.conversations.waitingFor(jobId);
        // History is loaded only once the turn may run (a cheap check first).
        const built =
          waitingFor === null
            ? await deps.conversations.build(jobId, spec)
            : { ready: false as const, waitingFor };
        if (!built.ready) {
          await waitForTurn(job, token, deps, payload.priority);
          log.debug({ waitingFor: built.waitingFor }, 'an earlier turn is unfinished; turn delayed');
          throw new DelayedError();
        }
        spec = built.spec;
        if (built.droppedTurns > 0)
          log.info({ droppedTurns: built.droppedTurns }, 'history trimmed to the window');
      }
      // Independent reads in parallel: every round trip here is time to first token.
      const [started, earlier] = await Promise.all([jobs.startAttempt(jobId), events.read(jobId)]);
      if (!started) {
        // Already finished (cancelled while queued, or a run that stored its result and then stalled).
        await closeStream(deps, jobId);
        return { status: 'skipped' };
      }
      log.info({ attempt: started.attempts }, 'attempt started');
      deps.metrics?.runStarted({
        queue: job.queueName,
        waitedMs: started.attempts === 1 ? Math.max(0, Date.now() - job.timestamp) : null,
      });
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
        (text) => {
          firstTokenAt ??= performance.now();
          return events.append(jobId, { type: 'token', text });
        },
        status,
      );
      tokens = stream;

      // RAG: the prompt gains its context here; the cache key (when the API allowed caching) is
      // that of the prompt really sent, so it covers the sources.
      let sources: SourceView[] | null = null;
      let cacheTarget = payload.cache ?? null;
      if (spec.rag) {
        if (!deps.retrieval) {
          throw new RetrievalError('rag_unavailable', 'this worker has no embeddings provider for RAG');
        }
        const built = await deps.retrieval.build(payload.tenantId, spec);
        spec = built.spec;
        sources = built.sources;
        if (payload.ragCacheScope && deps.cache && isDeterministic(spec)) {
          cacheTarget = { key: cacheKey(payload.ragCacheScope, spec), scope: payload.ragCacheScope };
        }
      }

      let result: RunResult | null = null;
      if (cacheTarget && deps.flights) {
        const leader = await deps.flights.claim(cacheTarget.key, jobId);
        if (leader === null) {
          leading = cacheTarget.key;
          // A leader that finished just before may have stored the answer meanwhile.
          const hit = deps.cache ? await deps.cache.get(cacheTarget.key) : null;
          if (hit) {
            log.info('answer found in the cache by the worker; no upstream call');
            stream.push(hit.entry.result);
            const { result: text, finishReason, usage, model } = hit.entry;
            result = {
              text,
              finishReason,
              usage,
              model,
              backendId: null,
              costUsd: 0,
              fresh: false,
              cacheStatus: 'exact',
            };
          }
        } else {
          log.info({ leader }, 'coalesced with an identical job in flight; following it');
          const r = await deps.flights.follow(
            leader,
            controller.signal,
            (text) => stream.push(text),
            () =>
              stream.then(() =>
                events.append(jobId, {
                  type: 'status',
                  status: 'in_progress',
                  attempt: started.attempts,
                  restarted: true,
                }),
              ),
          );
          // No upstream call of its own: it costs nothing.
          result = {
            text: r.result,
            finishReason: r.finishReason,
            usage: r.usage,
            model: spec.model,
            backendId: null,
            costUsd: 0,
            fresh: false,
            cacheStatus: 'coalesced',
          };
        }
      }
      if (!result) {
        const r = await deps.llm.stream({
          spec,
          signal: controller.signal,
          onDelta: (text) => stream.push(text),
          onAttempt: (a) => attempts.push({ jobId, ...a }),
        });
        result = { ...r, fresh: true, cacheStatus: 'miss' };
        deps.metrics?.upstreamUsage({
          model: r.model,
          promptTokens: r.usage.prompt_tokens,
          completionTokens: r.usage.completion_tokens,
          costUsd: r.costUsd,
        });
      }
      model = result.model;
      await stream.flush();
      const outcome = { result: result.text, finishReason: result.finishReason, usage: result.usage };
      const stored = {
        ...outcome,
        servedModel: result.model,
        backendId: result.backendId,
        costUsd: result.costUsd,
        sources,
      };
      if (await jobs.complete(jobId, stored)) {
        await flushAttempts(deps, attempts);
        await deps.accounting.finish(payload.tenantId, {
          jobId,
          model: result.model,
          backendId: result.backendId,
          promptTokens: result.usage?.prompt_tokens ?? 0,
          completionTokens: result.usage?.completion_tokens ?? 0,
          costUsd: result.costUsd,
          latencyMs: performance.now() - startedAt,
          ttftMs: firstTokenAt === null ? null : firstTokenAt - startedAt,
          cacheStatus: result.cacheStatus,
          outcome: 'completed',
        });
        // Only a complete, successful answer is cached; the cache never fails the job. It is
        // stored before the client hears `completed`, so a repeat sent right after is a hit.
        if (cacheTarget && deps.cache && result.fresh) {
          await deps.cache.set(
            cacheTarget.key,
            cacheTarget.scope,
            {
              model: result.model,
              result: result.text,
              finishReason: result.finishReason,
              usage: result.usage,
              createdAt: Date.now(),
            },
            cacheTarget.embedding,
          );
        }
        await events.append(jobId, { type: 'completed', ...outcome });
        await jobs.storeEvents(jobId, await events.read(jobId));
        ran('completed');
      } else {
        await closeStream(deps, jobId); // finished another way meanwhile (cancelled, or a twin run)
        ran('superseded');
      }
      return { status: 'completed' };
    } catch (error) {
      if (error instanceof DelayedError) {
        ran('delayed');
        throw error;
      }
      tokens?.discard();
      await flushAttempts(deps, attempts).catch((err: unknown) =>
        log.warn({ err }, 'could not record upstream calls in the usage ledger'),
      );
      if (controller.signal.aborted) {
        log.info('job cancelled while running; upstream request aborted');
        ran('cancelled');
        await closeStream(deps, jobId).catch(() => undefined);
        return { status: 'cancelled' };
      }
      if (error instanceof RetryLaterError) {
        // No provider capacity now: run again later without using up an attempt, within a limit.
        const created = (await jobs.createdAt(jobId)) ?? new Date();
        const waitedMs = Date.now() - created.getTime();
        if (waitedMs + error.retryAfterMs <= deps.maxJobWaitMs[payload.priority] && token) {
          log.info({ retryInMs: error.retryAfterMs }, 'no provider capacity; job delayed');
          ran('delayed');
          await jobs.requeue(jobId);
          await events.append(jobId, { type: 'status', status: 'queued', retryInMs: error.retryAfterMs });
          await job.moveToDelayed(Date.now() + error.retryAfterMs, token);
          throw new DelayedError();
        }
      }
      const jobError = toJobError(error, deps.maxJobWaitMs[payload.priority]);
      // Provider outcomes were already retried by the LLM client (another BullMQ attempt would
      // multiply upstream calls); only our own failures, a database or Redis hiccup, run again.
      // A leader cancelled (its client went away) leaves its followers to try again: the next
      // attempt claims the flight itself and calls the provider. A leader that failed takes its
      // followers with it (the same request would fail the same way).
      const ours =
        jobError.code === 'internal_error' || (error instanceof LeaderFailedError && error.leaderCancelled);
      const final = !ours || job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
      log.warn({ err: error, attempt: job.attemptsMade + 1, final }, 'generation attempt failed');
      ran(final ? 'failed' : 'retry');
      if (final) {
        if (await jobs.fail(jobId, jobError)) await events.append(jobId, { type: 'failed', error: jobError });
        await closeStream(deps, jobId);
        throw new UnrecoverableError(jobError.message);
      }
      await jobs.requeue(jobId);
      await events.append(jobId, { type: 'status', status: 'queued', error: jobError });
      throw error;
    } finally {
      if (leading) await deps.flights?.release(leading, jobId).catch(() => undefined);
      cancels.unregister(jobId, controller);
      if (runOutcome !== null) {
        deps.metrics?.runEnded({
          queue: job.queueName,
          model,
          outcome: runOutcome,
          durationMs: performance.now() - startedAt,
          ttftMs: runOutcome === 'completed' && firstTokenAt !== null ? firstTokenAt - startedAt : null,
        });
      }
    }
  };
}

/**
 * Puts a conversation turn back to wait for the one before it: first after `turnWaitMs`, then
 * less often the longer it has waited (a tenth of the wait so far, at most 5 s), so a backlog of
 * turns does not poll Postgres ten times a second each. Past the tier's wait limit the turn fails.
 */
async function waitForTurn(
  job: Job,
  token: string | undefined,
  deps: PipelineDeps,
  priority: Priority,
): Promise<void> {
  if (!token) throw new Error('a conversation turn needs the job lock token to wait');
  const waitedMs = Date.now() - job.timestamp;
  if (waitedMs > deps.maxJobWaitMs[priority]) {
    throw new ConversationError(
      'turn_wait_exceeded',
      `an earlier turn of this conversation has not finished within this job's wait limit of ${Math.ceil(deps.maxJobWaitMs[priority] / 1000)} s`,
    );
  }
  const delayMs = Math.min(MAX_TURN_WAIT_MS, Math.max(deps.turnWaitMs, Math.round(waitedMs / 10)));
  await job.moveToDelayed(Date.now() + delayMs, token);
}

const MAX_TURN_WAIT_MS = 5000;

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
  if (!job || job.status === 'queued' || job.status === 'in_progress') return;
  await accountFinished(deps, job);
  if (job.events) return;
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
  }
  await deps.jobs.storeEvents(jobId, await deps.events.read(jobId));
}

/**
 * Charges a finished job from its record, for the paths that did not charge it with the run's
 * details (failures, cancels, a run that finds its job finished). Charging is idempotent: a job
 * charged before is left as it is.
 */
async function accountFinished(deps: PipelineDeps, job: JobRecord): Promise<void> {
  if (job.status !== 'completed' && job.status !== 'failed' && job.status !== 'cancelled') return;
  await deps.accounting.finish(job.tenantId, {
    jobId: job.id,
    model: job.servedModel ?? job.model,
    backendId: job.backendId,
    promptTokens: job.usage?.prompt_tokens ?? 0,
    completionTokens: job.usage?.completion_tokens ?? 0,
    costUsd: job.costUsd ?? 0,
    latencyMs: null,
    ttftMs: null,
    cacheStatus: 'miss',
    outcome: job.status,
  });
}

/** Writes the upstream calls gathered so far to the ledger, once (the list is emptied). */
async function flushAttempts(deps: PipelineDeps, attempts: AttemptEntry[]): Promise<void> {
  const batch = attempts.splice(0);
  if (batch.length > 0) await deps.accounting.recordAttempts(batch);
}

function toJobError(error: unknown, maxJobWaitMs: number): JobError {
  // `retryable` tells the client whether resubmitting the same request may succeed later.
  const fromProvider = (e: ProviderError): JobError => ({
    code: e.code,
    message: e.message,
    retryable: e.retryable,
    ...(e.details.status !== undefined ? { status: e.details.status } : {}),
  });
  if (error instanceof StreamBrokenError) {
    return { code: error.code, message: error.message, retryable: true };
  }
  if (error instanceof AttemptsExhaustedError) return { ...fromProvider(error.last), message: error.message };
  if (error instanceof ProviderError) return fromProvider(error);
  if (error instanceof RetrievalError || error instanceof ConversationError) {
    return { code: error.code, message: error.message, retryable: false };
  }
  if (error instanceof LeaderFailedError)
    return { code: error.code, message: error.message, retryable: true };
  if (error instanceof RetryLaterError) {
    return {
      code: 'provider_unavailable',
      message: `${error.message}; waiting ${Math.ceil(error.retryAfterMs / 1000)} s more would pass this job's limit of ${Math.ceil(maxJobWaitMs / 1000)} s`,
      retryable: true,
      ...(error.last?.details.status !== undefined ? { status: error.last.details.status } : {}),
    };
  }
  return {
    code: 'internal_error',
    message: error instanceof Error ? error.message : String(error),
    retryable: true,
  };
}
