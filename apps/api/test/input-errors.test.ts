/**
 * Bad input gets a clear answer and loses nothing: the right status, a problem+json body naming
 * the fault, and no job row left behind.
 */
import { readSse, useStack } from '@llmq/testing';
import { Redis } from 'ioredis';
import { request } from 'node:http';

// No workers: submitted jobs stay queued, which the queued-job tests below rely on.
const { stack, keys } = useStack({ workers: 0, apiEnv: { SSE_HEARTBEAT_MS: '200' } });
let key: string;
beforeAll(() => {
  key = keys.acme!;
});

async function jobCount(): Promise<number> {
  const { rows } = await stack.pool.query('SELECT count(*)::int AS n FROM jobs');
  return rows[0].n as number;
}

async function expectProblem(res: Response, status: number, code: string, field?: string) {
  expect(res.status).toBe(status);
  expect(res.headers.get('content-type')).toContain('application/problem+json');
  const body = (await res.json()) as Record<string, unknown>;
  expect(body).toMatchObject({ status, code, type: `https://llmq.dev/problems/${code}` });
  expect(typeof body.title).toBe('string');
  expect(typeof body.detail).toBe('string');
  if (field !== undefined) expect(body.field).toBe(field);
  return body;
}

const post = (
  body: string,
  headers: Record<string, string> = { 'content-type': 'application/json' },
  k: string | null = key,
) => stack.request('/api/generate', k, { method: 'POST', body, headers });

describe('bad input', () => {
  let before: number;
  beforeEach(async () => {
    before = await jobCount();
  });
  afterEach(async () => {
    expect(await jobCount()).toBe(before); // nothing half-created
  });

  it('401 without a key, with a malformed header, and with an unknown key', async () => {
    await expectProblem(
      await post('{"prompt":"x"}', { 'content-type': 'application/json' }, null),
      401,
      'unauthorized',
    );
    const basic = await stack.request('/api/generate', null, {
      method: 'POST',
      body: '{"prompt":"x"}',
      headers: { authorization: 'Basic abc', 'content-type': 'application/json' },
    });
    await expectProblem(basic, 401, 'unauthorized');
    const res = await post(
      '{"prompt":"x"}',
      { 'content-type': 'application/json' },
      'llmq_' + 'A'.repeat(32),
    );
    await expectProblem(res, 401, 'unauthorized');
    expect(res.headers.get('www-authenticate')).toContain('Bearer');
  });

  it('400 for malformed JSON', async () => {
    const body = await expectProblem(await post('{"prompt": "x",'), 400, 'malformed_json');
    expect(String(body.detail)).toContain('not valid JSON');
  });

  it('415 for a wrong content type', async () => {
    await expectProblem(
      await post('prompt=x', { 'content-type': 'application/x-www-form-urlencoded' }),
      415,
      'unsupported_media_type',
    );
    await expectProblem(
      await post('{"prompt":"x"}', { 'content-type': 'text/plain' }),
      415,
      'unsupported_media_type',
    );
  });

  it('413 for a body over 1 MB, declared or streamed', async () => {
    const big = JSON.stringify({ prompt: 'x'.repeat(1_100_000) });
    await expectProblem(await post(big), 413, 'body_too_large');
    // Chunked, with no Content-Length: refused once the limit is crossed, not after buffering it all.
    const { status, body } = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request(`${stack.apiUrl}/api/generate`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${key}`,
          'content-type': 'application/json',
          'transfer-encoding': 'chunked',
        },
      });
      req.on('response', (res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      });
      req.on('error', reject);
      req.write('{"prompt":"');
      const chunk = 'x'.repeat(64 * 1024);
      let sent = 0;
      const pump = () => {
        // Keep sending up to 4 MB; the server answers long before the end.
        while (sent < 4 * 1024 * 1024) {
          sent += chunk.length;
          if (!req.write(chunk)) return void req.once('drain', pump);
        }
        req.end('"}');
      };
      pump();
    });
    expect(status).toBe(413);
    expect(JSON.parse(body)).toMatchObject({ code: 'body_too_large' });
  });

  it('400 naming the field for schema violations', async () => {
    await expectProblem(await post(JSON.stringify({})), 400, 'invalid_request', 'messages');
    await expectProblem(
      await post(JSON.stringify({ prompt: 'x', temperature: 5 })),
      400,
      'invalid_request',
      'temperature',
    );
    await expectProblem(
      await post(JSON.stringify({ prompt: 'x', max_tokens: 'ten' })),
      400,
      'invalid_request',
      'max_tokens',
    );
    await expectProblem(
      await post(JSON.stringify({ messages: [{ role: 'user' }] })),
      400,
      'invalid_request',
      'messages.0.content',
    );
    const typo = await expectProblem(
      await post(JSON.stringify({ prompt: 'x', max_token: 3 })),
      400,
      'invalid_request',
      'max_token',
    );
    expect(String(typo.detail)).toContain('max_token');
    await expectProblem(await post(JSON.stringify(['prompt'])), 400, 'invalid_request');
    await expectProblem(await post('"just a string"'), 400, 'malformed_json');
  });

  it('422 for an unknown model or a prompt over the token cap; 400 for an over-long field or a bad Idempotency-Key', async () => {
    await expectProblem(
      await post(JSON.stringify({ prompt: 'x', model: 'gpt-99' })),
      422,
      'model_not_found',
      'model',
    );
    await expectProblem(
      await post(JSON.stringify({ prompt: 'x'.repeat(450_000) })),
      400,
      'invalid_request',
      'prompt',
    );
    // About 59k tokens per message by the real tokenizer: 3 of them are over the 100k cap.
    const text = Array.from({ length: 20_000 }, (_, i) => `w${i}`).join(' ');
    const long = Array.from({ length: 3 }, () => ({ role: 'user', content: text }));
    await expectProblem(await post(JSON.stringify({ messages: long })), 422, 'prompt_too_long', 'messages');
    const headers = { 'content-type': 'application/json', 'Idempotency-Key': 'x'.repeat(300) };
    await expectProblem(
      await post(JSON.stringify({ prompt: 'x' }), headers),
      400,
      'invalid_idempotency_key',
      'Idempotency-Key',
    );
  });

  it('404 for unknown routes and malformed job ids, 400 for a bad Last-Event-ID', async () => {
    await expectProblem(await stack.request('/api/nope', key), 404, 'route_not_found');
    await expectProblem(await stack.request('/api/jobs/1', key), 404, 'not_found');
    await expectProblem(await stack.request("/api/jobs/' OR 1=1 --", key), 404, 'not_found');
    const res = await post(JSON.stringify({ prompt: 'x', max_tokens: 1 }));
    expect(res.status).toBe(202);
    before += 1; // this one is meant to be created
    const { jobId } = (await res.json()) as { jobId: string };
    const bad = await stack.request(`/api/jobs/${jobId}/stream`, key, {
      headers: { 'Last-Event-ID': 'abc' },
    });
    await expectProblem(bad, 400, 'invalid_last_event_id', 'Last-Event-ID');
  });

  it('carries a request id on every answer', async () => {
    const res = await stack.request('/api/jobs/x', key, { headers: { 'x-request-id': 'trace-abc' } });
    expect(res.headers.get('x-request-id')).toBe('trace-abc');
    expect(await res.json()).toMatchObject({ requestId: 'trace-abc' });
  });
});

describe('health', () => {
  it('answers liveness and readiness', async () => {
    expect(await (await fetch(`${stack.apiUrl}/health`)).json()).toEqual({ status: 'ok' });
    const ready = await fetch(`${stack.apiUrl}/ready`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ status: 'ready', redis: true, postgres: true });
  });
});

describe('a queued job', () => {
  async function queued(): Promise<{ jobId: string; streamUrl: string }> {
    const res = await post(JSON.stringify({ prompt: 'waiting', max_tokens: 1 }));
    expect(res.status).toBe(202);
    return (await res.json()) as { jobId: string; streamUrl: string };
  }

  it('keeps its stream open with heartbeat comments while it waits', async () => {
    const { streamUrl } = await queued();
    let beats = 0;
    const sse = await readSse(`${stack.apiUrl}${streamUrl}`, {
      headers: { authorization: `Bearer ${key}` },
      timeoutMs: 5000,
      onRaw: (text) => {
        beats += (text.match(/^: heartbeat$/gm) ?? []).length;
      },
      stopWhen: () => beats >= 2,
    });
    expect(beats).toBeGreaterThanOrEqual(2);
    expect(sse.events).toEqual([]);
  });

  it('is cancelled out of the queue: status cancelled, BullMQ job gone, stream ends with cancelled', async () => {
    const { jobId, streamUrl } = await queued();
    const redis = new Redis(stack.redisUrl);
    try {
      expect(await redis.exists(`llmq:generate:${jobId}`)).toBe(1);
      const res = await stack.request(`/api/jobs/${jobId}`, key, { method: 'DELETE' });
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ jobId, status: 'cancelled', attempts: 0 });
      expect(await redis.exists(`llmq:generate:${jobId}`)).toBe(0);
    } finally {
      redis.disconnect();
    }
    const sse = await readSse(`${stack.apiUrl}${streamUrl}`, { headers: { authorization: `Bearer ${key}` } });
    expect(sse.ended).toBe(true);
    expect(sse.events.map((e) => e.event)).toEqual(['cancelled']);
  });
});
