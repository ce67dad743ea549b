import { envBoolean, envDuration, envInt, envList, envUrl } from '@llmq/config';
import { z } from 'zod';

/** The API's environment. Parsed once, in main.ts. */
export const apiEnvSchema = z.object({
  HOST: z.string().default('127.0.0.1'),
  PORT: envInt(3000, { min: 0, max: 65535 }),
  REDIS_URL: envUrl(['redis', 'rediss']),
  DATABASE_URL: envUrl(['postgres', 'postgresql']),
  LLMQ_PREFIX: z
    .string()
    .regex(/^[a-z0-9_-]{1,32}$/i, 'letters, digits, _ or -')
    .default('llmq'),
  DEFAULT_MODEL: z.string().default('sim-small'),
  /** Models a request may name (the provider registry replaces this list later). */
  MODELS: envList(['sim-small', 'sim-large']),
  MAX_PROMPT_TOKENS: envInt(100_000, { min: 1 }),
  BODY_LIMIT_BYTES: envInt(1_048_576, { min: 1024, max: 64 * 1_048_576 }),
  SSE_HEARTBEAT_MS: envDuration(15_000),
  DB_POOL_MAX: envInt(10, { min: 1, max: 200 }),
  /** A Redis command slower than this fails (503) instead of hanging the request. */
  REDIS_COMMAND_TIMEOUT_MS: envDuration(1000),
  SHUTDOWN_TIMEOUT_MS: envDuration(10_000),
  TRUST_PROXY: envBoolean(false),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
});
export type ApiEnv = z.infer<typeof apiEnvSchema>;

/** What createApp needs from configuration. */
export interface ApiSettings {
  defaultModel: string;
  models: string[];
  maxPromptTokens: number;
  bodyLimitBytes: number;
  sseHeartbeatMs: number;
  trustProxy: boolean;
}

export function settingsFrom(env: ApiEnv): ApiSettings {
  if (!env.MODELS.includes(env.DEFAULT_MODEL)) {
    throw new Error(`DEFAULT_MODEL "${env.DEFAULT_MODEL}" is not in MODELS (${env.MODELS.join(', ')})`);
  }
  return {
    defaultModel: env.DEFAULT_MODEL,
    models: env.MODELS,
    maxPromptTokens: env.MAX_PROMPT_TOKENS,
    bodyLimitBytes: env.BODY_LIMIT_BYTES,
    sseHeartbeatMs: env.SSE_HEARTBEAT_MS,
    trustProxy: env.TRUST_PROXY,
  };
}
