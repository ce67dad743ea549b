import { envDuration, envInt } from '@llmq/config';
import type { ApiMetrics } from '@llmq/observability';
import type { RequestHandler } from 'express';
import { z } from 'zod';

/** Metrics, readiness and scaling settings of the API. Parsed once, in main.ts, with the rest. */
export const metricsEnvSchema = z.object({
  /** When set, `GET /metrics` needs `Authorization: Bearer <METRICS_TOKEN>`; open by default. */
  METRICS_TOKEN: z.string().min(16, 'use at least 16 characters').optional(),
  /** /ready answers 503 while this many requests are being answered (SSE streams and probes aside); 0: no limit. */
  READY_MAX_ACTIVE_REQUESTS: envInt(0, { min: 0 }),
  /** /ready answers 503 while the event loop's p99 lag (over 5 s windows) passes this; 0: no limit. */
  READY_MAX_EVENT_LOOP_LAG_MS: envInt(0, { min: 0 }),
  /**
   * On SIGTERM: how long /ready answers 503 (draining) while everything else is still served,
   * before the listener closes, so load balancers stop sending new requests first.
   */
  DRAIN_DELAY_MS: envDuration(0),
  /** Scaling advice: scale up when waiting jobs per worker pass this... */
  SCALE_UP_QUEUE_PRESSURE: z.coerce.number().positive().default(5),
  /** ...or when more jobs than this wait. */
  SCALE_UP_WAITING: envInt(100, { min: 1 }),
  /** Scale down when nothing waits and fewer jobs than this run. */
  SCALE_DOWN_MAX_ACTIVE: envInt(2, { min: 0 }),
});
export type MetricsEnv = z.infer<typeof metricsEnvSchema>;

/** Paths that are probes, not work: they never count as active requests. */
const PROBES = new Set(['/health', '/ready', '/metrics']);
const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

export interface HttpMetrics {
  middleware: RequestHandler;
  /** Requests being answered now, probes left out (open SSE streams included). */
  inFlight(): number;
}

/**
 * Counts every answer by route pattern, method and status, and times it. The route label is
 * the pattern Express matched (`/api/jobs/:id`), never the URL, so job ids cannot become
 * series; a request no route took (a 404, or one refused before routing) is `unmatched`.
 */
export function httpMetrics(metrics: ApiMetrics): HttpMetrics {
  let inFlight = 0;
  const middleware: RequestHandler = (req, res, next) => {
    const started = performance.now();
    const work = !PROBES.has(req.path);
    if (work) inFlight++;
    metrics.httpInFlight.inc();
    // The pattern is taken when the router sets req.route: by the time the answer is sent
    // (an error handler, say) the router has already restored req.baseUrl to its parent's.
    let route: unknown;
    let pattern: string | null = null;
    Object.defineProperty(req, 'route', {
      configurable: true,
      enumerable: true,
      get: () => route,
      set: (value: unknown) => {
        route = value;
        const path = (value as { path?: unknown } | undefined)?.path;
        if (path !== undefined) pattern = req.baseUrl + String(path);
      },
    });
    let ended = false;
    const end = () => {
      if (ended) return;
      ended = true;
      if (work) inFlight--;
      metrics.httpInFlight.dec();
      // 499 (nginx's "client closed request"): the client left before any answer was sent.
      const status = !res.headersSent && !res.writableFinished ? '499' : String(res.statusCode);
      const labels = {
        route: pattern ?? 'unmatched',
        method: METHODS.has(req.method) ? req.method : 'OTHER',
      };
      metrics.httpRequests.inc({ ...labels, status });
      metrics.httpDuration.observe(labels, (performance.now() - started) / 1000);
    };
    res.once('finish', end);
    res.once('close', end);
    next();
  };
  return { middleware, inFlight: () => inFlight };
}
