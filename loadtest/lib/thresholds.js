// @ts-check
/**
 * A scenario's thresholds, checked against a run's figures. Every threshold is an upper bound,
 * met when the figure is strictly below it (k6's `p(95)<1000`, `rate<0.05`). The k6 scripts turn
 * the same thresholds into k6 syntax on the same metric names (`k6/lib/scenario.js`).
 */

/** Scenario threshold key to the k6 metric it bounds. */
const K6_METRICS = {
  acceptMs: 'llmq_accept_ms',
  ttftMs: 'llmq_ttft_ms',
  completionMs: 'llmq_completion_ms',
  errorRate: 'llmq_errors',
};

/** @param {string} stat avg | min | med | max | p50 | p90 | p95 | p99 */
function k6Stat(stat) {
  return /^p\d+$/.test(stat) ? `p(${stat.slice(1)})` : stat;
}

/**
 * @typedef {{ metric: keyof typeof K6_METRICS, stat: string, limit: number, value: number,
 *             ok: boolean, k6: string }} ThresholdResult
 * @typedef {import('./stats.js').Summary} Summary
 */

/**
 * @param {import('./scenario.js').Scenario['thresholds']} thresholds
 * @param {{ acceptMs: Summary, ttftMs: Summary, completionMs: Summary, errorRate: number }} figures
 * @returns {ThresholdResult[]}
 */
function evaluateThresholds(thresholds, figures) {
  /** @type {ThresholdResult[]} */
  const results = [];
  for (const metric of /** @type {const} */ (['acceptMs', 'ttftMs', 'completionMs'])) {
    const bounds = thresholds[metric];
    if (!bounds) continue;
    for (const [stat, limit] of Object.entries(bounds)) {
      if (limit === undefined) continue;
      const value = figures[metric][/** @type {keyof Summary} */ (stat)];
      results.push({
        metric,
        stat,
        limit,
        value,
        // No sample is a failure: a run in which nothing completed must not pass on vacuous truth.
        ok: Number.isFinite(value) && value < limit,
        k6: `${K6_METRICS[metric]}: ${k6Stat(stat)}<${limit}`,
      });
    }
  }
  if (thresholds.errorRate !== undefined) {
    const value = figures.errorRate;
    results.push({
      metric: 'errorRate',
      stat: 'rate',
      limit: thresholds.errorRate,
      value,
      ok: Number.isFinite(value) && value < thresholds.errorRate,
      k6: `${K6_METRICS.errorRate}: rate<${thresholds.errorRate}`,
    });
  }
  return results;
}

module.exports = { K6_METRICS, evaluateThresholds, k6Stat };
