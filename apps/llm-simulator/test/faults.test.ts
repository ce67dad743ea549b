import { parseFaultSpec, FaultSpecError } from '../src';
import {
  chunksOf,
  eventually,
  FAST,
  getStats,
  post,
  readEvents,
  sleep,
  streamedText,
  USER_HELLO,
  useSimulator,
} from './helpers';

const CHAT = { model: 'sim-small', messages: USER_HELLO, max_tokens: 8 };
const STREAM = { ...CHAT, stream: true };

describe('fault specs', () => {
  it.each([
    ['status=429;retry-after=2', { kind: 'status', status: 429, retryAfterSeconds: 2 }, 1],
    ['status=503; retry-after-ms=1500', { kind: 'status', status: 503, retryAfterMs: 1500 }, 1],
    ['hang', { kind: 'hang' }, 1],
    ['cut-after=5', { kind: 'stream', cutAfter: 5 }, 1],
    ['trickle=300;cut-after=2;rate=0.25', { kind: 'stream', cutAfter: 2, trickleMs: 300 }, 0.25],
    ['STATUS=500;', { kind: 'status', status: 500 }, 1],
  ])('parses %s', (text, action, rate) => {
    expect(parseFaultSpec(text)).toMatchObject({ action, rate });
  });

  it('treats an empty spec and none as no fault', () => {
    expect(parseFaultSpec('')).toBeUndefined();
    expect(parseFaultSpec(' none ')).toBeUndefined();
  });

  it.each([
    ['status=abc', 'status=abc'],
    ['status=200', 'status=200'],
    ['explode', 'explode'],
    ['hang=3', 'hang=3'],
    ['cut-after', 'cut-after'],
    ['status=500;hang', 'hang'],
    ['retry-after=2', 'retry-after=2'],
    ['status=429;rate=2', 'rate=2'],
    ['rate=0.5', 'rate=0.5'],
    ['status=500;status=502', 'status=502'],
    ['none;hang', 'none'],
  ])('rejects %s, naming the directive %s', (text, directive) => {
    expect(() => parseFaultSpec(text)).toThrow(FaultSpecError);
    expect(() => parseFaultSpec(text)).toThrow(`"${directive}"`);
  });
});

describe('faults by header', () => {
  const running = useSimulator({ ...FAST, ttftMs: 0, tokenMs: 5 });
  const chatUrl = () => `${running().url}/v1/chat/completions`;

  it('answers status=429 with Retry-After headers and a rate-limit error', async () => {
    const response = await post(chatUrl(), CHAT, {
      'x-simulator-fault': 'status=429;retry-after=2;retry-after-ms=1500',
    });
    expect(response.status).toBe(429);
    expect(response.headers.get('retry-after')).toBe('2');
    expect(response.headers.get('retry-after-ms')).toBe('1500');
    expect(response.headers.get('x-simulator-fault-applied')).toBe(
      'status=429;retry-after=2;retry-after-ms=1500',
    );
    expect(await response.json()).toMatchObject({
      error: { type: 'rate_limit_exceeded', code: 'rate_limit_exceeded' },
    });
  });

  it('answers status=500 with a server error, counted as a fault and not as completed', async () => {
    const response = await post(chatUrl(), STREAM, { 'x-simulator-fault': 'status=500' });
    expect(response.status).toBe(500);
    expect(await response.json()).toMatchObject({ error: { type: 'server_error' } });
    const stats = await getStats(running().url);
    expect(stats.faults.status).toBe(1);
    expect(stats.requests.chatStream).toBe(1);
    expect(stats.completed).toBe(0);
    expect(stats.inFlight).toBe(0);
  });

  it('hangs until the client gives up, then counts the request aborted', async () => {
    const { url } = running();
    const controller = new AbortController();
    const pending = post(chatUrl(), CHAT, { 'x-simulator-fault': 'hang' }, controller.signal);
    await eventually(async () => expect((await getStats(url)).inFlight).toBe(1));
    await sleep(100);
    expect((await getStats(url)).completed).toBe(0);

    controller.abort();
    await expect(pending).rejects.toThrow(/abort/i);
    await eventually(async () => {
      expect(await getStats(url)).toMatchObject({ aborted: 1, inFlight: 0, faults: { hang: 1 } });
    });
  });

  it('cuts a stream after N content tokens, without a finish chunk or [DONE]', async () => {
    const response = await post(chatUrl(), STREAM, { 'x-simulator-fault': 'cut-after=3' });
    expect(response.status).toBe(200);
    const read = await readEvents(response);
    const chunks = chunksOf(read);

    expect(read.error).toBeDefined();
    expect(read.events.some((e) => e.data === '[DONE]')).toBe(false);
    expect(chunks.filter((c) => c.choices[0]?.delta.content)).toHaveLength(3);
    expect(chunks.some((c) => c.choices[0]?.finish_reason)).toBe(false);
    const stats = await getStats(running().url);
    expect(stats).toMatchObject({ tokens: 3, completed: 0, aborted: 0, inFlight: 0, faults: { cut: 1 } });
  });

  it('cuts a stream at once with cut-after=0, and drops a non-streaming answer entirely', async () => {
    const zero = await readEvents(await post(chatUrl(), STREAM, { 'x-simulator-fault': 'cut-after=0' }));
    expect(zero.error).toBeDefined();
    expect(streamedText(chunksOf(zero))).toBe('');
    await expect(post(chatUrl(), CHAT, { 'x-simulator-fault': 'cut-after=2' })).rejects.toThrow();
    expect((await getStats(running().url)).faults.cut).toBe(2);
  });

  it('trickles tokens at the given interval and still completes', async () => {
    const started = Date.now();
    const response = await post(
      chatUrl(),
      { ...STREAM, max_tokens: 4 },
      { 'x-simulator-fault': 'trickle=80' },
    );
    const read = await readEvents(response);
    const contentAt = read.events.slice(1, 5).map((e) => e.at - started);

    expect(read.events.at(-1)?.data).toBe('[DONE]');
    expect(contentAt).toHaveLength(4);
    contentAt.forEach((at, k) => expect(at).toBeGreaterThanOrEqual(k * 80 - 5));
    expect(await getStats(running().url)).toMatchObject({ completed: 1, faults: { trickle: 1 } });
  });

  it('applies a fault at the given rate, in a fixed pattern that a stats reset restarts', async () => {
    const statuses = async (count: number) => {
      const result: number[] = [];
      for (let i = 0; i < count; i++) {
        const response = await post(chatUrl(), CHAT, { 'x-simulator-fault': 'status=503;rate=0.5' });
        await response.arrayBuffer();
        result.push(response.status);
      }
      return result;
    };
    expect(await statuses(5)).toEqual([503, 200, 503, 200, 503]);
    await fetch(`${running().url}/stats/reset`, { method: 'POST' });
    expect(await statuses(2)).toEqual([503, 200]);
  });

  it('applies faults to embeddings too', async () => {
    const response = await post(
      `${running().url}/v1/embeddings`,
      { model: 'e', input: 'x' },
      { 'x-simulator-fault': 'status=502' },
    );
    expect(response.status).toBe(502);
  });

  it('rejects an invalid fault header with 400 naming the bad directive', async () => {
    const response = await post(chatUrl(), CHAT, { 'x-simulator-fault': 'status=500;explode=1' });
    expect(response.status).toBe(400);
    const body = (await response.json()) as { error: { message: string; param: string } };
    expect(body.error.param).toBe('x-simulator-fault');
    expect(body.error.message).toContain('"explode=1"');
  });
});

describe('a configured fault', () => {
  const running = useSimulator({ ...FAST, fault: parseFaultSpec('status=503;retry-after=1') });

  it('applies to every chat request without a fault header', async () => {
    const response = await post(`${running().url}/v1/chat/completions`, CHAT);
    expect(response.status).toBe(503);
    expect(response.headers.get('retry-after')).toBe('1');
  });

  it('gives way to a header, and to none', async () => {
    const url = `${running().url}/v1/chat/completions`;
    const none = await post(url, CHAT, { 'x-simulator-fault': 'none' });
    const other = await post(url, CHAT, { 'x-simulator-fault': 'status=429' });
    expect(none.status).toBe(200);
    expect(none.headers.get('x-simulator-fault-applied')).toBeNull();
    expect(other.status).toBe(429);
  });

  it('leaves models, health and stats alone', async () => {
    const { url } = running();
    expect((await fetch(`${url}/v1/models`)).status).toBe(200);
    expect((await fetch(`${url}/health`)).status).toBe(200);
    expect((await fetch(`${url}/stats`)).status).toBe(200);
  });
});
