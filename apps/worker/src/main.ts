// First: tracing instruments modules as they load (a no-op unless the OTEL_ variables turn it on).
import { tracing } from './start-tracing';
import { parseEnv } from '@llmq/config';
import {
  BatchRepository,
  ConversationRepository,
  FileRepository,
  JobRepository,
  ReplicaPool,
  UsageLedger,
  createPool,
  migrate,
} from '@llmq/db';
import { Accounting, KeyLimiter, toMicros } from '@llmq/rate-limit';
import {
  CancelBus,
  EventHub,
  EventStream,
  Producer,
  SingleFlight,
  assertNoEviction,
  createRedis,
  generateQueueName,
} from '@llmq/queue';
import { ResponseCache } from '@llmq/cache';
import { DEFAULT_CONTEXT_WINDOW, LlmClient, RedisFleetLimiter, RegistryWatcher } from '@llmq/llm';
import { EMBEDDING_DIMENSIONS, Embedder, RagRepository, Retrieval } from '@llmq/rag';
import { createLogger } from '@llmq/logging';
import { createWorkerMetrics, startMetricsServer } from '@llmq/observability';
import { hostname } from 'node:os';
import { workerEnvSchema } from './config';
import { Reconciler } from './reconciler';
import { BatchSweeper } from './batches';
import { ConversationHistory } from './conversation';
import { createWorker } from './worker';
import { jobMetrics, llmHooks, metricsEnvSchema, trackBackends } from './metrics';

async function main(): Promise<void> {
  const env = parseEnv(workerEnvSchema.extend(metricsEnvSchema.shape), process.env);
  const logger = createLogger({ service: 'llmq-worker', level: env.LOG_LEVEL, logPrompts: env.LOG_PROMPTS });
  if (tracing.enabled) logger.info('OpenTelemetry tracing on');
  const metrics = createWorkerMetrics();
  const backendIds = new Set<string>();
  const registry = new RegistryWatcher(env.PROVIDERS_FILE, {
    onReload: (r) => {
      llm.setRegistry(r);
      trackBackends(metrics, r.backends.keys(), backendIds);
      logger.info({ models: r.modelNames(), backends: [...r.backends.keys()] }, 'providers file reloaded');
    },
    onRejected: (e) =>
      logger.error({ problems: e.problems }, 'providers file change rejected; keeping the last good one'),
  });
  for (const b of registry.current().backends.values()) {
    if (b.apiKeyEnv && !process.env[b.apiKeyEnv]) {
      throw new Error(`backend ${b.id} reads its API key from ${b.apiKeyEnv}, which is not set`);
    }
  }

  const connection = createRedis(env.REDIS_URL, 'fleet', 'llmq-worker');
  await assertNoEviction(connection);
  const pool = createPool({
    connectionString: env.DATABASE_URL,
    max: env.DB_POOL_MAX,
    applicationName: 'llmq-worker',
  });
  await migrate(pool);
  const subscriber = createRedis(env.REDIS_URL, 'fleet', 'llmq-worker-sub');
  const cancels = new CancelBus(env.LLMQ_PREFIX);
  await cancels.listen(subscriber);
  const llm: LlmClient = new LlmClient({
    registry: registry.current(),
    secrets: (name) => process.env[name],
    limiter: new RedisFleetLimiter(connection, { prefix: env.LLMQ_PREFIX }),
    attemptsPerModel: env.LLM_ATTEMPTS_PER_MODEL,
    maxInlineWaitMs: env.LLM_MAX_INLINE_WAIT_MS,
    healthIntervalMs: env.HEALTH_CHECK_INTERVAL_MS,
    breaker: {
      errorRatio: env.BREAKER_ERROR_RATIO,
      minRequests: env.BREAKER_MIN_REQUESTS,
      openMs: env.BREAKER_OPEN_MS,
    },
    hooks: llmHooks(metrics, logger),
  });
  trackBackends(metrics, registry.current().backends.keys(), backendIds);
  llm.startHealthChecks();
  registry.start();
  const cacheRedis =
    env.CACHE_REDIS_URL && env.CACHE_REDIS_URL !== env.REDIS_URL
      ? createRedis(env.CACHE_REDIS_URL, 'edge', 'llmq-worker-cache')
      : connection;
  const cache = env.CACHE_ENABLED
    ? new ResponseCache({
        redis: cacheRedis,
        pool,
        prefix: env.LLMQ_PREFIX,
        redisTtlSeconds: env.CACHE_REDIS_TTL_SECONDS,
        postgresTtlSeconds: env.CACHE_POSTGRES_TTL_SECONDS,
        timeoutMs: 1000,
        onError: (err, operation) => logger.warn({ err, operation }, 'cache layer failed; answer not cached'),
      })
    : null;
  const cacheCleanup = cache
    ? setInterval(() => {
        cache.deleteExpired().catch((err: unknown) => logger.warn({ err }, 'cache cleanup failed'));
      }, env.CACHE_CLEANUP_INTERVAL_MS).unref()
    : null;
  const jobs = new JobRepository(pool);
  const events = new EventStream(connection, { prefix: env.LLMQ_PREFIX });
  const flights = cache
    ? new SingleFlight(connection, new EventHub(subscriber, events), env.LLMQ_PREFIX)
    : null;
  // Each consumed tier gets its own BullMQ worker and slots: batch work never holds an interactive slot.
  const concurrency = { interactive: env.WORKER_CONCURRENCY, batch: env.WORKER_BATCH_CONCURRENCY };
  const limiter = new KeyLimiter(connection, {
    prefix: env.LLMQ_PREFIX,
    alarm: {
      multiple: env.SPEND_ALARM_MULTIPLE,
      floorMicrosPerMinute: toMicros(env.SPEND_ALARM_FLOOR_USD_PER_MINUTE),
      durationMs: env.SPEND_ALARM_DURATION_MS,
    },
  });
  // RAG: searches go to the read pool, writes (ingestion) to the primary.
  const embeddingsKey = env.EMBEDDINGS_API_KEY_ENV ? process.env[env.EMBEDDINGS_API_KEY_ENV] : undefined;
  const embedder = env.EMBEDDINGS_BASE_URL
    ? new Embedder({
        baseUrl: env.EMBEDDINGS_BASE_URL,
        model: env.EMBEDDINGS_MODEL,
        dimensions: EMBEDDING_DIMENSIONS,
        batchSize: env.EMBEDDINGS_BATCH_SIZE,
        ...(embeddingsKey ? { apiKey: embeddingsKey } : {}),
      })
    : null;
  const reader = new ReplicaPool({
    primary: pool,
    replicaUrls: env.DATABASE_REPLICA_URLS,
    poolMax: env.DB_POOL_MAX,
    applicationName: 'llmq-worker-read',
    logger,
  });
  reader.start();
  const rag = new RagRepository(pool, reader);
  const contextWindow = (model: string) =>
    registry.current().resolve(model)?.contextWindow ?? DEFAULT_CONTEXT_WINDOW;
  const retrieval = embedder
    ? new Retrieval({
        repository: rag,
        embedder,
        contextWindow,
        maxContextTokens: env.RAG_MAX_CONTEXT_TOKENS,
      })
    : null;
  const conversations = new ConversationHistory({
    repository: new ConversationRepository(pool),
    contextWindow,
    maxPromptTokens: env.MAX_PROMPT_TOKENS,
  });
  const producer = new Producer({ connection, prefix: env.LLMQ_PREFIX });
  // OpenAI batches are driven where the batch tier is consumed: control jobs and the sweep.
  const batchTier = env.WORKER_QUEUES.includes('batch');
  const batches = new BatchRepository(pool);
  const workers = createWorker({
    retrieval,
    conversations,
    turnWaitMs: env.TURN_WAIT_MS,
    ingest:
      embedder && env.INGEST_CONCURRENCY > 0
        ? { deps: { rag, embedder, logger }, concurrency: env.INGEST_CONCURRENCY }
        : null,
    batches: batchTier
      ? {
          deps: {
            batches,
            files: new FileRepository(pool),
            producer,
            logger,
            input: {
              maxRequests: env.BATCH_MAX_REQUESTS,
              maxPromptTokens: env.MAX_PROMPT_TOKENS,
              resolveModel: (name) => registry.current().resolve(name)?.name ?? null,
            },
          },
          concurrency: 1,
        }
      : null,
    accounting: new Accounting(new UsageLedger(pool), limiter),
    connection,
    prefix: env.LLMQ_PREFIX,
    jobs,
    events,
    cancels,
    logger,
    llm,
    maxJobWaitMs: { interactive: env.JOB_MAX_WAIT_MS, batch: env.BATCH_JOB_MAX_WAIT_MS },
    cache,
    flights,
    queues: env.WORKER_QUEUES,
    concurrency,
    lockDurationMs: env.LOCK_DURATION_MS,
    stalledIntervalMs: env.STALLED_INTERVAL_MS,
    maxStalledCount: env.MAX_STALLED_COUNT,
    tokenCoalesceMs: env.TOKEN_COALESCE_MS,
    metrics: jobMetrics(metrics),
    name: `${hostname()}:${process.pid}`,
  });
  const reconciler = new Reconciler({
    jobs,
    producer,
    redis: connection,
    logger,
    prefix: env.LLMQ_PREFIX,
    intervalMs: env.RECONCILE_INTERVAL_MS,
    graceMs: env.RECONCILE_GRACE_MS,
  });
  const batchSweeper = batchTier
    ? new BatchSweeper({
        batches,
        producer,
        events,
        logger,
        intervalMs: env.BATCH_SWEEP_INTERVAL_MS,
        graceMs: env.RECONCILE_GRACE_MS,
      })
    : null;
  // Before any job runs: a metrics port in use stops the start with a message naming METRICS_PORT.
  const metricsServer = await startMetricsServer({
    registry: metrics.registry,
    host: env.METRICS_HOST,
    port: env.METRICS_PORT,
    token: env.METRICS_TOKEN ?? null,
    // Called on requests only, so after `stopping` below exists.
    health: () => ({ status: stopping ? 'draining' : 'ok' }),
  });
  process.stdout.write(`llmq-worker metrics on ${metricsServer.url}/metrics\n`);
  void workers.run();
  reconciler.start();
  batchSweeper?.start();
  const consuming = env.WORKER_QUEUES.map((p) => ({
    queue: generateQueueName(p),
    concurrency: concurrency[p],
  }));
  logger.info({ queues: consuming }, 'worker running');
  const summary = consuming.map((c) => `${c.queue} x${c.concurrency}`).join(', ');
  process.stdout.write(`llmq-worker ready (pid ${process.pid}, queues ${summary})\n`);

  let stopping = false;
  const drain = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal, timeoutMs: env.DRAIN_TIMEOUT_MS }, 'draining: no new jobs, finishing running ones');
    // Past the grace period the process exits; its jobs' locks expire and another worker retries them.
    setTimeout(() => {
      logger.warn('drain timed out; exiting with jobs still running (they will be retried)');
      process.exit(1);
    }, env.DRAIN_TIMEOUT_MS).unref();
    await reconciler.stop();
    await batchSweeper?.stop();
    await workers.close();
    registry.stop();
    await llm.close();
    if (cacheCleanup) clearInterval(cacheCleanup);
    if (cacheRedis !== connection) cacheRedis.disconnect();
    await producer.close().catch(() => undefined);
    subscriber.disconnect();
    connection.disconnect();
    await reader.close().catch(() => undefined);
    await pool.end().catch(() => undefined);
    await tracing.shutdown();
    await metricsServer.close();
    logger.info('drained');
    process.exit(0);
  };
  process.on('SIGTERM', () => void drain('SIGTERM'));
  process.on('SIGINT', () => void drain('SIGINT'));
}

main().catch((error: unknown) => {
  process.stderr.write(
    `llmq-worker failed to start: ${error instanceof Error ? error.message : String(error)}\n`,
  );
  process.exit(1);
});
