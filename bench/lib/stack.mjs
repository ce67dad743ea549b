import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const BENCH_DIR = join(dirname(fileURLToPath(import.meta.url)), '..');
export const REPO_ROOT = join(BENCH_DIR, '..');

// The workspace packages are CommonJS builds (dist/); `npm run bench` builds them first.
const require = createRequire(import.meta.url);
/** @type {typeof import('@llmq/testing')} */
export const testing = require('@llmq/testing');

/**
 * Starts a TestStack (Redis, PGlite, simulator, API, workers: all real processes) registered
 * with `resources`, so it is stopped even if starting it fails half-way.
 * @param {import('./resources.mjs').Resources} resources
 * @param {import('@llmq/testing').StackOptions} options
 */
export async function startStack(resources, name, options) {
  const stack = new testing.TestStack(options);
  const release = resources.add(
    name,
    () => stack.stop(),
    () => [
      stack.api?.pid,
      ...stack.workers.map((w) => w.pid),
      stack.simulator?.pid,
      stack.pglite?.pid,
      stack.redis?.pid,
    ],
  );
  await stack.start();
  return { stack, release };
}

/**
 * The last lines a stack's API and workers printed at warn level or above (LOG_LEVEL=warn), but
 * those `ignore` matches (lines the bench itself caused, e.g. its GC probe's).
 * @param {(line: string) => boolean} [ignore]
 */
export function serviceLogTail(stack, lines = 5, ignore = () => false) {
  const tail = {};
  for (const service of [stack.api, ...stack.workers]) {
    if (!service) continue;
    const output = service
      .output()
      .split('\n')
      .filter((l) => l !== '' && l !== service.readyLine && !ignore(l));
    if (output.length > 0) tail[service.name] = { lines: output.length, last: output.slice(-lines) };
  }
  return tail;
}

/**
 * The simulator's timing environment from a bench setting.
 * @param {{ ttftMs: number, tokenMs: number, jitter: number }} sim
 */
export function simulatorEnv(sim) {
  return {
    SIM_TTFT_MS: String(sim.ttftMs),
    SIM_TOKEN_MS: String(sim.tokenMs),
    SIM_JITTER: String(sim.jitter),
  };
}

/**
 * A providers document for `startStack`: the test stack's default (every simulator serves
 * `sim-small` and `sim-large`, no fleet limits) with room for `concurrency` calls in flight per
 * backend and worker process, so the providers file never caps a benchmark (its default is 64).
 */
export function providersWithConcurrency(concurrency) {
  return (baseUrls) => {
    const document = /** @type {{ backends: object[] }} */ (testing.defaultProviders(baseUrls));
    return { ...document, backends: document.backends.map((b) => ({ ...b, concurrency })) };
  };
}

/**
 * The worker's own defaults for its background timers, which the test stack shortens so that tests
 * see stalls and lost jobs within a second or two. At those settings a worker holding hundreds of
 * jobs renews their locks every 2 s and scans the backlog for lost jobs every second: work a
 * deployed worker does every 15 to 30 s, which a benchmark of a busy worker should not charge it for.
 */
export const WORKER_DEFAULT_TIMERS = {
  LOCK_DURATION_MS: '30000',
  STALLED_INTERVAL_MS: '30000',
  RECONCILE_INTERVAL_MS: '30000',
  RECONCILE_GRACE_MS: '30000',
  HEALTH_CHECK_INTERVAL_MS: '5000',
};
