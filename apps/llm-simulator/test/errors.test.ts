import { getStats, post, USER_HELLO, useSimulator } from './helpers';

interface OpenAiError {
  error: { message: string; type: string; param: string | null; code: string | null };
}

describe('bad requests', () => {
  const running = useSimulator();
  const chatUrl = () => `${running().url}/v1/chat/completions`;

  async function expectError(response: Response, status: number, error: Partial<OpenAiError['error']>) {
    expect(response.status).toBe(status);
    expect(response.headers.get('content-type')).toBe('application/json');
    const body = (await response.json()) as OpenAiError;
    expect(body.error).toMatchObject(error);
    expect(typeof body.error.message).toBe('string');
    return body.error;
  }

  it('names a missing messages parameter', async () => {
    await expectError(await post(chatUrl(), { model: 'sim-small' }), 400, {
      type: 'invalid_request_error',
      param: 'messages',
      code: 'missing_required_parameter',
    });
  });

  it('rejects empty or malformed messages, pointing at the offending field', async () => {
    await expectError(await post(chatUrl(), { model: 'sim-small', messages: [] }), 400, {
      param: 'messages',
    });
    await expectError(await post(chatUrl(), { model: 'sim-small', messages: 'hello' }), 400, {
      param: 'messages',
    });
    await expectError(
      await post(chatUrl(), { model: 'sim-small', messages: [{ role: 'wizard', content: 'x' }] }),
      400,
      { param: 'messages[0].role' },
    );
    await expectError(
      await post(chatUrl(), { model: 'sim-small', messages: USER_HELLO, max_tokens: 0 }),
      400,
      { param: 'max_tokens' },
    );
    await expectError(await post(chatUrl(), { model: 'sim-small', messages: USER_HELLO, n: 2 }), 400, {
      param: 'n',
    });
  });

  it('answers an unknown model with 404 model_not_found', async () => {
    const error = await expectError(await post(chatUrl(), { model: 'gpt-9', messages: USER_HELLO }), 404, {
      type: 'invalid_request_error',
      code: 'model_not_found',
    });
    expect(error.message).toContain('gpt-9');
  });

  it('answers malformed JSON and non-object bodies with 400', async () => {
    await expectError(await post(chatUrl(), '{"model": '), 400, { type: 'invalid_request_error' });
    await expectError(await post(chatUrl(), '[1, 2]'), 400, { param: null });
    await expectError(await post(`${running().url}/v1/embeddings`, 'nope'), 400, {
      type: 'invalid_request_error',
    });
  });

  it('refuses a body over 2 MB with 413', async () => {
    const huge = { model: 'sim-small', messages: [{ role: 'user', content: 'x'.repeat(2 * 1024 * 1024) }] };
    await expectError(await post(chatUrl(), huge), 413, { code: 'request_too_large' });
  });

  it('answers unknown routes and methods with 404 in OpenAI shape', async () => {
    const { url } = running();
    const error = await expectError(await fetch(`${url}/v1/completions/legacy`), 404, { param: null });
    expect(error.message).toBe('Invalid URL (GET /v1/completions/legacy)');
    await expectError(await fetch(`${url}/v1/chat/completions`), 404, { type: 'invalid_request_error' });
    await expectError(await fetch(`${url}/v1/models/gpt-9`), 404, { code: 'model_not_found' });
  });

  it('rejects a bad timing header by name', async () => {
    const response = await post(
      chatUrl(),
      { model: 'sim-small', messages: USER_HELLO },
      { 'x-simulator-ttft-ms': 'soon' },
    );
    await expectError(response, 400, { param: 'x-simulator-ttft-ms' });
  });

  it('counts refused requests as rejected, never as served', async () => {
    const { url } = running();
    await (await post(chatUrl(), { model: 'sim-small' })).text();
    await (await post(chatUrl(), { model: 'gpt-9', messages: USER_HELLO })).text();
    await (await fetch(`${url}/nowhere`)).text();
    const stats = await getStats(url);
    expect(stats.rejected).toBe(3);
    expect(stats.requests).toEqual({
      chat: 0,
      chatStream: 0,
      embeddings: 0,
      models: 0,
      messages: 0,
      messagesStream: 0,
    });
    expect(stats.inFlight).toBe(0);
  });
});

describe('models and health', () => {
  const running = useSimulator({ models: ['alpha', 'org/beta'] });

  it('lists the configured models in OpenAI list shape', async () => {
    const body = await (await fetch(`${running().url}/v1/models`)).json();
    expect(body).toEqual({
      object: 'list',
      data: [
        { id: 'alpha', object: 'model', created: expect.any(Number), owned_by: 'llmq-simulator' },
        { id: 'org/beta', object: 'model', created: expect.any(Number), owned_by: 'llmq-simulator' },
      ],
    });
  });

  it('retrieves one model, even one with a slash in its id', async () => {
    const response = await fetch(`${running().url}/v1/models/org/beta`);
    expect(response.status).toBe(200);
    expect(await response.json()).toMatchObject({ id: 'org/beta', object: 'model' });
  });

  it('only answers for the configured models', async () => {
    const { url } = running();
    const known = await post(`${url}/v1/chat/completions`, {
      model: 'alpha',
      messages: USER_HELLO,
      max_tokens: 1,
    });
    const unknown = await post(`${url}/v1/chat/completions`, { model: 'sim-small', messages: USER_HELLO });
    expect(known.status).toBe(200);
    expect(unknown.status).toBe(404);
  });

  it('reports health', async () => {
    const response = await fetch(`${running().url}/health`);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ status: 'ok' });
  });
});
