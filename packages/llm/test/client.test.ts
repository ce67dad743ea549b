/**
 * The LLM client against simulator processes (several instances, as several backends), with
 * faults injected per instance. Real HTTP, real Redis for the fleet limits.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, startRedisServer } from '@llmq/embedded';
import { REPO_ROOT, eventually, spawnService, type ServiceProcess } from '@llmq/testing';
import { Redis } from 'ioredis';
import {
  AttemptsExhaustedError,
  LlmClient,
  ProviderError,
  RedisFleetLimiter,
  RetryLaterError,
  StreamBrokenError,
  buildRegistry,
  type LlmClientOptions,
} from '../src';

jest.setTimeout(60_000);

const sims: ServiceProcess[] = [];
const urls: string[] = [];

beforeAll(async () => {
  for (let i = 0; i < 3; i++) {
    const sim = await spawnService({
      name: `sim-${i + 1}`,
      command: process.execPath,
      args: [join(REPO_ROOT, 'apps', 'llm-simulator', 'dist', 'main.js')],
      env: { SIM_PORT: '0', SIM_NAME: `sim-${i + 1}`, SIM_TTFT_MS: '5', SIM_TOKEN_MS: '2', SIM_JITTER: '0' },
      ready: /listening on (http:\/\/\S+)/,
    });
    sims.push(sim);
    urls.push(/listening on (http:\/\/\S+)/.exec(sim.readyLine)![1]!);
  }
});
afterAll(() => Promise.all(sims.map((s) => s.stop())));

let clients: LlmClient[] = [];
beforeEach(async () => {
  await Promise.all(urls.map((u) => setFault(u, null)));
  await Promise.all(urls.map((u) => fetch(`${u}/stats/reset`, { method: 'POST' })));
});
afterEach(async () => {
  await Promise.all(clients.map((c) => c.close()));
  clients = [];
});

async function setFault(url: string, fault: string | null): Promise<void> {
  const res = await fetch(`${url}/admin/fault`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ fault }),
  });
  if (!res.ok) throw new Error(`could not set fault ${fault}: ${res.status} ${await res.text()}`);
}

interface Stats {
  requests: { chatStream: number; messagesStream?: number };
  completed: number;
  aborted: number;
  inFlight: number;
  faults: Record<string, number>;
}
const stats = async (i: number) => (await (await fetch(`${urls[i]}/stats`)).json()) as Stats;
const calls = async (i: number) => {
  const s = await stats(i);
  return s.requests.chatStream + (s.requests.messagesStream ?? 0);
};

const backend = (i: number, extra: object = {}) => ({
  id: `sim-${i + 1}`,
  kind: 'openai',
  baseUrl: `${urls[i]}/v1`,
  models: ['sim-small', 'sim-large'],
  timeouts: { connectMs: 1000, firstTokenMs: 2000, idleMs: 2000, totalMs: 20_000 },
  ...extra,
});

function client(document: object, options: Partial<LlmClientOptions> = {}): LlmClient {
  const c = new LlmClient({
    registry: buildRegistry(document),
    secrets: () => undefined,
    backoff: { baseMs: 20, capMs: 100 },
    breaker: { minRequests: 3, errorRatio: 0.5, openMs: 500 },
    ...options,
  });
  clients.push(c);
  return c;
}

const spec = (model = 'sim-small', max_tokens = 8) => ({
  model,
  messages: [{ role: 'user' as const, content: 'hello' }],
  params: { max_tokens, seed: 1 },
});

function run(c: LlmClient, model = 'sim-small', opts: { signal?: AbortSignal; max_tokens?: number } = {}) {
  const deltas: string[] = [];
  const promise = c.stream({
    spec: spec(model, opts.max_tokens ?? 8),
    signal: opts.signal ?? new AbortController().signal,
    onDelta: (d) => deltas.push(d),
  });
  return { promise, deltas };
}

it('streams through a backend and reports usage, cost and who served it', async () => {
  const c = client({ backends: [backend(0, { price: { inputPerMillion: 1, outputPerMillion: 2 } })] });
  const { promise, deltas } = run(c);
  const r = await promise;
  expect(r).toMatchObject({ model: 'sim-small', backendId: 'sim-1', attempts: 1, finishReason: 'length' });
  expect(deltas.join('')).toBe(r.text);
  expect(r.usage.completion_tokens).toBe(8);
  expect(r.costUsd).toBeCloseTo((r.usage.prompt_tokens * 1 + 8 * 2) / 1e6, 9);
});

it('honours Retry-After: a 429 with Retry-After: 2 is retried no sooner than 2 s later, then succeeds', async () => {
  await setFault(urls[0]!, 'status=429;retry-after=2;rate=0.5'); // first call 429, second fine
  const attempts: number[] = [];
  const c = client({ backends: [backend(0)] }, { hooks: { onAttempt: () => attempts.push(Date.now()) } });
  const r = await run(c).promise;
  expect(r.attempts).toBe(2);
  expect(attempts).toHaveLength(2);
  expect(attempts[1]! - attempts[0]!).toBeGreaterThanOrEqual(1990);
  expect((await stats(0)).faults.status).toBe(1);
});

it('turns a long Retry-After into a later run instead of spinning', async () => {
  await setFault(urls[0]!, 'status=429;retry-after=3600');
  const c = client({ backends: [backend(0)] });
  const error = await run(c).promise.catch((e: unknown) => e);
  expect(error).toBeInstanceOf(RetryLaterError);
  expect((error as RetryLaterError).retryAfterMs).toBeGreaterThan(3_500_000);
  expect(await calls(0)).toBe(1); // asked once, then stopped asking
});

it('moves traffic off a failing backend to the healthy one', async () => {
  await setFault(urls[0]!, 'status=500');
  const c = client({ backends: [backend(0), backend(1)] }, { healthIntervalMs: 60_000 });
  const results = [];
  for (let i = 0; i < 20; i++) results.push(await run(c).promise);
  expect(results.every((r) => r.backendId === 'sim-2')).toBe(true);
  // A failed call is retried elsewhere and counts as slow for routing: sim-1 gets next to nothing.
  expect(await calls(0)).toBeLessThanOrEqual(3);
  expect(await calls(1)).toBe(20);
});

it('opens the breaker on the error ratio, half-opens for one probe, and closes on its success', async () => {
  await setFault(urls[0]!, 'status=503');
  const c = client(
    { backends: [backend(0)] },
    { attemptsPerModel: 1, maxInlineWaitMs: 0, healthIntervalMs: 60_000 },
  );
  for (let i = 0; i < 3; i++) await expect(run(c).promise).rejects.toBeInstanceOf(AttemptsExhaustedError);
  const sim1 = c.backendStates().get('sim-1')!;
  expect(sim1.breaker.current).toBe('open');
  // Open: requests are not sent at all; the caller is told when to come back.
  const refused = await run(c).promise.catch((e: unknown) => e);
  expect(refused).toBeInstanceOf(RetryLaterError);
  expect(await calls(0)).toBe(3);
  await setFault(urls[0]!, null);
  await new Promise((r) => setTimeout(r, 550)); // past openMs
  expect(sim1.breaker.current).toBe('half_open');
  const probe = await run(c).promise;
  expect(probe.backendId).toBe('sim-1');
  expect(sim1.breaker.current).toBe('closed');
  expect(await calls(0)).toBe(4);
});

it('a failed probe re-opens the breaker for longer', async () => {
  await setFault(urls[0]!, 'status=503');
  const c = client(
    { backends: [backend(0)] },
    { attemptsPerModel: 1, maxInlineWaitMs: 0, healthIntervalMs: 60_000 },
  );
  for (let i = 0; i < 3; i++) await run(c).promise.catch(() => undefined);
  const sim1 = c.backendStates().get('sim-1')!;
  await new Promise((r) => setTimeout(r, 550));
  await expect(run(c).promise).rejects.toBeInstanceOf(AttemptsExhaustedError); // the probe fails
  expect(sim1.breaker.current).toBe('open');
  await new Promise((r) => setTimeout(r, 550));
  expect(sim1.breaker.current).toBe('open'); // 1 s this time
});

it('active health checks notice a backend coming back', async () => {
  await setFault(urls[0]!, 'status=500');
  const c = client(
    { backends: [backend(0)] },
    {
      attemptsPerModel: 1,
      maxInlineWaitMs: 0,
      healthIntervalMs: 100,
      breaker: { minRequests: 2, errorRatio: 0.5, openMs: 60_000 },
    },
  );
  c.startHealthChecks();
  for (let i = 0; i < 2; i++) await run(c).promise.catch(() => undefined);
  const sim1 = c.backendStates().get('sim-1')!;
  expect(sim1.breaker.current).toBe('open');
  await setFault(urls[0]!, null);
  // Open for a minute, but the health check sees it answer and lets a probe through.
  await eventually(
    async () => sim1.breaker.current === 'half_open',
    'the health check half-opened the breaker',
    5000,
  );
  expect((await run(c).promise).backendId).toBe('sim-1');
});

it('times out a hung backend (first-token timeout) and closes the socket', async () => {
  await setFault(urls[0]!, 'hang');
  const c = client({
    backends: [
      backend(0, { timeouts: { connectMs: 1000, firstTokenMs: 300, idleMs: 2000, totalMs: 20_000 } }),
    ],
  });
  const error = await run(c).promise.catch((e: unknown) => e);
  expect(error).toBeInstanceOf(AttemptsExhaustedError);
  expect((error as AttemptsExhaustedError).last.code).toBe('upstream_first_token_timeout');
  await eventually(async () => (await stats(0)).inFlight === 0, 'the simulator saw the hung requests closed');
  expect((await stats(0)).aborted).toBe(3);
});

it('fails loudly when a stream breaks after tokens were sent, and never falls back then', async () => {
  await setFault(urls[0]!, 'cut-after=3');
  const c = client({
    backends: [backend(0, { models: ['sim-small'] }), backend(1, { models: ['sim-large'] })],
    models: [{ name: 'sim-small', fallback: ['sim-large'] }],
  });
  const { promise, deltas } = run(c);
  const error = await promise.catch((e: unknown) => e);
  expect(error).toBeInstanceOf(StreamBrokenError);
  expect((error as StreamBrokenError).tokensSent).toBe(3);
  expect(deltas).toHaveLength(3);
  expect(await calls(1)).toBe(0); // no fallback after the first token
});

it('falls back to the next model before the first token', async () => {
  await setFault(urls[0]!, 'status=503');
  const fallbacks: string[] = [];
  const c = client(
    {
      backends: [backend(0, { models: ['sim-small'] }), backend(1, { models: ['sim-large'] })],
      models: [{ name: 'sim-small', fallback: ['sim-large'] }],
    },
    { hooks: { onFallback: (e) => fallbacks.push(`${e.from}->${e.to}`) } },
  );
  const r = await run(c).promise;
  expect(r).toMatchObject({ model: 'sim-large', backendId: 'sim-2' });
  expect(fallbacks).toEqual(['sim-small->sim-large']);
  expect(await calls(0)).toBe(3); // attemptsPerModel, then the fallback
});

it('fails fast on 400 and 401: one call, no retry, the provider reason kept', async () => {
  await Promise.all(urls.slice(0, 2).map((u) => setFault(u, 'status=401')));
  const c = client({ backends: [backend(0), backend(1)] });
  const e401 = await run(c).promise.catch((e: unknown) => e);
  expect(e401).toBeInstanceOf(ProviderError);
  expect(e401).toMatchObject({ code: 'upstream_401', errorClass: 'fatal' });
  await Promise.all(urls.slice(0, 2).map((u) => setFault(u, null)));
  const bad = await c
    .stream({
      spec: { model: 'sim-small', messages: [], params: {} },
      signal: new AbortController().signal,
      onDelta: () => undefined,
    })
    .catch((e: unknown) => e);
  expect(bad).toMatchObject({ code: 'upstream_400', errorClass: 'fatal' });
  const [a, b] = [await stats(0), await stats(1)];
  expect((a.faults.status ?? 0) + (b.faults.status ?? 0)).toBe(1); // the 401: one call
  const rejected = (x: Stats) => (x as unknown as { rejected: number }).rejected;
  expect(rejected(a) + rejected(b)).toBe(1); // the 400: one call
  expect(a.requests.chatStream + b.requests.chatStream).toBe(1); // nothing retried
});

it('cancellation aborts the upstream request within a second and bills nothing more', async () => {
  const c = client({ backends: [backend(0)] });
  const controller = new AbortController();
  const { promise, deltas } = run(c, 'sim-small', { signal: controller.signal, max_tokens: 5000 });
  await eventually(async () => deltas.length > 0, 'tokens flowing');
  const at = Date.now();
  controller.abort(new Error('cancelled'));
  await expect(promise).rejects.toThrow('cancelled');
  await eventually(
    async () => (await stats(0)).aborted === 1 && (await stats(0)).inFlight === 0,
    'upstream closed',
    1000,
  );
  expect(Date.now() - at).toBeLessThan(1000);
  const count = deltas.length;
  await new Promise((r) => setTimeout(r, 100));
  expect(deltas.length).toBe(count);
});

it('keeps two workers together under a fleet-wide requests-per-minute limit', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'llmq-limits-'));
  const redis = await startRedisServer({ port: await freePort(), dataDir: dir });
  const connections = [new Redis(redis.url), new Redis(redis.url)];
  try {
    const doc = { backends: [backend(0, { limits: { requestsPerMinute: 5 } })] };
    const workers = connections.map((conn) =>
      client(doc, { limiter: new RedisFleetLimiter(conn, { prefix: 'fleet-test' }), maxInlineWaitMs: 200 }),
    );
    const outcomes = await Promise.allSettled(
      Array.from({ length: 12 }, (_, i) => run(workers[i % 2]!).promise),
    );
    const ok = outcomes.filter((o) => o.status === 'fulfilled').length;
    const later = outcomes.filter(
      (o) => o.status === 'rejected' && o.reason instanceof RetryLaterError,
    ).length;
    expect(ok).toBe(5);
    expect(later).toBe(7);
    expect(await calls(0)).toBe(5);
  } finally {
    connections.forEach((c) => c.disconnect());
    await redis.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

it('speaks the Anthropic Messages API end to end', async () => {
  const c = client({
    backends: [{ ...backend(0), kind: 'anthropic', models: [{ name: 'claude', upstream: 'sim-small' }] }],
  });
  const { promise, deltas } = run(c, 'claude');
  const r = await promise;
  expect(r).toMatchObject({ model: 'claude', finishReason: 'length', usage: { completion_tokens: 8 } });
  expect(r.usage.prompt_tokens).toBeGreaterThan(0);
  expect(deltas.join('')).toBe(r.text);
  expect((await stats(0)).requests.messagesStream).toBe(1);
  // Same text as the OpenAI endpoint gives for the same request.
  const openai = client({ backends: [backend(1)] });
  expect((await run(openai, 'sim-small').promise).text.split(' ').length).toBe(8);
});
