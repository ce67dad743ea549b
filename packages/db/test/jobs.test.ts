/** The job repository against real Postgres (PGlite + pgvector over the wire protocol). */
import { randomUUID } from 'node:crypto';
import {
  ApiKeyRepository,
  GroupCommitter,
  JobRepository,
  createPool,
  loadMigrations,
  migrate,
  type Pool,
} from '@llmq/db';
import { freePort, startPgliteServer } from '@llmq/embedded';
import type { Priority } from '@llmq/contracts';

let server: Awaited<ReturnType<typeof startPgliteServer>>;
let pool: Pool;
let jobs: JobRepository;

beforeAll(async () => {
  server = await startPgliteServer({ dataDir: 'memory', port: await freePort() });
  pool = createPool({ connectionString: server.url, max: 4 });
  // Every migration applies, in order, on a fresh database.
  const all = loadMigrations().map((m) => m.id);
  expect(all.slice(0, 3)).toEqual(['001_init', '002_job_cost', '003_cache']);
  expect(await migrate(pool)).toEqual(all);
  expect(await migrate(pool)).toEqual([]); // idempotent
  jobs = new JobRepository(pool);
}, 60_000);
afterAll(async () => {
  await pool.end();
  await server.stop();
});

const spec = { model: 'sim-small', messages: [{ role: 'user' as const, content: 'hi' }], params: {} };
const newJob = (
  extra: { idempotencyKey?: string; requestHash?: string; tenantId?: string; priority?: Priority } = {},
) => ({
  id: randomUUID(),
  tenantId: extra.tenantId ?? 't1',
  apiKeyId: null,
  spec,
  requestHash: extra.requestHash ?? 'h',
  idempotencyKey: extra.idempotencyKey ?? null,
  metadata: null,
  ...(extra.priority ? { priority: extra.priority } : {}),
});

describe('GroupCommitter', () => {
  it('writes items that arrive during a flush together, in order, and an idle one at once', async () => {
    const batches: number[][] = [];
    const gc = new GroupCommitter<number, number>(
      async (items) => {
        batches.push(items);
        await new Promise((r) => setTimeout(r, 20));
        return items.map((i) => i * 2);
      },
      100,
      1,
    );
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => gc.submit(i)));
    expect(results).toEqual([0, 2, 4, 6, 8, 10, 12, 14, 16, 18]);
    expect(batches).toEqual([[0], [1, 2, 3, 4, 5, 6, 7, 8, 9]]);
  });

  it('rejects every item of a failed batch', async () => {
    const gc = new GroupCommitter<number, number>(async () => {
      throw new Error('boom');
    });
    await expect(Promise.all([gc.submit(1), gc.submit(2)])).rejects.toThrow('boom');
  });
});

describe('JobRepository', () => {
  it('group-commits concurrent inserts and finds each job only for its tenant', async () => {
    const many = Array.from({ length: 50 }, () => newJob());
    const outcomes = await Promise.all(many.map((j) => jobs.insert(j)));
    expect(outcomes.every((o) => o.created)).toBe(true);
    const job = await jobs.getForTenant(many[7]!.id, 't1');
    expect(job).toMatchObject({ id: many[7]!.id, status: 'queued', attempts: 0, spec });
    expect(await jobs.getForTenant(many[7]!.id, 't2')).toBeNull();
  });

  it('returns the existing job for a reused idempotency key, within one batch too', async () => {
    const a = newJob({ idempotencyKey: 'k1', requestHash: 'A' });
    const b = newJob({ idempotencyKey: 'k1', requestHash: 'B' });
    const [ra, rb] = await Promise.all([jobs.insert(a), jobs.insert(b)]);
    const winner = ra.created ? a : b;
    const loser = ra.created ? rb : ra;
    expect(loser).toEqual({
      created: false,
      existing: { id: winner.id, requestHash: winner.requestHash, status: 'queued' },
    });
    // Same key, other tenant: no conflict.
    expect(await jobs.insert(newJob({ idempotencyKey: 'k1', tenantId: 't2' }))).toEqual({ created: true });
  });

  it('stores one result however often a job completes, and nothing after a cancel', async () => {
    const j = newJob();
    await jobs.insert(j);
    expect(await jobs.startAttempt(j.id)).toEqual({ attempts: 1 });
    expect(await jobs.startAttempt(j.id)).toEqual({ attempts: 2 });
    const usage = { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 };
    expect(await jobs.complete(j.id, { result: 'first', finishReason: 'stop', usage })).toBe(true);
    expect(await jobs.complete(j.id, { result: 'second', finishReason: 'stop', usage })).toBe(false);
    expect(await jobs.fail(j.id, { code: 'x', message: 'late' })).toBe(false);
    expect(await jobs.get(j.id)).toMatchObject({ status: 'completed', result: 'first', usage, error: null });
    expect(await jobs.startAttempt(j.id)).toBeNull();

    const c = newJob();
    await jobs.insert(c);
    expect(await jobs.cancel(c.id, 't2')).toBeNull(); // not the owner
    expect(await jobs.cancel(c.id, 't1')).toBe('queued');
    expect(await jobs.cancel(c.id, 't1')).toBeNull();
    expect(await jobs.complete(c.id, { result: 'late', finishReason: null, usage: null })).toBe(false);
    expect(await jobs.get(c.id)).toMatchObject({ status: 'cancelled', result: null });
  });

  it('lists unfinished jobs of a tier older than a cut-off for the reconciler', async () => {
    const j = newJob({ tenantId: 'recon' });
    const b = newJob({ tenantId: 'recon', priority: 'batch' });
    await Promise.all([jobs.insert(j), jobs.insert(b)]);
    const future = new Date(Date.now() + 60_000);
    const interactive = (await jobs.findUnfinished(future, 10_000, 'interactive')).map((f) => f.id);
    const batch = (await jobs.findUnfinished(future, 10_000, 'batch')).map((f) => f.id);
    expect(interactive).toContain(j.id);
    expect(interactive).not.toContain(b.id);
    expect(batch).toContain(b.id);
    expect(batch).not.toContain(j.id);
    expect((await jobs.findUnfinished(new Date(0), 10, 'interactive')).length).toBe(0);
  });
});

describe('ApiKeyRepository', () => {
  it('stores only a hash and finds active keys', async () => {
    const keys = new ApiKeyRepository(pool);
    const { key, record } = await keys.create('acme', 'ci');
    expect(key).toMatch(/^llmq_[A-Za-z0-9_-]{32}$/);
    expect((await keys.findActive(key))?.id).toBe(record.id);
    const { rows } = await pool.query('SELECT * FROM api_keys WHERE id = $1', [record.id]);
    expect(JSON.stringify(rows)).not.toContain(key);
    expect(await keys.findActive(key.slice(0, -1) + (key.endsWith('A') ? 'B' : 'A'))).toBeNull();
    await pool.query('UPDATE api_keys SET revoked_at = now() WHERE id = $1', [record.id]);
    expect(await keys.findActive(key)).toBeNull();
  });
});
