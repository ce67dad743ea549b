/**
 * What happens to accepted jobs when processes die: workers killed or drained, Redis restarted
 * or emptied. Real processes throughout; the simulator counts upstream calls.
 */
import { eventually, readSse, useStack, type TestStack } from '@llmq/testing';

jest.setTimeout(120_000);

async function submit(stack: TestStack, key: string, body: object): Promise<string> {
  const { res, body: accepted } = await stack.submit(key, body);
  expect(res.status).toBe(202);
  return accepted.jobId;
}

const waitStatus = (stack: TestStack, key: string, jobId: string, status: string, timeoutMs = 30_000) =>
  stack.waitForJob(key, jobId, [status], timeoutMs);

describe('workers dying and draining', () => {
  const { stack, keys } = useStack({
    workers: 2,
    // Slow tokens so a job is certainly mid-stream when its worker dies.
    simulatorEnv: { SIM_TTFT_MS: '50', SIM_TOKEN_MS: '40', SIM_JITTER: '0' },
    workerEnv: { WORKER_CONCURRENCY: '4', LOG_LEVEL: 'info' },
  });
  let key: string;
  beforeAll(() => {
    key = keys.acme!;
  });

  it('a job survives its worker killed with SIGKILL mid-stream: it completes once, one result', async () => {
    const jobId = await submit(stack, key, { prompt: 'survive', max_tokens: 80, seed: 3 });
    const url = `${stack.apiUrl}/api/jobs/${jobId}/stream`;
    const auth = { authorization: `Bearer ${key}` };
    await readSse(url, { headers: auth, until: (e) => e.event === 'token' });
    const [a, b] = stack.workers as [(typeof stack.workers)[0], (typeof stack.workers)[0]];
    const holder = await whoHolds(stack, jobId, [a, b]);
    await holder.stop('SIGKILL');
    const survivor = holder === a ? b : a;
    expect(survivor.process.exitCode).toBeNull();

    const job = await waitStatus(stack, key, jobId, 'completed', 60_000);
    expect(job.attempts).toBe(2);
    expect(job.result?.split(' ').length).toBe(80);
    const { rows } = await stack.pool.query(
      'SELECT count(*)::int AS n, max(result) AS r FROM jobs WHERE id = $1',
      [jobId],
    );
    expect(rows[0]).toEqual({ n: 1, r: job.result });
    // It ran twice, and is charged once.
    const { rows: charges } = await stack.pool.query(
      `SELECT outcome, cost_usd::float AS cost FROM usage_ledger WHERE kind = 'job' AND job_id = $1`,
      [jobId],
    );
    expect(charges).toEqual([{ outcome: 'completed', cost: job.costUsd }]);

    // The stream tells the client the text restarted, and the final event carries the full result.
    const sse = await readSse(url, { headers: auth });
    const statuses = sse.events.filter((e) => e.event === 'status').map((e) => JSON.parse(e.data));
    expect(statuses.some((s) => s.restarted === true && s.attempt === 2)).toBe(true);
    expect(JSON.parse(sse.events.at(-1)!.data)).toMatchObject({ type: 'completed', result: job.result });
    const ids = sse.events.map((e) => Number(e.id));
    expect(ids).toEqual(ids.map((_, i) => i + 1));
  });

  it('SIGTERM drains: the running job finishes before the worker exits', async () => {
    while (
      stack.workers.filter((w) => w.process.exitCode === null && w.process.signalCode === null).length < 2
    ) {
      await stack.startWorker();
    }
    const live = stack.workers.filter((w) => w.process.exitCode === null && w.process.signalCode === null);
    const jobId = await submit(stack, key, { prompt: 'drain me', max_tokens: 40 });
    await readSse(`${stack.apiUrl}/api/jobs/${jobId}/stream`, {
      headers: { authorization: `Bearer ${key}` },
      until: (e) => e.event === 'token',
    });
    const holder = await whoHolds(stack, jobId, live);
    const code = await holder.stop('SIGTERM', 30_000);
    expect(code).toBe(0);
    expect(holder.output()).toContain('drained');
    // Finished by the draining worker itself: one attempt, no retry.
    const job = await waitStatus(stack, key, jobId, 'completed');
    expect(job.attempts).toBe(1);
  });
});

/** The worker process running a job: the one that logged the attempt's start. */
function whoHolds(_stack: TestStack, jobId: string, candidates: TestStack['workers']) {
  return eventually(
    async () => candidates.find((c) => c.output().includes(jobId)),
    `a worker started ${jobId}`,
  );
}

describe('a job whose workers keep dying', () => {
  const { stack, keys } = useStack({
    workers: 1,
    simulatorEnv: { SIM_TTFT_MS: '50', SIM_TOKEN_MS: '40', SIM_JITTER: '0' },
    // No stall is forgiven: the first worker death fails the job.
    workerEnv: { MAX_STALLED_COUNT: '0', LOG_LEVEL: 'info' },
  });
  let key: string;
  beforeAll(() => {
    key = keys.acme!;
  });

  it('is recorded as failed (not left in_progress) once BullMQ gives up on it', async () => {
    const jobId = await submit(stack, key, { prompt: 'cursed', max_tokens: 100 });
    const url = `${stack.apiUrl}/api/jobs/${jobId}/stream`;
    const auth = { authorization: `Bearer ${key}` };
    await readSse(url, { headers: auth, until: (e) => e.event === 'token' });
    await stack.workers[0]!.stop('SIGKILL');
    await stack.startWorker();
    const job = await waitStatus(stack, key, jobId, 'failed', 60_000);
    expect(job.error).toMatchObject({ code: 'job_stalled' });
    const sse = await readSse(url, { headers: auth });
    expect(sse.events.at(-1)?.event).toBe('failed');
  });
});
