/**
 * The official `openai` SDK, unchanged, against llmq's `/v1` facade: every call is a queued job
 * run by a real worker on the real simulator, with real Redis and Postgres. The simulator's text
 * is deterministic for (model, messages, seed), so asking it directly gives the expected answer.
 */
import { randomUUID } from 'node:crypto';
import { defaultProviders, eventually, useStack, type PolledJob } from '@llmq/testing';
import { ApiKeyRepository } from '@llmq/db';
import { markKeyRevoked } from '@llmq/rate-limit';
import { Redis } from 'ioredis';
import OpenAI from 'openai';
import { failure } from './support/openai';

jest.setTimeout(120_000);

const { stack, keys } = useStack(
  {
    workers: 1,
    providers: (urls) => ({
      ...defaultProviders(urls),
      models: [{ name: 'sim-small', aliases: ['sim-default'] }],
    }),
  },
  ['acme', 'globex'],
);

const llmq = (apiKey = keys.acme!) => new OpenAI({ apiKey, baseURL: `${stack.apiUrl}/v1`, maxRetries: 0 });
/** The simulator itself, for the text a request must produce. */
const upstream = () => new OpenAI({ apiKey: 'unused', baseURL: `${stack.simulatorUrl}/v1`, maxRetries: 0 });

const poll = async (jobId: string, key = keys.acme!) =>
  (await (await stack.request(`/api/jobs/${jobId}`, key)).json()) as PolledJob & { priority: string };

const ask = (content: string) => [{ role: 'user' as const, content }];

describe('chat completions', () => {
  it('answers a chat.completion made by a job, the text the model wrote, with usage and headers', async () => {
    const request = { model: 'sim-small', messages: ask('Tell me about queues'), max_tokens: 12, seed: 7 };
    const expected = await upstream().chat.completions.create(request);
    const { data, response } = await llmq().chat.completions.create(request).withResponse();

    const jobId = response.headers.get('llmq-job-id')!;
    expect(jobId).toMatch(/^[0-9a-f-]{36}$/);
    expect(response.headers.get('x-request-id')).toBeTruthy();
    expect(response.headers.get('x-ratelimit-limit-requests')).toBe('1000000');
    expect(Number(response.headers.get('x-ratelimit-remaining-tokens'))).toBeGreaterThan(0);
    expect(data).toMatchObject({
      id: `chatcmpl-${jobId}`,
      object: 'chat.completion',
      model: 'sim-small',
      choices: [
        {
          index: 0,
          message: { role: 'assistant', content: expected.choices[0]!.message.content },
          finish_reason: 'length',
        },
      ],
      usage: { completion_tokens: 12, prompt_tokens: expected.usage!.prompt_tokens },
    });

    const job = await poll(jobId);
    expect(job).toMatchObject({ status: 'completed', result: data.choices[0]!.message.content });
  });

  it('streams chunks with one id: the role first, every token, the finish reason, then the usage', async () => {
    const request = { model: 'sim-small', messages: ask('Stream to me'), max_tokens: 20, seed: 3 };
    const expected = await upstream().chat.completions.create(request);
    const { data: stream, response } = await llmq()
      .chat.completions.create({ ...request, stream: true, stream_options: { include_usage: true } })
      .withResponse();
    const jobId = response.headers.get('llmq-job-id')!;
    expect(response.headers.get('content-type')).toMatch(/text\/event-stream/);

    const chunks: OpenAI.ChatCompletionChunk[] = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(new Set(chunks.map((c) => c.id))).toEqual(new Set([`chatcmpl-${jobId}`]));
    expect(chunks.every((c) => c.object === 'chat.completion.chunk')).toBe(true);
    expect(chunks[0]!.choices[0]!.delta).toEqual({ role: 'assistant', content: '' });
    const text = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
    expect(text).toBe(expected.choices[0]!.message.content);
    const finishes = chunks.filter((c) => c.choices[0]?.finish_reason);
    expect(finishes.map((c) => c.choices[0]!.finish_reason)).toEqual(['length']);
    const last = chunks.at(-1)!;
    expect(last.choices).toEqual([]);
    expect(last.usage).toMatchObject({ completion_tokens: 20, prompt_tokens: expected.usage!.prompt_tokens });
    // Every chunk but the last says `usage: null`, as OpenAI's do.
    expect(chunks.slice(0, -1).every((c) => c.usage === null)).toBe(true);
    expect((await poll(jobId)).result).toBe(text);
  });

  it("assembles in the SDK's stream helper into the same completion", async () => {
    const request = { model: 'sim-large', messages: ask('Helper please'), max_tokens: 9, seed: 11 };
    const expected = await upstream().chat.completions.create(request);
    const final = await llmq()
      .chat.completions.stream({ ...request, stream_options: { include_usage: true } })
      .finalChatCompletion();
    expect(final.choices[0]!.message.content).toBe(expected.choices[0]!.message.content);
    expect(final.choices[0]!.finish_reason).toBe('length');
    expect(final.usage?.completion_tokens).toBe(9);
  });

  it('answers a repeated deterministic request from the cache, plain or streamed, without the model', async () => {
    const request = {
      model: 'sim-small',
      messages: ask(`cache me ${randomUUID()}`),
      temperature: 0,
      max_tokens: 8,
    };
    const first = await llmq().chat.completions.create(request);
    const before = await stack.simulatorStats();
    const { data: again, response } = await llmq().chat.completions.create(request).withResponse();
    const stream = await llmq().chat.completions.create({ ...request, stream: true });
    let streamed = '';
    for await (const chunk of stream) streamed += chunk.choices[0]?.delta.content ?? '';
    expect((await stack.simulatorStats()).requests).toEqual(before.requests);
    expect(again.choices[0]!.message.content).toBe(first.choices[0]!.message.content);
    expect(streamed).toBe(first.choices[0]!.message.content);
    // A cached answer is a job too, visible like any other.
    const jobId = response.headers.get('llmq-job-id')!;
    expect(again.id).toBe(`chatcmpl-${jobId}`);
    expect(await poll(jobId)).toMatchObject({ status: 'completed', result: streamed });
  });

  it('honours Idempotency-Key: a repeat answers with the first job', async () => {
    const request = { model: 'sim-small', messages: ask('once only'), max_tokens: 5 };
    const headers = { 'Idempotency-Key': `idem-${randomUUID()}` };
    const first = await llmq().chat.completions.create(request, { headers }).withResponse();
    const second = await llmq().chat.completions.create(request, { headers }).withResponse();
    expect(second.data.id).toBe(first.data.id);
    expect(second.response.headers.get('idempotent-replayed')).toBe('true');
    expect(second.data.choices[0]!.message.content).toBe(first.data.choices[0]!.message.content);
  });

  it('ends a stream whose job fails midway with an error the SDK raises', async () => {
    // The upstream stream is cut after 3 tokens; a cut after the first token is never retried.
    const request = { model: 'sim-small', messages: ask('break'), max_tokens: 50 };
    const firstThree = (await upstream().chat.completions.create({ ...request, max_tokens: 3 })).choices[0]!
      .message.content!;
    await setFault('cut-after=3');
    try {
      const { data: stream, response } = await llmq()
        .chat.completions.create({ ...request, stream: true })
        .withResponse();
      let text = '';
      const error = await failure(
        (async () => {
          for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
        })(),
      );
      expect(error.error).toMatchObject({ type: 'server_error', code: expect.any(String) });
      // At most the 3 tokens sent before the cut (the worker drops tokens it had not yet published).
      expect(firstThree.startsWith(text)).toBe(true);
      const job = await poll(response.headers.get('llmq-job-id')!);
      expect(job.status).toBe('failed');
      expect(error.code).toBe(job.error!.code);
    } finally {
      await setFault(null);
    }
  });
});

describe('client disconnects', () => {
  it('cancels the job of a stream the client abandons', async () => {
    const { data: stream, response } = await llmq()
      .chat.completions.create({
        model: 'sim-small',
        messages: ask('a long one'),
        max_tokens: 2000,
        stream: true,
      })
      .withResponse();
    const jobId = response.headers.get('llmq-job-id')!;
    let tokens = 0;
    for await (const chunk of stream) {
      if (chunk.choices[0]?.delta.content) tokens++;
      if (tokens === 3) break; // the SDK aborts the request
    }
    const job = await stack.waitForJob(keys.acme!, jobId);
    expect(job.status).toBe('cancelled');
  });

  it('cancels the job of a plain request the client abandons', async () => {
    const probe = randomUUID();
    const controller = new AbortController();
    const call = llmq().chat.completions.create(
      { model: 'sim-small', messages: ask('wait for me'), max_tokens: 2000, metadata: { probe } },
      { signal: controller.signal },
    );
    const jobId = await eventually(async () => {
      const { rows } = await stack.pool.query<{ id: string; status: string }>(
        `SELECT id, status FROM jobs WHERE metadata->>'probe' = $1`,
        [probe],
      );
      return rows[0]?.status === 'in_progress' ? rows[0].id : undefined;
    }, 'the job is running');
    controller.abort();
    await expect(call).rejects.toBeInstanceOf(OpenAI.APIUserAbortError);
    expect((await stack.waitForJob(keys.acme!, jobId)).status).toBe('cancelled');
  });

  it('ends a stream cut by an API shutdown with an error the SDK raises, and the job goes on', async () => {
    const extra = await stack.startExtraApi();
    const client = new OpenAI({ apiKey: keys.acme!, baseURL: `${extra.url}/v1`, maxRetries: 0 });
    const { data: stream, response } = await client.chat.completions
      .create({ model: 'sim-small', messages: ask('outlive the api'), max_tokens: 1000, stream: true })
      .withResponse();
    const jobId = response.headers.get('llmq-job-id')!;
    let stopping: Promise<unknown> | null = null;
    const error = await failure(
      (async () => {
        for await (const chunk of stream)
          if (chunk.choices[0]?.delta.content) stopping ??= extra.process.stop();
      })(),
    );
    await stopping;
    expect(error.code).toBe('server_shutting_down');
    expect(error.message).toContain(`/api/jobs/${jobId}`);
    expect((await stack.waitForJob(keys.acme!, jobId)).status).toBe('completed');
  });

  it('keeps a background job running after its client leaves', async () => {
    const { data: stream, response } = await llmq()
      .chat.completions.create({
        model: 'sim-small',
        messages: ask('keep going'),
        max_tokens: 400,
        stream: true,
        // llmq's extension; the SDK passes unknown fields through.
        ...{ background: true },
      })
      .withResponse();
    const jobId = response.headers.get('llmq-job-id')!;
    for await (const chunk of stream) if (chunk.choices[0]?.delta.content) break;
    const job = await stack.waitForJob(keys.acme!, jobId);
    expect(job).toMatchObject({ status: 'completed', finishReason: 'length' });
    expect(job.usage?.completion_tokens).toBe(400);
  });
});

describe('errors in OpenAI shape', () => {
  it('refuses a bad key: AuthenticationError 401 invalid_api_key', async () => {
    const error = await failure(
      llmq('llmq_not-a-key').chat.completions.create({ model: 'sim-small', messages: ask('x') }),
    );
    expect(error).toBeInstanceOf(OpenAI.AuthenticationError);
    expect(error).toMatchObject({ status: 401, code: 'invalid_api_key', type: 'invalid_request_error' });
  });

  it('refuses a key revoked after the auth cache verified it, on submissions and embeddings too', async () => {
    const repo = new ApiKeyRepository(stack.pool);
    const { key, record } = await repo.create('acme');
    const client = llmq(key);
    await client.chat.completions.create({ model: 'sim-small', messages: ask('before'), max_tokens: 2 });
    await repo.revoke(record.id);
    const redis = new Redis(stack.redisUrl);
    await markKeyRevoked(redis, 'llmq', record.tenantId, record.id).finally(() => redis.disconnect());
    const chat = await failure(
      client.chat.completions.create({ model: 'sim-small', messages: ask('after') }),
    );
    expect(chat).toMatchObject({ status: 401, code: 'invalid_api_key' });
    const embeddings = await failure(client.embeddings.create({ model: 'sim-embed', input: 'after' }));
    expect(embeddings).toMatchObject({ status: 401, code: 'invalid_api_key' });
    expect(await failure(client.models.list())).toMatchObject({ status: 401 });
  });

  it('refuses an unknown model: NotFoundError 404 model_not_found', async () => {
    const error = await failure(llmq().chat.completions.create({ model: 'gpt-nope', messages: ask('x') }));
    expect(error).toBeInstanceOf(OpenAI.NotFoundError);
    expect(error).toMatchObject({ status: 404, code: 'model_not_found', param: 'model' });
  });

  it('refuses what it cannot honour: BadRequestError 400 naming the parameter', async () => {
    const n = await failure(llmq().chat.completions.create({ model: 'sim-small', messages: ask('x'), n: 2 }));
    expect(n).toBeInstanceOf(OpenAI.BadRequestError);
    expect(n).toMatchObject({ status: 400, param: 'n', type: 'invalid_request_error' });
    const tools = await failure(
      llmq().chat.completions.create({
        model: 'sim-small',
        messages: ask('x'),
        tools: [{ type: 'function', function: { name: 'f', parameters: {} } }],
      }),
    );
    expect(tools).toMatchObject({ status: 400, param: 'tools' });
    expect(tools.message).toMatch(/tool calling is not supported/);
    // Text parts that pass one by one but join into a message over the limit: a 400 naming the
    // message, not a 503 the SDK would retry.
    const part = { type: 'text' as const, text: 'word '.repeat(60_000) };
    const joined = await failure(
      llmq().chat.completions.create({
        model: 'sim-small',
        messages: [{ role: 'user', content: [part, part] }],
        max_tokens: 2,
      }),
    );
    expect(joined).toMatchObject({ status: 400, param: 'messages.0.content' });
    expect(joined.headers!.get('x-should-retry')).toBe('false');
  });

  it('refuses past the rate limit: RateLimitError 429 with the rate-limit headers', async () => {
    const key = await stack.createKey('tight', { requestsPerMinute: 1, requestBurst: 1 });
    const request = { model: 'sim-small', messages: ask('one'), max_tokens: 2 };
    const ok = await llmq(key).chat.completions.create(request).withResponse();
    expect(ok.response.headers.get('x-ratelimit-remaining-requests')).toBe('0');
    const error = await failure(llmq(key).chat.completions.create(request));
    expect(error).toBeInstanceOf(OpenAI.RateLimitError);
    expect(error).toMatchObject({ status: 429, code: 'rate_limit_exceeded', type: 'rate_limit_error' });
    expect(error.headers!.get('x-ratelimit-limit-requests')).toBe('1');
    expect(error.headers!.get('x-ratelimit-remaining-requests')).toBe('0');
    expect(Number(error.headers!.get('retry-after'))).toBeGreaterThan(0);
    expect(error.headers!.get('x-should-retry')).toBe('true');
  });
});

describe('embeddings', () => {
  it('embeds with the default options (base64, decoded by the SDK) the vectors the provider makes', async () => {
    const input = ['the red planet', 'bread in a hot oven'];
    const { data, response } = await llmq().embeddings.create({ model: 'sim-embed', input }).withResponse();
    const floats = await upstream().embeddings.create({
      model: 'sim-embed',
      input,
      encoding_format: 'float',
    });
    expect(data.model).toBe('sim-embed');
    expect(data.data.map((d) => d.index)).toEqual([0, 1]);
    data.data.forEach((item, i) => {
      expect(item.embedding).toHaveLength(384);
      // float32 on the wire: equal to float precision
      item.embedding.forEach((x, j) => expect(x).toBeCloseTo(floats.data[i]!.embedding[j]!, 6));
    });
    expect(data.usage.prompt_tokens).toBeGreaterThan(0);
    expect(data.usage.total_tokens).toBe(data.usage.prompt_tokens);
    expect(response.headers.get('x-ratelimit-limit-tokens')).toBeTruthy();

    const plain = await llmq().embeddings.create({
      model: 'sim-embed',
      input: 'x marks',
      encoding_format: 'float',
    });
    expect(plain.data[0]!.embedding).toHaveLength(384);
  });

  it('refuses token arrays and other models', async () => {
    const tokens = await failure(llmq().embeddings.create({ model: 'sim-embed', input: [[1, 2, 3]] }));
    expect(tokens).toMatchObject({ status: 400, param: 'input' });
    const model = await failure(llmq().embeddings.create({ model: 'text-embedding-3-small', input: 'x' }));
    expect(model).toBeInstanceOf(OpenAI.NotFoundError);
    expect(model).toMatchObject({ code: 'model_not_found', param: 'model' });
  });

  it("counts against the key's token bucket", async () => {
    const key = await stack.createKey('embedder', { tokensPerMinute: 1, tokenBurst: 30 });
    const words = (n: number) => Array.from({ length: n }, () => 'planet').join(' ');
    const first = await llmq(key)
      .embeddings.create({ model: 'sim-embed', input: words(20) })
      .withResponse();
    const used = first.data.usage.prompt_tokens;
    expect(first.response.headers.get('x-ratelimit-remaining-tokens')).toBe(String(30 - used));
    const spent = await failure(llmq(key).embeddings.create({ model: 'sim-embed', input: words(20) }));
    expect(spent).toMatchObject({ status: 429, code: 'rate_limit_exceeded' });
    const never = await failure(llmq(key).embeddings.create({ model: 'sim-embed', input: words(40) }));
    expect(never).toMatchObject({ status: 429, code: 'request_too_large' });
    expect(never.headers!.get('x-should-retry')).toBe('false');
  });

  it('answers 503 in OpenAI shape where no embeddings provider is configured, and lists no such model', async () => {
    const bare = await stack.startExtraApi({ EMBEDDINGS_BASE_URL: '' });
    try {
      const client = new OpenAI({ apiKey: keys.acme!, baseURL: `${bare.url}/v1`, maxRetries: 0 });
      const error = await failure(client.embeddings.create({ model: 'sim-embed', input: 'x' }));
      expect(error).toBeInstanceOf(OpenAI.InternalServerError);
      expect(error).toMatchObject({
        status: 503,
        code: 'embeddings_unavailable',
        type: 'service_unavailable_error',
      });
      // Retrying cannot help: the SDK is told not to.
      expect(error.headers!.get('x-should-retry')).toBe('false');
      const ids: string[] = [];
      for await (const model of client.models.list()) ids.push(model.id);
      expect(ids).toEqual(['sim-default', 'sim-large', 'sim-small']);
    } finally {
      await bare.process.stop();
    }
  });
});

describe('models', () => {
  it('lists every model of the providers file and the embeddings model, and retrieves them', async () => {
    const ids: string[] = [];
    for await (const model of llmq().models.list()) {
      expect(model).toMatchObject({ object: 'model', owned_by: 'llmq', created: expect.any(Number) });
      ids.push(model.id);
    }
    expect(ids).toEqual(['sim-default', 'sim-embed', 'sim-large', 'sim-small']);
    expect(await llmq().models.retrieve('sim-default')).toMatchObject({ id: 'sim-default' });
    expect(await llmq().models.retrieve('sim-large')).toMatchObject({ id: 'sim-large', object: 'model' });
    const missing = await failure(llmq().models.retrieve('gpt-nope'));
    expect(missing).toBeInstanceOf(OpenAI.NotFoundError);
    expect(missing.code).toBe('model_not_found');
  });
});

async function setFault(fault: string | null): Promise<void> {
  const res = await fetch(`${stack.simulatorUrl}/admin/fault`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ fault }),
  });
  expect(res.status).toBe(200);
}
