/**
 * Admission limits through real API processes: three APIs share one Redis, and one key's limits
 * hold exactly across them. No worker runs, so nothing settles behind a test's back: every job
 * admitted stays queued and keeps what it reserved.
 *
 * Buckets refill at 1 per minute wherever a test counts admissions: over a test's few seconds
 * that is a fraction of one request or token, so counts are exact however slow the machine is.
 */
import { randomUUID } from 'node:crypto';
import { countPromptTokens } from '@llmq/llm';
import { limiterKeys } from '@llmq/rate-limit';
import { useStack } from '@llmq/testing';
import { Redis } from 'ioredis';

const ADMIN = 'admin-token-for-limit-tests';
const { stack } = useStack({ workers: 0, apiEnv: { ADMIN_TOKEN: ADMIN } }, []);
let apis: string[] = [];
let redis: Redis;

beforeAll(async () => {
  const [b, c] = await Promise.all([stack.startExtraApi(), stack.startExtraApi()]);
  apis = [stack.apiUrl, b.url, c.url];
  redis = new Redis(stack.redisUrl);
}, 60_000);

afterAll(async () => {
  await redis?.quit();
});

const prompt = (text = 'Say hello') => ({ prompt: text, max_tokens: 100 });
/** What admission reserves: the prompt by the real tokenizer, plus max_tokens. */
const reserve = (text = 'Say hello', maxTokens = 100) =>
  countPromptTokens([{ role: 'user', content: text }]) + maxTokens;

function submit(apiUrl: string, key: string, body: object = prompt()): Promise<Response> {
  return fetch(`${apiUrl}/api/generate`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
}

async function keyWith(limits: object, tenant = `t-${randomUUID().slice(0, 8)}`) {
  const res = await fetch(`${stack.apiUrl}/admin/keys`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ tenant, limits }),
  });
  expect(res.status).toBe(201);
  const body = (await res.json()) as { key: string; apiKey: { id: string } };
  return { key: body.key, id: body.apiKey.id, tenant };
}

describe('token buckets across three API processes', () => {
  it('admit exactly the request bucket capacity, whatever process a request reaches', async () => {
    const { key } = await keyWith({ requestsPerMinute: 1, requestBurst: 30 });
    const answers = await Promise.all(
      Array.from({ length: 90 }, (_, i) => submit(apis[i % 3]!, key).then((r) => r.status)),
    );
    expect(answers.filter((s) => s === 202)).toHaveLength(30);
    expect(answers.filter((s) => s === 429)).toHaveLength(60);
  });

  it('answer 429 with Retry-After, OpenAI and IETF headers, and a problem naming the limit', async () => {
    const { key } = await keyWith({
      requestsPerMinute: 1,
      requestBurst: 1,
      tokensPerMinute: 1,
      tokenBurst: 5000,
    });
    const ok = await submit(apis[0]!, key);
    expect(ok.status).toBe(202);
    const cost = reserve();
    expect(Object.fromEntries([...ok.headers].filter(([h]) => /ratelimit/i.test(h)))).toEqual({
      'x-ratelimit-limit-requests': '1',
      'x-ratelimit-remaining-requests': '0',
      'x-ratelimit-reset-requests': '1m0s',
      'x-ratelimit-limit-tokens': '5000',
      'x-ratelimit-remaining-tokens': String(5000 - cost),
      // used tokens drain at 1 per minute: `cost` minutes until the bucket is full again
      'x-ratelimit-reset-tokens': `${cost}m0s`,
      'ratelimit-policy': '"requests";q=1;w=60, "tokens";q=5000;w=300000;qu="tokens"',
      ratelimit: `"requests";r=0;t=60, "tokens";r=${5000 - cost};t=${cost * 60}`,
    });

    const refused = await submit(apis[1]!, key);
    expect(refused.status).toBe(429);
    expect(refused.headers.get('content-type')).toMatch(/application\/problem\+json/);
    const retryAfter = Number(refused.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThanOrEqual(55);
    expect(retryAfter).toBeLessThanOrEqual(60);
    expect(refused.headers.get('x-ratelimit-remaining-requests')).toBe('0');
    expect(refused.headers.get('ratelimit')).toMatch(/^"requests";r=0;t=\d+, "tokens";r=\d+;t=\d+$/);
    const problem = (await refused.json()) as { code: string; status: number; detail: string };
    expect(problem).toMatchObject({ status: 429, code: 'rate_limit_exceeded' });
    expect(problem.detail).toMatch(/request rate limit/);
  });

  it('a rejected request leaves both buckets as they were', async () => {
    const { key, id, tenant } = await keyWith({
      requestsPerMinute: 1,
      requestBurst: 10,
      tokensPerMinute: 1,
      tokenBurst: 1000,
    });
    const first = await submit(apis[0]!, key, prompt());
    expect(first.status).toBe(202);
    expect(first.headers.get('x-ratelimit-remaining-requests')).toBe('9');
    const tokensLeft = 1000 - reserve();
    expect(first.headers.get('x-ratelimit-remaining-tokens')).toBe(String(tokensLeft));
    const buckets = async () =>
      Promise.all([
        redis.hget(limiterKeys.requests('llmq', tenant, id), 'used'),
        redis.hget(limiterKeys.tokens('llmq', tenant, id), 'used'),
      ]);
    const before = await buckets();

    // Too many tokens for what is left: refused on the token bucket, by every process.
    for (const api of apis) {
      const big = await submit(api, key, { prompt: 'Say hello', max_tokens: tokensLeft });
      expect(big.status).toBe(429);
      expect(big.headers.get('x-ratelimit-remaining-requests')).toBe('9');
    }
    // Invalid requests never reach the limiter.
    expect((await submit(apis[2]!, key, { prompt: 'x', max_tokens: -1 })).status).toBe(400);
    expect(await buckets()).toEqual(before);

    const next = await submit(apis[1]!, key);
    expect(next.status).toBe(202);
    expect(next.headers.get('x-ratelimit-remaining-requests')).toBe('8');
    expect(next.headers.get('x-ratelimit-remaining-tokens')).toBe(String(tokensLeft - reserve()));
  });

  it('a replay of an Idempotency-Key costs nothing and is answered even with the bucket empty', async () => {
    const { key } = await keyWith({ requestsPerMinute: 1, requestBurst: 1 });
    const send = (api: string) =>
      fetch(`${api}/api/generate`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${key}`,
          'content-type': 'application/json',
          'Idempotency-Key': 'once',
        },
        body: JSON.stringify(prompt()),
      });
    const first = await send(apis[0]!);
    expect(first.status).toBe(202);
    const { jobId } = (await first.json()) as { jobId: string };
    for (const api of apis) {
      const again = await send(api);
      expect(again.status).toBe(202);
      expect(again.headers.get('idempotent-replayed')).toBe('true');
      expect(await again.json()).toMatchObject({ jobId });
    }
    // The bucket really is empty: a new request is refused.
    expect((await submit(apis[1]!, key)).status).toBe(429);
  });

  it('a request larger than the whole token bucket is told it can never pass', async () => {
    const { key } = await keyWith({ tokensPerMinute: 1000 });
    const res = await submit(apis[0]!, key, { prompt: 'Say hello', max_tokens: 1000 });
    expect(res.status).toBe(429);
    expect(res.headers.get('retry-after')).toBeNull();
    expect(res.headers.get('x-should-retry')).toBe('false');
    expect(await res.json()).toMatchObject({ code: 'request_too_large' });
  });
});

describe('budgets', () => {
  it('refuse at the boundary under concurrent submissions to three processes', async () => {
    // sim models cost $0.5 / $1.5 per million tokens: a request reserves its prompt + 100 completion tokens
    const estimate = Math.ceil(countPromptTokens([{ role: 'user', content: 'Say hello' }]) * 0.5 + 100 * 1.5);
    const fits = 7;
    const { key } = await keyWith({ dailyBudgetUsd: (estimate * fits) / 1e6 });
    const answers = await Promise.all(Array.from({ length: 30 }, (_, i) => submit(apis[i % 3]!, key)));
    expect(answers.filter((r) => r.status === 202)).toHaveLength(fits);
    const refused = answers.find((r) => r.status === 429)!;
    const problem = (await refused.json()) as { code: string; detail: string };
    expect(problem.code).toBe('budget_exceeded');
    expect(problem.detail).toMatch(/daily budget of \$0\.\d+ would be exceeded/);
    // the budget starts over at UTC midnight
    const untilMidnight =
      (Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth(), new Date().getUTCDate() + 1) -
        Date.now()) /
      1000;
    expect(Math.abs(Number(refused.headers.get('retry-after')) - untilMidnight)).toBeLessThan(60);
  });

  it('a monthly cap applies as well', async () => {
    const { key } = await keyWith({ monthlyBudgetUsd: 0.000001 });
    const res = await submit(apis[0]!, key);
    expect(res.status).toBe(429);
    expect(await res.json()).toMatchObject({
      code: 'budget_exceeded',
      detail: expect.stringMatching(/monthly/),
    });
  });
});

describe('tenant concurrency and backpressure', () => {
  it('refuse a tenant past its active jobs, across keys of the tenant', async () => {
    const tenant = `t-${randomUUID().slice(0, 8)}`;
    const a = await keyWith({}, tenant);
    const b = await keyWith({}, tenant);
    const put = await fetch(`${stack.apiUrl}/admin/tenants/${tenant}/limits`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ maxActiveJobs: 3 }),
    });
    expect(put.status).toBe(200);
    const answers = await Promise.all(
      Array.from({ length: 8 }, (_, i) => submit(apis[i % 3]!, i % 2 ? a.key : b.key).then((r) => r.status)),
    );
    expect(answers.filter((s) => s === 202)).toHaveLength(3);
    expect(answers.filter((s) => s === 429)).toHaveLength(5);
  });

  it('answers 503 with Retry-After once the queue holds the configured depth', async () => {
    const { url } = await stack.startExtraApi({ MAX_QUEUE_DEPTH: '5', QUEUE_DEPTH_CHECK_MS: '0' });
    const { key } = await keyWith({});
    const statuses: number[] = [];
    let last: Response | null = null;
    for (let i = 0; i < 200 && statuses.at(-1) !== 503; i++) {
      last = await submit(url, key);
      statuses.push(last.status);
    }
    // Earlier tests left jobs queued too (no worker runs): this process refuses as soon as 5 wait.
    expect(last!.status).toBe(503);
    expect(last!.headers.get('retry-after')).toBe('5');
    expect(await last!.json()).toMatchObject({ code: 'queue_full' });
    const queued = await redis.llen('llmq:generate:wait');
    expect(queued).toBeGreaterThanOrEqual(5);
    // Nothing was admitted past the limit: the refused request reserved nothing, wrote no job.
    const { rows } = await stack.pool.query('SELECT count(*)::int AS n FROM jobs');
    expect(rows[0].n).toBe(queued);
    // Tiers are counted apart: the full interactive queue does not refuse batch work.
    const batch = await submit(url, key, { ...prompt(), priority: 'batch' });
    expect(batch.status).toBe(202);
    expect(await redis.llen('llmq:generate-batch:wait')).toBeGreaterThanOrEqual(1);
  });
});

describe('revocation', () => {
  it('stops a key at once on every API process', async () => {
    const { key, id } = await keyWith({});
    // every process has verified (and cached) the key
    for (const api of apis) {
      expect(
        (await fetch(`${api}/api/jobs/${randomUUID()}`, { headers: { authorization: `Bearer ${key}` } }))
          .status,
      ).toBe(404);
    }
    const revoke = await fetch(`${apis[0]}/admin/keys/${id}`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${ADMIN}` },
    });
    expect(revoke.status).toBe(200);
    for (const api of apis) {
      expect((await submit(api, key)).status).toBe(401);
      const poll = await fetch(`${api}/api/jobs/${randomUUID()}`, {
        headers: { authorization: `Bearer ${key}` },
      });
      expect(poll.status).toBe(401);
      expect(await poll.json()).toMatchObject({ code: 'unauthorized' });
    }
  });
});
