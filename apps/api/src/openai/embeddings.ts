import { randomUUID } from 'node:crypto';
import { LIMITS } from '@llmq/contracts';
import { RetryLaterError, countTextTokens } from '@llmq/llm';
import { EMBEDDING_DIMENSIONS } from '@llmq/rag';
import { rateLimitHeaders } from '@llmq/rate-limit';
import { Router, type Request } from 'express';
import { z } from 'zod';
import type { ApiDeps } from '../deps';
import { HttpError, fromZod, serviceUnavailable } from '../errors';
import { effectiveLimits, refusal } from '../limits';
import { jsonBody } from './jobs';
import { watchClient } from './sse';

/** OpenAI's own limits: inputs per request, tokens per input, tokens per request. */
export const EMBEDDINGS_LIMITS = { maxInputs: 2048, maxInputTokens: 8192, maxRequestTokens: 300_000 };

const embeddingsRequestSchema = z.looseObject({
  model: z.string().min(1).max(LIMITS.maxModelChars),
  input: z.union([z.string(), z.array(z.unknown())]),
  encoding_format: z.enum(['float', 'base64']).nullable().optional(),
  dimensions: z.number().int().min(1).nullable().optional(),
  user: z.string().max(256).optional(),
});

/**
 * `POST /embeddings`: the configured embeddings provider (EMBEDDINGS_BASE_URL), behind the key's
 * limits. Embeddings are not queued (one short upstream call, nothing to stream), but they are
 * not an unmetered hole either: each request is admitted against the key's request and token
 * buckets (and the tenant's concurrency) before the provider is called, and settled with its
 * tokens after. They cost no budget and write no usage-ledger entry: the ledger is per job, and
 * the providers file prices chat models only.
 */
export function embeddingsRouter(deps: ApiDeps): Router {
  const router = Router();
  router.post('/embeddings', ...jsonBody(deps), async (req, res) => {
    const client = watchClient(res);
    const parsed = embeddingsRequestSchema.safeParse(req.body);
    if (!parsed.success) throw fromZod(parsed.error);
    const body = parsed.data;
    const embedder = deps.embedder;
    if (!embedder) {
      throw new HttpError(503, 'embeddings_unavailable', 'no embeddings provider is configured here');
    }
    const model = deps.settings.embeddingsModel;
    if (body.model !== model) {
      throw new HttpError(
        404,
        'model_not_found',
        `The model '${body.model}' does not exist or is not an embeddings model; use '${model}'`,
        { field: 'model' },
      );
    }
    if (body.dimensions != null && body.dimensions !== EMBEDDING_DIMENSIONS) {
      throw new HttpError(
        400,
        'invalid_value',
        `'${model}' has ${EMBEDDING_DIMENSIONS} dimensions and cannot shorten them`,
        { field: 'dimensions' },
      );
    }
    const texts = inputTexts(body.input);
    const tokens = countTokens(texts);

    const controller = new AbortController();
    client.onGone(() => controller.abort(new Error('the client went away')));
    const admission = await admit(deps, req, tokens);
    res.set(rateLimitHeaders(admission.state));
    let vectors: number[][];
    try {
      vectors = await embedder.embedMany(texts, controller.signal);
    } catch (error) {
      await settle(deps, req, admission.id, null);
      if (controller.signal.aborted) return;
      throw upstreamError(error);
    }
    await settle(deps, req, admission.id, tokens);
    const base64 = body.encoding_format === 'base64';
    res.json({
      object: 'list',
      data: vectors.map((vector, index) => ({
        object: 'embedding',
        index,
        embedding: base64 ? toBase64(vector) : vector,
      })),
      model,
      usage: { prompt_tokens: tokens, total_tokens: tokens },
    });
  });
  return router;
}

/** The texts to embed: a string or an array of strings, none empty. Token arrays are refused. */
function inputTexts(input: string | unknown[]): string[] {
  const bad = (message: string) => new HttpError(400, 'invalid_value', message, { field: 'input' });
  const texts = typeof input === 'string' ? [input] : input;
  if (texts.length === 0) throw bad("'input' must not be empty");
  if (texts.length > EMBEDDINGS_LIMITS.maxInputs) {
    throw bad(`at most ${EMBEDDINGS_LIMITS.maxInputs} inputs per request, got ${texts.length}`);
  }
  if (texts.some((t) => typeof t === 'number' || Array.isArray(t))) {
    throw bad('token-array inputs are not supported; send text');
  }
  texts.forEach((t, i) => {
    if (typeof t !== 'string') throw bad(`input[${i}] must be a string`);
    if (t === '') throw bad(`input[${i}] is empty; embeddings need text`);
    if (t.length > LIMITS.maxContentChars) {
      throw bad(`input[${i}] is longer than ${LIMITS.maxContentChars} characters`);
    }
  });
  return texts as string[];
}

function countTokens(texts: string[]): number {
  let total = 0;
  texts.forEach((text, i) => {
    const n = countTextTokens(text);
    if (n > EMBEDDINGS_LIMITS.maxInputTokens) {
      throw new HttpError(
        400,
        'context_length_exceeded',
        `input[${i}] is about ${n} tokens; the limit is ${EMBEDDINGS_LIMITS.maxInputTokens}`,
        { field: 'input' },
      );
    }
    total += n;
  });
  if (total > EMBEDDINGS_LIMITS.maxRequestTokens) {
    throw new HttpError(
      400,
      'max_tokens_per_request',
      `the inputs are about ${total} tokens together; the limit is ${EMBEDDINGS_LIMITS.maxRequestTokens} per request`,
      { field: 'input' },
    );
  }
  return total;
}

/** Admits the request against the key's limits, as a submission is (no budget: no price). */
async function admit(deps: ApiDeps, req: Request, tokens: number) {
  const principal = req.principal!;
  const limits = effectiveLimits(
    deps.limitsEnv,
    principal.record.limits,
    principal.record.tenantMaxActiveJobs,
  );
  const id = `embeddings:${randomUUID()}`;
  const decision = await deps.limiter
    .admit({
      tenantId: principal.tenantId,
      keyId: principal.apiKeyId,
      jobId: id,
      tokens,
      costMicros: 0,
      limits,
    })
    .catch((err: unknown) => {
      req.log.warn({ err }, 'rate limiter unavailable');
      throw serviceUnavailable('the rate limiter is unavailable; retry shortly');
    });
  if (!decision.admitted) {
    const reason =
      decision.reason === 'tokens' && decision.retryAfterMs < 0 ? 'request_too_large' : decision.reason;
    deps.metrics.rateLimitRejections.inc({ reason });
    throw refusal(decision, limits, { tokens, costMicros: 0 });
  }
  return { id, state: decision.state };
}

/** Settles an admission: the tokens used, or (null) everything given back after a failure. */
async function settle(deps: ApiDeps, req: Request, id: string, tokens: number | null): Promise<void> {
  await deps.limiter
    .settle({
      tenantId: req.principal!.tenantId,
      jobId: id,
      tokens: tokens ?? 0,
      costMicros: 0,
      ...(tokens === null ? { refundRequest: true } : {}),
    })
    // The reservation then expires by itself (tokens refill; the active slot is dropped as stale).
    .catch((err: unknown) => req.log.warn({ err }, 'could not settle an embeddings admission'));
}

function upstreamError(error: unknown): HttpError {
  if (error instanceof RetryLaterError) {
    return serviceUnavailable(error.message, Math.ceil(error.retryAfterMs / 1000));
  }
  const message = error instanceof Error ? error.message : String(error);
  return new HttpError(502, 'upstream_error', `the embeddings provider failed: ${message}`);
}

/** OpenAI's base64 encoding: the vector as little-endian float32, base64-encoded. */
function toBase64(vector: number[]): string {
  const bytes = Buffer.alloc(vector.length * 4);
  vector.forEach((x, i) => bytes.writeFloatLE(x, i * 4));
  return bytes.toString('base64');
}
