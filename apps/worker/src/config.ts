import { envBoolean, envDuration, envInt, envList, envUrl } from '@llmq/config';
import { PRIORITIES, type Priority } from '@llmq/contracts';
import { z } from 'zod';

/**
 * `WORKER_QUEUES`: the priority tiers this process consumes, e.g. `interactive`, `batch` or
 * `interactive,batch`. Order and repeats do not matter; an unknown tier or an empty list is an error.
 */
const workerQueues = envList([...PRIORITIES]).transform((names, ctx) => {
  const unknown = names.filter((n) => !(PRIORITIES as readonly string[]).includes(n));
  if (unknown.length > 0) {
    ctx.addIssue({
      code: 'custom',
      message: `unknown queue ${unknown.map((n) => `"${n}"`).join(', ')}; expected ${PRIORITIES.join(', ')}`,
    });
    return z.NEVER;
  }
  if (names.length === 0) {
    ctx.addIssue({ code: 'custom', message: `name at least one of ${PRIORITIES.join(', ')}` });
    return z.NEVER;
  }
  return PRIORITIES.filter((p): p is Priority => names.includes(p));
});

/** The worker's environment. Parsed once, in main.ts. */
export const workerEnvSchema = z.object({
  REDIS_URL: envUrl(['redis', 'rediss']),
  DATABASE_URL: envUrl(['postgres', 'postgresql']),
  LLMQ_PREFIX: z
    .string()
    .regex(/^[a-z0-9_-]{1,32}$/i, 'letters, digits, _ or -')
    .default('llmq'),
  /** The providers file (YAML or JSON): backends, models, fallbacks, limits, prices. Reloaded on change. */
  PROVIDERS_FILE: z.string().min(1, 'the path of the providers file'),
  /** Upstream calls per model before its fallback is tried. */
  LLM_ATTEMPTS_PER_MODEL: envInt(3, { min: 1, max: 20 }),
  /** Longer provider waits (Retry-After, cool-downs) delay the job instead of holding a worker slot. */
  LLM_MAX_INLINE_WAIT_MS: envDuration(10_000),
  /** How long after submission a job may still be delayed for want of provider capacity. */
  JOB_MAX_WAIT_MS: envDuration(15 * 60_000),
  /** The same for jobs of the batch tier (an OpenAI batch's window is 24 h): nobody is waiting on them. */
  BATCH_JOB_MAX_WAIT_MS: envDuration(24 * 3600_000),
  BREAKER_ERROR_RATIO: z.coerce.number().gt(0).max(1).default(0.5),
  BREAKER_MIN_REQUESTS: envInt(5, { min: 1 }),
  BREAKER_OPEN_MS: envDuration(5_000),
  HEALTH_CHECK_INTERVAL_MS: envDuration(5_000),
  /** Which queues this process consumes (`interactive`, `batch`); each gets its own BullMQ worker. */
  WORKER_QUEUES: workerQueues,
  /** Interactive jobs run at once in this process. */
  WORKER_CONCURRENCY: envInt(16, { min: 1, max: 2000 }),
  /** Batch jobs run at once in this process; separate slots, never shared with interactive work. */
  WORKER_BATCH_CONCURRENCY: envInt(4, { min: 1, max: 2000 }),
  /** How long a job lock lives without renewal; a killed worker's jobs are retried after this. */
  LOCK_DURATION_MS: envDuration(30_000),
  STALLED_INTERVAL_MS: envDuration(30_000),
  MAX_STALLED_COUNT: envInt(2, { min: 0, max: 100 }),
  /** On SIGTERM: how long running jobs may take to finish before the process exits anyway. */
  DRAIN_TIMEOUT_MS: envDuration(30_000),
  /** Tokens arriving within this window go out as one event. */
  TOKEN_COALESCE_MS: envInt(10, { min: 0, max: 1000 }),
  RECONCILE_INTERVAL_MS: envDuration(30_000),
  /** Jobs younger than this are left to the normal path by the reconciler. */
  RECONCILE_GRACE_MS: envDuration(30_000),
  DB_POOL_MAX: envInt(10, { min: 1, max: 200 }),
  /** The response cache: store answers of cacheable jobs (the API decides which). */
  CACHE_ENABLED: envBoolean(true),
  CACHE_REDIS_URL: envUrl(['redis', 'rediss']).optional(),
  CACHE_REDIS_TTL_SECONDS: envInt(3600, { min: 1 }),
  CACHE_POSTGRES_TTL_SECONDS: envInt(7 * 86_400, { min: 1 }),
  /** How often expired Postgres cache entries are deleted. */
  CACHE_CLEANUP_INTERVAL_MS: envDuration(60_000),
  /** The spend-rate alarm (settled here, when jobs end): see the API's settings of the same names. */
  SPEND_ALARM_MULTIPLE: z.coerce.number().min(0).default(10),
  SPEND_ALARM_FLOOR_USD_PER_MINUTE: z.coerce.number().min(0).default(0.5),
  SPEND_ALARM_DURATION_MS: envDuration(15 * 60_000),
  /** Read replicas for RAG searches (comma-separated postgres URLs); none: the primary serves reads. */
  DATABASE_REPLICA_URLS: envList([]),
  /** OpenAI-compatible embeddings provider (…/v1) for RAG; RAG jobs and ingestion fail without it. */
  EMBEDDINGS_BASE_URL: envUrl(['http', 'https']).optional(),
  EMBEDDINGS_MODEL: z.string().default('sim-embed'),
  /** Name of the variable holding the embeddings provider's key. */
  EMBEDDINGS_API_KEY_ENV: z
    .string()
    .regex(/^[A-Z_][A-Z0-9_]*$/)
    .optional(),
  EMBEDDINGS_BATCH_SIZE: envInt(64, { min: 1, max: 2048 }),
  /** Ingestions run at once in this process (0: this process does not ingest). */
  INGEST_CONCURRENCY: envInt(2, { min: 0, max: 64 }),
  /** The most RAG context tokens put into one prompt (the model's context window may allow less). */
  RAG_MAX_CONTEXT_TOKENS: envInt(4000, { min: 1 }),
  /** How often a conversation turn looks whether the turn before it has finished. */
  TURN_WAIT_MS: envInt(100, { min: 10, max: 10_000 }),
  /** OpenAI batches: requests (lines) one batch may have; a larger input file fails validation. */
  BATCH_MAX_REQUESTS: envInt(50_000, { min: 1, max: 1_000_000 }),
  /** The API's variable of the same name: batch lines are checked here, against the same limit. */
  MAX_PROMPT_TOKENS: envInt(100_000, { min: 1 }),
  /** How often finished batches are finalized (output files written) and overdue ones expired. */
  BATCH_SWEEP_INTERVAL_MS: envDuration(2_000),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** Debugging only: prompt, completion and provider error text in logs (redacted by default). */
  LOG_PROMPTS: envBoolean(false),
});
export type WorkerEnv = z.infer<typeof workerEnvSchema>;
