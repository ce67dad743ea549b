/**
 * The embedder against real simulator processes (faults injected through /admin/fault, requests
 * counted through /stats), and a few answers only a hand-written server gives.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { AttemptsExhaustedError, ProviderError, RetryLaterError } from '@llmq/llm';
import { REPO_ROOT, spawnService, type ServiceProcess } from '@llmq/testing';
import { Embedder, EmbeddingDimensionError, type EmbedderOptions } from '../src/embedder';

jest.setTimeout(60_000);

const READY = /listening on (http:\/\/\S+)/;
let sim: ServiceProcess;
let sim8: ServiceProcess;
let url = '';
let url8 = '';

async function startSimulator(name: string, env: Record<string, string> = {}) {
  const service = await spawnService({
    name,
    command: process.execPath,
    args: [join(REPO_ROOT, 'apps', 'llm-simulator', 'dist', 'main.js')],
    env: { SIM_PORT: '0', SIM_NAME: name, ...env },
    ready: READY,
  });
  return { service, url: READY.exec(service.readyLine)![1]! };
}

beforeAll(async () => {
  const [a, b] = await Promise.all([
    startSimulator('sim-embed'),
    startSimulator('sim-embed-8', { SIM_EMBEDDING_DIM: '8' }),
  ]);
  [sim, url, sim8, url8] = [a.service, a.url, b.service, b.url];
});
afterAll(() => Promise.all([sim?.stop(), sim8?.stop()]));

beforeEach(async () => {
  await setFault(null);
  await fetch(`${url}/stats/reset`, { method: 'POST' });
});

async function setFault(fault: string | null): Promise<void> {
  const res = await fetch(`${url}/admin/fault`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ fault }),
  });
  if (!res.ok) throw new Error(`could not set fault ${fault}: ${res.status} ${await res.text()}`);
}

interface Stats {
  requests: { embeddings: number };
  faults: { status: number; hang: number };
}
const stats = async (base = url) => (await (await fetch(`${base}/stats`)).json()) as Stats;

const embedder = (extra: Partial<EmbedderOptions> = {}) =>
  new Embedder({
    baseUrl: `${url}/v1`,
    model: 'text-embedding-3-small',
    dimensions: 384,
    backoff: { baseMs: 1, capMs: 5 },
    ...extra,
  });

const texts = (n: number) => Array.from({ length: n }, (_, i) => `document ${i} about topic ${i % 7}`);

/** The error a promise rejects with (failing the test if it resolves). */
async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected a rejection');
}

describe('Embedder against the simulator', () => {
  it('sends ceil(n / batchSize) requests and keeps the input order', async () => {
    const inputs = texts(150);
    const vectors = await embedder({ batchSize: 64 }).embedMany(inputs);
    expect((await stats()).requests.embeddings).toBe(3);
    expect(vectors).toHaveLength(150);
    for (const v of vectors) expect(v).toHaveLength(384);
    // The simulator's vectors depend on the text alone: each must match its own text's.
    const one = embedder();
    for (const i of [0, 63, 64, 127, 128, 149]) expect(vectors[i]).toEqual(await one.embed(inputs[i]!));
    expect(vectors[0]).not.toEqual(vectors[1]);
  });

  it('batches 64 inputs a request by default, and sends none for no input', async () => {
    await embedder().embedMany(texts(129));
    expect((await stats()).requests.embeddings).toBe(3);
    expect(await embedder().embedMany([])).toEqual([]);
    expect((await stats()).requests.embeddings).toBe(3);
  });

  it('retries through injected 500s and 429s, each batch getting its answer', async () => {
    const inputs = texts(30);
    const expected = await embedder({ batchSize: 10 }).embedMany(inputs);
    for (const fault of ['status=500;rate=0.5', 'status=429;rate=0.5']) {
      await fetch(`${url}/stats/reset`, { method: 'POST' });
      await setFault(fault);
      // Every other request fails: the first attempt of each of the 3 batches.
      expect(await embedder({ batchSize: 10 }).embedMany(inputs)).toEqual(expected);
      const s = await stats();
      expect(s.requests.embeddings).toBe(6);
      expect(s.faults.status).toBe(3);
    }
  });

  it('waits as long as Retry-After says, in milliseconds or seconds', async () => {
    await setFault('status=429;retry-after-ms=400;rate=0.5');
    let started = Date.now();
    await embedder().embed('hello');
    expect(Date.now() - started).toBeGreaterThanOrEqual(400);

    await setFault('status=503;retry-after=1;rate=0.5');
    started = Date.now();
    await embedder().embed('hello');
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
    expect((await stats()).requests.embeddings).toBe(4);
  });

  it('hands a Retry-After longer than maxInlineWaitMs back to the caller', async () => {
    await setFault('status=429;retry-after=30');
    const error = await rejection(embedder().embed('hello'));
    expect(error).toBeInstanceOf(RetryLaterError);
    expect((error as RetryLaterError).retryAfterMs).toBe(30_000);
    expect((await stats()).requests.embeddings).toBe(1);
  });

  it('gives up after maxAttempts with the last provider error', async () => {
    await setFault('status=503');
    const error = await rejection(embedder({ maxAttempts: 3 }).embed('hello'));
    expect(error).toBeInstanceOf(AttemptsExhaustedError);
    const { attempts, last } = error as AttemptsExhaustedError;
    expect(attempts).toBe(3);
    expect(last.details.status).toBe(503);
    expect((await stats()).requests.embeddings).toBe(3);
  });

  it.each([
    [400, /provider answered 400: The request was rejected with status 400/],
    [401, /provider answered 401: Incorrect API key provided/],
    [404, /provider answered 404/],
  ])('fails at once on a %i, with the provider message', async (status, message) => {
    await setFault(`status=${status}`);
    const error = await rejection(embedder().embedMany(texts(3)));
    expect(error).toBeInstanceOf(ProviderError);
    expect((error as ProviderError).errorClass).toBe('fatal');
    expect(error.message).toMatch(message);
    expect((await stats()).requests.embeddings).toBe(1);
  });

  it('retries a request that hangs past timeoutMs', async () => {
    await setFault('hang;rate=0.5');
    const started = Date.now();
    expect(await embedder({ timeoutMs: 300 }).embed('hello')).toHaveLength(384);
    expect(Date.now() - started).toBeGreaterThanOrEqual(300);
    const s = await stats();
    expect(s.requests.embeddings).toBe(2);
    expect(s.faults.hang).toBe(1);
  });

  it('stops at once when the caller aborts, without retrying', async () => {
    await setFault('hang');
    const controller = new AbortController();
    const reason = new Error('the job was cancelled');
    setTimeout(() => controller.abort(reason), 100);
    const started = Date.now();
    await expect(embedder().embedMany(['hello'], controller.signal)).rejects.toBe(reason);
    expect(Date.now() - started).toBeLessThan(2_000);
    expect((await stats()).requests.embeddings).toBe(1);
  });

  it('refuses vectors of the wrong length without retrying, naming both lengths', async () => {
    await fetch(`${url8}/stats/reset`, { method: 'POST' });
    const error = await rejection(embedder({ baseUrl: `${url8}/v1` }).embedMany(texts(5)));
    expect(error).toBeInstanceOf(EmbeddingDimensionError);
    expect(error).toMatchObject({ expected: 384, actual: 8 });
    expect(error.message).toMatch(/8 dimensions, but 384 are configured/);
    expect((await stats(url8)).requests.embeddings).toBe(1);
    expect(await embedder({ baseUrl: `${url8}/v1`, dimensions: 8 }).embed('hello')).toHaveLength(8);
  });

  it('retries connection failures, then reports them', async () => {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    await new Promise((resolve) => server.close(resolve));
    const error = await rejection(
      embedder({ baseUrl: `http://127.0.0.1:${port}/v1`, maxAttempts: 2 }).embed('hello'),
    );
    expect(error).toBeInstanceOf(AttemptsExhaustedError);
    expect((error as AttemptsExhaustedError).last.code).toBe('upstream_connection');
    expect(error.message).toMatch(/ECONNREFUSED/);
  });
});

describe('Embedder against a hand-written provider', () => {
  let server: Server;
  let base = '';
  let answer: (req: IncomingMessage, body: { input: string[] }) => [number, unknown];
  const seen: { authorization?: string; body: unknown }[] = [];

  beforeAll(async () => {
    server = createServer((req, res) => {
      let raw = '';
      req.on('data', (chunk: Buffer) => (raw += chunk.toString()));
      req.on('end', () => {
        const body = JSON.parse(raw) as { input: string[] };
        seen.push({ authorization: req.headers.authorization, body });
        const [status, json] = answer(req, body);
        res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(json));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/`;
  });
  afterAll(() => new Promise((resolve) => server.close(resolve)));
  beforeEach(() => (seen.length = 0));

  const vectorOf = (text: string) => [text.length, text.charCodeAt(0), 1];
  const local = (extra: Partial<EmbedderOptions> = {}) =>
    new Embedder({ baseUrl: base, model: 'm', dimensions: 3, backoff: { baseMs: 1 }, ...extra });

  it('puts vectors in input order by their index, whatever order they come in', async () => {
    answer = (_req, { input }) => [
      200,
      { data: input.map((t, index) => ({ index, embedding: vectorOf(t) })).reverse() },
    ];
    const inputs = ['a', 'bb', 'ccc', 'dddd', 'eeeee'];
    expect(await local({ batchSize: 2 }).embedMany(inputs)).toEqual(inputs.map(vectorOf));
    expect(seen.map((s) => s.body)).toEqual([
      { model: 'm', input: ['a', 'bb'], encoding_format: 'float' },
      { model: 'm', input: ['ccc', 'dddd'], encoding_format: 'float' },
      { model: 'm', input: ['eeeee'], encoding_format: 'float' },
    ]);
  });

  it('decodes base64 vectors from a provider that ignores encoding_format', async () => {
    const floats = Buffer.alloc(12);
    [0.5, -1, 2].forEach((x, i) => floats.writeFloatLE(x, i * 4));
    answer = () => [200, { data: [{ index: 0, embedding: floats.toString('base64') }] }];
    expect(await local().embed('x')).toEqual([0.5, -1, 2]);
  });

  it('retries a malformed answer, then says what was wrong with it', async () => {
    answer = () => [200, { data: [{ index: 5, embedding: [1, 2, 3] }] }];
    const error = await rejection(local({ maxAttempts: 2 }).embed('x'));
    expect(error).toBeInstanceOf(AttemptsExhaustedError);
    expect(error.message).toMatch(/malformed answer: .*index/);
    expect(seen).toHaveLength(2);
  });

  it('sends the key as a bearer token and never shows it', async () => {
    const apiKey = 'sk-test-0123456789abcdef';
    answer = (req) => [
      401,
      { error: { message: `Incorrect API key provided: ${req.headers.authorization?.slice(7)}` } },
    ];
    const keyed = local({ apiKey });
    const error = await rejection(keyed.embed('x'));
    expect(seen[0]!.authorization).toBe(`Bearer ${apiKey}`);
    expect(error.message).toMatch(/Incorrect API key provided: \[redacted\]/);
    for (const shown of [error.message, error.stack, inspect(error, { depth: 5 }), inspect(keyed)]) {
      expect(shown).not.toContain(apiKey);
    }
    expect(JSON.stringify(keyed)).not.toContain(apiKey);
  });

  it('sends no authorization header without a key', async () => {
    answer = (_req, { input }) => [
      200,
      { data: input.map((t, index) => ({ index, embedding: vectorOf(t) })) },
    ];
    await local().embed('x');
    expect(seen[0]!.authorization).toBeUndefined();
  });
});

describe('Embedder options', () => {
  const base = { baseUrl: 'http://127.0.0.1:1/v1', model: 'm', dimensions: 3 };

  it.each([
    [{ batchSize: 0 }, /batchSize must be an integer from 1 to 2048, got 0/],
    [{ batchSize: 4096 }, /batchSize .* got 4096/],
    [{ dimensions: 0 }, /dimensions must be an integer of at least 1, got 0/],
    [{ maxAttempts: 0 }, /maxAttempts .* got 0/],
    [{ timeoutMs: 1.5 }, /timeoutMs .* got 1.5/],
  ])('rejects %j', (extra, message) => {
    expect(() => new Embedder({ ...base, ...extra })).toThrow(message);
  });

  it('refuses an empty text before sending anything', async () => {
    await expect(new Embedder(base).embedMany(['a', ''])).rejects.toThrow(/texts\[1\] is empty/);
  });
});
