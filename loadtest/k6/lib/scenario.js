/**
 * What the three k6 scripts share: reading a scenario file (the same files the Node runner
 * reads), turning it into k6 options, the custom metrics, and drawing prompts.
 *
 * Prompts come from the runner's own `lib/prompts.js` and `lib/random.js` (CommonJS with no
 * dependencies, which k6 imports as it imports ES modules): the same mix and length
 * distributions, and with a `seed` the same sequence per user number (k6 numbers its users
 * itself, so which user gets which may differ). The runner's scenario module needs zod and
 * node:fs, which k6 cannot load: validate a scenario with the runner first (`node
 * loadtest/run.mjs --check <scenario>`), this file checks only what k6 itself needs.
 * k6-parity.test.ts runs this file under Node and compares its options with the runner's.
 */
import http from 'k6/http';
import { Counter, Gauge, Rate, Trend } from 'k6/metrics';
import { createPromptSource, vuRandom } from '../../lib/prompts.js';
import { uniformInt } from '../../lib/random.js';

/**
 * @typedef {import('../../lib/prompts.js').PromptClass} PromptClass
 * @typedef {{ [stat: string]: number }} LatencyThreshold
 * @typedef {{ name: string, description?: string, seed?: number, model?: string, cache?: 'bypass' | 'use',
 *             transport: { kind: 'poll' | 'sse' | 'openai', pollInterval?: string },
 *             stages: { duration: string, target: number }[], gracefulStop?: string,
 *             thinkTime?: { min: string, max: string }, requestTimeout?: string,
 *             corpus?: string, prompts?: PromptClass[],
 *             thresholds: { acceptMs?: LatencyThreshold, ttftMs?: LatencyThreshold,
 *                           completionMs?: LatencyThreshold, errorRate?: number } }} Scenario
 * @typedef {{ className: string, prompt: string, maxTokens: number }} Request
 */

/** The custom metrics, named as the Node runner's report names them in its k6 column. */
export const metrics = {
  acceptMs: new Trend('llmq_accept_ms', true),
  ttftMs: new Trend('llmq_ttft_ms', true),
  completionMs: new Trend('llmq_completion_ms', true),
  /** One sample per finished iteration: true when it failed. */
  errors: new Rate('llmq_errors'),
  /** Failed iterations by `type` tag: http_429, failed:<code>, timeout, stream_ended... */
  errorTypes: new Counter('llmq_error_types'),
  completed: new Counter('llmq_completed'),
  queueWaiting: new Gauge('llmq_queue_waiting'),
  queueActive: new Gauge('llmq_queue_active'),
};

/** Where the API is and the key to use: `LLMQ_URL` (default http://localhost:3000) and `LLMQ_API_KEY`. */
export function target() {
  const url = (__ENV.LLMQ_URL || 'http://localhost:3000').replace(/\/+$/, '');
  const key = __ENV.LLMQ_API_KEY;
  if (!key) throw new Error('set LLMQ_API_KEY (k6 run -e LLMQ_API_KEY=... or the environment)');
  return { url, key };
}

/**
 * Reads `SCENARIO` (a name in loadtest/scenarios, or an absolute path) and its corpus. Must run
 * in the init context (k6's `open`), and checks that the scenario is meant for this script.
 * @param {'poll' | 'sse' | 'openai'} kind the transport the calling script implements
 * @returns {{ scenario: Scenario, prompts: PromptClass[] }}
 */
export function loadScenario(kind) {
  const ref = __ENV.SCENARIO;
  if (!ref)
    throw new Error(
      'set SCENARIO to a name in loadtest/scenarios (e.g. -e SCENARIO=seed-mix) or an absolute path',
    );
  const file = ref.includes('/') ? ref : import.meta.resolve(`../../scenarios/${ref}.json`);
  /** @type {Scenario} */
  const scenario = JSON.parse(open(file));
  if (scenario.transport.kind !== kind) {
    throw new Error(
      `${ref} uses the ${scenario.transport.kind} transport; run it with k6/${SCRIPTS[scenario.transport.kind]}`,
    );
  }
  const prompts = scenario.corpus
    ? JSON.parse(open(file.slice(0, file.lastIndexOf('/') + 1) + scenario.corpus)).prompts
    : scenario.prompts;
  if (!Array.isArray(prompts) || prompts.length === 0)
    throw new Error(`${ref}: no prompts (corpus or prompts)`);
  return { scenario, prompts };
}

const SCRIPTS = { poll: 'submit-poll.js', sse: 'submit-sse.js', openai: 'openai.js' };

/**
 * k6 options for a scenario: its stages as a ramping-vus scenario from 0 users (as the runner
 * ramps), one sampler of the queue depth a second beside it, and the thresholds.
 * @param {Scenario} scenario
 * @returns {import('k6/options').Options}
 */
export function buildOptions(scenario) {
  const totalSeconds = scenario.stages.reduce((sum, s) => sum + parseDuration(s.duration), 0) / 1000;
  const gracefulStop = scenario.gracefulStop ?? '30s';
  return {
    scenarios: {
      [scenario.name]: {
        executor: 'ramping-vus',
        startVUs: 0,
        stages: scenario.stages,
        gracefulRampDown: gracefulStop,
        gracefulStop,
        exec: 'default',
      },
      queue_depth: {
        executor: 'constant-arrival-rate',
        rate: 1,
        timeUnit: '1s',
        duration: `${Math.max(1, Math.ceil(totalSeconds))}s`,
        preAllocatedVUs: 1,
        exec: 'sampleQueue',
      },
    },
    thresholds: buildThresholds(scenario.thresholds),
    summaryTrendStats: ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)', 'p(99)'],
  };
}

/**
 * `{ acceptMs: { p99: 1000 }, errorRate: 0.05 }` to `{ llmq_accept_ms: ['p(99)<1000'], llmq_errors: ['rate<0.05'] }`.
 * @param {Scenario['thresholds']} thresholds
 * @returns {{ [metric: string]: string[] }}
 */
export function buildThresholds(thresholds) {
  /** @type {{ [metric: string]: string[] }} */
  const out = {};
  /** @type {['acceptMs' | 'ttftMs' | 'completionMs', string][]} */
  const latencies = [
    ['acceptMs', 'llmq_accept_ms'],
    ['ttftMs', 'llmq_ttft_ms'],
    ['completionMs', 'llmq_completion_ms'],
  ];
  for (const [key, metric] of latencies) {
    const bounds = thresholds[key];
    if (!bounds) continue;
    out[metric] = Object.keys(bounds).map(
      (stat) => `${/^p\d+$/.test(stat) ? `p(${stat.slice(1)})` : stat}<${bounds[stat]}`,
    );
  }
  if (thresholds.errorRate !== undefined) out.llmq_errors = [`rate<${thresholds.errorRate}`];
  return out;
}

/** Samples the queue depth once (the queue_depth scenario calls it every second). */
export function sampleQueue() {
  const { url, key } = target();
  const res = http.get(`${url}/api/metrics/scaling`, {
    headers: { Authorization: `Bearer ${key}` },
    tags: { name: 'queue depth' },
  });
  if (res.status !== 200) return;
  const body = /** @type {{ queue?: { waiting: number, active: number } }} */ (res.json());
  if (!body.queue) return;
  metrics.queueWaiting.add(body.queue.waiting);
  metrics.queueActive.add(body.queue.active);
}

/**
 * Headers of every llmq request.
 * @param {Scenario} scenario
 * @param {string} key
 * @returns {{ [name: string]: string }}
 */
export function requestHeaders(scenario, key) {
  return {
    Authorization: `Bearer ${key}`,
    'Content-Type': 'application/json',
    ...((scenario.cache ?? 'bypass') === 'bypass' ? { 'Cache-Control': 'no-cache, no-store' } : {}),
  };
}

/**
 * Records one finished iteration: its error (by type) or its completion.
 * @param {string | null} errorType
 * @param {string} className
 */
export function recordOutcome(errorType, className) {
  metrics.errors.add(errorType !== null, { class: className });
  if (errorType === null) metrics.completed.add(1, { class: className });
  else metrics.errorTypes.add(1, { type: errorType, class: className });
}

/**
 * JSON from an event's data, or null when it is not JSON (an exception thrown in an SSE handler
 * would abort the iteration without recording it).
 * @param {string} text
 * @returns {any}
 */
export function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/** Milliseconds of a k6 duration ("30s", "1m30s", "500ms"). */
export function parseDuration(/** @type {string} */ text) {
  let ms = 0;
  const units = /** @type {{ [unit: string]: number }} */ ({ h: 3600000, m: 60000, s: 1000, ms: 1 });
  const re = /(\d+(?:\.\d+)?)(ms|h|m|s)/g;
  let match;
  while ((match = re.exec(text)) !== null) ms += Number(match[1]) * (units[match[2] ?? ''] ?? 0);
  return ms;
}

/**
 * One virtual user's requests and pauses: the runner's own prompt builder on the runner's own
 * generator, seeded from the scenario's seed and the user's number, drawing the think time after
 * each prompt as the runner does (0 without thinkTime).
 * @param {Scenario} scenario
 * @param {PromptClass[]} prompts
 * @param {number} vu the user's number (__VU)
 * @returns {{ nextRequest: () => Request, thinkSeconds: () => number }}
 */
export function userDraws(scenario, prompts, vu) {
  const random = vuRandom(scenario.seed ?? null, vu);
  const min = scenario.thinkTime ? parseDuration(scenario.thinkTime.min) : 0;
  const max = scenario.thinkTime ? parseDuration(scenario.thinkTime.max) : 0;
  return {
    nextRequest: createPromptSource(prompts, random),
    thinkSeconds: () => (max > 0 ? uniformInt(random, min, max) / 1000 : 0),
  };
}
