/**
 * The OpenAI-compatible facade: `POST /v1/chat/completions` with `stream: true`, read to
 * `data: [DONE]`, as an application using the openai SDK does. Time to first token is the first
 * chunk with content. Needs k6 with the xk6-sse extension (a streamed POST); see loadtest/README.md:
 *
 *   ./k6 run -e SCENARIO=openai -e LLMQ_URL=http://localhost:3000 -e LLMQ_API_KEY=... loadtest/k6/openai.js
 */
import { parseJson } from './lib/scenario.js';
import { openScript, userLoop } from './lib/script.js';
import { readStream } from './lib/stream.js';

export { sampleQueue } from './lib/scenario.js';

const script = openScript('openai');

export const options = script.options;
export default userLoop(script, iteration);

/**
 * @param {import('./lib/script.js').Request} request
 * @param {import('./lib/script.js').Attempt} attempt
 * @returns {string | null} the error type, or null when the stream reached [DONE]
 */
function iteration(request, attempt) {
  const params = {
    method: 'POST',
    headers: script.headers,
    body: JSON.stringify({
      model: script.scenario.model,
      messages: [{ role: 'user', content: request.prompt }],
      max_tokens: request.maxTokens,
      stream: true,
    }),
    tags: { ...attempt.tags, name: 'POST /v1/chat/completions' },
  };
  return readStream(`${script.url}/v1/chat/completions`, params, attempt, (event) => {
    if (event.data === '[DONE]') return 'end';
    if (!event.data) return undefined;
    const chunk = parseJson(event.data);
    if (chunk === null) return { failure: 'bad_response' };
    if (chunk.error) return { failure: `failed:${chunk.error.code ?? chunk.error.type ?? 'error'}` };
    return chunk.choices?.[0]?.delta?.content ? 'token' : undefined;
  });
}
