/**
 * Submit, then stream: `POST /api/generate`, then read the job's server-sent events (`streamUrl`)
 * to the terminal one. Time to first token is the first `token` event. Needs a k6 built with the
 * xk6-sse extension (k6 has no SSE client of its own); see loadtest/README.md:
 *
 *   xk6 build --with github.com/phymbert/xk6-sse
 *   ./k6 run -e SCENARIO=sse -e LLMQ_URL=http://localhost:3000 -e LLMQ_API_KEY=... loadtest/k6/submit-sse.js
 */
import http from 'k6/http';
import { sleep } from 'k6';
import sse from 'k6/x/sse';
import {
  buildOptions,
  createPromptSource,
  loadScenario,
  metrics,
  parseDuration,
  parseJson,
  recordOutcome,
  requestHeaders,
  target,
  thinkSeconds,
  vuRandom,
} from './lib/scenario.js';

export { sampleQueue } from './lib/scenario.js';

const { scenario, prompts } = loadScenario('sse');
const { url, key } = target();
const timeoutMs = parseDuration(scenario.requestTimeout ?? '60s');
const TERMINAL = ['completed', 'failed', 'cancelled', 'incomplete'];

export const options = buildOptions(scenario);

/** @type {(() => number) | undefined} */
let random;
/** @type {(() => { className: string, prompt: string, maxTokens: number }) | undefined} */
let nextPrompt;

export default function () {
  random ??= vuRandom(scenario.seed, __VU);
  nextPrompt ??= createPromptSource(prompts, random);
  const request = nextPrompt();
  recordOutcome(iteration(request), request.className);
  const pause = thinkSeconds(scenario, random);
  if (pause > 0) sleep(pause);
}

/**
 * @param {{ className: string, prompt: string, maxTokens: number }} request
 * @returns {string | null} the error type, or null when the job completed
 */
function iteration(request) {
  const tags = { class: request.className };
  const headers = requestHeaders(scenario, key);
  const t0 = Date.now();
  const deadline = t0 + timeoutMs;
  const res = http.post(
    `${url}/api/generate`,
    JSON.stringify({
      prompt: request.prompt,
      max_tokens: request.maxTokens,
      ...(scenario.model ? { model: scenario.model } : {}),
    }),
    { headers, tags: { ...tags, name: 'POST /api/generate' }, timeout: timeoutMs },
  );
  if (res.status === 200) {
    metrics.acceptMs.add(res.timings.duration, tags);
    metrics.ttftMs.add(Date.now() - t0, tags);
    metrics.completionMs.add(Date.now() - t0, tags);
    return null;
  }
  if (res.status !== 202) return `http_${res.status}`;
  metrics.acceptMs.add(res.timings.duration, tags);
  const streamUrl = /** @type {{ streamUrl?: string }} */ (res.json()).streamUrl;
  if (!streamUrl) return 'bad_response';

  /** @type {number | null} */
  let firstToken = null;
  /** @type {string | null} */
  let terminal = null;
  /** @type {string | null} */
  let failure = null;
  const stream = sse.open(
    `${url}${streamUrl}`,
    {
      method: 'GET',
      headers: { Authorization: headers.Authorization ?? '' },
      tags: { ...tags, name: 'GET /api/jobs/:id/stream' },
    },
    (client) => {
      client.on('event', (event) => {
        // Heartbeat comments arrive as events too: they let a stuck stream see its deadline.
        if (Date.now() > deadline) {
          failure = 'timeout';
          client.close();
          return;
        }
        if (event.name === 'token' && firstToken === null) firstToken = Date.now();
        if (event.name === 'error') {
          failure = 'stream_error';
          client.close();
        } else if (TERMINAL.includes(event.name)) {
          terminal = event.name;
          if (event.name === 'failed') failure = `failed:${parseJson(event.data)?.error?.code ?? 'unknown'}`;
          else if (event.name !== 'completed') failure = event.name;
          client.close();
        }
      });
    },
  );
  if (stream.error) return 'network';
  if (stream.status !== 200) return `http_${stream.status}`;
  if (failure !== null) return failure;
  if (terminal === null) return 'stream_ended';
  const done = Date.now();
  metrics.ttftMs.add((firstToken ?? done) - t0, tags);
  metrics.completionMs.add(done - t0, tags);
  return null;
}
