import { envDuration, envInt, envUrl } from '@llmq/config';
import { z } from 'zod';

/** The worker's environment. Parsed once, in main.ts. */
export const workerEnvSchema = z.object({
  REDIS_URL: envUrl(['redis', 'rediss']),
  DATABASE_URL: envUrl(['postgres', 'postgresql']),
  LLMQ_PREFIX: z
    .string()
    .regex(/^[a-z0-9_-]{1,32}$/i, 'letters, digits, _ or -')
    .default('llmq'),
  /** OpenAI-compatible base URL (…/v1). The provider registry replaces this later. */
  PROVIDER_BASE_URL: envUrl(['http', 'https'], 'http://127.0.0.1:8081/v1'),
  /** Name of the environment variable that holds the provider's API key (never the key itself). */
  PROVIDER_API_KEY_ENV: z
    .string()
    .regex(/^[A-Z_][A-Z0-9_]*$/)
    .optional(),
  WORKER_CONCURRENCY: envInt(16, { min: 1, max: 2000 }),
  /** How long a job lock lives without renewal; a killed worker's jobs are retried after this. */
  LOCK_DURATION_MS: envDuration(30_000),
  STALLED_INTERVAL_MS: envDuration(30_000),
  MAX_STALLED_COUNT: envInt(2, { min: 0, max: 100 }),
  /** On SIGTERM: how long running jobs may take to finish before the process exits anyway. */
  DRAIN_TIMEOUT_MS: envDuration(30_000),
  /** Tokens arriving within this window go out as one event. */
  TOKEN_COALESCE_MS: envInt(10, { min: 0, max: 1000 }),
  UPSTREAM_TIMEOUT_MS: envDuration(120_000),
  RECONCILE_INTERVAL_MS: envDuration(30_000),
  /** Jobs younger than this are left to the normal path by the reconciler. */
  RECONCILE_GRACE_MS: envDuration(30_000),
  DB_POOL_MAX: envInt(10, { min: 1, max: 200 }),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
});
export type WorkerEnv = z.infer<typeof workerEnvSchema>;
