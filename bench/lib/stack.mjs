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

/** The last lines a stack's API and workers printed at warn level or above (LOG_LEVEL=warn). */
export function serviceLogTail(stack, lines = 5) {
  const tail = {};
  for (const service of [stack.api, ...stack.workers]) {
    if (!service) continue;
    const output = service
      .output()
      .split('\n')
      .filter((l) => l !== '' && l !== service.readyLine);
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
