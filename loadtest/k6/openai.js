/**
 * The OpenAI-compatible facade: `POST /v1/chat/completions` with `stream: true`, read to
 * `data: [DONE]`, as an application using the openai SDK does. Time to first token is the first
 * chunk with content. Needs k6 with the xk6-sse extension (a streamed POST); see loadtest/README.md:
 *
 *   ./k6 run -e SCENARIO=openai -e LLMQ_URL=http://localhost:3000 -e LLMQ_API_KEY=... loadtest/k6/openai.js
 */
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

const { scenario, prompts } = loadScenario('openai');
const { url, key } = target();
const timeoutMs = parseDuration(scenario.requestTimeout ?? '60s');

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
 * @returns {string | null} the error type, or null when the stream reached [DONE]
 */
function iteration(request) {
  const tags = { class: request.className };
  const t0 = Date.now();
  const deadline = t0 + timeoutMs;
  /** @type {number | null} */
  let firstToken = null;
  let done = false;
  /** @type {string | null} */
  let failure = null;
  const stream = sse.open(
    `${url}/v1/chat/completions`,
    {
      method: 'POST',
      headers: requestHeaders(scenario, key),
      body: JSON.stringify({
        model: scenario.model,
        messages: [{ role: 'user', content: request.prompt }],
        max_tokens: request.maxTokens,
        stream: true,
      }),
      tags: { ...tags, name: 'POST /v1/chat/completions' },
    },
    (client) => {
      client.on('event', (event) => {
        if (Date.now() > deadline) {
          failure = 'timeout';
          client.close();
          return;
        }
        if (event.data === '[DONE]') {
          done = true;
          client.close();
          return;
        }
        if (!event.data) return;
        const chunk = parseJson(event.data);
        if (chunk === null) {
          failure = 'bad_response';
          client.close();
        } else if (chunk.error) {
          failure = `failed:${chunk.error.code ?? chunk.error.type ?? 'error'}`;
          client.close();
        } else if (firstToken === null && chunk.choices?.[0]?.delta?.content) {
          firstToken = Date.now();
        }
      });
    },
  );
  if (stream.error) return 'network';
  if (stream.status !== 200) return `http_${stream.status}`;
  if (failure !== null) return failure;
  if (!done) return 'stream_ended';
  const end = Date.now();
  metrics.ttftMs.add((firstToken ?? end) - t0, tags);
  metrics.completionMs.add(end - t0, tags);
  return null;
}
