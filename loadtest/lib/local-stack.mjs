// @ts-check
/**
 * The whole llmq the runner starts when no --url is given: the benchmarks' stack (Redis, PGlite,
 * the simulator, the API and workers, every one a real process from @llmq/testing), with the
 * scenario's `local` settings. Needs a build first (`npx turbo run build`).
 */
import { Resources } from '../../bench/lib/resources.mjs';
import { WORKER_DEFAULT_TIMERS, serviceLogTail, simulatorEnv, startStack } from '../../bench/lib/stack.mjs';

/**
 * @param {import('./scenario.js').Scenario['local']} local
 * @param {(message: string) => void} log
 */
export async function startLocalStack(local, log) {
  const resources = new Resources();
  log(
    `starting a local stack: ${local.workers} worker(s) at WORKER_CONCURRENCY=${local.workerConcurrency}, ` +
      `simulator TTFT ${local.simulator.ttftMs} ms, ${local.simulator.tokenMs} ms a token`,
  );
  try {
    const { stack } = await startStack(resources, 'loadtest stack', {
      workers: local.workers,
      // Production timers, not the test stack's fast ones: a load test measures the real thing.
      workerEnv: { ...WORKER_DEFAULT_TIMERS, WORKER_CONCURRENCY: String(local.workerConcurrency) },
      simulatorEnv: simulatorEnv(local.simulator),
    });
    const key = await stack.createKey('loadtest');
    return {
      url: stack.apiUrl,
      key,
      /** @type {import('./report.js').Target} */
      target: { kind: 'local', url: stack.apiUrl, ...local },
      /** What the API and workers logged at warn level or above, for a run with errors. */
      logTail: () => serviceLogTail(stack),
      stop: () => resources.stopAll(),
    };
  } catch (error) {
    await resources.stopAll();
    throw error;
  }
}
