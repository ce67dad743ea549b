import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { LLM_LATENCY_BUCKETS } from './buckets';
import { newRegistry, type RegistryOptions } from './registry';

/** `llmq_upstream_breaker_state` values. */
export const BREAKER_STATE_VALUES = { closed: 0, half_open: 1, open: 2 } as const;

/**
 * The metrics of a worker process. Labels are bounded: queue names from the job catalog, model
 * and backend names from the operator's providers file, fixed sets of outcomes and reasons.
 */
export interface WorkerMetrics {
  registry: Registry;
  /** `llmq_job_queue_wait_seconds{queue}`: submission to the start of the first run. */
  jobQueueWait: Histogram<'queue'>;
  /** `llmq_job_time_to_first_token_seconds{queue,model}`: start of the run to its first token. */
  jobTimeToFirstToken: Histogram<'queue' | 'model'>;
  /** `llmq_job_duration_seconds{queue,model,outcome}`: one run, start to end. */
  jobDuration: Histogram<'queue' | 'model' | 'outcome'>;
  /** `llmq_jobs_retried_total{queue,reason}`: runs that put their job back (error, no_capacity). */
  jobsRetried: Counter<'queue' | 'reason'>;
  /** `llmq_jobs_stalled_total{queue}`: jobs whose worker lost its lock (died or hung). */
  jobsStalled: Counter<'queue'>;
  /** `llmq_tokens_total{model,type}`: tokens of fresh upstream answers, `type` input or output. */
  tokens: Counter<'model' | 'type'>;
  /** `llmq_cost_usd_total{model}` */
  costUsd: Counter<'model'>;
  /** `llmq_upstream_attempts_total{backend,model}` */
  upstreamAttempts: Counter<'backend' | 'model'>;
  /** `llmq_upstream_errors_total{backend,error_class}`: retryable, rate_limited or fatal. */
  upstreamErrors: Counter<'backend' | 'error_class'>;
  /** `llmq_upstream_retries_total{backend,model}`: backoffs before another call to the same model. */
  upstreamRetries: Counter<'backend' | 'model'>;
  /** `llmq_upstream_fallbacks_total{from_model,to_model}` */
  upstreamFallbacks: Counter<'from_model' | 'to_model'>;
  /** `llmq_upstream_limit_rejections_total{backend,reason}`: the fleet-wide provider limits said wait. */
  upstreamLimitRejections: Counter<'backend' | 'reason'>;
  /** `llmq_upstream_request_duration_seconds{backend,model}`: successful calls. */
  upstreamDuration: Histogram<'backend' | 'model'>;
  /** `llmq_upstream_time_to_first_token_seconds{backend,model}` */
  upstreamTimeToFirstToken: Histogram<'backend' | 'model'>;
  /** `llmq_upstream_breaker_state{backend}`: 0 closed, 1 half-open, 2 open. */
  breakerState: Gauge<'backend'>;
}

export function createWorkerMetrics(options: RegistryOptions = {}): WorkerMetrics {
  const registry = newRegistry(options);
  const registers = [registry];
  const buckets = [...LLM_LATENCY_BUCKETS];
  return {
    registry,
    jobQueueWait: new Histogram({
      name: 'llmq_job_queue_wait_seconds',
      help: 'Time from submission to the start of the first run of a job',
      labelNames: ['queue'],
      buckets,
      registers,
    }),
    jobTimeToFirstToken: new Histogram({
      name: 'llmq_job_time_to_first_token_seconds',
      help: 'Time from the start of a run to its first token',
      labelNames: ['queue', 'model'],
      buckets,
      registers,
    }),
    jobDuration: new Histogram({
      name: 'llmq_job_duration_seconds',
      help: 'Duration of one run of a job, by outcome (completed, failed, cancelled, retry, delayed)',
      labelNames: ['queue', 'model', 'outcome'],
      buckets,
      registers,
    }),
    jobsRetried: new Counter({
      name: 'llmq_jobs_retried_total',
      help: 'Runs that put their job back in the queue, by reason (error: another attempt; no_capacity: delayed)',
      labelNames: ['queue', 'reason'],
      registers,
    }),
    jobsStalled: new Counter({
      name: 'llmq_jobs_stalled_total',
      help: 'Jobs found stalled (their worker lost the lock) and run again',
      labelNames: ['queue'],
      registers,
    }),
    tokens: new Counter({
      name: 'llmq_tokens_total',
      help: 'Tokens of answers fetched from providers, by model and type (input, output)',
      labelNames: ['model', 'type'],
      registers,
    }),
    costUsd: new Counter({
      name: 'llmq_cost_usd_total',
      help: 'Provider cost of answers fetched from providers, in US dollars, by model',
      labelNames: ['model'],
      registers,
    }),
    upstreamAttempts: new Counter({
      name: 'llmq_upstream_attempts_total',
      help: 'Calls to a provider backend, by backend and model',
      labelNames: ['backend', 'model'],
      registers,
    }),
    upstreamErrors: new Counter({
      name: 'llmq_upstream_errors_total',
      help: 'Failed calls to a provider backend, by backend and error class (retryable, rate_limited, fatal)',
      labelNames: ['backend', 'error_class'],
      registers,
    }),
    upstreamRetries: new Counter({
      name: 'llmq_upstream_retries_total',
      help: 'Backoffs before calling the same model again, by backend and model',
      labelNames: ['backend', 'model'],
      registers,
    }),
    upstreamFallbacks: new Counter({
      name: 'llmq_upstream_fallbacks_total',
      help: 'Requests moved to a fallback model, by the model given up and the one tried next',
      labelNames: ['from_model', 'to_model'],
      registers,
    }),
    upstreamLimitRejections: new Counter({
      name: 'llmq_upstream_limit_rejections_total',
      help: "Calls held back by a backend's fleet-wide limits, by backend and reason (requests, tokens)",
      labelNames: ['backend', 'reason'],
      registers,
    }),
    upstreamDuration: new Histogram({
      name: 'llmq_upstream_request_duration_seconds',
      help: 'Duration of successful provider calls, by backend and model',
      labelNames: ['backend', 'model'],
      buckets,
      registers,
    }),
    upstreamTimeToFirstToken: new Histogram({
      name: 'llmq_upstream_time_to_first_token_seconds',
      help: 'Time from sending a provider call to its first token, by backend and model',
      labelNames: ['backend', 'model'],
      buckets,
      registers,
    }),
    breakerState: new Gauge({
      name: 'llmq_upstream_breaker_state',
      help: 'Circuit breaker of each backend: 0 closed, 1 half-open, 2 open',
      labelNames: ['backend'],
      registers,
    }),
  };
}
