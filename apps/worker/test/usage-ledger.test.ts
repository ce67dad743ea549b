/**
 * The usage ledger and the settlement of admissions, end to end: real API, worker, simulator,
 * Redis and Postgres. The simulator's own counters are the reference for what the ledger says
 * the providers were asked.
 */
import { countPromptTokens } from '@llmq/llm';
import { limiterKeys } from '@llmq/rate-limit';
import { eventually, useStack, type TestStack } from '@llmq/testing';
import { Redis } from 'ioredis';

jest.setTimeout(120_000);

async function submit(
  stack: TestStack,
  key: string,
  body: object,
): Promise<{ res: Response; jobId: string }> {
  const { res, body: answer } = await stack.submit(key, body);
  expect([200, 202]).toContain(res.status);
  return { res, jobId: answer.jobId };
}

const reserve = (text: string, maxTokens: number) =>
  countPromptTokens([{ role: 'user', content: text }]) + maxTokens;

describe('ledger and settlement', () => {
  // The breaker never opens here, so the simulator serves nothing but the jobs' calls (no health checks).
  const { stack } = useStack(
    { workers: 1, workerEnv: { WORKER_CONCURRENCY: '4', BREAKER_MIN_REQUESTS: '1000' } },
    [],
  );

  it('has one row per upstream call, matching the simulator, and one charge per job', async () => {
    const key = await stack.createKey('ledger');
    await fetch(`${stack.simulatorUrl}/stats/reset`, { method: 'POST' });
    // Some calls fail: the client retries them, and every call is in the ledger.
    await fetch(`${stack.simulatorUrl}/admin/fault`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ fault: 'status=500;rate=0.3' }),
    });
    const ids: string[] = [];
    try {
      for (let i = 0; i < 10; i++)
        ids.push((await submit(stack, key, { prompt: `ledger ${i}`, max_tokens: 20 })).jobId);
      await Promise.all(ids.map((id) => stack.waitForJob(key, id, undefined, 60_000)));
    } finally {
      await fetch(`${stack.simulatorUrl}/admin/fault`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ fault: null }),
      });
    }
    const stats = await stack.simulatorStats();
    const { rows: attempts } = await stack.pool.query(
      `SELECT outcome, prompt_tokens, completion_tokens, cost_usd::float AS cost, backend_id, latency_ms
       FROM usage_ledger WHERE kind = 'attempt' AND job_id = ANY($1::uuid[])`,
      [ids],
    );
    expect(stats.requests.models).toBe(0);
    expect(attempts).toHaveLength(stats.requests.chat + stats.requests.chatStream);
    expect(stats.faults.status).toBeGreaterThan(0);
    const ok = attempts.filter((a) => a.outcome === 'ok');
    expect(ok).toHaveLength(stats.completed);
    expect(attempts.filter((a) => a.outcome !== 'ok')).toHaveLength(stats.faults.status);
    expect(ok.reduce((n, a) => n + a.completion_tokens, 0)).toBe(stats.tokens);
    for (const a of attempts) {
      expect(a.backend_id).toBe('sim-1');
      expect(a.latency_ms).toBeGreaterThanOrEqual(0);
    }

    const { rows: charges } = await stack.pool.query(
      `SELECT l.job_id, l.outcome, l.cost_usd::float AS cost, l.prompt_tokens + l.completion_tokens AS tokens,
              j.status, j.cost_usd::float AS job_cost, (j.usage->>'total_tokens')::int AS job_tokens, l.api_key_id = j.api_key_id AS same_key
       FROM usage_ledger l JOIN jobs j ON j.id = l.job_id WHERE l.kind = 'job' AND l.job_id = ANY($1::uuid[])`,
      [ids],
    );
    expect(charges).toHaveLength(10);
    for (const c of charges) {
      expect(c.outcome).toBe(c.status);
      expect(c.same_key).toBe(true);
      if (c.status === 'completed') {
        expect(c.cost).toBeCloseTo(c.job_cost, 6);
        expect(c.tokens).toBe(c.job_tokens);
      }
    }
    // What the key is charged is what the successful calls cost.
    const charged = charges.reduce((s, c) => s + c.cost, 0);
    expect(charged).toBeCloseTo(
      ok.reduce((s, a) => s + a.cost, 0),
      6,
    );

    // GET /api/usage: the key's own usage by day and model.
    const usage = (await (await stack.request('/api/usage', key)).json()) as {
      data: { day: string; model: string; jobs: number; costUsd: number }[];
      totals: { jobs: number; costUsd: number };
      limits: object;
      spend: { todayUsd: number };
    };
    expect(usage.data).toEqual([
      expect.objectContaining({ day: new Date().toISOString().slice(0, 10), model: 'sim-small', jobs: 10 }),
    ]);
    expect(usage.totals.jobs).toBe(10);
    expect(usage.totals.costUsd).toBeCloseTo(charged, 6);
    // Everything settled: the budget counter holds actual costs, no estimates.
    expect(usage.spend.todayUsd).toBeCloseTo(charged, 5);
    // Another key sees none of it.
    const other = await stack.createKey('ledger');
    const theirs = (await (await stack.request('/api/usage', other)).json()) as { data: unknown[] };
    expect(theirs.data).toEqual([]);
  });

  it('refunds the tokens a job reserved but did not use', async () => {
    const key = await stack.createKey('refunds', { tokensPerMinute: 1, tokenBurst: 5000 });
    // Without max_tokens, admission reserves the default 1024 completion tokens; the simulator writes 64.
    const first = await submit(stack, key, { prompt: 'Refund me' });
    expect(first.res.headers.get('x-ratelimit-remaining-tokens')).toBe(
      String(5000 - reserve('Refund me', 1024)),
    );
    const job = await stack.waitForJob(key, first.jobId);
    expect(job.status).toBe('completed');
    const used = job.usage!.total_tokens;
    expect(used).toBeLessThan(reserve('Refund me', 1024) - 900);
    // The job is settled once its reservation is gone (the worker settles right after the result).
    const redis = new Redis(stack.redisUrl);
    try {
      await eventually(
        async () => (await redis.hexists(limiterKeys.reservations('llmq', 'refunds'), first.jobId)) === 0,
        'the job was settled',
      );
    } finally {
      await redis.quit();
    }
    const next = await submit(stack, key, { prompt: 'Refund me', max_tokens: 1 });
    const remaining = Number(next.res.headers.get('x-ratelimit-remaining-tokens'));
    const expected = 5000 - used - reserve('Refund me', 1);
    // A few seconds of refill at 1 token per minute may add at most one token.
    expect(remaining).toBeGreaterThanOrEqual(expected);
    expect(remaining).toBeLessThanOrEqual(expected + 1);
  });

  it('a cache hit is charged nothing and says so', async () => {
    const key = await stack.createKey('hits');
    const body = { prompt: 'Cache this', max_tokens: 5, temperature: 0 };
    const first = await submit(stack, key, body);
    await stack.waitForJob(key, first.jobId);
    const second = await submit(stack, key, body);
    expect(second.res.status).toBe(200);
    const { rows } = await stack.pool.query(
      `SELECT job_id, cache_status, cost_usd::float AS cost, outcome FROM usage_ledger WHERE kind = 'job' AND job_id = ANY($1::uuid[])`,
      [[first.jobId, second.jobId]],
    );
    const byJob = Object.fromEntries(rows.map((r) => [r.job_id, r]));
    expect(byJob[first.jobId]).toMatchObject({ cache_status: 'miss', outcome: 'completed' });
    expect(byJob[first.jobId].cost).toBeGreaterThan(0);
    expect(byJob[second.jobId]).toMatchObject({ cache_status: 'exact', outcome: 'completed', cost: 0 });
  });

  it('a job cancelled while queued is charged nothing and frees its slot', async () => {
    const tenant = 'cancels';
    const key = await stack.createKey(tenant);
    await stack.pool.query(`INSERT INTO tenant_limits (tenant_id, max_active_jobs) VALUES ($1, 1)`, [tenant]);
    // Slow enough to still be running when the second submission arrives.
    const first = await submit(stack, key, { prompt: 'long one', max_tokens: 200 });
    const refused = await stack.submit(key, { prompt: 'second', max_tokens: 5 });
    expect(refused.res.status).toBe(429);
    expect(refused.body.code).toBe('too_many_active_jobs');
    const cancel = await stack.request(`/api/jobs/${first.jobId}`, key, { method: 'DELETE' });
    expect(cancel.status).toBe(200);
    await eventually(async () => {
      const again = await stack.submit(key, { prompt: 'second', max_tokens: 5 });
      return again.res.status === 202 ? true : undefined;
    }, 'the cancelled job freed its slot');
    const { rows } = await stack.pool.query(
      `SELECT outcome, cost_usd::float AS cost FROM usage_ledger WHERE kind = 'job' AND job_id = $1`,
      [first.jobId],
    );
    expect(rows).toEqual([{ outcome: 'cancelled', cost: 0 }]);
  });
});

describe('spend-rate alarm', () => {
  // A tiny baseline: the first minute's spend of a few jobs is a spike.
  const ADMIN = 'admin-token-for-alarm-tests';
  const { stack } = useStack(
    {
      workers: 1,
      apiEnv: { ADMIN_TOKEN: ADMIN },
      workerEnv: { SPEND_ALARM_MULTIPLE: '2', SPEND_ALARM_FLOOR_USD_PER_MINUTE: '0.00005' },
    },
    [],
  );

  it('trips on a spike of spend and refuses the key until it expires', async () => {
    const key = await stack.createKey('spender');
    const calm = await stack.createKey('calm');
    let refused: { res: Response; body: { code?: string } } | null = null;
    for (let i = 0; i < 20 && !refused; i++) {
      const { res, body } = await stack.submit(key, { prompt: `spend ${i}`, max_tokens: 40 });
      if (res.status === 429) refused = { res, body };
      else await stack.waitForJob(key, body.jobId);
    }
    expect(refused?.body.code).toBe('spend_alarm');
    expect(Number(refused!.res.headers.get('retry-after'))).toBeGreaterThan(60);
    // Only that key: another key of the fleet is unaffected.
    expect((await stack.submit(calm, { prompt: 'fine', max_tokens: 5 })).res.status).toBe(202);
    // An operator lifts it.
    const { rows } = await stack.pool.query(`SELECT id FROM api_keys WHERE tenant_id = 'spender'`);
    const clear = await fetch(`${stack.apiUrl}/admin/keys/${rows[0].id}/alarm`, {
      method: 'DELETE',
      headers: { authorization: `Bearer ${ADMIN}` },
    });
    expect(await clear.json()).toEqual({ cleared: true });
    expect((await stack.submit(key, { prompt: 'again', max_tokens: 5 })).res.status).toBe(202);
  });
});
