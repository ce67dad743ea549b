import { envInt } from '@llmq/config';
import type { LlmHooks } from '@llmq/llm';
import { BREAKER_STATE_VALUES, type WorkerMetrics } from '@llmq/observability';
import type { Logger } from 'pino';
import { z } from 'zod';
import type { JobMetrics } from './pipeline';

/** The worker's metrics server. Parsed once, in main.ts, with the rest. */
export const metricsEnvSchema = z.object({
  /** Port of `/metrics` and `/health`; 0 picks a free one (printed on stdout). */
  METRICS_PORT: envInt(9464, { min: 0, max: 65535 }),
  /** Address to listen on; 0.0.0.0 in a container, so Prometheus can reach it. */
  METRICS_HOST: z.string().min(1).default('127.0.0.1'),
  /** When set, `/metrics` needs `Authorization: Bearer <METRICS_TOKEN>`. */
  METRICS_TOKEN: z.string().min(16, 'use at least 16 characters').optional(),
});
export type WorkerMetricsEnv = z.infer<typeof metricsEnvSchema>;

/** The LLM client's hooks: upstream calls, errors, retries, fallbacks and breakers, plus their logs. */
export function llmHooks(metrics: WorkerMetrics, logger: Logger): LlmHooks {
  return {
    onAttempt: (e) => metrics.upstreamAttempts.inc({ backend: e.backendId, model: e.model }),
    onSuccess: (e) => {
      const labels = { backend: e.backendId, model: e.model };
      metrics.upstreamDuration.observe(labels, e.latencyMs / 1000);
      if (e.ttftMs !== null) metrics.upstreamTimeToFirstToken.observe(labels, e.ttftMs / 1000);
    },
    onError: (e) => metrics.upstreamErrors.inc({ backend: e.backendId, error_class: e.errorClass }),
    onRetry: (e) => metrics.upstreamRetries.inc({ backend: e.backendId, model: e.model }),
    onFallback: (e) => {
      metrics.upstreamFallbacks.inc({ from_model: e.from, to_model: e.to });
      logger.info(e, 'falling back to another model');
    },
    onBreaker: (e) => {
      metrics.breakerState.set({ backend: e.backendId }, BREAKER_STATE_VALUES[e.state]);
      logger.warn(e, 'circuit breaker changed state');
    },
    onRejectedByLimit: (e) => metrics.upstreamLimitRejections.inc({ backend: e.backendId, reason: e.reason }),
  };
}

/**
 * Gives every backend of the providers file a breaker series (closed until told otherwise) and
 * drops the series of backends the file no longer has. The breakers of kept backends are left alone.
 */
export function trackBackends(
  metrics: WorkerMetrics,
  backendIds: Iterable<string>,
  known: Set<string>,
): void {
  const now = new Set(backendIds);
  for (const id of now) if (!known.has(id)) metrics.breakerState.set({ backend: id }, 0);
  for (const id of known) if (!now.has(id)) metrics.breakerState.remove({ backend: id });
  known.clear();
  for (const id of now) known.add(id);
}

/** The pipeline's run metrics on the worker's registry. */
export function jobMetrics(metrics: WorkerMetrics): JobMetrics {
  return {
    runStarted: ({ queue, waitedMs }) => {
      if (waitedMs !== null) metrics.jobQueueWait.observe({ queue }, waitedMs / 1000);
    },
    runEnded: ({ queue, model, outcome, durationMs, ttftMs }) => {
      metrics.jobDuration.observe({ queue, model, outcome }, durationMs / 1000);
      if (ttftMs !== null) metrics.jobTimeToFirstToken.observe({ queue, model }, ttftMs / 1000);
      if (outcome === 'retry') metrics.jobsRetried.inc({ queue, reason: 'error' });
      if (outcome === 'delayed') metrics.jobsRetried.inc({ queue, reason: 'no_capacity' });
    },
    stalled: ({ queue }) => metrics.jobsStalled.inc({ queue }),
    upstreamUsage: ({ model, promptTokens, completionTokens, costUsd }) => {
      metrics.tokens.inc({ model, type: 'input' }, promptTokens);
      metrics.tokens.inc({ model, type: 'output' }, completionTokens);
      metrics.costUsd.inc({ model }, costUsd);
    },
  };
}
