import {
  ANTHROPIC_HEADERS,
  anthropicText,
  completeChat,
  createMessage,
  FAST,
  getStats,
  post,
  readAnthropicEvents,
  textDeltas,
  USER_HELLO,
  useSimulator,
} from './helpers';

interface AnthropicError {
  type: string;
  error: { type: string; message: string };
}

const HELLO = { model: 'sim-small', messages: USER_HELLO, max_tokens: 1000 };

describe('Anthropic messages', () => {
  const running = useSimulator({ ...FAST, defaultMaxTokens: 40 });
  const messagesUrl = () => `${running().url}/v1/messages`;

  it('answers a message in Anthropic shape, ending its turn before a generous max_tokens', async () => {
    const message = await createMessage(running().url, HELLO);

    expect(message).toEqual({
      id: expect.stringMatching(/^msg_[0-9a-f]{32}$/),
      type: 'message',
      role: 'assistant',
      model: 'sim-small',
      content: [{ type: 'text', text: expect.stringMatching(/^\S+( \S+)+$/) }],
      stop_reason: 'end_turn',
      stop_sequence: null,
      usage: { input_tokens: 11, output_tokens: message.content[0]!.text.split(' ').length },
    });
    expect(message.usage.output_tokens).toBeGreaterThanOrEqual(16);
    expect(message.usage.output_tokens).toBeLessThanOrEqual(40);
  });

  it('accepts requests without anthropic-version or x-api-key', async () => {
    const response = await post(messagesUrl(), HELLO);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('application/json');
    expect(response.headers.get('request-id')).toMatch(/^req_/);
  });

  it('gives the text the chat endpoint gives for the same conversation, seeded by metadata.user_id', async () => {
    const { url } = running();
    const anthropic = await createMessage(url, {
      system: [{ type: 'text', text: 'Be brief.' }],
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'Say hello ' },
            { type: 'text', text: 'twice.' },
          ],
        },
        { role: 'assistant', content: 'Hello.' },
        { role: 'user', content: 'Again.' },
      ],
      max_tokens: 1000,
      metadata: { user_id: '7' },
    });
    const openai = await completeChat(url, {
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'Say hello twice.' },
        { role: 'assistant', content: 'Hello.' },
        { role: 'user', content: 'Again.' },
      ],
      seed: 7,
    });
    const unseeded = await completeChat(url, { messages: [{ role: 'user', content: 'Again.' }] });

    expect(anthropic.content[0]?.text).toBe(openai.choices[0]?.message.content);
    expect(anthropic.content[0]?.text).not.toBe(unseeded.choices[0]?.message.content);
    expect(anthropic.usage).toEqual({
      input_tokens: openai.usage.prompt_tokens,
      output_tokens: openai.usage.completion_tokens,
    });
  });

  it('gives the unseeded chat text without a user_id, and other text for another user_id', async () => {
    const { url } = running();
    const plain = await createMessage(url, HELLO);
    const chat = await completeChat(url, { messages: USER_HELLO });
    const otherUser = await createMessage(url, { ...HELLO, metadata: { user_id: 'user-42' } });
    const sameUser = await createMessage(url, { ...HELLO, metadata: { user_id: 'user-42' } });

    expect(plain.content[0]?.text).toBe(chat.choices[0]?.message.content);
    expect(otherUser.content[0]?.text).not.toBe(plain.content[0]?.text);
    expect(sameUser.content[0]?.text).toBe(otherUser.content[0]?.text);
  });

  it('streams Anthropic event sequence, with exactly the text it answers without streaming', async () => {
    const plain = await createMessage(running().url, HELLO);
    const response = await post(messagesUrl(), { ...HELLO, stream: true }, ANTHROPIC_HEADERS);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const read = await readAnthropicEvents(response);
    const count = plain.usage.output_tokens;

    expect(read.error).toBeUndefined();
    expect(read.events.map((e) => e.event)).toEqual([
      'message_start',
      'content_block_start',
      'ping',
      ...Array<string>(count).fill('content_block_delta'),
      'content_block_stop',
      'message_delta',
      'message_stop',
    ]);
    const [start, blockStart, ping] = read.events;
    expect(start?.data).toEqual({
      type: 'message_start',
      message: {
        id: expect.stringMatching(/^msg_/),
        type: 'message',
        role: 'assistant',
        model: 'sim-small',
        content: [],
        stop_reason: null,
        stop_sequence: null,
        usage: { input_tokens: 11, output_tokens: 0 },
      },
    });
    expect(blockStart?.data).toEqual({
      type: 'content_block_start',
      index: 0,
      content_block: { type: 'text', text: '' },
    });
    expect(ping?.data).toEqual({ type: 'ping' });
    const deltas = read.events.filter((e) => e.event === 'content_block_delta');
    for (const delta of deltas) {
      expect(delta.data).toEqual({
        type: 'content_block_delta',
        index: 0,
        delta: { type: 'text_delta', text: expect.any(String) },
      });
    }
    expect(read.events.at(-3)?.data).toEqual({ type: 'content_block_stop', index: 0 });
    expect(read.events.at(-2)?.data).toEqual({
      type: 'message_delta',
      delta: { stop_reason: 'end_turn', stop_sequence: null },
      usage: { output_tokens: count },
    });
    expect(read.events.at(-1)?.data).toEqual({ type: 'message_stop' });
    expect(anthropicText(read)).toBe(plain.content[0]?.text);
  });

  it('stops at max_tokens with stop_reason max_tokens, after exactly that many deltas', async () => {
    const { url } = running();
    const read = await readAnthropicEvents(
      await post(messagesUrl(), { ...HELLO, max_tokens: 6, stream: true }, ANTHROPIC_HEADERS),
    );
    const plain = await createMessage(url, { ...HELLO, max_tokens: 6 });
    const chat = await completeChat(url, { messages: USER_HELLO, max_tokens: 6 });

    expect(textDeltas(read)).toHaveLength(6);
    expect(read.events.at(-2)?.data).toMatchObject({
      delta: { stop_reason: 'max_tokens', stop_sequence: null },
      usage: { output_tokens: 6 },
    });
    expect(plain).toMatchObject({ stop_reason: 'max_tokens', usage: { output_tokens: 6 } });
    expect(plain.content[0]?.text).toBe(chat.choices[0]?.message.content);
    expect(anthropicText(read)).toBe(plain.content[0]?.text);
  });

  it('cuts the text before a stop sequence, naming it as Anthropic does', async () => {
    const { url } = running();
    const full = (await createMessage(url, { ...HELLO, max_tokens: 12 })).content[0]!.text;
    const stop = full.split(' ')[6]!;
    const stopped = await createMessage(url, { ...HELLO, max_tokens: 12, stop_sequences: ['never', stop] });

    expect(stopped.content[0]?.text).toBe(full.slice(0, full.indexOf(stop)));
    expect(stopped).toMatchObject({ stop_reason: 'stop_sequence', stop_sequence: stop });
  });

  it('counts messages apart from chat completions in /stats', async () => {
    const { url } = running();
    await createMessage(url, { ...HELLO, max_tokens: 3 });
    await readAnthropicEvents(await post(messagesUrl(), { ...HELLO, max_tokens: 4, stream: true }));
    await readAnthropicEvents(await post(messagesUrl(), { ...HELLO, max_tokens: 5, stream: true }));
    await post(messagesUrl(), { model: 'sim-small', messages: USER_HELLO }); // no max_tokens

    expect(await getStats(url)).toMatchObject({
      requests: { chat: 0, chatStream: 0, messages: 1, messagesStream: 2 },
      completed: 3,
      tokens: 3 + 4 + 5,
      rejected: 1,
      inFlight: 0,
    });
  });
});

describe('Anthropic messages refused', () => {
  const running = useSimulator();
  const messagesUrl = () => `${running().url}/v1/messages`;

  async function expectError(response: Response, status: number, type: string): Promise<string> {
    expect(response.status).toBe(status);
    expect(response.headers.get('content-type')).toBe('application/json');
    const body = (await response.json()) as AnthropicError;
    expect(body).toEqual({ type: 'error', error: { type, message: expect.any(String) } });
    return body.error.message;
  }

  it('requires max_tokens, as Anthropic does', async () => {
    const message = await expectError(
      await post(messagesUrl(), { model: 'sim-small', messages: USER_HELLO }),
      400,
      'invalid_request_error',
    );
    expect(message).toBe('max_tokens: Field required');
    expect((await getStats(running().url)).requests.messages).toBe(0);
  });

  it('names the offending field of a malformed request, Anthropic style', async () => {
    const cases: [unknown, string][] = [
      [{ ...HELLO, messages: [{ role: 'system', content: 'x' }] }, 'messages.0.role: '],
      [{ ...HELLO, messages: [{ role: 'user' }] }, 'messages.0.content: Field required'],
      [
        { ...HELLO, messages: [{ role: 'user', content: [{ type: 'text' }] }] },
        'messages.0.content.0.text: ',
      ],
      [{ ...HELLO, messages: [] }, 'messages: '],
      [{ ...HELLO, max_tokens: 0 }, 'max_tokens: '],
      [{ ...HELLO, temperature: 1.5 }, 'temperature: '],
      [{ ...HELLO, system: [{ type: 'image' }] }, 'system.0.'],
      [{ ...HELLO, stop_sequences: 'END' }, 'stop_sequences: '],
    ];
    for (const [body, prefix] of cases) {
      const message = await expectError(await post(messagesUrl(), body), 400, 'invalid_request_error');
      expect(message.startsWith(prefix)).toBe(true);
    }
    await expectError(await post(messagesUrl(), '{"model": '), 400, 'invalid_request_error');
    await expectError(await post(messagesUrl(), '[1]'), 400, 'invalid_request_error');
  });

  it('accepts content blocks other than text, reading only the text', async () => {
    const withImage = await createMessage(running().url, {
      ...HELLO,
      messages: [
        {
          role: 'user',
          content: [
            { type: 'image', source: { type: 'base64', media_type: 'image/png', data: '' } },
            { type: 'text', text: USER_HELLO[0]!.content },
          ],
        },
      ],
    });
    const plain = await createMessage(running().url, HELLO);
    expect(withImage.content[0]?.text).toBe(plain.content[0]?.text);
  });

  it('answers an unknown model with 404 not_found_error naming it', async () => {
    const message = await expectError(
      await post(messagesUrl(), { ...HELLO, model: 'claude-9' }),
      404,
      'not_found_error',
    );
    expect(message).toBe('model: claude-9');
  });

  it('answers a bad fault header in Anthropic shape, naming the directive', async () => {
    const message = await expectError(
      await post(messagesUrl(), HELLO, { 'x-simulator-fault': 'status=500;explode=1' }),
      400,
      'invalid_request_error',
    );
    expect(message).toContain('"explode=1"');
  });
});

describe('Anthropic messages under faults', () => {
  const running = useSimulator({ ...FAST, tokenMs: 5 });
  const messagesUrl = () => `${running().url}/v1/messages`;
  const STREAM = { ...HELLO, max_tokens: 8, stream: true };

  it.each([
    ['status=429;retry-after=3', 429, 'rate_limit_error', '3'],
    ['status=529;retry-after=1', 529, 'overloaded_error', '1'],
    ['status=500', 500, 'api_error', null],
  ])('answers %s with Anthropic error shape', async (fault, status, type, retryAfter) => {
    const response = await post(messagesUrl(), STREAM, { 'x-simulator-fault': fault });
    expect(response.status).toBe(status);
    expect(response.headers.get('retry-after')).toBe(retryAfter);
    expect(response.headers.get('x-simulator-fault-applied')).toBe(fault);
    expect(await response.json()).toEqual({ type: 'error', error: { type, message: expect.any(String) } });
    expect(await getStats(running().url)).toMatchObject({
      requests: { messagesStream: 1 },
      faults: { status: 1 },
      completed: 0,
      inFlight: 0,
    });
  });

  it('cuts a stream after N deltas, without message_delta or message_stop', async () => {
    const response = await post(messagesUrl(), STREAM, { 'x-simulator-fault': 'cut-after=3' });
    expect(response.status).toBe(200);
    const read = await readAnthropicEvents(response);
    const names = read.events.map((e) => e.event);

    expect(read.error).toBeDefined();
    expect(textDeltas(read)).toHaveLength(3);
    expect(names.slice(0, 3)).toEqual(['message_start', 'content_block_start', 'ping']);
    expect(names).not.toContain('message_delta');
    expect(names).not.toContain('message_stop');
    expect(await getStats(running().url)).toMatchObject({
      tokens: 3,
      completed: 0,
      aborted: 0,
      inFlight: 0,
      faults: { cut: 1 },
    });
  });

  it('drops a non-streamed message entirely under cut-after', async () => {
    await expect(post(messagesUrl(), HELLO, { 'x-simulator-fault': 'cut-after=2' })).rejects.toThrow();
    expect(await getStats(running().url)).toMatchObject({ requests: { messages: 1 }, faults: { cut: 1 } });
  });

  it('keeps the timing headers: TTFT, then one delta per token interval', async () => {
    const started = Date.now();
    const response = await post(
      messagesUrl(),
      { ...STREAM, max_tokens: 4 },
      { 'x-simulator-ttft-ms': '200', 'x-simulator-token-ms': '60' },
    );
    const read = await readAnthropicEvents(response);
    const deltaAt = read.events.filter((e) => e.event === 'content_block_delta').map((e) => e.at - started);

    expect(deltaAt).toHaveLength(4);
    deltaAt.forEach((at, k) => expect(at).toBeGreaterThanOrEqual(200 + k * 60 - 5));
    expect(read.events.at(-1)?.event).toBe('message_stop');
  });
});
