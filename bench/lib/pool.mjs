import { performance } from 'node:perf_hooks';

/**
 * Runs `total` samples with `concurrency` clients, each starting its next sample when one ends
 * (a closed loop: the load is the number of callers, not a request rate).
 * @template T
 * @param {number} total
 * @param {number} concurrency
 * @param {(i: number) => Promise<T>} once
 * @returns {Promise<{ samples: T[], errors: string[], total: number, seconds: number }>}
 */
export async function runPool(total, concurrency, once) {
  const samples = [];
  const errors = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: Math.min(concurrency, total) }, async () => {
      while (next < total) {
        const i = next++;
        try {
          samples.push(await once(i));
        } catch (error) {
          errors.push(String(error?.message ?? error));
        }
      }
    }),
  );
  return { samples, errors, total, seconds: (performance.now() - started) / 1000 };
}
