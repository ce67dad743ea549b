import { performance } from 'node:perf_hooks';
import { requestJson, streamEvents } from './http.mjs';
import { runPool } from './pool.mjs';

/**
 * The two ways a benchmark gets a completion: through llmq (submit a job, follow its SSE stream)
 * and straight from the simulator (the body the worker sends), each read to its end and counted.
 */

const TERMINAL = new Set(['completed', 'failed', 'cancelled']);

/**
 * Submits `count` jobs through `POST /api/generate`, `concurrency` at a time, and returns their ids
 * and stream paths (`/api/jobs/<id>/stream`, valid on any API process of the stack) in order. Any answer but a 202 fails the whole call: a benchmark built on a
 * backlog must know it has all of it.
 * @param {{ agent: import('node:http').Agent, apiUrl: string, key: string, count: number, concurrency: number,
 *           prompt: (i: number) => string, maxTokens: number }} o
 * @returns {Promise<{ jobs: { jobId: string, streamPath: string }[], seconds: number }>}
 */
export async function submitJobs({ agent, apiUrl, key, count, concurrency, prompt, maxTokens }) {
  const jobs = new Array(count);
  const run = await runPool(count, concurrency, async (i) => {
    const res = await requestJson({
      agent,
      url: `${apiUrl}/api/generate`,
      headers: { authorization: `Bearer ${key}` },
      body: { prompt: prompt(i), max_tokens: maxTokens },
    });
    if (res.status !== 202)
      throw new Error(`POST /api/generate answered ${res.status}: ${res.text.slice(0, 300)}`);
    jobs[i] = { jobId: res.json.jobId, streamPath: new URL(res.json.streamUrl, apiUrl).pathname };
  });
  if (run.errors.length > 0)
    throw new Error(
      `${run.errors.length} of ${count} submissions failed: ${[...new Set(run.errors)].slice(0, 3).join('; ')}`,
    );
  return { jobs, seconds: run.seconds };
}

/**
 * Submits one job and reads its SSE stream to the terminal event: the tokens are the `completed`
 * event's `usage.completion_tokens`, and the `token` events' texts must add up to its `result`.
 *
 * With `stopAt` (a `performance.now()` time), the stream is dropped at its first event after that
 * time and the result says `completed: false`; `onTokens` is told each `token` event's tokens as
 * it arrives (never after `stopAt`). A token event's tokens are counted by the simulator's words:
 * every token but a completion's first starts with a space, and no word holds one; a completed
 * stream's count must equal its usage, so a simulator that changed its words would fail the run.
 * @returns {Promise<{ completed: boolean, tokens: number, tokenEvents: number, ms: number }>}
 */
export async function llmqCompletion({
  agent,
  apiUrl,
  key,
  prompt,
  maxTokens,
  timeoutMs = 60_000,
  stopAt = Infinity,
  onTokens = () => undefined,
}) {
  const auth = { authorization: `Bearer ${key}` };
  const t0 = performance.now();
  const accepted = await requestJson({
    agent,
    url: `${apiUrl}/api/generate`,
    headers: auth,
    body: { prompt, max_tokens: maxTokens },
  });
  if (accepted.status !== 202)
    throw new Error(`POST /api/generate answered ${accepted.status}: ${accepted.text.slice(0, 300)}`);
  let text = '';
  let counted = 0;
  let tokenEvents = 0;
  let terminal = null;
  let stopped = false;
  const result = await streamEvents({
    agent,
    url: new URL(accepted.json.streamUrl, apiUrl).href,
    headers: auth,
    timeoutMs,
    onEvent: ({ event, data }) => {
      if (performance.now() > stopAt) return (stopped = true);
      if (event === 'token') {
        const delta = JSON.parse(data).text;
        const tokens = (text === '' ? 1 : 0) + countSpaces(delta);
        text += delta;
        tokenEvents += 1;
        counted += tokens;
        onTokens(tokens);
      } else if (TERMINAL.has(event)) terminal = { event, data: JSON.parse(data) };
    },
  });
  const ms = performance.now() - t0;
  if (result.status !== 200) throw new Error(`GET stream answered ${result.status}: ${result.text}`);
  if (stopped) return { completed: false, tokens: counted, tokenEvents, ms };
  if (terminal?.event !== 'completed')
    throw new Error(
      `the job ended ${terminal?.event ?? 'without a terminal event'}: ${JSON.stringify(terminal?.data ?? null).slice(0, 300)}`,
    );
  const { result: final, usage } = terminal.data;
  if (text !== final) throw new Error('the token events do not add up to the completed result');
  const tokens = usage?.completion_tokens;
  if (!Number.isInteger(tokens)) throw new Error('the completed event has no usage.completion_tokens');
  if (counted !== tokens)
    throw new Error(`counted ${counted} tokens in the token events, the usage says ${tokens}`);
  return { completed: true, tokens, tokenEvents, ms };
}

function countSpaces(text) {
  let n = 0;
  for (let i = text.indexOf(' '); i >= 0; i = text.indexOf(' ', i + 1)) n += 1;
  return n;
}

/**
 * The simulator called as the worker calls it (model `sim-small`, the prompt as one user message,
 * `stream_options.include_usage`), read to `[DONE]`: the tokens are the usage chunk's
 * `completion_tokens`, and there must be one content chunk per token. `stopAt` and `onTokens` as
 * for {@link llmqCompletion} (here every content chunk is one token).
 * @returns {Promise<{ completed: boolean, tokens: number, tokenEvents: number, ms: number }>}
 */
export async function directCompletion({
  agent,
  simulatorUrl,
  prompt,
  maxTokens,
  timeoutMs = 60_000,
  stopAt = Infinity,
  onTokens = () => undefined,
}) {
  let tokenEvents = 0;
  let tokens = null;
  let done = false;
  let stopped = false;
  const t0 = performance.now();
  const result = await streamEvents({
    agent,
    method: 'POST',
    url: `${simulatorUrl}/v1/chat/completions`,
    timeoutMs,
    body: {
      model: 'sim-small',
      messages: [{ role: 'user', content: prompt }],
      max_tokens: maxTokens,
      stream: true,
      stream_options: { include_usage: true },
    },
    onEvent: ({ data }) => {
      if (performance.now() > stopAt) return (stopped = true);
      if (data === '[DONE]') {
        done = true;
        return;
      }
      const chunk = JSON.parse(data);
      if (chunk.choices?.[0]?.delta?.content) {
        tokenEvents += 1;
        onTokens(1);
      }
      if (chunk.usage) tokens = chunk.usage.completion_tokens;
    },
  });
  const ms = performance.now() - t0;
  if (result.status !== 200) throw new Error(`the simulator answered ${result.status}: ${result.text}`);
  if (stopped) return { completed: false, tokens: tokenEvents, tokenEvents, ms };
  if (!done) throw new Error('the simulator stream ended without [DONE]');
  if (!Number.isInteger(tokens)) throw new Error('the simulator stream had no usage chunk');
  if (tokenEvents !== tokens)
    throw new Error(`the simulator sent ${tokenEvents} content chunks for ${tokens} tokens`);
  return { completed: true, tokens, tokenEvents, ms };
}
