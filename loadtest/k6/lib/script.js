/**
 * The frame of the three k6 scripts: what each reads in the init context, the virtual user's
 * loop (draw a prompt, send it, record what came of it, think), and the `POST /api/generate` the
 * two job scripts start with. A script adds only its transport: how one request is sent and
 * timed.
 */
import http from 'k6/http';
import { sleep } from 'k6';
import {
  buildOptions,
  loadScenario,
  metrics,
  parseDuration,
  recordOutcome,
  requestHeaders,
  target,
  userDraws,
} from './scenario.js';

/**
 * @typedef {import('./scenario.js').Request} Request
 * @typedef {{ scenario: import('./scenario.js').Scenario, prompts: import('./scenario.js').PromptClass[],
 *             url: string, headers: { [name: string]: string }, timeoutMs: number,
 *             options: import('k6/options').Options }} Script
 * @typedef {{ tags: { class: string }, t0: number, deadline: number }} Attempt
 *   one request's metric tags, start (ms since the epoch) and the time it must end by
 */

/** Job states after which nothing more happens to the job. */
export const TERMINAL = ['completed', 'failed', 'cancelled', 'incomplete'];

/**
 * Reads `SCENARIO`, its corpus and the target. Init context only (k6's `open`).
 * @param {'poll' | 'sse' | 'openai'} kind the transport the calling script implements
 * @returns {Script}
 */
export function openScript(kind) {
  const { scenario, prompts } = loadScenario(kind);
  const { url, key } = target();
  return {
    scenario,
    prompts,
    url,
    headers: requestHeaders(scenario, key),
    timeoutMs: parseDuration(scenario.requestTimeout ?? '60s'),
    options: buildOptions(scenario),
  };
}

/**
 * A script's default function: each iteration sends this user's next prompt with `send`,
 * records the outcome, then pauses for the scenario's think time.
 * @param {Script} script
 * @param {(request: Request, attempt: Attempt) => string | null} send returns the error type, or
 *   null when the request completed (and has recorded its latencies)
 * @returns {() => void}
 */
export function userLoop(script, send) {
  /** @type {ReturnType<typeof userDraws> | undefined} */
  let draws;
  return () => {
    draws ??= userDraws(script.scenario, script.prompts, __VU);
    const request = draws.nextRequest();
    const t0 = Date.now();
    const attempt = { tags: { class: request.className }, t0, deadline: t0 + script.timeoutMs };
    recordOutcome(send(request, attempt), request.className);
    const pause = draws.thinkSeconds();
    if (pause > 0) sleep(pause);
  };
}

/**
 * `POST /api/generate` with one request, recording its acceptance. A 202 queued a job, to be
 * followed at its `link`; a 200 is an answer from the cache: accepted, first token (where the
 * transport times one) and completion all at once.
 * @param {Script} script
 * @param {Request} request
 * @param {Attempt} attempt
 * @param {'pollUrl' | 'streamUrl'} link the field of the 202 to follow
 * @returns {{ url: string } | { outcome: string | null }} the job's URL to follow, or the
 *   iteration's outcome when there is none
 */
export function submitJob(script, request, { tags, t0 }, link) {
  const res = http.post(
    `${script.url}/api/generate`,
    JSON.stringify({
      prompt: request.prompt,
      max_tokens: request.maxTokens,
      ...(script.scenario.model ? { model: script.scenario.model } : {}),
    }),
    { headers: script.headers, tags: { ...tags, name: 'POST /api/generate' }, timeout: script.timeoutMs },
  );
  if (res.status !== 200 && res.status !== 202) return { outcome: `http_${res.status}` };
  metrics.acceptMs.add(res.timings.duration, tags);
  if (res.status === 200) {
    const elapsed = Date.now() - t0;
    if (link === 'streamUrl') metrics.ttftMs.add(elapsed, tags);
    metrics.completionMs.add(elapsed, tags);
    return { outcome: null };
  }
  const url = /** @type {{ pollUrl?: string, streamUrl?: string }} */ (res.json())[link];
  return url ? { url: `${script.url}${url}` } : { outcome: 'bad_response' };
}
