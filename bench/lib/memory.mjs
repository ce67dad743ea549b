import { join } from 'node:path';
import { rssBytes } from './proc.mjs';
import { BENCH_DIR } from './stack.mjs';

const PROBE = join(BENCH_DIR, 'lib', 'gc-probe.cjs');
const PROBE_LINE = /^bench-gc-probe #(\d+) (\{.*\})$/;

/**
 * NODE_OPTIONS for a process whose memory is measured: the current ones plus the GC probe
 * (`gc-probe.cjs`), which collects garbage and prints the heap on SIGUSR2.
 */
export function probeNodeOptions() {
  return [process.env.NODE_OPTIONS, `--require=${PROBE}`].filter(Boolean).join(' ');
}

/** The probe's lines are the bench's own doing, not something the process had to say. */
export function isProbeLine(line) {
  return PROBE_LINE.test(line);
}

/** @type {WeakMap<object, number>} */
const readings = new WeakMap();

/**
 * The memory a process started with the probe holds after full garbage collections: its heap
 * (as `process.memoryUsage()` tells it) and its resident set (VmRSS, read from /proc after the
 * collection).
 * @param {import('@llmq/testing').ServiceProcess} service
 * @returns {Promise<{ rssBytes: number, heapUsedBytes: number, externalBytes: number }>}
 */
export async function memoryAfterGc(service, timeoutMs = 15_000) {
  const seq = (readings.get(service) ?? 0) + 1;
  readings.set(service, seq);
  process.kill(service.pid, 'SIGUSR2');
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const line = service
      .output()
      .split('\n')
      .findLast((l) => l.startsWith(`bench-gc-probe #${seq} `));
    if (line !== undefined) {
      const m = JSON.parse(/** @type {RegExpExecArray} */ (PROBE_LINE.exec(line))[2]);
      return { rssBytes: rssBytes(service.pid), heapUsedBytes: m.heapUsed, externalBytes: m.external };
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(
    `${service.name} did not answer the GC probe within ${timeoutMs} ms (was it started with probeNodeOptions()?)`,
  );
}
