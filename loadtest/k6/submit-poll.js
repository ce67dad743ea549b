/**
 * Submit, then poll: `POST /api/generate`, then `GET pollUrl` every `pollInterval` until the job
 * ends. Plain k6, no extension.
 *
 *   k6 run -e SCENARIO=seed-mix -e LLMQ_URL=http://localhost:3000 -e LLMQ_API_KEY=... loadtest/k6/submit-poll.js
 */
import http from 'k6/http';
import { sleep } from 'k6';
import {
  buildOptions,
  createPromptSource,
  loadScenario,
  metrics,
  parseDuration,
  recordOutcome,
  requestHeaders,
  target,
  thinkSeconds,
  vuRandom,
} from './lib/scenario.js';

export { sampleQueue } from './lib/scenario.js';

const { scenario, prompts } = loadScenario('poll');
const { url, key } = target();
const pollSeconds = parseDuration(scenario.transport.pollInterval ?? '500ms') / 1000;
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
    // Answered from the cache: accepted, first token and completion all at once.
    metrics.acceptMs.add(res.timings.duration, tags);
    metrics.completionMs.add(Date.now() - t0, tags);
    return null;
  }
  if (res.status !== 202) return `http_${res.status}`;
  metrics.acceptMs.add(res.timings.duration, tags);
  const pollUrl = /** @type {{ pollUrl?: string }} */ (res.json()).pollUrl;
  if (!pollUrl) return 'bad_response';
  for (;;) {
    if (Date.now() + pollSeconds * 1000 > deadline) return 'timeout';
    sleep(pollSeconds);
    const poll = http.get(`${url}${pollUrl}`, {
      headers,
      tags: { ...tags, name: 'GET /api/jobs/:id' },
      timeout: Math.max(1, deadline - Date.now()),
    });
    if (poll.status !== 200) return `http_${poll.status}`;
    const job = /** @type {{ status: string, error?: { code?: string } }} */ (poll.json());
    if (!TERMINAL.includes(job.status)) continue;
    if (job.status !== 'completed')
      return job.status === 'failed' ? `failed:${job.error?.code ?? 'unknown'}` : job.status;
    metrics.completionMs.add(Date.now() - t0, tags);
    return null;
  }
}
