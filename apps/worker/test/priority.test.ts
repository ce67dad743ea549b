/**
 * Priority tiers: interactive and batch jobs wait in separate BullMQ queues, and each worker
 * process gives each queue it consumes slots of its own, so interactive work never waits behind
 * batch work. Real processes throughout; assertions are on counts and states, not on timings.
 */
import { randomUUID } from 'node:crypto';
import { parseEnv } from '@llmq/config';
import type { Priority } from '@llmq/contracts';
import { JobRepository } from '@llmq/db';
import { Producer } from '@llmq/queue';
import { eventually, useStack, type TestStack } from '@llmq/testing';
import { Redis } from 'ioredis';
import { workerEnvSchema } from '../src/config';

jest.setTimeout(180_000);

/** Jobs of `ids` per status, from Postgres (the record). */
async function statusCounts(stack: TestStack, ids: string[]): Promise<Record<string, number>> {
  const { rows } = await stack.pool.query<{ status: string; n: number }>(
    'SELECT status, count(*)::int AS n FROM jobs WHERE id = ANY($1::uuid[]) GROUP BY status',
    [ids],
  );
  return Object.fromEntries(rows.map((r) => [r.status, r.n]));
}

async function row(stack: TestStack, id: string): Promise<{ status: string; attempts: number }> {
  const { rows } = await stack.pool.query<{ status: string; attempts: number }>(
    'SELECT status, attempts FROM jobs WHERE id = $1',
    [id],
  );
  return rows[0]!;
}

/** The ids of the jobs a worker started, from its log (LOG_LEVEL=info). */
function startedBy(worker: TestStack['workers'][number]): string[] {
  return worker
    .output()
    .split('\n')
    .filter((line) => line.includes('attempt started'))
    .map((line) => (JSON.parse(line) as { jobId: string }).jobId);
}

function producerFor(stack: TestStack): { producer: Producer; close: () => Promise<void> } {
  const connection = new Redis(stack.redisUrl, { maxRetriesPerRequest: null });
  const producer = new Producer({ connection, prefix: 'llmq' });
  return {
    producer,
    close: async () => {
      await producer.close();
      connection.disconnect();
    },
  };
}

describe('WORKER_QUEUES and concurrency settings', () => {
  const base = {
    REDIS_URL: 'redis://127.0.0.1:6379',
    DATABASE_URL: 'postgres://127.0.0.1/db',
    PROVIDERS_FILE: 'providers.yaml',
  };
  const parse = (env: Record<string, string>) => parseEnv(workerEnvSchema, { ...base, ...env });

  it('consumes both queues by default, each with its own concurrency', () => {
    expect(parse({})).toMatchObject({
      WORKER_QUEUES: ['interactive', 'batch'],
      WORKER_CONCURRENCY: 16,
      WORKER_BATCH_CONCURRENCY: 4,
    });
  });

  it('reads a comma list in any order, with blanks and repeats', () => {
    expect(parse({ WORKER_QUEUES: 'batch' }).WORKER_QUEUES).toEqual(['batch']);
    expect(parse({ WORKER_QUEUES: ' batch, interactive ,batch,' }).WORKER_QUEUES).toEqual([
      'interactive',
      'batch',
    ]);
  });

  it('rejects unknown queues, an empty list and zero batch slots, naming the variable', () => {
    expect(() => parse({ WORKER_QUEUES: 'interactive,urgent' })).toThrow(
      /WORKER_QUEUES: unknown queue "urgent"/,
    );
    expect(() => parse({ WORKER_QUEUES: ' , ' })).toThrow(/WORKER_QUEUES/);
    expect(() => parse({ WORKER_BATCH_CONCURRENCY: '0' })).toThrow(/WORKER_BATCH_CONCURRENCY/);
  });
});

describe('interactive work beside a batch backlog', () => {
  const BATCH_JOBS = 1000;
  const { stack, keys } = useStack({
    workers: 1,
    // A batch job takes about a second upstream, and two run at once: the backlog lasts minutes.
    simulatorEnv: { SIM_TTFT_MS: '20', SIM_TOKEN_MS: '20', SIM_JITTER: '0' },
    workerEnv: { WORKER_CONCURRENCY: '2', WORKER_BATCH_CONCURRENCY: '2', LOG_LEVEL: 'info' },
    // A thousand submits in a burst must not be refused by the request or active-job limits (0: none).
    apiEnv: { RATE_LIMIT_REQUESTS_PER_MINUTE: '0', TENANT_MAX_ACTIVE_JOBS: '0' },
  });
  let key: string;
  const batchIds: string[] = [];

  beforeAll(() => {
    key = keys.acme!;
  });

  async function submit(body: object): Promise<string> {
    const { res, body: answer } = await stack.submit(key, body);
    expect(res.status).toBe(202);
    return answer.jobId;
  }

  it('an interactive job starts before 1,000 queued batch jobs drain', async () => {
    let next = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (next < BATCH_JOBS) {
          const i = next++;
          batchIds.push(await submit({ prompt: `batch ${i}`, max_tokens: 50, priority: 'batch' }));
        }
      }),
    );
    expect(batchIds).toHaveLength(BATCH_JOBS);
    const view = (await (await stack.request(`/api/jobs/${batchIds[0]!}`, key)).json()) as object;
    expect(view).toMatchObject({ priority: 'batch' });

    const interactive = await submit({ prompt: 'a person is waiting', max_tokens: 4 });
    const done = await stack.waitForJob(key, interactive, ['completed'], 30_000);
    expect(done).toMatchObject({ priority: 'interactive', attempts: 1 });

    // The backlog is still there: hundreds of batch jobs have not even started.
    const counts = await statusCounts(stack, batchIds);
    expect(counts.queued ?? 0).toBeGreaterThan(500);
    const { producer, close } = producerFor(stack);
    try {
      expect(await producer.queueFor('batch').getWaitingCount()).toBeGreaterThan(500);
      expect(await producer.queueFor('interactive').getWaitingCount()).toBe(0);
    } finally {
      await close();
    }
  });

  it('a worker with WORKER_QUEUES=batch never takes interactive jobs, and one with interactive never takes batch', async () => {
    await stack.workers[0]!.stop('SIGTERM', 30_000);
    const batchOnly = await stack.startWorker({ WORKER_QUEUES: 'batch' });
    const interactive = await submit({ prompt: 'nobody serves me yet', max_tokens: 4 });

    // The batch worker is busy, and keeps finishing batch jobs, while the interactive job waits.
    const before = (await statusCounts(stack, batchIds)).completed ?? 0;
    await eventually(
      async () => ((await statusCounts(stack, batchIds)).completed ?? 0) >= before + 6,
      'the batch-only worker completed batch jobs',
      60_000,
    );
    expect(await row(stack, interactive)).toEqual({ status: 'queued', attempts: 0 });
    expect(startedBy(batchOnly)).not.toContain(interactive);

    const interactiveOnly = await stack.startWorker({ WORKER_QUEUES: 'interactive' });
    await stack.waitForJob(key, interactive, ['completed'], 30_000);
    // Give the idle interactive worker the chance to (wrongly) take batch jobs while batch work remains.
    const later = (await statusCounts(stack, batchIds)).completed ?? 0;
    await eventually(
      async () => ((await statusCounts(stack, batchIds)).completed ?? 0) >= later + 4,
      'more batch jobs completed',
      60_000,
    );
    expect(startedBy(interactiveOnly)).toEqual([interactive]);
    expect((await statusCounts(stack, batchIds)).queued ?? 0).toBeGreaterThan(0);
  });
});

describe('queue routing and the reconciler', () => {
  const { stack } = useStack({
    workers: 0,
    simulatorEnv: { SIM_TTFT_MS: '5', SIM_TOKEN_MS: '1', SIM_JITTER: '0' },
  });

  /** A job row as the API records it, but never enqueued: what Redis losing a job leaves behind. */
  async function record(priority?: Priority): Promise<string> {
    const id = randomUUID();
    await new JobRepository(stack.pool).insert({
      id,
      tenantId: 'acme',
      apiKeyId: null,
      spec: {
        model: 'sim-small',
        messages: [{ role: 'user', content: `lost ${id}` }],
        params: { max_tokens: 4 },
      },
      requestHash: id,
      idempotencyKey: null,
      metadata: null,
      ...(priority ? { priority } : {}),
    });
    return id;
  }

  it('the producer puts a job in the queue of its priority; no priority means interactive', async () => {
    const plain = await record();
    const batch = await record('batch');
    const { producer, close } = producerFor(stack);
    try {
      const spec = { model: 'sim-small', messages: [{ role: 'user' as const, content: 'x' }], params: {} };
      await producer.enqueue('generate', plain, { jobId: plain, tenantId: 'acme', spec });
      await producer.enqueue('generate', batch, { jobId: batch, tenantId: 'acme', spec, priority: 'batch' });
      expect(producer.queueFor('interactive').name).toBe('generate');
      expect(producer.queueFor('batch').name).toBe('generate-batch');
      expect(await producer.queueFor('interactive').getJobState(plain)).toBe('waiting');
      expect(await producer.queueFor('batch').getJob(plain)).toBeUndefined();
      expect(await producer.queueFor('batch').getJobState(batch)).toBe('waiting');
      expect(await producer.queueFor('interactive').getJob(batch)).toBeUndefined();
      expect((await producer.queueFor('batch').getJob(batch))?.data).toMatchObject({ priority: 'batch' });
    } finally {
      await close();
    }
  });

  it('the reconciler re-enqueues a lost batch job to the batch queue, and a lost interactive one to its own', async () => {
    const lostBatch = await record('batch');
    const lostInteractive = await record('interactive');
    const { rows } = await stack.pool.query<{ id: string; priority: string }>(
      'SELECT id, priority FROM jobs WHERE id = ANY($1::uuid[]) ORDER BY priority',
      [[lostBatch, lostInteractive]],
    );
    expect(rows.map((r) => r.priority)).toEqual(['batch', 'interactive']);

    // Only the batch queue is consumed: the batch job can complete only if it was put there.
    await stack.startWorker({ WORKER_QUEUES: 'batch' });
    await eventually(
      async () => (await row(stack, lostBatch)).status === 'completed',
      'the lost batch job was re-enqueued and completed',
      30_000,
    );
    const { producer, close } = producerFor(stack);
    try {
      // The row is written before the processor returns: BullMQ says `completed` a moment later.
      await eventually(
        async () => (await producer.queueFor('batch').getJobState(lostBatch)) === 'completed',
        'BullMQ finished the re-enqueued batch job in the batch queue',
      );
      expect(await producer.queueFor('interactive').getJob(lostBatch)).toBeUndefined();
      await eventually(
        async () => (await producer.queueFor('interactive').getJobState(lostInteractive)) === 'waiting',
        'the lost interactive job was re-enqueued to the interactive queue',
      );
      expect(await producer.queueFor('batch').getJob(lostInteractive)).toBeUndefined();
      expect(await row(stack, lostInteractive)).toEqual({ status: 'queued', attempts: 0 });
    } finally {
      await close();
    }
  });
});
