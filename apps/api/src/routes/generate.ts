import { createHash, randomUUID } from 'node:crypto';
import {
  estimatePromptTokens,
  generateRequestSchema,
  toGenerationSpec,
  type AcceptedJob,
  type JobStatus,
} from '@llmq/contracts';
import { Router, json, type Response } from 'express';
import type { ApiDeps } from '../deps';
import { HttpError, fromZod, serviceUnavailable } from '../errors';
import { jobPaths } from './views';

const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;

/** Stable JSON (sorted keys) so equal bodies hash equally whatever their key order. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

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
      const requestHash = createHash('sha256').update(canonical({ spec, metadata })).digest('hex');

      const jobId = randomUUID();
      const outcome = await jobs.insert({
        id: jobId,
        tenantId: principal.tenantId,
        apiKeyId: principal.apiKeyId,
        spec,
        requestHash,
        idempotencyKey,
        metadata,
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

      try {
        await producer.enqueue('generate', jobId, { jobId, tenantId: principal.tenantId, spec });
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

function accepted(res: Response, jobId: string, status: JobStatus) {
  const paths = jobPaths(jobId);
  const body: AcceptedJob = { jobId, status, ...paths };
  res.status(202).location(paths.pollUrl).json(body);
}
