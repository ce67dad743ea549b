// First: tracing instruments modules as they load (a no-op unless the OTEL_ variables turn it on).
import { tracing } from './start-tracing';
import { parseEnv } from '@llmq/config';
import {
  ApiKeyRepository,
  ConversationRepository,
  JobRepository,
  ReplicaPool,
  UsageLedger,
  createPool,
  migrate,
} from '@llmq/db';
import { EMBEDDING_DIMENSIONS, Embedder, RagRepository } from '@llmq/rag';
import { Accounting } from '@llmq/rate-limit';
import { CancelBus, EventHub, EventStream, Producer, createRedis, waitUntilReady } from '@llmq/queue';
import { EmbeddingsClient, ResponseCache } from '@llmq/cache';
import { RegistryWatcher } from '@llmq/llm';
import { createLogger } from '@llmq/logging';
import { createApiMetrics } from '@llmq/observability';
import { createApp } from './app';
import { apiEnvSchema, settingsFrom, wsSettingsFrom } from './config';
import { createKeyLimiter, limitsEnvSchema } from './limits';
import { QueueDepth } from './queue-depth';
import { metricsEnvSchema } from './metrics';
import { createWsGateway } from './ws';

async function main(): Promise<void> {
  const env = parseEnv(
    apiEnvSchema.extend(limitsEnvSchema.shape).extend(metricsEnvSchema.shape),
    process.env,
  );
  const providers = new RegistryWatcher(env.PROVIDERS_FILE);
  const models = {
    resolve: (name: string) => providers.current().resolve(name)?.name ?? null,
    names: () => providers.current().modelNames(),
    requestNames: () => providers.current().requestNames(),
    semanticThreshold: (name: string) => providers.current().resolve(name)?.semanticThreshold ?? null,
    price: (name: string) => {
      const targets = providers.current().resolve(name)?.targets;
      if (!targets || targets.length === 0) return null;
      return {
        inputPerMillion: Math.max(...targets.map((t) => t.backend.price.inputPerMillion)),
        outputPerMillion: Math.max(...targets.map((t) => t.backend.price.outputPerMillion)),
      };
    },
  };
  const settings = settingsFrom(env, models);
  const wsSettings = wsSettingsFrom(env);
  providers.start();
  const logger = createLogger({ service: 'llmq-api', level: env.LOG_LEVEL, logPrompts: env.LOG_PROMPTS });
  if (tracing.enabled) logger.info('OpenTelemetry tracing on');

  const pool = createPool({
    connectionString: env.DATABASE_URL,
    max: env.DB_POOL_MAX,
    applicationName: 'llmq-api',
  });
  await migrate(pool);
  const redisOptions = { commandTimeoutMs: env.REDIS_COMMAND_TIMEOUT_MS };
  const redis = createRedis(env.REDIS_URL, 'edge', 'llmq-api', redisOptions);
  const subscriber = createRedis(env.REDIS_URL, 'edge', 'llmq-api-sub', redisOptions);
  if (!(await waitUntilReady(redis, 10_000))) {
    logger.warn('Redis is not reachable yet; serving 503 for queue operations until it is');
  }
  await waitUntilReady(subscriber, 1000);
  const events = new EventStream(redis, { prefix: env.LLMQ_PREFIX });
  const producer = new Producer({ connection: redis, prefix: env.LLMQ_PREFIX });
  const metrics = createApiMetrics({
    queues: () => [producer.queueFor('interactive'), producer.queueFor('batch'), producer.queue('ingest')],
    onCollectError: (err) => logger.warn({ err }, 'metrics: could not read the queue counts'),
  });
  const cacheRedis =
    env.CACHE_REDIS_URL && env.CACHE_REDIS_URL !== env.REDIS_URL
      ? createRedis(env.CACHE_REDIS_URL, 'edge', 'llmq-api-cache', redisOptions)
      : redis;
  const cache = env.CACHE_ENABLED
    ? new ResponseCache({
        redis: cacheRedis,
        pool,
        prefix: env.LLMQ_PREFIX,
        redisTtlSeconds: env.CACHE_REDIS_TTL_SECONDS,
        postgresTtlSeconds: env.CACHE_POSTGRES_TTL_SECONDS,
        onError: (err, operation) => logger.warn({ err, operation }, 'cache layer failed; treated as a miss'),
      })
    : null;
  const embeddingsKey = env.EMBEDDINGS_API_KEY_ENV ? process.env[env.EMBEDDINGS_API_KEY_ENV] : undefined;
  const embeddings =
    cache && env.EMBEDDINGS_BASE_URL
      ? new EmbeddingsClient({
          baseUrl: env.EMBEDDINGS_BASE_URL,
          model: env.EMBEDDINGS_MODEL,
          ...(embeddingsKey ? { apiKey: embeddingsKey } : {}),
        })
      : null;
  const limiter = createKeyLimiter(redis, env.LLMQ_PREFIX, env);
  const reader = new ReplicaPool({
    primary: pool,
    replicaUrls: env.DATABASE_REPLICA_URLS,
    poolMax: env.DB_POOL_MAX,
    applicationName: 'llmq-api-read',
    logger,
  });
  reader.start();
  const embedder = env.EMBEDDINGS_BASE_URL
    ? new Embedder({
        baseUrl: env.EMBEDDINGS_BASE_URL,
        model: env.EMBEDDINGS_MODEL,
        dimensions: EMBEDDING_DIMENSIONS,
        ...(embeddingsKey ? { apiKey: embeddingsKey } : {}),
      })
    : null;
  const ledger = new UsageLedger(pool);
  const deps = {
    settings,
    limiter,
    ledger,
    accounting: new Accounting(ledger, limiter),
    queueDepth: new QueueDepth((priority) => producer.queueFor(priority), env.QUEUE_DEPTH_CHECK_MS),
    limitsEnv: env,
    metrics,
    metricsEnv: env,
    rag: new RagRepository(pool, reader),
    embedder,
    models,
    cache,
    embeddings,
    logger,
    pool,
    jobs: new JobRepository(pool),
    conversations: new ConversationRepository(pool),
    apiKeys: new ApiKeyRepository(pool),
    redis,
    producer,
    events,
    hub: new EventHub(subscriber, events),
    cancels: new CancelBus(env.LLMQ_PREFIX),
  };
  const { app, streams, startDraining } = createApp(deps);
  const server = app.listen(env.PORT, env.HOST);
  const gateway = createWsGateway(deps, wsSettings);
  server.on('upgrade', gateway.handleUpgrade);
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  // Long-lived streams must not be cut by Node's default request timeouts.
  server.requestTimeout = 0;
  server.headersTimeout = 30_000;
  server.keepAliveTimeout = 65_000;
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : env.PORT;
  logger.info({ port }, 'api listening');
  // One machine-readable line for supervisors and test fixtures.
  process.stdout.write(`llmq-api listening on http://${env.HOST}:${port}\n`);

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'shutting down');
    startDraining();
    const force = setTimeout(() => process.exit(1), env.DRAIN_DELAY_MS + env.SHUTDOWN_TIMEOUT_MS).unref();
    // /ready says "draining" while requests are still served, until load balancers have noticed.
    if (env.DRAIN_DELAY_MS > 0) await new Promise((r) => setTimeout(r, env.DRAIN_DELAY_MS));
    const closed = new Promise((r) => server.once('close', r));
    server.close();
    // Streams end with a reconnect hint; clients resume on another replica with Last-Event-ID.
    for (const res of streams) res.end('retry: 1000\n\n');
    server.closeIdleConnections();
    // WebSockets get 1001 (going away); their jobs go on, readable from any replica.
    await gateway.close();
    await closed;
    providers.stop();
    await producer.close().catch(() => undefined);
    redis.disconnect();
    subscriber.disconnect();
    if (cacheRedis !== redis) cacheRedis.disconnect();
    await reader.close().catch(() => undefined);
    await pool.end().catch(() => undefined);
    metrics.close();
    await tracing.shutdown();
    clearTimeout(force);
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
}

main().catch((error: unknown) => {
  process.stderr.write(
    `llmq-api failed to start: ${error instanceof Error ? error.message : String(error)}\n`,
  );
  process.exit(1);
});
