import {
  chunksOf,
  completeChat,
  FAST,
  post,
  readEvents,
  streamedText,
  USER_HELLO,
  useSimulator,
} from './helpers';

describe('chat completions', () => {
  const running = useSimulator({ ...FAST, defaultMaxTokens: 40 });

  it('answers the same request with the same text, and another seed with other text', async () => {
    const { url } = running();
    const first = await completeChat(url, { messages: USER_HELLO, seed: 7 });
    const again = await completeChat(url, { messages: USER_HELLO, seed: 7 });
    const otherSeed = await completeChat(url, { messages: USER_HELLO, seed: 8 });
    const otherPrompt = await completeChat(url, {
      messages: [{ role: 'user', content: 'Something else.' }],
      seed: 7,
    });

    expect(first.choices[0]?.message.content).toMatch(/^\S+( \S+)+$/);
    expect(again.choices[0]?.message.content).toBe(first.choices[0]?.message.content);
    expect(otherSeed.choices[0]?.message.content).not.toBe(first.choices[0]?.message.content);
    expect(otherPrompt.choices[0]?.message.content).not.toBe(first.choices[0]?.message.content);
    expect(again.id).not.toBe(first.id);
  });

  it('returns a chat.completion object in OpenAI shape', async () => {
    const completion = await completeChat(running().url, { messages: USER_HELLO });
    expect(completion).toMatchObject({
      object: 'chat.completion',
      model: 'sim-small',
      choices: [{ index: 0, message: { role: 'assistant' }, finish_reason: 'stop' }],
    });
    expect(completion.id).toMatch(/^chatcmpl-/);
    expect(Math.abs(completion.created - Date.now() / 1000)).toBeLessThan(5);
  });

  it('stops at max_tokens with finish_reason length, and a shorter answer is a prefix of a longer one', async () => {
    const { url } = running();
    const short = await completeChat(url, { messages: USER_HELLO, max_tokens: 5 });
    const long = await completeChat(url, { messages: USER_HELLO, max_completion_tokens: 30 });

    expect(short.choices[0]?.finish_reason).toBe('length');
    expect(short.usage.completion_tokens).toBe(5);
    expect(short.choices[0]?.message.content.split(' ')).toHaveLength(5);
    expect(long.usage.completion_tokens).toBe(30);
    expect(long.choices[0]?.message.content.startsWith(short.choices[0]?.message.content ?? '?')).toBe(true);
  });

  it('picks a natural length between 16 and the default maximum when max_tokens is absent', async () => {
    const { url } = running();
    const lengths = await Promise.all(
      [1, 2, 3, 4, 5, 6].map(async (seed) => {
        const completion = await completeChat(url, { messages: USER_HELLO, seed });
        expect(completion.choices[0]?.finish_reason).toBe('stop');
        return completion.usage.completion_tokens;
      }),
    );
    for (const length of lengths) expect(length).toBeGreaterThanOrEqual(16);
    for (const length of lengths) expect(length).toBeLessThanOrEqual(40);
    expect(new Set(lengths).size).toBeGreaterThan(1);
  });

  it('counts prompt tokens as a quarter of the characters plus four per message', async () => {
    const messages = [
      { role: 'system', content: 'x'.repeat(40) },
      { role: 'user', content: [{ type: 'text', text: 'y'.repeat(2) }] },
    ];
    const completion = await completeChat(running().url, { messages, max_tokens: 3 });
    expect(completion.usage).toEqual({ prompt_tokens: 11 + 8, completion_tokens: 3, total_tokens: 22 });
  });

  it('cuts the answer before a stop sequence with finish_reason stop', async () => {
    const { url } = running();
    const full = (await completeChat(url, { messages: USER_HELLO, max_tokens: 12 })).choices[0]!.message
      .content;
    const stop = full.split(' ')[6]!;
    const stopped = await completeChat(url, {
      messages: USER_HELLO,
      max_tokens: 12,
      stop: [stop, 'never-there'],
    });
    expect(stopped.choices[0]?.message.content).toBe(full.slice(0, full.indexOf(stop)));
    expect(stopped.choices[0]?.finish_reason).toBe('stop');
  });

  it('streams a role chunk, one chunk per token, a finish chunk and [DONE], all with one id', async () => {
    const response = await post(`${running().url}/v1/chat/completions`, {
      model: 'sim-large',
      messages: USER_HELLO,
      max_tokens: 6,
      stream: true,
    });
    expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const read = await readEvents(response);
    const chunks = chunksOf(read);

    expect(read.error).toBeUndefined();
    expect(read.events.at(-1)?.data).toBe('[DONE]');
    expect(chunks).toHaveLength(1 + 6 + 1);
    expect(new Set(chunks.map((c) => c.id)).size).toBe(1);
    expect(chunks.every((c) => c.object === 'chat.completion.chunk' && c.model === 'sim-large')).toBe(true);
    expect(chunks[0]?.choices[0]?.delta.role).toBe('assistant');
    const tokens = chunks.slice(1, 7).map((c) => c.choices[0]?.delta.content ?? '');
    expect(tokens[0]).toMatch(/^\S+$/);
    for (const token of tokens.slice(1)) expect(token).toMatch(/^ \S+$/);
    expect(chunks[7]?.choices[0]).toMatchObject({ delta: {}, finish_reason: 'length' });
    expect(chunks.some((c) => c.usage)).toBe(false);
  });

  it('adds a usage chunk with empty choices before [DONE] when include_usage is set', async () => {
    const response = await post(`${running().url}/v1/chat/completions`, {
      model: 'sim-small',
      messages: USER_HELLO,
      max_tokens: 4,
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks = chunksOf(await readEvents(response));
    const last = chunks.at(-1);
    expect(last?.choices).toEqual([]);
    expect(last?.usage).toEqual({ prompt_tokens: 11, completion_tokens: 4, total_tokens: 15 });
    expect(chunks.slice(0, -1).every((c) => c.usage === null)).toBe(true);
  });

  it('streams exactly the text it would answer without streaming', async () => {
    const { url } = running();
    const body = { model: 'sim-small', messages: USER_HELLO, seed: 42 };
    const plain = await completeChat(url, body);
    const chunks = chunksOf(
      await readEvents(await post(`${url}/v1/chat/completions`, { ...body, stream: true })),
    );
    expect(streamedText(chunks)).toBe(plain.choices[0]?.message.content);
    expect(chunks.at(-1)?.choices[0]?.finish_reason).toBe(plain.choices[0]?.finish_reason);
  });

  it('accepts any Authorization header and ignores unknown fields', async () => {
    const completion = await completeChat(
      running().url,
      { messages: USER_HELLO, max_tokens: 2, tools: [], response_format: { type: 'text' }, user: 'u1' },
      { authorization: 'Bearer anything' },
    );
    expect(completion.usage.completion_tokens).toBe(2);
  });
});

describe('chat completion timing', () => {
  const running = useSimulator({ ttftMs: 0, tokenMs: 0, jitter: 0 });

  it('waits the time to first token, then the token interval, as the headers ask', async () => {
    const started = Date.now();
    const response = await post(
      `${running().url}/v1/chat/completions`,
      { model: 'sim-small', messages: USER_HELLO, max_tokens: 4, stream: true },
      { 'x-simulator-ttft-ms': '200', 'x-simulator-token-ms': '60' },
    );
    const read = await readEvents(response);
    const contentAt = read.events.slice(1, 5).map((e) => e.at - started);

    // Token k is due at TTFT + k gaps after the request; it may be late under load, never early.
    expect(contentAt).toHaveLength(4);
    contentAt.forEach((at, k) => expect(at).toBeGreaterThanOrEqual(200 + k * 60 - 5));
  });

  it('keeps to its timeline when the event loop falls behind, sending the overdue tokens at once', async () => {
    const started = Date.now();
    const response = await post(
      `${running().url}/v1/chat/completions`,
      { model: 'sim-small', messages: USER_HELLO, max_tokens: 10, stream: true },
      { 'x-simulator-token-ms': '20' },
    );
    let blocked = false;
    const read = await readEvents(response, () => {
      if (blocked) return;
      blocked = true;
      // Starve the event loop (server and client share it) for 150 ms after the first chunk.
      const until = Date.now() + 150;
      while (Date.now() < until);
    });
    const elapsed = Date.now() - started;
    expect(read.events.at(-1)?.data).toBe('[DONE]');
    // Token by token the stream would end at 150 + 9 * 20 = 330 ms; on its timeline, near 180.
    expect(elapsed).toBeGreaterThanOrEqual(9 * 20 - 5);
    expect(elapsed).toBeLessThan(280);
  });

  it('answers a non-streaming request only after the whole generation time', async () => {
    const started = Date.now();
    await completeChat(
      running().url,
      { messages: USER_HELLO, max_tokens: 5 },
      { 'x-simulator-ttft-ms': '100', 'x-simulator-token-ms': '50' },
    );
    expect(Date.now() - started).toBeGreaterThanOrEqual(100 + 4 * 50 - 10);
  });
});

describe('chat completion jitter', () => {
  const running = useSimulator({ ttftMs: 100, tokenMs: 0, jitter: 0.5 });

  it('scales the time to first token by a random factor within the jitter', async () => {
    const { url } = running();
    const durations = await Promise.all(
      Array.from({ length: 8 }, async () => {
        const started = Date.now();
        await completeChat(url, { messages: USER_HELLO, max_tokens: 1 });
        return Date.now() - started;
      }),
    );
    for (const duration of durations) expect(duration).toBeGreaterThanOrEqual(49);
    for (const duration of durations) expect(duration).toBeLessThan(150 + 100);
    expect(Math.max(...durations) - Math.min(...durations)).toBeGreaterThan(3);
  });
});
