/**
 * The response cache end to end: a separate LRU Redis as the first layer, Postgres as the
 * second, filled by the worker, read by the API. The simulator counts what went upstream.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, startRedisServer } from '@llmq/embedded';
import { defaultProviders, eventually, readSse, useStack } from '@llmq/testing';
import { Redis } from 'ioredis';

jest.setTimeout(90_000);

const ADMIN = 'admin-token-for-tests-0123456789';
const cacheEnv: Record<string, string> = { ADMIN_TOKEN: ADMIN, CACHE_CLEANUP_INTERVAL_MS: '300' };
const dir = mkdtempSync(join(tmpdir(), 'llmq-cache-redis-'));
let cacheRedis: Awaited<ReturnType<typeof startRedisServer>>;
let admin: Redis;
// Registered before the stack's own hooks, so the stack starts with CACHE_REDIS_URL set.
beforeAll(async () => {
  cacheRedis = await startRedisServer({
    port: await freePort(),
    dataDir: dir,
    maxmemoryPolicy: 'allkeys-lru',
  });
  cacheEnv.CACHE_REDIS_URL = cacheRedis.url;
  admin = new Redis(cacheRedis.url);
});
afterAll(async () => {
  admin.disconnect();
  await cacheRedis.stop();
  rmSync(dir, { recursive: true, force: true });
});

const { stack, keys } = useStack({ workers: 1, apiEnv: cacheEnv, workerEnv: cacheEnv }, ['acme', 'globex']);

interface Answer {
  jobId: string;
  status: string;
  result?: string;
  source?: string;
  streamUrl: string;
  code?: string;
}

async function ask(body: object, tenant = 'acme', headers: Record<string, string> = {}) {
  const { res, body: answer } = await stack.submit(keys[tenant]!, body, headers);
  return { status: res.status, answer: answer as unknown as Answer };
}

/** Submits, and waits for the job when it was queued; returns the answer and the final text. */
async function settle(body: object, tenant = 'acme', headers: Record<string, string> = {}) {
  const { status, answer } = await ask(body, tenant, headers);
  if (status !== 202) return { status, answer, text: answer.result ?? null };
  const job = await stack.waitForJob(keys[tenant]!, answer.jobId);
  // The worker stores the answer right after completing; give it a moment to land.
  await new Promise((r) => setTimeout(r, 150));
  return { status, answer, text: job.result };
}

const upstream = async () => (await stack.simulatorStats()).requests.chatStream;

it('answers a repeated deterministic request from Redis, then from Postgres with backfill', async () => {
  const body = { prompt: 'cache me', temperature: 0, max_tokens: 6 };
  const first = await settle(body);
  expect(first.status).toBe(202);
  const calls = await upstream();

  const second = await ask(body);
  expect(second.status).toBe(200);
  expect(second.answer).toMatchObject({ status: 'completed', source: 'redis', result: first.text });
  // The hit is a completed job: it can be polled like any other.
  const polled = await stack.waitForJob(keys.acme!, second.answer.jobId, ['completed']);
  expect(polled.result).toBe(first.text);

  // Redis loses the entry: Postgres answers, and puts it back in Redis.
  const cached = await admin.keys('llmq:cache:*');
  expect(cached.length).toBeGreaterThan(0);
  await admin.del(...cached);
  const third = await ask(body);
  expect(third.answer).toMatchObject({ source: 'postgres', result: first.text });
  expect(await admin.keys('llmq:cache:*')).toHaveLength(cached.length);
  expect((await ask(body)).answer.source).toBe('redis');
  expect(await upstream()).toBe(calls); // no upstream call for any of the hits
});

it('streams a cached answer like a live one, with the source in the final event', async () => {
  const body = { prompt: 'stream the cache', seed: 11, max_tokens: 8 };
  const live = await settle(body);
  const hit = await ask(body);
  expect(hit.status).toBe(200);
  const sse = await readSse(`${stack.apiUrl}${hit.answer.streamUrl}`, {
    headers: { authorization: `Bearer ${keys.acme}` },
  });
  expect(sse.events.map((e) => e.event)).toEqual(['status', 'token', 'completed']);
  const tokens = sse.events
    .filter((e) => e.event === 'token')
    .map((e) => JSON.parse(e.data).text)
    .join('');
  expect(tokens).toBe(live.text);
  expect(JSON.parse(sse.events.at(-1)!.data)).toMatchObject({ result: live.text, source: 'redis' });
});

it("never serves tenant A's entry to tenant B", async () => {
  const body = { prompt: 'tenant secret', temperature: 0, max_tokens: 4 };
  await settle(body, 'acme');
  expect((await ask(body, 'acme')).status).toBe(200);
  const other = await ask(body, 'globex');
  expect(other.status).toBe(202);
});

it('misses on any change of model, messages or parameters, and never caches random sampling', async () => {
  const base = { prompt: 'vary me', temperature: 0, max_tokens: 4 };
  await settle(base);
  expect((await ask(base)).status).toBe(200);
  const variants = [
    { ...base, max_tokens: 5 },
    { ...base, model: 'sim-large' },
    { ...base, prompt: 'vary me!' },
    { ...base, stop: ['x'] },
    { ...base, top_p: 0.9 },
    { ...base, temperature: undefined, seed: 1 },
  ];
  for (const v of variants) expect((await ask(v)).status).toBe(202);
  const random = { prompt: 'random sampling', temperature: 0.8, max_tokens: 3 };
  await settle(random);
  expect((await ask(random)).status).toBe(202);
});

it('honours Cache-Control: no-cache, no-store, only-if-cached and max-age', async () => {
  const body = { prompt: 'controls', temperature: 0, max_tokens: 3 };
  expect((await ask(body, 'acme', { 'Cache-Control': 'only-if-cached' })).status).toBe(504);
  await settle(body, 'acme', { 'Cache-Control': 'no-store' });
  expect((await ask(body, 'acme', { 'Cache-Control': 'only-if-cached' })).status).toBe(504); // not stored
  await settle(body);
  expect((await ask(body, 'acme', { 'Cache-Control': 'only-if-cached' })).status).toBe(200);
  expect((await ask(body, 'acme', { 'Cache-Control': 'no-cache' })).status).toBe(202);
  await new Promise((r) => setTimeout(r, 1100));
  expect((await ask(body, 'acme', { 'Cache-Control': 'max-age=0' })).status).toBe(202);
  expect((await ask(body, 'acme', { 'Cache-Control': 'max-age=3600' })).status).toBe(200);
  const bad = await ask(body, 'acme', { 'Cache-Control': 'max-age=soon' });
  expect(bad.status).toBe(400);
  expect(bad.answer).toMatchObject({ code: 'invalid_cache_control' });
});

it('caches neither failures nor streams cut mid-way', async () => {
  const setFault = (fault: string | null) =>
    fetch(`${stack.simulatorUrl}/admin/fault`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ fault }),
    });
  try {
    await setFault('cut-after=2');
    const cut = await settle({ prompt: 'cut and dry', temperature: 0, max_tokens: 10 });
    expect(cut.status).toBe(202);
    await setFault('status=400');
    const failed = await settle({ prompt: 'refused', temperature: 0, max_tokens: 10 });
    expect(failed.text).toBeNull();
  } finally {
    await setFault(null);
  }
  expect((await ask({ prompt: 'cut and dry', temperature: 0, max_tokens: 10 })).status).toBe(202);
  expect((await ask({ prompt: 'refused', temperature: 0, max_tokens: 10 })).status).toBe(202);
});

it('keeps serving when the cache Redis is down (Postgres layer, then misses)', async () => {
  const body = { prompt: 'outage proof', temperature: 0, max_tokens: 4 };
  const live = await settle(body);
  await cacheRedis.stop();
  try {
    const hit = await ask(body);
    expect(hit.status).toBe(200);
    expect(hit.answer).toMatchObject({ source: 'postgres', result: live.text });
    const miss = await ask({ prompt: 'new during outage', temperature: 0, max_tokens: 4 });
    expect(miss.status).toBe(202);
    const job = await stack.waitForJob(keys.acme!, miss.answer.jobId);
    expect(job.status).toBe('completed');
  } finally {
    cacheRedis = await startRedisServer({
      port: Number(new URL(cacheRedis.url).port),
      dataDir: dir,
      maxmemoryPolicy: 'allkeys-lru',
    });
  }
});

it('purges by key, tenant or model through the admin route, and only with the admin token', async () => {
  const purge = (query: string, token: string | null = ADMIN) =>
    fetch(`${stack.apiUrl}/admin/cache?${query}`, {
      method: 'DELETE',
      headers: token ? { authorization: `Bearer ${token}` } : {},
    });
  const a = { prompt: 'purge a', temperature: 0, max_tokens: 3 };
  const b = { prompt: 'purge b', temperature: 0, max_tokens: 3, model: 'sim-large' };
  await settle(a);
  await settle(b);
  await settle(a, 'globex');
  expect((await purge('tenant=acme', null)).status).toBe(401);
  expect((await purge('tenant=acme', keys.acme!)).status).toBe(401); // a tenant key is not the admin token
  expect((await purge('')).status).toBe(400);
  expect((await purge('key=nothex')).status).toBe(400);

  const byModel = await purge('tenant=acme&model=sim-large');
  expect(((await byModel.json()) as { purged: number }).purged).toBeGreaterThanOrEqual(1);
  const left = await stack.pool.query(
    `SELECT 1 FROM cache_entries WHERE scope = 'tenant:acme' AND model = 'sim-large'`,
  );
  expect(left.rowCount).toBe(0);
  expect((await ask(b)).status).toBe(202);
  expect((await ask(a)).status).toBe(200); // other model untouched

  const byTenant = await purge('tenant=acme');
  expect(((await byTenant.json()) as { purged: number }).purged).toBeGreaterThanOrEqual(1);
  expect((await ask(a)).status).toBe(202);
  expect((await ask(a, 'globex')).status).toBe(200); // the other tenant keeps its entry

  const { rows } = await stack.pool.query<{ key: string }>(
    `SELECT key FROM cache_entries WHERE scope = 'tenant:globex' LIMIT 1`,
  );
  const byKey = await purge(`key=${rows[0]!.key}`);
  expect(await byKey.json()).toEqual({ purged: 1 });
});

it('deletes expired Postgres entries in the background', async () => {
  await stack.pool.query(
    `INSERT INTO cache_entries (key, scope, model, result, expires_at) VALUES ($1, 'tenant:acme', 'sim-small', 'stale', now() - interval '1 second')`,
    ['e'.repeat(64)],
  );
  await eventually(async () => {
    const { rowCount } = await stack.pool.query(`SELECT 1 FROM cache_entries WHERE key = $1`, [
      'e'.repeat(64),
    ]);
    return rowCount === 0;
  }, 'the worker deleted the expired entry');
});

describe('semantic cache', () => {
  const question = (content: string) => ({
    messages: [{ role: 'user', content }],
    temperature: 0,
    max_tokens: 6,
  });
  const semantic = { 'LLMQ-Semantic-Cache': 'threshold=0.9' };

  it('answers a similar prompt above the threshold, with its similarity, and misses below it', async () => {
    const first = await settle(question('What is the capital of France?'), 'acme', semantic);
    expect(first.status).toBe(202);
    const calls = await upstream();
    const close = await ask(question('What is the capital city of France?'), 'acme', semantic);
    expect(close.status).toBe(200);
    expect(close.answer).toMatchObject({ source: 'semantic', result: first.text });
    const similarity = (close.answer as unknown as { similarity: number }).similarity;
    expect(similarity).toBeGreaterThanOrEqual(0.9);
    expect(similarity).toBeLessThan(1);
    expect(await upstream()).toBe(calls);
    // Below the threshold: a different question, and the same one for a stricter caller.
    expect((await ask(question('What is the capital of Spain?'), 'acme', semantic)).status).toBe(202);
    const strict = { 'LLMQ-Semantic-Cache': 'threshold=0.99' };
    expect((await ask(question('What is the capital city of France?'), 'acme', strict)).status).toBe(202);
    // Not asked for: exact matching only.
    expect((await ask(question('What is the capital city of France? '))).status).toBe(202);
  });

  it('applies to every request of a model the providers file turns it on for, unless the request says off', async () => {
    const doc = defaultProviders(stack.simulatorUrls.map((u) => `${u}/v1`)) as { models?: object[] };
    stack.writeProviders({ ...doc, models: [{ name: 'sim-large', semanticCache: { threshold: 0.9 } }] });
    await new Promise((r) => setTimeout(r, 1500)); // the API polls the file every second
    const large = (content: string) => ({ ...question(content), model: 'sim-large' });
    const first = await settle(large('Which planet is known as the red planet?'));
    expect(first.status).toBe(202);
    const similar = await ask(large('Which planet is known as the red planet today?'));
    expect(similar.answer).toMatchObject({ source: 'semantic', result: first.text });
    const off = await ask(large('Which planet is known as the red planet today?'), 'acme', {
      'LLMQ-Semantic-Cache': 'off',
    });
    expect(off.status).toBe(202);
    // The other model is untouched by the setting.
    await settle(question('Which planet is known as the red planet?'));
    expect((await ask(question('Which planet is known as the red planet today?'))).status).toBe(202);
  });

  it('stays within the tenant and the model, and rejects a malformed header', async () => {
    await settle(question('Name the largest ocean on Earth.'), 'acme', semantic);
    const other = await ask(question('Name the largest ocean on planet Earth.'), 'globex', semantic);
    expect(other.status).toBe(202);
    const otherModel = await ask(
      { ...question('Name the largest ocean on planet Earth.'), model: 'sim-large' },
      'acme',
      semantic,
    );
    expect(otherModel.status).toBe(202);
    const bad = await ask(question('x'), 'acme', { 'LLMQ-Semantic-Cache': 'maybe' });
    expect(bad.status).toBe(400);
    expect(bad.answer).toMatchObject({ code: 'invalid_semantic_cache' });
  });
});
