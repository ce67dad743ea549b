/**
 * API key management through the admin API: keys are created (with limits), listed, changed and
 * revoked by an operator holding ADMIN_TOKEN, against the real API process, Postgres and Redis.
 */
import { createHash, randomUUID } from 'node:crypto';
import { limiterKeys } from '@llmq/rate-limit';
import { eventually, useStack } from '@llmq/testing';
import { Redis } from 'ioredis';

jest.setTimeout(60_000);

const ADMIN = 'admin-token-for-tests-0123456789';
const { stack, keys } = useStack({ workers: 0, apiEnv: { ADMIN_TOKEN: ADMIN } });

interface KeyView {
  id: string;
  tenant: string;
  name: string | null;
  keyPrefix: string;
  createdAt: string;
  revokedAt: string | null;
  limits: Record<string, number | null>;
}

const DEFAULTS = {
  requestsPerMinute: null,
  requestBurst: null,
  tokensPerMinute: null,
  tokenBurst: null,
  dailyBudgetUsd: null,
  monthlyBudgetUsd: null,
};

function admin(method: string, path: string, body?: unknown, token: string | null = ADMIN) {
  const headers: Record<string, string> = {};
  if (token !== null) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  return fetch(`${stack.apiUrl}${path}`, {
    method,
    headers,
    ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
  });
}

async function json<T>(res: Response, status: number): Promise<T> {
  const text = await res.text();
  expect({ status: res.status, body: text }).toMatchObject({ status });
  return JSON.parse(text) as T;
}

async function expectProblem(res: Response, status: number, code: string, field?: string) {
  expect(res.headers.get('content-type')).toContain('application/problem+json');
  const body = await json<Record<string, unknown>>(res, status);
  expect(body).toMatchObject({ status, code });
  if (field !== undefined) expect(body.field).toBe(field);
  return body;
}

async function createKey(body: object): Promise<{ key: string; apiKey: KeyView }> {
  return json(await admin('POST', '/admin/keys', body), 201);
}

it('refuses every admin route without the admin token, also to a tenant key', async () => {
  const id = randomUUID();
  const routes: [string, string, unknown?][] = [
    ['POST', '/admin/keys', { tenant: 'acme' }],
    ['GET', '/admin/keys'],
    ['GET', `/admin/keys/${id}`],
    ['PATCH', `/admin/keys/${id}`, { name: 'x' }],
    ['DELETE', `/admin/keys/${id}`],
    ['PUT', '/admin/tenants/acme/limits', { maxActiveJobs: 1 }],
    ['GET', '/admin/tenants/acme/limits'],
  ];
  for (const [method, path, body] of routes) {
    for (const token of [null, keys.acme!, `${ADMIN}x`]) {
      const res = await admin(method, path, body, token);
      await expectProblem(res, 401, 'unauthorized');
      expect(res.headers.get('www-authenticate')).toContain('llmq-admin');
    }
  }
  // Nothing was created on the way.
  const { rows } = await stack.pool.query(`SELECT count(*)::int AS n FROM api_keys WHERE tenant_id = 'acme'`);
  expect(rows[0].n).toBe(1);
});

it('creates a key that works at once, shows it once, and never shows its hash', async () => {
  const res = await admin('POST', '/admin/keys', { tenant: 'initech', name: 'billing service' });
  expect(res.headers.get('cache-control')).toBe('no-store');
  const { key, apiKey } = await json<{ key: string; apiKey: KeyView }>(res, 201);
  expect(res.headers.get('location')).toBe(`/admin/keys/${apiKey.id}`);
  expect(key).toMatch(/^llmq_[A-Za-z0-9_-]{32}$/);
  expect(apiKey).toEqual({
    id: expect.stringMatching(/^[0-9a-f-]{36}$/),
    tenant: 'initech',
    name: 'billing service',
    keyPrefix: key.slice(0, 11),
    createdAt: expect.any(String),
    revokedAt: null,
    limits: DEFAULTS,
  });

  // The key authenticates: an unknown job is a 404, not a 401.
  await expectProblem(await stack.request(`/api/jobs/${randomUUID()}`, key), 404, 'not_found');

  const hash = createHash('sha256').update(key).digest('hex');
  const shown = await admin('GET', `/admin/keys/${apiKey.id}`);
  const text = await shown.clone().text();
  expect(text).not.toContain(hash);
  expect(text).not.toContain(key);
  expect(await json(shown, 200)).toEqual(apiKey);
  const listed = await admin('GET', '/admin/keys?tenant=initech');
  expect(await listed.clone().text()).not.toContain(hash);
  expect((await json<{ data: KeyView[] }>(listed, 200)).data).toEqual([apiKey]);
});

it('creates a key with limits and budgets, and changes them (null: back to the default)', async () => {
  const { apiKey } = await createKey({
    tenant: 'umbrella',
    limits: {
      requestsPerMinute: 60,
      requestBurst: 10,
      tokenBurst: 0,
      dailyBudgetUsd: 2.5,
      monthlyBudgetUsd: 40.123456,
    },
  });
  expect(apiKey.name).toBeNull();
  expect(apiKey.limits).toEqual({
    ...DEFAULTS,
    requestsPerMinute: 60,
    requestBurst: 10,
    tokenBurst: 0,
    dailyBudgetUsd: 2.5,
    monthlyBudgetUsd: 40.123456,
  });
  const { rows } = await stack.pool.query(
    'SELECT requests_per_minute, daily_budget_usd::text AS daily FROM api_keys WHERE id = $1',
    [apiKey.id],
  );
  expect(rows[0]).toEqual({ requests_per_minute: 60, daily: '2.500000' });

  const patched = await json<KeyView>(
    await admin('PATCH', `/admin/keys/${apiKey.id}`, {
      name: 'batch jobs',
      limits: { requestsPerMinute: null, tokensPerMinute: 90_000, dailyBudgetUsd: 0 },
    }),
    200,
  );
  expect(patched).toMatchObject({
    id: apiKey.id,
    name: 'batch jobs',
    limits: {
      ...DEFAULTS,
      requestBurst: 10,
      tokensPerMinute: 90_000,
      tokenBurst: 0,
      dailyBudgetUsd: 0,
      monthlyBudgetUsd: 40.123456,
    },
  });
  expect(await json(await admin('GET', `/admin/keys/${apiKey.id}`), 200)).toEqual(patched);
  // An empty patch changes nothing.
  expect(await json(await admin('PATCH', `/admin/keys/${apiKey.id}`, {}), 200)).toEqual(patched);
  const unnamed = await json<KeyView>(await admin('PATCH', `/admin/keys/${apiKey.id}`, { name: null }), 200);
  expect(unnamed.name).toBeNull();
});

it('lists keys by tenant, a page at a time, revoked ones only when asked', async () => {
  const made: KeyView[] = [];
  for (const name of ['a', 'b', 'c', 'd', 'e'])
    made.push((await createKey({ tenant: 'pager', name })).apiKey);
  await json(await admin('DELETE', `/admin/keys/${made[2]!.id}`), 200);

  const names = async (query: string) => {
    const body = await json<{ data: KeyView[]; nextAfter: string | null }>(
      await admin('GET', `/admin/keys?${query}`),
      200,
    );
    return { names: body.data.map((k) => k.name), nextAfter: body.nextAfter };
  };
  expect(await names('tenant=pager')).toEqual({ names: ['a', 'b', 'd', 'e'], nextAfter: null });
  const p1 = await names('tenant=pager&includeRevoked=true&limit=2');
  expect(p1).toEqual({ names: ['a', 'b'], nextAfter: made[1]!.id });
  const p2 = await names(`tenant=pager&includeRevoked=true&limit=2&after=${p1.nextAfter}`);
  expect(p2).toEqual({ names: ['c', 'd'], nextAfter: made[3]!.id });
  expect(await names(`tenant=pager&includeRevoked=1&limit=2&after=${p2.nextAfter}`)).toEqual({
    names: ['e'],
    nextAfter: null,
  });
  // Without a tenant: every tenant's keys.
  const all = await json<{ data: KeyView[] }>(await admin('GET', '/admin/keys?limit=500'), 200);
  expect(all.data.map((k) => k.tenant)).toEqual(expect.arrayContaining(['acme', 'pager']));
});

it('revokes a key in Postgres and marks it in Redis for every API process; revoking again changes nothing', async () => {
  const { key, apiKey } = await createKey({ tenant: 'acme', name: 'to revoke' });
  await expectProblem(await stack.request(`/api/jobs/${randomUUID()}`, key), 404, 'not_found');
  const revoked = await json<KeyView>(await admin('DELETE', `/admin/keys/${apiKey.id}`), 200);
  expect(revoked).toEqual({ ...apiKey, revokedAt: expect.any(String) });

  // Quit here, before the stack stops Redis: a client closed after that keeps jest waiting.
  const redis = new Redis(stack.redisUrl);
  try {
    const marker = limiterKeys.revoked('llmq', 'acme', apiKey.id);
    expect(await redis.exists(marker)).toBe(1);
    expect(await redis.pttl(marker)).toBeGreaterThan(0);
    // The API process cached the key a moment ago; the marker makes it refuse the key now anyway.
    await expectProblem(await stack.request(`/api/jobs/${randomUUID()}`, key), 401, 'unauthorized');

    await redis.del(marker);
    const again = await json<KeyView>(await admin('DELETE', `/admin/keys/${apiKey.id}`), 200);
    expect(again.revokedAt).toBe(revoked.revokedAt);
    expect(await redis.exists(marker)).toBe(1); // written again: a retry repairs a lost marker
  } finally {
    await redis.quit();
  }
  const shown = await json<KeyView>(await admin('GET', `/admin/keys/${apiKey.id}`), 200);
  expect(shown.revokedAt).toBe(revoked.revokedAt);
  const listed = await json<{ data: KeyView[] }>(await admin('GET', '/admin/keys?tenant=acme'), 200);
  expect(listed.data.map((k) => k.id)).not.toContain(apiKey.id);
  // Other keys of the tenant still work.
  await expectProblem(await stack.request(`/api/jobs/${randomUUID()}`, keys.acme!), 404, 'not_found');
});

it('sets and reads a tenant limit on jobs queued + running at once', async () => {
  expect(await json(await admin('GET', '/admin/tenants/hooli/limits'), 200)).toEqual({
    tenant: 'hooli',
    maxActiveJobs: null,
    updatedAt: null,
  });
  const set = await json<{ updatedAt: string }>(
    await admin('PUT', '/admin/tenants/hooli/limits', { maxActiveJobs: 25 }),
    200,
  );
  expect(set).toEqual({ tenant: 'hooli', maxActiveJobs: 25, updatedAt: expect.any(String) });
  expect(await json(await admin('GET', '/admin/tenants/hooli/limits'), 200)).toEqual(set);
  expect(
    await json(await admin('PUT', '/admin/tenants/hooli/limits', { maxActiveJobs: null }), 200),
  ).toMatchObject({ tenant: 'hooli', maxActiveJobs: null });
});

it('answers 400 naming the field for bad bodies, queries and ids, 415 and 404 where due', async () => {
  const bad: [string, string, unknown, string][] = [
    ['POST', '/admin/keys', {}, 'tenant'],
    ['POST', '/admin/keys', { tenant: 'no spaces' }, 'tenant'],
    ['POST', '/admin/keys', { tenant: 'x'.repeat(65) }, 'tenant'],
    ['POST', '/admin/keys', { tenant: 'acme', name: 'n'.repeat(129) }, 'name'],
    ['POST', '/admin/keys', { tenant: 'acme', name: '' }, 'name'],
    ['POST', '/admin/keys', { tenant: 'acme', admin: true }, 'admin'],
    ['POST', '/admin/keys', { tenant: 'acme', limits: { rpm: 5 } }, 'limits.rpm'],
    [
      'POST',
      '/admin/keys',
      { tenant: 'acme', limits: { requestsPerMinute: -1 } },
      'limits.requestsPerMinute',
    ],
    ['POST', '/admin/keys', { tenant: 'acme', limits: { requestBurst: 1.5 } }, 'limits.requestBurst'],
    ['POST', '/admin/keys', { tenant: 'acme', limits: { tokensPerMinute: 1e12 } }, 'limits.tokensPerMinute'],
    ['POST', '/admin/keys', { tenant: 'acme', limits: { tokenBurst: '5' } }, 'limits.tokenBurst'],
    [
      'POST',
      '/admin/keys',
      { tenant: 'acme', limits: { dailyBudgetUsd: 0.0000001 } },
      'limits.dailyBudgetUsd',
    ],
    ['POST', '/admin/keys', { tenant: 'acme', limits: { monthlyBudgetUsd: -1 } }, 'limits.monthlyBudgetUsd'],
    ['POST', '/admin/keys', { tenant: 'acme', limits: [] }, 'limits'],
    ['POST', '/admin/keys', [], '(body)'],
    ['PATCH', `/admin/keys/${randomUUID()}`, { tenant: 'other' }, 'tenant'],
    ['PATCH', `/admin/keys/${randomUUID()}`, { limits: { dailyBudgetUsd: 1e9 } }, 'limits.dailyBudgetUsd'],
    ['PATCH', '/admin/keys/not-a-uuid', { name: 'x' }, 'id'],
    ['GET', '/admin/keys/not-a-uuid', undefined, 'id'],
    ['DELETE', '/admin/keys/42', undefined, 'id'],
    ['GET', '/admin/keys?limit=0', undefined, 'limit'],
    ['GET', '/admin/keys?limit=501', undefined, 'limit'],
    ['GET', '/admin/keys?limit=ten', undefined, 'limit'],
    ['GET', '/admin/keys?after=nope', undefined, 'after'],
    ['GET', '/admin/keys?tenant=a%20b', undefined, 'tenant'],
    ['GET', '/admin/keys?tenant=a&tenant=b', undefined, 'tenant'],
    ['GET', '/admin/keys?includeRevoked=maybe', undefined, 'includeRevoked'],
    ['GET', '/admin/keys?tenantt=acme', undefined, 'tenantt'],
    ['PUT', '/admin/tenants/acme/limits', {}, 'maxActiveJobs'],
    ['PUT', '/admin/tenants/acme/limits', { maxActiveJobs: -1 }, 'maxActiveJobs'],
    ['PUT', '/admin/tenants/acme/limits', { maxActiveJobs: 1, extra: 1 }, 'extra'],
    ['PUT', '/admin/tenants/a%20b/limits', { maxActiveJobs: 1 }, 'tenant'],
    ['GET', '/admin/tenants/a%20b/limits', undefined, 'tenant'],
  ];
  for (const [method, path, body, field] of bad) {
    const res = await admin(method, path, body);
    const problem = await expectProblem(res, 400, 'invalid_request').catch((error: Error) => {
      throw new Error(`${method} ${path} ${JSON.stringify(body)}: ${error.message}`);
    });
    expect({ method, path, field: problem.field }).toEqual({ method, path, field });
  }
  await expectProblem(await admin('POST', '/admin/keys', '{"tenant":'), 400, 'malformed_json');
  const form = await fetch(`${stack.apiUrl}/admin/keys`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/x-www-form-urlencoded' },
    body: 'tenant=acme',
  });
  await expectProblem(form, 415, 'unsupported_media_type');
  const big = await admin('POST', '/admin/keys', { tenant: 'acme', name: 'x'.repeat(20_000) });
  await expectProblem(big, 413, 'body_too_large');

  const unknown = randomUUID();
  await expectProblem(await admin('GET', `/admin/keys/${unknown}`), 404, 'not_found');
  await expectProblem(await admin('PATCH', `/admin/keys/${unknown}`, { name: 'x' }), 404, 'not_found');
  await expectProblem(await admin('DELETE', `/admin/keys/${unknown}`), 404, 'not_found');

  // None of the refused requests created a key.
  const { rows } = await stack.pool.query(`SELECT count(*)::int AS n FROM api_keys WHERE tenant_id = 'acme'`);
  expect(rows[0].n).toBe(2); // the fixture's key and the one revoked above
});

it('keeps the cache purge route behind the same guard', async () => {
  await expectProblem(
    await admin('DELETE', '/admin/cache?tenant=acme', undefined, null),
    401,
    'unauthorized',
  );
  expect((await admin('DELETE', '/admin/cache?tenant=acme')).status).toBe(200);
});

// Last: it stops Redis for a while.
it('a revocation while Redis is down holds in Postgres, answers 503, and a retry writes the marker', async () => {
  const { key, apiKey } = await createKey({ tenant: 'acme', name: 'revoked during an outage' });
  await stack.redis.stop();
  try {
    const res = await admin('DELETE', `/admin/keys/${apiKey.id}`);
    await expectProblem(res, 503, 'service_unavailable');
    expect(res.headers.get('retry-after')).toBe('1');
    const { rows } = await stack.pool.query('SELECT revoked_at FROM api_keys WHERE id = $1', [apiKey.id]);
    expect(rows[0].revoked_at).toBeInstanceOf(Date);
  } finally {
    await stack.restartRedis();
  }
  const again = await eventually(async () => {
    const res = await admin('DELETE', `/admin/keys/${apiKey.id}`);
    return res.status === 200 ? ((await res.json()) as KeyView) : undefined;
  }, 'the retried revocation went through once Redis was back');
  expect(again.revokedAt).not.toBeNull();
  const redis = new Redis(stack.redisUrl);
  try {
    expect(await redis.exists(limiterKeys.revoked('llmq', 'acme', apiKey.id))).toBe(1);
  } finally {
    await redis.quit();
  }
  await expectProblem(await stack.request(`/api/jobs/${randomUUID()}`, key), 401, 'unauthorized');
});
