import { createHash, randomUUID } from 'node:crypto';
import {
  estimatePromptTokens,
  generateRequestSchema,
  toGenerationSpec,
  type AcceptedJob,
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
import { Router, json, type Response } from 'express';
import type { ApiDeps } from '../deps';
import { HttpError, fromZod, serviceUnavailable } from '../errors';
import { jobPaths } from './views';

const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;

export function generateRouter(deps: ApiDeps): Router {
  const { settings, jobs, producer, redis, logger } = deps;
  const router = Router();
  const parseJson = json({ limit: settings.bodyLimitBytes, strict: true });

  router.post(
    '/generate',
    (req, _res, next) => {
      if (!req.is('application/json')) {
        throw new HttpError(415, 'unsupported_media_type', 'Content-Type must be application/json');
      }
      next();
    },
    parseJson,
    async (req, res) => {
      const principal = req.principal!;
      // Fail fast while the queue is unreachable: nothing is written, the client retries.
      if (redis.status !== 'ready') throw serviceUnavailable('the job queue is unavailable; retry shortly');

      const parsed = generateRequestSchema.safeParse(req.body);
      if (!parsed.success) throw fromZod(parsed.error);
      const body = parsed.data;
      const spec = toGenerationSpec(body, settings.defaultModel);
      const model = deps.models.resolve(spec.model);
      if (model === null) {
        throw new HttpError(422, 'model_not_found', `model "${spec.model}" is not served here`, {
          field: 'model',
        });
      }
      spec.model = model; // aliases resolve here, so equal requests look equal downstream
      const promptTokens = estimatePromptTokens(spec.messages);
      if (promptTokens > settings.maxPromptTokens) {
        throw new HttpError(
          422,
          'prompt_too_long',
          `prompt is about ${promptTokens} tokens; the limit is ${settings.maxPromptTokens}`,
          { field: body.messages ? 'messages' : 'prompt' },
        );
      }
      const idempotencyKey = req.get('Idempotency-Key') ?? null;
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
      const requestHash = createHash('sha256').update(canonicalJson({ spec, metadata })).digest('hex');

      let control: CacheControl;
      try {
        control = parseCacheControl(req.get('Cache-Control'));
      } catch (error) {
        throw new HttpError(400, 'invalid_cache_control', (error as Error).message, {
          field: 'Cache-Control',
        });
      }
      const scope = settings.cacheScope === 'shared' ? 'shared' : `tenant:${principal.tenantId}`;
      const key = deps.cache && isDeterministic(spec) ? cacheKey(scope, spec) : null;
      const asked = semanticThreshold(req.get('LLMQ-Semantic-Cache'), settings.semanticThreshold);
      const threshold = asked === undefined ? deps.models.semanticThreshold(spec.model) : asked;
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
      let hit = key && control.read ? await deps.cache!.get(key, control.maxAgeSeconds) : null;
      let embedding: number[] | undefined;
      if (key && threshold !== null && deps.embeddings) {
        // An embeddings failure degrades to a miss, like any cache failure.
        embedding = await deps.embeddings.embed(promptText(spec.messages)).catch((err: unknown) => {
          logger.warn({ err }, 'embeddings failed; semantic cache skipped');
          return undefined;
        });
        if (!hit && embedding && control.read) {
          hit = await deps.cache!.getSemantic(scope, spec.model, embedding, threshold, control.maxAgeSeconds);
        }
      }
      if (!hit && control.onlyIfCached) {
        throw new HttpError(504, 'not_cached', 'only-if-cached: there is no cached answer for this request');
      }

      const jobId = randomUUID();
      const outcome = await jobs.insert({
        id: jobId,
        tenantId: principal.tenantId,
        apiKeyId: principal.apiKeyId,
        spec,
        requestHash,
        idempotencyKey,
        metadata,
        ...(hit ? { completed: cachedCompletion(hit) } : {}),
      });
      if (!outcome.created) {
        if (outcome.existing.requestHash !== requestHash) {
          throw new HttpError(
            422,
            'idempotency_key_reused',
            'this Idempotency-Key was already used with a different request body',
            { field: 'Idempotency-Key' },
          );
        }
        res.setHeader('Idempotent-Replayed', 'true');
        return accepted(res, outcome.existing.id, outcome.existing.status);
      }
      if (hit) {
        // Answered from the cache: recorded as a completed job, so poll and stream work as usual.
        const paths = jobPaths(jobId);
        const { entry, source } = hit;
        return res
          .status(200)
          .location(paths.pollUrl)
          .json({
            jobId,
            status: 'completed',
            ...paths,
            result: entry.result,
            finishReason: entry.finishReason,
            usage: entry.usage,
            source,
            ...(hit.similarity !== undefined ? { similarity: hit.similarity } : {}),
          });
      }

      try {
        const cache = key && control.store ? { key, scope, ...(embedding ? { embedding } : {}) } : undefined;
        await producer.enqueue('generate', jobId, {
          jobId,
          tenantId: principal.tenantId,
          spec,
          ...(cache ? { cache } : {}),
        });
      } catch (error) {
        // The queue refused the job: undo the insert so no half-created job remains.
        await jobs.deleteUnstarted(jobId).catch((e: unknown) => {
          // If even that fails, the reconciler enqueues the row later: the job is not lost.
          logger.warn({ err: e, jobId }, 'could not undo a job insert after an enqueue failure');
        });
        logger.warn({ err: error, jobId }, 'enqueue failed');
        throw serviceUnavailable('the job queue is unavailable; retry shortly');
      }
      return accepted(res, jobId, 'queued');
    },
  );
  return router;
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

function accepted(res: Response, jobId: string, status: JobStatus) {
  const paths = jobPaths(jobId);
  const body: AcceptedJob = { jobId, status, ...paths };
  res.status(202).location(paths.pollUrl).json(body);
}
