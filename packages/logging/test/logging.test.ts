/**
 * The loggers' redaction, on real pino output: credentials never appear, prompt text only with
 * logPrompts, and provider text quoted inside error messages is cut out of message and stack.
 */
import { Writable } from 'node:stream';
import { createLogger, scrubError } from '../src';

function capture(logPrompts = false) {
  const lines: Record<string, unknown>[] = [];
  const raw: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n').filter(Boolean)) {
        raw.push(line);
        lines.push(JSON.parse(line) as Record<string, unknown>);
      }
      done();
    },
  });
  const logger = createLogger({ service: 'test', level: 'debug', logPrompts, destination });
  return { logger, lines, text: () => raw.join('\n') };
}

/** Shaped like @llmq/llm's errors: the provider's text kept apart in `details.upstreamMessage`. */
class ProviderLikeError extends Error {
  constructor(
    readonly upstream: string,
    readonly details = { status: 400, upstreamMessage: upstream },
  ) {
    super(`provider answered 400: ${upstream}`);
    this.name = 'ProviderError';
  }
}

class ExhaustedLikeError extends Error {
  constructor(readonly last: ProviderLikeError) {
    super(`3 attempt(s) failed; last: ${last.message}`);
  }
}

const PROMPT = 'the secret plan is 42';

describe('createLogger', () => {
  test('redacts credentials always, and prompt text by default', () => {
    const { logger, lines, text } = capture();
    logger.info(
      {
        jobId: 'job-1',
        req: { headers: { authorization: 'Bearer llmq_abc', cookie: 'llmq_admin=1.ff' } },
        headers: { 'x-api-key': 'sk-key' },
        apiKey: 'llmq_def',
        spec: { model: 'm', messages: [{ role: 'user', content: PROMPT }] },
        job: { prompt: PROMPT, result: PROMPT },
        body: { messages: [{ role: 'user', content: PROMPT }] },
        text: PROMPT,
      },
      'submitted',
    );
    for (const secret of ['llmq_abc', 'llmq_admin=1.ff', 'sk-key', 'llmq_def', PROMPT]) {
      expect(text()).not.toContain(secret);
    }
    expect(lines[0]).toMatchObject({ jobId: 'job-1', service: 'test', spec: '[redacted]', msg: 'submitted' });
  });

  test('logPrompts lets prompt text through, never credentials', () => {
    const { logger, lines, text } = capture(true);
    expect(lines[0]?.msg).toMatch(/LOG_PROMPTS is on/);
    logger.info({ spec: { messages: [{ content: PROMPT }] }, apiKey: 'llmq_def' }, 'submitted');
    expect(text()).toContain(PROMPT);
    expect(text()).not.toContain('llmq_def');
  });

  test("cuts a provider's echo of the prompt out of error messages and stacks, at any depth", () => {
    const { logger, text } = capture();
    const upstream = `Invalid content: "${PROMPT}"`;
    logger.warn({ err: new ExhaustedLikeError(new ProviderLikeError(upstream)) }, 'attempt failed');
    logger.warn(new ProviderLikeError(upstream), 'as the first argument');
    logger.warn({ err: new Error('outer', { cause: new ProviderLikeError(upstream) }) }, 'as a cause');
    expect(text()).not.toContain(PROMPT);
    expect(text()).toContain('3 attempt(s) failed; last: provider answered 400: [redacted]');
    expect(text()).toContain('"status":400');
  });

  test('errors without provider text, or with logPrompts, are serialized as pino does', () => {
    const plain = scrubError(new Error('boom'), { logPrompts: false }) as { message: string; stack: string };
    expect(plain.message).toBe('boom');
    expect(plain.stack).toContain('boom');
    const kept = scrubError(new ProviderLikeError(PROMPT), { logPrompts: true }) as { message: string };
    expect(kept.message).toContain(PROMPT);
  });
});
