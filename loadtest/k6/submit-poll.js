/**
 * Submit, then poll: `POST /api/generate`, then `GET pollUrl` every `pollInterval` until the job
 * ends. Plain k6, no extension.
 *
 *   k6 run -e SCENARIO=seed-mix -e LLMQ_URL=http://localhost:3000 -e LLMQ_API_KEY=... loadtest/k6/submit-poll.js
 */
import http from 'k6/http';
import { sleep } from 'k6';
import { metrics, parseDuration } from './lib/scenario.js';
import { TERMINAL, openScript, submitJob, userLoop } from './lib/script.js';

export { sampleQueue } from './lib/scenario.js';

const script = openScript('poll');
const pollSeconds = parseDuration(script.scenario.transport.pollInterval ?? '500ms') / 1000;

export const options = script.options;
export default userLoop(script, iteration);

/**
 * @param {import('./lib/script.js').Request} request
 * @param {import('./lib/script.js').Attempt} attempt
 * @returns {string | null} the error type, or null when the job completed
 */
function iteration(request, attempt) {
  const { tags, t0, deadline } = attempt;
  const submitted = submitJob(script, request, attempt, 'pollUrl');
  if (!('url' in submitted)) return submitted.outcome;
  for (;;) {
    if (Date.now() + pollSeconds * 1000 > deadline) return 'timeout';
    sleep(pollSeconds);
    const poll = http.get(submitted.url, {
      headers: script.headers,
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
