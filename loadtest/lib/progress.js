// @ts-check
/**
 * The live line the runner prints to stderr once a second, e.g.
 * `[loadtest]   42s stage 2/5 vus 10/10 | reqs 120 done 96 err 1 (1.0%) | p95 accept 9.1ms ttft 512ms done 4.20s | queue 3 waiting 10 active`
 * Latency percentiles cover the last 10 seconds, so a ramp shows as it happens.
 */

/** @param {number} v milliseconds */
function shortMs(v) {
  if (!Number.isFinite(v)) return '-';
  if (v < 100) return `${v.toFixed(1)}ms`;
  if (v < 1000) return `${Math.round(v)}ms`;
  return `${(v / 1000).toFixed(2)}s`;
}

/**
 * @param {{ elapsedMs: number, stage: number | null, stages: number, vus: number, target: number,
 *           totals: ReturnType<import('./recorder.js').Recorder['totals']>,
 *           recent: ReturnType<import('./recorder.js').Recorder['totals']>,
 *           queue: import('./recorder.js').QueueSample | null, transport: string }} s
 */
function formatProgress(s) {
  const { totals, recent } = s;
  const rate = Number.isFinite(totals.errorRate) ? `${(totals.errorRate * 100).toFixed(1)}%` : '-';
  const latencies = [
    s.transport === 'openai' ? null : `accept ${shortMs(recent.acceptMs.p95)}`,
    s.transport === 'poll' ? null : `ttft ${shortMs(recent.ttftMs.p95)}`,
    `done ${shortMs(recent.completionMs.p95)}`,
  ].filter(Boolean);
  return [
    `[loadtest] ${String(Math.floor(s.elapsedMs / 1000)).padStart(4)}s`,
    s.stage === null ? 'stopping' : `stage ${s.stage}/${s.stages}`,
    `vus ${s.vus}/${s.target}`,
    `| reqs ${totals.started} done ${totals.completed} err ${totals.failed} (${rate})`,
    `| p95 ${latencies.join(' ')}`,
    s.queue ? `| queue ${s.queue.waiting} waiting ${s.queue.active} active` : '',
  ]
    .filter(Boolean)
    .join(' ');
}

module.exports = { formatProgress };
