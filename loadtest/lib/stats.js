// @ts-check
/**
 * Percentiles as k6 computes them for Trend metrics (`p(95)` in a threshold), so a threshold
 * means the same number here as under k6: linear interpolation between the two closest ranks,
 * index = p * (n - 1) over the sorted values (Excel's PERCENTILE.INC). One sample is its own
 * every percentile; no sample gives NaN (k6 shows 0, which would pass any threshold).
 */

/**
 * @param {ArrayLike<number>} sorted ascending
 * @param {number} p a fraction in [0, 1]
 */
function percentileOfSorted(sorted, p) {
  const n = sorted.length;
  if (n === 0) return NaN;
  const index = p * (n - 1);
  const below = Math.floor(index);
  const above = Math.ceil(index);
  const low = /** @type {number} */ (sorted[below]);
  const high = /** @type {number} */ (sorted[above]);
  return low + (high - low) * (index - below);
}

/** @param {readonly number[]} values */
function sortedCopy(values) {
  return Float64Array.from(values).sort();
}

/**
 * @param {readonly number[]} values
 * @param {number} p a fraction in [0, 1]
 */
function percentile(values, p) {
  return percentileOfSorted(sortedCopy(values), p);
}

/**
 * @typedef {{ count: number, min: number, avg: number, med: number, max: number,
 *             p50: number, p90: number, p95: number, p99: number }} Summary
 */

/**
 * Every statistic a threshold may name (see scenario.js), NaN when there are no values.
 * @param {readonly number[]} values
 * @returns {Summary}
 */
function summarize(values) {
  const sorted = sortedCopy(values);
  let sum = 0;
  for (const v of sorted) sum += v;
  const n = sorted.length;
  const p = (/** @type {number} */ q) => percentileOfSorted(sorted, q);
  return {
    count: n,
    min: n === 0 ? NaN : /** @type {number} */ (sorted[0]),
    avg: n === 0 ? NaN : sum / n,
    med: p(0.5),
    max: n === 0 ? NaN : /** @type {number} */ (sorted[n - 1]),
    p50: p(0.5),
    p90: p(0.9),
    p95: p(0.95),
    p99: p(0.99),
  };
}

module.exports = { percentile, percentileOfSorted, summarize };
