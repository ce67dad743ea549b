/** API keys with their limits and budgets, and tenant limits, against real Postgres (PGlite). */
import { randomUUID } from 'node:crypto';
import { ApiKeyRepository, createPool, migrate, type KeyLimits, type Pool } from '@llmq/db';
import { freePort, startPgliteServer } from '@llmq/embedded';

let server: Awaited<ReturnType<typeof startPgliteServer>>;
let pool: Pool;
let keys: ApiKeyRepository;

beforeAll(async () => {
  server = await startPgliteServer({ dataDir: 'memory', port: await freePort() });
  pool = createPool({ connectionString: server.url, max: 4 });
  await migrate(pool);
  keys = new ApiKeyRepository(pool);
}, 60_000);
afterAll(async () => {
  await pool.end();
  await server.stop();
});

const DEFAULTS: KeyLimits = {
  requestsPerMinute: null,
  requestBurst: null,
  tokensPerMinute: null,
  tokenBurst: null,
  dailyBudgetUsd: null,
  monthlyBudgetUsd: null,
};

it('creates a key with its own limits and budgets; unset ones take the default', async () => {
  const { key, record } = await keys.create('lim-acme', 'ci', {
    requestsPerMinute: 120,
    tokenBurst: 0,
    dailyBudgetUsd: 12.345678,
    monthlyBudgetUsd: 100,
  });
  const expected = {
    ...DEFAULTS,
    requestsPerMinute: 120,
    tokenBurst: 0,
    dailyBudgetUsd: 12.345678,
    monthlyBudgetUsd: 100,
  };
  expect(record).toMatchObject({ tenantId: 'lim-acme', name: 'ci', revokedAt: null, limits: expected });
  expect(record.tenantMaxActiveJobs).toBeNull();
  // Budgets come back as numbers, not pg's numeric strings.
  expect(typeof record.limits.dailyBudgetUsd).toBe('number');
  expect(await keys.findActive(key)).toEqual(record);
  expect(await keys.get(record.id)).toEqual(record);

  // The old signatures still work.
  expect((await keys.create('lim-acme')).record).toMatchObject({ name: null, limits: DEFAULTS });
  expect((await keys.create('lim-acme', 'second')).record.name).toBe('second');
});

it('findActive carries the tenant limits (one join) and excludes revoked keys', async () => {
  const { key, record } = await keys.create('lim-tenant');
  expect(await keys.getTenantLimits('lim-tenant')).toEqual({
    tenantId: 'lim-tenant',
    maxActiveJobs: null,
    updatedAt: null,
  });
  const set = await keys.setTenantLimits('lim-tenant', { maxActiveJobs: 7 });
  expect(set).toMatchObject({ tenantId: 'lim-tenant', maxActiveJobs: 7 });
  expect(set.updatedAt).toBeInstanceOf(Date);
  expect(await keys.getTenantLimits('lim-tenant')).toEqual(set);
  expect((await keys.findActive(key))?.tenantMaxActiveJobs).toBe(7);
  expect((await keys.get(record.id))?.tenantMaxActiveJobs).toBe(7);

  await keys.setTenantLimits('lim-tenant', { maxActiveJobs: null });
  expect((await keys.findActive(key))?.tenantMaxActiveJobs).toBeNull();
  await keys.setTenantLimits('lim-tenant', { maxActiveJobs: 0 });
  expect((await keys.findActive(key))?.tenantMaxActiveJobs).toBe(0);

  await keys.revoke(record.id);
  expect(await keys.findActive(key)).toBeNull();
  expect((await keys.get(record.id))?.tenantMaxActiveJobs).toBe(0);
});

it('updates limits field by field; null goes back to the default', async () => {
  const { record } = await keys.create('lim-upd', 'before', { requestsPerMinute: 10, dailyBudgetUsd: 5 });
  const a = await keys.updateLimits(record.id, { tokensPerMinute: 5000, dailyBudgetUsd: 0.000001 });
  expect(a?.limits).toEqual({
    ...DEFAULTS,
    requestsPerMinute: 10,
    tokensPerMinute: 5000,
    dailyBudgetUsd: 0.000001,
  });
  const b = await keys.updateLimits(record.id, { requestsPerMinute: null });
  expect(b?.limits).toEqual({ ...DEFAULTS, tokensPerMinute: 5000, dailyBudgetUsd: 0.000001 });
  const c = await keys.update(record.id, { name: 'after', limits: { monthlyBudgetUsd: 9_999_999.999999 } });
  expect(c).toMatchObject({
    name: 'after',
    limits: { monthlyBudgetUsd: 9_999_999.999999, tokensPerMinute: 5000 },
  });
  expect((await keys.update(record.id, { name: null }))?.name).toBeNull();
  // An empty patch changes nothing and still answers the record.
  expect(await keys.updateLimits(record.id, {})).toEqual(await keys.get(record.id));
  expect(await keys.updateLimits(randomUUID(), { requestBurst: 1 })).toBeNull();
});

it('revokes idempotently, keeping the first revocation time', async () => {
  const { key, record } = await keys.create('lim-rev');
  const first = await keys.revoke(record.id);
  expect(first?.revokedAt).toBeInstanceOf(Date);
  await new Promise((r) => setTimeout(r, 20));
  const second = await keys.revoke(record.id);
  expect(second?.revokedAt?.getTime()).toBe(first?.revokedAt?.getTime());
  expect(await keys.findActive(key)).toBeNull();
  expect(await keys.revoke(randomUUID())).toBeNull();
  expect(await keys.get(randomUUID())).toBeNull();
});

it('lists keys in creation order, a page at a time, by tenant, with or without revoked ones', async () => {
  const created = [];
  for (let i = 0; i < 5; i++) created.push((await keys.create('lim-list', `k${i}`)).record);
  await keys.create('lim-other');
  await keys.revoke(created[1]!.id);

  const active = await keys.list({ tenantId: 'lim-list' });
  expect(active.map((k) => k.name)).toEqual(['k0', 'k2', 'k3', 'k4']);
  const all = await keys.list({ tenantId: 'lim-list', includeRevoked: true });
  expect(all.map((k) => k.name)).toEqual(['k0', 'k1', 'k2', 'k3', 'k4']);

  const pages: string[][] = [];
  let after: string | undefined;
  for (;;) {
    const page = await keys.list({ tenantId: 'lim-list', includeRevoked: true, limit: 2, after });
    if (page.length === 0) break;
    pages.push(page.map((k) => k.name!));
    after = page.at(-1)!.id;
  }
  expect(pages).toEqual([['k0', 'k1'], ['k2', 'k3'], ['k4']]);
  // A revoked key still works as a cursor for a list without revoked keys.
  expect((await keys.list({ tenantId: 'lim-list', after: created[1]!.id })).map((k) => k.name)).toEqual([
    'k2',
    'k3',
    'k4',
  ]);
  expect(await keys.list({ tenantId: 'lim-list', after: randomUUID() })).toEqual([]);

  const everyone = await keys.list({ includeRevoked: true, limit: 1000 });
  expect(everyone.map((k) => k.tenantId)).toEqual(expect.arrayContaining(['lim-list', 'lim-other']));
});

it('refuses bad input with a RangeError that says what is allowed', async () => {
  const { record } = await keys.create('lim-bad');
  const bad: [Partial<KeyLimits>, RegExp][] = [
    [{ requestsPerMinute: -1 }, /requestsPerMinute is a whole number from 0/],
    [{ requestBurst: 1.5 }, /requestBurst is a whole number/],
    [{ tokensPerMinute: 1e12 }, /tokensPerMinute is a whole number from 0 to 1000000000/],
    [{ tokenBurst: Number.NaN }, /tokenBurst/],
    [{ dailyBudgetUsd: 0.0000001 }, /dailyBudgetUsd is a USD amount .* at most 6 decimals/],
    [{ monthlyBudgetUsd: -5 }, /monthlyBudgetUsd is a USD amount/],
    [{ monthlyBudgetUsd: Number.POSITIVE_INFINITY }, /monthlyBudgetUsd/],
    [{ dailyBudgetUsd: 1e9 }, /dailyBudgetUsd/],
    [{ requestsPerMinute: '5' as unknown as number }, /requestsPerMinute/],
    [{ rpm: 5 } as unknown as Partial<KeyLimits>, /unknown limit "rpm"/],
  ];
  for (const [limits, message] of bad) {
    await expect(keys.create('lim-bad', null, limits)).rejects.toThrow(message);
    await expect(keys.updateLimits(record.id, limits)).rejects.toThrow(RangeError);
  }
  await expect(keys.create('no spaces')).rejects.toThrow(/tenant names are/);
  await expect(keys.create('lim-bad', 'x'.repeat(129))).rejects.toThrow(/key names are 1-128/);
  await expect(keys.create('lim-bad', 'tab\there')).rejects.toThrow(/control characters/);
  await expect(keys.get('not-a-uuid')).rejects.toThrow(/UUID/);
  await expect(keys.revoke('42')).rejects.toThrow(RangeError);
  await expect(keys.list({ limit: 0 })).rejects.toThrow(/limit is a whole number from 1 to 1000/);
  await expect(keys.list({ after: 'x' })).rejects.toThrow(/UUID/);
  await expect(keys.setTenantLimits('lim-bad', { maxActiveJobs: -1 })).rejects.toThrow(/maxActiveJobs/);
  await expect(keys.setTenantLimits('bad tenant', { maxActiveJobs: 1 })).rejects.toThrow(/tenant names/);
  // Nothing was written by the refused calls.
  expect((await keys.get(record.id))?.limits).toEqual(DEFAULTS);
  expect(await keys.list({ tenantId: 'lim-bad' })).toHaveLength(1);
});
