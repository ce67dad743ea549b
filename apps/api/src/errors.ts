import type { ErrorRequestHandler, RequestHandler } from 'express';
import type { Logger } from 'pino';
import { z } from 'zod';
// Declares `req.id` (the request id this module puts on every problem).
import type {} from './request-log';

/** An error that maps to an HTTP problem answer (RFC 9457, application/problem+json). */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    /** Machine-readable code, also the last segment of the problem `type`. */
    readonly code: string,
    message: string,
    readonly extra: { field?: string; headers?: Record<string, string>; errors?: unknown[] } = {},
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

export const notFound = (what = 'job') => new HttpError(404, 'not_found', `${what} not found`);
export const serviceUnavailable = (detail: string, retryAfterSeconds = 1) =>
  new HttpError(503, 'service_unavailable', detail, {
    headers: { 'Retry-After': String(retryAfterSeconds) },
  });

const TITLES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  404: 'Not Found',
  409: 'Conflict',
  413: 'Content Too Large',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Content',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

/** body-parser errors carry a `type`; each becomes a precise problem instead of a 500. */
function fromBodyParser(err: { type?: string; status?: number; message: string } | null): HttpError | null {
  if (typeof err !== 'object' || err === null) return null;
  switch (err.type) {
    case 'entity.parse.failed':
      return new HttpError(400, 'malformed_json', `request body is not valid JSON: ${err.message}`);
    case 'entity.too.large':
      return new HttpError(413, 'body_too_large', 'request body exceeds the size limit');
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return new HttpError(415, 'unsupported_encoding', err.message);
    case 'request.aborted':
    case 'request.size.invalid':
    case 'stream.encoding.set':
      return new HttpError(400, 'bad_request', err.message);
    default:
      return null;
  }
}

export function fromZod(error: z.ZodError): HttpError {
  const errors = error.issues.map((i) => ({ field: i.path.join('.') || '(body)', message: i.message }));
  const first = errors[0] ?? { field: '(body)', message: 'invalid' };
  // "Unrecognized key" issues name the key in `keys`, not in the path.
  const unknown = error.issues.find((i) => i.code === 'unrecognized_keys');
  const detail = unknown
    ? `unknown field(s): ${(unknown as { keys: string[] }).keys.join(', ')}`
    : `${first.field}: ${first.message}`;
  const field = unknown ? (unknown as { keys: string[] }).keys[0] : first.field;
  return new HttpError(400, 'invalid_request', detail, { field, errors });
}

/** Any error as the problem it answers with; `unexpected` when it is a bug to log (a 500). */
export function toHttpError(err: unknown): { problem: HttpError; unexpected: boolean } {
  if (err instanceof HttpError) return { problem: err, unexpected: false };
  if (err instanceof z.ZodError) return { problem: fromZod(err), unexpected: false };
  const parsed = fromBodyParser(err as never);
  if (parsed) return { problem: parsed, unexpected: false };
  return { problem: new HttpError(500, 'internal_error', 'internal error'), unexpected: true };
}

export function problemHandler(logger: Logger): ErrorRequestHandler {
  return (err, req, res, _next) => {
    const { problem, unexpected } = toHttpError(err);
    if (unexpected) logger.error({ err, reqId: req.id }, 'unhandled error');
    if (res.headersSent) {
      res.end();
      return;
    }
    for (const [k, v] of Object.entries(problem.extra.headers ?? {})) res.setHeader(k, v);
    res
      .status(problem.status)
      .type('application/problem+json')
      .send(
        JSON.stringify({
          type: `https://llmq.dev/problems/${problem.code}`,
          title: TITLES[problem.status] ?? 'Error',
          status: problem.status,
          detail: problem.message,
          code: problem.code,
          ...(problem.extra.field !== undefined ? { field: problem.extra.field } : {}),
          ...(problem.extra.errors !== undefined ? { errors: problem.extra.errors } : {}),
          instance: req.originalUrl,
          requestId: req.id,
        }),
      );
  };
}

export const routeNotFound: RequestHandler = (req, _res, next) => {
  next(new HttpError(404, 'route_not_found', `no route for ${req.method} ${req.path}`));
};
