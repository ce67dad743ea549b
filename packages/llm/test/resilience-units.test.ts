import { PeakEwma, pickTwo } from '../src/balancer';
import { CircuitBreaker, type BreakerState } from '../src/breaker';
import { classifyStatus } from '../src/errors';
import { backoffDelay, parseRetryAfter } from '../src/retry';
import { anthropicAdapter } from '../src/adapters/anthropic';
import { openaiAdapter } from '../src/adapters/openai';
import { countTokens } from 'gpt-tokenizer';
import { costOf, countPromptTokens, countTextTokens } from '../src/tokens';

const headers = (h: Record<string, string>) => ({ get: (n: string) => h[n] ?? null });

describe('Retry-After', () => {
  const now = Date.parse('2026-11-22T10:00:00Z');
  it('reads milliseconds, seconds and HTTP dates', () => {
    expect(parseRetryAfter(headers({ 'retry-after-ms': '1500' }), now)).toBe(1500);
    expect(parseRetryAfter(headers({ 'retry-after': '2' }), now)).toBe(2000);
    expect(parseRetryAfter(headers({ 'retry-after': '3600' }), now)).toBe(3_600_000);
    expect(parseRetryAfter(headers({ 'retry-after': 'Sun, 22 Nov 2026 10:00:30 GMT' }), now)).toBe(30_000);
    expect(parseRetryAfter(headers({ 'retry-after': 'Sun, 22 Nov 2026 09:00:00 GMT' }), now)).toBe(0);
    expect(parseRetryAfter(headers({ 'retry-after': 'soon' }), now)).toBeUndefined();
    expect(parseRetryAfter(headers({}), now)).toBeUndefined();
    // retry-after-ms wins: it is the more precise of the two.
    expect(parseRetryAfter(headers({ 'retry-after-ms': '250', 'retry-after': '1' }), now)).toBe(250);
  });

  it('backs off exponentially with full jitter under a cap', () => {
    expect(backoffDelay(0, { baseMs: 100 }, () => 0.999)).toBe(99);
    expect(backoffDelay(3, { baseMs: 100 }, () => 0.5)).toBe(400);
    expect(backoffDelay(20, { baseMs: 100, capMs: 5000 }, () => 0.999)).toBe(4995);
    expect(backoffDelay(5, { baseMs: 100 }, () => 0)).toBe(0);
  });
});

describe('error classification', () => {
  const c = (status: number, body = '', ra?: number) => classifyStatus(status, body, ra, 'b1');
  it('retries transient failures and rate limits, fails fast on request errors', () => {
    for (const s of [408, 409, 500, 502, 503, 504, 529]) expect(c(s).errorClass).toBe('retryable');
    for (const s of [400, 401, 403, 404, 422]) expect(c(s).errorClass).toBe('fatal');
    expect(c(429, '', 2000)).toMatchObject({
      errorClass: 'rate_limited',
      details: { retryAfterMs: 2000, status: 429 },
    });
  });
  it('knows an exhausted quota and a content-policy refusal are permanent', () => {
    const quota = c(
      429,
      JSON.stringify({
        error: {
          message: 'You exceeded your current quota',
          type: 'insufficient_quota',
          code: 'insufficient_quota',
        },
      }),
    );
    expect(quota).toMatchObject({ errorClass: 'fatal', code: 'upstream_quota_exhausted' });
    expect(quota.message).toContain('exceeded your current quota');
    const policy = c(
      400,
      JSON.stringify({ error: { message: 'flagged', code: 'content_policy_violation' } }),
    );
    expect(policy).toMatchObject({ errorClass: 'fatal', code: 'upstream_content_policy' });
  });
});

describe('CircuitBreaker', () => {
  let t = 0;
  const clock = () => t;
  beforeEach(() => {
    t = 1_000_000;
  });

  it('opens on the error ratio once the window has enough requests', () => {
    const changes: BreakerState[] = [];
    const b = new CircuitBreaker({ minRequests: 4, errorRatio: 0.5, openMs: 1000 }, clock, (s) =>
      changes.push(s),
    );
    b.onFailure();
    b.onFailure();
    b.onFailure(); // 3 requests: under the minimum
    expect(b.current).toBe('closed');
    b.onFailure();
    expect(b.current).toBe('open');
    expect(b.tryAcquire()).toBe(false);
    expect(changes).toEqual(['open']);
  });

  it('forgets outcomes older than the window', () => {
    const b = new CircuitBreaker({ minRequests: 4, errorRatio: 0.5, windowMs: 1000 }, clock);
    b.onFailure();
    b.onFailure();
    b.onFailure();
    t += 2000;
    b.onSuccess();
    b.onFailure(); // 1 of 2 in the window, under the minimum
    expect(b.current).toBe('closed');
  });

  it('lets exactly one probe through half-open; success closes, failure re-opens for longer', () => {
    const b = new CircuitBreaker({ minRequests: 1, openMs: 1000, maxOpenMs: 10_000 }, clock);
    b.onFailure();
    expect(b.current).toBe('open');
    t += 1000;
    expect(b.current).toBe('half_open');
    expect(b.tryAcquire()).toBe(true);
    expect(b.tryAcquire()).toBe(false); // one probe only
    b.onFailure();
    expect(b.current).toBe('open');
    t += 1000;
    expect(b.current).toBe('open'); // now open for 2 s
    t += 1000;
    expect(b.tryAcquire()).toBe(true);
    b.onSuccess();
    expect(b.current).toBe('closed');
  });

  it('goes half-open early when a health check sees the backend alive', () => {
    const b = new CircuitBreaker({ minRequests: 1, openMs: 60_000 }, clock);
    b.onFailure();
    b.healthy();
    expect(b.current).toBe('half_open');
  });
});

describe('routing', () => {
  it('Peak-EWMA jumps to a slow sample and decays back', () => {
    let t = 0;
    const e = new PeakEwma(100, 1000, () => t);
    e.observe(500);
    expect(e.ms).toBe(500);
    t += 1000;
    e.observe(100);
    expect(e.ms).toBeCloseTo(500 * Math.exp(-1) + 100 * (1 - Math.exp(-1)), 5);
  });

  it('Peak-EWMA takes its first real sample over the prior at once', () => {
    let t = 0;
    const e = new PeakEwma(1000, 10_000, () => t);
    t += 5;
    e.observe(50);
    expect(e.ms).toBe(50);
    e.observe(40); // from here on, the decay applies
    expect(e.ms).toBeGreaterThan(40);
  });

  it('power of two choices sends most traffic to the faster, less loaded backend', () => {
    const mk = (id: string, ms: number, inFlight = 0) => ({
      id,
      latency: new PeakEwma(ms),
      inFlight,
      weight: 1,
    });
    const backends = [mk('fast', 100), mk('slow', 500), mk('busy', 100, 9)];
    const counts: Record<string, number> = { fast: 0, slow: 0, busy: 0 };
    let seed = 1;
    const random = () => (seed = (seed * 16807) % 2147483647) / 2147483647;
    for (let i = 0; i < 3000; i++) counts[pickTwo(backends, random)!.id]!++;
    // fast wins every pair it is in (2/3); slow only beats busy (1/3); busy (cost 100 x 10) never wins.
    expect(counts.fast).toBeGreaterThan(1800);
    expect(counts.slow).toBeGreaterThan(800);
    expect(counts.busy).toBe(0);
  });
});

describe('adapters', () => {
  const spec = {
    model: 'm',
    messages: [
      { role: 'system' as const, content: 'be brief' },
      { role: 'user' as const, content: 'hi' },
    ],
    params: { max_tokens: 7, temperature: 0.2, stop: 'END' },
  };
  it('builds OpenAI and Anthropic requests', () => {
    const o = openaiAdapter.request(spec, 'up-model', 'k1');
    expect(o.path).toBe('/chat/completions');
    expect(o.headers.authorization).toBe('Bearer k1');
    expect(JSON.parse(o.body)).toMatchObject({
      model: 'up-model',
      stream: true,
      stream_options: { include_usage: true },
      max_tokens: 7,
    });
    const a = anthropicAdapter.request(spec, 'claude-x', 'k2');
    expect(a.path).toBe('/messages');
    expect(a.headers['x-api-key']).toBe('k2');
    expect(a.headers['anthropic-version']).toBe('2023-06-01');
    expect(JSON.parse(a.body)).toEqual({
      model: 'claude-x',
      max_tokens: 7,
      system: 'be brief',
      messages: [{ role: 'user', content: 'hi' }],
      temperature: 0.2,
      stop_sequences: ['END'],
      stream: true,
    });
  });
  it('maps Anthropic stream events to deltas, usage and finish reasons', () => {
    expect(
      anthropicAdapter.parse(
        'message_start',
        JSON.stringify({ type: 'message_start', message: { usage: { input_tokens: 12 } } }),
      ),
    ).toEqual({ promptTokens: 12 });
    expect(
      anthropicAdapter.parse(
        'content_block_delta',
        JSON.stringify({ delta: { type: 'text_delta', text: 'Hi' } }),
      ),
    ).toEqual({ delta: 'Hi' });
    expect(
      anthropicAdapter.parse(
        'message_delta',
        JSON.stringify({ delta: { stop_reason: 'max_tokens' }, usage: { output_tokens: 7 } }),
      ),
    ).toEqual({ finishReason: 'length', completionTokens: 7 });
    expect(anthropicAdapter.parse('message_stop', '{}')).toEqual({ done: true });
    expect(anthropicAdapter.parse('ping', '{}')).toBeNull();
    expect(
      anthropicAdapter.parse(
        'error',
        JSON.stringify({ error: { type: 'overloaded_error', message: 'busy' } }),
      ),
    ).toEqual({ error: { type: 'overloaded_error', message: 'busy' } });
  });
  it('maps OpenAI chunks', () => {
    expect(openaiAdapter.parse(null, '[DONE]')).toEqual({ done: true });
    expect(
      openaiAdapter.parse(
        null,
        JSON.stringify({ choices: [{ delta: { content: 'x' }, finish_reason: null }] }),
      ),
    ).toEqual({ delta: 'x' });
    expect(
      openaiAdapter.parse(
        null,
        JSON.stringify({ choices: [], usage: { prompt_tokens: 3, completion_tokens: 4 } }),
      ),
    ).toEqual({ promptTokens: 3, completionTokens: 4 });
  });
});

describe('tokens and cost', () => {
  it('counts prompt tokens with a real tokenizer and prices usage', () => {
    const n = countPromptTokens([{ role: 'user', content: 'The quick brown fox jumps over the lazy dog.' }]);
    expect(n).toBeGreaterThan(10);
    expect(n).toBeLessThan(20);
    expect(
      costOf(
        { prompt_tokens: 1_000_000, completion_tokens: 500_000, total_tokens: 1_500_000 },
        { inputPerMillion: 0.15, outputPerMillion: 0.6 },
      ),
    ).toBe(0.45);
  });

  it('counts long runs of one character in linear time (unbounded, BPE takes minutes on them)', () => {
    // Each of these took over 90 s before long runs were cut; the test timeout catches a regression.
    for (const [text, low, high] of [
      [' '.repeat(400_000), 1000, 10_000],
      ['\n'.repeat(400_000), 10_000, 50_000],
      ['x'.repeat(400_000), 40_000, 60_000],
    ] as const) {
      const n = countTextTokens(text);
      expect(n).toBeGreaterThanOrEqual(low);
      expect(n).toBeLessThanOrEqual(high);
    }
    // Ordinary text is counted exactly as the tokenizer does: no cut applies to it.
    const words = Array.from({ length: 1000 }, (_, i) => `word${i}`).join(' ');
    expect(countTextTokens(words)).toBe(countTokens(words));
  });
});
