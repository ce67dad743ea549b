/**
 * The worker's provider client against the simulator as a real process: streaming, the
 * classification of failures, timeouts and cancellation closing the upstream request.
 */
import { join } from 'node:path';
import { REPO_ROOT, eventually, spawnService, type ServiceProcess } from '@llmq/testing';
import { ProviderError, streamChat } from '../src/provider';
import { TokenCoalescer } from '../src/coalescer';

let sim: ServiceProcess;
let baseUrl: string;

beforeAll(async () => {
  sim = await spawnService({
    name: 'simulator',
    command: process.execPath,
    args: [join(REPO_ROOT, 'apps', 'llm-simulator', 'dist', 'main.js')],
    env: { SIM_PORT: '0', SIM_TTFT_MS: '5', SIM_TOKEN_MS: '2', SIM_JITTER: '0' },
    ready: /listening on (http:\/\/\S+)/,
  });
  baseUrl = `${/listening on (http:\/\/\S+)/.exec(sim.readyLine)![1]}/v1`;
});
afterAll(() => sim.stop());

const spec = (content: string, params = {}) => ({
  model: 'sim-small',
  messages: [{ role: 'user' as const, content }],
  params,
});
const stats = async () =>
  (await fetch(baseUrl.replace('/v1', '/stats'))).json() as Promise<{ aborted: number; inFlight: number }>;

/** Calls the simulator with a fault header by wrapping fetch's init for one call. */
async function withFault<T>(fault: string, fn: () => Promise<T>): Promise<T> {
  const original = globalThis.fetch;
  globalThis.fetch = (input, init) =>
    original(input, {
      ...init,
      headers: { ...(init?.headers as Record<string, string>), 'x-simulator-fault': fault },
    });
  try {
    return await fn();
  } finally {
    globalThis.fetch = original;
  }
}

const call = (overrides: Partial<Parameters<typeof streamChat>[0]> = {}) => {
  const deltas: string[] = [];
  const promise = streamChat({
    baseUrl,
    spec: spec('hello there', { max_tokens: 12, seed: 1 }),
    signal: new AbortController().signal,
    timeoutMs: 10_000,
    onDelta: (d) => deltas.push(d),
    ...overrides,
  });
  return { promise, deltas };
};

it('streams deltas that add up to the result, with usage and finish reason', async () => {
  const { promise, deltas } = call();
  const result = await promise;
  expect(deltas.length).toBe(12);
  expect(deltas.join('')).toBe(result.text);
  expect(result).toMatchObject({ finishReason: 'length', usage: { completion_tokens: 12 } });
});

it('classifies a 429 as retryable and reads Retry-After', async () => {
  const error = await withFault('status=429;retry-after=7', () => call().promise).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(ProviderError);
  expect(error).toMatchObject({ code: 'upstream_429', retryable: true, status: 429, retryAfterMs: 7000 });
  const ms = await withFault('status=503;retry-after-ms=250', () => call().promise).catch((e: unknown) => e);
  expect(ms).toMatchObject({ retryable: true, retryAfterMs: 250 });
});

it('classifies a 400 as permanent', async () => {
  const error = await call({ spec: { model: 'sim-small', messages: [], params: {} } }).promise.catch(
    (e: unknown) => e,
  );
  expect(error).toMatchObject({ code: 'upstream_400', retryable: false });
});

it('treats a stream cut before [DONE] as an error, never a short result', async () => {
  let deltas: string[] = [];
  const error = await withFault('cut-after=3', () => {
    const c = call();
    deltas = c.deltas;
    return c.promise;
  }).catch((e: unknown) => e);
  expect(error).toBeInstanceOf(ProviderError);
  expect((error as ProviderError).retryable).toBe(true);
  expect(deltas.length).toBeLessThanOrEqual(3);
});

it('times out a hung provider and closes the socket', async () => {
  const before = await stats();
  const error = await withFault('hang', () => call({ timeoutMs: 300 }).promise).catch((e: unknown) => e);
  expect(error).toMatchObject({ code: 'upstream_timeout', retryable: true });
  await eventually(
    async () => (await stats()).aborted > before.aborted,
    'the simulator saw the hung request closed',
  );
});

it('aborts the upstream request when the job is cancelled', async () => {
  const before = await stats();
  const controller = new AbortController();
  const { promise } = call({ spec: spec('long', { max_tokens: 5000 }), signal: controller.signal });
  setTimeout(() => controller.abort(new Error('cancelled')), 50);
  await expect(promise).rejects.toThrow('cancelled');
  await eventually(async () => {
    const s = await stats();
    return s.aborted > before.aborted && s.inFlight === 0;
  }, 'upstream stream closed');
});

describe('TokenCoalescer', () => {
  it('sends the first delta at once, joins the next ones within the window, keeps order', async () => {
    const out: string[] = [];
    const c = new TokenCoalescer(30, async (t) => {
      await new Promise((r) => setTimeout(r, 5));
      out.push(t);
    });
    c.push('a');
    c.push('b');
    c.push('c');
    await new Promise((r) => setTimeout(r, 15));
    expect(out).toEqual(['a']); // no window paid by the first token
    await new Promise((r) => setTimeout(r, 60));
    expect(out).toEqual(['a', 'bc']);
    c.push('d'); // after a quiet spell: at once again
    await c.flush();
    expect(out).toEqual(['a', 'bc', 'd']);
  });

  it('queues its events behind an earlier append', async () => {
    const out: string[] = [];
    let release!: () => void;
    const earlier = new Promise<void>((r) => (release = r)).then(() => out.push('status'));
    const c = new TokenCoalescer(0, async (t) => void out.push(t), earlier);
    c.push('x');
    await new Promise((r) => setTimeout(r, 10));
    expect(out).toEqual([]);
    release();
    await c.flush();
    expect(out).toEqual(['status', 'x']);
  });

  it('reports an append failure on flush', async () => {
    const c = new TokenCoalescer(0, async () => {
      throw new Error('redis gone');
    });
    c.push('x');
    await expect(c.flush()).rejects.toThrow('redis gone');
  });
});
