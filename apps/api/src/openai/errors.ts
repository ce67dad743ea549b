import { openAiJobError, type JobError, type OpenAiErrorObject } from '@llmq/contracts';
import type { ErrorRequestHandler, RequestHandler } from 'express';
import type { Logger } from 'pino';
import { HttpError, toHttpError } from '../errors';

/** OpenAI's error body: `{ error: { message, type, param, code } }`. */
export type OpenAiErrorBody = OpenAiErrorObject;

/**
 * Statuses the official SDKs retry on their own (408, 409, 429, 5xx). `x-should-retry` overrides
 * their guess: false for refusals that the same request will meet again (a budget spent, a
 * request larger than the bucket, a job already finished, no embeddings provider configured),
 * true for the transient ones.
 */
const PERMANENT = new Set([
  'budget_exceeded',
  'spend_alarm',
  'request_too_large',
  'job_not_cancellable',
  'embeddings_unavailable',
  'not_cached',
]);

/** Our problem codes that OpenAI spells differently. */
const CODES: Record<string, string> = {
  unauthorized: 'invalid_api_key',
  prompt_too_long: 'context_length_exceeded',
  budget_exceeded: 'insufficient_quota',
  too_many_active_jobs: 'rate_limit_exceeded',
  route_not_found: 'unknown_url',
  malformed_json: 'invalid_json',
};

/** Statuses OpenAI uses where ours differ: it answers a bad request 400 and an unknown model 404. */
function statusOf(problem: HttpError): number {
  if (problem.code === 'model_not_found') return 404;
  if (problem.status === 422) return 400;
  return problem.status;
}

function typeOf(status: number, code: string): string {
  if (status === 401) return 'invalid_request_error';
  if (status === 429) return code === 'insufficient_quota' ? 'insufficient_quota' : 'rate_limit_error';
  if (status >= 500) return status === 503 ? 'service_unavailable_error' : 'server_error';
  return 'invalid_request_error';
}

/** The OpenAI form of any error: status, body and headers (ours, plus `x-should-retry`). */
export function toOpenAiError(err: unknown): {
  status: number;
  body: OpenAiErrorBody;
  headers: Record<string, string>;
  internal: boolean;
} {
  const { problem, unexpected: internal } = toHttpError(err);
  const status = statusOf(problem);
  const code = CODES[problem.code] ?? problem.code;
  const headers: Record<string, string> = { ...(problem.extra.headers ?? {}) };
  headers['x-should-retry'] = String(
    !PERMANENT.has(problem.code) && (status === 408 || status === 409 || status === 429 || status >= 500),
  );
  const param = problem.extra.field ?? null;
  return {
    status,
    body: { error: { message: problem.message, type: typeOf(status, code), param, code } },
    headers,
    internal,
  };
}

/** A failed job's error in OpenAI's form, with the status a synchronous call answers with. */
export function jobErrorToOpenAi(error: JobError): {
  status: number;
  body: OpenAiErrorBody;
  headers: Record<string, string>;
} {
  return { ...openAiJobError(error), headers: { 'x-should-retry': String(error.retryable) } };
}

/** The error handler of the `/v1` routes: OpenAI's error shape instead of problem+json. */
export function openAiErrorHandler(logger: Logger): ErrorRequestHandler {
  return (err, req, res, _next) => {
    const { status, body, headers, internal } = toOpenAiError(err);
    if (internal) logger.error({ err, reqId: req.id }, 'unhandled error');
    if (res.headersSent) {
      res.end();
      return;
    }
    for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
    res.status(status).json(body);
  };
}

/** Unknown `/v1` paths, in OpenAI's words. */
export const openAiRouteNotFound: RequestHandler = (req, _res, next) => {
  next(new HttpError(404, 'route_not_found', `Invalid URL (${req.method} ${req.originalUrl})`));
};
