import { createSimulator } from '../src';
import {
  chunksOf,
  completeChat,
  eventually,
  getStats,
  post,
  readEvents,
  sleep,
  USER_HELLO,
  useSimulator,
} from './helpers';

describe('stats', () => {
  const running = useSimulator({ ttftMs: 0, tokenMs: 0, jitter: 0 });

  it('counts what it served, and a reset zeroes the counts', async () => {
    const { url } = running();
    await completeChat(url, { messages: USER_HELLO, max_tokens: 3 });
    await readEvents(
      await post(`${url}/v1/chat/completions`, {
        model: 'sim-small',
        messages: USER_HELLO,
        max_tokens: 4,
        stream: true,
      }),
    );
    await (await fetch(`${url}/v1/models`)).json();
    await (await post(`${url}/v1/embeddings`, { model: 'e', input: 'x' })).json();

    expect(await getStats(url)).toEqual({
      name: 'sim',
      requests: { chat: 1, chatStream: 1, embeddings: 1, models: 1, messages: 0, messagesStream: 0 },
      completed: 4,
      aborted: 0,
      faults: { status: 0, hang: 0, cut: 0, trickle: 0 },
      inFlight: 0,
      tokens: 7,
      rejected: 0,
    });

    const reset = await fetch(`${url}/stats/reset`, { method: 'POST' });
    expect(reset.status).toBe(200);
    expect(await getStats(url)).toMatchObject({
      requests: { chat: 0, chatStream: 0 },
      completed: 0,
      tokens: 0,
    });
    expect(running().simulator.stats().completed).toBe(0);
  });

  it('counts a client that leaves mid-stream as aborted and stops generating for it', async () => {
    const { url } = running();
    const controller = new AbortController();
    const response = await post(
      `${url}/v1/chat/completions`,
      { model: 'sim-small', messages: USER_HELLO, max_tokens: 500, stream: true },
      { 'x-simulator-token-ms': '20' },
      controller.signal,
    );
    let contentChunks = 0;
    const read = await readEvents(response, (data) => {
      if (data.includes('"content":"') && !data.includes('"role"')) contentChunks += 1;
      if (contentChunks === 3) controller.abort();
    });
    expect(read.error).toBeDefined();
    expect(chunksOf(read).length).toBeGreaterThanOrEqual(4);

    await eventually(async () => expect(await getStats(url)).toMatchObject({ aborted: 1, inFlight: 0 }));
    const tokensAtAbort = (await getStats(url)).tokens;
    await sleep(150);
    const after = await getStats(url);
    expect(after.tokens).toBe(tokensAtAbort);
    expect(after.tokens).toBeLessThan(10);
    expect(after.completed).toBe(0);
  });

  it('tracks in-flight streams while they run', async () => {
    const { url } = running();
    const streams = [1, 2, 3].map(() =>
      post(
        `${url}/v1/chat/completions`,
        { model: 'sim-small', messages: USER_HELLO, max_tokens: 2, stream: true },
        { 'x-simulator-ttft-ms': '300' },
      ).then(readEvents),
    );
    await eventually(async () => expect((await getStats(url)).inFlight).toBe(3));
    await Promise.all(streams);
    expect(await getStats(url)).toMatchObject({ inFlight: 0, completed: 3, requests: { chatStream: 3 } });
  });

  it('counts streams torn down by close() as aborted', async () => {
    const simulator = createSimulator({ ttftMs: 10_000 });
    const { url } = await simulator.listen(0);
    const pending = post(`${url}/v1/chat/completions`, {
      model: 'sim-small',
      messages: USER_HELLO,
      stream: true,
    })
      .then(readEvents)
      .catch((error: unknown) => ({ error }));
    await eventually(() => expect(simulator.stats().inFlight).toBe(1));
    await simulator.close();
    await pending;
    expect(simulator.stats()).toMatchObject({ inFlight: 0, aborted: 1 });
  });
});

describe('many concurrent streams', () => {
  const running = useSimulator({ ttftMs: 50, tokenMs: 10, jitter: 0.2 });

  it('serves 500 simultaneous streams with every token intact', async () => {
    const { url } = running();
    const count = 500;
    const started = Date.now();
    const texts = await Promise.all(
      Array.from({ length: count }, (_, i) =>
        post(`${url}/v1/chat/completions`, {
          model: 'sim-small',
          messages: USER_HELLO,
          max_tokens: 20,
          seed: i % 5,
          stream: true,
        }).then(async (response) => {
          const read = await readEvents(response);
          expect(read.events.at(-1)?.data).toBe('[DONE]');
          return chunksOf(read)
            .map((c) => c.choices[0]?.delta.content ?? '')
            .join('');
        }),
      ),
    );
    expect(new Set(texts).size).toBe(5);
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(await getStats(url)).toMatchObject({ completed: count, tokens: count * 20, inFlight: 0 });
  });
});
