import { LIMITS } from '@llmq/contracts';
import {
  BatchRepository,
  FileRepository,
  isBatchId,
  isFileId,
  newBatchId,
  type BatchRecord,
  type NewBatch,
  type RequestCounts,
} from '@llmq/db';
import { closeCancelledJobs } from '@llmq/queue';
import { Router, json, type Request, type RequestHandler } from 'express';
import { z } from 'zod';
import type { Principal } from '../auth';
import type { ApiDeps } from '../deps';
import { listPage } from './list';
import { HttpError, fromZod, serviceUnavailable } from '../errors';
import { effectiveLimits, refusal } from '../limits';
import { fileNotFound } from './files';

/** The endpoints a batch may run: llmq serves chat completions in batches. */
const ENDPOINTS = ['/v1/chat/completions'] as const;
/** OpenAI's only completion window. */
const WINDOW = { '24h': 24 * 3600 } as const;

const metadataSchema = z
  .record(z.string().min(1).max(LIMITS.maxMetadataKeyChars), z.string().max(LIMITS.maxMetadataValueChars))
  .refine((m) => Object.keys(m).length <= LIMITS.maxMetadataKeys, {
    message: `at most ${LIMITS.maxMetadataKeys} metadata keys`,
  });

/** `POST /v1/batches`. Unknown fields are tolerated, as on OpenAI's other endpoints here. */
const createSchema = z.looseObject({
  input_file_id: z.string().max(128),
  endpoint: z.string().max(128),
  completion_window: z.string().max(16),
  metadata: metadataSchema.nullable().optional(),
  // Accepted for compatibility; outputs are kept until deleted (the storage limit bounds them).
  output_expires_after: z
    .looseObject({ anchor: z.literal('created_at'), seconds: z.number().int().min(3600).max(2_592_000) })
    .optional(),
});

const listQuery = z.object({
  limit: z.coerce.number().int().min(1).max(100).default(20),
  after: z.string().max(128).optional(),
});

/**
 * OpenAI Batches (docs/batches.md): `POST /v1/batches` records the batch and queues its control
 * job, which validates the input file and expands its lines into jobs of the batch tier off the
 * request path; retrieve and list report OpenAI's states with request counts from the jobs;
 * cancel stops what has not started. Another tenant's batch is a 404 exactly like an unknown id.
 */
export function batchesRouter(deps: ApiDeps): Router {
  const router = Router();
  const batches = new BatchRepository(deps.pool);
  const files = new FileRepository(deps.pool);
  const parseJson = json({ limit: '64kb', strict: true });

  router.post('/batches', requireJson, parseJson, async (req, res) => {
    const principal = req.principal!;
    const request = await checkCreation(files, principal.tenantId, req.body);
    if (deps.redis.status !== 'ready') {
      throw serviceUnavailable('the job queue is unavailable; retry shortly');
    }
    const id = newBatchId();
    await admitCreation(deps, principal, id);
    const outcome = await batches.create(
      { id, tenantId: principal.tenantId, apiKeyId: principal.apiKeyId, ...request },
      deps.settings.batchMaxOpen,
    );
    if (!outcome.created) {
      throw new HttpError(
        429,
        'too_many_open_batches',
        `You have ${outcome.open} batches in progress, the limit is ${deps.settings.batchMaxOpen}; create this one when one of them has finished.`,
      );
    }
    try {
      await deps.producer.enqueue('batch', id, { batchId: id, tenantId: principal.tenantId });
    } catch (error) {
      // The batch is recorded: the workers' sweep enqueues the control job of a batch left
      // validating. Answering an error instead would have the client (an SDK retries 5xx) create
      // a second batch of the same file.
      req.log.warn({ err: error, batchId: id }, 'enqueue of a batch control job failed; the sweep will');
    }
    req.log.info({ batchId: id, inputFileId: request.inputFileId }, 'batch created');
    res.json(toBatchObject(outcome.batch, null));
  });

  router.get('/batches', async (req, res) => {
    const query = listQuery.safeParse(req.query);
    if (!query.success) throw fromZod(query.error);
    const page = await batches.list(req.principal!.tenantId, query.data);
    const counts = await batches.requestCounts(page.batches.map((b) => b.id));
    const data = page.batches.map((b) => toBatchObject(b, counts.get(b.id) ?? null));
    res.json(listPage(data, page.hasMore));
  });

  router.get('/batches/:id', async (req, res) => {
    const batch = await ownBatch(batches, req);
    res.json(await withCounts(batches, batch));
  });

  router.post('/batches/:id/cancel', async (req, res) => {
    const id = String(req.params.id);
    const outcome = isBatchId(id) ? await batches.cancel(req.principal!.tenantId, id) : null;
    if (!outcome) throw batchNotFound(id);
    if (!outcome.cancelled) {
      throw new HttpError(
        400,
        'batch_not_cancellable',
        `Cannot cancel a batch with status "${outcome.status}".`,
      );
    }
    if (outcome.cancelledJobIds.length > 0) {
      req.log.info({ batchId: id, cancelled: outcome.cancelledJobIds.length }, 'batch cancelling');
      // Out of the queue, and whoever follows one of them is told it ended.
      await closeCancelledJobs(deps, 'batch', outcome.cancelledJobIds, 'the batch was cancelled', (streams) =>
        batches.storeJobEvents(streams),
      );
    }
    res.json(await withCounts(batches, outcome.batch));
  });

  return router;
}

const requireJson: RequestHandler = (req, _res, next) => {
  if (!req.is('application/json')) {
    throw new HttpError(415, 'unsupported_media_type', 'Content-Type must be application/json');
  }
  next();
};

/** A create request checked: a batchable endpoint, the 24h window, an input file of the tenant's. */
async function checkCreation(
  files: FileRepository,
  tenantId: string,
  raw: unknown,
): Promise<Omit<NewBatch, 'id' | 'tenantId' | 'apiKeyId'>> {
  const parsed = createSchema.safeParse(raw);
  if (!parsed.success) throw fromZod(parsed.error);
  const body = parsed.data;
  const endpoint = ENDPOINTS.find((e) => e === body.endpoint);
  if (!endpoint) {
    const message = `Unsupported endpoint "${body.endpoint}"; llmq runs batches of ${ENDPOINTS.join(', ')}.`;
    throw new HttpError(400, 'invalid_value', message, { field: 'endpoint' });
  }
  if (body.completion_window !== '24h') {
    throw new HttpError(400, 'invalid_value', 'completion_window must be "24h".', {
      field: 'completion_window',
    });
  }
  const input = isFileId(body.input_file_id) ? await files.get(tenantId, body.input_file_id) : null;
  if (!input) throw fileNotFound(body.input_file_id);
  if (input.purpose !== 'batch') {
    const message = `File ${input.id} has purpose "${input.purpose}"; a batch's input file needs purpose "batch".`;
    throw new HttpError(400, 'invalid_value', message, { field: 'input_file_id' });
  }
  return {
    endpoint,
    completionWindow: body.completion_window,
    inputFileId: input.id,
    metadata: body.metadata ?? null,
    windowSeconds: WINDOW['24h'],
  };
}

/**
 * A batch's jobs are never admitted one by one: the per-minute buckets and the tenant's
 * active-job limit are for interactive traffic, and 50 000 queued lines would hold every active
 * slot for hours. Creating the batch is admitted as one request instead, so a revoked key, a
 * tripped spend alarm, an exhausted budget or an empty request bucket refuse it; nothing stays
 * reserved (the admission is settled at once). Each job is charged to the usage ledger when it
 * ends, as any job is (docs/batches.md).
 */
async function admitCreation(deps: ApiDeps, principal: Principal, batchId: string): Promise<void> {
  const limits = {
    ...effectiveLimits(deps.limitsEnv, principal.record.limits, principal.record.tenantMaxActiveJobs),
    maxActiveJobs: 0,
  };
  const request = { tenantId: principal.tenantId, jobId: batchId, tokens: 0, costMicros: 0 };
  let decision;
  try {
    decision = await deps.limiter.admit({ ...request, keyId: principal.apiKeyId, limits });
  } catch {
    throw serviceUnavailable('the rate limiter is unavailable; retry shortly');
  }
  if (!decision.admitted) throw refusal(decision, limits, request);
  // Left alone, the admission would hold an active slot until it went stale.
  await deps.limiter.settle(request).catch(() => undefined);
}

const batchNotFound = (id: string) =>
  new HttpError(404, 'not_found', `No such Batch object: ${id.slice(0, 128)}`, { field: 'batch_id' });

async function ownBatch(batches: BatchRepository, req: Request): Promise<BatchRecord> {
  const id = String(req.params.id);
  const batch = isBatchId(id) ? await batches.get(req.principal!.tenantId, id) : null;
  if (!batch) throw batchNotFound(id);
  return batch;
}

async function withCounts(batches: BatchRepository, batch: BatchRecord) {
  const counts = await batches.requestCounts([batch.id]);
  return toBatchObject(batch, counts.get(batch.id) ?? null);
}

const seconds = (d: Date | null) => (d === null ? null : Math.floor(d.getTime() / 1000));

/** OpenAI's batch object. Request counts come from the statuses of the batch's jobs. */
export function toBatchObject(b: BatchRecord, counts: RequestCounts | null) {
  return {
    id: b.id,
    object: 'batch' as const,
    endpoint: b.endpoint,
    errors: b.errors ? { object: 'list', data: b.errors } : null,
    input_file_id: b.inputFileId,
    completion_window: b.completionWindow,
    status: b.status,
    output_file_id: b.outputFileId,
    error_file_id: b.errorFileId,
    created_at: seconds(b.createdAt),
    in_progress_at: seconds(b.inProgressAt),
    expires_at: seconds(b.expiresAt),
    finalizing_at: seconds(b.finalizingAt),
    completed_at: seconds(b.completedAt),
    failed_at: seconds(b.failedAt),
    // Recorded when the window passed; reported, as OpenAI does, once the batch is `expired`.
    expired_at: b.status === 'expired' ? seconds(b.expiredAt) : null,
    cancelling_at: seconds(b.cancellingAt),
    cancelled_at: seconds(b.cancelledAt),
    request_counts: counts ?? { total: 0, completed: 0, failed: 0 },
    metadata: b.metadata,
  };
}
