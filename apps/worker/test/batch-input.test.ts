/**
 * Validation of OpenAI batch input files (pure: no process, no database). The end-to-end story
 * is apps/api/test/openai-batches.test.ts.
 */
import type { BatchRecord, BatchResult, QueuedBatchJob } from '@llmq/db';
import type { Job } from 'bullmq';
import pino from 'pino';
import {
  buildOutputs,
  createBatchProcessor,
  parseBatchInput,
  type BatchDeps,
  type BatchInputOptions,
} from '../src/batches';

const options: BatchInputOptions = {
  endpoint: '/v1/chat/completions',
  maxRequests: 5,
  maxPromptTokens: 1000,
  resolveModel: (name) => ({ 'sim-small': 'sim-small', small: 'sim-small' })[name] ?? null,
};

const line = (customId: string, body: object = {}, envelope: object = {}) =>
  JSON.stringify({
    custom_id: customId,
    method: 'POST',
    url: '/v1/chat/completions',
    body: { model: 'sim-small', messages: [{ role: 'user', content: `hello ${customId}` }], ...body },
    ...envelope,
  });

const parse = (lines: string[], overrides: Partial<BatchInputOptions> = {}) =>
  parseBatchInput(Buffer.from(lines.join('\n')), { ...options, ...overrides });

describe('parseBatchInput', () => {
  it('turns each line into a batch-tier job spec, aliases resolved, line numbers counting blank lines', async () => {
    const parsed = await parse([
      line('a', { max_tokens: 7, seed: 3, temperature: 0.5, metadata: { k: 'v' } }),
      '',
      `${line('b', { model: 'small', max_completion_tokens: 9 })}\r`,
      '   ',
    ]);
    if (!parsed.ok) throw new Error(JSON.stringify(parsed.errors));
    expect(parsed.lines.map((l) => [l.line, l.customId])).toEqual([
      [1, 'a'],
      [3, 'b'],
    ]);
    const [a, b] = parsed.lines;
    expect(a!.spec).toEqual({
      model: 'sim-small',
      messages: [{ role: 'user', content: 'hello a' }],
      params: { max_tokens: 7, seed: 3, temperature: 0.5 },
    });
    expect(a!.metadata).toEqual({ k: 'v' });
    expect(b!.spec.model).toBe('sim-small');
    expect(b!.spec.params.max_tokens).toBe(9);
    expect(a!.jobId).not.toBe(b!.jobId);
    expect(a!.requestHash).toMatch(/^[0-9a-f]{64}$/);
  });

  it('fails the whole file on any bad line, naming each line and parameter', async () => {
    const parsed = await parse(
      [
        line('a'),
        'not json',
        '[1, 2]',
        line('a'),
        line('c', {}, { method: 'GET' }),
        line('d', {}, { url: '/v1/completions' }),
        line('e', { messages: [{ role: 'robot', content: 'x' }] }),
        line('f', { model: 'gpt-unknown' }),
        line('g', { stream: true }),
        line('h', { conversation_id: 'c1' }),
        line('i', { messages: [{ role: 'user', content: 'word '.repeat(2000) }] }),
        line('', {}),
        JSON.stringify({ custom_id: 'j', method: 'POST', url: '/v1/chat/completions' }),
      ],
      { maxRequests: 100 },
    );
    expect(parsed.ok).toBe(false);
    if (parsed.ok) return;
    expect(parsed.errors.map((e) => [e.line, e.code, e.param])).toEqual([
      [2, 'invalid_json_line', null],
      [3, 'invalid_json_line', null],
      [4, 'duplicate_custom_id', 'custom_id'],
      [5, 'invalid_method', 'method'],
      [6, 'invalid_url', 'url'],
      [7, 'invalid_request', 'body.messages[0].role'],
      [8, 'model_not_found', 'body.model'],
      [9, 'invalid_value', 'body.stream'],
      [10, 'invalid_value', 'body.conversation_id'],
      [11, 'context_length_exceeded', 'body.messages'],
      [12, 'invalid_value', 'custom_id'],
      [13, 'missing_required_parameter', 'body'],
    ]);
  });

  it('reports at most maxErrors errors', async () => {
    const parsed = await parse(['x', 'y', 'z', line('a')], { maxErrors: 2 });
    expect(parsed).toEqual({
      ok: false,
      errors: [expect.objectContaining({ line: 1 }), expect.objectContaining({ line: 2 })],
    });
  });

  it('refuses an empty file, a file over maxRequests and bytes that are not UTF-8', async () => {
    expect(await parse(['', '  '])).toEqual({
      ok: false,
      errors: [expect.objectContaining({ code: 'empty_file' })],
    });
    const six = ['1', '2', '3', '4', '5', '6'].map((id) => line(id));
    expect(await parse(six)).toEqual({
      ok: false,
      errors: [expect.objectContaining({ code: 'too_many_requests', line: null })],
    });
    expect(await parse(six.slice(0, 5))).toMatchObject({ ok: true });
    const latin1 = Buffer.from([0x7b, 0xe9, 0x7d]);
    expect(await parseBatchInput(latin1, options)).toEqual({
      ok: false,
      errors: [expect.objectContaining({ code: 'invalid_file_encoding' })],
    });
  });
});

describe('buildOutputs', () => {
  const batch = { id: 'batch_1', status: 'cancelled' } as BatchRecord;
  const result = (over: Partial<BatchResult>): BatchResult => ({
    line: 1,
    customId: 'a',
    jobId: '0b7f6b8e-7c1e-4a55-9d4b-2f0d1c3a4b5c',
    status: 'completed',
    model: 'sim-small',
    servedModel: null,
    result: 'hi there',
    finishReason: 'stop',
    usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 },
    error: null,
    createdAt: new Date(1_700_000_000_000),
    ...over,
  });
  const lines = (b: Buffer | null) =>
    b === null
      ? null
      : b
          .toString('utf8')
          .trimEnd()
          .split('\n')
          .map((l) => JSON.parse(l) as unknown);

  const outputs = (...args: Parameters<typeof buildOutputs>) => {
    const built = buildOutputs(...args);
    if ('fail' in built) throw new Error(built.fail.message);
    return built;
  };

  it('writes completions to the output, failures and requests that never ran to the errors, in order', () => {
    const out = outputs(batch, [
      result({ line: 1, customId: 'a' }),
      result({
        line: 2,
        customId: 'b',
        status: 'failed',
        error: { code: 'upstream_400', message: 'bad', status: 400 },
      }),
      result({ line: 3, customId: 'c', status: 'cancelled' }),
      result({
        line: 4,
        customId: 'd',
        status: 'failed',
        error: { code: 'upstream_503', message: 'down', status: 503 },
      }),
    ]);
    expect(lines(out.output)).toEqual([
      {
        id: 'batch_req_0b7f6b8e7c1e4a559d4b2f0d1c3a4b5c',
        custom_id: 'a',
        response: {
          status_code: 200,
          request_id: '0b7f6b8e-7c1e-4a55-9d4b-2f0d1c3a4b5c',
          body: expect.objectContaining({
            object: 'chat.completion',
            created: 1_700_000_000,
            choices: [
              expect.objectContaining({ message: { role: 'assistant', content: 'hi there', refusal: null } }),
            ],
          }),
        },
        error: null,
      },
    ]);
    expect(lines(out.errors)).toEqual([
      expect.objectContaining({
        custom_id: 'b',
        response: expect.objectContaining({
          status_code: 400,
          body: {
            error: { message: 'bad', type: 'invalid_request_error', param: null, code: 'upstream_400' },
          },
        }),
        error: null,
      }),
      expect.objectContaining({
        custom_id: 'c',
        response: null,
        error: expect.objectContaining({ code: 'batch_cancelled' }),
      }),
      expect.objectContaining({ custom_id: 'd', response: expect.objectContaining({ status_code: 500 }) }),
    ]);
  });

  it('fails a batch whose output or error file would pass the size limit', () => {
    const big = result({ result: 'x'.repeat(2000) });
    expect(buildOutputs(batch, [big], 4000)).toMatchObject({ output: expect.any(Buffer) });
    expect(buildOutputs(batch, [big, { ...big, line: 2, customId: 'b' }], 4000)).toEqual({
      fail: expect.objectContaining({
        code: 'output_too_large',
        message: expect.stringContaining('4000 bytes'),
      }),
    });
  });

  it('writes no file for an empty side, and refuses a batch with a job still running', () => {
    expect(outputs(batch, [result({})]).errors).toBeNull();
    expect(() => buildOutputs(batch, [result({ status: 'in_progress' })])).toThrow(/still in_progress/);
  });
});

describe('the batch control job', () => {
  it('enqueues the queued jobs of a batch an earlier run of it expanded already', async () => {
    const batchId = `batch_${'cd'.repeat(16)}`;
    const queued: QueuedBatchJob[] = [
      {
        jobId: '0b7f6b8e-7c1e-4a55-9d4b-2f0d1c3a4b5c',
        tenantId: 'acme',
        spec: { model: 'sim-small', messages: [{ role: 'user', content: 'hi' }], params: {} },
      },
    ];
    const added: { opts?: { jobId?: string } }[][] = [];
    // The run found the batch validating, but another run committed its expansion meanwhile.
    const deps = {
      batches: {
        getById: async () => ({
          id: batchId,
          tenantId: 'acme',
          status: 'validating',
          endpoint: options.endpoint,
          inputFileId: 'file-1',
        }),
        expand: async () => ({ expanded: false, status: 'in_progress' }),
        queuedJobs: async () => queued,
      },
      files: { content: async () => Buffer.from(line('a')) },
      producer: {
        queueFor: () => ({ addBulk: async (jobs: { opts?: { jobId?: string } }[]) => added.push(jobs) }),
      },
      logger: pino({ level: 'silent' }),
      input: { maxRequests: 5, maxPromptTokens: 1000, resolveModel: options.resolveModel },
    } as unknown as BatchDeps;
    const job = { data: { batchId, tenantId: 'acme' }, attemptsMade: 0, opts: {} } as unknown as Job;
    expect(await createBatchProcessor(deps)(job)).toEqual({ status: 'in_progress' });
    expect(added.flat().map((j) => j.opts?.jobId)).toEqual([queued[0]!.jobId]);
  });
});
