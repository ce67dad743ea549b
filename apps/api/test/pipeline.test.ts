/**
 * The job pipeline end to end, every part a real process: submit → 202 → SSE tokens → poll.
 * (`npm test` builds the apps first; these tests spawn their dist/ entry points.)
 */
import { eventually, readSse, useStack, type SseEvent } from '@llmq/testing';

const { stack, keys } = useStack({ workers: 1 }, ['acme', 'globex']);
let key: string;
let otherKey: string;
beforeAll(() => {
  key = keys.acme!;
  otherKey = keys.globex!;
});

const submit = (body: object, k = key, headers: Record<string, string> = {}) =>
  stack.submit(k, body, headers);
const waitDone = (jobId: string, k = key) => stack.waitForJob(k, jobId);

const textOf = (events: SseEvent[]) =>
  events
    .filter((e) => e.event === 'token')
    .map((e) => (JSON.parse(e.data) as { text: string }).text)
    .join('');

describe('submit, stream, poll', () => {
  it('answers 202 with poll and stream URLs, streams every token, then polls the same text', async () => {
    const { res, body } = await submit({ prompt: 'Tell me about queues', max_tokens: 40, seed: 7 });
    expect(res.status).toBe(202);
    expect(body.status).toBe('queued');
    expect(body.jobId).toMatch(/^[0-9a-f-]{36}$/);
    expect(body.pollUrl).toBe(`/api/jobs/${body.jobId}`);
    expect(body.streamUrl).toBe(`/api/jobs/${body.jobId}/stream`);
    expect(res.headers.get('location')).toBe(body.pollUrl);

    const sse = await readSse(`${stack.apiUrl}${body.streamUrl}`, {
      headers: { authorization: `Bearer ${key}` },
    });
    expect(sse.status).toBe(200);
    expect(sse.headers.get('content-type')).toContain('text/event-stream');
    expect(sse.ended).toBe(true);
    const ids = sse.events.map((e) => Number(e.id));
    expect(ids).toEqual(ids.map((_, i) => i + 1)); // 1, 2, 3… no gap, no duplicate
    expect(sse.events[0]?.event).toBe('status');
    const last = sse.events.at(-1)!;
    expect(last.event).toBe('completed');
    const completed = JSON.parse(last.data) as { result: string; usage: { completion_tokens: number } };
    const streamed = textOf(sse.events);
    expect(streamed.split(' ').length).toBe(40);
    expect(completed.result).toBe(streamed);
    expect(completed.usage.completion_tokens).toBe(40);

    const job = await waitDone(body.jobId);
    expect(job).toMatchObject({ status: 'completed', result: streamed, attempts: 1, finishReason: 'length' });
  });

  it('resumes with Last-Event-ID mid-stream and after completion, without gaps or duplicates', async () => {
    const { body } = await submit({ prompt: 'resume me', max_tokens: 60 }, key, {});
    const url = `${stack.apiUrl}${body.streamUrl}`;
    const auth = { authorization: `Bearer ${key}` };
    const first = await readSse(url, {
      headers: auth,
      until: (_e, all) => all.filter((x) => x.event === 'token').length >= 3,
    });
    const lastId = first.events.at(-1)!.id!;
    const rest = await readSse(url, { headers: { ...auth, 'Last-Event-ID': lastId } });
    const joined = [...first.events, ...rest.events];
    expect(joined.map((e) => Number(e.id))).toEqual(joined.map((_, i) => i + 1));
    expect(rest.events.at(-1)?.event).toBe('completed');
    const full = await readSse(url, { headers: auth });
    expect(full.events.map((e) => e.data)).toEqual(joined.map((e) => e.data));

    // After completion (replayed from Postgres), from the middle:
    const tail = await readSse(url, { headers: { ...auth, 'Last-Event-ID': '2' } });
    expect(tail.events.map((e) => e.id)).toEqual(joined.slice(2).map((e) => e.id));
    expect(textOf(joined)).toBe((await waitDone(body.jobId)).result);
  });

  it('accepts messages with sampling parameters and metadata', async () => {
    const { res, body } = await submit({
      messages: [
        { role: 'system', content: 'be brief' },
        { role: 'user', content: 'hello' },
      ],
      model: 'sim-large',
      temperature: 0,
      top_p: 0.5,
      max_tokens: 5,
      seed: 1,
      stop: ['###'],
      metadata: { ticket: 'T-1' },
    });
    expect(res.status).toBe(202);
    const job = await waitDone(body.jobId);
    expect(job.model).toBe('sim-large');
    expect(job.metadata).toEqual({ ticket: 'T-1' });
    expect(job.usage).toMatchObject({ completion_tokens: 5 });
  });
});

describe('connections', () => {
  it('serves many SSE clients without a Redis connection per client', async () => {
    const { Redis } = await import('ioredis');
    const admin = new Redis(stack.redisUrl);
    try {
      const count = async () =>
        String(await admin.client('LIST'))
          .split('\n')
          .filter((l) => l.includes('name=llmq-api')).length;
      const before = await count();
      expect(before).toBe(2); // commands + one shared subscriber
      const jobs = await Promise.all(
        Array.from({ length: 30 }, (_, i) => submit({ prompt: `fan out ${i}`, max_tokens: 30 })),
      );
      let open = 0;
      const streams = jobs.map(({ body }) =>
        readSse(`${stack.apiUrl}${body.streamUrl}`, {
          headers: { authorization: `Bearer ${key}` },
          onEvent: (e) => {
            if (e.id === '1') open++;
          },
        }),
      );
      await eventually(async () => open === 30, 'all 30 streams receive events');
      expect(await count()).toBe(before);
      const done = await Promise.all(streams);
      expect(done.every((d) => d.events.at(-1)?.event === 'completed')).toBe(true);
    } finally {
      admin.disconnect();
    }
  });
});

describe('idempotency', () => {
  it('returns the same job for the same key and body, and 422 for a different body', async () => {
    const headers = { 'Idempotency-Key': 'order-123' };
    const a = await submit({ prompt: 'once', max_tokens: 3 }, key, headers);
    const b = await submit({ max_tokens: 3, prompt: 'once' }, key, headers);
    expect(a.res.status).toBe(202);
    expect(b.res.status).toBe(202);
    expect(b.body.jobId).toBe(a.body.jobId);
    expect(b.res.headers.get('idempotent-replayed')).toBe('true');
    const c = await submit({ prompt: 'twice', max_tokens: 3 }, key, headers);
    expect(c.res.status).toBe(422);
    expect(c.body).toMatchObject({ code: 'idempotency_key_reused', status: 422 });
    // Another tenant's identical key is its own namespace.
    const d = await submit({ prompt: 'once', max_tokens: 3 }, otherKey, headers);
    expect(d.res.status).toBe(202);
    expect(d.body.jobId).not.toBe(a.body.jobId);
  });

  it('concurrent submits with one Idempotency-Key create one job', async () => {
    const headers = { 'Idempotency-Key': 'burst-1' };
    const results = await Promise.all(
      Array.from({ length: 10 }, () => submit({ prompt: 'burst', max_tokens: 2 }, key, headers)),
    );
    expect(results.every((r) => r.res.status === 202)).toBe(true);
    expect(new Set(results.map((r) => r.body.jobId)).size).toBe(1);
    const { rows } = await stack.pool.query(
      `SELECT count(*)::int AS n FROM jobs WHERE idempotency_key = 'burst-1'`,
    );
    expect(rows[0].n).toBe(1);
  });
});

describe('tenancy', () => {
  it("answers 404 for another tenant's job on poll, stream and cancel, same as an unknown id", async () => {
    const { body } = await submit({ prompt: 'private', max_tokens: 3 });
    const unknown = '3b241101-e2bb-4255-8caf-4136c566a962';
    for (const id of [body.jobId, unknown]) {
      const poll = await stack.request(`/api/jobs/${id}`, otherKey);
      const stream = await stack.request(`/api/jobs/${id}/stream`, otherKey);
      const cancel = await stack.request(`/api/jobs/${id}`, otherKey, { method: 'DELETE' });
      for (const r of [poll, stream, cancel]) {
        expect(r.status).toBe(404);
        expect(r.headers.get('content-type')).toContain('application/problem+json');
        expect(await r.json()).toMatchObject({ status: 404, code: 'not_found', detail: 'job not found' });
      }
    }
    expect((await waitDone(body.jobId)).status).toBe('completed'); // untouched by the other tenant
  });
});

describe('cancel', () => {
  it('cancels a running job and aborts its upstream stream', async () => {
    const before = await stack.simulatorStats();
    const { body } = await submit({ prompt: 'a long one', max_tokens: 2000 }, key, {});
    const url = `${stack.apiUrl}${body.streamUrl}`;
    const auth = { authorization: `Bearer ${key}` };
    // Wait until tokens flow, so the job is running on the worker.
    await readSse(url, { headers: auth, until: (e) => e.event === 'token' });
    const res = await stack.request(`/api/jobs/${body.jobId}`, key, { method: 'DELETE' });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ status: 'cancelled' });
    const stats = await eventually(async () => {
      const s = await stack.simulatorStats();
      return s.aborted > before.aborted && s.inFlight === 0 ? s : undefined;
    }, 'the simulator saw the upstream request aborted');
    expect(stats.completed).toBe(before.completed);
    const job = await waitDone(body.jobId);
    expect(job.status).toBe('cancelled');
    const sse = await readSse(url, { headers: auth });
    expect(sse.events.at(-1)?.event).toBe('cancelled');
    // Cancelling again is idempotent; a finished job cannot be cancelled.
    expect((await stack.request(`/api/jobs/${body.jobId}`, key, { method: 'DELETE' })).status).toBe(200);
  });

  it('answers 409 for cancelling a completed job', async () => {
    const { body } = await submit({ prompt: 'quick', max_tokens: 2 });
    await waitDone(body.jobId);
    const res = await stack.request(`/api/jobs/${body.jobId}`, key, { method: 'DELETE' });
    expect(res.status).toBe(409);
    expect(await res.json()).toMatchObject({ code: 'job_not_cancellable' });
  });
});
