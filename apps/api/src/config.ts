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
  /** The providers file shared with the workers: which model names (and aliases) a request may use. */
  PROVIDERS_FILE: z.string().min(1, 'the path of the providers file'),
  MAX_PROMPT_TOKENS: envInt(100_000, { min: 1 }),
  BODY_LIMIT_BYTES: envInt(1_048_576, { min: 1024, max: 64 * 1_048_576 }),
  /** Body limit of document uploads (JSON or multipart) for RAG collections. */
  INGEST_BODY_LIMIT_BYTES: envInt(10 * 1_048_576, { min: 1024, max: 512 * 1_048_576 }),
  /** OpenAI Files: the largest upload (`POST /v1/files`); files are stored in Postgres. */
  FILE_UPLOAD_MAX_BYTES: envInt(32 * 1_048_576, { min: 1024, max: 256 * 1_048_576 }),
  /** OpenAI Files: what one tenant's files (batch outputs included) may hold in all; 0: no limit. */
  FILE_STORAGE_MAX_BYTES: envInt(1024 * 1_048_576, { min: 0 }),
  /** OpenAI Batches: batches a tenant may have open (validating, running, finalizing, cancelling). */
  BATCH_MAX_OPEN: envInt(10, { min: 1, max: 10_000 }),
  /** Read replicas for RAG searches (comma-separated postgres URLs); none: the primary serves reads. */
  DATABASE_REPLICA_URLS: envList([]),
  SSE_HEARTBEAT_MS: envDuration(15_000),
  /** WebSocket (/ws): ping interval; a connection that has not answered the previous ping is dropped. */
  WS_HEARTBEAT_MS: envDuration(30_000),
  /** WebSocket: the largest message a client may send; a larger one closes the connection (1009). */
  WS_MAX_PAYLOAD_BYTES: envInt(1_048_576, { min: 1024, max: 64 * 1_048_576 }),
  /** WebSocket: tasks (prompts not yet finished) one connection may have; more get RATE_LIMITED. */
  WS_MAX_TASKS_PER_CONNECTION: envInt(16, { min: 1, max: 10_000 }),
  /** WebSocket: past this many unsent bytes the server stops writing and joins each task's tokens. */
  WS_HIGH_WATER_BYTES: envInt(65_536, { min: 1024 }),
  /** WebSocket: past this many bytes waiting for a slow client the connection is closed (1008). */
  WS_MAX_BUFFERED_BYTES: envInt(4 * 1_048_576, { min: 2048 }),
  DB_POOL_MAX: envInt(10, { min: 1, max: 200 }),
  /** A Redis command slower than this fails (503) instead of hanging the request. */
  REDIS_COMMAND_TIMEOUT_MS: envDuration(1000),
  SHUTDOWN_TIMEOUT_MS: envDuration(10_000),
  /** The response cache (deterministic requests: temperature 0 or a seed). */
  CACHE_ENABLED: envBoolean(true),
  /** Redis for the cache layer (may be a separate Redis with an LRU policy); default REDIS_URL. */
  CACHE_REDIS_URL: envUrl(['redis', 'rediss']).optional(),
  /** `tenant`: entries never cross tenants. `shared`: one scope for all (declare it knowingly). */
  CACHE_SCOPE: z.enum(['tenant', 'shared']).default('tenant'),
  CACHE_REDIS_TTL_SECONDS: envInt(3600, { min: 1 }),
  CACHE_POSTGRES_TTL_SECONDS: envInt(7 * 86_400, { min: 1 }),
  /** OpenAI-compatible embeddings provider (…/v1) for the semantic cache; off when unset. */
  EMBEDDINGS_BASE_URL: envUrl(['http', 'https']).optional(),
  EMBEDDINGS_MODEL: z.string().default('sim-embed'),
  /** Name of the variable holding the embeddings provider's key. */
  EMBEDDINGS_API_KEY_ENV: z
    .string()
    .regex(/^[A-Z_][A-Z0-9_]*$/)
    .optional(),
  /** Default cosine similarity a semantic match needs (a request may ask for another). */
  SEMANTIC_CACHE_THRESHOLD: z.coerce.number().gt(0).max(1).default(0.95),
  TRUST_PROXY: envBoolean(false),
  /** Bearer token of the operator routes under /admin; they do not exist without it. */
  ADMIN_TOKEN: z.string().min(16, 'use at least 16 characters').optional(),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** Debugging only: prompt and completion text in logs and in the queue dashboard (redacted by default). */
  LOG_PROMPTS: envBoolean(false),
  /** The queue dashboard (/admin/queues, with ADMIN_TOKEN) shows but cannot change jobs. */
  BULL_BOARD_READ_ONLY: envBoolean(true),
});
export type ApiEnv = z.infer<typeof apiEnvSchema>;

/** What createApp needs from configuration. */
export interface ApiSettings {
  /** Prefix of every Redis key (LLMQ_PREFIX), shared with the workers. */
  prefix: string;
  defaultModel: string;
  cacheScope: 'tenant' | 'shared';
  semanticThreshold: number;
  adminToken: string | null;
  maxPromptTokens: number;
  bodyLimitBytes: number;
  ingestBodyLimitBytes: number;
  /** Largest file upload (FILE_UPLOAD_MAX_BYTES). */
  fileUploadMaxBytes: number;
  /** Bytes one tenant's files may hold (FILE_STORAGE_MAX_BYTES); 0: no limit. */
  fileStorageMaxBytes: number;
  /** Open batches per tenant (BATCH_MAX_OPEN). */
  batchMaxOpen: number;
  /** The embeddings model new collections record (and RAG queries use). */
  embeddingsModel: string;
  sseHeartbeatMs: number;
  trustProxy: boolean;
  /** Prompt text may be shown (LOG_PROMPTS): in logs, and in job data on the queue dashboard. */
  logPrompts: boolean;
  /** The queue dashboard cannot retry, remove, pause or clean (BULL_BOARD_READ_ONLY). */
  dashboardReadOnly: boolean;
}

/** What the WebSocket gateway needs from configuration (the WS_* variables). */
export interface WsSettings {
  heartbeatMs: number;
  maxPayloadBytes: number;
  maxTasksPerConnection: number;
  highWaterBytes: number;
  maxBufferedBytes: number;
}

export function wsSettingsFrom(env: ApiEnv): WsSettings {
  if (env.WS_HEARTBEAT_MS < 100) {
    throw new Error(`WS_HEARTBEAT_MS must be at least 100 ms, got ${env.WS_HEARTBEAT_MS}`);
  }
  if (env.WS_MAX_BUFFERED_BYTES <= env.WS_HIGH_WATER_BYTES) {
    throw new Error(
      `WS_MAX_BUFFERED_BYTES (${env.WS_MAX_BUFFERED_BYTES}) must be larger than WS_HIGH_WATER_BYTES (${env.WS_HIGH_WATER_BYTES})`,
    );
  }
  return {
    heartbeatMs: env.WS_HEARTBEAT_MS,
    maxPayloadBytes: env.WS_MAX_PAYLOAD_BYTES,
    maxTasksPerConnection: env.WS_MAX_TASKS_PER_CONNECTION,
    highWaterBytes: env.WS_HIGH_WATER_BYTES,
    maxBufferedBytes: env.WS_MAX_BUFFERED_BYTES,
  };
}

/** Model names a request may use, from the providers file (reloaded with it). */
export interface ModelCatalog {
  /** The canonical public name of a model or alias, or null when nothing serves it. */
  resolve(name: string): string | null;
  /** Public model names (without aliases). */
  names(): string[];
  /** Every name a request may use: public names and aliases. */
  requestNames(): string[];
  /** The semantic-cache threshold the providers file sets for the model, or null. */
  semanticThreshold(name: string): number | null;
  /** The highest price among the model's backends (what a request may cost at most), or null. */
  price(name: string): { inputPerMillion: number; outputPerMillion: number } | null;
}

export function settingsFrom(env: ApiEnv, models: ModelCatalog): ApiSettings {
  if (env.FILE_STORAGE_MAX_BYTES > 0 && env.FILE_STORAGE_MAX_BYTES < env.FILE_UPLOAD_MAX_BYTES) {
    throw new Error(
      `FILE_STORAGE_MAX_BYTES (${env.FILE_STORAGE_MAX_BYTES}) must be 0 (no limit) or at least FILE_UPLOAD_MAX_BYTES (${env.FILE_UPLOAD_MAX_BYTES})`,
    );
  }
  if (models.resolve(env.DEFAULT_MODEL) === null) {
    throw new Error(
      `DEFAULT_MODEL "${env.DEFAULT_MODEL}" is not in the providers file (models: ${models.names().join(', ')})`,
    );
  }
  return {
    prefix: env.LLMQ_PREFIX,
    defaultModel: env.DEFAULT_MODEL,
    cacheScope: env.CACHE_SCOPE,
    semanticThreshold: env.SEMANTIC_CACHE_THRESHOLD,
    adminToken: env.ADMIN_TOKEN ?? null,
    maxPromptTokens: env.MAX_PROMPT_TOKENS,
    bodyLimitBytes: env.BODY_LIMIT_BYTES,
    ingestBodyLimitBytes: env.INGEST_BODY_LIMIT_BYTES,
    fileUploadMaxBytes: env.FILE_UPLOAD_MAX_BYTES,
    fileStorageMaxBytes: env.FILE_STORAGE_MAX_BYTES,
    batchMaxOpen: env.BATCH_MAX_OPEN,
    embeddingsModel: env.EMBEDDINGS_MODEL,
    sseHeartbeatMs: env.SSE_HEARTBEAT_MS,
    trustProxy: env.TRUST_PROXY,
    logPrompts: env.LOG_PROMPTS,
    dashboardReadOnly: env.BULL_BOARD_READ_ONLY,
  };
}
