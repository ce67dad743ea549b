// @ts-check
/**
 * Virtual users over time, as k6's ramping-vus executor runs `stages`: from 0, each stage moves
 * linearly from the previous target to its own over its duration.
 */

/**
 * @typedef {{ durationMs: number, target: number }} Stage
 */

/**
 * The number of virtual users wanted `elapsedMs` into the run (0 after the last stage).
 * @param {readonly Stage[]} stages
 * @param {number} elapsedMs
 */
function targetAt(stages, elapsedMs) {
  let from = 0;
  let start = 0;
  for (const stage of stages) {
    const end = start + stage.durationMs;
    if (elapsedMs < end) {
      const progress = stage.durationMs === 0 ? 1 : (elapsedMs - start) / stage.durationMs;
      return Math.round(from + (stage.target - from) * Math.max(0, progress));
    }
    from = stage.target;
    start = end;
  }
  return 0;
}

/**
 * The stage running at `elapsedMs`: its 1-based number, or null after the last.
 * @param {readonly Stage[]} stages
 * @param {number} elapsedMs
 */
function stageAt(stages, elapsedMs) {
  let end = 0;
  for (let i = 0; i < stages.length; i += 1) {
    end += /** @type {Stage} */ (stages[i]).durationMs;
    if (elapsedMs < end) return i + 1;
  }
  return null;
}

module.exports = { targetAt, stageAt };
