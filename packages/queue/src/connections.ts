import { Redis, type RedisOptions } from 'ioredis';

/**
 * Two ways to talk to Redis, after DESIGN.md's "fail fast at the edge, wait in the fleet":
 * - `edge` (the API): no offline queue and a command timeout, so a Redis outage turns into a
 *   503 within a second instead of requests piling up behind a dead connection.
 * - `fleet` (workers, BullMQ's blocking connections): commands wait for Redis to come back
 *   (`maxRetriesPerRequest: null`, which BullMQ workers require) and resume by themselves.
 * Both reconnect forever with a capped delay.
 */
export type RedisRole = 'edge' | 'fleet';

export interface RedisConnectionOptions {
  /** Edge only: how long a command may take before it fails (a hung Redis). @defaultValue 1000 */
  commandTimeoutMs?: number;
}

export function redisOptions(
  role: RedisRole,
  connectionName: string,
  options: RedisConnectionOptions = {},
): RedisOptions {
  const common: RedisOptions = {
    connectionName,
    lazyConnect: false,
    retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 10), 1000),
    reconnectOnError: (err) => err.message.startsWith('READONLY'),
  };
  if (role === 'edge') {
    return {
      ...common,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      commandTimeout: options.commandTimeoutMs ?? 1000,
      connectTimeout: 1000,
    };
  }
  return { ...common, enableOfflineQueue: true, maxRetriesPerRequest: null, connectTimeout: 5000 };
}

export function createRedis(
  url: string,
  role: RedisRole,
  connectionName: string,
  options: RedisConnectionOptions = {},
): Redis {
  const redis = new Redis(url, redisOptions(role, connectionName, options));
  // Connection errors are expected during outages; ioredis reconnects. Callers watch `status`.
  redis.on('error', () => undefined);
  return redis;
}

/**
 * BullMQ silently loses jobs if Redis evicts keys, so the queue Redis must run with
 * `maxmemory-policy noeviction`. INFO is used rather than CONFIG GET, which managed Redis
 * services often disable.
 */
export async function assertNoEviction(redis: Redis): Promise<void> {
  const info = await redis.info('memory');
  const policy = /^maxmemory_policy:(\S+)/m.exec(info)?.[1];
  if (policy !== 'noeviction') {
    throw new Error(
      `the queue Redis has maxmemory-policy "${policy ?? 'unknown'}"; llmq requires "noeviction" ` +
        '(an evicting Redis silently drops queued jobs). Set it with CONFIG SET maxmemory-policy noeviction or in redis.conf.',
    );
  }
}

/**
 * Resolves when the connection is ready, or after `timeoutMs` (false): a process may start while
 * Redis is down and serve 503s until it comes back, but should not race its own first connect.
 */
export function waitUntilReady(redis: Redis, timeoutMs: number): Promise<boolean> {
  if (redis.status === 'ready') return Promise.resolve(true);
  return new Promise((resolve) => {
    const done = (ok: boolean) => {
      clearTimeout(timer);
      redis.off('ready', onReady);
      resolve(ok);
    };
    const onReady = () => done(true);
    const timer = setTimeout(() => done(false), timeoutMs);
    redis.on('ready', onReady);
  });
}

export { Redis };
