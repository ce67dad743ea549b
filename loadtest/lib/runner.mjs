// @ts-check
/**
 * Runs a scenario as k6's ramping-vus executor would: virtual users follow the stages, each
 * looping (pick a prompt by weight, send it, follow it to its end, think); a user above the
 * current target finishes its iteration and waits. After the last stage running iterations get
 * `gracefulStop` to finish; those still running then are interrupted (counted apart, as k6 does).
 */
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';
import { createAgent, requestJson } from '../../bench/lib/http.mjs';
import { createTransport, errorType } from './transports.mjs';

const require = createRequire(import.meta.url);
/** @type {typeof import('./prompts.js')} */
const { createPromptSource, vuRandom } = require('./prompts');
/** @type {typeof import('./recorder.js')} */
const { Recorder } = require('./recorder');
/** @type {typeof import('./stages.js')} */
const { stageAt, targetAt } = require('./stages');
/** @type {typeof import('./progress.js')} */
const { formatProgress } = require('./progress');
/** @type {typeof import('./random.js')} */
const { uniformInt } = require('./random');

const TICK_MS = 100;
const SAMPLE_MS = 1000;
const PROGRESS_WINDOW_MS = 10_000;

/**
 * @param {{ scenario: import('./scenario.js').Scenario, url: string, key: string,
 *           progress?: (line: string) => void, signal?: AbortSignal }} options
 *   `signal` ends the run early (Ctrl-C): running iterations are interrupted at once.
 * @returns {Promise<{ recorder: import('./recorder.js').Recorder, runMs: number, aborted: boolean }>}
 */
export async function runScenario({ scenario, url, key, progress = () => undefined, signal }) {
  const recorder = new Recorder();
  const agent = createAgent();
  const t0 = performance.now();
  const elapsed = () => performance.now() - t0;
  const state = { target: 0, ending: false, stopped: false };
  /** Users at work (in an iteration or thinking), as opposed to parked above the target. */
  const running = new Set();
  /** @type {Set<() => void>} Wakes sleepers when the run ends, so no user waits out its think time. */
  const stopTimers = new Set();
  const sleep = (/** @type {number} */ ms) =>
    new Promise((resolve) => {
      if (state.stopped) return resolve(undefined);
      const wake = () => {
        clearTimeout(timer);
        stopTimers.delete(wake);
        resolve(undefined);
      };
      const timer = setTimeout(wake, ms);
      stopTimers.add(wake);
    });

  const transport = createTransport(scenario.transport.kind, {
    agent,
    url,
    key,
    model: scenario.model,
    cache: scenario.cache,
    pollIntervalMs: scenario.transport.pollIntervalMs,
    sleep,
    stopped: () => state.stopped,
  });

  /** @param {number} vu 1-based */
  async function virtualUser(vu) {
    const random = vuRandom(scenario.seed, vu);
    const nextPrompt = createPromptSource(scenario.prompts, random);
    while (!state.ending) {
      if (vu > state.target) {
        running.delete(vu);
        await sleep(TICK_MS);
        continue;
      }
      running.add(vu);
      await iteration(nextPrompt());
      const { min, max } = scenario.thinkTimeMs;
      if (max > 0 && !state.ending) await sleep(uniformInt(random, min, max));
    }
    running.delete(vu);
  }

  /** @param {import('./prompts.js').PromptRequest} request */
  async function iteration(request) {
    const start = elapsed();
    const deadline = performance.now() + scenario.requestTimeoutMs;
    /** @type {import('./transports.mjs').Marks} */
    const marks = { acceptMs: null, ttftMs: null, completionMs: null, cached: false };
    recorder.started();
    /** @type {string | null} */
    let error = null;
    try {
      await transport(request, marks, deadline);
    } catch (thrown) {
      error = errorType(thrown, deadline);
    }
    recorder.record({
      start,
      end: elapsed(),
      className: request.className,
      ...marks,
      error: state.stopped ? null : error,
      interrupted: state.stopped,
    });
  }

  let queueFailures = 0;
  async function sampleQueue() {
    if (recorder.queueUnavailable !== null) return;
    const t = elapsed();
    try {
      const res = await requestJson({
        agent,
        method: 'GET',
        url: `${url}/api/metrics/scaling`,
        headers: { authorization: `Bearer ${key}` },
        timeoutMs: 2000,
      });
      const queue = res.json?.queue;
      if (res.status !== 200 || typeof queue?.waiting !== 'number') throw new Error(`answered ${res.status}`);
      queueFailures = 0;
      recorder.queueSample({ t, waiting: queue.waiting, active: queue.active, delayed: queue.delayed ?? 0 });
    } catch (error) {
      if (state.stopped) return;
      // A remote API may hide the endpoint from this key: give up after a few tries, say why.
      if (++queueFailures >= 3) {
        recorder.queueUnavailable = `GET /api/metrics/scaling failed: ${/** @type {Error} */ (error).message}`;
      }
    }
  }

  /** @type {Promise<void>[]} */
  const users = [];
  let lastSample = -Infinity;
  const control = setInterval(() => {
    const now = elapsed();
    state.target = state.ending ? 0 : targetAt(scenario.stages, now);
    while (users.length < state.target) users.push(virtualUser(users.length + 1));
    if (now - lastSample < SAMPLE_MS) return;
    lastSample = now;
    recorder.vuSample({ t: now, vus: running.size, target: state.target });
    void sampleQueue();
    progress(
      formatProgress({
        elapsedMs: now,
        stage: state.ending ? null : stageAt(scenario.stages, now),
        stages: scenario.stages.length,
        vus: running.size,
        target: state.target,
        totals: recorder.totals(),
        recent: recorder.totals(now - PROGRESS_WINDOW_MS),
        queue: recorder.queue.at(-1) ?? null,
        transport: scenario.transport.kind,
      }),
    );
  }, TICK_MS);

  const aborted = new Promise((resolve) => {
    if (signal?.aborted) resolve('aborted');
    signal?.addEventListener('abort', () => resolve('aborted'), { once: true });
  });
  const interrupt = async () => {
    state.stopped = true;
    for (const wake of stopTimers) wake();
    // Destroying the agent's sockets ends every request still running; they count as interrupted.
    agent.destroy();
    await Promise.all(users);
  };
  const after = (/** @type {number} */ ms) =>
    new Promise((resolve) => setTimeout(() => resolve('timeout'), ms).unref());

  try {
    if ((await Promise.race([after(scenario.totalMs), aborted])) === 'aborted') {
      state.ending = true;
      await interrupt();
      return { recorder, runMs: elapsed(), aborted: true };
    }
    state.ending = true;
    for (const wake of stopTimers) wake(); // thinking users stop at once
    const allDone = Promise.all(users).then(() => 'done');
    const end = await Promise.race([allDone, after(scenario.gracefulStopMs), aborted]);
    if (end !== 'done') await interrupt();
    return { recorder, runMs: elapsed(), aborted: end === 'aborted' };
  } finally {
    state.stopped = true;
    clearInterval(control);
    for (const wake of stopTimers) wake();
    agent.destroy();
  }
}
