/**
 * OpenAI Files and Batches through the official `openai` SDK, against real processes: the API,
 * a worker (control jobs, the batch tier, the finalizing sweep), Redis, Postgres and the
 * simulator. The simulator's text is deterministic for (model, messages, seed), so asking it
 * directly gives the answer each line must have.
 */
import { ApiKeyRepository } from '@llmq/db';
import { Producer, Redis } from '@llmq/queue';
import { limiterKeys } from '@llmq/rate-limit';
import { defaultProviders, eventually, readSse, useStack, type PolledJob } from '@llmq/testing';
import { request as httpRequest } from 'node:http';
import OpenAI, { toFile } from 'openai';
import { failure } from './support/openai';

jest.setTimeout(180_000);

const UPLOAD_LIMIT = 64 * 1024;
const MAX_REQUESTS = 150;

const { stack, keys } = useStack(
  {
    workers: 1,
    apiEnv: { FILE_UPLOAD_MAX_BYTES: String(UPLOAD_LIMIT) },
    workerEnv: {
      WORKER_BATCH_CONCURRENCY: '4',
      BATCH_MAX_REQUESTS: String(MAX_REQUESTS),
      BATCH_SWEEP_INTERVAL_MS: '200',
      // The cancel test makes requests hang until their first-token timeout: those must be
      // retried (not failed, not refused by an opened breaker) once the simulator answers again.
      LLM_ATTEMPTS_PER_MODEL: '5',
      BREAKER_MIN_REQUESTS: '1000',
    },
    providers: (urls) => {
      const doc = defaultProviders(urls) as { backends: { timeouts: { firstTokenMs: number } }[] };
      for (const backend of doc.backends) backend.timeouts.firstTokenMs = 3000;
      return doc;
    },
  },
  ['acme', 'globex', 'initech'],
);

const llmq = (apiKey = keys.acme!) => new OpenAI({ apiKey, baseURL: `${stack.apiUrl}/v1`, maxRetries: 0 });
const upstream = () => new OpenAI({ apiKey: 'unused', baseURL: `${stack.simulatorUrl}/v1`, maxRetries: 0 });

type Batch = OpenAI.Batches.Batch;

interface InputLine {
  custom_id: string;
  method: string;
  url: string;
  body: { model: string; messages: { role: 'user'; content: string }[]; max_tokens: number; seed: number };
}

const chatLine = (i: number, model = 'sim-small'): InputLine => ({
  custom_id: `request-${i}`,
  method: 'POST',
  url: '/v1/chat/completions',
  body: {
    model,
    messages: [{ role: 'user', content: `Question number ${i}` }],
    max_tokens: 4 + (i % 5),
    seed: i,
  },
});
const jsonl = (lines: unknown[]) =>
  `${lines.map((l) => (typeof l === 'string' ? l : JSON.stringify(l))).join('\n')}\n`;

const upload = async (client: OpenAI, text: string, name = 'input.jsonl') =>
  client.files.create({ file: await toFile(Buffer.from(text), name), purpose: 'batch' });

const createBatch = (client: OpenAI, inputFileId: string) =>
  client.batches.create({
    input_file_id: inputFileId,
    endpoint: '/v1/chat/completions',
    completion_window: '24h',
    metadata: { purpose: 'test' },
  });

function waitForBatch(
  client: OpenAI,
  id: string,
  statuses: Batch['status'][],
  timeoutMs = 90_000,
): Promise<Batch> {
  let last: Batch | undefined;
  return eventually(
    async () => {
      last = await client.batches.retrieve(id);
      return statuses.includes(last.status) ? last : undefined;
    },
    () => `batch ${id} reached ${statuses.join(' or ')} (last: ${JSON.stringify(last)})`,
    timeoutMs,
  );
}

interface OutputLine {
  id: string;
  custom_id: string;
  response: { status_code: number; request_id: string; body: OpenAI.Chat.ChatCompletion } | null;
  error: { code: string; message: string } | null;
}

async function readJsonl(client: OpenAI, fileId: string): Promise<OutputLine[]> {
  const text = await (await client.files.content(fileId)).text();
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as OutputLine);
}

const poll = async (jobId: string, key: string) =>
  (await (await stack.request(`/api/jobs/${jobId}`, key)).json()) as PolledJob & { priority: string };

/** Jobs of a batch per status, from Postgres (the record). */
async function jobStatuses(batchId: string): Promise<Record<string, string[]>> {
  const { rows } = await stack.pool.query<{ status: string; custom_id: string }>(
    `SELECT j.status, r.custom_id FROM batch_requests r JOIN jobs j ON j.id = r.job_id WHERE r.batch_id = $1`,
    [batchId],
  );
  const by: Record<string, string[]> = {};
  for (const r of rows) (by[r.status] ??= []).push(r.custom_id);
  return by;
}

/** The job ids of a batch's requests, by custom_id. */
async function jobIds(batchId: string): Promise<Map<string, string>> {
  const { rows } = await stack.pool.query<{ custom_id: string; job_id: string }>(
    'SELECT custom_id, job_id FROM batch_requests WHERE batch_id = $1',
    [batchId],
  );
  return new Map(rows.map((r) => [r.custom_id, r.job_id]));
}

/** A job's stream ends with `cancelled`: live (a follower is let go) and as stored in Postgres. */
async function expectCancelledStream(jobId: string, key = keys.acme!): Promise<void> {
  const sse = await readSse(`${stack.apiUrl}/api/jobs/${jobId}/stream`, {
    headers: { authorization: `Bearer ${key}` },
    timeoutMs: 15_000,
  });
  expect([sse.ended, sse.events.at(-1)?.event]).toEqual([true, 'cancelled']);
  const { rows } = await stack.pool.query<{ events: { type: string }[] | null }>(
    'SELECT events FROM jobs WHERE id = $1',
    [jobId],
  );
  expect(rows[0]!.events?.at(-1)?.type).toBe('cancelled');
}

/** BullMQ's view of the generate queues: which tier holds a job; pausing a tier. */
async function withQueues(use: (bull: Producer, redis: Redis) => Promise<void>): Promise<void> {
  const redis = new Redis(stack.redisUrl, { maxRetriesPerRequest: null });
  const bull = new Producer({ connection: redis, prefix: 'llmq' });
  try {
    await use(bull, redis);
  } finally {
    await bull.close();
    redis.disconnect();
  }
}

describe('a batch of chat completions', () => {
  it('runs 100 requests as jobs of the batch tier and writes every answer once, in input order', () =>
    withQueues(async (bull, redis) => {
      const key = keys.initech!;
      const client = llmq(key);
      // Two active jobs at most for this tenant: the batch's 100 queued jobs must not count.
      await new ApiKeyRepository(stack.pool).setTenantLimits('initech', { maxActiveJobs: 2 });
      const lines = Array.from({ length: 100 }, (_, i) => chatLine(i + 1));
      const file = await upload(client, jsonl(lines));
      expect(file).toMatchObject({
        object: 'file',
        purpose: 'batch',
        filename: 'input.jsonl',
        status: 'processed',
      });
      expect(file.id).toMatch(/^file-[0-9a-f]{32}$/);
      expect(file.bytes).toBe(Buffer.byteLength(jsonl(lines)));

      // Both tiers are paused while the batch is expanded: its 100 jobs wait in the queue, and so
      // do the interactive jobs of the same tenant, which must find their two active slots free.
      const tiers = [bull.queueFor('batch'), bull.queueFor('interactive')];
      await Promise.all(tiers.map((q) => q.pause()));
      let batch: Batch;
      try {
        batch = await createBatch(client, file.id);
        expect(batch).toMatchObject({
          object: 'batch',
          status: 'validating',
          endpoint: '/v1/chat/completions',
          input_file_id: file.id,
          completion_window: '24h',
          output_file_id: null,
          metadata: { purpose: 'test' },
          request_counts: { total: 0, completed: 0, failed: 0 },
        });
        expect(batch.id).toMatch(/^batch_[0-9a-f]{32}$/);
        expect(batch.expires_at! - batch.created_at).toBe(24 * 3600);

        const running = await waitForBatch(client, batch.id, ['in_progress']);
        expect(running.request_counts).toEqual({ total: 100, completed: 0, failed: 0 });
        expect(running.in_progress_at).not.toBeNull();
        const submit = (prompt: string) =>
          stack
            .submit(key, { model: 'sim-large', prompt, max_tokens: 3 })
            .then(({ res, body }) => [res.status, body.code]);
        expect(await submit('first')).toEqual([202, undefined]);
        expect(await submit('second')).toEqual([202, undefined]);
        expect(await submit('third')).toEqual([429, 'too_many_active_jobs']);
        expect(await redis.zcard(limiterKeys.active('llmq', 'initech'))).toBe(2);
      } finally {
        await Promise.all(tiers.map((q) => q.resume()));
      }

      const done = await waitForBatch(client, batch.id, ['completed', 'failed', 'cancelled', 'expired']);
      expect(done.status).toBe('completed');
      expect(done.request_counts).toEqual({ total: 100, completed: 100, failed: 0 });
      expect(done.error_file_id).toBeNull();
      expect(done.errors).toBeNull();
      for (const stamp of ['in_progress_at', 'finalizing_at', 'completed_at'] as const) {
        expect(done[stamp]).toEqual(expect.any(Number));
      }
      expect(done.failed_at).toBeNull();
      expect(done.cancelled_at).toBeNull();

      const output = await readJsonl(client, done.output_file_id!);
      expect(output.map((o) => o.custom_id)).toEqual(lines.map((l) => l.custom_id));
      const expected = await Promise.all(lines.map((l) => upstream().chat.completions.create(l.body)));
      output.forEach((o, i) => {
        expect(o.error).toBeNull();
        expect(o.id).toMatch(/^batch_req_[0-9a-f]{32}$/);
        expect(o.response!.status_code).toBe(200);
        const body = o.response!.body;
        expect(body).toMatchObject({ object: 'chat.completion', model: 'sim-small' });
        expect(body.choices[0]!.message.content).toBe(expected[i]!.choices[0]!.message.content);
        expect(body.choices[0]!.finish_reason).toBe(expected[i]!.choices[0]!.finish_reason);
        expect(body.usage!.completion_tokens).toBe(expected[i]!.usage!.completion_tokens);
      });
      expect(new Set(output.map((o) => o.id)).size).toBe(100);

      const outputFile = await client.files.retrieve(done.output_file_id!);
      expect(outputFile).toMatchObject({ purpose: 'batch_output', object: 'file' });

      // Each request is a job of the batch tier, visible like any job, run from the batch queue.
      const jobIds = output.map((o) => o.response!.request_id);
      const polled = await Promise.all(jobIds.map((id) => poll(id, key)));
      expect(polled.map((j) => [j.status, j.priority])).toEqual(jobIds.map(() => ['completed', 'batch']));
      expect(polled.map((j) => j.result)).toEqual(
        output.map((o) => o.response!.body.choices[0]!.message.content),
      );
      const found = await Promise.all(jobIds.map((id) => bull.queueFor('batch').getJob(id)));
      expect(found.map((j) => j?.queueName)).toEqual(jobIds.map(() => 'generate-batch'));
      const interactive = await Promise.all(jobIds.map((id) => bull.queueFor('interactive').getJob(id)));
      expect(interactive.filter(Boolean)).toEqual([]);

      // Charged like any job: the key's usage holds the 100 requests and their tokens.
      const usage = (await (await stack.request('/api/usage', key)).json()) as {
        data: { model: string; jobs: number; completed: number; completionTokens: number; costUsd: number }[];
        spend: { todayUsd: number; thisMonthUsd: number };
      };
      const small = usage.data.find((r) => r.model === 'sim-small');
      expect(small).toMatchObject({ jobs: 100, completed: 100 });
      expect(small!.completionTokens).toBe(expected.reduce((n, e) => n + e.usage!.completion_tokens, 0));
      // The budgets see the batch's spend too (no line was admitted one by one, yet it all counts).
      expect(small!.costUsd).toBeGreaterThan(0);
      // Spend counts whole micro-dollars, each job's cost rounded up: at most 1 µUSD more a job.
      expect(usage.spend.todayUsd).toBeGreaterThanOrEqual(small!.costUsd);
      expect(usage.spend.todayUsd).toBeLessThanOrEqual(small!.costUsd + 100e-6);
      expect(usage.spend.thisMonthUsd).toBe(usage.spend.todayUsd);

      const listed = await client.batches.list();
      expect(listed.data[0]).toMatchObject({
        id: batch.id,
        status: 'completed',
        request_counts: { total: 100 },
      });
    }));
});

describe('an invalid input file', () => {
  const jobsOf = async (tenant: string) =>
    (
      await stack.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM jobs WHERE tenant_id = $1', [
        tenant,
      ])
    ).rows[0]!.n;

  it('fails the batch with the errors of each bad line, by line number, and creates no job', async () => {
    const client = llmq();
    const good = chatLine(1);
    const text = jsonl([
      good,
      '{"custom_id": "broken", "method": "POST"',
      { ...chatLine(2), custom_id: good.custom_id },
      { ...chatLine(3), url: '/v1/embeddings' },
      { ...chatLine(4), method: 'GET' },
      chatLine(5, 'no-such-model'),
      { ...chatLine(6), body: { model: 'sim-small' } },
      '',
      {
        ...chatLine(7),
        body: { ...chatLine(7).body, tools: [{ type: 'function', function: { name: 'f' } }] },
      },
      { method: 'POST', url: '/v1/chat/completions', body: chatLine(8).body },
    ]);
    const before = await jobsOf('acme');
    const batch = await createBatch(client, (await upload(client, text)).id);
    const failed = await waitForBatch(client, batch.id, ['failed', 'in_progress', 'completed']);
    expect(failed.status).toBe('failed');
    expect(failed.failed_at).toEqual(expect.any(Number));
    expect(failed.in_progress_at).toBeNull();
    expect(failed.errors!.object).toBe('list');
    expect(failed.errors!.data!.map((e) => ({ line: e.line, code: e.code, param: e.param }))).toEqual([
      { line: 2, code: 'invalid_json_line', param: null },
      { line: 3, code: 'duplicate_custom_id', param: 'custom_id' },
      { line: 4, code: 'invalid_url', param: 'url' },
      { line: 5, code: 'invalid_method', param: 'method' },
      { line: 6, code: 'model_not_found', param: 'body.model' },
      { line: 7, code: 'invalid_request', param: 'body.messages' },
      { line: 9, code: 'invalid_request', param: 'body.tools' },
      { line: 10, code: 'missing_required_parameter', param: 'custom_id' },
    ]);
    expect(failed.request_counts).toEqual({ total: 0, completed: 0, failed: 0 });
    expect(await jobsOf('acme')).toBe(before);
    const { rows } = await stack.pool.query('SELECT 1 FROM batch_requests WHERE batch_id = $1', [batch.id]);
    expect(rows).toEqual([]);
  });

  it(`fails a file of more than BATCH_MAX_REQUESTS (${MAX_REQUESTS}) requests`, async () => {
    const client = llmq();
    const text = jsonl(Array.from({ length: MAX_REQUESTS + 1 }, (_, i) => chatLine(i)));
    const batch = await createBatch(client, (await upload(client, text)).id);
    const failed = await waitForBatch(client, batch.id, ['failed', 'in_progress', 'completed']);
    expect(failed.status).toBe('failed');
    expect(failed.errors!.data).toEqual([
      expect.objectContaining({
        code: 'too_many_requests',
        line: null,
        message: expect.stringContaining(`${MAX_REQUESTS}`),
      }),
    ]);
  });

  it('refuses a batch of an endpoint llmq does not batch, before anything is recorded', async () => {
    const client = llmq();
    const file = await upload(client, jsonl([chatLine(1)]));
    const error = await failure(
      client.batches.create({ input_file_id: file.id, endpoint: '/v1/embeddings', completion_window: '24h' }),
    );
    expect(error.status).toBe(400);
    expect(error.error).toMatchObject({ type: 'invalid_request_error', param: 'endpoint' });
  });
});

describe('cancel', () => {
  it('cancels the queued requests; the running ones finish and their answers are the output', async () => {
    const client = llmq();
    const lines = Array.from({ length: 10 }, (_, i) => chatLine(100 + i));
    const setFault = (fault: string | null) =>
      fetch(`${stack.simulatorUrl}/admin/fault`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ fault }),
      });
    // Upstream calls hang: the 4 requests the worker's batch slots take stay running.
    await setFault('hang');
    let running: string[];
    let cancelling: Batch;
    let batch: Batch;
    try {
      batch = await createBatch(client, (await upload(client, jsonl(lines))).id);
      running = await eventually(async () => {
        const by = await jobStatuses(batch.id);
        return by.in_progress?.length === 4 && by.queued?.length === 6 ? by.in_progress : undefined;
      }, 'four requests running, six queued');
      cancelling = await client.batches.cancel(batch.id);
    } finally {
      await setFault(null);
    }
    expect(cancelling.status).toBe('cancelling');
    expect(cancelling.cancelling_at).toEqual(expect.any(Number));
    expect(cancelling.request_counts).toEqual({ total: 10, completed: 0, failed: 6 });

    const done = await waitForBatch(client, batch.id, ['cancelled', 'completed', 'failed', 'expired']);
    expect(done.status).toBe('cancelled');
    expect(done.cancelled_at).toEqual(expect.any(Number));
    expect(done.completed_at).toBeNull();
    expect(done.request_counts).toEqual({ total: 10, completed: 4, failed: 6 });

    const order = (ids: string[]) => lines.map((l) => l.custom_id).filter((id) => ids.includes(id));
    const output = await readJsonl(client, done.output_file_id!);
    expect(output.map((o) => o.custom_id)).toEqual(order(running));
    expect(output.every((o) => o.response?.body.object === 'chat.completion')).toBe(true);
    const errors = await readJsonl(client, done.error_file_id!);
    const notRun = lines.map((l) => l.custom_id).filter((id) => !running.includes(id));
    expect(errors.map((e) => e.custom_id)).toEqual(notRun);
    expect(errors.every((e) => e.response === null && e.error?.code === 'batch_cancelled')).toBe(true);
    const ids = await jobIds(batch.id);
    for (const customId of notRun) await expectCancelledStream(ids.get(customId)!);

    // The cancelled requests are cancelled jobs, charged nothing but in the ledger.
    const { rows } = await stack.pool.query<{ status: string; outcome: string | null }>(
      `SELECT j.status, l.outcome FROM batch_requests r JOIN jobs j ON j.id = r.job_id
       LEFT JOIN usage_ledger l ON l.job_id = j.id AND l.kind = 'job' WHERE r.batch_id = $1`,
      [batch.id],
    );
    expect(rows.filter((r) => r.status === 'cancelled' && r.outcome === 'cancelled')).toHaveLength(6);
    expect(rows.filter((r) => r.status === 'completed' && r.outcome === 'completed')).toHaveLength(4);

    // Cancelling again answers the batch as it is.
    expect(await client.batches.cancel(batch.id)).toMatchObject({ id: batch.id, status: 'cancelled' });
  });

  it('refuses to cancel a finished batch', async () => {
    const client = llmq();
    const batch = await createBatch(client, (await upload(client, jsonl([chatLine(1)]))).id);
    await waitForBatch(client, batch.id, ['completed']);
    const error = await failure(client.batches.cancel(batch.id));
    expect(error.status).toBe(400);
    expect(error.error).toMatchObject({ code: 'batch_not_cancellable', type: 'invalid_request_error' });
  });
});

describe('the sweep', () => {
  it('expires a batch past its completion window: queued requests are not run, the batch ends expired', () =>
    withQueues(async (bull) => {
      const client = llmq();
      const lines = [chatLine(201), chatLine(202), chatLine(203)];
      const batchQueue = bull.queueFor('batch');
      await batchQueue.pause();
      let batch: Batch;
      try {
        batch = await createBatch(client, (await upload(client, jsonl(lines))).id);
        await waitForBatch(client, batch.id, ['in_progress']);
        // The window ends now (24 hours are not waited for in a test).
        await stack.pool.query('UPDATE batches SET expires_at = now() WHERE id = $1', [batch.id]);
        const expired = await waitForBatch(client, batch.id, ['expired', 'completed', 'cancelled', 'failed']);
        expect(expired.status).toBe('expired');
        expect(expired.expired_at).toEqual(expect.any(Number));
        expect(expired.request_counts).toEqual({ total: 3, completed: 0, failed: 3 });
        expect(expired.output_file_id).toBeNull();
        const errors = await readJsonl(client, expired.error_file_id!);
        expect(errors.map((e) => [e.custom_id, e.response, e.error?.code])).toEqual(
          lines.map((l) => [l.custom_id, null, 'batch_expired']),
        );
        for (const id of (await jobIds(batch.id)).values()) await expectCancelledStream(id);
        // Taken out of the queue: nothing is left for a worker to skip.
        const waiting = await batchQueue.getJobCounts('wait', 'paused', 'prioritized', 'delayed');
        expect(Object.values(waiting).reduce((a, b) => a + b, 0)).toBe(0);
      } finally {
        await batchQueue.resume();
      }
    }));

  it('completes, not expires, a batch whose requests all finished before its window ended', () =>
    withQueues(async (bull) => {
      const client = llmq();
      const batchQueue = bull.queueFor('batch');
      await batchQueue.pause();
      try {
        const batch = await createBatch(client, (await upload(client, jsonl([chatLine(211)]))).id);
        await waitForBatch(client, batch.id, ['in_progress']);
        const [jobId] = (await jobIds(batch.id)).values();
        await batchQueue.remove(jobId!);
        // Its request finished, then the window ended before a sweep saw the batch.
        const db = await stack.pool.connect();
        try {
          await db.query('BEGIN');
          await db.query(
            `UPDATE jobs SET status = 'completed', result = 'done', finish_reason = 'stop', completed_at = now()
             WHERE id = $1`,
            [jobId],
          );
          await db.query(`UPDATE batches SET expires_at = now() - interval '1 second' WHERE id = $1`, [
            batch.id,
          ]);
          await db.query('COMMIT');
        } finally {
          db.release();
        }
        const done = await waitForBatch(client, batch.id, ['expired', 'completed', 'cancelled', 'failed']);
        expect(done.status).toBe('completed');
        expect(done.expired_at).toBeNull();
        expect((await readJsonl(client, done.output_file_id!)).map((o) => o.custom_id)).toEqual([
          'request-211',
        ]);
      } finally {
        await batchQueue.resume();
      }
    }));

  it('cancels a request of a cancelling batch that went back to the queue after the cancel', () =>
    withQueues(async (bull) => {
      const client = llmq();
      const batchQueue = bull.queueFor('batch');
      await batchQueue.pause();
      try {
        const batch = await createBatch(
          client,
          (await upload(client, jsonl([chatLine(221), chatLine(222)]))).id,
        );
        await waitForBatch(client, batch.id, ['in_progress']);
        const ids = await jobIds(batch.id);
        const running = ids.get('request-221')!;
        // A worker runs it while the batch is cancelled...
        await stack.pool.query(`UPDATE jobs SET status = 'in_progress', attempts = 1 WHERE id = $1`, [
          running,
        ]);
        expect((await client.batches.cancel(batch.id)).status).toBe('cancelling');
        await expectCancelledStream(ids.get('request-222')!);
        // ...then delays it for provider capacity: it is queued again (and still in BullMQ).
        await stack.pool.query(`UPDATE jobs SET status = 'queued' WHERE id = $1`, [running]);
        const done = await waitForBatch(client, batch.id, ['cancelled', 'completed', 'failed'], 30_000);
        expect(done.status).toBe('cancelled');
        expect(done.request_counts).toEqual({ total: 2, completed: 0, failed: 2 });
        await expectCancelledStream(running);
        expect(await batchQueue.getJob(running)).toBeUndefined();
      } finally {
        await batchQueue.resume();
      }
    }));

  it('retries a batch whose finalization fails, later each time, then fails it saying why', () =>
    withQueues(async (bull) => {
      const client = llmq();
      const batchQueue = bull.queueFor('batch');
      await batchQueue.pause();
      try {
        const batch = await createBatch(client, (await upload(client, jsonl([chatLine(231)]))).id);
        await waitForBatch(client, batch.id, ['in_progress']);
        // Finalizing with a request unfinished: building its output throws, on every attempt.
        await stack.pool.query(
          `UPDATE batches SET status = 'finalizing', finalizing_at = now() WHERE id = $1`,
          [batch.id],
        );
        const attempts = () =>
          stack.pool
            .query<{ finalize_attempts: number; waits: boolean }>(
              'SELECT finalize_attempts, next_finalize_at > now() AS waits FROM batches WHERE id = $1',
              [batch.id],
            )
            .then((r) => r.rows[0]!);
        const first = await eventually(async () => {
          const a = await attempts();
          return a.finalize_attempts > 0 ? a : undefined;
        }, 'a first failed finalization');
        expect(first).toEqual({ finalize_attempts: 1, waits: true });
        expect((await client.batches.retrieve(batch.id)).status).toBe('finalizing');
        // The last attempt is due now (the waits between are not sat through in a test).
        await stack.pool.query(
          'UPDATE batches SET finalize_attempts = 4, next_finalize_at = now() WHERE id = $1',
          [batch.id],
        );
        const failed = await waitForBatch(client, batch.id, ['failed', 'completed']);
        expect(failed.status).toBe('failed');
        expect(failed.failed_at).toEqual(expect.any(Number));
        expect(failed.errors!.data).toEqual([
          expect.objectContaining({
            code: 'finalization_failed',
            message: expect.stringContaining('5 attempts'),
          }),
        ]);
      } finally {
        await batchQueue.resume();
      }
    }));

  it('runs a batch whose control job was never enqueued (the API died after recording it)', async () => {
    const client = llmq();
    const file = await upload(client, jsonl([chatLine(301), chatLine(302)]));
    const id = `batch_${'ab'.repeat(16)}`;
    const { rows } = await stack.pool.query<{ tenant_id: string; api_key_id: string }>(
      'SELECT tenant_id, api_key_id FROM files WHERE id = $1',
      [file.id],
    );
    await stack.pool.query(
      `INSERT INTO batches (id, tenant_id, api_key_id, status, endpoint, completion_window, input_file_id,
         created_at, expires_at)
       VALUES ($1, $2, $3, 'validating', '/v1/chat/completions', '24h', $4, now() - interval '1 minute',
         now() + interval '1 day')`,
      [id, rows[0]!.tenant_id, rows[0]!.api_key_id, file.id],
    );
    const done = await waitForBatch(client, id, ['completed', 'failed']);
    expect(done.status).toBe('completed');
    expect(done.request_counts).toEqual({ total: 2, completed: 2, failed: 0 });
  });
});

describe('tenancy', () => {
  it("another tenant's files and batches are 404s exactly like unknown ids", async () => {
    const owner = llmq(keys.acme!);
    const other = llmq(keys.globex!);
    const file = await upload(owner, jsonl([chatLine(1)]), 'private.jsonl');
    const batch = await createBatch(owner, file.id);
    const unknownFile = 'file-00000000000000000000000000000000';
    const unknownBatch = 'batch_00000000000000000000000000000000';

    const shape = (e: InstanceType<typeof OpenAI.APIError>, id: string) => ({
      status: e.status,
      type: e.type,
      code: e.code,
      message: e.message.replace(id, '<id>'),
    });
    const pairs: [(id: string) => Promise<unknown>, string, string][] = [
      [(id) => other.files.retrieve(id), file.id, unknownFile],
      [(id) => other.files.content(id), file.id, unknownFile],
      [(id) => other.files.delete(id), file.id, unknownFile],
      [(id) => createBatch(other, id), file.id, unknownFile],
      [(id) => other.batches.retrieve(id), batch.id, unknownBatch],
      [(id) => other.batches.cancel(id), batch.id, unknownBatch],
    ];
    for (const [call, theirs, unknown] of pairs) {
      const refused = await failure(call(theirs));
      expect(refused.status).toBe(404);
      expect(shape(refused, theirs)).toEqual(shape(await failure(call(unknown)), unknown));
    }
    const files = await other.files.list();
    expect(files.data.map((f) => f.id)).not.toContain(file.id);
    const batches = await other.batches.list();
    expect(batches.data.map((b) => b.id)).not.toContain(batch.id);

    // Still the owner's, untouched.
    expect(await owner.files.retrieve(file.id)).toMatchObject({ id: file.id, filename: 'private.jsonl' });
    expect((await owner.files.list()).data.map((f) => f.id)).toContain(file.id);
    const done = await waitForBatch(owner, batch.id, ['completed']);
    expect(done.request_counts).toEqual({ total: 1, completed: 1, failed: 0 });
    await failure(other.files.content(done.output_file_id!)).then((e) => expect(e.status).toBe(404));
  });
});

describe('files', () => {
  it('refuses an upload over FILE_UPLOAD_MAX_BYTES with a 413 in OpenAI shape and stores nothing', async () => {
    const client = llmq(keys.globex!);
    const before = (await client.files.list()).data.length;
    const error = await failure(upload(client, 'x'.repeat(UPLOAD_LIMIT + 1)));
    expect(error.status).toBe(413);
    expect(error.error).toEqual({
      message: expect.stringContaining(String(UPLOAD_LIMIT)),
      type: 'invalid_request_error',
      param: 'file',
      code: 'file_too_large',
    });
    expect((await client.files.list()).data).toHaveLength(before);
    // A file of exactly the limit is fine.
    const fits = await upload(client, 'x'.repeat(UPLOAD_LIMIT));
    expect(fits.bytes).toBe(UPLOAD_LIMIT);
  });

  /**
   * Sends a multipart upload of `declared` bytes (chunked when null), writing `send` bytes at
   * most; resolves with the status answered (null: the connection closed first) and the bytes
   * written by then.
   */
  function rawUpload(
    declared: number | null,
    send: number,
  ): Promise<{ status: number | null; sent: number }> {
    const url = new URL(`${stack.apiUrl}/v1/files`);
    const boundary = 'llmq-test-boundary';
    const head = Buffer.from(
      `--${boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n` +
        `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.jsonl"\r\n\r\n`,
    );
    const chunk = Buffer.alloc(64 * 1024, 'x');
    return new Promise((resolve) => {
      let sent = 0;
      let status: number | null = null;
      const req = httpRequest(url, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${keys.globex!}`,
          'content-type': `multipart/form-data; boundary=${boundary}`,
          ...(declared === null ? {} : { 'content-length': String(declared) }),
        },
      });
      const done = () => resolve({ status, sent });
      req.on('response', (res) => {
        status = res.statusCode ?? null;
        res.resume();
        res.on('end', done);
      });
      req.on('error', done);
      req.on('close', done);
      req.flushHeaders();
      const write = () => {
        while (sent < send && status === null && !req.destroyed) {
          sent += chunk.length;
          if (!req.write(sent === chunk.length ? Buffer.concat([head, chunk]) : chunk)) {
            req.once('drain', write);
            return;
          }
        }
        if (declared === null && status === null && !req.destroyed) req.end(`\r\n--${boundary}--\r\n`);
      };
      write();
    });
  }

  it('answers 413 at once to an upload whose Content-Length cannot fit, without reading its body', async () => {
    // Declares 10 GB and sends none of it: the answer comes without waiting for the body. (Sending
    // some would race the server's close against the client's writes: EPIPE before the answer.)
    const answer = await rawUpload(10 * 1024 ** 3, 0);
    expect(answer.status).toBe(413);
    expect(answer.sent).toBe(0);
  });

  it('stops reading an oversize upload that does not say its size, and closes the connection', async () => {
    // 64 MiB streamed, 1000 times the limit: the server stops after about twice the limit.
    const answer = await rawUpload(null, 64 * 1024 * 1024);
    expect(answer.sent).toBeLessThan(64 * 1024 * 1024);
  });

  it('deletes a file: it is gone from retrieve, content and list', async () => {
    const client = llmq(keys.globex!);
    const file = await upload(client, jsonl([chatLine(1)]));
    expect(await (await client.files.content(file.id)).text()).toBe(jsonl([chatLine(1)]));
    expect(await client.files.delete(file.id)).toEqual({ id: file.id, object: 'file', deleted: true });
    expect((await failure(client.files.retrieve(file.id))).status).toBe(404);
    expect((await failure(client.files.content(file.id))).status).toBe(404);
    expect((await client.files.list()).data.map((f) => f.id)).not.toContain(file.id);
  });

  it('refuses a purpose other than batch', async () => {
    const client = llmq(keys.globex!);
    const error = await failure(
      client.files.create({ file: await toFile(Buffer.from('{}'), 'x.jsonl'), purpose: 'fine-tune' }),
    );
    expect(error.status).toBe(400);
    expect(error.error).toMatchObject({ param: 'purpose', code: 'invalid_value' });
  });
});
