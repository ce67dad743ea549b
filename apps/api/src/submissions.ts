import { createHash, randomUUID } from 'node:crypto';
import {
  toGenerationSpec,
  type GenerateRequest,
  type GenerationSpec,
  type Priority,
  type RagOptions,
  type JobEvent,
  type JobStatus,
} from '@llmq/contracts';
import {
  cacheKey,
  canonicalJson,
  isDeterministic,
  parseCacheControl,
  promptText,
  type CacheControl,
  type CacheHit,
} from '@llmq/cache';
import type { JobOutcome } from '@llmq/db';
import { countPromptTokens } from '@llmq/llm';
import { generateQueueName } from '@llmq/queue';
import { currentTraceCarrier, withSpan } from '@llmq/tracing';
import { rateLimitHeaders, type Decision } from '@llmq/rate-limit';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { Principal } from './auth';
import type { ApiDeps } from './deps';
import { HttpError, serviceUnavailable } from './errors';
import { effectiveLimits, refusal } from './limits';

const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;

/**
 * A generation request as every transport hands it over (REST, the OpenAI facade, WebSocket):
 * the validated body and what the transport's headers say about caching and idempotency.
 */
export interface SubmissionRequest {
  body: GenerateRequest;
  /** `Idempotency-Key`: a repeat returns the first job. */
  idempotencyKey?: string | undefined;
  /** `Cache-Control` of the request (no-cache, no-store, max-age, only-if-cached). */
  cacheControl?: string | undefined;
  /** `LLMQ-Semantic-Cache`: on, off or threshold=<0..1>. */
  semanticCache?: string | undefined;
  /** Called once the key's limits admitted the request, with its rate-limit headers. */
  onAdmitted?: (headers: Record<string, string>) => void;
}

/** How a submission was answered. */
export type SubmissionResult =
  /** Answered from the cache: recorded as a completed job, its stream holds the answer. */
  | { kind: 'cached'; jobId: string; hit: CacheHit; spec: GenerationSpec }
  /** Recorded and enqueued: a worker will run it. */
  | { kind: 'queued'; jobId: string; spec: GenerationSpec }
  /** A repeated Idempotency-Key with the same body: the first job. */
  | { kind: 'replayed'; jobId: string; status: JobStatus; spec: GenerationSpec };

/**
 * Turns a validated generation request into a job: checks it, admits it against the key's
 * limits, answers it from the cache or records it durably and enqueues it. Every refusal is an
 * {@link HttpError}; a request that fails midway leaves no job and gives its admission back.
 */
export async function submitGeneration(
  deps: ApiDeps,
  principal: Principal,
  log: Logger,
  request: SubmissionRequest,
): Promise<SubmissionResult> {
  const { settings, jobs, redis } = deps;
  const { body } = request;
  // Fail fast while the queue is unreachable: nothing is written, the client retries.
  if (redis.status !== 'ready') throw serviceUnavailable('the job queue is unavailable; retry shortly');
  const spec = toGenerationSpec(body, settings.defaultModel);
  const model = deps.models.resolve(spec.model);
  if (model === null) {
    throw new HttpError(422, 'model_not_found', `model "${spec.model}" is not served here`, {
      field: 'model',
    });
  }
  spec.model = model; // aliases resolve here, so equal requests look equal downstream
  // The real tokenizer: this count is also what the key's token bucket is charged.
  const promptTokens = countPromptTokens(spec.messages);
  if (promptTokens > settings.maxPromptTokens) {
    throw new HttpError(
      422,
      'prompt_too_long',
      `prompt is about ${promptTokens} tokens; the limit is ${settings.maxPromptTokens}`,
      { field: body.messages ? 'messages' : 'prompt' },
    );
  }
  const idempotencyKey = request.idempotencyKey ?? null;
  if (idempotencyKey !== null && !IDEMPOTENCY_KEY.test(idempotencyKey)) {
    throw new HttpError(
      400,
      'invalid_idempotency_key',
      'Idempotency-Key must be 1-255 visible ASCII characters',
      {
        field: 'Idempotency-Key',
      },
    );
  }
  const metadata = body.metadata ?? null;
  const priority = body.priority ?? 'interactive';
  const requestHash = createHash('sha256').update(canonicalJson({ spec, metadata, priority })).digest('hex');

  let control: CacheControl;
  try {
    control = parseCacheControl(request.cacheControl);
  } catch (error) {
    throw new HttpError(400, 'invalid_cache_control', (error as Error).message, { field: 'Cache-Control' });
  }
  const scope = settings.cacheScope === 'shared' ? 'shared' : `tenant:${principal.tenantId}`;
  // A RAG answer depends on what retrieval finds: the worker keys the prompt it builds. A
  // conversation turn depends on its history: it is never cached.
  const cacheable = deps.cache !== null && !spec.conversation;
  const key = cacheable && isDeterministic(spec) && !spec.rag ? cacheKey(scope, spec) : null;
  const ragScope = cacheable && spec.rag && control.read && control.store ? scope : null;
  const asked = semanticThreshold(request.semanticCache, settings.semanticThreshold);
  const threshold = spec.rag ? null : asked === undefined ? deps.models.semanticThreshold(spec.model) : asked;
  if (asked && !deps.embeddings) {
    throw new HttpError(
      422,
      'semantic_cache_unavailable',
      'no embeddings provider is configured for the semantic cache',
      {
        field: 'LLMQ-Semantic-Cache',
      },
    );
  }

  if (spec.rag) await checkRag(deps, principal.tenantId, spec.rag);

  // A replay is answered before admission: it costs the key nothing, even with its bucket empty.
  if (idempotencyKey !== null) {
    const existing = await jobs.findByIdempotencyKey(principal.tenantId, idempotencyKey);
    if (existing) return replay(existing, requestHash, spec);
  }

  // Every check of the request itself is done: from here on it may cost the key something.
  const jobId = randomUUID();
  const submission: Submission = {
    jobId,
    log: log.child({ jobId }),
    principal,
    spec,
    metadata,
    priority,
    requestHash,
    idempotencyKey,
    cache: { key, scope, control, threshold, ragScope },
    recorded: false,
  };
  const admission = await admit(deps, submission, promptTokens);
  request.onAdmitted?.(rateLimitHeaders(admission.state));
  try {
    return await respond(deps, submission);
  } finally {
    // Until a job row exists, nothing else will settle the admission: give it all back.
    if (!submission.recorded) await release(deps, submission, 'the request did not become a job');
  }
}

/** A validated request on its way to becoming a job. */
interface Submission {
  jobId: string;
  /** The request's logger (request id and job id). */
  log: Logger;
  principal: Principal;
  spec: GenerationSpec;
  metadata: Record<string, string> | null;
  priority: Priority;
  requestHash: string;
  idempotencyKey: string | null;
  cache: {
    key: string | null;
    scope: string;
    control: CacheControl;
    threshold: number | null;
    /** For a RAG job that may be cached: the scope the worker stores its answer under. */
    ragScope: string | null;
  };
  /** Set once the job row exists: from then on the job's end settles the admission. */
  recorded: boolean;
}

/** Answers an admitted submission: from the cache, or recorded and enqueued. */
async function respond(deps: ApiDeps, s: Submission): Promise<SubmissionResult> {
  const { jobs, producer } = deps;
  const { jobId, principal, spec, log } = s;
  const { key, scope, control, threshold } = s.cache;
  let hit = key && control.read ? await deps.cache!.get(key, control.maxAgeSeconds) : null;
  let embedding: number[] | undefined;
  if (key && threshold !== null && deps.embeddings) {
    // An embeddings failure degrades to a miss, like any cache failure.
    embedding = await deps.embeddings.embed(promptText(spec.messages)).catch((err: unknown) => {
      log.warn({ err }, 'embeddings failed; semantic cache skipped');
      return undefined;
    });
    if (!hit && embedding && control.read) {
      hit = await deps.cache!.getSemantic(scope, spec.model, embedding, threshold, control.maxAgeSeconds);
    }
  }
  countCacheLookup(deps, hit || null, Boolean(key && control.read));
  if (!hit && control.onlyIfCached) {
    throw new HttpError(504, 'not_cached', 'only-if-cached: there is no cached answer for this request');
  }

  const outcome = await jobs.insert({
    id: jobId,
    tenantId: principal.tenantId,
    apiKeyId: principal.apiKeyId,
    spec,
    requestHash: s.requestHash,
    idempotencyKey: s.idempotencyKey,
    metadata: s.metadata,
    priority: s.priority,
    ...(hit ? { completed: cachedCompletion(hit) } : {}),
  });
  // A concurrent twin with the same Idempotency-Key won the insert.
  if (!outcome.created) return replay(outcome.existing, s.requestHash, spec);
  s.recorded = true;
  if (hit) {
    const { entry, source } = hit;
    await deps.accounting
      .finish(principal.tenantId, {
        jobId,
        model: spec.model,
        backendId: null,
        promptTokens: entry.usage?.prompt_tokens ?? 0,
        completionTokens: entry.usage?.completion_tokens ?? 0,
        costUsd: 0,
        latencyMs: null,
        ttftMs: null,
        cacheStatus: source === 'semantic' ? 'semantic' : 'exact',
        outcome: 'completed',
      })
      .catch((err: unknown) => log.warn({ err }, 'could not account a cache hit'));
    log.info({ tenant: principal.tenantId, model: spec.model, source }, 'job answered from the cache');
    return { kind: 'cached', jobId, hit, spec };
  }

  try {
    // A turn takes its number in the conversation before any worker can see it.
    if (spec.conversation)
      await deps.conversations.appendTurn(principal.tenantId, spec.conversation.id, jobId);
    const cache = key && control.store ? { key, scope, ...(embedding ? { embedding } : {}) } : undefined;
    const queue = generateQueueName(s.priority);
    // The worker's span continues this trace from the context the job carries.
    await withSpan(
      `send ${queue}`,
      {
        kind: 'producer',
        attributes: {
          'messaging.system': 'bullmq',
          'messaging.operation.type': 'send',
          'messaging.destination.name': queue,
          'messaging.message.id': jobId,
        },
      },
      () => {
        const trace = currentTraceCarrier();
        return producer.enqueue('generate', jobId, {
          jobId,
          tenantId: principal.tenantId,
          spec,
          priority: s.priority,
          ...(cache ? { cache } : {}),
          ...(s.cache.ragScope ? { ragCacheScope: s.cache.ragScope } : {}),
          ...(trace ? { trace } : {}),
        });
      },
    );
  } catch (error) {
    // The queue refused the job: undo the insert (its turn goes with it) so no half-created job remains.
    const undone = await jobs.deleteUnstarted(jobId).then(
      () => true,
      (e: unknown) => {
        // If even that fails, the reconciler enqueues the row later: the job is not lost.
        log.warn({ err: e }, 'could not undo a job insert after an enqueue failure');
        return false;
      },
    );
    if (undone) await release(deps, s, 'enqueue failed');
    // A payload the catalog refuses is a bug here (the request was checked against the same
    // limits), not an outage: a retry would fail the same way.
    if (error instanceof z.ZodError) throw error;
    log.warn({ err: error }, 'enqueue failed');
    throw serviceUnavailable('the job queue is unavailable; retry shortly');
  }
  log.info({ tenant: principal.tenantId, model: spec.model, priority: s.priority }, 'job queued');
  return { kind: 'queued', jobId, spec };
}

/** A RAG request needs an embeddings provider and an existing collection of the tenant. */
async function checkRag(deps: ApiDeps, tenantId: string, rag: RagOptions): Promise<void> {
  if (!deps.embedder) {
    throw new HttpError(
      422,
      'rag_unavailable',
      'no embeddings provider is configured (EMBEDDINGS_BASE_URL)',
      {
        field: 'rag',
      },
    );
  }
  const collection = await deps.rag.getCollection(tenantId, rag.collection, rag.consistencyToken ?? null);
  if (!collection) {
    throw new HttpError(422, 'collection_not_found', `collection "${rag.collection}" does not exist`, {
      field: 'rag.collection',
    });
  }
}

/** Gives back everything an admission took (the request too): the submission did not become a job. */
async function release(deps: ApiDeps, s: Submission, reason: string): Promise<void> {
  await deps.accounting.release(s.principal.tenantId, s.jobId).catch((err: unknown) => {
    // The reservation then expires on its own (tokens refill; the active slot is dropped as stale).
    s.log.warn({ err, reason }, 'could not give back an admission');
  });
}

/** The answer to a repeated Idempotency-Key: the first job, or 422 when the body differs. */
function replay(
  existing: { id: string; requestHash: string; status: JobStatus },
  requestHash: string,
  spec: GenerationSpec,
): SubmissionResult {
  if (existing.requestHash !== requestHash) {
    throw new HttpError(
      422,
      'idempotency_key_reused',
      'this Idempotency-Key was already used with a different request body',
      { field: 'Idempotency-Key' },
    );
  }
  return { kind: 'replayed', jobId: existing.id, status: existing.status, spec };
}

/**
 * Backpressure, then the key's limits, in one atomic call: 503 past the queue-depth limit, 401
 * for a key revoked meanwhile, 429 (with Retry-After and the rate-limit headers) for the rest.
 */
async function admit(
  deps: ApiDeps,
  { jobId, principal, spec, priority, log }: Submission,
  promptTokens: number,
): Promise<Extract<Decision, { admitted: true }>> {
  const { limitsEnv } = deps;
  if (limitsEnv.MAX_QUEUE_DEPTH > 0) {
    const depth = await deps.queueDepth.current(priority).catch(() => {
      throw serviceUnavailable('the job queue is unavailable; retry shortly');
    });
    if (depth >= limitsEnv.MAX_QUEUE_DEPTH) {
      deps.metrics.rateLimitRejections.inc({ reason: 'queue_full' });
      throw new HttpError(
        503,
        'queue_full',
        `the ${priority} queue holds ${depth} waiting jobs, its limit is ${limitsEnv.MAX_QUEUE_DEPTH}; retry later`,
        { headers: { 'Retry-After': '5' } },
      );
    }
  }
  const maxTokens = spec.params.max_tokens ?? limitsEnv.RATE_LIMIT_DEFAULT_MAX_TOKENS;
  const price = deps.models.price(spec.model);
  // Price per million tokens x tokens = micro-dollars; rounded up, an estimate must not undercount.
  const costMicros = price
    ? Math.ceil(promptTokens * price.inputPerMillion + maxTokens * price.outputPerMillion)
    : 0;
  const tokens = promptTokens + maxTokens;
  const limits = effectiveLimits(limitsEnv, principal.record.limits, principal.record.tenantMaxActiveJobs);
  let decision: Decision;
  try {
    decision = await deps.limiter.admit({
      tenantId: principal.tenantId,
      keyId: principal.apiKeyId,
      jobId,
      tokens,
      costMicros,
      limits,
    });
  } catch (error) {
    log.warn({ err: error }, 'rate limiter unavailable');
    throw serviceUnavailable('the rate limiter is unavailable; retry shortly');
  }
  if (!decision.admitted) {
    // A token refusal that can never fit is its own reason: waiting will not help it.
    const reason =
      decision.reason === 'tokens' && decision.retryAfterMs < 0 ? 'request_too_large' : decision.reason;
    deps.metrics.rateLimitRejections.inc({ reason });
    throw refusal(decision, limits, { tokens, costMicros });
  }
  return decision;
}

/**
 * `LLMQ-Semantic-Cache: on` (the configured threshold) or `threshold=0.9`: also answer from a
 * similar earlier prompt; `off`: not even if the model has it on. Undefined when the request
 * says nothing (the model's setting in the providers file applies).
 */
function semanticThreshold(header: string | undefined, fallback: number): number | null | undefined {
  if (header === undefined || header.trim() === '') return undefined;
  if (header.trim().toLowerCase() === 'off') return null;
  const v = header.trim().toLowerCase();
  if (v === 'on') return fallback;
  const m = /^threshold=(0(\.\d+)?|1(\.0+)?)$/.exec(v);
  if (!m) {
    throw new HttpError(
      400,
      'invalid_semantic_cache',
      'LLMQ-Semantic-Cache is "on", "off" or "threshold=<0..1>"',
      {
        field: 'LLMQ-Semantic-Cache',
      },
    );
  }
  return Number(m[1]);
}

/** Cache metrics of a submission: a hit by the layer that answered, a miss only if it looked at all. */
function countCacheLookup(deps: ApiDeps, hit: CacheHit | null, looked: boolean): void {
  if (hit) deps.metrics.cacheHits.inc({ layer: hit.source });
  else if (looked) deps.metrics.cacheMisses.inc();
}

/** The event stream of a cached answer: what a live job sends, in one token event. */
function cachedCompletion(hit: CacheHit): { outcome: JobOutcome; events: JobEvent[] } {
  const { entry, source } = hit;
  const outcome = {
    result: entry.result,
    finishReason: entry.finishReason,
    usage: entry.usage,
    servedModel: entry.model,
  };
  return {
    outcome,
    events: [
      { seq: 1, type: 'status', status: 'in_progress', attempt: 1, restarted: false },
      ...(entry.result ? [{ seq: 2, type: 'token' as const, text: entry.result }] : []),
      {
        seq: entry.result ? 3 : 2,
        type: 'completed',
        result: entry.result,
        finishReason: entry.finishReason,
        usage: entry.usage,
        source,
      },
    ],
  };
}
