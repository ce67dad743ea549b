/**
 * The resilient client inside the fleet: jobs that wait for capacity instead of failing, streams
 * that break after tokens, the providers file reloaded without a restart, and a broken file.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { eventually, readSse, spawnService, useStack } from '@llmq/testing';

jest.setTimeout(120_000);

const only = (urls: string[], ids: number[]) => ({
  backends: ids.map((i) => ({
    id: `sim-${i + 1}`,
    kind: 'openai',
    baseUrl: urls[i],
    models: ['sim-small', 'sim-large'],
    timeouts: { connectMs: 1000, firstTokenMs: 5000, idleMs: 5000, totalMs: 30_000 },
    price: { inputPerMillion: 1, outputPerMillion: 2 },
  })),
});

const { stack, keys } = useStack({
  workers: 1,
  simulators: 2,
  // Only the first simulator is a backend at first; a test adds the second by editing the file.
  providers: (urls) => only(urls, [0]),
  workerEnv: { LLM_MAX_INLINE_WAIT_MS: '500', JOB_MAX_WAIT_MS: '60000' },
});
let key: string;
beforeAll(() => {
  key = keys.acme!;
});
afterEach(async () => {
  await Promise.all(stack.simulatorUrls.map((u) => setFault(u, null)));
});

async function setFault(url: string, fault: string | null) {
  const res = await fetch(`${url}/admin/fault`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ fault }),
  });
  expect(res.status).toBe(200);
}

async function runJob(body: object) {
  const { res, body: accepted } = await stack.submit(key, body);
  expect(res.status).toBe(202);
  const sse = await readSse(`${stack.apiUrl}${accepted.streamUrl}`, {
    headers: { authorization: `Bearer ${key}` },
    timeoutMs: 60_000,
  });
  const job = await stack.waitForJob(key, accepted.jobId);
  return { job, sse };
}

it('records the cost and the model that served the job', async () => {
  const { job } = await runJob({ prompt: 'price me', max_tokens: 10 });
  expect(job).toMatchObject({ status: 'completed', servedModel: 'sim-small' });
  const { prompt_tokens } = job.usage!;
  expect(job.costUsd).toBeCloseTo((prompt_tokens + 20) / 1e6, 9);
});

it('delays a job while its only backend asks for a wait, then completes it', async () => {
  await setFault(stack.simulatorUrls[0]!, 'status=429;retry-after=2;rate=0.5');
  const { job, sse } = await runJob({ prompt: 'patience', max_tokens: 5 });
  expect(job.status).toBe('completed');
  expect(job.attempts).toBe(2); // ran, was delayed, ran again
  const waits = sse.events.filter((e) => e.event === 'status').map((e) => JSON.parse(e.data));
  expect(waits.some((s) => s.status === 'queued' && s.retryInMs >= 1500)).toBe(true);
});

it('fails, never completes, a job whose stream broke after tokens were sent', async () => {
  await setFault(stack.simulatorUrls[0]!, 'cut-after=4');
  const { job, sse } = await runJob({ prompt: 'cut me', max_tokens: 20 });
  expect(job).toMatchObject({ status: 'failed', result: null, error: { code: 'upstream_stream_broken' } });
  expect(sse.events.filter((e) => e.event === 'token').length).toBeGreaterThan(0);
  expect(sse.events.at(-1)?.event).toBe('failed');
  expect(sse.events.some((e) => e.event === 'completed')).toBe(false);
});

it('picks up a backend added to the providers file without a restart', async () => {
  await setFault(stack.simulatorUrls[0]!, 'status=500');
  stack.writeProviders(
    only(
      stack.simulatorUrls.map((u) => `${u}/v1`),
      [0, 1],
    ),
  );
  // The workers poll the file every second; from then on the healthy new backend serves.
  let served = false;
  for (let i = 0; i < 20 && !served; i++) {
    const { job } = await runJob({ prompt: `reload ${i}`, max_tokens: 3 });
    served = job.status === 'completed';
    if (!served) await new Promise((r) => setTimeout(r, 500));
  }
  expect(served).toBe(true);
  expect((await stack.simulatorStats(1)).completed).toBeGreaterThanOrEqual(1);
});

// Last of the jobs: the backend then stays out of rotation for the hour it asked for.
it('fails a job whose provider asks for a wait longer than the job may wait', async () => {
  await Promise.all(stack.simulatorUrls.map((u) => setFault(u, 'status=429;retry-after=3600')));
  const { job, sse } = await runJob({ prompt: 'too long', max_tokens: 5 });
  expect(job.status).toBe('failed');
  expect(job.error).toMatchObject({ code: 'provider_unavailable', retryable: true, status: 429 });
  expect(job.error!.message).toMatch(
    /for 3600 s \(last answer: provider answered 429.*\); waiting 3600 s more would pass this job's limit of 60 s/,
  );
  expect(sse.events.at(-1)?.event).toBe('failed');

  // A batch-tier job may wait a batch's day (BATCH_JOB_MAX_WAIT_MS): the same hour delays it instead.
  const { body: accepted } = await stack.submit(key, {
    prompt: 'too long, but batch',
    max_tokens: 5,
    priority: 'batch',
  });
  const delayed = await eventually(async () => {
    const found = await stack.pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM jobs WHERE id = $1 AND status = 'queued' AND attempts >= 1`,
      [accepted.jobId],
    );
    return found.rows[0]!.n === 1;
  }, 'the batch job was run and delayed, not failed');
  expect(delayed).toBe(true);
  const cancel = await stack.request(`/api/jobs/${accepted.jobId}`, key, { method: 'DELETE' });
  expect(cancel.status).toBe(200);
});

it('a worker refuses to start on a broken providers file, saying what is wrong', async () => {
  const broken = join(stack.redisDir, '..', 'broken-providers.yaml');
  writeFileSync(broken, 'backends:\n  - id: x\n    kind: grpc\n    baseUrl: not-a-url\n    models: []\n');
  const attempt = spawnService({
    name: 'worker-broken',
    command: process.execPath,
    args: [join(__dirname, '..', 'dist', 'main.js')],
    env: { REDIS_URL: stack.redisUrl, DATABASE_URL: stack.pglite.url, PROVIDERS_FILE: broken },
    ready: /llmq-worker ready/,
  });
  await expect(attempt).rejects.toThrow(
    /invalid providers file .*backends\.0\.kind.*backends\.0\.baseUrl.*backends\.0\.models/s,
  );
});
