/**
 * The key limiter against a real Redis. Several connections stand for several API processes;
 * bucket refill is made negligible (1 per minute) wherever a test counts admissions, so counts
 * are exact however slow the machine is.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { freePort, startRedisServer, type RedisServerHandle } from '@llmq/embedded';
import { Redis } from 'ioredis';
import {
  KeyLimiter,
  budgetResetMs,
  limiterKeys,
  markKeyRevoked,
  openAiDuration,
  rateLimitHeaders,
  toMicros,
  type EffectiveLimits,
} from '../src';

const PREFIX = 'rl-test';
let server: RedisServerHandle;
let dataDir: string;
const connections: Redis[] = [];

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'llmq-rate-limit-'));
  server = await startRedisServer({ port: await freePort(), dataDir });
});

afterAll(async () => {
  await Promise.all(connections.map((c) => c.quit().catch(() => undefined)));
  await server?.stop();
  rmSync(dataDir, { recursive: true, force: true });
});

function connect(): Redis {
  const c = new Redis(server.url);
  connections.push(c);
  return c;
}

const NONE: EffectiveLimits = {
  requestsPerMinute: 0,
  requestBurst: 0,
  tokensPerMinute: 0,
  tokenBurst: 0,
  dailyBudgetMicros: 0,
  monthlyBudgetMicros: 0,
  maxActiveJobs: 0,
};

/** Today's label of the day spend counter (UTC). */
const budgetDay = () => new Date().toISOString().slice(0, 10).replaceAll('-', '');

let n = 0;
/** A fresh tenant and key per test, so tests never share buckets. */
function subject() {
  n++;
  return { tenantId: `t${n}`, keyId: randomUUID() };
}

function admit(
  limiter: KeyLimiter,
  who: { tenantId: string; keyId: string },
  limits: Partial<EffectiveLimits>,
  tokens = 10,
  costMicros = 0,
) {
  return limiter.admit({ ...who, jobId: randomUUID(), tokens, costMicros, limits: { ...NONE, ...limits } });
}

describe('request bucket', () => {
  it('admits exactly its capacity across concurrent connections', async () => {
    const who = subject();
    const limiters = [connect(), connect(), connect()].map((c) => new KeyLimiter(c, { prefix: PREFIX }));
    const decisions = await Promise.all(
      Array.from({ length: 120 }, (_, i) =>
        admit(limiters[i % 3]!, who, { requestsPerMinute: 1, requestBurst: 40 }),
      ),
    );
    expect(decisions.filter((d) => d.admitted)).toHaveLength(40);
    const rejected = decisions.filter((d) => !d.admitted);
    expect(rejected).toHaveLength(80);
    for (const d of rejected) {
      expect(d.admitted || d.reason).toBe('requests');
      // one request refills in a minute at 1 per minute
      expect(d.admitted || d.retryAfterMs).toBeGreaterThan(50_000);
    }
  });

  it('a rejection takes nothing: the other bucket is untouched', async () => {
    const who = subject();
    const limiter = new KeyLimiter(connect(), { prefix: PREFIX });
    const limits = { requestsPerMinute: 1, requestBurst: 5, tokensPerMinute: 1, tokenBurst: 100 };
    const first = await admit(limiter, who, limits, 60);
    expect(first.admitted).toBe(true);
    expect(first.state.requests?.remaining).toBe(4);
    expect(first.state.tokens?.remaining).toBe(40);
    const before = await connect().hgetall(limiterKeys.requests(PREFIX, who.tenantId, who.keyId));
    // 60 more tokens do not fit in the 40 left: refused, and the request bucket keeps its 4
    const refused = await admit(limiter, who, limits, 60);
    expect(refused).toMatchObject({ admitted: false, reason: 'tokens' });
    expect(refused.state.requests?.remaining).toBe(4);
    expect(await connect().hgetall(limiterKeys.requests(PREFIX, who.tenantId, who.keyId))).toEqual(before);
    const next = await admit(limiter, who, limits, 40);
    expect(next.admitted).toBe(true);
    expect(next.state.requests?.remaining).toBe(3);
    expect(next.state.tokens?.remaining).toBe(0);
  });

  it('a request larger than the token bucket can never fit', async () => {
    const limiter = new KeyLimiter(connect(), { prefix: PREFIX });
    const d = await admit(limiter, subject(), { tokensPerMinute: 1000 }, 1001);
    expect(d).toMatchObject({ admitted: false, reason: 'tokens', retryAfterMs: -1 });
  });

  it('refills with time', async () => {
    const who = subject();
    const limiter = new KeyLimiter(connect(), { prefix: PREFIX });
    // 600 per minute = one every 100 ms
    expect((await admit(limiter, who, { requestsPerMinute: 600, requestBurst: 1 })).admitted).toBe(true);
    const refused = await admit(limiter, who, { requestsPerMinute: 600, requestBurst: 1 });
    expect(refused.admitted).toBe(false);
    expect(refused.admitted || refused.retryAfterMs).toBeLessThanOrEqual(100);
    await new Promise((r) => setTimeout(r, 150));
    expect((await admit(limiter, who, { requestsPerMinute: 600, requestBurst: 1 })).admitted).toBe(true);
  });
});

describe('settlement', () => {
  it('refunds unused tokens once, however often it is called', async () => {
    const who = subject();
    const limiter = new KeyLimiter(connect(), { prefix: PREFIX });
    const limits = { ...NONE, tokensPerMinute: 1, tokenBurst: 1000 };
    const jobId = randomUUID();
    const d = await limiter.admit({ ...who, jobId, tokens: 800, costMicros: 0, limits });
    expect(d.state.tokens?.remaining).toBe(200);
    expect(await limiter.settle({ tenantId: who.tenantId, jobId, tokens: 300, costMicros: 0 })).toEqual({
      settled: true,
      alarmTripped: false,
    });
    expect(await limiter.settle({ tenantId: who.tenantId, jobId, tokens: 300, costMicros: 0 })).toEqual({
      settled: false,
      alarmTripped: false,
    });
    // 300 used: 700 free again, minus the 50 this admission takes
    const after = await admit(limiter, who, limits, 50);
    expect(after.state.tokens?.remaining).toBe(650);
  });

  it('refundRequest gives the request back too', async () => {
    const who = subject();
    const limiter = new KeyLimiter(connect(), { prefix: PREFIX });
    const limits = { ...NONE, requestsPerMinute: 1, requestBurst: 2 };
    const jobId = randomUUID();
    await limiter.admit({ ...who, jobId, tokens: 1, costMicros: 0, limits });
    await limiter.settle({ tenantId: who.tenantId, jobId, tokens: 0, costMicros: 0, refundRequest: true });
    const d = await admit(limiter, who, limits);
    expect(d.state.requests?.remaining).toBe(1);
  });
});

describe('tenant concurrency', () => {
  it('holds at the limit until jobs settle', async () => {
    const who = subject();
    const limiter = new KeyLimiter(connect(), { prefix: PREFIX });
    const limits = { ...NONE, maxActiveJobs: 3 };
    const ids = [randomUUID(), randomUUID(), randomUUID()];
    for (const jobId of ids) {
      expect((await limiter.admit({ ...who, jobId, tokens: 1, costMicros: 0, limits })).admitted).toBe(true);
    }
    expect(await admit(limiter, who, limits)).toMatchObject({ admitted: false, reason: 'concurrency' });
    await limiter.settle({ tenantId: who.tenantId, jobId: ids[0]!, tokens: 1, costMicros: 0 });
    expect((await admit(limiter, who, limits)).admitted).toBe(true);
  });

  it('drops admissions whose settlement never came', async () => {
    const who = subject();
    const limiter = new KeyLimiter(connect(), { prefix: PREFIX, staleActiveMs: 200 });
    const limits = { ...NONE, maxActiveJobs: 1 };
    expect((await admit(limiter, who, limits)).admitted).toBe(true);
    expect((await admit(limiter, who, limits)).admitted).toBe(false);
    await new Promise((r) => setTimeout(r, 300));
    expect((await admit(limiter, who, limits)).admitted).toBe(true);
  });
});

describe('budgets', () => {
  it('refuse at the boundary, also under concurrent admissions', async () => {
    const who = subject();
    const limiters = [connect(), connect()].map((c) => new KeyLimiter(c, { prefix: PREFIX }));
    // 25 admissions of 40 micro-dollars fit in 1000, exactly
    const decisions = await Promise.all(
      Array.from({ length: 60 }, (_, i) => admit(limiters[i % 2]!, who, { dailyBudgetMicros: 1000 }, 1, 40)),
    );
    expect(decisions.filter((d) => d.admitted)).toHaveLength(25);
    const refused = decisions.find((d) => !d.admitted)!;
    expect(refused).toMatchObject({ reason: 'budget_day' });
    expect(refused.state.daySpentMicros).toBe(1000);
    expect(refused.admitted || refused.retryAfterMs).toBeLessThanOrEqual(86_400_000);
  });

  it('settles the estimate to the actual cost; the monthly cap applies too', async () => {
    const who = subject();
    const limiter = new KeyLimiter(connect(), { prefix: PREFIX });
    const limits = { ...NONE, monthlyBudgetMicros: 100 };
    const jobId = randomUUID();
    await limiter.admit({ ...who, jobId, tokens: 1, costMicros: 90, limits });
    expect(await admit(limiter, who, limits, 1, 20)).toMatchObject({
      admitted: false,
      reason: 'budget_month',
    });
    await limiter.settle({ tenantId: who.tenantId, jobId, tokens: 1, costMicros: 30 });
    expect(await limiter.spend(who.tenantId, who.keyId)).toEqual({ dayMicros: 30, monthMicros: 30 });
    expect((await admit(limiter, who, limits, 1, 70)).admitted).toBe(true);
  });

  it('counts the cost of a job never admitted one by one (a batch line), once, without the alarm', async () => {
    const who = subject();
    const limiter = new KeyLimiter(connect(), {
      prefix: PREFIX,
      alarm: { multiple: 2, floorMicrosPerMinute: 1, durationMs: 60_000 },
    });
    const limits = { ...NONE, dailyBudgetMicros: 100 };
    const settle = (jobId: string, costMicros: number, unreservedKeyId?: string) =>
      limiter.settle({
        tenantId: who.tenantId,
        jobId,
        tokens: 1,
        costMicros,
        ...(unreservedKeyId ? { unreservedKeyId } : {}),
      });
    // No reservation and no key: nothing to count (a repeated settlement).
    expect(await settle(randomUUID(), 40)).toEqual({ settled: false, alarmTripped: false });
    expect(await limiter.spend(who.tenantId, who.keyId)).toEqual({ dayMicros: 0, monthMicros: 0 });
    // A batch line's first charge: its cost is spend, and far past the alarm's multiple trips nothing.
    expect(await settle(randomUUID(), 120, who.keyId)).toEqual({ settled: false, alarmTripped: false });
    expect(await limiter.spend(who.tenantId, who.keyId)).toEqual({ dayMicros: 120, monthMicros: 120 });
    const ttl = await connections
      .at(-1)!
      .ttl(limiterKeys.spendDay(PREFIX, who.tenantId, who.keyId, budgetDay()));
    expect(ttl).toBeGreaterThan(0);
    // The budget sees it: the key's next request is refused.
    expect(await admit(limiter, who, limits, 1, 1)).toMatchObject({ admitted: false, reason: 'budget_day' });
    // A reserved job given the key too is settled as reserved: its cost is not counted twice.
    const other = subject();
    const jobId = randomUUID();
    await limiter.admit({
      ...other,
      jobId,
      tokens: 1,
      costMicros: 50,
      limits: { ...NONE, dailyBudgetMicros: 1000 },
    });
    await limiter.settle({
      tenantId: other.tenantId,
      jobId,
      tokens: 1,
      costMicros: 30,
      unreservedKeyId: other.keyId,
    });
    expect(await limiter.spend(other.tenantId, other.keyId)).toEqual({ dayMicros: 30, monthMicros: 30 });
  });

  it('reset at UTC midnight and on the first of the month', () => {
    const at = new Date(Date.UTC(2026, 10, 30, 23, 59, 0));
    expect(budgetResetMs('budget_day', at)).toBe(60_000);
    expect(budgetResetMs('budget_month', at)).toBe(60_000);
    expect(toMicros(0.1)).toBe(100_000);
    expect(toMicros(0.0000011)).toBe(2);
  });
});

describe('spend-rate alarm and revocation', () => {
  it('trips when a minute spends past the multiple, and refuses until cleared', async () => {
    const who = subject();
    const limiter = new KeyLimiter(connect(), {
      prefix: PREFIX,
      alarm: { multiple: 5, floorMicrosPerMinute: 100, durationMs: 60_000 },
    });
    let tripped = false;
    let jobs = 0;
    // each job costs 100; the alarm trips once this minute passes 5 x 100
    while (!tripped && jobs < 20) {
      const jobId = randomUUID();
      await limiter.admit({ ...who, jobId, tokens: 1, costMicros: 100, limits: NONE });
      tripped = (await limiter.settle({ tenantId: who.tenantId, jobId, tokens: 1, costMicros: 100 }))
        .alarmTripped;
      jobs++;
    }
    expect(tripped).toBe(true);
    expect(jobs).toBe(6);
    const refused = await admit(limiter, who, {});
    expect(refused).toMatchObject({ admitted: false, reason: 'alarm' });
    expect(refused.admitted || refused.retryAfterMs).toBeGreaterThan(50_000);
    expect(await limiter.clearAlarm(who.tenantId, who.keyId)).toBe(true);
    expect((await admit(limiter, who, {})).admitted).toBe(true);
  });

  it('a revoked key is refused at once', async () => {
    const who = subject();
    const redis = connect();
    const limiter = new KeyLimiter(redis, { prefix: PREFIX });
    expect((await admit(limiter, who, {})).admitted).toBe(true);
    await markKeyRevoked(redis, PREFIX, who.tenantId, who.keyId);
    expect(await admit(limiter, who, {})).toMatchObject({ admitted: false, reason: 'revoked' });
  });
});

describe('headers', () => {
  it('formats OpenAI durations', () => {
    expect(openAiDuration(20)).toBe('20ms');
    expect(openAiDuration(1500)).toBe('1.5s');
    expect(openAiDuration(360_000)).toBe('6m0s');
    expect(openAiDuration(59_999_9)).toBe('10m0s');
  });

  it('gives both dialects for the buckets that have limits', () => {
    const h = rateLimitHeaders({
      requests: { capacity: 60, perMinute: 60, remaining: 59, resetMs: 1000 },
      tokens: { capacity: 20_000, perMinute: 10_000, remaining: 19_000, resetMs: 6000 },
      daySpentMicros: 0,
      monthSpentMicros: 0,
      activeJobs: 1,
    });
    expect(h).toEqual({
      'x-ratelimit-limit-requests': '60',
      'x-ratelimit-remaining-requests': '59',
      'x-ratelimit-reset-requests': '1s',
      'x-ratelimit-limit-tokens': '20000',
      'x-ratelimit-remaining-tokens': '19000',
      'x-ratelimit-reset-tokens': '6s',
      'RateLimit-Policy': '"requests";q=60;w=60, "tokens";q=20000;w=120;qu="tokens"',
      RateLimit: '"requests";r=59;t=1, "tokens";r=19000;t=6',
    });
    expect(
      rateLimitHeaders({
        requests: null,
        tokens: null,
        daySpentMicros: 0,
        monthSpentMicros: 0,
        activeJobs: 0,
      }),
    ).toEqual({});
  });
});
