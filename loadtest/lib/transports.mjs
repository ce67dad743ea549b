// @ts-check
/**
 * One iteration of a virtual user for each transport: send one prompt and follow it to its end,
 * noting when it was accepted, when its first token came and when it completed. The k6 scripts
 * (`k6/submit-poll.js`, `k6/submit-sse.js`, `k6/openai.js`) do the same with k6's clients.
 *
 * HTTP goes through bench's small node:http client (keep-alive agent, SSE frames as they arrive),
 * so the load generator spends as little of the shared cores as the benchmarks do.
 */
import { performance } from 'node:perf_hooks';
import { requestJson, streamEvents } from '../../bench/lib/http.mjs';

const TERMINAL = new Set(['completed', 'failed', 'cancelled', 'incomplete']);

/** An iteration that failed; `type` is what the report counts errors by (`http_429`, `timeout`...). */
export class IterationError extends Error {
  /**
   * @param {string} type
   * @param {string} message
   */
  constructor(type, message) {
    super(message);
    this.name = 'IterationError';
    this.type = type;
  }
}

/**
 * @typedef {{ acceptMs: number | null, ttftMs: number | null, completionMs: number | null, cached: boolean }} Marks
 * @typedef {{ prompt: string, maxTokens: number }} Request
 * @typedef {{ agent: import('node:http').Agent, url: string, key: string, model: string | null,
 *             cache: 'bypass' | 'use', pollIntervalMs: number | null,
 *             sleep: (ms: number) => Promise<void>, stopped: () => boolean }} TransportOptions
 *   `stopped` is checked before every request, so an interrupted run sends nothing more.
 * @typedef {(request: Request, marks: Marks, deadline: number) => Promise<void>} Transport
 */

/**
 * @param {'poll' | 'sse' | 'openai'} kind
 * @param {TransportOptions} options
 * @returns {Transport}
 */
export function createTransport(kind, options) {
  switch (kind) {
    case 'poll':
      return (request, marks, deadline) => submitThenPoll(options, request, marks, deadline);
    case 'sse':
      return (request, marks, deadline) => submitThenStream(options, request, marks, deadline);
    case 'openai':
      return (request, marks, deadline) => openaiStream(options, request, marks, deadline);
  }
  throw new Error(`unknown transport ${kind}`);
}

/** @param {TransportOptions} o */
function headers(o) {
  return {
    authorization: `Bearer ${o.key}`,
    ...(o.cache === 'bypass' ? { 'cache-control': 'no-cache, no-store' } : {}),
  };
}

/**
 * Time left before the iteration's deadline; throws once it has passed or the run has stopped.
 * @param {TransportOptions} o
 * @param {number} deadline
 */
function remaining(o, deadline) {
  if (o.stopped()) throw new IterationError('interrupted', 'the run stopped');
  const left = deadline - performance.now();
  if (left <= 0) throw new IterationError('timeout', 'the request timeout passed');
  return left;
}

/**
 * `POST /api/generate`. Resolves with the job's URLs after a 202, or null when the cache answered
 * (200 with the result): the iteration is then complete.
 * @param {TransportOptions} o
 * @param {Request} request
 * @param {Marks} marks
 * @param {number} t0
 * @param {number} deadline
 */
async function submit(o, request, marks, t0, deadline) {
  const res = await requestJson({
    agent: o.agent,
    url: `${o.url}/api/generate`,
    headers: headers(o),
    body: { prompt: request.prompt, max_tokens: request.maxTokens, ...(o.model ? { model: o.model } : {}) },
    timeoutMs: remaining(o, deadline),
  });
  const elapsed = performance.now() - t0;
  if (res.status === 200 && res.json?.status === 'completed') {
    marks.acceptMs = marks.ttftMs = marks.completionMs = elapsed;
    marks.cached = true;
    return null;
  }
  if (res.status !== 202) throw httpError('POST /api/generate', res.status, res.text);
  marks.acceptMs = elapsed;
  const { pollUrl, streamUrl } = res.json ?? {};
  if (typeof pollUrl !== 'string' || typeof streamUrl !== 'string') {
    throw new IterationError(
      'bad_response',
      `a 202 without pollUrl and streamUrl: ${res.text.slice(0, 200)}`,
    );
  }
  return { pollUrl: new URL(pollUrl, o.url).href, streamUrl: new URL(streamUrl, o.url).href };
}

/**
 * @param {TransportOptions} o
 * @param {Request} request
 * @param {Marks} marks
 * @param {number} deadline
 */
async function submitThenPoll(o, request, marks, deadline) {
  const t0 = performance.now();
  const job = await submit(o, request, marks, t0, deadline);
  if (job === null) return;
  for (;;) {
    await o.sleep(Math.min(/** @type {number} */ (o.pollIntervalMs), remaining(o, deadline)));
    const res = await requestJson({
      agent: o.agent,
      method: 'GET',
      url: job.pollUrl,
      headers: headers(o),
      timeoutMs: remaining(o, deadline),
    });
    if (res.status !== 200) throw httpError('GET pollUrl', res.status, res.text);
    const status = res.json?.status;
    if (!TERMINAL.has(status)) continue;
    endOf(status, res.json?.error);
    marks.completionMs = performance.now() - t0;
    return;
  }
}

/**
 * @param {TransportOptions} o
 * @param {Request} request
 * @param {Marks} marks
 * @param {number} deadline
 */
async function submitThenStream(o, request, marks, deadline) {
  const t0 = performance.now();
  const job = await submit(o, request, marks, t0, deadline);
  if (job === null) return;
  /** @type {{ type: string, data: any } | null} */
  let terminal = null;
  const result = await streamEvents({
    agent: o.agent,
    url: job.streamUrl,
    headers: headers(o),
    timeoutMs: remaining(o, deadline),
    onEvent: ({ event, data }) => {
      if (event === 'token' && marks.ttftMs === null) marks.ttftMs = performance.now() - t0;
      if (TERMINAL.has(event) || event === 'error') {
        terminal = { type: event, data: parseOrNull(data) };
        return true;
      }
      return false;
    },
  });
  if (result.status !== 200) throw httpError('GET streamUrl', result.status, result.text ?? '');
  const end = /** @type {{ type: string, data: any } | null} */ (terminal);
  if (end === null) throw new IterationError('stream_ended', 'the stream ended without a terminal event');
  if (end.type === 'error') throw new IterationError('stream_error', `the stream reported ${end.data?.code}`);
  endOf(end.type, end.data?.error);
  // A job the cache answered after the 202 has no token event: its answer came all at once.
  marks.completionMs = performance.now() - t0;
  marks.ttftMs ??= marks.completionMs;
}

/**
 * `POST /v1/chat/completions` with `stream: true`, read to `[DONE]`.
 * @param {TransportOptions} o
 * @param {Request} request
 * @param {Marks} marks
 * @param {number} deadline
 */
async function openaiStream(o, request, marks, deadline) {
  const t0 = performance.now();
  let done = false;
  /** @type {string | null} */
  let failure = null;
  const result = await streamEvents({
    agent: o.agent,
    method: 'POST',
    url: `${o.url}/v1/chat/completions`,
    headers: headers(o),
    body: {
      model: o.model,
      messages: [{ role: 'user', content: request.prompt }],
      max_tokens: request.maxTokens,
      stream: true,
    },
    timeoutMs: remaining(o, deadline),
    onEvent: ({ data }) => {
      if (data === '[DONE]') {
        done = true;
        return true;
      }
      const chunk = parseOrNull(data);
      if (chunk?.error) {
        failure = String(chunk.error.code ?? chunk.error.type ?? 'error');
        return true;
      }
      if (marks.ttftMs === null && chunk?.choices?.[0]?.delta?.content) marks.ttftMs = performance.now() - t0;
      return false;
    },
  });
  if (result.status !== 200) throw httpError('POST /v1/chat/completions', result.status, result.text ?? '');
  if (failure !== null) throw new IterationError(`failed:${failure}`, 'the stream carried an error');
  if (!done) throw new IterationError('stream_ended', 'the stream ended without [DONE]');
  marks.completionMs = performance.now() - t0;
  marks.ttftMs ??= marks.completionMs;
}

/**
 * Throws for every terminal status but `completed`.
 * @param {string} status
 * @param {{ code?: string } | undefined} error
 */
function endOf(status, error) {
  switch (status) {
    case 'completed':
      return;
    case 'failed':
      throw new IterationError(`failed:${error?.code ?? 'unknown'}`, 'the job failed');
    case 'cancelled':
      throw new IterationError('cancelled', 'the job was cancelled');
    case 'incomplete':
      throw new IterationError('incomplete', 'the job ended incomplete');
    default:
      throw new IterationError('bad_response', `unexpected status ${status}`);
  }
}

/**
 * @param {string} what
 * @param {number} status
 * @param {string} text
 */
function httpError(what, status, text) {
  return new IterationError(`http_${status}`, `${what} answered ${status}: ${text.slice(0, 200)}`);
}

/** @param {string} text */
function parseOrNull(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/**
 * The error type of anything an iteration threw: its own type, a network error's code, or
 * `timeout` once the deadline has passed.
 * @param {unknown} error
 * @param {number} deadline
 */
export function errorType(error, deadline) {
  if (error instanceof IterationError) return error.type;
  if (performance.now() >= deadline - 5) return 'timeout';
  const code = /** @type {{ code?: unknown }} */ (error)?.code;
  return typeof code === 'string' ? `network:${code}` : 'client_error';
}
