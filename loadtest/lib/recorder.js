// @ts-check
/**
 * Everything a run measures, with the time it was observed (ms since the run started), so the
 * report can show each figure over time as well as in total.
 */
const { summarize } = require('./stats');

/**
 * One iteration (a request followed to its end), as the virtual user recorded it.
 * `acceptMs`, `ttftMs` and `completionMs` are durations from sending the request; each is null
 * when the transport cannot see it or the iteration did not get that far.
 * @typedef {{ start: number, end: number, className: string, acceptMs: number | null,
 *             ttftMs: number | null, completionMs: number | null, error: string | null,
 *             cached: boolean, interrupted: boolean }} Iteration
 * @typedef {{ t: number, waiting: number, active: number, delayed: number }} QueueSample
 * @typedef {{ t: number, vus: number, target: number }} VuSample
 */

class Recorder {
  /** @type {Iteration[]} */
  iterations = [];
  /** @type {QueueSample[]} */
  queue = [];
  /** @type {VuSample[]} */
  vus = [];
  /** Iterations started and not yet recorded. */
  inFlight = 0;
  /** Why queue depth could not be sampled, if it could not. */
  queueUnavailable = /** @type {string | null} */ (null);

  started() {
    this.inFlight += 1;
  }

  /** @param {Iteration} iteration */
  record(iteration) {
    this.inFlight -= 1;
    this.iterations.push(iteration);
  }

  /** @param {QueueSample} sample */
  queueSample(sample) {
    this.queue.push(sample);
  }

  /** @param {VuSample} sample */
  vuSample(sample) {
    this.vus.push(sample);
  }

  /**
   * Totals over iterations that ended at or after `since` (all of them by default).
   * Interrupted iterations (still running when the run stopped, as k6 counts them) are neither
   * completed nor failed, but the latencies they measured count.
   */
  totals(since = -Infinity) {
    const ended = this.iterations.filter((i) => i.end >= since);
    const finished = ended.filter((i) => !i.interrupted);
    const failed = finished.filter((i) => i.error !== null);
    /** @type {Record<string, number>} */
    const errorsByType = {};
    for (const { error } of failed) if (error !== null) errorsByType[error] = (errorsByType[error] ?? 0) + 1;
    return {
      started: ended.length + (since === -Infinity ? this.inFlight : 0),
      finished: finished.length,
      completed: finished.length - failed.length,
      failed: failed.length,
      interrupted: ended.length - finished.length,
      cached: finished.filter((i) => i.cached && i.error === null).length,
      errorRate: finished.length === 0 ? NaN : failed.length / finished.length,
      errorsByType,
      acceptMs: summarize(values(ended, 'acceptMs')),
      ttftMs: summarize(values(ended, 'ttftMs')),
      completionMs: summarize(
        values(
          ended.filter((i) => i.error === null),
          'completionMs',
        ),
      ),
    };
  }

  /**
   * The run cut into buckets of `bucketMs`: each latency sample falls into the bucket of the
   * moment it was observed (submit + its duration), each iteration's outcome into that of its end.
   * @param {number} bucketMs
   * @param {number} untilMs
   */
  buckets(bucketMs, untilMs) {
    const count = Math.max(1, Math.ceil(untilMs / bucketMs));
    const rows = Array.from({ length: count }, (_, i) => ({
      t: i * bucketMs,
      /** @type {number[]} */ acceptMs: [],
      /** @type {number[]} */ ttftMs: [],
      /** @type {number[]} */ completionMs: [],
      started: 0,
      completed: 0,
      failed: 0,
    }));
    const at = (/** @type {number} */ t) => rows[Math.min(count - 1, Math.max(0, Math.floor(t / bucketMs)))];
    for (const i of this.iterations) {
      const started = at(i.start);
      if (started) started.started += 1;
      if (i.acceptMs !== null) at(i.start + i.acceptMs)?.acceptMs.push(i.acceptMs);
      if (i.ttftMs !== null) at(i.start + i.ttftMs)?.ttftMs.push(i.ttftMs);
      if (i.interrupted) continue;
      const ended = at(i.end);
      if (!ended) continue;
      if (i.error === null) {
        ended.completed += 1;
        if (i.completionMs !== null) ended.completionMs.push(i.completionMs);
      } else {
        ended.failed += 1;
      }
    }
    return rows;
  }

  /** Per prompt class: requests, completed, failed and completion time. */
  byClass() {
    /** @type {Map<string, Iteration[]>} */
    const groups = new Map();
    for (const i of this.iterations) {
      if (i.interrupted) continue;
      const list = groups.get(i.className);
      if (list) list.push(i);
      else groups.set(i.className, [i]);
    }
    return [...groups].map(([className, list]) => ({
      className,
      finished: list.length,
      failed: list.filter((i) => i.error !== null).length,
      completionMs: summarize(
        values(
          list.filter((i) => i.error === null),
          'completionMs',
        ),
      ),
      ttftMs: summarize(values(list, 'ttftMs')),
    }));
  }
}

/**
 * @param {Iteration[]} iterations
 * @param {'acceptMs' | 'ttftMs' | 'completionMs'} key
 */
function values(iterations, key) {
  /** @type {number[]} */
  const out = [];
  for (const i of iterations) {
    const v = i[key];
    if (v !== null) out.push(v);
  }
  return out;
}

module.exports = { Recorder };
