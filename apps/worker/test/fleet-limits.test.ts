/**
 * A provider account's limits hold for the whole fleet: two worker processes share one
 * requests-per-minute budget through Redis, so together they never exceed it.
 */
import { useStack } from '@llmq/testing';

jest.setTimeout(60_000);

const { stack, keys } = useStack({
  workers: 2,
  providers: ([url]) => ({
    backends: [
      {
        id: 'metered',
        kind: 'openai',
        baseUrl: url,
        models: ['sim-small'],
        limits: { requestsPerMinute: 4 },
      },
    ],
  }),
  workerEnv: {
    WORKER_CONCURRENCY: '8',
    LLM_MAX_INLINE_WAIT_MS: '200',
    JOB_MAX_WAIT_MS: '600000',
    LOG_LEVEL: 'info',
  },
});

it('two workers together send no more requests than the backend allows per minute', async () => {
  const key = keys.acme!;
  const ids: string[] = [];
  for (let i = 0; i < 10; i++) {
    const { res, body } = await stack.submit(key, { prompt: `metered ${i}`, max_tokens: 2 });
    expect(res.status).toBe(202);
    ids.push(body.jobId);
  }
  // Both workers took jobs (the budget is shared, not per process)…
  await stack.waitForJob(key, ids[0]!, ['completed']);
  const done = async () =>
    (
      await Promise.all(
        ids.map(
          async (id) => (await (await stack.request(`/api/jobs/${id}`, key)).json()) as { status: string },
        ),
      )
    ).filter((j) => j.status === 'completed').length;
  await new Promise((r) => setTimeout(r, 3000));
  // …and within the minute exactly the budget went upstream; the rest wait, delayed, not failed.
  const stats = await stack.simulatorStats();
  expect(stats.requests.chatStream).toBe(4);
  expect(await done()).toBe(4);
  const { rows } = await stack.pool.query<{ status: string; n: number }>(
    `SELECT status, count(*)::int AS n FROM jobs WHERE id = ANY($1::uuid[]) GROUP BY status`,
    [ids],
  );
  expect(rows.find((r) => r.status === 'failed')).toBeUndefined();
  expect(rows.find((r) => r.status === 'queued')?.n).toBe(6);
  // Both processes took part: each started attempts, and the refused ones were delayed.
  for (const w of stack.workers) expect(w.output()).toMatch(/attempt started/);
  expect(stack.workers.map((w) => w.output()).join('\n')).toMatch(/no provider capacity; job delayed/);
});
