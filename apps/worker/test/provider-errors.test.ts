/**
 * Provider errors fail the job with a clear error: retryable ones after the LLM client's
 * attempts (and no BullMQ retry on top, which would multiply upstream calls), permanent ones at
 * once. The simulator counts the upstream calls each job made.
 */
import { readSse, useStack, type TestStack } from '@llmq/testing';

jest.setTimeout(120_000);

async function runToEnd(stack: TestStack, key: string, body: object) {
  const { res, body: accepted } = await stack.submit(key, body);
  expect(res.status).toBe(202);
  const sse = await readSse(`${stack.apiUrl}${accepted.streamUrl}`, {
    headers: { authorization: `Bearer ${key}` },
  });
  const job = await stack.waitForJob(key, accepted.jobId, ['failed']);
  return { job, events: sse.events.map((e) => e.event) };
}

describe('a provider that keeps answering 503', () => {
  const { stack, keys } = useStack({ workers: 1, simulatorEnv: { SIM_FAULT: 'status=503' } });
  let key: string;
  beforeAll(() => {
    key = keys.acme!;
  });

  it('fails the job after the client used its attempts, with the provider status in the error', async () => {
    const { job, events } = await runToEnd(stack, key, { prompt: 'doomed', max_tokens: 3 });
    expect(job.attempts).toBe(1); // one job run…
    expect((await stack.simulatorStats()).faults).toMatchObject({ status: 3 }); // …three upstream calls
    expect(job.error).toMatchObject({ code: 'upstream_503', retryable: true, status: 503 });
    expect(job.error?.message).toMatch(/3 attempt\(s\) failed; last: provider answered 503/);
    expect(events).toEqual(['status', 'failed']);
  });
});

describe('a permanent provider error', () => {
  // The providers file lists a model the provider does not serve: the provider answers 404.
  const { stack, keys } = useStack({
    workers: 1,
    providers: ([url]) => ({
      backends: [{ id: 'sim-1', kind: 'openai', baseUrl: url, models: ['sim-small', 'ghost-model'] }],
    }),
  });
  let key: string;
  beforeAll(() => {
    key = keys.acme!;
  });

  it('fails the job at once, without retries, with the provider reason', async () => {
    const { job } = await runToEnd(stack, key, { prompt: 'who?', model: 'ghost-model' });
    expect(job.attempts).toBe(1);
    expect(job.error).toMatchObject({ code: 'upstream_404', retryable: false, status: 404 });
    expect(job.error?.message).toMatch(/ghost-model/);
    const stats = await stack.simulatorStats();
    expect(stats).toMatchObject({ rejected: 1, completed: 0 }); // one upstream call, refused
  });
});
