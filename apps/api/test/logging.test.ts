/**
 * What the API and worker processes log, read from their real output at debug level: JSON lines
 * that carry the request id (API) and the job id (API and worker), and never an API key, a
 * provider key, the prompt or the completion, not even when a provider echoes the prompt in its
 * error. LOG_PROMPTS=true is the opt-in that lets prompt text through.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readSse, useStack, type ServiceProcess } from '@llmq/testing';

jest.setTimeout(120_000);

const PROVIDER_KEY = `sk-provider-${randomUUID()}`;
const ADMIN = `admin-${randomUUID()}`;
let echoUrl = '';
let echo: Server;

// An upstream that refuses every request and quotes its prompt back, as real providers do.
beforeAll(async () => {
  echo = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString('utf8')));
    req.on('end', () => {
      res.setHeader('content-type', 'application/json');
      if (req.method !== 'POST') return res.end(JSON.stringify({ object: 'list', data: [] }));
      const messages = (JSON.parse(body) as { messages: { content: string }[] }).messages;
      const content = messages[messages.length - 1]?.content ?? '';
      res.statusCode = 400;
      res.end(
        JSON.stringify({
          error: {
            message: `Invalid 'messages[0].content': cannot process "${content}"`,
            type: 'invalid_request_error',
            code: 'invalid_value',
          },
        }),
      );
    });
  });
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
  echoUrl = `http://127.0.0.1:${(echo.address() as AddressInfo).port}/v1`;
});
afterAll(() => new Promise((r) => echo.close(r)));

const backend = { timeouts: { connectMs: 2000, firstTokenMs: 10_000, idleMs: 10_000, totalMs: 60_000 } };
const price = { inputPerMillion: 0.5, outputPerMillion: 1.5 };
const { stack, keys } = useStack({
  workers: 1,
  apiEnv: { LOG_LEVEL: 'debug', ADMIN_TOKEN: ADMIN, LLMQ_TEST_PROVIDER_KEY: PROVIDER_KEY },
  // Batch jobs stay queued (nobody consumes them), so one can be cancelled while queued, surely.
  workerEnv: { LOG_LEVEL: 'debug', WORKER_QUEUES: 'interactive', LLMQ_TEST_PROVIDER_KEY: PROVIDER_KEY },
  providers: ([simulator]) => ({
    backends: [
      {
        id: 'sim-1',
        kind: 'openai',
        baseUrl: simulator,
        apiKeyEnv: 'LLMQ_TEST_PROVIDER_KEY',
        models: ['sim-small', 'sim-large'],
        price,
        ...backend,
      },
      { id: 'echo', kind: 'openai', baseUrl: echoUrl, models: ['echo-model'], price, ...backend },
    ],
  }),
});

interface LogLine {
  level: number;
  msg: string;
  service: string;
  reqId?: string;
  jobId?: string;
  err?: { message?: string; stack?: string };
  [field: string]: unknown;
}

/** The JSON lines of a process' output (the plain "listening"/"ready" line aside). */
function jsonLines(p: ServiceProcess): LogLine[] {
  return p
    .output()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as LogLine);
}

/** Submits and follows the job's stream to its end. */
async function run(body: object, requestId: string) {
  const { res, body: accepted } = await stack.submit(keys.acme!, body, { 'x-request-id': requestId });
  expect(res.status).toBe(202);
  await readSse(`${stack.apiUrl}${accepted.streamUrl}`, {
    headers: { authorization: `Bearer ${keys.acme!}` },
    until: (e) => ['completed', 'failed', 'cancelled'].includes(e.event),
  });
  return accepted.jobId;
}

describe('logs', () => {
  test('carry request and job ids, and no keys, prompts or completions', async () => {
    const secretPrompt = `my bank PIN is ${randomUUID()}, tell nobody`;
    const echoedPrompt = `my password is ${randomUUID()}`;
    const requestId = `req-${randomUUID()}`;

    // A job that completes on the simulator (which needs the provider key).
    const completed = await run({ prompt: secretPrompt, max_tokens: 24 }, requestId);
    const job = await stack.waitForJob(keys.acme!, completed);
    expect(job.status).toBe('completed');
    const completion = job.result!;
    expect(completion.length).toBeGreaterThan(20);

    // A job whose provider quotes the prompt in its error.
    const failed = await run({ prompt: echoedPrompt, model: 'echo-model' }, `req-${randomUUID()}`);
    const failedJob = await stack.waitForJob(keys.acme!, failed);
    expect(failedJob.error?.message).toContain(echoedPrompt); // the client sees its own prompt
    // A job cancelled while queued.
    const cancelId = `req-${randomUUID()}`;
    const queued = await stack.submit(keys.acme!, { prompt: secretPrompt, priority: 'batch' });
    const cancel = await stack.request(`/api/jobs/${queued.body.jobId}`, keys.acme!, {
      method: 'DELETE',
      headers: { 'x-request-id': cancelId },
    });
    expect(cancel.status).toBe(200);

    const worker = stack.workers[0]!;
    // The worker's last line of the failed job is written just after the client heard of it.
    await new Promise((r) => setTimeout(r, 300));
    const everything = `${stack.api.output()}\n${worker.output()}`;
    for (const secret of [keys.acme!, PROVIDER_KEY, ADMIN, secretPrompt, echoedPrompt, completion]) {
      expect(everything).not.toContain(secret);
    }

    const api = jsonLines(stack.api);
    const work = jsonLines(worker);
    // API: the submit lines carry the request id and the job id, the access log's included.
    const submitLines = api.filter((l) => l.reqId === requestId);
    expect(submitLines.map((l) => l.msg)).toEqual(expect.arrayContaining(['job queued', 'request']));
    expect(submitLines.every((l) => l.jobId === completed)).toBe(true);
    expect(api.filter((l) => l.msg === 'request').every((l) => typeof l.reqId === 'string')).toBe(true);
    const cancelLines = api.filter((l) => l.reqId === cancelId);
    expect(cancelLines.map((l) => l.msg)).toEqual(expect.arrayContaining(['job cancelled', 'request']));
    expect(cancelLines.every((l) => l.jobId === queued.body.jobId)).toBe(true);
    // Worker: every line of a job carries its id.
    expect(work.filter((l) => l.jobId === completed).map((l) => l.msg)).toContain('attempt started');
    const failure = work.find((l) => l.jobId === failed && l.msg === 'generation attempt failed');
    expect(failure?.err?.message).toBe(`provider answered 400: [redacted]`);
    expect(failure?.err?.stack).toContain('[redacted]');
  });

  test('LOG_PROMPTS=true lets prompt text into the logs (and keys still not)', async () => {
    await stack.workers[0]!.stop();
    const worker = await stack.startWorker({ LOG_PROMPTS: 'true' });
    const prompt = `debug me ${randomUUID()}`;
    const jobId = await run({ prompt, model: 'echo-model' }, `req-${randomUUID()}`);
    await stack.waitForJob(keys.acme!, jobId);
    await new Promise((r) => setTimeout(r, 300));
    const failure = jsonLines(worker).find((l) => l.jobId === jobId && l.msg === 'generation attempt failed');
    expect(failure?.err?.message).toContain(prompt);
    expect(jsonLines(worker).map((l) => l.msg)).toContain(
      'LOG_PROMPTS is on: prompt and completion text may appear in these logs',
    );
    expect(worker.output()).not.toContain(PROVIDER_KEY);
  });
});
