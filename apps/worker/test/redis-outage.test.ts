/**
 * Postgres is the record, Redis the dispatcher: accepted jobs survive Redis restarts and even
 * Redis losing its data; while Redis is down the API answers 503 at once and recovers by itself.
 */
import { freePort, startRedisServer } from '@llmq/embedded';
import { eventually, spawnService, useStack } from '@llmq/testing';
import { Redis } from 'ioredis';
import { join } from 'node:path';

jest.setTimeout(120_000);

const { stack, keys } = useStack({ workers: 0 });
let key: string;
beforeAll(() => {
  key = keys.acme!;
});

async function submit(prompt: string): Promise<Response> {
  return stack.request('/api/generate', key, {
    method: 'POST',
    body: JSON.stringify({ prompt, max_tokens: 4 }),
  });
}

async function statuses(ids: string[]): Promise<string[]> {
  const { rows } = await stack.pool.query<{ status: string }>(
    'SELECT status FROM jobs WHERE id = ANY($1::uuid[])',
    [ids],
  );
  return rows.map((r) => r.status);
}

async function submitMany(n: number, tag: string): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const res = await submit(`${tag} ${i}`);
    expect(res.status).toBe(202);
    ids.push(((await res.json()) as { jobId: string }).jobId);
  }
  return ids;
}

function allCompleted(ids: string[], what: string) {
  return eventually(
    async () => {
      const s = await statuses(ids);
      return s.length === ids.length && s.every((x) => x === 'completed');
    },
    what,
    60_000,
  );
}

it('jobs queued before a Redis restart are all processed after it (AOF)', async () => {
  const ids = await submitMany(20, 'restart');
  await stack.restartRedis();
  await stack.startWorker();
  await allCompleted(ids, 'every job queued before the restart completed');
  const stats = await stack.simulatorStats();
  expect(stats.requests.chatStream).toBeGreaterThanOrEqual(20);
});

it('while Redis is down the API answers 503 with Retry-After at once, then recovers without a restart', async () => {
  await stack.redis.stop();
  const started = Date.now();
  const res = await submit('during outage');
  const elapsed = Date.now() - started;
  expect(res.status).toBe(503);
  expect(res.headers.get('retry-after')).toBe('1');
  expect(await res.json()).toMatchObject({ code: 'service_unavailable' });
  // Not a hang: the answer comes without waiting on Redis (a loose bound; speed is benchmarked elsewhere).
  expect(elapsed).toBeLessThan(5000);
  const ready = await fetch(`${stack.apiUrl}/ready`);
  expect(ready.status).toBe(503);
  expect(await ready.json()).toMatchObject({ redis: false, postgres: true });
  // Nothing was recorded for the refused submit.
  const { rows } = await stack.pool.query(
    `SELECT count(*)::int AS n FROM jobs WHERE spec->'messages'->0->>'content' = 'during outage'`,
  );
  expect(rows[0].n).toBe(0);

  await stack.restartRedis();
  const ok = await eventually(async () => {
    const r = await submit('after outage');
    return r.status === 202 ? r : undefined;
  }, 'the API accepts jobs again once Redis is back');
  const { jobId } = (await ok.json()) as { jobId: string };
  await allCompleted([jobId], 'the worker reconnected by itself and ran the new job');
});

it('jobs lost by Redis (data wiped) are re-enqueued by the reconciler from Postgres', async () => {
  const worker = stack.workers[0]!;
  await worker.stop('SIGKILL');
  stack.workers = [];
  const ids = await submitMany(5, 'lost');
  const redis = new Redis(stack.redisUrl);
  await redis.flushall();
  redis.disconnect();
  await stack.startWorker();
  await allCompleted(ids, 'the reconciler re-enqueued the lost jobs and they completed');
});

it('a worker refuses to start against a Redis that evicts keys', async () => {
  const port = await freePort();
  const lru = await startRedisServer({
    port,
    dataDir: join(stack.redisDir, '..', 'lru'),
    maxmemoryPolicy: 'allkeys-lru',
  });
  try {
    const attempt = spawnService({
      name: 'worker-lru',
      command: process.execPath,
      args: [join(__dirname, '..', 'dist', 'main.js')],
      env: { REDIS_URL: lru.url, DATABASE_URL: stack.pglite.url, PROVIDERS_FILE: stack.providersFile },
      ready: /llmq-worker ready/,
    });
    await expect(attempt).rejects.toThrow(/maxmemory-policy "allkeys-lru".*noeviction/s);
  } finally {
    await lru.stop();
  }
});
