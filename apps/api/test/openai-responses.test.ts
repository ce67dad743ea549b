/**
 * OpenAI's Responses API in background mode, through the official SDK against llmq's `/v1`:
 * create → poll → stream → resume from a sequence number → cancel. Real API, worker, simulator,
 * Redis and Postgres. The worker here consumes only the interactive tier, so a `flex` (batch)
 * response stays queued for as long as a test needs it to.
 */
import type { JobEvent } from '@llmq/contracts';
import type { JobRecord } from '@llmq/db';
import { eventually, useStack, type PolledJob } from '@llmq/testing';
import OpenAI from 'openai';
import { failure } from './support/openai';
import { ResponseEventStream, type ResponseEvent } from '../src/openai/response-events';

jest.setTimeout(120_000);

const { stack, keys } = useStack({ workers: 1, workerEnv: { WORKER_QUEUES: 'interactive' } }, [
  'acme',
  'globex',
]);

const llmq = (apiKey = keys.acme!) => new OpenAI({ apiKey, baseURL: `${stack.apiUrl}/v1`, maxRetries: 0 });
const jobIdOf = (responseId: string) => responseId.replace(/^resp_/, '');
const poll = async (jobId: string) =>
  (await (await stack.request(`/api/jobs/${jobId}`, keys.acme!)).json()) as PolledJob & { priority: string };

type StreamEvent = OpenAI.Responses.ResponseStreamEvent;

async function collect(stream: AsyncIterable<StreamEvent>, until?: (e: StreamEvent) => boolean) {
  const events: StreamEvent[] = [];
  for await (const event of stream) {
    events.push(event);
    if (until?.(event)) break;
  }
  return events;
}

const waitUntil = (id: string, statuses: string[]) =>
  eventually(
    async () => {
      const response = await llmq().responses.retrieve(id);
      return statuses.includes(response.status!) ? response : undefined;
    },
    `response ${id} reached ${statuses.join(' or ')}`,
  );

describe('background responses', () => {
  let id: string;
  let done: OpenAI.Responses.Response;

  beforeAll(async () => {
    const created = await llmq().responses.create({
      model: 'sim-small',
      instructions: 'Answer briefly.',
      input: [{ role: 'user', content: [{ type: 'input_text', text: 'Tell me about queues' }] }],
      background: true,
      metadata: { ticket: 'T-1' },
    });
    id = created.id;
    expect(created).toMatchObject({ object: 'response', background: true, model: 'sim-small', output: [] });
    expect(['queued', 'in_progress']).toContain(created.status);
    done = await waitUntil(id, ['completed', 'failed', 'incomplete']);
  });

  it('is created at once as resp_<jobId>, then polled until completed with its text and usage', async () => {
    expect(id).toMatch(/^resp_[0-9a-f-]{36}$/);
    const job = await poll(jobIdOf(id));
    expect(job.status).toBe('completed');
    expect(done).toMatchObject({
      id,
      status: 'completed',
      instructions: 'Answer briefly.',
      metadata: { ticket: 'T-1' },
      error: null,
      incomplete_details: null,
      usage: {
        input_tokens: job.usage!.prompt_tokens,
        output_tokens: job.usage!.completion_tokens,
        total_tokens: job.usage!.total_tokens,
      },
    });
    expect(done.output).toEqual([
      {
        id: `msg_${jobIdOf(id)}`,
        type: 'message',
        status: 'completed',
        role: 'assistant',
        content: [{ type: 'output_text', text: job.result, annotations: [], logprobs: [] }],
      },
    ]);
    expect(done.output_text).toBe(job.result);
  });

  it('streams every event, numbered from 0, with the lifecycle OpenAI clients know', async () => {
    const events = await collect(await llmq().responses.retrieve(id, { stream: true }));
    expect(events.map((e) => e.sequence_number)).toEqual(events.map((_, i) => i));
    const types = events.map((e) => e.type);
    const deltas = types.filter((t) => t === 'response.output_text.delta').length;
    expect(deltas).toBeGreaterThan(0);
    expect(types).toEqual([
      'response.created',
      'response.queued',
      'response.in_progress',
      'response.output_item.added',
      'response.content_part.added',
      ...Array<string>(deltas).fill('response.output_text.delta'),
      'response.output_text.done',
      'response.content_part.done',
      'response.output_item.done',
      'response.completed',
    ]);
    const text = events.flatMap((e) => (e.type === 'response.output_text.delta' ? [e.delta] : [])).join('');
    expect(text).toBe(done.output_text);
    const last = events.at(-1) as OpenAI.Responses.ResponseCompletedEvent;
    expect(last.response).toMatchObject({ id, status: 'completed', usage: done.usage });
  });

  it('resumes after any sequence number exactly where the full stream goes on', async () => {
    const full = await collect(await llmq().responses.retrieve(id, { stream: true }));
    for (const after of [0, 4, full.length - 2]) {
      const resumed = await collect(
        await llmq().responses.retrieve(id, { stream: true, starting_after: after }),
      );
      expect(resumed).toEqual(full.slice(after + 1));
    }
    // The SDK's stream helper replays and filters on its own; its final response is the polled one.
    const helper = llmq().responses.stream({ response_id: id, starting_after: 5 });
    const seen = await collect(helper);
    expect(seen[0]!.sequence_number).toBe(6);
    expect((await helper.finalResponse()).output_text).toBe(done.output_text);
  });

  it('says incomplete when the answer is cut at max_output_tokens', async () => {
    const created = await llmq().responses.create({
      model: 'sim-small',
      input: 'Say a lot',
      max_output_tokens: 16,
      background: true,
    });
    const cut = await waitUntil(created.id, ['incomplete', 'completed', 'failed']);
    expect(cut).toMatchObject({
      status: 'incomplete',
      incomplete_details: { reason: 'max_output_tokens' },
      max_output_tokens: 16,
      usage: { output_tokens: 16 },
    });
    const events = await collect(await llmq().responses.retrieve(created.id, { stream: true }));
    expect(events.at(-1)).toMatchObject({ type: 'response.incomplete', response: { status: 'incomplete' } });
  });
});

describe('streaming a response while it runs', () => {
  it('resumes a dropped live stream from its last sequence number, without gaps or repeats', async () => {
    const first = await collect(
      await llmq().responses.create({
        model: 'sim-small',
        input: 'A long story, please',
        max_output_tokens: 300,
        background: true,
        stream: true,
      }),
      (e) => e.type === 'response.output_text.delta' && e.sequence_number >= 8,
    );
    const id = (first[0] as OpenAI.Responses.ResponseCreatedEvent).response.id;
    const last = first.at(-1)!.sequence_number;
    // Background: the dropped connection left the job running.
    const rest = await collect(await llmq().responses.retrieve(id, { stream: true, starting_after: last }));
    expect(rest.at(-1)).toMatchObject({ type: 'response.incomplete' });
    const whole = await collect(await llmq().responses.retrieve(id, { stream: true }));
    expect([...first, ...rest]).toEqual(whole);
    const text = whole.flatMap((e) => (e.type === 'response.output_text.delta' ? [e.delta] : [])).join('');
    expect(text).toBe((await poll(jobIdOf(id))).result);
  });

  it('cancels a streamed response that is not in the background when its client leaves', async () => {
    const events = await collect(
      await llmq().responses.create({
        model: 'sim-small',
        input: 'Go on and on',
        max_output_tokens: 2000,
        stream: true,
      }),
      (e) => e.type === 'response.output_text.delta',
    );
    const id = (events[0] as OpenAI.Responses.ResponseCreatedEvent).response.id;
    expect((await stack.waitForJob(keys.acme!, jobIdOf(id))).status).toBe('cancelled');
    expect((await llmq().responses.retrieve(id)).status).toBe('cancelled');
  });

  it('answers a plain create (neither background nor stream) with the finished response', async () => {
    const response = await llmq().responses.create({
      model: 'sim-large',
      input: 'Quick one',
      conversation: 'conv-7',
    });
    expect(response).toMatchObject({
      status: 'completed',
      background: false,
      conversation: { id: 'conv-7' },
    });
    expect(response.output_text).toBe((await poll(jobIdOf(response.id))).result);
  });
});

describe('cancel', () => {
  it('cancels a queued flex response (llmq batch tier); again returns it as it is', async () => {
    const created = await llmq().responses.create({
      model: 'sim-small',
      input: 'no hurry',
      background: true,
      service_tier: 'flex',
    });
    expect(created).toMatchObject({ status: 'queued', service_tier: 'flex' });
    expect((await poll(jobIdOf(created.id))).priority).toBe('batch');
    const cancelled = await llmq().responses.cancel(created.id);
    expect(cancelled).toMatchObject({ id: created.id, status: 'cancelled' });
    expect((await llmq().responses.cancel(created.id)).status).toBe('cancelled');
    expect((await llmq().responses.retrieve(created.id)).status).toBe('cancelled');
    const events = await collect(await llmq().responses.retrieve(created.id, { stream: true }));
    expect(events.map((e) => e.type)).toEqual(['response.created', 'response.queued', 'response.failed']);
    expect(events.at(-1)).toMatchObject({ response: { status: 'cancelled' } });
  });

  it('refuses to cancel a finished response, in OpenAI words', async () => {
    const response = await llmq().responses.create({ model: 'sim-small', input: 'done soon' });
    const error = await failure(llmq().responses.cancel(response.id));
    expect(error).toBeInstanceOf(OpenAI.BadRequestError);
    expect(error.message).toMatch(/Cannot cancel a completed response/);
  });
});

describe('refusals', () => {
  it("answers 404 for another tenant's response, exactly as for an unknown one", async () => {
    const created = await llmq().responses.create({ model: 'sim-small', input: 'mine', background: true });
    for (const id of [created.id, 'resp_00000000-0000-4000-8000-000000000000', 'resp_nope']) {
      const other = llmq(keys.globex!);
      for (const call of [other.responses.retrieve(id), other.responses.cancel(id)]) {
        const error = await failure(call);
        expect(error).toBeInstanceOf(OpenAI.NotFoundError);
        expect(error.message).toBe(`404 Response with id '${id}' not found.`);
      }
    }
  });

  it('refuses inputs it cannot honour, naming them', async () => {
    const image = await failure(
      llmq().responses.create({
        model: 'sim-small',
        input: [
          {
            role: 'user',
            content: [
              { type: 'input_text', text: 'what is this?' },
              { type: 'input_image', image_url: 'https://example.com/a.png', detail: 'auto' },
            ],
          },
        ],
      }),
    );
    expect(image).toMatchObject({ status: 400, param: 'input.0.content.1.type' });
    const tools = await failure(
      llmq().responses.create({
        model: 'sim-small',
        input: 'x',
        tools: [{ type: 'function', name: 'f', parameters: {}, strict: false }],
      }),
    );
    expect(tools).toMatchObject({ status: 400, param: 'tools' });
    const unknown = await failure(llmq().responses.create({ model: 'gpt-nope', input: 'x' }));
    expect(unknown).toBeInstanceOf(OpenAI.NotFoundError);
  });
});

describe('the event stream of a response (pure)', () => {
  const job = {
    id: '9b2f4a52-4c1e-4a55-9a1b-2f8e3c4d5e6f',
    tenantId: 't',
    status: 'queued',
    model: 'm',
    priority: 'interactive',
    spec: { model: 'm', messages: [{ role: 'user', content: 'hi' }], params: {} },
    metadata: null,
    createdAt: new Date(0),
  } as unknown as JobRecord;
  const run = (events: JobEvent[]) => {
    const stream = new ResponseEventStream(job);
    return [...stream.opening(), ...events.flatMap((e) => stream.next(e))];
  };
  const deltas = (events: ResponseEvent[]) =>
    events.filter((e) => e.type === 'response.output_text.delta').map((e) => e.delta);

  it('passes over a restarted attempt while it repeats what was streamed, then goes on', () => {
    const events = run([
      { seq: 1, type: 'status', status: 'in_progress', attempt: 1, restarted: false },
      { seq: 2, type: 'token', text: 'Hello' },
      { seq: 3, type: 'token', text: ' wor' },
      { seq: 4, type: 'status', status: 'in_progress', attempt: 2, restarted: true },
      { seq: 5, type: 'token', text: 'Hello w' },
      { seq: 6, type: 'token', text: 'orld!' },
      { seq: 7, type: 'completed', result: 'Hello world!', finishReason: 'stop', usage: null },
    ]);
    expect(deltas(events)).toEqual(['Hello', ' wor', 'ld!']);
    expect(events.map((e) => e.sequence_number)).toEqual(events.map((_, i) => i));
    expect(events.filter((e) => e.type === 'response.in_progress')).toHaveLength(1);
    expect(events.at(-1)).toMatchObject({ type: 'response.completed' });
  });

  it('ends with an error event when a restarted attempt says something else', () => {
    const events = run([
      { seq: 1, type: 'token', text: 'Hello' },
      { seq: 2, type: 'status', status: 'in_progress', attempt: 2, restarted: true },
      { seq: 3, type: 'token', text: 'Goodbye' },
      { seq: 4, type: 'completed', result: 'Goodbye', finishReason: 'stop', usage: null },
    ]);
    expect(events.at(-1)).toMatchObject({ type: 'error', code: 'stream_restarted' });
    expect(deltas(events)).toEqual(['Hello']);
  });
});
