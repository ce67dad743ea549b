/**
 * Submit, then stream: `POST /api/generate`, then read the job's server-sent events (`streamUrl`)
 * to the terminal one. Time to first token is the first `token` event. Needs a k6 built with the
 * xk6-sse extension (k6 has no SSE client of its own); see loadtest/README.md:
 *
 *   xk6 build --with github.com/phymbert/xk6-sse
 *   ./k6 run -e SCENARIO=sse -e LLMQ_URL=http://localhost:3000 -e LLMQ_API_KEY=... loadtest/k6/submit-sse.js
 */
import { parseJson } from './lib/scenario.js';
import { TERMINAL, openScript, submitJob, userLoop } from './lib/script.js';
import { readStream } from './lib/stream.js';

export { sampleQueue } from './lib/scenario.js';

const script = openScript('sse');

export const options = script.options;
export default userLoop(script, iteration);

/**
 * @param {import('./lib/script.js').Request} request
 * @param {import('./lib/script.js').Attempt} attempt
 * @returns {string | null} the error type, or null when the job completed
 */
function iteration(request, attempt) {
  const submitted = submitJob(script, request, attempt, 'streamUrl');
  if (!('url' in submitted)) return submitted.outcome;
  const params = {
    method: 'GET',
    headers: { Authorization: script.headers.Authorization ?? '' },
    tags: { ...attempt.tags, name: 'GET /api/jobs/:id/stream' },
  };
  return readStream(submitted.url, params, attempt, (event) => {
    if (event.name === 'token') return 'token';
    if (event.name === 'error') return { failure: 'stream_error' };
    if (!TERMINAL.includes(event.name)) return undefined;
    if (event.name === 'completed') return 'end';
    if (event.name === 'failed')
      return { failure: `failed:${parseJson(event.data)?.error?.code ?? 'unknown'}` };
    return { failure: event.name };
  });
}
