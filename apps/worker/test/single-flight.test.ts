/**
 * Identical cacheable requests in flight at the same time make one upstream call, across two
 * worker processes; the others follow the leader's stream. A failing leader releases them.
 */
import { eventually, readSse, useStack } from '@llmq/testing';

jest.setTimeout(90_000);

const { stack, keys } = useStack({
  workers: 2,
  // Slow enough that all twenty are in flight while the leader streams.
  simulatorEnv: { SIM_TTFT_MS: '100', SIM_TOKEN_MS: '20', SIM_JITTER: '0' },
  workerEnv: { WORKER_CONCURRENCY: '32', LOG_LEVEL: 'info' },
});

async function setFault(fault: string | null) {
  await fetch(`${stack.simulatorUrl}/admin/fault`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ fault }),
  });
}

async function burst(body: object, n: number) {
  const key = keys.acme!;
  const submitted = await Promise.all(Array.from({ length: n }, () => stack.submit(key, body)));
  expect(submitted.every((s) => s.res.status === 202)).toBe(true);
  const streams = await Promise.all(
    submitted.map((s) =>
      readSse(`${stack.apiUrl}${s.body.streamUrl}`, { headers: { authorization: `Bearer ${key}` } }),
    ),
  );
  const jobs = await Promise.all(submitted.map((s) => stack.waitForJob(key, s.body.jobId)));
  return { streams, jobs };
}

it('20 concurrent identical requests make one upstream call and all get the same text', async () => {
  const before = (await stack.simulatorStats()).requests.chatStream;
  const { streams, jobs } = await burst({ prompt: 'one for all', temperature: 0, max_tokens: 12 }, 20);
  expect((await stack.simulatorStats()).requests.chatStream - before).toBe(1);
  expect(jobs.every((j) => j.status === 'completed')).toBe(true);
  const texts = new Set(jobs.map((j) => j.result));
  expect(texts.size).toBe(1);
  // Every follower streamed the tokens too, not just the final result.
  for (const s of streams) {
    const text = s.events
      .filter((e) => e.event === 'token')
      .map((e) => JSON.parse(e.data).text)
      .join('');
    expect(text).toBe(jobs[0]!.result);
  }
  // Both worker processes took part.
  const coalesced = stack.workers.map(
    (w) => (w.output().match(/coalesced with an identical job/g) ?? []).length,
  );
  expect(coalesced.reduce((a, b) => a + b, 0)).toBe(19);
  // Only the leader paid.
  const { rows } = await stack.pool.query<{ paid: number }>(
    `SELECT count(*)::int AS paid FROM jobs WHERE id = ANY($1::uuid[]) AND cost_usd > 0`,
    [jobs.map((j) => j.jobId)],
  );
  expect(rows[0]!.paid).toBe(1);
});

it('a failing leader releases its followers with a clear error', async () => {
  // The leader streams for about 0.6 s before the cut, so every follower joins it in time.
  await setFault('cut-after=25');
  try {
    const before = (await stack.simulatorStats()).requests.chatStream;
    const { jobs, streams } = await burst({ prompt: 'doomed together', temperature: 0, max_tokens: 30 }, 10);
    expect((await stack.simulatorStats()).requests.chatStream - before).toBe(1);
    expect(jobs.every((j) => j.status === 'failed')).toBe(true);
    const codes = jobs.map((j) => j.error?.code).sort();
    expect(codes.filter((c) => c === 'upstream_stream_broken')).toHaveLength(1);
    expect(codes.filter((c) => c === 'coalesced_leader_failed')).toHaveLength(9);
    expect(streams.every((s) => s.events.at(-1)?.event === 'failed')).toBe(true);
  } finally {
    await setFault(null);
  }
});

it('a cancelled leader (its client went away) leaves its followers to call the provider themselves', async () => {
  const key = keys.acme!;
  const body = { prompt: 'the leader leaves', temperature: 0, max_tokens: 150 };
  const leader = await stack.submit(key, body);
  // The leader is streaming (alone, so it holds the flight) when its twin arrives and follows it.
  await eventually(
    async () => (await stack.waitForJob(key, leader.body.jobId, ['in_progress'])).status,
    'leader running',
  );
  const follower = await stack.submit(key, body);
  const followed = () =>
    stack.workers.some((w) =>
      w
        .output()
        .split('\n')
        .some(
          (line) => line.includes(follower.body.jobId) && line.includes('coalesced with an identical job'),
        ),
    );
  await eventually(() => Promise.resolve(followed()), 'the twin followed the leader');
  const cancel = await stack.request(`/api/jobs/${leader.body.jobId}`, key, { method: 'DELETE' });
  expect(cancel.status).toBe(200);
  const job = await stack.waitForJob(key, follower.body.jobId, ['completed', 'failed', 'cancelled'], 60_000);
  expect(job.status).toBe('completed');
  expect(job.usage!.completion_tokens).toBe(150);
  expect((await stack.waitForJob(key, leader.body.jobId)).status).toBe('cancelled');
});
